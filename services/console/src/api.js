// Clients of the public APIs the console talks to: STAC (/stac), raster (/raster), jobs (/jobs).
//
// Base URLs come from console/config.json (served by the Python app from its settings); they
// default to the same origin, relative to the page, so the console works under a path prefix
// and against a deployed stack alike.

export const config = {
  stac: '', raster: '', jobs: '', files: '', cubes: '', basemap: null, imagery: null, oidc: null, version: '',
};

function absolute(url) {
  return new URL(url, document.baseURI).href.replace(/\/+$/, '');
}

export async function loadConfig() {
  let doc = {};
  try {
    const r = await fetch(new URL('console/config.json', document.baseURI));
    if (r.ok) doc = await r.json();
  } catch {
    // no config endpoint (e.g. static hosting): same-origin defaults
  }
  Object.assign(config, {
    stac: absolute(doc.stac_url || 'stac'),
    raster: absolute(doc.raster_url || 'raster'),
    jobs: absolute(doc.jobs_url || 'jobs'),
    files: absolute(doc.files_url || 'files'),
    cubes: absolute(doc.cubes_url || 'cubes'),
    basemap: doc.basemap || null,
    imagery: doc.imagery || null,
    oidc: (doc.auth && doc.auth.oidc) || null,
    version: doc.version || '',
  });
  return config;
}

// --------------------------------------------------------------------------- credentials

const CREDENTIALS = 'stacube.credentials';

/**
 * The signed-in credentials, {kind: 'api-key' | 'oidc', secret, name?, expires?} or null. Kept in
 * sessionStorage (this tab only, gone when it closes); sent as a header to the console's own APIs
 * and nowhere else, never in a URL.
 */
export const credentials = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(CREDENTIALS) || 'null');
    } catch {
      return null;
    }
  },
  set(value) {
    sessionStorage.setItem(CREDENTIALS, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(CREDENTIALS);
  },
};

function ownApi(url) {
  const u = new URL(url, document.baseURI).href;
  return [config.stac, config.raster, config.jobs, config.files, config.cubes]
    .some((base) => base && (u === base || u.startsWith(`${base}/`) || u.startsWith(`${base}?`)));
}

/** The credentials header of a request to `url` ({} when signed out or `url` is not one of the APIs). */
export function authHeaders(url) {
  const c = credentials.get();
  if (!c || !c.secret || !ownApi(url)) return {};
  return c.kind === 'api-key' ? { 'X-API-Key': c.secret } : { Authorization: `Bearer ${c.secret}` };
}

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Whether a request to `url` goes out with credentials (signed in, and `url` is one of the APIs). */
export function carriesCredentials(url) {
  return Object.keys(authHeaders(url)).length > 0;
}

async function send(url, opts) {
  try {
    return await fetch(url, opts);
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(`cannot reach ${url}: ${err.message}`, 0, null);
  }
}

function parseJSON(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** The ApiError of a 4xx/5xx answer `r` whose body is `text`: the API's reason when it gives one. */
function answerError(r, text) {
  const doc = parseJSON(text);
  let reason = doc && (doc.description || doc.detail || doc.message);
  if (Array.isArray(reason)) reason = reason.map((d) => `${(d.loc || []).join('.')}: ${d.msg}`).join('; ');
  return new ApiError(`${r.status} ${reason || r.statusText || 'error'}`, r.status, doc);
}

/**
 * fetch + JSON with the signed-in credentials, turning 4xx/5xx answers into ApiError with the
 * API's reason. `cache`: the fetch cache mode ('no-cache' revalidates what the browser kept).
 */
export async function fetchJSON(url, { method = 'GET', body, signal, cache } = {}) {
  const opts = { method, signal, cache, headers: { Accept: 'application/json', ...authHeaders(url) } };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers['Content-Type'] = 'application/json';
  }
  const r = await send(url, opts);
  const text = await r.text();
  if (!r.ok) throw answerError(r, text);
  return parseJSON(text);
}

/** The file name of a Content-Disposition header (`filename*=UTF-8''…` or `filename="…"`), or null. */
function dispositionName(header) {
  if (!header) return null;
  const star = header.match(/filename\*\s*=\s*[^']*'[^']*'([^;]+)/i);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // a malformed escape: the plain filename below
    }
  }
  const plain = header.match(/filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i);
  return plain ? (plain[1] ?? plain[2]).trim() : null;
}

/**
 * GET a file of the APIs (an image, a download) with the signed-in credentials, for what a plain
 * link or <img src> cannot carry them to (a private collection's documents, a workspace's job
 * outputs). Returns a File (a Blob: its type the answer's Content-Type, its name the answer's
 * Content-Disposition file name, else the URL's last path segment); 4xx/5xx answers throw
 * ApiError with the API's reason.
 */
export async function fetchBlob(url, { signal } = {}) {
  const r = await send(url, { signal, headers: authHeaders(url) });
  if (!r.ok) throw answerError(r, await r.text());
  const blob = await r.blob();
  const name = dispositionName(r.headers.get('Content-Disposition'))
    || decodeURIComponent(new URL(url, document.baseURI).pathname.split('/').filter(Boolean).pop() || 'download');
  return new File([blob], name, { type: blob.type });
}

// ---------------------------------------------------------------------------------- STAC

const enc = encodeURIComponent;

export const stac = {
  async collections() {
    const out = [];
    let url = `${config.stac}/collections?limit=1000`;
    for (let page = 0; url && page < 50; page += 1) {
      const doc = await fetchJSON(url, { cache: 'no-cache' }); // sharing changes show at once
      out.push(...(doc.collections || []));
      const next = (doc.links || []).find((l) => l.rel === 'next');
      url = next && next.href !== url ? next.href : null;
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  },

  collection: (id) => fetchJSON(`${config.stac}/collections/${enc(id)}`),

  item: (collection, id) => fetchJSON(`${config.stac}/collections/${enc(collection)}/items/${enc(id)}`),

  search: (body, signal) => fetchJSON(`${config.stac}/search`, { method: 'POST', body, signal }),

  /** Follow a STAC paging link (GET href, or POST with its body; `merge` merges with the last body). */
  follow(link, lastBody, signal) {
    if ((link.method || 'GET').toUpperCase() === 'POST') {
      const body = link.merge ? { ...lastBody, ...link.body } : (link.body || lastBody);
      return fetchJSON(link.href, { method: 'POST', body, signal });
    }
    return fetchJSON(link.href, { signal });
  },

  /** Number of items of a collection: numberMatched (pgSTAC counts on request), else paged. */
  async count(collection) {
    const body = {
      collections: [collection], limit: 1000,
      fields: { include: ['id'], exclude: ['assets', 'links', 'geometry', 'bbox', 'properties'] },
    };
    try {
      const doc = await stac.search({ ...body, limit: 1, conf: { context: 'on' } });
      if (Number.isInteger(doc.numberMatched)) return doc.numberMatched;
    } catch {
      // an API without pgSTAC's `conf`: count the pages
    }
    let count = 0;
    let page = await stac.search(body);
    for (let i = 0; i < 20; i += 1) {
      count += page.features.length;
      const next = (page.links || []).find((l) => l.rel === 'next');
      if (!next) return count;
      page = await stac.follow(next, body);
    }
    return count;
  },

  /** Datetimes of every item of a collection (start_datetime where datetime is null), sorted. */
  async datetimes(collection, maxPages = 20) {
    const body = {
      collections: [collection], limit: 1000,
      fields: { include: ['id', 'properties.datetime', 'properties.start_datetime', 'properties.end_datetime'],
        exclude: ['assets', 'links', 'geometry', 'bbox'] },
    };
    const out = [];
    let page = await stac.search(body);
    for (let i = 0; page && i < maxPages; i += 1) {
      for (const f of page.features) {
        const p = f.properties || {};
        const when = p.datetime || p.start_datetime;
        if (when) out.push(when);
      }
      const next = (page.links || []).find((l) => l.rel === 'next');
      page = next ? await stac.follow(next, body) : null;
    }
    return out.sort();
  },
};

// -------------------------------------------------------------------------------- access

export const access = {
  /** {principal: {kind, workspace, subject, via}, collections: [{collection, workspace, visibility, manage, shared_with?}]} */
  mine: () => fetchJSON(`${config.stac}/access`, { cache: 'no-store' }),
  get: (id) => fetchJSON(`${config.stac}/collections/${enc(id)}/access`, { cache: 'no-store' }),
  /** Change: {visibility?, share_with?: [...], unshare?: [...]}; answers the new access. */
  change: (id, body) => fetchJSON(`${config.stac}/collections/${enc(id)}/access`, { method: 'PATCH', body }),
};

// -------------------------------------------------------------------------------- raster

let indicesCache = null;

export const raster = {
  async indices() {
    if (!indicesCache) {
      indicesCache = fetchJSON(`${config.raster}/indices`).catch((err) => {
        indicesCache = null;
        throw err;
      });
    }
    return indicesCache;
  },

  /** Register a mosaic search; returns its id. */
  async register(search) {
    const doc = await fetchJSON(`${config.raster}/searches/register`, { method: 'POST', body: search });
    return doc.id;
  },

  itemTiles: (collection, item, params) => `${config.raster}/collections/${enc(collection)}/items/${enc(item)}`
    + `/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${params}`,

  searchTiles: (id, params) => `${config.raster}/searches/${enc(id)}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${params}`,

  itemTileJSON: (collection, item, params) => `${config.raster}/collections/${enc(collection)}/items/${enc(item)}`
    + `/WebMercatorQuad/tilejson.json?${params}`,

  itemViewer: (collection, item) => `${config.raster}/collections/${enc(collection)}/items/${enc(item)}/WebMercatorQuad/map.html`,
};

// ---------------------------------------------------------------------------------- jobs

// the collection URL with its slash: the jobs app answers it without a redirect
// -------------------------------------------------------------------------------- cubes
export const cubes = {
  /** Time series at a point: of a cube (``cube``), or of a collection (its cube or its items). */
  timeseries: ({ collection, cube, lon, lat, bands = [], indices = [] }, signal) => {
    const p = new URLSearchParams({ lon: String(lon), lat: String(lat) });
    for (const b of bands) p.append('bands', b);
    for (const i of indices) p.append('index', i);
    if (cube) return fetchJSON(`${config.cubes}/${enc(cube)}/timeseries?${p}`, { signal });
    p.append('collection', collection);
    return fetchJSON(`${config.cubes}/timeseries?${p}`, { signal });
  },
};

export const jobs = {
  async list() {
    const doc = await fetchJSON(`${config.jobs}/`);
    return Array.isArray(doc) ? doc : (doc.jobs || []);
  },
  get: (id) => fetchJSON(`${config.jobs}/${enc(id)}`),
  submit: (params) => fetchJSON(`${config.jobs}/`, { method: 'POST', body: params }),
  cancel: (id) => fetchJSON(`${config.jobs}/${enc(id)}/cancel`, { method: 'POST' }),
};

/** A job's report: embedded when completed, else fetched from its download link. */
export async function jobReport(job) {
  if (job.report) return job.report;
  const href = job.downloads && job.downloads.report;
  if (!href || job.state !== 'completed') return null;
  return fetchJSON(new URL(href, document.baseURI).href);
}
