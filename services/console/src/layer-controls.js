// Controls of a tile layer: rendering (band combination, index, band), colormap, rescale, opacity.
import { config } from './api.js';
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
  const rescale = h('input', { type: 'text', id: `${idPrefix}-rescale`, name: 'rescale', inputmode: 'decimal', size: 12, pattern: ' *-?[0-9.eE\\+\\-]+ *, *-?[0-9.eE\\+\\-]+ *' });
  const opacityInput = h('input', { type: 'range', id: `${idPrefix}-opacity`, name: 'opacity', min: 0, max: 1, step: 0.05, value: String(opacity) });
  const opacityOut = h('output', { for: opacityInput.id }, `${Math.round(opacity * 100)} %`);
  const cmapField = field('Colormap', cmap);
  const legend = h('figure', { class: 'legend' });

  const showLegend = () => {
    const [lo, hi] = rescale.value.split(',').map((v) => v.trim());
    legend.hidden = !option || option.kind === 'rgb' || !cmap.value;
    if (legend.hidden) return;
    const src = `${config.raster}/colorMaps/${encodeURIComponent(cmap.value)}?f=png&orientation=horizontal&width=256&height=12`;
    legend.replaceChildren(
      h('img', { src, alt: `Colour scale ${cmap.value}, from ${lo} to ${hi}`, width: 256, height: 12 }),
      h('figcaption', {}, h('span', {}, lo), h('span', {}, hi)));
  };
  const sync = () => {
    cmap.value = option && option.colormap ? option.colormap : '';
    rescale.value = option ? option.rescale || '' : '';
    cmapField.hidden = !option || option.kind === 'rgb';
    showLegend();
  };
  const params = () => (option ? tileParams(option, { rescale: rescale.value, colormap: option.kind === 'rgb' ? null : (cmap.value || null) }) : '');
  const emit = () => {
    showLegend();
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
    legend,
    field('Rescale (min,max)', rescale, 'The values mapped to the ends of the colour range.'),
    h('div', { class: 'field' }, h('label', { for: opacityInput.id }, 'Layer opacity'), h('div', { class: 'inline' }, opacityInput, opacityOut)));
  return { element, params, option: () => option };
}
