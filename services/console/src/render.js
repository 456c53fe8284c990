// How to render a collection, an item or a composite as tiles of the raster API.
//
// RGB combinations are built from STAC `eo:bands` common names (red, green, blue, nir...) mapped
// to the asset keys of the collection's `item_assets` (or of the item's assets). Spectral
// indices are asked for by name (`index=NDVI`): the raster API resolves their bands itself.

/** Common names a band may also go by (as the job planner does). */
const FALLBACKS = {
  nir: ['nir08'], nir08: ['nir'], lwir: ['lwir11'], lwir11: ['lwir'], rededge: ['rededge071'], green: ['green05'],
};

export const COLORMAPS = ['viridis', 'rdylgn', 'rdbu', 'rdbu_r', 'greens', 'blues', 'ylgn', 'spectral', 'magma', 'greys', 'terrain'];

const COMBINATIONS = [
  { id: 'truecolor', label: 'True colour (red, green, blue)', bands: ['red', 'green', 'blue'] },
  { id: 'falsecolor', label: 'False colour (nir, red, green)', bands: ['nir', 'red', 'green'] },
  { id: 'swir', label: 'Short-wave infrared (swir22, nir, red)', bands: ['swir22', 'nir', 'red'] },
  { id: 'agriculture', label: 'Agriculture (swir16, nir, blue)', bands: ['swir16', 'nir', 'blue'] },
];

function commonName(asset) {
  if (asset['eo:common_name']) return asset['eo:common_name'];
  const bands = asset['eo:bands'] || asset.bands || [];
  if (bands.length === 1) return bands[0].common_name || bands[0]['eo:common_name'] || null;
  return null;
}

/**
 * Band assets of a collection (item_assets), merged over those of an item when given:
 * [{key, common, title, scale, offset, dataType, nodata, stats, roles}]
 */
export function bandAssets(collection, item) {
  const merged = { ...((collection && collection.item_assets) || {}) };
  for (const [key, asset] of Object.entries((item && item.assets) || {})) {
    merged[key] = { ...(merged[key] || {}), ...asset };
  }
  const out = [];
  for (const [key, a] of Object.entries(merged)) {
    const roles = a.roles || ['data'];
    const type = a.type || '';
    if (type && !/tiff|jp2|image\//i.test(type)) continue;
    if (/thumbnail|overview|metadata/.test(roles.join(' ')) && !roles.includes('data')) continue;
    const rb = (a['raster:bands'] || a.bands || [{}])[0] || {};
    out.push({
      key, common: commonName(a), title: a.title || key, roles,
      scale: rb.scale, offset: rb.offset, dataType: rb.data_type, nodata: rb.nodata, stats: rb.statistics,
      quality: roles.some((r) => /cloud|mask|quality/.test(r)) || !!a['classification:classes'] || !!a['classification:bitfields'],
      description: a.description || '',
    });
  }
  return out;
}

/** {common name -> asset key} (first asset of each common name). */
export function commonMap(assets) {
  const map = {};
  for (const a of assets) if (a.common && !(a.common in map)) map[a.common] = a.key;
  // composites name their assets after the common names
  for (const a of assets) if (!(a.key in map) && /^[a-z]+[0-9]*$/.test(a.key)) map[a.key] = a.key;
  return map;
}

export function resolve(map, name) {
  for (const cand of [name, ...(FALLBACKS[name] || [])]) if (map[cand]) return map[cand];
  return null;
}

/** Default (unscale, rescale) of a set of assets. */
export function defaultScaling(assets) {
  if (!assets.length) return { unscale: false, rescale: '0,1' };
  if (assets.some((a) => a.scale != null && a.scale !== 1)) return { unscale: true, rescale: '0,0.3' };
  if (assets.every((a) => /float/.test(a.dataType || ''))) return { unscale: false, rescale: '0,0.3' };
  const stats = assets.map((a) => a.stats).filter(Boolean);
  if (stats.length === assets.length) {
    const lo = Math.min(...stats.map((s) => Math.max(s.minimum ?? 0, (s.mean ?? 0) - 2 * (s.stddev ?? 0))));
    const hi = Math.max(...stats.map((s) => Math.min(s.maximum ?? 1, (s.mean ?? 0) + 2 * (s.stddev ?? 0))));
    if (hi > lo) return { unscale: false, rescale: `${Math.floor(lo)},${Math.ceil(hi)}` };
  }
  if (assets.every((a) => a.dataType === 'uint8')) return { unscale: false, rescale: '0,255' };
  return { unscale: false, rescale: '0,10000' };
}

/**
 * The ways these assets can be rendered:
 * [{id, label, kind: 'rgb'|'index'|'band', assets: [keys], index, colormap, rescale, unscale}]
 */
export function renderOptions(assets, indices = []) {
  const map = commonMap(assets);
  const byKey = Object.fromEntries(assets.map((a) => [a.key, a]));
  const options = [];
  for (const c of COMBINATIONS) {
    const keys = c.bands.map((b) => resolve(map, b));
    if (keys.every(Boolean)) {
      options.push({ id: c.id, label: c.label, kind: 'rgb', assets: keys, ...defaultScaling(keys.map((k) => byKey[k])) });
    }
  }
  for (const idx of indices) {
    if (byKey[idx.name]) {
      // a composite's index asset: render the stored values
      options.push({ id: `asset:${idx.name}`, label: `${idx.name} (${idx.long_name})`, kind: 'band', assets: [idx.name],
        colormap: idx.colormap_name, rescale: idx.rescale.join(','), unscale: false, index: idx.name });
    } else if (Object.values(idx.bands).every((b) => resolve(map, b))) {
      options.push({ id: `index:${idx.name}`, label: `${idx.name} (${idx.long_name})`, kind: 'index', index: idx.name,
        colormap: idx.colormap_name, rescale: idx.rescale.join(','), unscale: false });
    }
  }
  for (const a of assets) {
    if (options.some((o) => o.id === `asset:${a.key}`)) continue;
    const label = a.common && a.common !== a.key ? `${a.key} (${a.common})` : a.key;
    options.push({ id: `band:${a.key}`, label: `Single band: ${label}`, kind: 'band', assets: [a.key],
      colormap: a.quality ? 'viridis' : null, ...(a.quality ? { unscale: false, rescale: qualityRange(a) } : defaultScaling([a])) });
  }
  return options;
}

function qualityRange(asset) {
  if (asset.stats) return `${asset.stats.minimum ?? 0},${asset.stats.maximum ?? 255}`;
  return asset.dataType === 'uint8' ? '0,255' : '0,65535';
}

/** Query string of a tile request for an option with user overrides (rescale, colormap). */
export function tileParams(option, { rescale, colormap } = {}) {
  const p = new URLSearchParams();
  if (option.kind === 'index') {
    p.set('index', option.index);
  } else {
    for (const a of option.assets) p.append('assets', a);
    if (option.unscale) p.set('unscale', 'true');
  }
  const r = (rescale ?? option.rescale ?? '').trim();
  if (r) p.set('rescale', r);
  const cmap = colormap === undefined ? option.colormap : colormap;
  if (cmap && option.kind !== 'rgb') p.set('colormap_name', cmap);
  return p.toString();
}
