// Mosaic tool: collections, area, dates, method, cloud filter, bands or indices, period -> a job.
import { config, fetchJSON, jobs } from '../api.js';
import { areaField } from '../area.js';
import { checkedValues, formInputs, refreshChoices, submitWith } from '../form-parts.js';
import { loadAccess, summarize } from '../catalog.js';
import { announce, errorBox, field, h, replace } from '../ui.js';
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

export default async function mosaic(ctx) {
  ctx.setTitle('Mosaic');
  const { root, map, query } = ctx;
  root.append(h('h1', {}, 'Mosaic'),
    h('p', { class: 'lead' }, 'Composite the cloud-free pixels of one or more collections over an area and a time range. '
      + 'The job writes one Cloud-Optimized GeoTIFF per band and period, a Zarr cube and a report, and registers the result as STAC items.'));
  const [{ docs, indices, byId }, access] = await Promise.all([formInputs(), loadAccess({ fresh: true }).catch(() => null)]);
  if (ctx.signal.aborted) return;
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
    const sums = refreshChoices({ chosen: chosenDocs(), indices, bandsList, indicesList, from, to });
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
    const bands = checkedValues(bandsList);
    const idx = checkedValues(indicesList);
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
    await submitWith(submit, 'Submitting…', formError, 'The job was refused', async () => {
      const job = await jobs.submit(params);
      return { message: `Job ${job.id} submitted.`, hash: `#/tasks/${encodeURIComponent(job.id)}` };
    });
  });
}
