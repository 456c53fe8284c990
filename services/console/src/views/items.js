// Items (dataset viewer): search by area, dates, cloud cover and collections, across collections;
// footprints on the map, results paged by the STAC API's next/prev links.
import { stac } from '../api.js';
import { areaField } from '../area.js';
import { accessOf, loadAccess, loadCollections, summarize } from '../catalog.js';
import {
  accessBadge, announce, errorBox, field, fmtBbox, fmtDateTime, fmtNumber, h, nextId, parseBbox, replace,
} from '../ui.js';

const itemKey = (f) => `${f.collection}/${f.id}`;
export const itemHref = (collection, id) => `#/items/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`;

export function cloudCover(f) {
  const p = f.properties || {};
  return p['eo:cloud_cover'] ?? null;
}

/** Collection checkboxes (all unchecked = all collections); `access` (loadAccess's map) marks them private / shared / public. */
export function collectionPicker(list, selected, { legend = 'Collections', name = 'collections', onChange, access } = {}) {
  const boxes = list.map((c) => {
    const id = nextId('coll');
    const box = h('input', { type: 'checkbox', id, name, value: c.id, checked: selected.includes(c.id) });
    if (onChange) box.addEventListener('change', onChange);
    return h('li', {}, box, ' ', h('label', { for: id }, c.title !== c.id ? `${c.id} — ${c.platforms.join(', ') || c.title}` : c.id),
      access ? [' ', accessBadge(accessOf(access, c.id))] : null);
  });
  const element = h('fieldset', { class: 'collections-picker' }, h('legend', {}, legend), h('ul', { class: 'checks' }, boxes));
  return {
    element,
    get: () => [...element.querySelectorAll('input:checked')].map((b) => b.value),
  };
}

export default async function items(ctx) {
  ctx.setTitle('Items');
  const { root, map, query } = ctx;
  root.append(h('h1', {}, 'Items'),
    h('p', { class: 'lead' }, 'Search the items of one or several collections by area, dates and cloud cover.'));
  const [all, access] = await Promise.all([loadCollections(), loadAccess({ fresh: true }).catch(() => null)]);
  const collections = all.map(summarize);
  if (ctx.signal.aborted) return;

  const selected = (query.get('collections') || '').split(',').filter(Boolean);
  let initialBbox = null;
  try {
    initialBbox = query.get('bbox') ? parseBbox(query.get('bbox')) : null;
  } catch {
    initialBbox = null;
  }
  const picker = collectionPicker(collections, selected, { legend: 'Collections (none checked: all)', access });
  const area = areaField(map, { value: initialBbox });
  const from = h('input', { type: 'date', id: 'items-from', name: 'from', value: query.get('from') || '' });
  const to = h('input', { type: 'date', id: 'items-to', name: 'to', value: query.get('to') || '' });
  const cloud = h('input', { type: 'number', id: 'items-cloud', name: 'cloud', min: 0, max: 100, step: 1, value: query.get('cloud') || '' });
  const limit = h('select', { id: 'items-limit', name: 'limit' }, [10, 20, 50, 100].map((n) => h('option', { value: String(n) }, String(n))));
  limit.value = query.get('limit') || '20';
  const submit = h('button', { type: 'submit', id: 'items-search' }, 'Search');
  const formError = h('div', {});
  const form = h('form', { class: 'search-form', id: 'items-form', role: 'search', 'aria-label': 'Item search' },
    picker.element, area.element,
    h('div', { class: 'row' }, field('From', from), field('To', to)),
    h('div', { class: 'row' }, field('Max cloud cover (%)', cloud, 'Items without a cloud cover are left out when set.'), field('Per page', limit)),
    formError, h('div', { class: 'buttons' }, submit));
  const results = h('section', { id: 'items-results', 'aria-labelledby': 'results-heading' });
  root.append(form, results);

  map.addGeoJSON('footprints', { type: 'FeatureCollection', features: [] }, { opacity: 0.15, markers: true });
  let rowsByKey = new Map();
  map.interactive('footprints', {
    onHover: (key) => { for (const [k, tr] of rowsByKey) tr.classList.toggle('hover', k === key); },
    onClick: (keys, e) => {
      const [collection, ...rest] = keys[0].split('/');
      if (keys.length === 1) {
        location.hash = itemHref(collection, rest.join('/'));
        return;
      }
      map.showPopup(e.lngLat, h('div', {}, h('p', {}, `${keys.length} items here:`),
        h('ul', {}, keys.slice(0, 12).map((k) => {
          const [c, ...r] = k.split('/');
          return h('li', {}, h('a', { href: itemHref(c, r.join('/')) }, r.join('/')));
        }))));
    },
  });
  if (initialBbox) map.fit(initialBbox, { maxZoom: 13 });
  else if (selected.length) map.fitAll(collections.filter((c) => selected.includes(c.id)).map((c) => c.bbox), { maxZoom: 12 });

  let body = null;
  let page = 0;
  let controller = null;
  const show = (doc) => {
    const features = doc.features || [];
    rowsByKey = new Map();
    map.setData('footprints', {
      type: 'FeatureCollection',
      features: features.filter((f) => f.geometry).map((f) => ({ type: 'Feature', geometry: f.geometry, properties: { id: itemKey(f) } })),
    });
    const first = (page - 1) * Number(limit.value) + 1;
    const matched = Number.isInteger(doc.numberMatched) ? ` of ${fmtNumber(doc.numberMatched)}` : '';
    const summary = features.length ? `Items ${first}–${first + features.length - 1}${matched}` : 'No items match this search.';
    const links = doc.links || [];
    const nextLink = links.find((l) => l.rel === 'next');
    const prevLink = links.find((l) => l.rel === 'prev' || l.rel === 'previous');
    const pager = h('nav', { class: 'pager', 'aria-label': 'Result pages' },
      h('button', { type: 'button', class: 'secondary', id: 'items-prev', disabled: !prevLink || page <= 1, onclick: () => go(prevLink, -1) }, '◀ Previous page'),
      h('span', {}, ` Page ${page} `),
      h('button', { type: 'button', class: 'secondary', id: 'items-next', disabled: !nextLink, onclick: () => go(nextLink, 1) }, 'Next page ▶'));
    const tbody = h('tbody', {}, features.map((f) => {
      const key = itemKey(f);
      const cc = cloudCover(f);
      const tr = h('tr', { dataset: { item: f.id, collection: f.collection } },
        h('th', { scope: 'row' }, h('a', { href: itemHref(f.collection, f.id) }, f.id)),
        h('td', {}, f.collection),
        h('td', {}, fmtDateTime(f.properties.datetime || f.properties.start_datetime)),
        h('td', { class: 'num' }, cc == null ? '–' : fmtNumber(cc, 1)));
      tr.addEventListener('mouseenter', () => map.highlight('footprints', key, true));
      tr.addEventListener('mouseleave', () => map.highlight('footprints', key, false));
      tr.addEventListener('focusin', () => map.highlight('footprints', key, true));
      tr.addEventListener('focusout', () => map.highlight('footprints', key, false));
      rowsByKey.set(key, tr);
      return tr;
    }));
    replace(results,
      h('h2', { id: 'results-heading' }, 'Results'),
      h('p', { class: 'count', id: 'items-count', role: 'status' }, summary),
      features.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'items-table' },
        h('caption', { class: 'sr-only' }, 'Items found'),
        h('thead', {}, h('tr', {}, ['Item', 'Collection', 'Date', 'Cloud %'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)) : null,
      features.length ? pager : null);
    announce(summary);
    if (features.length && !initialBbox && page === 1) {
      map.fitAll(features.map((f) => f.bbox).filter(Boolean), { maxZoom: 13 });
    }
  };
  const run = async (request) => {
    if (controller) controller.abort();
    controller = new AbortController();
    replace(results, h('p', { class: 'loading', role: 'status' }, 'Searching…'));
    try {
      const doc = await request(controller.signal);
      if (!ctx.signal.aborted) show(doc);
    } catch (err) {
      if (err.name !== 'AbortError') replace(results, errorBox(err, 'Search failed'));
    }
  };
  const go = (link, delta) => {
    page += delta;
    run((signal) => stac.follow(link, body, signal));
  };

  const search = ({ push = true } = {}) => {
    replace(formError);
    let bbox;
    try {
      bbox = area.get();
    } catch (err) {
      replace(formError, errorBox(err));
      return;
    }
    if (from.value && to.value && to.value < from.value) {
      replace(formError, errorBox('“To” is before “From”.'));
      return;
    }
    const chosen = picker.get();
    body = { limit: Number(limit.value) };
    if (chosen.length) body.collections = chosen;
    if (bbox) body.bbox = bbox;
    if (from.value || to.value) {
      body.datetime = `${from.value ? `${from.value}T00:00:00Z` : '..'}/${to.value ? `${to.value}T23:59:59Z` : '..'}`;
    }
    if (cloud.value !== '') {
      body.filter = { op: '<=', args: [{ property: 'eo:cloud_cover' }, Number(cloud.value)] };
      body['filter-lang'] = 'cql2-json';
    }
    const q = new URLSearchParams({ search: '1' });
    if (chosen.length) q.set('collections', chosen.join(','));
    if (bbox) q.set('bbox', fmtBbox(bbox));
    for (const [k, el] of [['from', from], ['to', to], ['cloud', cloud]]) if (el.value) q.set(k, el.value);
    q.set('limit', limit.value);
    const hash = `#/items?${q}`;
    if (location.hash !== hash) history[push ? 'pushState' : 'replaceState'](null, '', hash);
    page = 1;
    const request = body;
    run((signal) => stac.search(request, signal));
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    search();
  });
  if (query.get('search') || initialBbox || selected.length) search({ push: false });
  return () => { if (controller) controller.abort(); };
}
