// One item: a tile preview (band combinations, indices, colormap, rescale), metadata, assets.
import { raster, stac } from '../api.js';
import { layerControls } from '../layer-controls.js';
import { bandAssets, renderOptions } from '../render.js';
import {
  apiLink, dl, extLink, field, fmtBbox, fmtDateTime, fmtNumber, h, jsonBlock, note, replace, table,
} from '../ui.js';
import { itemHref } from './items.js';

function value(v) {
  if (v == null) return '–';
  if (typeof v === 'object') return h('code', { class: 'json-inline' }, JSON.stringify(v));
  return String(v);
}

function hrefCell(href) {
  if (!href) return '–';
  if (/^https?:/.test(href)) return apiLink(href, href.split('/').pop() || href);
  return h('code', { class: 'path' }, href); // a path or URI of the server's storage
}

/**
 * A job's static tile pyramid (an `xyz` link, STAC web-map-links): shown on the map when its
 * template is an HTTP URL, with its zooms from the job's parameters.
 */
function staticTiles(root, map, doc) {
  const xyz = (doc.links || []).find((l) => l.rel === 'xyz');
  if (!xyz) return;
  const tilejson = (doc.links || []).find((l) => l.rel === 'tilejson');
  const section = h('section', { 'aria-labelledby': 'static-tiles-heading', id: 'static-tiles' },
    h('h2', { id: 'static-tiles-heading' }, 'Static tiles'));
  root.append(section);
  const urlBox = h('input', { type: 'text', readonly: true, id: 'static-tiles-url', class: 'url', value: xyz.href });
  if (!/^https?:/.test(xyz.href)) {
    section.append(field('Tile template', urlBox),
      note('The tiles are in storage with no HTTP address: give the job a pyramid URL to show them here.'));
    return;
  }
  const pyramid = (doc.properties || {})['stacube:parameters']?.pyramid || {};
  const zooms = { minzoom: pyramid.minzoom ?? 0, maxzoom: pyramid.maxzoom ?? 22 };
  const show = h('input', { type: 'checkbox', id: 'static-tiles-show', checked: true });
  const add = () => map.addTiles('static-tiles', xyz.href, { bounds: doc.bbox, label: 'Static tiles', ...zooms });
  show.addEventListener('change', () => (show.checked ? add() : map.remove('static-tiles')));
  section.append(
    h('p', {}, show, ' ', h('label', { for: show.id }, `Show the static tiles on the map (zooms ${zooms.minzoom}–${zooms.maxzoom})`)),
    field('Tile template (XYZ)', urlBox),
    tilejson ? h('p', { class: 'links' }, apiLink(tilejson.href, 'TileJSON')) : null);
  add();
}

export default async function item(ctx) {
  const [collectionId, id] = ctx.params;
  const { root, map } = ctx;
  ctx.setTitle(id);
  const [doc, collection, indices] = await Promise.all([
    stac.item(collectionId, id), stac.collection(collectionId).catch(() => null), raster.indices().catch(() => []),
  ]);
  if (ctx.signal.aborted) return;
  const p = doc.properties || {};
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/items?collections=${encodeURIComponent(collectionId)}` }, 'Items'), ' / ',
      h('a', { href: `#/collections/${encodeURIComponent(collectionId)}` }, collectionId)),
    h('h1', {}, id),
    dl([
      ['Collection', h('a', { href: `#/collections/${encodeURIComponent(collectionId)}` }, collectionId)],
      ['Date', p.datetime ? fmtDateTime(p.datetime) : `${fmtDateTime(p.start_datetime)} – ${fmtDateTime(p.end_datetime)}`],
      ['Platform', p.platform],
      ['Cloud cover', p['eo:cloud_cover'] != null ? `${fmtNumber(p['eo:cloud_cover'], 1)} %` : null],
      ['Bounding box', doc.bbox ? fmtBbox(doc.bbox) : null],
      ['STAC', apiLink((doc.links || []).find((l) => l.rel === 'self')?.href || '', 'Item JSON', { id: 'item-json' })],
    ]));

  if (doc.geometry) {
    map.addGeoJSON('footprint', { type: 'FeatureCollection', features: [{ type: 'Feature', geometry: doc.geometry, properties: { id } }] },
      { opacity: 0, width: 2 });
  }
  if (doc.bbox) map.fit(doc.bbox, { maxZoom: 18 });

  // preview
  const preview = h('section', { 'aria-labelledby': 'preview-heading', id: 'preview' }, h('h2', { id: 'preview-heading' }, 'Preview'));
  root.append(preview);
  const options = renderOptions(bandAssets(collection, doc), indices);
  if (!options.length) {
    preview.append(note('No raster asset to preview.'));
  } else {
    const urlBox = h('input', { type: 'text', readonly: true, id: 'preview-url', class: 'url' });
    const tilejson = h('p', { class: 'links' });
    let added = false;
    const apply = (params) => {
      const url = raster.itemTiles(collectionId, id, params);
      urlBox.value = url;
      replace(tilejson, apiLink(raster.itemTileJSON(collectionId, id, params), 'TileJSON', { id: 'preview-tilejson' }), ' · ',
        extLink(raster.itemViewer(collectionId, id), 'Raster API viewer'));
      if (added) map.setTiles('preview', url);
      else {
        map.addTiles('preview', url, { bounds: doc.bbox, label: 'Preview' });
        added = true;
      }
    };
    const controls = layerControls({
      options, label: 'Preview layer', idPrefix: 'preview', onChange: apply, onOpacity: (v) => map.setOpacity('preview', v),
    });
    preview.append(controls.element, field('Tile URL (XYZ, for web maps)', urlBox), tilejson);
    apply(controls.params());
  }

  staticTiles(root, map, doc);

  root.append(h('h2', {}, 'Metadata'), h('div', { class: 'table-wrap' }, table([
    { label: 'Property', cell: ([k]) => k, header: true },
    { label: 'Value', cell: ([, v]) => value(v) },
  ], Object.entries(p), { caption: 'Item properties' })));

  const assets = Object.entries(doc.assets || {});
  root.append(h('h2', {}, 'Assets'), h('div', { class: 'table-wrap' }, table([
    { label: 'Key', cell: ([k]) => h('code', {}, k), header: true },
    { label: 'Title', cell: ([, a]) => a.title || '–' },
    { label: 'Common name', cell: ([, a]) => ((a['eo:bands'] || [])[0] || {}).common_name || '–' },
    { label: 'Roles', cell: ([, a]) => (a.roles || []).join(', ') || '–' },
    { label: 'Type', cell: ([, a]) => (a.type || '–').split(';')[0] },
    { label: 'Location', cell: ([, a]) => hrefCell(a.href) },
  ], assets, { caption: 'Item assets' })));

  const derived = (doc.links || []).filter((l) => l.rel === 'derived_from');
  if (derived.length) {
    root.append(h('h2', {}, 'Derived from'), h('ul', {}, derived.map((l) => {
      const m = l.href.match(/collections\/([^/]+)\/items\/([^/?#]+)/);
      return h('li', {}, m ? h('a', { href: itemHref(decodeURIComponent(m[1]), decodeURIComponent(m[2])) }, l.title || m[2]) : extLink(l.href, l.title || l.href));
    })));
  }
  root.append(h('h2', {}, 'Item JSON'), jsonBlock(doc, 'Show the full item document'));
}
