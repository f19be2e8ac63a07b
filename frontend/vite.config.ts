/// <reference types="vitest/config" />
/* Builds into the Python package's static files (anonchat/web/static):
 * index.html (served no-cache) and content-hashed assets/ (cached for
 * good), plus sockjs-client's own dist file for the SockJS iframe page. */

import { copyFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import type { Plugin } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../anonchat/web/static');

/** The SockJS iframe transports load sockjs-client by URL: serve the very build we bundle. */
function sockjsDist(): Plugin {
  return {
    name: 'anonchat-sockjs-dist',
    apply: 'build',
    closeBundle() {
      const pkg = createRequire(import.meta.url).resolve('sockjs-client/package.json');
      copyFileSync(resolve(dirname(pkg), 'dist/sockjs.min.js'), resolve(outDir, 'sockjs.min.js'));
    },
  };
}

export default defineConfig({
  plugins: [react(), sockjsDist()],
  base: '/',
  // sockjs-client (CommonJS) reads Node's `global`
  define: { global: 'globalThis' },
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2020',
    sourcemap: false,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
