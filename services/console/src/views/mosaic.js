// Mosaic tool: collections, area, dates, method, cloud filter, bands or indices, period -> a job.
import { config, fetchJSON, jobs, raster } from '../api.js';
import { areaField } from '../area.js';
import { loadAccess, loadCollections, sharedBands, summarize } from '../catalog.js';
import { resolve } from '../render.js';
import { announce, errorBox, field, h, nextId, note, replace } from '../ui.js';
import { collectionPicker } from './items.js';

export const METHODS = [
  ['median', 'Median of the clear observations of each pixel'],
  ['mean', 'Mean of the clear observations of each pixel'],
  ['best-pixel', 'The clearest scene first, gaps filled by the next clearest'],
  ['most-recent', 'The latest clear observation of each pixel'],
  ['least-recent', 'The earliest clear observation of each pixel'],
];

const PERIODS = [
  ['', 'One composite over the whole range'],
  ['P16D', '16 days'], ['P1M', '1 month'], ['P3M', '3 months'], ['P6M', '6 months'], ['P1Y', '1 year'],
  ['custom', 'Other…'],
];

const DEFAULT_BANDS = ['red', 'green', 'blue', 'nir'];

function checkboxes(name, values, checked, labelOf = (v) => v) {
  return values.map((v) => {
    const id = nextId(name);
    return h('li', {}, h('input', { type: 'checkbox', id, name, value: v, checked: checked.includes(v) }), ' ',
      h('label', { for: id }, labelOf(v)));
  });
}

export default async function mosaic(ctx) {
  ctx.setTitle('Mosaic');
  const { root, map, query } = ctx;
  root.append(h('h1', {}, 'Mosaic'),
    h('p', { class: 'lead' }, 'Composite the cloud-free pixels of one or more collections over an area and a time range. '
      + 'The job writes one Cloud-Optimized GeoTIFF per band and period, a Zarr cube and a report, and registers the result as STAC items.'));
  const [docs, indices, access] = await Promise.all([loadCollections(), raster.indices().catch(() => []), loadAccess({ fresh: true }).catch(() => null)]);
  if (ctx.signal.aborted) return;
  const byId = Object.fromEntries(docs.map((c) => [c.id, c]));
  const collections = docs.map(summarize);
  const jobsProblem = h('div', {});
  root.append(jobsProblem);
  fetchJSON(`${config.jobs}/`).catch((err) => {
    replace(jobsProblem, errorBox(`${err.message} — the jobs API (${config.jobs}) is not available: jobs cannot be submitted.`));
  });

  const selected = (query.get('collections') || '').split(',').filter((c) => byId[c]);
  const picker = collectionPicker(collections, selected, { legend: 'Collections (at least one)', name: 'mosaic-collections', onChange: () => refresh(), access });
  const area = areaField(map, { required: true });
  const extentButton = h('button', { type: 'button', class: 'secondary', id: 'use-extent' }, 'Use the collections’ extent');
  const from = h('input', { type: 'date', id: 'mosaic-from', name: 'from', required: true });
  const to = h('input', { type: 'date', id: 'mosaic-to', name: 'to', required: true });
  const method = h('select', { id: 'mosaic-method', name: 'method' }, METHODS.map(([m, d]) => h('option', { value: m }, `${m} — ${d}`)));
  const maxCloud = h('input', { type: 'number', id: 'mosaic-cloud', name: 'max_cloud', min: 0, max: 100, step: 1, placeholder: 'no filter' });
  const period = h('select', { id: 'mosaic-period', name: 'period' }, PERIODS.map(([v, l]) => h('option', { value: v }, l)));
  const customPeriod = h('input', { type: 'text', id: 'mosaic-period-custom', name: 'period_custom', placeholder: 'P10D', pattern: 'P[0-9]+[DWMYdwmy]' });
  const customField = field('Period (ISO 8601: P<n>D, W, M or Y)', customPeriod);
  customField.hidden = true;
  period.addEventListener('change', () => { customField.hidden = period.value !== 'custom'; });
  const bandsList = h('ul', { class: 'checks columns', id: 'mosaic-bands' });
  const indicesList = h('ul', { class: 'checks columns', id: 'mosaic-indices' });
  const crs = h('input', { type: 'text', id: 'mosaic-crs', name: 'crs', placeholder: 'native (e.g. EPSG:32633)' });
  const resolution = h('input', { type: 'number', id: 'mosaic-resolution', name: 'resolution', min: 0, step: 'any', placeholder: 'native' });
  const outputCollection = h('input', { type: 'text', id: 'mosaic-output', name: 'output_collection', placeholder: '<first collection>-<method>', pattern: '[A-Za-z0-9._-]+' });
  const formError = h('div', { id: 'mosaic-error' });
  const submit = h('button', { type: 'submit', id: 'mosaic-submit' }, 'Run mosaic job');

  const form = h('form', { id: 'mosaic-form', class: 'mosaic-form', novalidate: true },
    picker.element,
    area.element,
    h('p', {}, extentButton),
    h('fieldset', {}, h('legend', {}, 'Time range'), h('div', { class: 'row' }, field('From', from), field('To', to))),
    field('Method', method),
    field('Max cloud cover (%)', maxCloud, 'Scenes cloudier than this over the area are dropped (the report says why).'),
    h('fieldset', {}, h('legend', {}, 'Bands'), bandsList),
    h('fieldset', {}, h('legend', {}, 'Spectral indices'), indicesList),
    field('Period', period, 'One output per period (monthly, yearly…) or a single composite.'),
    customField,
    h('details', { class: 'advanced' }, h('summary', {}, 'Output grid and collection'),
      field('Output CRS', crs), field('Resolution (CRS units)', resolution), field('Output collection', outputCollection)),
    formError,
    h('div', { class: 'buttons' }, submit));
  root.append(form);

  const chosenDocs = () => picker.get().map((id) => byId[id]).filter(Boolean);
  function refresh() {
    const chosen = chosenDocs();
    const checkedBands = [...bandsList.querySelectorAll('input:checked')].map((b) => b.value);
    const checkedIdx = [...indicesList.querySelectorAll('input:checked')].map((b) => b.value);
    const bands = sharedBands(chosen);
    const keep = checkedBands.length ? checkedBands : DEFAULT_BANDS;
    replace(bandsList, ...(bands.length ? checkboxes('band', bands, keep) : [h('li', {}, note(chosen.length ? 'These collections share no band.' : 'Choose a collection first.'))]));
    const usable = indices.filter((idx) => chosen.length && chosen.every((c) => {
      const map = Object.fromEntries(summarize(c).bands.filter((b) => b.common).map((b) => [b.common, b.key]));
      return Object.values(idx.bands).every((b) => resolve(map, b));
    }));
    replace(indicesList, ...(usable.length ? checkboxes('index', usable.map((i) => i.name), checkedIdx,
      (n) => `${n} — ${usable.find((i) => i.name === n).long_name}`) : [h('li', {}, note('No index for these bands.'))]));
    const sums = chosen.map(summarize);
    if (sums.length && !from.value && !to.value) {
      const starts = sums.map((s) => s.start).filter(Boolean).sort();
      const ends = sums.map((s) => s.end).filter(Boolean).sort();
      if (starts.length) from.value = starts[0].slice(0, 10);
      if (ends.length) to.value = ends[ends.length - 1].slice(0, 10);
    }
    if (sums.length) map.fitAll(sums.map((s) => s.bbox), { maxZoom: 13 });
  }
  extentButton.addEventListener('click', () => {
    const boxes = chosenDocs().map((c) => summarize(c).bbox).filter(Boolean);
    if (!boxes.length) {
      replace(formError, errorBox('Choose a collection first.'));
      return;
    }
    const r = (v) => Math.round(v * 1e5) / 1e5;
    const bbox = [r(Math.max(...boxes.map((b) => b[0]))), r(Math.max(...boxes.map((b) => b[1]))),
      r(Math.min(...boxes.map((b) => b[2]))), r(Math.min(...boxes.map((b) => b[3])))];
    if (bbox[0] >= bbox[2] || bbox[1] >= bbox[3]) {
      replace(formError, errorBox('The collections’ extents do not overlap: draw the area.'));
      return;
    }
    replace(formError);
    area.set(bbox);
    map.fit(bbox, { maxZoom: 18 });
  });
  refresh();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(formError);
    const problems = [];
    const chosen = picker.get();
    if (!chosen.length) problems.push('choose at least one collection');
    let bbox = null;
    try {
      bbox = area.get();
      if (!bbox) problems.push('draw or type the area');
    } catch (err) {
      problems.push(err.message);
    }
    if (!from.value || !to.value) problems.push('set the time range (from and to)');
    else if (to.value < from.value) problems.push('“To” is before “From”');
    const bands = [...bandsList.querySelectorAll('input:checked')].map((b) => b.value);
    const idx = [...indicesList.querySelectorAll('input:checked')].map((b) => b.value);
    if (!bands.length && !idx.length) problems.push('choose bands or an index');
    let periodValue = period.value || null;
    if (periodValue === 'custom') {
      periodValue = customPeriod.value.trim().toUpperCase();
      if (!/^P[1-9][0-9]*[DWMY]$/.test(periodValue)) problems.push('period: expected P<n>D, P<n>W, P<n>M or P<n>Y');
    }
    if (outputCollection.value && !outputCollection.checkValidity()) problems.push('output collection: letters, digits, “.”, “_” and “-” only');
    if (problems.length) {
      replace(formError, errorBox(`Cannot submit: ${problems.join('; ')}.`));
      announce('The form has errors.');
      return;
    }
    const params = {
      collections: chosen,
      bbox,
      bbox_crs: 'EPSG:4326',
      datetime: `${from.value}/${to.value}`,
      method: method.value,
      bands,
      indices: idx,
      max_cloud: maxCloud.value === '' ? null : Number(maxCloud.value),
      period: periodValue,
      crs: crs.value.trim() || null,
      resolution: resolution.value === '' ? null : Number(resolution.value),
      output_collection: outputCollection.value.trim() || null,
    };
    submit.disabled = true;
    submit.textContent = 'Submitting…';
    try {
      const job = await jobs.submit(params);
      announce(`Job ${job.id} submitted.`);
      location.hash = `#/tasks/${encodeURIComponent(job.id)}`;
    } catch (err) {
      replace(formError, errorBox(err, 'The job was refused'));
      submit.disabled = false;
      submit.textContent = 'Run mosaic job';
    }
  });
}
