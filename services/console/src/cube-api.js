// Client of the cubes API's building routes (/cubes): create, ODC ingestion YAML, fill state.
import { ApiError, config, fetchJSON } from './api.js';

const enc = encodeURIComponent;

/** POST a JSON body, answer the text (the ODC YAML routes); 4xx as ApiError with the reason. */
async function postText(url, body) {
  const r = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
  const text = await r.text();
  if (!r.ok) {
    let reason = text;
    try {
      const doc = JSON.parse(text);
      reason = doc.description || JSON.stringify(doc.detail || doc);
    } catch {
      // not JSON: the text itself
    }
    throw new ApiError(`${r.status} ${reason}`, r.status, null);
  }
  return text;
}

export const cubeApi = {
  list: () => fetchJSON(`${config.cubes}/`),
  get: (name, signal) => fetchJSON(`${config.cubes}/${enc(name)}`, { signal }),
  create: (body) => fetchJSON(`${config.cubes}/`, { method: 'POST', body }),
  /** The ODC ingestion configuration (YAML text) of the cube ``body`` would create. */
  previewConfig: (body) => postText(`${config.cubes}/ingestion-config`, body),
  configUrl: (name) => `${config.cubes}/${enc(name)}/ingestion-config`,
  filled: (name, signal) => fetchJSON(`${config.cubes}/${enc(name)}/filled`, { signal }),
  tiles: (name, params) => `${config.cubes}/${enc(name)}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?${params}`,
};

/** Bytes of one chunk: ``time x edge x edge`` values of ``bytesPerValue`` bytes. */
export function chunkBytes(time, edge, bytesPerValue = 4) {
  return time * edge * edge * bytesPerValue;
}

/** Offer ``text`` as a file download named ``filename``. */
export function download(text, filename, type = 'application/yaml') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}
