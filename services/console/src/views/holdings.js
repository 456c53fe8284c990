// Holdings: every collection's extent on the map, with cards (title, platform, dates, items).
import { bboxPolygon, isGlobal } from '../map.js';
import { accessOf, itemCount, loadAccess, loadCollections, summarize } from '../catalog.js';
import { accessBadge, announce, field, fmtNumber, fmtRange, h } from '../ui.js';

function overlaps(s, from, to) {
  const start = s.start ? s.start.slice(0, 10) : '0000';
  const end = s.end ? s.end.slice(0, 10) : '9999';
  return (!from || end >= from) && (!to || start <= to);
}

export default async function holdings(ctx) {
  ctx.setTitle('Holdings');
  const { root, map } = ctx;
  root.append(h('h1', {}, 'Holdings'),
    h('p', { class: 'lead' }, 'Every collection of the catalog and where it lies. Select a card or an extent on the map to open the collection.'));
  const [all, access] = await Promise.all([loadCollections({ fresh: true }), loadAccess({ fresh: true })]);
  const collections = all.map(summarize);
  if (ctx.signal.aborted) return;

  const platforms = [...new Set(collections.flatMap((c) => c.platforms))].sort();
  const platform = h('select', { id: 'filter-platform' },
    h('option', { value: '' }, 'All platforms'), platforms.map((p) => h('option', { value: p }, p)));
  const from = h('input', { type: 'date', id: 'filter-from' });
  const to = h('input', { type: 'date', id: 'filter-to' });
  const counter = h('p', { class: 'count', role: 'status', id: 'holdings-count' });
  const cards = h('ul', { class: 'cards', id: 'holdings-cards' });
  root.append(
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter collections', onsubmit: (e) => e.preventDefault() },
      field('Platform', platform), field('Data from', from), field('Data until', to)),
    counter, cards);

  const cardOf = new Map();
  for (const c of collections) {
    const countEl = h('span', { class: 'item-count', dataset: { collection: c.id } }, '… items');
    const card = h('li', { class: 'card', dataset: { collection: c.id } },
      h('a', { href: `#/collections/${encodeURIComponent(c.id)}`, class: 'card-link' },
        h('span', { class: 'card-title' }, c.title)),
      h('p', { class: 'card-id' }, h('code', {}, c.id), ' ', accessBadge(accessOf(access, c.id))),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Platform'), h('dd', {}, c.platforms.join(', ') || '–'),
        h('dt', {}, 'Dates'), h('dd', {}, fmtRange(c.start, c.end)),
        h('dt', {}, 'Items'), h('dd', {}, countEl)),
      h('p', { class: 'card-actions' },
        h('a', { href: `#/items?collections=${encodeURIComponent(c.id)}` }, 'Items', h('span', { class: 'sr-only' }, ` of ${c.title}`)),
        ' · ',
        h('a', { href: `#/mosaic?collections=${encodeURIComponent(c.id)}` }, 'Mosaic', h('span', { class: 'sr-only' }, ` of ${c.title}`))));
    card.addEventListener('mouseenter', () => map.highlight('extents', c.id, true));
    card.addEventListener('mouseleave', () => map.highlight('extents', c.id, false));
    card.addEventListener('focusin', () => map.highlight('extents', c.id, true));
    card.addEventListener('focusout', () => map.highlight('extents', c.id, false));
    cardOf.set(c.id, card);
    cards.append(card);
    itemCount(c.id).then((n) => { countEl.textContent = `${fmtNumber(n)} items`; })
      .catch(() => { countEl.textContent = 'unknown'; });
  }

  const features = (list) => ({
    type: 'FeatureCollection',
    features: list.filter((c) => c.bbox && !isGlobal(c.bbox)).map((c) => ({ type: 'Feature', properties: { id: c.id, title: c.title }, geometry: bboxPolygon(c.bbox) })),
  });
  map.addGeoJSON('extents', features(collections), { opacity: 0.18, width: 2, markers: true });
  map.interactive('extents', {
    onHover: (id) => {
      for (const [cid, card] of cardOf) card.classList.toggle('hover', cid === id);
    },
    onClick: (ids, e) => {
      if (ids.length === 1) {
        location.hash = `#/collections/${encodeURIComponent(ids[0])}`;
        return;
      }
      map.showPopup(e.lngLat, h('div', {}, h('p', {}, `${ids.length} collections here:`),
        h('ul', {}, ids.map((id) => h('li', {}, h('a', { href: `#/collections/${encodeURIComponent(id)}` }, id))))));
    },
  });

  const apply = () => {
    const shown = collections.filter((c) => (!platform.value || c.platforms.includes(platform.value))
      && overlaps(c, from.value, to.value));
    for (const c of collections) cardOf.get(c.id).hidden = !shown.includes(c);
    map.setData('extents', features(shown));
    counter.textContent = `${shown.length} of ${collections.length} collections shown`;
    announce(counter.textContent);
    map.fitAll(shown.map((c) => c.bbox), { maxZoom: 12 });
  };
  for (const el of [platform, from, to]) el.addEventListener('change', apply);
  counter.textContent = `${collections.length} collections`;
  if (!collections.length) {
    cards.replaceWith(h('p', { class: 'note' }, 'The catalog has no collections yet: add some with “stacube product add” and “stacube dataset add”.'));
  }
  map.fitAll(collections.map((c) => c.bbox), { maxZoom: 12 });
}
