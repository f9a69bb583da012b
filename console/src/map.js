// Maps, loaded only when a screen first draws one: MapLibre GL JS (copied as published into
// assets/vendor, ~270 KB gzipped) on Maillage's own vector tiles of régions, départements and communes
// (GET /v1/tiles/{z}/{x}/{y}.mvt, with the session's bearer token). By default no request leaves
// Maillage's origin, so no tile server learns where anyone looks; an operator may configure an outside
// style (config.map_style_url), drawn under the same layers.
import { authorization } from './api.js';

let loading = null;

function loadMapLibre() {
  if (window.maplibregl) return Promise.resolve(window.maplibregl);
  loading ??= new Promise((resolve, reject) => {
    const css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = '/console/assets/vendor/maplibre-gl.css';
    document.head.append(css);
    const script = document.createElement('script');
    script.src = '/console/assets/vendor/maplibre-gl.js';
    script.onload = () => resolve(window.maplibregl);
    script.onerror = () => reject(new Error('La carte n’a pas pu être chargée.'));
    document.head.append(script);
  });
  return loading;
}

const FRANCE = [[-5.3, 41.2], [9.7, 51.2]];

function territoryStyle(origin) {
  return {
    version: 8,
    sources: {
      territories: {
        type: 'vector',
        tiles: [`${origin}/v1/tiles/{z}/{x}/{y}.mvt`],
        minzoom: 0,
        maxzoom: 12,
        attribution: 'Territoires : INSEE, IGN',
      },
    },
    layers: [
      { id: 'background', type: 'background', paint: { 'background-color': '#eef2f5' } },
      { id: 'regions-fill', type: 'fill', source: 'territories', 'source-layer': 'regions', paint: { 'fill-color': '#fbfbf8' } },
      { id: 'communes-line', type: 'line', source: 'territories', 'source-layer': 'communes', minzoom: 8,
        paint: { 'line-color': '#c5c9cf', 'line-width': 0.6 } },
      { id: 'departements-line', type: 'line', source: 'territories', 'source-layer': 'departements',
        paint: { 'line-color': '#8c96a3', 'line-width': 1 } },
      { id: 'regions-line', type: 'line', source: 'territories', 'source-layer': 'regions',
        paint: { 'line-color': '#4d5866', 'line-width': 1.5 } },
    ],
  };
}

const LOCALE = {
  'NavigationControl.ZoomIn': 'Zoomer',
  'NavigationControl.ZoomOut': 'Dézoomer',
  'NavigationControl.ResetBearing': 'Réorienter vers le nord',
  'AttributionControl.ToggleAttribution': 'Sources des données',
  'Map.Title': 'Carte',
};

// A map in `container`, its basemap loaded. Rejects when the browser cannot draw one (no WebGL):
// callers keep their list, which says everything the map shows.
// `styleUrl`: an operator's outside style (MAILLAGE_CONSOLE_MAP_STYLE_URL), drawn under Maillage's own
// territory lines. Everything it refers to must be on its own origin: the page's CSP allows no other.
export async function createMap(container, { ariaLabel, bounds = FRANCE, styleUrl = null } = {}) {
  const maplibregl = await loadMapLibre();
  const origin = window.location.origin;
  const own = territoryStyle(origin);
  const map = new maplibregl.Map({
    container,
    style: styleUrl || own,
    bounds,
    fitBoundsOptions: { padding: 20 },
    attributionControl: { compact: true },
    locale: LOCALE,
    dragRotate: false,
    pitchWithRotate: false,
    // Tiles and any style of our own origin carry the session's token; nothing else does.
    transformRequest: (url) => (url.startsWith(`${origin}/`) ? { url, headers: authorization() } : { url }),
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  container.querySelector('canvas')?.setAttribute('aria-label', ariaLabel || 'Carte');
  container.setAttribute('role', 'region');
  container.setAttribute('aria-label', ariaLabel || 'Carte');
  await new Promise((resolve, reject) => {
    map.once('load', resolve);
    map.once('error', (event) => (map.loaded() ? null : reject(event.error || new Error('Carte indisponible'))));
  });
  if (styleUrl) {
    // Under names of our own, so that the outside style's cannot clash with them.
    map.addSource('maillage-territories', own.sources.territories);
    for (const layer of own.layers.filter((l) => l.type === 'line')) {
      map.addLayer({ ...layer, id: `maillage-${layer.id}`, source: 'maillage-territories' });
    }
  }
  return map;
}

export function boundsOf(points) {
  if (!points.length) return null;
  let [minX, minY, maxX, maxY] = [180, 90, -180, -90];
  for (const [x, y] of points) {
    minX = Math.min(minX, x); minY = Math.min(minY, y); maxX = Math.max(maxX, x); maxY = Math.max(maxY, y);
  }
  return [[minX, minY], [maxX, maxY]];
}
