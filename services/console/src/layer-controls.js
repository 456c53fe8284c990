// Controls of a tile layer: rendering (band combination, index, band), colormap, rescale, opacity.
import { COLORMAPS, tileParams } from './render.js';
import { debounce, field, h, nextId } from './ui.js';

/**
 * @param {object} opts
 * @param {Array} opts.options render options (render.js renderOptions)
 * @param {string} [opts.initial] id of the option selected first
 * @param {(params: string, option: object) => void} opts.onChange tile query string changed
 * @param {(value: number) => void} [opts.onOpacity]
 * @param {string} [opts.label] accessible name of the group
 */
export function layerControls({ options, initial, onChange, onOpacity, opacity = 1, label = 'Layer rendering', idPrefix = nextId('layer') }) {
  let option = options.find((o) => o.id === initial) || options[0];
  const render = h('select', { id: `${idPrefix}-render`, name: 'render' },
    options.map((o) => h('option', { value: o.id }, o.label)));
  render.value = option ? option.id : '';
  const cmap = h('select', { id: `${idPrefix}-colormap`, name: 'colormap' },
    h('option', { value: '' }, 'none (grey)'), COLORMAPS.map((c) => h('option', { value: c }, c)));
  const rescale = h('input', { type: 'text', id: `${idPrefix}-rescale`, name: 'rescale', inputmode: 'decimal', size: 12, pattern: '\\s*-?[0-9.eE+-]+\\s*,\\s*-?[0-9.eE+-]+\\s*' });
  const opacityInput = h('input', { type: 'range', id: `${idPrefix}-opacity`, name: 'opacity', min: 0, max: 1, step: 0.05, value: String(opacity) });
  const opacityOut = h('output', { for: opacityInput.id }, `${Math.round(opacity * 100)} %`);
  const cmapField = field('Colormap', cmap);

  const sync = () => {
    cmap.value = option && option.colormap ? option.colormap : '';
    rescale.value = option ? option.rescale || '' : '';
    cmapField.hidden = !option || option.kind === 'rgb';
  };
  const params = () => (option ? tileParams(option, { rescale: rescale.value, colormap: option.kind === 'rgb' ? null : (cmap.value || null) }) : '');
  const emit = () => {
    if (option && rescale.checkValidity()) onChange(params(), option);
  };
  render.addEventListener('change', () => {
    option = options.find((o) => o.id === render.value);
    sync();
    emit();
  });
  cmap.addEventListener('change', emit);
  rescale.addEventListener('input', debounce(emit, 500));
  opacityInput.addEventListener('input', () => {
    opacityOut.textContent = `${Math.round(opacityInput.value * 100)} %`;
    if (onOpacity) onOpacity(Number(opacityInput.value));
  });
  sync();
  const element = h('fieldset', { class: 'layer-controls' }, h('legend', {}, label),
    field('Rendering', render),
    cmapField,
    field('Rescale (min,max)', rescale, 'Values mapped to the colour range; reflectance 0–1.'),
    h('div', { class: 'field' }, h('label', { for: opacityInput.id }, 'Layer opacity'), h('div', { class: 'inline' }, opacityInput, opacityOut)));
  return { element, params, option: () => option };
}
