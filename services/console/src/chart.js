// A time-series chart (SVG) with its values as a table: what /cubes/timeseries answers.
import { h } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
const STATUS_COLOR = { clear: '#1e6b34', cloud: '#8a5a00', nodata: '#a4161a' };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/**
 * The chart of one variable of a time series document: values of clear dates joined by a
 * line, every date a dot coloured by its status (clear / cloud / nodata, also in words in the
 * table), the value range on the y axis, the first and last dates on the x axis.
 */
export function seriesChart(doc, variable, { width = 520, height = 200 } = {}) {
  const rows = (doc.series || []).filter((r) => r.datetime);
  const points = rows.map((r) => ({ t: Date.parse(r.datetime), v: r[variable], status: r.status || 'clear', r }));
  const values = points.filter((p) => p.v != null).map((p) => p.v);
  const figure = h('figure', { class: 'chart', id: 'timeseries-chart' });
  if (!values.length) {
    figure.append(h('p', { class: 'note' }, `No ${variable} value at this point (${rows.length} dates, none clear).`));
    return figure;
  }
  const pad = { l: 48, r: 10, t: 10, b: 28 };
  const t0 = Math.min(...points.map((p) => p.t));
  const t1 = Math.max(...points.map((p) => p.t));
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  const x = (t) => pad.l + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  const clear = points.filter((p) => p.v != null && p.status === 'clear');
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img',
    'aria-label': `${variable} over time: ${values.length} values from ${lo.toFixed(3)} to ${hi.toFixed(3)}` });
  svg.append(s('line', { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, stroke: '#8d9aa3' }),
    s('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, stroke: '#8d9aa3' }));
  for (const [v, anchor] of [[hi, 'hanging'], [lo, 'auto']]) {
    svg.append(s('text', { x: pad.l - 4, y: y(v), 'text-anchor': 'end', 'dominant-baseline': anchor, 'font-size': 11 },
      Number(v.toFixed(3)).toString()));
  }
  for (const [t, anchor] of [[t0, 'start'], [t1, 'end']]) {
    svg.append(s('text', { x: x(t), y: height - 6, 'text-anchor': anchor, 'font-size': 11 },
      new Date(t).toISOString().slice(0, 10)));
  }
  if (clear.length > 1) {
    svg.append(s('polyline', { points: clear.map((p) => `${x(p.t)},${y(p.v)}`).join(' '), fill: 'none',
      stroke: '#1f5f8b', 'stroke-width': 1.5 }));
  }
  for (const p of points) {
    if (p.v == null) continue;
    svg.append(s('circle', { cx: x(p.t), cy: y(p.v), r: 3, fill: STATUS_COLOR[p.status] || '#4f5b64',
      'data-status': p.status }, s('title', {}, `${p.r.datetime.slice(0, 10)}: ${p.v} (${p.status})`)));
  }
  figure.append(svg, h('figcaption', {}, `${variable} at ${doc.geometry?.coordinates?.map((c) => c.toFixed(5)).join(', ') || 'the point'}`
    + ` · ${values.length} of ${rows.length} dates with a value (source: ${doc.source || 'items'})`));
  const table = h('table', { class: 'data', id: 'timeseries-table' },
    h('caption', { class: 'sr-only' }, `${variable} per date`),
    h('thead', {}, h('tr', {}, ['Date', variable, 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, h('td', {}, r.datetime.slice(0, 10)),
      h('td', { class: 'num' }, r[variable] == null ? '–' : Number(r[variable]).toFixed(4)), h('td', {}, r.status || '')))));
  figure.append(h('details', {}, h('summary', {}, 'Values'), h('div', { class: 'table-wrap' }, table)));
  return figure;
}
