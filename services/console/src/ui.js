// Small DOM helpers shared by the views: element builder, formatting, status badges, links and
// images of the APIs that carry the signed-in credentials.
import { carriesCredentials, fetchBlob } from './api.js';

/**
 * Create an element: h('a', {href: '#/x', class: 'y'}, 'text', child, [more]).
 * Attributes named on* with a function become event listeners; `value`, `checked`,
 * `selected` and `disabled` are set as properties (after the children, so a <select> keeps
 * its value); null/false attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  const props = {};
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (['value', 'checked', 'selected', 'disabled'].includes(k)) props[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  Object.assign(el, props);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

/** Replace the children of `el` (null/false skipped, arrays flattened). */
export function replace(el, ...children) {
  return append(clear(el), children);
}

let uid = 0;
/** A unique element id (labels need one). */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: {label, input, hint} -> <div class="field">. */
export function field(label, input, hint) {
  if (!input.id) input.id = nextId('in');
  const parts = [h('label', { for: input.id }, label), input];
  if (hint) {
    const hintId = `${input.id}-hint`;
    input.setAttribute('aria-describedby', hintId);
    parts.push(h('small', { id: hintId, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/** Announce a message to screen readers (and nothing visual). */
export function announce(message) {
  const el = document.getElementById('announcer');
  if (el) {
    el.textContent = '';
    window.setTimeout(() => { el.textContent = message; }, 30);
  }
}

const STATES = {
  queued: ['◷', 'Queued'],
  running: ['↻', 'Running'],
  completed: ['✔', 'Completed'],
  failed: ['✖', 'Failed'],
  cancelled: ['⊘', 'Cancelled'],
};

/** A job state as icon + text (never colour alone). */
export function stateBadge(state) {
  const [icon, text] = STATES[state] || ['?', state || 'unknown'];
  return h('span', { class: `state state-${state}`, dataset: { state } },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, icon), ' ', text);
}

const VISIBILITY = {
  private: ['◉', 'Private', 'only its workspace reads it'],
  shared: ['◑', 'Shared', 'its workspace and the workspaces it is shared with read it'],
  public: ['○', 'Public', 'everyone reads it'],
};

/** A collection's visibility (private / shared / public) as icon + text, its owner in the tooltip. */
export function accessBadge(acc) {
  const [icon, text, meaning] = VISIBILITY[acc.visibility] || ['?', acc.visibility, ''];
  const owner = acc.workspace ? `workspace ${acc.workspace}` : 'no workspace';
  return h('span', { class: `access access-${acc.visibility}`, dataset: { visibility: acc.visibility }, title: `${text}: ${meaning} (${owner})` },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, icon), ' ', text);
}

/** Used / dropped verdict of a scene, as icon + text. */
export function usedBadge(used) {
  return h('span', { class: `state ${used ? 'state-completed' : 'state-cancelled'}` },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, used ? '✔' : '✖'), ' ', used ? 'used' : 'dropped');
}

export const isActive = (state) => state === 'queued' || state === 'running';

/** An error message box (role=alert, so it is read out). */
export function errorBox(error, prefix = '') {
  const msg = error instanceof Error ? error.message : String(error);
  return h('div', { class: 'error', role: 'alert' },
    h('span', { class: 'icon', 'aria-hidden': 'true' }, '⚠ '), prefix ? `${prefix}: ` : '', msg);
}

export function note(text) {
  return h('p', { class: 'note' }, text);
}

/** ISO date-time -> "2018-07-10 15:30 UTC" (or the date only). */
export function fmtDateTime(value, { dateOnly = false } = {}) {
  if (!value) return '–';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const iso = d.toISOString();
  return dateOnly ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

export function fmtDate(value) {
  return fmtDateTime(value, { dateOnly: true });
}

export function fmtRange(start, end) {
  if (!start && !end) return '–';
  return `${start ? fmtDate(start) : '…'} – ${end ? fmtDate(end) : '…'}`;
}

export function fmtDuration(start, end) {
  if (!start) return '–';
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtNumber(value, digits = 0) {
  if (value == null || Number.isNaN(value)) return '–';
  return Number(value).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtBbox(bbox) {
  return bbox ? bbox.map((v) => Number(v).toFixed(5).replace(/\.?0+$/, '')).join(', ') : '';
}

/** "a, b, c" text -> 4 numbers (minx, miny, maxx, maxy) or throws with a reason. */
export function parseBbox(text) {
  const parts = String(text).split(/[\s,]+/).filter(Boolean).map(Number);
  if (parts.length !== 4 || parts.some((v) => !Number.isFinite(v))) {
    throw new Error('bounding box: expected 4 numbers, west, south, east, north');
  }
  const [minx, miny, maxx, maxy] = parts;
  if (minx >= maxx || miny >= maxy) throw new Error('bounding box: west must be less than east and south less than north');
  if (minx < -180 || maxx > 180 || miny < -90 || maxy > 90) throw new Error('bounding box: outside longitude/latitude range');
  return parts;
}

/** A table: columns [{label, cell: row => node|text, class}], rows -> <table>. */
export function table(columns, rows, { caption, rowAttrs } = {}) {
  return h('table', { class: 'data' },
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
    h('tbody', {}, rows.map((r, i) => h('tr', rowAttrs ? rowAttrs(r, i) : {},
      columns.map((c) => h(c.header ? 'th' : 'td', { class: c.class, scope: c.header ? 'row' : null }, c.cell(r, i)))))));
}

/** A definition list from [[term, value], ...] (skips null values). */
export function dl(pairs) {
  return h('dl', { class: 'meta' }, pairs.filter(([, v]) => v != null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** Link that opens an API resource (JSON, tiles) in a new tab. */
export function extLink(href, text) {
  return h('a', { href, target: '_blank', rel: 'noopener' }, text,
    h('span', { class: 'sr-only' }, ' (opens in a new tab)'));
}

/** Save `file` (a File or Blob) under `name` through a temporary <a download> of a blob URL. */
export function saveFile(file, name = file.name || '') {
  const url = URL.createObjectURL(file);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Open `file` (JSON, an image…) in the tab `win` (opened at the click) from a blob URL. */
function openFile(win, file) {
  // JSON documents (application/geo+json, …+json) as JSON, which the browser shows as text
  const type = /[/+]json\b/.test(file.type) ? 'application/json' : file.type;
  const url = URL.createObjectURL(new Blob([file], { type }));
  win.location.replace(url);
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * A link to a document or file of the APIs (STAC JSON, TileJSON, a job's downloads): its href
 * (kept current by the caller if it changes) is read at each click. Signed out it is a plain
 * link. Signed in, the APIs answer it only with the credentials header (a private collection, a
 * workspace's job), which a link cannot carry and which never goes in a URL: a click fetches it
 * with the header (fetchBlob) and saves it (`download`) or opens it in a new tab from a blob URL.
 * A refusal is shown beside the link.
 */
export function apiLink(href, text, { download = false, id, className } = {}) {
  const problem = h('small', { class: 'link-problem', role: 'alert', hidden: true });
  const a = h('a', download ? { href, id, class: className, download: '' } : { href, id, class: className, target: '_blank', rel: 'noopener' },
    text, download ? null : h('span', { class: 'sr-only' }, ' (opens in a new tab)'));
  a.addEventListener('click', async (e) => {
    if (!a.href || !carriesCredentials(a.href)) return; // a plain link
    e.preventDefault();
    if (a.getAttribute('aria-busy') === 'true') return;
    if (!problem.isConnected) a.after(problem);
    problem.hidden = true;
    const win = download ? null : window.open('', '_blank'); // now, while the click allows it
    a.setAttribute('aria-busy', 'true');
    try {
      const file = await fetchBlob(a.href);
      if (win && !win.closed) {
        win.opener = null;
        openFile(win, file);
      } else {
        saveFile(file); // a download, or the new tab was blocked
      }
    } catch (err) {
      if (win) win.close();
      problem.textContent = ` Cannot get ${a.textContent}: ${err.message}`;
      problem.hidden = false;
    } finally {
      a.removeAttribute('aria-busy');
    }
  });
  return a;
}

/**
 * Show the image at `url` of the APIs in `img`: its src is the URL when signed out, else a blob
 * URL of the image fetched with the credentials header (the one before it revoked). `img`'s
 * data-src keeps the API URL. The last call wins. Resolves once the src is set; rejects with the
 * API's refusal (ApiError).
 */
export async function showImage(img, url) {
  const el = img;
  el.dataset.src = url;
  const revoke = () => {
    if (el.src.startsWith('blob:')) URL.revokeObjectURL(el.src);
  };
  if (!carriesCredentials(url)) {
    revoke();
    el.src = url;
    return;
  }
  const file = await fetchBlob(url);
  if (el.dataset.src !== url) return; // a later call took over
  revoke();
  el.src = URL.createObjectURL(file);
}

export function jsonBlock(doc, summary = 'JSON') {
  return h('details', { class: 'json' }, h('summary', {}, summary),
    h('pre', { tabindex: '0' }, JSON.stringify(doc, null, 2)));
}

/** Run `fn` at most once every `ms` (the last call wins). */
export function debounce(fn, ms = 250) {
  let timer = null;
  return (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), ms);
  };
}

/** Map with at most `limit` calls in flight. */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next;
      next += 1;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
