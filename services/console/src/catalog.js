// Collections of the STAC API, summarised for the holdings, tables and forms (cached briefly).
import { access, stac } from './api.js';
import { bandAssets, commonMap, resolve } from './render.js';

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

let accessRows = null;

/**
 * The access of the readable collections: Map id -> {workspace, visibility, manage, shared_with?}
 * (the STAC API's /access; a collection without an entry is public and belongs to no workspace).
 */
export async function loadAccess({ fresh = false } = {}) {
  if (fresh || !accessRows) {
    accessRows = access.mine().then((doc) => new Map(doc.collections.map((r) => [r.collection, r])));
    accessRows.catch(() => { accessRows = null; });
  }
  return accessRows;
}

/** A collection's access from loadAccess's map. */
export function accessOf(rows, id) {
  return (rows && rows.get(id)) || { collection: id, workspace: null, visibility: 'public', manage: false };
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

/**
 * Bands (common names, else asset keys) of the first collection that every one of these
 * collections has; common names match with the job planner's fallbacks (nir = nir08...).
 */
export function sharedBands(collections) {
  if (!collections.length) return [];
  const maps = collections.map((c) => {
    const bands = summarize(c).bands;
    return { ...Object.fromEntries(bands.map((b) => [b.key, b.key])), ...commonMap(bands) };
  });
  const canonical = { nir08: 'nir', lwir11: 'lwir', rededge071: 'rededge', green05: 'green' };
  const names = [...new Set(summarize(collections[0]).bands.map((b) => canonical[b.common] || b.common || b.key))];
  return names.filter((name) => maps.every((m) => resolve(m, name)));
}

/** The spectral indices (of the raster API's /indices) whose bands every collection has. */
export function usableIndices(indices, collections) {
  return indices.filter((idx) => collections.length && collections.every((c) => {
    const map = Object.fromEntries(summarize(c).bands.filter((b) => b.common).map((b) => [b.common, b.key]));
    return Object.values(idx.bands).every((b) => resolve(map, b));
  }));
}
