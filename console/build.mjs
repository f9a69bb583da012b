// Builds the console into dist/: the application (plain ES modules, bundled and minified by esbuild,
// split so that each screen and the map are loaded when first shown), its two themes' style sheets, and
// MapLibre copied as published (loaded only when a map is first drawn). Deterministic: the same
// lockfile and sources give the same bytes, so the build is reproducible.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { gzipSync, constants } from 'node:zlib';

const out = 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/assets/vendor`, { recursive: true });

await build({
  entryPoints: { console: 'src/main.js' },
  bundle: true,
  splitting: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  legalComments: 'linked',
  outdir: `${out}/assets`,
  chunkNames: 'chunk-[hash]',
  logLevel: 'warning',
});

// Two themes: the State's design system (for State operators: DSFR's licence restricts its use to them)
// and a neutral one for everyone else. Fonts are copied with content-hashed names.
await build({
  entryPoints: { dsfr: 'src/theme-dsfr.css', neutral: 'src/theme-neutral.css' },
  bundle: true,
  minify: true,
  outdir: `${out}/assets`,
  loader: { '.woff2': 'file', '.woff': 'file', '.svg': 'file' },
  assetNames: 'fonts/[name]-[hash]',
  logLevel: 'warning',
});

const maplibre = 'node_modules/maplibre-gl/dist';
copyFileSync(`${maplibre}/maplibre-gl.js`, `${out}/assets/vendor/maplibre-gl.js`);
copyFileSync(`${maplibre}/maplibre-gl.css`, `${out}/assets/vendor/maplibre-gl.css`);
copyFileSync('node_modules/maplibre-gl/LICENSE.txt', `${out}/assets/vendor/maplibre-gl.LICENSE.txt`);
writeFileSync(`${out}/index.html`, readFileSync('src/index.html'));

// Compressed once here, served as is to browsers that accept gzip (api/console.py): no compression work
// per request. Node's gzip header carries no timestamp, so the bytes stay reproducible.
for (const entry of readdirSync(`${out}/assets`, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !/\.(js|css|svg|txt)$/.test(entry.name)) continue;
  const path = `${entry.parentPath}/${entry.name}`;
  writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: constants.Z_BEST_COMPRESSION }));
}
