// One job: state and progress (refreshed while it runs), parameters, the scene and pixel counts,
// the per-scene table, the result as a tile layer with an opacity slider and a legend, a filled
// preview (no-data in magenta), and the downloads (COGs, Zarr, a region as NetCDF). A cube's fill
// (kind "cube") shows its progress in fill units and, once done, what it computed and a link to the cube.
import { config, fetchJSON, jobReport, jobs, raster } from '../api.js';
import { areaField } from '../area.js';
import { bboxPolygon } from '../map.js';
import { layerControls } from '../layer-controls.js';
import { checkboxes } from '../form-parts.js';
import {
  announce, apiLink, dl, errorBox, field, fmtBbox, fmtDateTime, fmtDuration, fmtNumber, h, isActive, note, replace,
  showImage, stateBadge, usedBadge,
} from '../ui.js';
import { itemHref } from './items.js';

const POLL_MS = 1500;

/** Render options of a composite's variables (assets of its items are named after them). */
export function resultOptions(variables, indices, scenes = 1) {
  const has = (v) => variables.includes(v);
  const opts = [];
  if (['red', 'green', 'blue'].every(has)) opts.push({ id: 'truecolor', label: 'True colour (red, green, blue)', kind: 'rgb', assets: ['red', 'green', 'blue'], rescale: '0,0.3' });
  if (['nir', 'red', 'green'].every(has)) opts.push({ id: 'falsecolor', label: 'False colour (nir, red, green)', kind: 'rgb', assets: ['nir', 'red', 'green'], rescale: '0,0.3' });
  const presets = Object.fromEntries(indices.map((i) => [i.name, i]));
  for (const v of variables) {
    if (presets[v]) {
      opts.push({ id: `band:${v}`, label: `${v} (${presets[v].long_name})`, kind: 'band', assets: [v], colormap: presets[v].colormap_name, rescale: presets[v].rescale.join(',') });
    } else if (v.endsWith('_count')) {
      opts.push({ id: `band:${v}`, label: `${v.replace('_', ' ')} (observations per pixel)`, kind: 'band', assets: [v], colormap: 'viridis', rescale: `0,${Math.max(1, scenes)}` });
    } else if (v === 'provenance') {
      opts.push({ id: 'band:provenance', label: 'provenance (day of year of the chosen scene)', kind: 'band', assets: [v], colormap: 'spectral', rescale: '1,366' });
    } else if (/^[A-Z0-9]+$/.test(v) && !presets[v]) {
      opts.push({ id: `band:${v}`, label: `${v}`, kind: 'band', assets: [v], colormap: 'viridis', rescale: '-1,1' });
    } else {
      opts.push({ id: `band:${v}`, label: `Single band: ${v}`, kind: 'band', assets: [v], rescale: '0,0.3' });
    }
  }
  return opts;
}

function link(href, text) {
  if (!href) return '–';
  if (/^(https?:|\/)/.test(href)) return apiLink(new URL(href, document.baseURI).href, text, { download: true });
  return h('code', { class: 'path' }, href);
}

function num(value, digits = 0) {
  return h('td', { class: 'num', dataset: { value: value == null ? '' : String(value) } }, fmtNumber(value, digits));
}

/** Whether a scene gave clear pixels (a scene with none is not shown as used, whatever its
 * rank: it contributed no clear value). */
export function sceneUsed(scene) {
  return !!scene.used && (scene.clear_pixels == null || scene.clear_pixels > 0);
}

function sceneReason(scene) {
  if (scene.used && !sceneUsed(scene)) return 'no clear pixel in the area';
  if (scene.used) return scene.rank != null ? `rank ${scene.rank}` : '';
  return scene.reason || '';
}

function scenesTable(report) {
  const scenes = report.scenes || [];
  // six columns that wrap: clean %, used and the reason stay in view without scrolling sideways
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'scenes-table' },
    h('caption', {}, `${scenes.length} scenes over the area; ${scenes.filter(sceneUsed).length} used`),
    h('thead', {}, h('tr', {}, ['Date', 'Item', 'Clean pixels', 'Clean %', 'Used', 'Reason / rank']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, scenes.map((s) => h('tr', { dataset: { item: s.item_id } },
      h('td', {}, (s.datetime || '').slice(0, 10)),
      h('th', { scope: 'row' }, h('a', { href: itemHref(s.collection, s.item_id) }, s.item_id),
        h('small', { class: 'sub' }, s.collection)),
      h('td', { class: 'num', dataset: { value: s.clear_pixels == null ? '' : String(s.clear_pixels) } },
        fmtNumber(s.clear_pixels), h('small', { class: 'sub' }, `of ${fmtNumber(s.valid_pixels)} valid`)),
      num(s.clear_percent, 1),
      h('td', { dataset: { used: String(sceneUsed(s)) } }, usedBadge(sceneUsed(s))),
      h('td', { class: 'wrap' }, sceneReason(s)))))));
}

function stepsTable(report, collection, items) {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'steps-table' },
    h('caption', {}, 'Periods'),
    h('thead', {}, h('tr', {}, ['Period', 'From', 'To', 'Scenes', 'Result item'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, (report.steps || []).map((s, i) => h('tr', {},
      h('th', { scope: 'row' }, s.label), h('td', {}, fmtDateTime(s.start)), h('td', {}, fmtDateTime(s.end)),
      h('td', { class: 'num' }, String((s.items || []).length)),
      h('td', {}, items[i] ? h('a', { href: itemHref(collection, items[i]) }, items[i]) : '–'))))));
}

/** Scene and pixel counts of a completed job (the job document's summary, else the report's). */
export function jobSummary(job, report) {
  if (job.summary) return job.summary;
  const scenes = report.scenes || [];
  const shape = (report.grid && report.grid.shape) || [];
  return {
    scenes: scenes.length,
    scenes_used: scenes.filter(sceneUsed).length,
    pixels: shape.length === 2 ? shape[0] * shape[1] : null,
    shape,
    clear_observations: null,
    periods: (report.steps || []).length,
    cogs: null,
  };
}

function summaryList(summary, variables) {
  const s = summary;
  return h('div', { id: 'task-summary', dataset: { scenes: String(s.scenes), scenesUsed: String(s.scenes_used), pixels: String(s.pixels) } },
    dl([
      ['Scenes', `${fmtNumber(s.scenes_used)} used of ${fmtNumber(s.scenes)} over the area and dates`],
      ['Pixels', s.pixels != null ? `${fmtNumber(s.pixels)} per variable and period (${(s.shape || []).join(' × ')})` : null],
      ['Clear observations', s.clear_observations != null ? `${fmtNumber(s.clear_observations)} clear pixels of the used scenes` : null],
      ['Outputs', s.cogs != null ? `${fmtNumber(s.cogs)} COGs: ${fmtNumber(s.periods)} period(s) × ${fmtNumber(variables.length)} variable(s)` : null],
    ]));
}

function downloads(job, report) {
  const d = job.downloads || {};
  const cogs = d.cogs || (report && report.outputs && report.outputs.cogs) || {};
  const rows = Object.entries(cogs).flatMap(([label, vars]) => Object.entries(vars).map(([v, href]) => [label, v, href]));
  return h('div', { id: 'downloads' },
    h('ul', { class: 'downloads' },
      h('li', {}, 'Report (JSON): ', link(d.report, 'report.json')),
      h('li', {}, 'Zarr cube: ', link(d.zarr, 'cube.zarr'), ' ', h('small', {}, '(a directory: open it with xarray.open_zarr)'))),
    rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'cogs-table' },
      h('caption', {}, 'Cloud-Optimized GeoTIFFs'),
      h('thead', {}, h('tr', {}, ['Period', 'Variable', 'COG'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map(([label, v, href]) => h('tr', {},
        h('td', {}, label), h('th', { scope: 'row' }, v), h('td', {}, link(href, `${v}.tif`))))))) : null);
}

const enc = encodeURIComponent;

/** The cube page of a cube job's cube. */
export const cubeHref = (name) => `#/cubes/${enc(name)}`;

/** What a completed cube fill computed (its report's ``fill``: units, computed, reused...). */
function cubeResult(job) {
  const f = (job.report && job.report.fill) || {};
  return h('div', { id: 'task-cube-result' },
    h('h2', {}, 'Result'),
    dl([
      ['Fill units', f.units != null ? `${fmtNumber(f.units)} (${fmtNumber(f.computed)} computed, ${fmtNumber(f.reused)} already in the store)` : null],
      ['Source items read', f.items != null ? fmtNumber(f.items) : null],
      ['Fill time', f.seconds != null ? `${fmtNumber(f.seconds, 1)} s` : null],
    ]),
    h('p', {}, h('a', { href: cubeHref(job.cube), id: 'task-open-cube', class: 'button' }, `Open cube ${job.cube}`)));
}

/** The 2nd and 98th percentiles of band 1 of an item's asset (raster API statistics), or null. */
async function assetRange(collection, item, asset) {
  const doc = await fetchJSON(`${config.raster}/collections/${enc(collection)}/items/${enc(item)}/statistics?assets=${enc(asset)}`)
    .catch(() => null);
  const find = (o) => (o && typeof o === 'object' ? ('percentile_2' in o ? o : Object.values(o).map(find).find(Boolean)) : null);
  const stats = find(doc);
  if (!stats || !Number.isFinite(stats.percentile_2) || !Number.isFinite(stats.percentile_98)) return null;
  const round = (v) => Number(v.toPrecision(4));
  const lo = round(stats.percentile_2);
  const hi = stats.percentile_98 > stats.percentile_2 ? round(stats.percentile_98) : lo + 1;
  return `${lo},${hi}`;
}

/** Render options of a process's outputs: viridis over the 2nd-98th percentiles of each one's
 * values (its statistics in the raster API; 0,1 when they cannot be had). */
export async function processOptions(collection, item, variables) {
  return Promise.all(variables.map(async (v) => ({
    id: `band:${v}`, label: `${v} (process output)`, kind: 'band', assets: [v], colormap: 'viridis',
    rescale: (await assetRange(collection, item, v)) || '0,1',
  })));
}

/** A filled preview of one output: the COG with its no-data pixels painted magenta. */
function filledPreview(jobId, report, options) {
  const cogs = (report.outputs && report.outputs.cogs) || {};
  const labels = Object.keys(cogs);
  if (!labels.length) return null;
  const variables = Object.keys(cogs[labels[0]]);
  const byVar = Object.fromEntries(options.filter((o) => o.kind === 'band').map((o) => [o.assets[0], o]));
  const period = h('select', { id: 'preview-period' }, labels.map((l) => h('option', { value: l }, l)));
  const variable = h('select', { id: 'preview-variable' }, variables.map((v) => h('option', { value: v }, v)));
  const first = variables.find((v) => !/_count$|^provenance$/.test(v)) || variables[0];
  variable.value = first;
  const img = h('img', { id: 'filled-preview', class: 'filled-preview', alt: '' });
  const problem = h('div', { id: 'preview-problem' });
  const show = () => {
    const o = byVar[variable.value] || {};
    const q = new URLSearchParams({ period: period.value, variable: variable.value, colormap_name: o.colormap || 'greys' });
    if (o.rescale) q.set('rescale', o.rescale);
    const url = `${config.jobs}/${enc(jobId)}/preview.png?${q}`;
    img.alt = `Preview of ${variable.value} (${period.value}); pixels without data are magenta`;
    replace(problem);
    showImage(img, url).catch((err) => {
      if (img.dataset.src === url) replace(problem, errorBox(err, 'Cannot show the preview'));
    });
  };
  period.addEventListener('change', show);
  variable.addEventListener('change', show);
  show();
  return h('div', { id: 'preview' },
    h('div', { class: 'row' }, field('Period', period), field('Variable', variable)), problem,
    h('figure', { class: 'preview' }, img,
      h('figcaption', {}, h('span', { class: 'swatch nodata', 'aria-hidden': 'true' }), ' no data (nodata, NaN or outside the scenes)')));
}

/** The NetCDF download of a region of the outputs (every period, the chosen variables). */
function regionDownload(jobId, report, bbox, map) {
  const variables = Object.keys(Object.values((report.outputs && report.outputs.cogs) || {})[0] || {});
  const link = apiLink(null, 'region.nc', { download: true, id: 'region-download' });
  const size = h('small', { class: 'hint', id: 'region-size' });
  const shape = (report.grid && report.grid.shape) || [];
  const list = h('ul', { class: 'checks columns', id: 'region-variables' }, checkboxes('region-var', variables, variables));
  const update = () => {
    let box = null;
    try {
      box = area.get();
    } catch {
      box = null; // the field says what is wrong with it
    }
    const vars = [...list.querySelectorAll('input:checked')].map((b) => b.value);
    link.hidden = !box || !vars.length;
    if (link.hidden) return;
    const q = new URLSearchParams({ bbox: box.join(','), variables: vars.join(',') });
    link.href = new URL(`${config.jobs}/${enc(jobId)}/region.nc?${q}`, document.baseURI).href;
    if (bbox && shape.length === 2) {
      const frac = Math.min(1, ((box[2] - box[0]) * (box[3] - box[1])) / ((bbox[2] - bbox[0]) * (bbox[3] - bbox[1])));
      size.textContent = `≈ ${fmtNumber(frac * shape[0] * shape[1])} px per variable and period`;
    }
  };
  const area = areaField(map, { value: bbox, onChange: update });
  list.addEventListener('change', update);
  update();
  return h('div', { id: 'region' },
    h('p', {}, 'A region of the outputs (every period) as NetCDF, in the outputs’ CRS; large regions are refused.'),
    area.element, h('fieldset', {}, h('legend', {}, 'Variables'), list),
    h('p', {}, 'NetCDF: ', link, ' ', size));
}

export default async function task(ctx) {
  const [id] = ctx.params;
  const { root, map } = ctx;
  ctx.setTitle(`Task ${id}`);
  const status = h('div', { class: 'task-status', id: 'task-status', role: 'status', 'aria-live': 'polite' });
  const actions = h('p', { class: 'actions' });
  const problem = h('div', {});
  const params = h('section', { 'aria-labelledby': 'params-heading' });
  const result = h('section', { id: 'task-result' });
  root.append(h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', h('code', {}, id)),
    h('h1', {}, 'Task ', h('code', {}, id)), status, actions, problem, params, result);

  let timer = null;
  let shownParams = false;
  let shownResult = false;
  let lastState = null;
  const indices = await raster.indices().catch(() => []);

  const showResult = async (job) => {
    shownResult = true;
    const report = await jobReport(job);
    if (ctx.signal.aborted) return;
    if (!report) {
      replace(result, note('No report.'));
      return;
    }
    const collection = job.collection || report.collection;
    const items = job.items && job.items.length ? job.items : (report.items || []);
    const variables = report.variables || Object.keys(Object.values((job.downloads || {}).cogs || {})[0] || {});
    const steps = report.steps || [];
    const used = (report.scenes || []).filter((s) => s.used).length;
    const options = report.process && items.length
      ? await processOptions(collection, items[0], variables)
      : resultOptions(variables, indices, used);
    if (ctx.signal.aborted) return;
    const stepSelect = h('select', { id: 'result-step' }, steps.map((s, i) => h('option', { value: String(i) }, `${s.label} (${(s.items || []).length} scenes)`)));
    const bbox = job.parameters && (job.parameters.bbox_crs || 'EPSG:4326') === 'EPSG:4326' ? job.parameters.bbox : null;
    let params = '';
    let added = false;
    const urlBox = h('input', { type: 'text', readonly: true, id: 'result-url', class: 'url' });
    const apply = () => {
      const item = items[Number(stepSelect.value) || 0];
      if (!item || !collection || !params) return;
      const url = raster.itemTiles(collection, item, params);
      urlBox.value = url;
      if (added) map.setTiles('result', url);
      else {
        map.addTiles('result', url, { bounds: bbox, label: 'Result' });
        added = true;
      }
    };
    const controls = layerControls({
      options, label: 'Result layer', idPrefix: 'result', onChange: (p) => { params = p; apply(); },
      onOpacity: (v) => map.setOpacity('result', v),
    });
    params = controls.params();
    stepSelect.addEventListener('change', apply);
    replace(result,
      h('h2', {}, 'Summary'), summaryList(jobSummary(job, report), variables),
      h('h2', {}, 'Result'),
      items.length ? h('div', {},
        h('div', { class: 'field' }, h('label', { for: 'result-step' }, 'Period'), stepSelect),
        controls.element,
        h('div', { class: 'field' }, h('label', { for: 'result-url' }, 'Tile URL (XYZ)'), urlBox))
        : note('The result was not registered as items.'),
      h('h2', {}, 'Filled preview'),
      h('p', {}, 'The whole output at a glance: pixels without data are painted magenta.'),
      filledPreview(id, report, options) || note('No output.'),
      h('h2', {}, 'Downloads'), downloads(job, report),
      h('h3', {}, 'A region as NetCDF'), regionDownload(id, report, bbox, map),
      h('h2', {}, 'Scenes'),
      h('p', {}, 'Clean pixels: clear (cloud-free, valid) pixels of the scene inside the area; clean % = clean / valid.'),
      scenesTable(report),
      steps.length ? [h('h2', {}, 'Periods'), stepsTable(report, collection, items)] : null,
      report.grid ? [h('h2', {}, 'Output grid'), dl([
        ['CRS', report.grid.crs], ['Shape (rows × columns)', (report.grid.shape || []).join(' × ')],
        ['Bounds (grid CRS)', report.grid.bbox ? fmtBbox(report.grid.bbox) : null], ['Tiles', report.grid.tiles],
      ])] : null);
    apply();
  };

  const render = (job) => {
    const prog = job.progress || {};
    const total = prog.tiles_total || 0;
    const done = prog.tiles_done || 0;
    const isCube = job.kind === 'cube';
    replace(status,
      h('p', { class: 'state-line' }, stateBadge(job.state),
        prog.stage && isActive(job.state) ? ` · stage: ${prog.stage}` : ''),
      isActive(job.state) && total ? h('p', {},
        h('label', { for: 'task-progress' }, 'Progress '),
        h('progress', { id: 'task-progress', max: String(total), value: String(done) }),
        ` ${done} of ${total} ${isCube ? 'fill units' : 'tiles'}${prog.tiles_failed ? `, ${prog.tiles_failed} failed` : ''}`) : null,
      dl([
        ['Submitted', fmtDateTime(job.created)],
        ['Started', job.started ? fmtDateTime(job.started) : null],
        ['Finished', job.finished ? fmtDateTime(job.finished) : null],
        ['Duration', job.started ? fmtDuration(job.started, job.finished) : null],
        ['Output collection', job.collection ? h('a', { href: `#/collections/${encodeURIComponent(job.collection)}` }, job.collection) : null],
        ['Cube', isCube && job.cube ? h('a', { href: cubeHref(job.cube), id: 'task-cube' }, job.cube) : null],
      ]));
    replace(actions);
    if (isActive(job.state)) {
      actions.append(h('button', {
        type: 'button', class: 'danger', id: 'task-cancel',
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await jobs.cancel(id);
            announce('Cancellation requested.');
            refresh();
          } catch (err) {
            replace(problem, errorBox(err, 'Cannot cancel'));
            e.target.disabled = false;
          }
        },
      }, h('span', { 'aria-hidden': 'true' }, '⊘ '), 'Cancel job'));
    }
    if (job.state === 'failed') replace(problem, errorBox(job.error || 'the job failed', 'Failed'));
    else if (job.state === 'cancelled') replace(problem, note(job.error || 'The job was cancelled.'));
    else replace(problem);
    if (job.state !== lastState && lastState) announce(`Job ${job.state}.`);
    lastState = job.state;
    if (!shownParams && job.parameters) {
      shownParams = true;
      const p = job.parameters;
      if (isCube) {
        replace(params, h('h2', { id: 'params-heading' }, 'Parameters'), dl([
          ['Task', 'Fill the whole cube (every tile and time chunk)'],
          ['Cube', job.cube ? h('a', { href: cubeHref(job.cube) }, job.cube) : null],
        ]));
      } else replace(params, h('h2', { id: 'params-heading' }, 'Parameters'), dl([
        ['Collections', (p.collections || []).join(', ')],
        ['Area', p.bbox ? `${fmtBbox(p.bbox)} (${p.bbox_crs || 'EPSG:4326'})` : null],
        ['Dates', p.datetime],
        ['Process', p.process_name ? `${p.process_name} (version ${p.version})` : null],
        ['Process parameters', p.process_name ? h('code', { class: 'path', id: 'task-process-parameters' }, JSON.stringify(p.parameters || {})) : null],
        ['Method', p.process_name ? null : p.method],
        ['Bands', (p.bands || []).join(', ') || '–'],
        ['Indices', (p.indices || []).join(', ') || '–'],
        ['Max cloud cover', p.max_cloud != null ? `${p.max_cloud} %` : 'no filter'],
        ['Period', p.period || 'whole range'],
        ['Output CRS', p.crs || 'native'],
        ['Resolution', p.resolution || 'native'],
      ]));
      if (p.bbox && (p.bbox_crs || 'EPSG:4326') === 'EPSG:4326') {
        map.addGeoJSON('job-area', { type: 'FeatureCollection', features: [{ type: 'Feature', properties: { id: 'area' }, geometry: bboxPolygon(p.bbox) }] },
          { opacity: 0, width: 2, dash: [3, 2] });
        map.fit(p.bbox, { maxZoom: 18 });
      }
    }
    if (job.state === 'completed' && !shownResult && isCube) {
      shownResult = true;
      replace(result, cubeResult(job));
    } else if (job.state === 'completed' && !shownResult) {
      showResult(job).catch((err) => replace(result, errorBox(err, 'Cannot show the result')));
    }
  };

  async function refresh() {
    window.clearTimeout(timer);
    try {
      const job = await jobs.get(id);
      if (ctx.signal.aborted) return;
      render(job);
      if (isActive(job.state)) timer = window.setTimeout(refresh, POLL_MS);
    } catch (err) {
      if (ctx.signal.aborted) return;
      replace(problem, errorBox(err, 'Cannot read the job'));
      if (!err.status || err.status >= 500) timer = window.setTimeout(refresh, POLL_MS * 4);
    }
  }
  await refresh();
  return () => window.clearTimeout(timer);
}
