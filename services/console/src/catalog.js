// Collections of the STAC API, summarised for the holdings, tables and forms (cached briefly).
import { stac } from './api.js';
import { bandAssets } from './render.js';

let cached = null;
let cachedAt = 0;
const counts = new Map();

export async function loadCollections({ fresh = false } = {}) {
  if (fresh || !cached || Date.now() - cachedAt > 30000) {
    cached = stac.collections();
    cachedAt = Date.now();
    cached.catch(() => { cached = null; });
  }
  return cached;
}

export function itemCount(id) {
  if (!counts.has(id)) {
    const p = stac.count(id);
    counts.set(id, p);
    p.catch(() => counts.delete(id));
    window.setTimeout(() => counts.delete(id), 30000);
  }
  return counts.get(id);
}

const list = (v) => (v == null ? [] : Array.isArray(v) ? v : [v]);

/** The facts the console shows of a collection. */
export function summarize(c) {
  const s = c.summaries || {};
  const interval = ((c.extent || {}).temporal || {}).interval || [[null, null]];
  const bbox = (((c.extent || {}).spatial || {}).bbox || [])[0] || null;
  const assets = bandAssets(c);
  const quality = (c['stacube:quality'] || {}).asset;
  return {
    id: c.id,
    title: c.title || c.id,
    description: c.description || '',
    platforms: list(s.platform),
    instruments: list(s.instruments || s.instrument),
    bands: assets.filter((a) => a.key !== quality && !a.quality),
    quality,
    start: interval[0][0],
    end: interval[0][1],
    bbox: bbox && bbox.length >= 4 ? (bbox.length === 6 ? [bbox[0], bbox[1], bbox[3], bbox[4]] : bbox) : null,
    derived: (c.links || []).some((l) => l.rel === 'derived_from') || (c.stac_extensions || []).some((e) => /processing/.test(e)),
  };
}

export function bandLabel(b) {
  return b.common && b.common !== b.key ? `${b.key} (${b.common})` : b.key;
}

/** Common names (or keys) that every one of these collections has. */
export function sharedBands(collections) {
  const sets = collections.map((c) => new Set(summarize(c).bands.map((b) => b.common || b.key)));
  if (!sets.length) return [];
  const order = [...sets[0]];
  return order.filter((name) => sets.every((s) => s.has(name)));
}
