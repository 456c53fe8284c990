// The one map of the console (MapLibre GL JS), shared by every view.
//
// No tiles from the internet: the style is a plain background with land and borders from
// Natural Earth (bundled, world-atlas) and a graticule; an XYZ raster basemap is added only
// when one is configured (STACUBE_CONSOLE_BASEMAP_URL). An "Imagery" basemap (the map's
// Basemap selector) shows configured imagery tiles or the catalog's own true-colour mosaics.
// Views add their layers through MapView, which removes them when the view changes.
import {
  AttributionControl, Map as MLMap, NavigationControl, Popup, ScaleControl, setWorkerUrl,
} from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import { feature, mesh } from 'topojson-client';
import countriesUrl from 'world-atlas/countries-50m.json?url';
import { authHeaders } from './api.js';

setWorkerUrl(workerUrl);

const COLORS = {
  water: '#d6e3ea', land: '#f6f4ee', border: '#c3bcb0', graticule: '#c4d3dc',
  outline: '#1f5f8b', fill: '#2b7bb9', hover: '#d9480f', box: '#7b2cbf',
};

function graticule(step) {
  const lines = [];
  for (let lon = -180; lon <= 180; lon += step) lines.push([[lon, -85], [lon, 85]]);
  for (let lat = -80; lat <= 80; lat += step) {
    const line = [];
    for (let lon = -180; lon <= 180; lon += 5) line.push([lon, lat]);
    lines.push(line);
  }
  return { type: 'Feature', properties: {}, geometry: { type: 'MultiLineString', coordinates: lines } };
}

/**
 * Make rings and lines that cross the antimeridian continuous (longitudes beyond ±180), so a
 * flat map does not draw them as bands across the world.
 */
function unwrap(geojson) {
  const line = (coords) => {
    let shift = 0;
    return coords.map(([x, y], i) => {
      if (i > 0) {
        const prev = coords[i - 1][0];
        if (x - prev > 180) shift -= 360;
        else if (prev - x > 180) shift += 360;
      }
      return [x + shift, y];
    });
  };
  const geometry = (g) => {
    if (!g) return g;
    switch (g.type) {
      case 'LineString': return { ...g, coordinates: line(g.coordinates) };
      case 'MultiLineString': case 'Polygon': return { ...g, coordinates: g.coordinates.map(line) };
      case 'MultiPolygon': return { ...g, coordinates: g.coordinates.map((p) => p.map(line)) };
      default: return g;
    }
  };
  if (geojson.type === 'FeatureCollection') return { ...geojson, features: geojson.features.map((f) => ({ ...f, geometry: geometry(f.geometry) })) };
  if (geojson.type === 'Feature') return { ...geojson, geometry: geometry(geojson.geometry) };
  return geometry(geojson);
}

export function bboxPolygon([minx, miny, maxx, maxy]) {
  return { type: 'Polygon', coordinates: [[[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]] };
}

function coordsBbox(geometry) {
  const xs = [];
  const ys = [];
  const walk = (c) => {
    if (typeof c[0] === 'number') {
      xs.push(c[0]);
      ys.push(c[1]);
    } else c.forEach(walk);
  };
  walk(geometry.coordinates);
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

/** Centre points of the features smaller than ~0.5 degree (invisible at low zoom otherwise). */
function smallMarkers(fc) {
  const features = [];
  for (const f of fc.features || []) {
    if (!f.geometry) continue;
    const [minx, miny, maxx, maxy] = coordsBbox(f.geometry);
    if (maxx - minx < 0.5 && maxy - miny < 0.5) {
      features.push({ type: 'Feature', properties: f.properties, geometry: { type: 'Point', coordinates: [(minx + maxx) / 2, (miny + maxy) / 2] } });
    }
  }
  return { type: 'FeatureCollection', features };
}

export const isGlobal = (b) => b[2] - b[0] >= 359 && b[3] - b[1] >= 179;

export class MapView {
  constructor(container, config) {
    const style = {
      version: 8,
      sources: { graticule: { type: 'geojson', data: graticule(10) } },
      layers: [{ id: 'background', type: 'background', paint: { 'background-color': COLORS.water } }],
    };
    if (config.basemap && config.basemap.tiles) {
      style.sources.basemap = {
        type: 'raster', tiles: config.basemap.tiles, tileSize: 256,
        attribution: config.basemap.attribution || '', maxzoom: config.basemap.maxzoom || 19,
      };
      style.layers.push({ id: 'basemap', type: 'raster', source: 'basemap' });
    }
    style.layers.push({ id: 'graticule', type: 'line', source: 'graticule', paint: { 'line-color': COLORS.graticule, 'line-width': 0.6 } });
    // raster layers of the views go below this marker, vector layers above it
    style.layers.push({ id: 'anchor', type: 'background', layout: { visibility: 'none' }, paint: {} });
    this.hasBasemap = !!style.sources.basemap;
    this.config = config;
    this.imageryIds = [];
    this.basemapKind = 'plain';
    this.map = new MLMap({
      container, style, center: [10, 25], zoom: 1.2, attributionControl: false, dragRotate: false,
      pitchWithRotate: false, maxPitch: 0, renderWorldCopies: true,
      // tiles of the console's APIs carry the signed-in credentials (private collections render)
      transformRequest: (url) => ({ url, headers: authHeaders(url) }),
    });
    this.map.touchZoomRotate.disableRotation();
    this.map.keyboard.disableRotation();
    this.map.addControl(new NavigationControl({ showCompass: false }), 'top-right');
    this.map.addControl(new ScaleControl(), 'bottom-left');
    this.map.addControl(new AttributionControl({
      compact: true, customAttribution: 'Land and borders: Natural Earth',
    }), 'bottom-right');
    this.owned = []; // [kind, id] added by the current view
    this.handlers = []; // [type, layer, fn]
    this.tileStats = {};
    this.statusEl = document.getElementById('map-status');
    this.ready = new Promise((resolve) => this.map.once('load', resolve));
    this.ready.then(() => this.addLand()); // in the background: views do not wait for it
    this.map.on('data', (e) => this.countTile(e, 'loaded'));
    this.map.on('error', (e) => {
      if (e.sourceId && this.tileStats[e.sourceId]) this.countTile(e, 'failed');
    });
  }

  async addLand() {
    try {
      const topo = await (await fetch(countriesUrl)).json();
      this.map.addSource('land', { type: 'geojson', data: unwrap(feature(topo, topo.objects.land)) });
      this.map.addSource('borders', { type: 'geojson', data: unwrap(mesh(topo, topo.objects.countries, (a, b) => a !== b)) });
      // below the graticule, hence below every layer of the views
      if (!this.hasBasemap) {
        this.map.addLayer({ id: 'land', type: 'fill', source: 'land', paint: { 'fill-color': COLORS.land } }, 'graticule');
      }
      this.map.addLayer({ id: 'borders', type: 'line', source: 'borders', paint: { 'line-color': COLORS.border, 'line-width': 0.7 } }, 'graticule');
    } catch (err) {
      console.warn('land outlines unavailable', err);
    }
  }

  // ------------------------------------------------------------------ view layers

  /** Remove every layer, source and handler the current view added. */
  clear() {
    this.cancelDraw();
    if (this.popup) this.popup.remove();
    for (const args of this.handlers) this.map.off(...args);
    this.handlers = [];
    for (const [kind, id] of [...this.owned].reverse()) {
      if (kind === 'layer' && this.map.getLayer(id)) this.map.removeLayer(id);
      if (kind === 'source' && this.map.getSource(id)) this.map.removeSource(id);
    }
    this.owned = [];
    this.tileStats = {};
    this.status('');
  }

  on(type, layer, fn) {
    if (typeof layer === 'function') {
      this.map.on(type, layer);
      this.handlers.push([type, layer]);
    } else {
      this.map.on(type, layer, fn);
      this.handlers.push([type, layer, fn]);
    }
  }

  addLayer(spec, before) {
    this.map.addLayer(spec, before);
    this.owned.push(['layer', spec.id]);
  }

  addSource(id, spec) {
    this.map.addSource(id, spec);
    this.owned.push(['source', id]);
  }

  remove(id) {
    for (const suffix of ['', '-fill', '-line', '-circle']) {
      if (this.map.getLayer(id + suffix)) this.map.removeLayer(id + suffix);
    }
    for (const suffix of ['', '-markers']) {
      if (this.map.getSource(id + suffix)) this.map.removeSource(id + suffix);
    }
    const ids = [id, `${id}-fill`, `${id}-line`, `${id}-circle`, `${id}-markers`];
    this.owned = this.owned.filter(([, x]) => !ids.includes(x));
    delete this.tileStats[id];
  }

  /**
   * Polygons with a fill and an outline; features are keyed by properties.id (hover state).
   * `markers`: a dot at the centre of polygons too small to see at low zoom.
   */
  addGeoJSON(id, data, { color = COLORS.fill, line = COLORS.outline, opacity = 0.12, width = 1.5, dash, markers = false } = {}) {
    this.addSource(id, { type: 'geojson', data, promoteId: 'id' });
    if (markers) {
      this.addSource(`${id}-markers`, { type: 'geojson', data: smallMarkers(data), promoteId: 'id' });
      this.addLayer({
        id: `${id}-circle`, type: 'circle', source: `${id}-markers`, maxzoom: 11,
        paint: {
          'circle-radius': ['case', ['boolean', ['feature-state', 'hover'], false], 8, 6],
          'circle-color': ['case', ['boolean', ['feature-state', 'hover'], false], COLORS.hover, color],
          'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1.5, 'circle-opacity': 0.9,
        },
      });
    }
    this.addLayer({
      id: `${id}-fill`, type: 'fill', source: id,
      paint: {
        'fill-color': ['case', ['boolean', ['feature-state', 'hover'], false], COLORS.hover, color],
        'fill-opacity': ['case', ['boolean', ['feature-state', 'hover'], false], Math.min(0.5, opacity * 3), opacity],
      },
    });
    this.addLayer({
      id: `${id}-line`, type: 'line', source: id,
      paint: {
        'line-color': ['case', ['boolean', ['feature-state', 'hover'], false], COLORS.hover, line],
        'line-width': ['case', ['boolean', ['feature-state', 'hover'], false], width + 1.5, width],
        ...(dash ? { 'line-dasharray': dash } : {}),
      },
    });
  }

  /** One point marker (a circle), added or moved. */
  marker(id, lngLat) {
    const data = { type: 'FeatureCollection', features: [{ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: lngLat } }] };
    if (this.map.getSource(id)) {
      this.map.getSource(id).setData(data);
      return;
    }
    this.addSource(id, { type: 'geojson', data });
    this.addLayer({ id, type: 'circle', source: id, paint: { 'circle-radius': 6, 'circle-color': COLORS.hover, 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
  }

  // ------------------------------------------------------------------ basemaps

  /**
   * Switch the basemap: ``plain`` (land and borders) or ``imagery``: the configured imagery
   * tiles (STACUBE_CONSOLE_IMAGERY_URL), else the catalog's own true-colour mosaics, one
   * raster layer per collection with a ``true-color`` rendering, within its extent and zooms
   * (useful where the data is small: the sample scenes cover a few km).
   */
  async setBasemap(kind, { collections = [], rasterUrl = '' } = {}) {
    for (const id of this.imageryIds || []) {
      if (this.map.getLayer(id)) this.map.removeLayer(id);
      if (this.map.getSource(id)) this.map.removeSource(id);
    }
    this.imageryIds = [];
    this.basemapKind = kind;
    if (kind !== 'imagery') return;
    const add = (id, spec) => {
      this.map.addSource(id, spec);
      this.map.addLayer({ id, type: 'raster', source: id }, this.map.getLayer('borders') ? 'borders' : 'graticule');
      this.imageryIds.push(id);
    };
    if (this.config.imagery && this.config.imagery.tiles) {
      add('imagery', { type: 'raster', tiles: this.config.imagery.tiles, tileSize: 256, attribution: this.config.imagery.attribution || '' });
      return;
    }
    for (const c of collections) {
      const render = (c.renders || {})['true-color'];
      if (!render) continue;
      const bbox = (((c.extent || {}).spatial || {}).bbox || [])[0];
      const spec = { type: 'raster', tileSize: 256, tiles: [`${rasterUrl}/collections/${encodeURIComponent(c.id)}/tiles/WebMercatorQuad/{z}/{x}/{y}.png`] };
      if (bbox && bbox.length >= 4 && !isGlobal(bbox)) spec.bounds = [bbox[0], Math.max(-85, bbox[1]), bbox.at(-2), Math.min(85, bbox.at(-1))];
      const zooms = render.minmax_zoom;
      if (zooms && zooms.length === 2) Object.assign(spec, { minzoom: zooms[0], maxzoom: zooms[1] });
      add(`imagery-${c.id}`, spec);
    }
  }

  setData(id, data) {
    const src = this.map.getSource(id);
    if (src) src.setData(data);
    const markers = this.map.getSource(`${id}-markers`);
    if (markers) markers.setData(smallMarkers(data));
  }

  highlight(source, featureId, on) {
    if (featureId == null) return;
    for (const s of [source, `${source}-markers`]) {
      if (this.map.getSource(s)) this.map.setFeatureState({ source: s, id: featureId }, { hover: on });
    }
  }

  /** Hover and click on the features of a GeoJSON layer (keyed by properties.id). */
  interactive(id, { onClick, onHover } = {}) {
    let hovered = null;
    const layers = [`${id}-fill`, `${id}-circle`].filter((l) => this.map.getLayer(l));
    const setHover = (fid) => {
      if (hovered === fid) return;
      if (hovered != null) this.highlight(id, hovered, false);
      hovered = fid;
      if (hovered != null) this.highlight(id, hovered, true);
      if (onHover) onHover(hovered);
    };
    for (const layer of layers) {
      this.on('mousemove', layer, (e) => {
        if (this.drawing) return;
        this.map.getCanvas().style.cursor = 'pointer';
        setHover(e.features[0].properties.id);
      });
      this.on('mouseleave', layer, () => {
        this.map.getCanvas().style.cursor = '';
        setHover(null);
      });
    }
    if (onClick) {
      // one click handler for both layers (a dot lies over its polygon)
      this.on('click', (e) => {
        if (this.drawing) return;
        const features = this.map.queryRenderedFeatures(e.point, { layers });
        const ids = [...new Set(features.map((f) => f.properties.id))];
        if (ids.length) onClick(ids, e);
      });
    }
  }

  showPopup(lngLat, node) {
    if (this.popup) this.popup.remove();
    this.popup = new Popup({ closeButton: true, maxWidth: '320px' }).setLngLat(lngLat).setDOMContent(node).addTo(this.map);
  }

  /**
   * An XYZ tile layer below the vector layers; tile loads are counted for the status line.
   * `minzoom`/`maxzoom`: the zooms the tiles exist at (a static pyramid: over-zoomed beyond).
   */
  addTiles(id, url, { bounds, opacity = 1, label = 'Layer', minzoom = 0, maxzoom = 22 } = {}) {
    const spec = { type: 'raster', tiles: [url], tileSize: 256, minzoom, maxzoom };
    if (bounds && !isGlobal(bounds)) spec.bounds = bounds.map((v, i) => (i % 2 ? Math.max(-85, Math.min(85, v)) : v));
    this.addSource(id, spec);
    this.addLayer({ id, type: 'raster', source: id, paint: { 'raster-opacity': opacity, 'raster-resampling': 'nearest' } }, 'anchor');
    this.tileStats[id] = { loaded: 0, failed: 0, label, seen: new Set() };
    this.showStats();
  }

  setTiles(id, url) {
    const src = this.map.getSource(id);
    if (!src) return;
    src.setTiles([url]);
    if (this.tileStats[id]) Object.assign(this.tileStats[id], { loaded: 0, failed: 0, seen: new Set() });
    this.showStats();
  }

  setOpacity(id, value) {
    if (this.map.getLayer(id)) this.map.setPaintProperty(id, 'raster-opacity', Number(value));
  }

  countTile(e, what) {
    const stats = this.tileStats[e.sourceId];
    if (!stats || !e.tile) return;
    if (what === 'loaded' && e.dataType !== 'source') return;
    const key = `${what}:${e.tile.tileID ? e.tile.tileID.key : Math.random()}`;
    if (stats.seen.has(key)) return;
    stats.seen.add(key);
    stats[what] += 1;
    this.showStats();
  }

  showStats() {
    const parts = Object.entries(this.tileStats).map(([id, s]) => `${s.label}: ${s.loaded} tiles loaded${s.failed ? `, ${s.failed} failed` : ''}`);
    this.status(parts.join(' · '));
    if (this.statusEl) {
      const total = Object.values(this.tileStats).reduce((n, s) => n + s.loaded, 0);
      this.statusEl.dataset.tilesLoaded = String(total);
    }
  }

  status(text) {
    if (this.statusEl) this.statusEl.textContent = text;
  }

  // ------------------------------------------------------------------ viewport

  fit(bbox, { maxZoom = 14, padding = 40, animate = false } = {}) {
    if (!bbox || bbox.some((v) => !Number.isFinite(v))) return;
    const [minx, miny, maxx, maxy] = bbox;
    const pad = (minx === maxx || miny === maxy) ? 0.01 : 0;
    this.map.fitBounds([[minx - pad, Math.max(-85, miny - pad)], [maxx + pad, Math.min(85, maxy + pad)]],
      { maxZoom, padding, animate });
  }

  /** Fit several bboxes, ignoring whole-world ones while others exist. */
  fitAll(bboxes, opts) {
    const usable = bboxes.filter((b) => b && !isGlobal(b));
    const list = usable.length ? usable : bboxes.filter(Boolean);
    if (!list.length) return;
    this.fit([
      Math.min(...list.map((b) => b[0])), Math.min(...list.map((b) => b[1])),
      Math.max(...list.map((b) => b[2])), Math.max(...list.map((b) => b[3])),
    ], opts);
  }

  viewBbox() {
    const b = this.map.getBounds();
    const r = (v) => Math.round(v * 1e5) / 1e5;
    return [r(Math.max(-180, b.getWest())), r(Math.max(-90, b.getSouth())), r(Math.min(180, b.getEast())), r(Math.min(90, b.getNorth()))];
  }

  // ------------------------------------------------------------------ drawing a box

  /** The area box of a form (dashed outline), shown or updated. */
  showBox(bbox) {
    const data = { type: 'FeatureCollection', features: bbox ? [{ type: 'Feature', properties: { id: 'box' }, geometry: bboxPolygon(bbox) }] : [] };
    if (this.map.getSource('area-box')) this.setData('area-box', data);
    else this.addGeoJSON('area-box', data, { color: COLORS.box, line: COLORS.box, opacity: 0.06, width: 2, dash: [3, 2] });
  }

  /** Let the user drag a box on the map; resolves to [w, s, e, n] or null (Escape). */
  drawBox() {
    this.cancelDraw();
    const map = this.map;
    const el = map.getCanvasContainer();
    map.dragPan.disable();
    map.boxZoom.disable();
    el.classList.add('drawing');
    this.drawing = true;
    this.status('Drag on the map to draw the area (Escape cancels).');
    return new Promise((resolve) => {
      let start = null;
      const point = (e) => {
        const r = el.getBoundingClientRect();
        return [e.clientX - r.left, e.clientY - r.top];
      };
      const toBbox = (a, b) => {
        const p = map.unproject(a);
        const q = map.unproject(b);
        const r = (v) => Math.round(v * 1e5) / 1e5;
        return [r(Math.max(-180, Math.min(p.lng, q.lng))), r(Math.max(-90, Math.min(p.lat, q.lat))),
          r(Math.min(180, Math.max(p.lng, q.lng))), r(Math.min(90, Math.max(p.lat, q.lat)))];
      };
      const down = (e) => {
        if (e.button !== 0) return;
        e.preventDefault();
        start = point(e);
      };
      const move = (e) => {
        if (start) this.showBox(toBbox(start, point(e)));
      };
      const up = (e) => {
        if (!start) return;
        const end = point(e);
        const big = Math.abs(end[0] - start[0]) > 3 && Math.abs(end[1] - start[1]) > 3;
        finish(big ? toBbox(start, end) : null);
      };
      const key = (e) => {
        if (e.key === 'Escape') finish(null);
      };
      const finish = (bbox) => {
        el.removeEventListener('mousedown', down);
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        window.removeEventListener('keydown', key);
        el.classList.remove('drawing');
        map.dragPan.enable();
        map.boxZoom.enable();
        this.drawing = false;
        this.cancelDraw = () => {};
        this.status(bbox ? 'Area drawn.' : '');
        resolve(bbox);
      };
      this.cancelDraw = () => finish(null);
      el.addEventListener('mousedown', down);
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
      window.addEventListener('keydown', key);
    });
  }

  cancelDraw() {}
}
