// The inputs every job takes (the mosaic tool's and a registered process's): collections, the
// area (typed, drawn or the collections' extent), the time range, the bands and the period.
import { areaField } from './area.js';
import { sharedBands, summarize } from './catalog.js';
import { errorBox, field, h, nextId, note, replace } from './ui.js';
import { collectionPicker } from './views/items.js';

const PERIODS = [
  ['', 'One output over the whole range'],
  ['P16D', '16 days'], ['P1M', '1 month'], ['P3M', '3 months'], ['P6M', '6 months'], ['P1Y', '1 year'],
  ['custom', 'Other…'],
];

export const DEFAULT_BANDS = ['red', 'green', 'blue', 'nir'];

/** Checkboxes `name` of `values` (those in `checked` ticked), as list items. */
export function checkboxes(name, values, checked, labelOf = (v) => v) {
  return values.map((v) => {
    const id = nextId(name);
    return h('li', {}, h('input', { type: 'checkbox', id, name, value: v, checked: checked.includes(v) }), ' ',
      h('label', { for: id }, labelOf(v)));
  });
}

/**
 * @param {object} ctx the view's context (map, query)
 * @param {object[]} docs the catalog's collections (loadCollections)
 * @param {object} opts
 * @param {string} opts.prefix id prefix of the fields (`<prefix>-from`, `<prefix>-bands`...)
 * @param {() => void} [opts.onChange] the chosen collections changed (after the bands were refreshed)
 * @param {string[]} [opts.bands] bands ticked at first (default: red, green, blue, nir)
 * @param {string} [opts.bandsHint] what choosing no band means
 * @param {HTMLElement} opts.errorBox where a problem with the extent is shown
 * @returns {{parts: object, chosen: () => object[], refresh: () => void, values: () => object, problems: () => string[]}}
 *   parts: the fields' elements by name (collections, area, extent, time, bands, period), to lay out;
 *   values(): {collections, bbox, bbox_crs, datetime, bands, period} of the jobs API; problems(): what
 *   values() found wrong (one phrase each)
 */
export function jobInputs(ctx, docs, { prefix, onChange, errorBox: problem, bands: firstBands = DEFAULT_BANDS, bandsHint }) {
  const { map, query } = ctx;
  const byId = Object.fromEntries(docs.map((c) => [c.id, c]));
  const collections = docs.map(summarize);
  const selected = (query.get('collections') || '').split(',').filter((c) => byId[c]);
  const picker = collectionPicker(collections, selected, { legend: 'Collections (at least one)', name: `${prefix}-collections`, onChange: () => refresh() });
  const area = areaField(map, { required: true });
  const extentButton = h('button', { type: 'button', class: 'secondary', id: 'use-extent' }, 'Use the collections’ extent');
  const from = h('input', { type: 'date', id: `${prefix}-from`, name: 'from', required: true });
  const to = h('input', { type: 'date', id: `${prefix}-to`, name: 'to', required: true });
  const bandsList = h('ul', { class: 'checks columns', id: `${prefix}-bands` });
  let ticked = firstBands;
  const period = h('select', { id: `${prefix}-period`, name: 'period' }, PERIODS.map(([v, l]) => h('option', { value: v }, l)));
  const customPeriod = h('input', { type: 'text', id: `${prefix}-period-custom`, name: 'period_custom', placeholder: 'P10D', pattern: 'P[0-9]+[DWMYdwmy]' });
  const customField = field('Period (ISO 8601: P<n>D, W, M or Y)', customPeriod);
  customField.hidden = true;
  period.addEventListener('change', () => { customField.hidden = period.value !== 'custom'; });

  const chosen = () => picker.get().map((id) => byId[id]).filter(Boolean);
  function refresh() {
    const docsChosen = chosen();
    if (bandsList.querySelector('input')) ticked = [...bandsList.querySelectorAll('input:checked')].map((b) => b.value);
    const bands = sharedBands(docsChosen);
    replace(bandsList, ...(bands.length ? checkboxes('band', bands, ticked.length ? ticked : firstBands)
      : [h('li', {}, note(docsChosen.length ? 'These collections share no band.' : 'Choose a collection first.'))]));
    const sums = docsChosen.map(summarize);
    if (sums.length && !from.value && !to.value) {
      const starts = sums.map((s) => s.start).filter(Boolean).sort();
      const ends = sums.map((s) => s.end).filter(Boolean).sort();
      if (starts.length) from.value = starts[0].slice(0, 10);
      if (ends.length) to.value = ends[ends.length - 1].slice(0, 10);
    }
    if (sums.length) map.fitAll(sums.map((s) => s.bbox), { maxZoom: 13 });
    if (onChange) onChange();
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
      bands: [...bandsList.querySelectorAll('input:checked')].map((b) => b.value),
      period: periodValue,
    };
  };
  const parts = {
    collections: picker.element,
    area: area.element,
    extent: h('p', {}, extentButton),
    time: h('fieldset', {}, h('legend', {}, 'Time range'), h('div', { class: 'row' }, field('From', from), field('To', to))),
    bands: h('fieldset', {}, h('legend', {}, 'Bands'), bandsHint ? h('small', { class: 'hint' }, bandsHint) : null, bandsList),
    period: [field('Period', period, 'One output per period (monthly, yearly…) or a single one over the range.'), customField],
  };
  return { parts, chosen, refresh, values, problems: () => errors };
}
