// Cube builder: collections, area, dates, grid, bands and indices, observations or composites,
// chunking (with the chunk size as you type), storage type, fill now or on demand -> POST /cubes/.
// Or an Open Data Cube ingestion configuration (YAML) -> the same request. A cube filled now is
// filled by a job (kind "cube"): the view follows it (a link to its task page) and opens the cube
// when the job has completed.
import { areaField } from '../area.js';
import { checkedValues, formInputs, refreshChoices, submitWith } from '../form-parts.js';
import { summarize } from '../catalog.js';
import { chunkBytes, cubeApi, download } from '../cube-api.js';
import { jobs } from '../api.js';
import { announce, errorBox, field, h, isActive, note, replace, stateBadge } from '../ui.js';
import { collectionPicker } from './items.js';
import { METHODS } from './mosaic.js';

const GRIDS = [
  ['native', 'Native: the first collection’s CRS and pixels'],
  ['webmercator', 'EPSG:3857 (WebMercatorQuad: the zoom as fine as the native pixel)'],
  ['equal-area', 'EPSG:6933 (equal area, EASE-Grid 2.0)'],
  ['epsg', 'Another EPSG code'],
];
const PERIODS = [['P16D', '16 days'], ['P1M', '1 month'], ['P3M', '3 months'], ['P1Y', '1 year']];
const DTYPES = [['float32', 'float32 — physical values, NaN where missing'],
  ['int16', 'int16 — the source’s DN with a nodata value (CF scale_factor)'],
  ['uint16', 'uint16 — the source’s DN with a nodata value']];
const BYTES = { float32: 4, int16: 2, uint16: 2 };

const num = (input) => (input.value === '' ? null : Number(input.value));

export default async function cubeBuilder(ctx) {
  ctx.setTitle('Build a cube');
  const { root, map, query } = ctx;
  root.append(h('h1', {}, 'Build a cube'),
    h('p', { class: 'lead' }, 'An analysis-ready Zarr cube of one or more collections on a fixed grid: one step per solar day '
      + '(clear observations) or one composite per period, filled now or when its parts are first read.'));
  const { docs, indices, byId } = await formInputs();
  if (ctx.signal.aborted) return;
  const selected = (query.get('collections') || '').split(',').filter((c) => byId[c]);
  const picker = collectionPicker(docs.map(summarize), selected,
    { legend: 'Collections (at least one)', name: 'cube-collections', onChange: () => refresh() });
  const area = areaField(map, { required: true, onChange: () => update() });
  const name = h('input', { type: 'text', id: 'cube-name', required: true, pattern: '[a-z0-9][a-z0-9._-]{0,62}', placeholder: 'my-cube' });
  const from = h('input', { type: 'date', id: 'cube-from', required: true });
  const to = h('input', { type: 'date', id: 'cube-to', required: true });
  const grid = h('select', { id: 'cube-grid' }, GRIDS.map(([v, l]) => h('option', { value: v }, l)));
  const epsg = h('input', { type: 'number', id: 'cube-epsg', min: 1024, max: 999999, step: 1, placeholder: '32633' });
  const resolution = h('input', { type: 'number', id: 'cube-resolution', min: 0, step: 'any', placeholder: 'metres' });
  const epsgField = field('EPSG code', epsg);
  const resolutionField = field('Resolution (CRS units)', resolution, 'The pixel size of the grid.');
  const bandsList = h('ul', { class: 'checks columns', id: 'cube-bands' });
  const indicesList = h('ul', { class: 'checks columns', id: 'cube-indices' });
  const mode = h('select', { id: 'cube-mode' },
    h('option', { value: 'observations' }, 'Per solar day — the clear observations of each day'),
    h('option', { value: 'composite' }, 'Per period — one composite per period'));
  const method = h('select', { id: 'cube-method' }, METHODS.map(([m, d]) => h('option', { value: m }, `${m} — ${d}`)));
  const period = h('select', { id: 'cube-period' }, PERIODS.map(([v, l]) => h('option', { value: v }, l)));
  const compositeFields = h('div', { class: 'row' }, field('Method', method), field('Period', period));
  const dtype = h('select', { id: 'cube-dtype' }, DTYPES.map(([v, l]) => h('option', { value: v }, l)));
  const nodata = h('input', { type: 'number', id: 'cube-nodata', step: 1, value: '-999' });
  const nodataField = field('Nodata of the bands', nodata);
  const chunk = h('input', { type: 'number', id: 'cube-chunk', min: 16, max: 4096, step: 16, value: '128' });
  const timeChunk = h('input', { type: 'number', id: 'cube-time-chunk', min: 1, max: 4096, step: 1, value: '32' });
  const tileSize = h('input', { type: 'number', id: 'cube-tile-size', min: 16, max: 8192, step: 16, value: '512' });
  const chunkSize = h('output', { id: 'cube-chunk-size', for: 'cube-chunk cube-time-chunk cube-dtype', 'aria-live': 'polite' });
  const fillNow = h('input', { type: 'radio', id: 'cube-fill-now', name: 'cube-fill', value: 'now' });
  const fillLater = h('input', { type: 'radio', id: 'cube-fill-on-demand', name: 'cube-fill', value: 'on_demand', checked: true });
  const preview = h('pre', { id: 'cube-config', class: 'config', tabindex: '0' });
  const formError = h('div', { id: 'cube-error' });
  const jobBox = h('div', { id: 'cube-job', role: 'status', 'aria-live': 'polite' });
  const yamlButton = h('button', { type: 'button', class: 'secondary', id: 'cube-yaml' }, 'Download as ODC ingestion YAML');
  const submit = h('button', { type: 'submit', id: 'cube-submit' }, 'Create cube');

  const form = h('form', { id: 'cube-form', class: 'mosaic-form', novalidate: true },
    field('Cube name', name, 'Lowercase letters, digits, “.”, “_” and “-”.'),
    picker.element,
    area.element,
    h('fieldset', {}, h('legend', {}, 'Time range'), h('div', { class: 'row' }, field('From', from), field('To', to))),
    h('fieldset', {}, h('legend', {}, 'Grid'), field('CRS', grid), h('div', { class: 'row' }, epsgField, resolutionField)),
    h('fieldset', {}, h('legend', {}, 'Bands'), bandsList),
    h('fieldset', {}, h('legend', {}, 'Spectral indices'), indicesList),
    h('fieldset', {}, h('legend', {}, 'Time steps'), field('Steps', mode), compositeFields),
    h('fieldset', {}, h('legend', {}, 'Storage'),
      h('div', { class: 'row' }, field('Band type', dtype), nodataField),
      h('div', { class: 'row' }, field('Chunk edge (px)', chunk), field('Time steps per chunk', timeChunk),
        field('Fill tile (px)', tileSize, 'Whole chunks; one worker fills one tile.')),
      h('p', {}, 'Chunk size: ', chunkSize)),
    h('fieldset', {}, h('legend', {}, 'Fill'),
      h('ul', { class: 'checks' },
        h('li', {}, fillLater, ' ', h('label', { for: 'cube-fill-on-demand' }, 'On demand — compute the parts a map or a time series reads, once')),
        h('li', {}, fillNow, ' ', h('label', { for: 'cube-fill-now' }, 'Now — compute the whole cube in the background')))),
    h('section', { 'aria-labelledby': 'cube-config-heading' }, h('h2', { id: 'cube-config-heading' }, 'Configuration to submit'),
      h('details', { class: 'json', open: true }, h('summary', {}, 'The request body of POST /cubes/'), preview)),
    formError, jobBox,
    h('div', { class: 'buttons' }, submit, yamlButton));
  root.append(form, importSection(ctx));

  const chosenDocs = () => picker.get().map((id) => byId[id]).filter(Boolean);

  function refresh() {
    const chosen = chosenDocs();
    const sums = refreshChoices({ chosen, indices, bandsList, indicesList, names: ['cube-band', 'cube-index'], from, to });
    if (sums.length && !area.get()) map.fitAll(sums.map((s) => s.bbox), { maxZoom: 13 });
    if (!name.value && chosen.length) name.value = `${chosen[0].id.split('-').slice(0, 2).join('-')}-cube`.toLowerCase();
    update();
  }

  /** The request body of the form, and what is wrong with it. */
  function body() {
    const problems = [];
    let bbox = null;
    try {
      bbox = area.get();
    } catch (err) {
      problems.push(err.message);
    }
    if (!bbox) problems.push('draw or type the area');
    const collections = picker.get();
    if (!collections.length) problems.push('choose at least one collection');
    if (!name.value || !name.checkValidity()) problems.push('name: lowercase letters, digits, “.”, “_” and “-”');
    if (!from.value || !to.value) problems.push('set the time range');
    else if (to.value < from.value) problems.push('“To” is before “From”');
    const bands = checkedValues(bandsList);
    const idx = checkedValues(indicesList);
    if (!bands.length) problems.push('choose at least one band');
    let gridName = grid.value;
    if (grid.value === 'equal-area') {
      if (!num(resolution)) problems.push('resolution: the equal-area grid needs one');
      gridName = `equal-area-${num(resolution)}m`;
    } else if (grid.value === 'epsg') {
      if (!num(epsg) || !num(resolution)) problems.push('give the EPSG code and the resolution');
      gridName = `epsg:${num(epsg)}/${num(resolution)}`;
    }
    const doc = {
      name: name.value, collections, bbox, datetime: from.value && to.value ? `${from.value}/${to.value}` : null,
      grid: gridName, bands, indices: idx, chunk: num(chunk), time_chunk: num(timeChunk), tile_size: num(tileSize),
      fill: fillNow.checked ? 'now' : 'on_demand',
    };
    if (mode.value === 'composite') Object.assign(doc, { method: method.value, period: period.value });
    if (dtype.value !== 'float32') {
      doc.dtypes = Object.fromEntries(bands.map((b) => [b, dtype.value]));
      doc.nodata = Object.fromEntries(bands.map((b) => [b, num(nodata)]));
    }
    return { doc, problems };
  }

  function update() {
    const epsgGrid = grid.value === 'epsg';
    epsgField.hidden = !epsgGrid;
    resolutionField.hidden = !(epsgGrid || grid.value === 'equal-area');
    compositeFields.hidden = mode.value !== 'composite';
    nodataField.hidden = dtype.value === 'float32';
    const bytes = chunkBytes(num(timeChunk) || 0, num(chunk) || 0, BYTES[dtype.value]);
    chunkSize.textContent = `${(bytes / 2 ** 20).toFixed(2)} MiB per chunk of one variable (${num(timeChunk) || 0} × ${num(chunk) || 0} × ${num(chunk) || 0} ${dtype.value}, before compression)`;
    preview.textContent = JSON.stringify(body().doc, null, 2);
  }
  form.addEventListener('input', update);
  form.addEventListener('change', update);
  refresh();

  const guard = () => {
    const { doc, problems } = body();
    if (problems.length) {
      replace(formError, errorBox(`Cannot submit: ${problems.join('; ')}.`));
      announce('The form has errors.');
      return null;
    }
    replace(formError);
    return doc;
  };
  yamlButton.addEventListener('click', async () => {
    const doc = guard();
    if (!doc) return;
    try {
      const yaml = await cubeApi.previewConfig(doc);
      download(yaml, `${doc.name}.yaml`);
      announce('Configuration downloaded.');
    } catch (err) {
      replace(formError, errorBox(err, 'No configuration'));
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const doc = guard();
    if (!doc) return;
    await createAndOpen(ctx, doc, submit, formError, jobBox);
  });
}

const JOB_POLL_MS = 1500;

/** Follow the fill job of a new cube in ``box``: its state and units, a link to its task page;
 * once it has completed, open the cube's page (while this view is still open). */
function followFill(ctx, cube, box) {
  const { id } = cube.job;
  const cubeHash = `#/cubes/${encodeURIComponent(cube.name)}`;
  const taskLink = h('a', { href: `#/tasks/${encodeURIComponent(id)}`, id: 'cube-job-link' }, id);
  const line = h('span', { id: 'cube-job-state' });
  replace(box, h('div', { class: 'card' },
    h('p', {}, `Cube ${cube.name} created. Its fill runs as task `, taskLink, ' (also listed in ',
      h('a', { href: '#/tasks' }, 'Tasks'), '); its page opens when the fill is done.'),
    h('p', {}, line), h('p', {}, h('a', { href: cubeHash }, `Open cube ${cube.name} now`))));
  const show = (job) => {
    const p = job.progress || {};
    const units = p.tiles_total ? ` · ${p.tiles_done || 0} of ${p.tiles_total} fill units` : '';
    const held = job.held ? ' · waiting for a free job slot of the workspace' : '';
    replace(line, stateBadge(job.state), units + held);
  };
  show(cube.job);
  const poll = async () => {
    if (ctx.signal.aborted) return;
    let job = null;
    try {
      job = await jobs.get(id);
    } catch {
      if (ctx.signal.aborted) return;
      window.setTimeout(poll, JOB_POLL_MS * 4);
      return;
    }
    if (ctx.signal.aborted) return;
    show(job);
    if (isActive(job.state)) window.setTimeout(poll, JOB_POLL_MS);
    else if (job.state === 'completed') {
      announce(`Cube ${cube.name} filled.`);
      location.hash = cubeHash;
    } else if (job.state === 'failed') {
      box.append(errorBox(job.error || 'the fill failed', 'The fill failed'));
    } else box.append(note(job.error || 'The fill was cancelled.'));
  };
  window.setTimeout(poll, JOB_POLL_MS);
}

/** POST the body; on success open the cube's page, or (a fill now) follow its fill job. */
function createAndOpen(ctx, doc, button, errorEl, jobBox) {
  return submitWith(button, 'Creating…', errorEl, 'The cube was refused', async () => {
    const cube = await cubeApi.create(doc);
    const hash = `#/cubes/${encodeURIComponent(cube.name)}`;
    if (!cube.job) return { message: `Cube ${cube.name} created.`, hash };
    followFill(ctx, cube, jobBox);
    return { message: `Cube ${cube.name} created; its fill runs as task ${cube.job.id}.`, hash: null };
  });
}

/** A cube from an Open Data Cube ingestion configuration (a file or pasted YAML). */
function importSection(ctx) {
  const file = h('input', { type: 'file', id: 'odc-file', accept: '.yaml,.yml,text/yaml' });
  const text = h('textarea', { id: 'odc-yaml', rows: 8, spellcheck: 'false', placeholder: 'source_type: …\noutput_type: …\nstorage: …\nmeasurements: …' });
  const name = h('input', { type: 'text', id: 'odc-name', placeholder: 'output_type of the configuration' });
  const datetime = h('input', { type: 'text', id: 'odc-datetime', placeholder: '2018-03-01/2018-06-30' });
  const fill = h('select', { id: 'odc-fill' }, h('option', { value: 'on_demand' }, 'On demand'), h('option', { value: 'now' }, 'Now'));
  const errorEl = h('div', { id: 'odc-error' });
  const jobBox = h('div', { id: 'odc-job', role: 'status', 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', id: 'odc-submit' }, 'Create from configuration');
  file.addEventListener('change', async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const form = h('form', { id: 'odc-form', class: 'mosaic-form', novalidate: true },
    field('Configuration file', file), field('Configuration (YAML)', text),
    h('div', { class: 'row' }, field('Cube name (optional)', name),
      field('Time range', datetime, 'START/END: an ODC configuration has none (stacube’s exports do).')),
    field('Fill', fill), errorEl, jobBox, h('div', { class: 'buttons' }, button));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!text.value.trim()) {
      replace(errorEl, errorBox('Choose or paste a configuration.'));
      return;
    }
    const doc = { config: text.value, fill: fill.value };
    if (name.value.trim()) doc.name = name.value.trim();
    if (datetime.value.trim()) doc.datetime = datetime.value.trim();
    replace(errorEl);
    await createAndOpen(ctx, doc, button, errorEl, jobBox);
  });
  return h('section', { 'aria-labelledby': 'odc-heading' },
    h('h2', { id: 'odc-heading' }, 'From an Open Data Cube ingestion configuration'),
    h('p', {}, 'The YAML that ', h('code', {}, 'datacube ingest -c'), ' takes (source, storage grid, chunking, measurements with their dtype and nodata).'),
    form);
}
