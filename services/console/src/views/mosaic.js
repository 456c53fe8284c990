// Mosaic tool: collections, area, dates, method, cloud filter, bands or indices, period -> a job.
import { config, fetchJSON } from '../api.js';
import { loadAccess } from '../catalog.js';
import { formInputs } from '../form-parts.js';
import { jobForm, jobInputs } from '../job-inputs.js';
import { errorBox, field, h, replace } from '../ui.js';

export const METHODS = [
  ['median', 'Median of the clear observations of each pixel'],
  ['mean', 'Mean of the clear observations of each pixel'],
  ['best-pixel', 'The clearest scene first, gaps filled by the next clearest'],
  ['most-recent', 'The latest clear observation of each pixel'],
  ['least-recent', 'The earliest clear observation of each pixel'],
];

export default async function mosaic(ctx) {
  ctx.setTitle('Mosaic');
  const { root } = ctx;
  root.append(h('h1', {}, 'Mosaic'),
    h('p', { class: 'lead' }, 'Composite the cloud-free pixels of one or more collections over an area and a time range. '
      + 'The job writes one Cloud-Optimized GeoTIFF per band and period, a Zarr cube and a report, and registers the result as STAC items.'));
  const [choices, access] = await Promise.all([formInputs(), loadAccess({ fresh: true }).catch(() => null)]);
  if (ctx.signal.aborted) return;
  const jobsProblem = h('div', {});
  root.append(jobsProblem);
  fetchJSON(`${config.jobs}/`).catch((err) => {
    replace(jobsProblem, errorBox(`${err.message} — the jobs API (${config.jobs}) is not available: jobs cannot be submitted.`));
  });

  const formError = h('div', { id: 'mosaic-error' });
  const inputs = jobInputs(ctx, choices, { prefix: 'mosaic', errorBox: formError, access });
  const method = h('select', { id: 'mosaic-method', name: 'method' }, METHODS.map(([m, d]) => h('option', { value: m }, `${m} — ${d}`)));
  const maxCloud = h('input', { type: 'number', id: 'mosaic-cloud', name: 'max_cloud', min: 0, max: 100, step: 1, placeholder: 'no filter' });
  const crs = h('input', { type: 'text', id: 'mosaic-crs', name: 'crs', placeholder: 'native (e.g. EPSG:32633)' });
  const resolution = h('input', { type: 'number', id: 'mosaic-resolution', name: 'resolution', min: 0, step: 'any', placeholder: 'native' });
  const outputCollection = h('input', { type: 'text', id: 'mosaic-output', name: 'output_collection', placeholder: '<first collection>-<method>', pattern: '[A-Za-z0-9._-]+' });
  const submit = h('button', { type: 'submit', id: 'mosaic-submit' }, 'Run mosaic job');

  jobForm(root, inputs, {
    attrs: { id: 'mosaic-form' },
    fields: [
      inputs.parts.collections,
      inputs.parts.area,
      inputs.parts.extent,
      inputs.parts.time,
      field('Method', method),
      field('Max cloud cover (%)', maxCloud, 'Scenes cloudier than this over the area are dropped (the report says why).'),
      inputs.parts.bands,
      inputs.parts.indices,
      ...inputs.parts.period,
      h('details', { class: 'advanced' }, h('summary', {}, 'Output grid and collection'),
        field('Output CRS', crs), field('Resolution (CRS units)', resolution), field('Output collection', outputCollection)),
    ],
    errorEl: formError,
    submit,
    body: (common, problems) => {
      if (!common.bands.length && !common.indices.length) problems.push('choose bands or an index');
      if (outputCollection.value && !outputCollection.checkValidity()) problems.push('output collection: letters, digits, “.”, “_” and “-” only');
      return {
        ...common,
        method: method.value,
        max_cloud: maxCloud.value === '' ? null : Number(maxCloud.value),
        crs: crs.value.trim() || null,
        resolution: resolution.value === '' ? null : Number(resolution.value),
        output_collection: outputCollection.value.trim() || null,
      };
    },
  });
}
