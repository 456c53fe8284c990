// The inputs every job takes (the mosaic tool's and a registered process's): collections, the
// area (typed, drawn or the collections' extent), the time range, bands, indices and the period.
import { jobs } from './api.js';
import { areaField } from './area.js';
import { summarize } from './catalog.js';
import { checkedValues, refreshChoices, submitWith } from './form-parts.js';
import { announce, errorBox, field, h, replace } from './ui.js';
import { collectionPicker } from './views/items.js';

const PERIODS = [
  ['', 'One output over the whole range'],
  ['P16D', '16 days'], ['P1M', '1 month'], ['P3M', '3 months'], ['P6M', '6 months'], ['P1Y', '1 year'],
  ['custom', 'Other…'],
];

/**
 * @param {object} ctx the view's context (map, query)
 * @param {{docs: object[], indices: object[], byId: object}} inputs formInputs() of form-parts.js
 * @param {object} opts
 * @param {string} opts.prefix id prefix of the fields (`<prefix>-from`, `<prefix>-bands`...)
 * @param {HTMLElement} opts.errorBox where a problem with the extent is shown
 * @param {string[]} [opts.bands] bands ticked at first (default: red, green, blue, nir)
 * @param {string} [opts.bandsHint] what choosing no band means
 * @param {object} [opts.access] the caller's access (loadAccess), to mark the collections it owns or shares
 * @returns {{parts: object, refresh: () => void, values: () => object, problems: () => string[]}}
 *   parts: the fields' elements by name (collections, area, extent, time, bands, indices, period),
 *   to lay out; values(): {collections, bbox, bbox_crs, datetime, bands, indices, period} of the
 *   jobs API; problems(): what values() found wrong (one phrase each)
 */
export function jobInputs(ctx, { docs, indices, byId }, { prefix, errorBox: problem, bands: defaultBands, bandsHint, access }) {
  const { map, query } = ctx;
  const selected = (query.get('collections') || '').split(',').filter((c) => byId[c]);
  const picker = collectionPicker(docs.map(summarize), selected, { legend: 'Collections (at least one)', name: `${prefix}-collections`, onChange: () => refresh(), access });
  const area = areaField(map, { required: true });
  const extentButton = h('button', { type: 'button', class: 'secondary', id: 'use-extent' }, 'Use the collections’ extent');
  const from = h('input', { type: 'date', id: `${prefix}-from`, name: 'from', required: true });
  const to = h('input', { type: 'date', id: `${prefix}-to`, name: 'to', required: true });
  const bandsList = h('ul', { class: 'checks columns', id: `${prefix}-bands` });
  const indicesList = h('ul', { class: 'checks columns', id: `${prefix}-indices` });
  const period = h('select', { id: `${prefix}-period`, name: 'period' }, PERIODS.map(([v, l]) => h('option', { value: v }, l)));
  const customPeriod = h('input', { type: 'text', id: `${prefix}-period-custom`, name: 'period_custom', placeholder: 'P10D', pattern: 'P[0-9]+[DWMYdwmy]' });
  const customField = field('Period (ISO 8601: P<n>D, W, M or Y)', customPeriod);
  customField.hidden = true;
  period.addEventListener('change', () => { customField.hidden = period.value !== 'custom'; });

  const chosen = () => picker.get().map((id) => byId[id]).filter(Boolean);
  function refresh() {
    const sums = refreshChoices({ chosen: chosen(), indices, bandsList, indicesList, from, to, defaultBands });
    if (sums.length) map.fitAll(sums.map((s) => s.bbox), { maxZoom: 13 });
  }
  extentButton.addEventListener('click', () => {
    const boxes = chosen().map((c) => summarize(c).bbox).filter(Boolean);
    if (!boxes.length) {
      replace(problem, errorBox('Choose a collection first.'));
      return;
    }
    const r = (v) => Math.round(v * 1e5) / 1e5;
    const bbox = [r(Math.max(...boxes.map((b) => b[0]))), r(Math.max(...boxes.map((b) => b[1]))),
      r(Math.min(...boxes.map((b) => b[2]))), r(Math.min(...boxes.map((b) => b[3])))];
    if (bbox[0] >= bbox[2] || bbox[1] >= bbox[3]) {
      replace(problem, errorBox('The collections’ extents do not overlap: draw the area.'));
      return;
    }
    replace(problem);
    area.set(bbox);
    map.fit(bbox, { maxZoom: 18 });
  });

  let errors = [];
  const values = () => {
    errors = [];
    const picked = picker.get();
    if (!picked.length) errors.push('choose at least one collection');
    let bbox = null;
    try {
      bbox = area.get();
      if (!bbox) errors.push('draw or type the area');
    } catch (err) {
      errors.push(err.message);
    }
    if (!from.value || !to.value) errors.push('set the time range (from and to)');
    else if (to.value < from.value) errors.push('“To” is before “From”');
    let periodValue = period.value || null;
    if (periodValue === 'custom') {
      periodValue = customPeriod.value.trim().toUpperCase();
      if (!/^P[1-9][0-9]*[DWMY]$/.test(periodValue)) errors.push('period: expected P<n>D, P<n>W, P<n>M or P<n>Y');
    }
    return {
      collections: picked,
      bbox,
      bbox_crs: 'EPSG:4326',
      datetime: `${from.value}/${to.value}`,
      bands: checkedValues(bandsList),
      indices: checkedValues(indicesList),
      period: periodValue,
    };
  };
  const parts = {
    collections: picker.element,
    area: area.element,
    extent: h('p', {}, extentButton),
    time: h('fieldset', {}, h('legend', {}, 'Time range'), h('div', { class: 'row' }, field('From', from), field('To', to))),
    bands: h('fieldset', {}, h('legend', {}, 'Bands'), bandsHint ? h('small', { class: 'hint' }, bandsHint) : null, bandsList),
    indices: h('fieldset', {}, h('legend', {}, 'Spectral indices'), indicesList),
    period: [field('Period', period, 'One output per period (monthly, yearly…) or a single one over the range.'), customField],
  };
  return { parts, refresh, values, problems: () => errors };
}

/**
 * The form of a job, appended to `root`, the choices of `inputs` (jobInputs) filled in.
 * @param {HTMLElement} root where the form goes
 * @param {object} inputs jobInputs()
 * @param {object} opts
 * @param {object} opts.attrs the form's attributes (id, dataset…)
 * @param {HTMLElement[]} opts.fields the fields, in order (inputs.parts and the job's own)
 * @param {HTMLElement} opts.errorEl where problems and refusals are shown
 * @param {HTMLButtonElement} opts.submit the submit button
 * @param {(common: object, problems: string[]) => object} opts.body the jobs API's body from
 *   inputs.values(), pushing what it finds wrong (one phrase each) to `problems`
 * @returns {HTMLFormElement} on submit, the job is sent (submitJob) unless there are problems
 */
export function jobForm(root, inputs, { attrs, fields, errorEl, submit, body }) {
  const form = h('form', { class: 'mosaic-form', novalidate: true, ...attrs }, ...fields,
    errorEl, h('div', { class: 'buttons' }, submit));
  root.append(form);
  inputs.refresh();
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(errorEl);
    const problems = [];
    const params = body(inputs.values(), problems);
    await submitJob(submit, errorEl, [...inputs.problems(), ...problems], params);
  });
  return form;
}

/** Submit a job (POST /jobs ``body``) and open its page; with ``problems`` (phrases), show them in
 * ``errorEl`` instead and send nothing. */
export async function submitJob(button, errorEl, problems, body) {
  if (problems.length) {
    replace(errorEl, errorBox(`Cannot submit: ${problems.join('; ')}.`));
    announce('The form has errors.');
    return;
  }
  await submitWith(button, 'Submitting…', errorEl, 'The job was refused', async () => {
    const job = await jobs.submit(body);
    return { message: `Job ${job.id} submitted.`, hash: `#/tasks/${encodeURIComponent(job.id)}` };
  });
}
