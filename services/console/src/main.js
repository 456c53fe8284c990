// stacube web console: a hash router over views that share one map.
import './style.css';
import { config, loadConfig } from './api.js';
import { loadCollections } from './catalog.js';
import { MapView } from './map.js';
import { startSession } from './session.js';
import { clear, errorBox, extLink, h } from './ui.js';
import collectionView from './views/collection.js';
import collectionsView from './views/collections.js';
import cubeBuilderView from './views/cube-builder.js';
import cubeView, { cubeList } from './views/cube.js';
import holdingsView from './views/holdings.js';
import itemView from './views/item.js';
import itemsView from './views/items.js';
import mosaicView from './views/mosaic.js';
import processesView from './views/processes.js';
import taskView from './views/task.js';
import tasksView from './views/tasks.js';

const ROUTES = [
  [/^\/?$/, 'holdings', holdingsView],
  [/^\/collections\/?$/, 'collections', collectionsView],
  [/^\/collections\/([^/]+)$/, 'collections', collectionView],
  [/^\/items\/?$/, 'items', itemsView],
  [/^\/items\/([^/]+)\/([^/]+)$/, 'items', itemView],
  [/^\/mosaic\/?$/, 'mosaic', mosaicView],
  [/^\/processes\/?$/, 'processes', processesView],
  [/^\/processes\/([^/]+)$/, 'processes', processesView],
  [/^\/cubes\/?$/, 'cubes', cubeList],
  [/^\/cubes\/new$/, 'cubes', cubeBuilderView],
  [/^\/cubes\/([^/]+)$/, 'cubes', cubeView],
  [/^\/tasks\/?$/, 'tasks', tasksView],
  [/^\/tasks\/([^/]+)$/, 'tasks', taskView],
];

let mapView;
let current = null;
let firstRoute = true;

/** The map, as seen by one view: calls are ignored once the view is left. */
function guardedMap(signal) {
  return new Proxy(mapView, {
    get(target, prop) {
      const value = target[prop];
      if (typeof value !== 'function') return value;
      return (...args) => (signal.aborted ? undefined : value.apply(target, args));
    },
  });
}

async function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  if (!hash.startsWith('/')) return; // an in-page anchor
  const [path, qs = ''] = hash.split('?');
  let match = null;
  for (const [re, nav, view] of ROUTES) {
    const m = path.match(re);
    if (m) {
      match = { nav, view, params: m.slice(1).map(decodeURIComponent) };
      break;
    }
  }
  if (current) {
    current.controller.abort();
    if (typeof current.cleanup === 'function') current.cleanup();
  }
  const controller = new AbortController();
  current = { controller, cleanup: null };
  mapView.clear();
  const main = document.getElementById('main');
  clear(main);
  const root = h('div', { class: 'view' });
  main.append(root);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (match && a.dataset.nav === match.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    root.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Back to the holdings')));
    return;
  }
  const ctx = {
    root,
    map: guardedMap(controller.signal),
    params: match.params,
    query: new URLSearchParams(qs),
    signal: controller.signal,
    setTitle: (t) => { document.title = `${t} · stacube`; },
  };
  const focusHeading = !firstRoute;
  firstRoute = false;
  try {
    await mapView.ready;
    const cleanup = await match.view(ctx);
    if (!controller.signal.aborted) current.cleanup = cleanup;
    else if (typeof cleanup === 'function') cleanup();
  } catch (err) {
    if (err.name === 'AbortError' || controller.signal.aborted) return;
    console.error(err);
    root.append(errorBox(err));
  }
  if (focusHeading && !controller.signal.aborted) {
    const heading = root.querySelector('h1');
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

async function start() {
  await loadConfig();
  const links = document.getElementById('api-links');
  links.append(
    h('li', {}, extLink(`${config.stac}/api.html`, 'STAC API')),
    h('li', {}, extLink(`${config.raster}/api.html`, 'Raster API')),
  );
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  const signedIn = startSession(document.getElementById('account')); // while the map loads
  mapView = new MapView(document.getElementById('map'), config);
  const basemap = document.getElementById('basemap');
  const showBasemap = async ({ fresh = false } = {}) => {
    await mapView.ready;
    const collections = basemap.value === 'imagery' && !config.imagery ? await loadCollections({ fresh }).catch(() => []) : [];
    await mapView.setBasemap(basemap.value, { collections, rasterUrl: config.raster });
  };
  basemap.addEventListener('change', () => showBasemap());
  // signed in, out or as another: the collections and tiles are another caller's
  window.addEventListener('stacube:session', () => {
    showBasemap({ fresh: true });
    route();
  });
  window.stacubeConsole = { map: mapView.map, config };
  window.addEventListener('hashchange', route);
  await signedIn;
  await route();
}

start().catch((err) => {
  const main = document.getElementById('main');
  clear(main).append(errorBox(err, 'The console could not start'));
});
