// What the mosaic and cube forms share: collections and indices to choose from, band and index
// checkboxes that follow the chosen collections, the dates they span, and submitting.
import { raster } from './api.js';
import { loadCollections, sharedBands, summarize, usableIndices } from './catalog.js';
import { announce, errorBox, h, nextId, note, replace } from './ui.js';

export const DEFAULT_BANDS = ['red', 'green', 'blue', 'nir'];

/** The collections (STAC documents, also by id) and the raster API's spectral indices. */
export async function formInputs() {
  const [docs, indices] = await Promise.all([loadCollections(), raster.indices().catch(() => [])]);
  return { docs, indices, byId: Object.fromEntries(docs.map((c) => [c.id, c])) };
}

export function checkboxes(name, values, checked, labelOf = (v) => v) {
  return values.map((v) => {
    const id = nextId(name);
    return h('li', {}, h('input', { type: 'checkbox', id, name, value: v, checked: checked.includes(v) }), ' ',
      h('label', { for: id }, labelOf(v)));
  });
}

/** The checked values of a list of checkboxes. */
export const checkedValues = (list) => [...list.querySelectorAll('input:checked')].map((b) => b.value);

/**
 * Redraw the band and index checkboxes for the chosen collections (STAC documents), keeping
 * what was checked (bands: ``defaultBands``, DEFAULT_BANDS unless given, when none was), and set
 * empty dates to their span.
 * Returns the collections' summaries.
 */
export function refreshChoices({ chosen, indices, bandsList, indicesList, names = ['band', 'index'], from, to, defaultBands = DEFAULT_BANDS }) {
  const checkedBands = checkedValues(bandsList);
  const checkedIdx = checkedValues(indicesList);
  const bands = sharedBands(chosen);
  replace(bandsList, ...(bands.length ? checkboxes(names[0], bands, checkedBands.length ? checkedBands : defaultBands)
    : [h('li', {}, note(chosen.length ? 'These collections share no band.' : 'Choose a collection first.'))]));
  const usable = usableIndices(indices, chosen);
  replace(indicesList, ...(usable.length ? checkboxes(names[1], usable.map((i) => i.name), checkedIdx,
    (n) => `${n} — ${usable.find((i) => i.name === n).long_name}`) : [h('li', {}, note('No index for these bands.'))]));
  const sums = chosen.map(summarize);
  if (sums.length && !from.value && !to.value) {
    const starts = sums.map((s) => s.start).filter(Boolean).sort();
    const ends = sums.map((s) => s.end).filter(Boolean).sort();
    if (starts.length) from.value = starts[0].slice(0, 10);
    if (ends.length) to.value = ends[ends.length - 1].slice(0, 10);
  }
  return sums;
}

/**
 * Submit with ``button`` busy: ``action()`` returns what to announce and the hash to open; a
 * refusal is shown in ``errorEl`` (prefixed with ``refused``) and the button is usable again.
 */
export async function submitWith(button, busyText, errorEl, refused, action) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = busyText;
  try {
    const { message, hash } = await action();
    announce(message);
    if (hash) location.hash = hash;
    else {
      button.disabled = false;
      button.textContent = label;
    }
  } catch (err) {
    replace(errorEl, errorBox(err, refused));
    button.disabled = false;
    button.textContent = label;
  }
}
