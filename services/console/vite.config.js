// Build of the stacube web console.
//
// `npm run build` writes the bundle to ../stacube_services/console_dist, which the Python app
// serves: index.html at "/", assets under "/console/assets/". Asset URLs are relative
// (base "./"), so the console also works when the app is served under a path prefix.
//
// `npm run dev` serves the sources with hot reload and forwards the API paths to a running
// `stacube up` (STACUBE_URL, default http://127.0.0.1:8000).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const api = process.env.STACUBE_URL || 'http://127.0.0.1:8000';

export default defineConfig({
  base: './',
  build: {
    outDir: fileURLToPath(new URL('../stacube_services/console_dist', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'console/assets',
    chunkSizeWarningLimit: 1600,
    reportCompressedSize: false,
  },
  server: {
    proxy: Object.fromEntries(
      ['/stac', '/raster', '/jobs', '/files', '/console/config.json'].map((p) => [p, api]),
    ),
  },
});
