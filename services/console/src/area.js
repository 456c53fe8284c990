// The area field of the search and mosaic forms: a bbox typed in, drawn on the map, or taken
// from the map view; shown on the map as a dashed box.
import { fmtBbox, h, parseBbox } from './ui.js';

/**
 * @param {MapView} mapView
 * @param {{value?: number[], required?: boolean, onChange?: (bbox) => void}} opts
 * @returns {{element: HTMLElement, get: () => number[]|null, set: (bbox) => void}}
 */
export function areaField(mapView, { value = null, required = false, onChange } = {}) {
  const input = h('input', {
    type: 'text', id: 'area-bbox', name: 'bbox', inputmode: 'decimal', autocomplete: 'off',
    placeholder: 'west, south, east, north', required, 'aria-describedby': 'area-hint',
    value: value ? fmtBbox(value) : '',
  });
  let current = value;
  const set = (bbox, { silent = false } = {}) => {
    current = bbox;
    input.value = bbox ? fmtBbox(bbox) : '';
    input.setCustomValidity('');
    mapView.showBox(bbox);
    if (!silent && onChange) onChange(bbox);
  };
  input.addEventListener('change', () => {
    if (!input.value.trim()) {
      set(null);
      return;
    }
    try {
      set(parseBbox(input.value));
    } catch (err) {
      input.setCustomValidity(err.message);
      input.reportValidity();
    }
  });
  const draw = h('button', {
    type: 'button', class: 'secondary', id: 'draw-bbox',
    onclick: async () => {
      draw.setAttribute('aria-pressed', 'true');
      const bbox = await mapView.drawBox();
      draw.setAttribute('aria-pressed', 'false');
      if (bbox) set(bbox);
      else mapView.showBox(current);
    },
  }, h('span', { 'aria-hidden': 'true' }, '▭ '), 'Draw on map');
  const fromView = h('button', { type: 'button', class: 'secondary', onclick: () => set(mapView.viewBbox()) }, 'Use map view');
  const clearBtn = h('button', { type: 'button', class: 'secondary', onclick: () => set(null) }, 'Clear');
  const element = h('fieldset', { class: 'area' },
    h('legend', {}, required ? 'Area (required)' : 'Area'),
    h('label', { for: 'area-bbox' }, 'Bounding box (longitude/latitude, EPSG:4326)'),
    input,
    h('small', { id: 'area-hint', class: 'hint' }, 'Type it, draw it (press “Draw on map”, then drag), or use the current map view.'),
    h('div', { class: 'buttons' }, draw, fromView, clearBtn));
  mapView.showBox(value);
  return {
    element,
    get() {
      current = input.value.trim() ? parseBbox(input.value) : null;
      return current;
    },
    set,
  };
}
