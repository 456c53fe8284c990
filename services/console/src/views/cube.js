// One cube: its fill progress, a map layer with a time slider over its dates, the filled parts
// of the cube drawn on the map, and a click-for-time-series chart. Also the list of cubes.
import { cubes } from '../api.js';
import { seriesChart } from '../chart.js';
import { cubeApi } from '../cube-api.js';
import { bboxPolygon } from '../map.js';
import { apiLink, dl, errorBox, field, fmtBbox, fmtDate, h, note, replace, table } from '../ui.js';

const FILLED_POLL_MS = 2500;

/** Layer choices of a cube: true colour when it has red, green and blue; its indices; each band. */
export function layerOptions(cube) {
  const bands = cube.bands || [];
  const options = [];
  if (['red', 'green', 'blue'].every((b) => bands.includes(b))) {
    options.push({ label: 'True colour (red, green, blue)', params: 'variables=red,green,blue', variable: 'red' });
  }
  for (const i of cube.indices || []) options.push({ label: i, params: `index=${i}`, variable: i, index: true });
  for (const b of bands) {
    options.push({ label: `${b} (viridis)`, params: `variables=${b}&colormap_name=viridis`, variable: b });
  }
  return options;
}

function fillText(fill) {
  if (!fill) return '–';
  const extra = [fill.running ? `${fill.running} running` : '', fill.failed ? `${fill.failed} failed` : ''].filter(Boolean);
  return `${fill.done} of ${fill.units} fill units computed${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

export default async function cubeView(ctx) {
  const [name] = ctx.params;
  const { root, map } = ctx;
  ctx.setTitle(`Cube ${name}`);
  root.append(h('p', { class: 'crumbs' }, h('a', { href: '#/cubes' }, 'Cubes'), ' › ', name), h('h1', {}, `Cube ${name}`));
  let cube = await cubeApi.get(name, ctx.signal);
  if (ctx.signal.aborted) return undefined;
  const progress = h('span', { id: 'cube-fill' }, fillText(cube.fill));
  root.append(dl([
    ['Collections', cube.collections.join(', ')],
    ['Steps', `${cube.mode === 'composite' ? 'composites' : 'solar days'}: ${cube.time.length} (${fmtDate(cube.time[0])} – ${fmtDate(cube.time[cube.time.length - 1])})`],
    ['Grid', `${cube.grid.name} (${cube.crs}), ${cube.shape[2]} × ${cube.shape[1]} px`],
    ['Chunks (t, y, x)', cube.chunks.join(' × ')],
    ['Extent', fmtBbox(cube.bbox)],
    ['Filled', progress],
  ]), h('p', { class: 'buttons' },
    apiLink(cubeApi.configUrl(name), 'ODC ingestion configuration (YAML)'), ' ',
    apiLink(`${cube.links.find((l) => l.rel === 'collection').href}`, 'STAC collection')));

  map.fit(cube.bbox, { maxZoom: 16 });
  map.addGeoJSON('cube-extent', { type: 'FeatureCollection', features: [{ type: 'Feature', properties: { id: name }, geometry: bboxPolygon(cube.bbox) }] },
    { opacity: 0.0, dash: [2, 2] });

  // the layer and its time slider
  const options = layerOptions(cube);
  const layerSelect = h('select', { id: 'cube-layer' }, options.map((o, i) => h('option', { value: String(i) }, o.label)));
  const slider = h('input', { type: 'range', id: 'cube-time', min: 0, max: String(cube.time.length - 1), value: String(cube.time.length - 1), step: 1 });
  const label = h('output', { for: 'cube-time', id: 'cube-time-label', class: 'time-label' });
  const fillTiles = h('input', { type: 'checkbox', id: 'cube-fill-tiles', checked: true });
  let layerAdded = false;
  const tileUrl = () => {
    const option = options[Number(layerSelect.value)] || options[0];
    return cubeApi.tiles(name, `time_index=${slider.value}&${option.params}${fillTiles.checked ? '&fill=true' : ''}`);
  };
  const showLayer = () => {
    const when = cube.time[Number(slider.value)];
    label.textContent = `${fmtDate(when)} (step ${Number(slider.value) + 1} of ${cube.time.length})`;
    slider.setAttribute('aria-valuetext', fmtDate(when));
    if (!options.length) return;
    if (layerAdded) map.setTiles('cube-layer', tileUrl());
    else {
      map.addTiles('cube-layer', tileUrl(), { bounds: cube.bbox, label: 'Cube layer' });
      layerAdded = true;
    }
  };
  const prev = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Previous date', onclick: () => { slider.value = String(Math.max(0, Number(slider.value) - 1)); showLayer(); } }, '◀');
  const next = h('button', { type: 'button', class: 'secondary', 'aria-label': 'Next date', onclick: () => { slider.value = String(Math.min(cube.time.length - 1, Number(slider.value) + 1)); showLayer(); } }, '▶');
  slider.addEventListener('input', showLayer);
  layerSelect.addEventListener('change', showLayer);
  fillTiles.addEventListener('change', showLayer);
  root.append(h('section', { 'aria-labelledby': 'cube-map-heading' },
    h('h2', { id: 'cube-map-heading' }, 'Map'),
    options.length ? field('Layer', layerSelect) : note('No variable to show.'),
    h('div', { class: 'time-row' }, h('div', { class: 'field grow' }, h('label', { for: 'cube-time' }, 'Date'),
      h('div', { class: 'inline' }, prev, slider, next))),
    h('p', {}, 'Showing: ', label),
    h('p', {}, fillTiles, ' ', h('label', { for: 'cube-fill-tiles' }, 'Compute the parts of the cube the map shows (tiles over at most 4 fill units)')),
    h('p', { class: 'hint' }, 'Green outlines: the parts of the cube already computed (', h('span', { id: 'cube-filled-count' }, '0'), ' units).')));
  showLayer();

  // the filled parts, redrawn while the view is open (tiles and time series fill the cube)
  const filledCount = root.querySelector('#cube-filled-count');
  let filledAdded = false;
  let timer = null;
  const refreshFilled = async () => {
    try {
      const [regions, doc] = await Promise.all([cubeApi.filled(name, ctx.signal), cubeApi.get(name, ctx.signal)]);
      if (ctx.signal.aborted) return;
      cube = { ...cube, fill: doc.fill };
      replace(progress, fillText(doc.fill));
      filledCount.textContent = String(regions.features.filter((f) => f.properties.state === 'done').length);
      const done = { ...regions, features: regions.features.map((f) => ({ ...f, properties: { ...f.properties, id: f.id } })) };
      if (filledAdded) map.setData('cube-filled', done);
      else {
        map.addGeoJSON('cube-filled', done, { color: '#1e6b34', line: '#1e6b34', opacity: 0.04, width: 1.5 });
        filledAdded = true;
      }
    } catch (err) {
      if (err.name !== 'AbortError') console.warn('filled parts', err);
    }
    if (!ctx.signal.aborted) timer = window.setTimeout(refreshFilled, FILLED_POLL_MS);
  };
  refreshFilled();

  // click for a time series
  const variable = (options[0] && options[0].variable) || null;
  const out = h('div', { id: 'timeseries', role: 'status', 'aria-live': 'polite' });
  root.append(h('section', { 'aria-labelledby': 'timeseries-heading' }, h('h2', { id: 'timeseries-heading' }, 'Time series'),
    variable ? h('p', { class: 'hint' }, `Click the map inside the cube to chart ${variable} there.`) : note('No variable to chart.'), out));
  let pending = null;
  if (variable) {
    map.on('click', async (e) => {
      const { lng, lat } = e.lngLat;
      if (pending) pending.abort();
      pending = new AbortController();
      const { signal } = pending;
      const option = options[Number(layerSelect.value)] || options[0];
      const chartVar = option.variable;
      replace(out, h('p', { class: 'loading' }, `Reading ${chartVar} at ${lng.toFixed(5)}, ${lat.toFixed(5)}…`));
      map.marker('timeseries-point', [lng, lat]);
      try {
        const request = option.index ? { indices: [chartVar] } : { bands: [chartVar] };
        const series = await cubes.timeseries({ cube: name, lon: lng, lat, ...request }, signal);
        if (ctx.signal.aborted || signal.aborted) return;
        replace(out, seriesChart(series, chartVar));
      } catch (err) {
        if (err.name === 'AbortError' || ctx.signal.aborted) return;
        replace(out, errorBox(err, 'No time series here'));
      }
    });
  }
  return () => window.clearTimeout(timer);
}

/** The cubes, with a link to build one. */
export async function cubeList(ctx) {
  ctx.setTitle('Cubes');
  const { root } = ctx;
  root.append(h('h1', {}, 'Cubes'),
    h('p', { class: 'lead' }, 'Analysis-ready Zarr cubes of the catalog. ', h('a', { href: '#/cubes/new', id: 'build-cube' }, 'Build a cube')));
  const list = await cubeApi.list();
  if (ctx.signal.aborted) return;
  if (!list.length) {
    root.append(note('No cube yet.'));
    return;
  }
  root.append(h('div', { class: 'table-wrap' }, table([
    { label: 'Cube', cell: (c) => h('a', { href: `#/cubes/${encodeURIComponent(c.name)}` }, c.name), header: true },
    { label: 'Collections', cell: (c) => c.collections.join(', ') },
    { label: 'Steps', cell: (c) => String(c.time.length) },
    { label: 'Grid', cell: (c) => c.grid.name },
  ], list, { caption: 'Cubes' })));
}
