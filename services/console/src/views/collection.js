// One collection: facts, bands, a layer of its items with a time slider, and its JSON.
import { cubes, raster, stac } from '../api.js';
import { seriesChart } from '../chart.js';
import { bboxPolygon } from '../map.js';
import { itemCount, summarize } from '../catalog.js';
import { layerControls } from '../layer-controls.js';
import { accessSection } from '../sharing.js';
import { bandAssets, renderOptions } from '../render.js';
import {
  apiLink, append, dl, errorBox, field, fmtBbox, fmtNumber, fmtRange, h, jsonBlock, note, replace, table,
} from '../ui.js';

function lastDay(month) {
  const [y, m] = month.split('-').map(Number);
  return new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
}

/** Dates grouped by day or month: [{key, label, count, interval}] in time order. */
export function timeSteps(datetimes, by) {
  const groups = new Map();
  for (const d of datetimes) {
    const key = by === 'month' ? d.slice(0, 7) : d.slice(0, 10);
    groups.set(key, (groups.get(key) || 0) + 1);
  }
  return [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([key, count]) => {
    const [start, end] = by === 'month' ? [`${key}-01`, lastDay(key)] : [key, key];
    return { key, label: key, count, interval: `${start}T00:00:00Z/${end}T23:59:59Z` };
  });
}

/** What a click on the map charts: NDVI when the collection has red and nir bands, else the
 * first band of its default rendering (or its first band); a cube's first index or band. */
export function seriesRequest(id, doc, assets) {
  const cube = doc['stacube:cube'];
  if (cube) {
    const variable = (cube.indices || [])[0] || (cube.bands || [])[0];
    return variable ? { cube: id, variable, ...((cube.indices || []).includes(variable) ? { indices: [variable] } : { bands: [variable] }) } : null;
  }
  const commons = new Set(assets.map((a) => a.common));
  if (commons.has('red') && commons.has('nir')) return { collection: id, indices: ['NDVI'], variable: 'NDVI' };
  const renders = doc.renders || {};
  const render = renders.default || Object.values(renders)[0];
  const key = (render && render.assets && render.assets.length === 1 && render.assets[0])
    || (assets.find((a) => !a.quality) || {}).key;
  return key ? { collection: id, bands: [key], variable: key } : null;
}

function timeSeriesSection(ctx, id, doc, assets) {
  const { map } = ctx;
  const request = seriesRequest(id, doc, assets);
  const out = h('div', { id: 'timeseries', role: 'status', 'aria-live': 'polite' });
  const section = h('section', { 'aria-labelledby': 'timeseries-heading' },
    h('h2', { id: 'timeseries-heading' }, 'Time series'),
    request ? h('p', { class: 'hint' }, `Click the map inside the collection to chart ${request.variable} there (clear dates joined).`)
      : note('No band to chart.'),
    out);
  if (!request) return section;
  let pending = null;
  map.on('click', async (e) => {
    const { lng, lat } = e.lngLat;
    if (pending) pending.abort();
    pending = new AbortController();
    const signal = pending.signal;
    replace(out, h('p', { class: 'loading' }, `Reading ${request.variable} at ${lng.toFixed(5)}, ${lat.toFixed(5)}…`));
    map.marker('timeseries-point', [lng, lat]);
    try {
      const series = await cubes.timeseries({ ...request, lon: lng, lat }, signal);
      if (ctx.signal.aborted || signal.aborted) return;
      replace(out, seriesChart(series, request.variable));
    } catch (err) {
      if (err.name === 'AbortError' || ctx.signal.aborted) return;
      replace(out, errorBox(err, 'No time series here'));
    }
  });
  return section;
}

export default async function collection(ctx) {
  const [id] = ctx.params;
  const { root, map } = ctx;
  ctx.setTitle(id);
  const [doc, indices] = await Promise.all([stac.collection(id), raster.indices().catch(() => [])]);
  if (ctx.signal.aborted) return;
  const s = summarize(doc);
  ctx.setTitle(s.title);
  const countEl = h('span', { id: 'collection-item-count' }, '…');
  itemCount(id).then((n) => { countEl.textContent = fmtNumber(n); }).catch(() => { countEl.textContent = 'unknown'; });
  const quality = doc['stacube:quality'];
  append(root, [  // (Element.append would print a null child as "null")
    h('p', { class: 'crumbs' }, h('a', { href: '#/collections' }, 'Collections'), ' / ', h('code', {}, id)),
    h('h1', {}, s.title),
    s.description && s.description !== s.title ? h('p', { class: 'lead' }, s.description) : null,
    h('p', { class: 'actions' },
      h('a', { class: 'button', href: `#/items?collections=${encodeURIComponent(id)}` }, 'Search items'), ' ',
      h('a', { class: 'button', href: `#/mosaic?collections=${encodeURIComponent(id)}` }, 'Make a mosaic'), ' ',
      apiLink(`${(doc.links || []).find((l) => l.rel === 'self')?.href || ''}`, 'STAC JSON', { id: 'collection-json' })),
    dl([
      ['Id', h('code', {}, id)],
      ['Platform', s.platforms.join(', ') || '–'],
      ['Instrument', s.instruments.join(', ') || '–'],
      ['Dates', fmtRange(s.start, s.end)],
      ['Extent', s.bbox ? fmtBbox(s.bbox) : '–'],
      ['Items', countEl],
      ['Quality band', quality ? `${quality.asset} (${quality.preset || quality.kind})` : null],
      ['License', doc.license],
    ]),
    accessSection(id)]);

  const assets = bandAssets(doc);
  root.append(h('h2', {}, 'Bands'), assets.length ? h('div', { class: 'table-wrap' }, table([
    { label: 'Asset', cell: (a) => h('code', {}, a.key), header: true },
    { label: 'Common name', cell: (a) => a.common || '–' },
    { label: 'Data type', cell: (a) => a.dataType || '–' },
    { label: 'Scale / offset', cell: (a) => (a.scale != null ? `${a.scale} / ${a.offset ?? 0}` : '–') },
    { label: 'No data', cell: (a) => (a.nodata ?? '–') },
    { label: 'Roles', cell: (a) => a.roles.join(', ') },
  ], assets, { caption: `Bands of ${id}` })) : note('No item_assets in this collection.'));

  // the time slider: a registered search per date (or month), rendered as one tile layer
  const section = h('section', { 'aria-labelledby': 'time-heading' }, h('h2', { id: 'time-heading' }, 'Items by date'));
  root.append(section);
  if (s.bbox) {
    map.addGeoJSON('extent', { type: 'FeatureCollection', features: [{ type: 'Feature', properties: { id }, geometry: bboxPolygon(s.bbox) }] }, { opacity: 0.02, markers: true });
    map.fit(s.bbox, { maxZoom: 13 });
  }
  const options = renderOptions(assets, indices);
  if (!options.length) {
    section.append(note('No band to render.'));
  } else {
    const datetimes = await stac.datetimes(id);
    if (ctx.signal.aborted) return;
    if (!datetimes.length) {
      section.append(note('No items yet.'));
    } else {
      const by = h('select', { id: 'time-by' }, h('option', { value: 'date' }, 'date'), h('option', { value: 'month' }, 'month'));
      const slider = h('input', { type: 'range', id: 'time-slider', min: 0, value: 0, step: 1 });
      const label = h('output', { for: 'time-slider', id: 'time-label', class: 'time-label' });
      const prev = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Previous date' }, '◀');
      const next = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Next date' }, '▶');
      const problem = h('div', {});
      const registered = new Map();
      let steps = [];
      let params = '';
      let layerAdded = false;
      const update = async () => {
        const step = steps[Number(slider.value)];
        if (!step) return;
        const text = `${step.label} (${step.count} item${step.count === 1 ? '' : 's'})`;
        label.textContent = text;
        slider.setAttribute('aria-valuetext', text);
        replace(problem);
        try {
          if (!registered.has(step.interval)) {
            registered.set(step.interval, raster.register({ collections: [id], datetime: step.interval }));
          }
          const searchId = await registered.get(step.interval);
          if (ctx.signal.aborted || steps[Number(slider.value)] !== step) return;
          const url = raster.searchTiles(searchId, params);
          if (layerAdded) map.setTiles('time-layer', url);
          else {
            map.addTiles('time-layer', url, { bounds: s.bbox, label: 'Date layer' });
            layerAdded = true;
          }
        } catch (err) {
          registered.delete(step.interval);
          replace(problem, errorBox(err, 'Cannot show this date'));
        }
      };
      const regroup = () => {
        steps = timeSteps(datetimes, by.value);
        slider.max = String(Math.max(0, steps.length - 1));
        slider.value = String(Math.min(Number(slider.value), steps.length - 1));
        update();
      };
      const controls = layerControls({
        options, label: 'Rendering of the date layer', idPrefix: 'time',
        onChange: (p) => { params = p; update(); },
        onOpacity: (v) => map.setOpacity('time-layer', v),
      });
      params = controls.params();
      slider.addEventListener('input', update);
      prev.addEventListener('click', () => { slider.value = String(Math.max(0, Number(slider.value) - 1)); update(); });
      next.addEventListener('click', () => { slider.value = String(Math.min(steps.length - 1, Number(slider.value) + 1)); update(); });
      by.addEventListener('change', regroup);
      section.append(
        h('p', {}, 'Tiles of the items of one date or month (a registered search of the raster API).'),
        h('div', { class: 'time-row' },
          field('Group by', by),
          h('div', { class: 'field grow' }, h('label', { for: 'time-slider' }, 'Date'),
            h('div', { class: 'inline' }, prev, slider, next)),
        ),
        h('p', {}, 'Showing: ', label),
        problem,
        controls.element);
      regroup();
    }
  }
  root.append(timeSeriesSection(ctx, id, doc, assets));
  root.append(h('h2', {}, 'Collection JSON'), jsonBlock(doc, 'Show the full collection document'));
}
