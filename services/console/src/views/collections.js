// Collections (dataset types): a searchable table.
import { bboxPolygon } from '../map.js';
import { accessOf, bandLabel, loadAccess, loadCollections, summarize } from '../catalog.js';
import { accessBadge, announce, field, h } from '../ui.js';

function haystack(c) {
  return [c.id, c.title, c.description, ...c.platforms, ...c.instruments, ...c.bands.flatMap((b) => [b.key, b.common])]
    .filter(Boolean).join(' ').toLowerCase();
}

export default async function collections(ctx) {
  ctx.setTitle('Collections');
  const { root, map } = ctx;
  root.append(h('h1', {}, 'Collections'),
    h('p', { class: 'lead' }, 'The products of the catalog (STAC Collections) with their platform, instrument and bands.'));
  const [collections, access] = await Promise.all([loadCollections({ fresh: true }), loadAccess({ fresh: true })]);
  const list = collections.map(summarize);
  if (ctx.signal.aborted) return;
  const search = h('input', { type: 'search', id: 'collections-filter', value: ctx.query.get('q') || '', placeholder: 'id, platform, band, words…' });
  const status = h('p', { class: 'count', role: 'status', id: 'collections-count' });
  const rows = new Map();
  const tbody = h('tbody', {});
  for (const c of list) {
    const tr = h('tr', { dataset: { collection: c.id } },
      h('th', { scope: 'row' }, h('a', { href: `#/collections/${encodeURIComponent(c.id)}` }, c.id)),
      h('td', {}, accessBadge(accessOf(access, c.id))),
      h('td', {}, c.platforms.join(', ') || '–'),
      h('td', {}, c.instruments.join(', ') || '–'),
      h('td', { class: 'bands' }, c.bands.map(bandLabel).join(', ') || '–'),
      h('td', { class: 'desc' }, h('span', { class: 'title' }, c.title), c.description && c.description !== c.title
        ? h('span', { class: 'more' }, ` — ${c.description.length > 220 ? `${c.description.slice(0, 220)}…` : c.description}`) : null));
    tr.addEventListener('mouseenter', () => map.highlight('extents', c.id, true));
    tr.addEventListener('mouseleave', () => map.highlight('extents', c.id, false));
    rows.set(c.id, { tr, text: haystack(c) });
    tbody.append(tr);
  }
  root.append(
    h('form', { role: 'search', class: 'filters', onsubmit: (e) => e.preventDefault() },
      field('Search collections', search, 'Matches id, title, description, platform, instrument and band names.')),
    status,
    h('div', { class: 'table-wrap' },
      h('table', { class: 'data', id: 'collections-table' },
        h('caption', { class: 'sr-only' }, 'Collections'),
        h('thead', {}, h('tr', {}, ['Id', 'Access', 'Platform', 'Instrument', 'Bands', 'Description'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)));

  map.addGeoJSON('extents', {
    type: 'FeatureCollection',
    features: list.filter((c) => c.bbox).map((c) => ({ type: 'Feature', properties: { id: c.id }, geometry: bboxPolygon(c.bbox) })),
  }, { markers: true });
  map.interactive('extents', {
    onHover: (id) => { for (const [cid, r] of rows) r.tr.classList.toggle('hover', cid === id); },
    onClick: (ids) => { location.hash = `#/collections/${encodeURIComponent(ids[0])}`; },
  });
  map.fitAll(list.map((c) => c.bbox), { maxZoom: 12 });

  const apply = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let n = 0;
    for (const { tr, text } of rows.values()) {
      const ok = words.every((w) => text.includes(w));
      tr.hidden = !ok;
      n += ok;
    }
    status.textContent = `${n} of ${list.length} collections`;
  };
  search.addEventListener('input', () => {
    apply();
    history.replaceState(null, '', `#/collections${search.value ? `?q=${encodeURIComponent(search.value)}` : ''}`);
  });
  search.addEventListener('change', () => announce(status.textContent));
  apply();
}
