// The specialist's search: a place (commune, postal code or a point on the map), the filters of
// GET /v1/services/search, and the results in a list and on a map at once.
//
// The place a child is being helped in is the most sensitive thing the console holds: it stays in this
// screen's memory (no URL, no history entry, no storage, no form autofill), goes to Maillage only, and
// is gone when the screen is left or the console locks. Safe houses come from the API at their
// commune only (location_precision "commune"): they are drawn as the commune's ring, never as a point.
import { h, clear, field, checkbox, select, alert, badge, formatDateTime, formatDate, uid, zoneOf } from '../dom.js';
import { get, request, ApiError } from '../api.js';

const GENDERS = [['', 'Tous'], ['female', 'Fille'], ['male', 'Garçon'], ['other', 'Autre']];
const RADII = [['10', '10 km'], ['30', '30 km'], ['50', '50 km'], ['100', '100 km'], ['200', '200 km']];
const LANGUAGES = [['', 'Toutes'], ['fr', 'français'], ['en', 'anglais'], ['ar', 'arabe'], ['ro', 'roumain'],
  ['es', 'espagnol'], ['pt', 'portugais'], ['uk', 'ukrainien'], ['ru', 'russe'], ['bg', 'bulgare'], ['zh', 'chinois']];
const CAPACITY = { available: ['success', 'Places disponibles'], limited: ['warning', 'Peu de places'],
  full: ['error', 'Complet'], waitlist: ['warning', 'Liste d’attente'] };
const REACH = { within_radius: 'reçoit dans le rayon', covers_place: 'son secteur couvre ce lieu',
  national: 'service national', in_box: 'dans la zone affichée' };
const OPEN = { open_now: ['success', 'Ouvert'], opens_later: ['info', 'Fermé, ouvre bientôt'],
  closed: ['error', 'Fermé'], hours_unknown: ['info', 'Horaires inconnus'] };

export async function render(root, ctx) {
  const taxonomy = await get('/v1/specialisms');
  const labels = Object.fromEntries(taxonomy.items.map((s) => [s.slug, s.label_fr]));
  let place = null; // { label, query: { commune | postal_code | lat+lon } }
  let map = null;
  let results = [];

  const placeInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', role: 'combobox',
    'aria-autocomplete': 'list', 'aria-expanded': 'false', required: true });
  const suggestions = h('ul', { class: 'mx-suggestions', role: 'listbox', id: uid('places'), hidden: true,
    'aria-label': 'Communes proposées' });
  placeInput.setAttribute('aria-controls', suggestions.id);
  const placeChosen = h('p', { class: 'fr-hint-text', 'aria-live': 'polite' });
  const specialism = select([['', 'Toutes les spécialités'], ...taxonomy.items.map((s) => [s.slug, s.label_fr])]);
  const radius = select(RADII);
  radius.value = '30';
  const age = h('input', { type: 'number', min: '0', max: '99', inputmode: 'numeric' });
  const gender = select(GENDERS);
  const language = select(LANGUAGES);
  const openNow = checkbox('Ouvert maintenant');
  const available = checkbox('Avec des places (exclut les services complets)');
  const collective = checkbox('Membres du collectif « Ensemble contre la traite »');
  const awayInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', inputmode: 'numeric',
    pattern: '[0-9]{5}|[0-9]{2}[0-9AB][0-9]{2}', placeholder: 'ex. 13055' });
  const awayKm = h('input', { type: 'number', min: '1', max: '1000', inputmode: 'numeric' });
  const submit = h('button', { class: 'fr-btn', type: 'submit' }, 'Rechercher');
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const list = h('ol', { class: 'mx-results', id: 'results', 'aria-label': 'Résultats' });
  const more = h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', hidden: true }, 'Plus de résultats');
  const mapBox = h('div', { class: 'mx-map', id: 'results-map', hidden: true });
  const mapNote = h('p', { class: 'mx-map-note', hidden: true },
    'Points : lieu montré à son adresse. Anneaux : lieu montré à sa commune seulement (lieu confidentiel, ou adresse non localisée).');
  const pickOnMap = h('button', { class: 'fr-btn fr-btn--tertiary fr-btn--sm', type: 'button' }, 'Choisir un point sur la carte');

  const form = h('form', { id: 'search-form', novalidate: true, 'aria-labelledby': 'search-title' },
    h('h1', { id: 'search-title' }, 'Rechercher un service'),
    h('div', { class: 'fr-input-group' },
      h('label', { class: 'fr-label', for: placeInput.id = uid('place') }, 'Lieu où se trouve l’enfant',
        h('span', { class: 'fr-hint-text' }, 'Commune ou code postal ; ou un point sur la carte.')),
      placeInput, suggestions, placeChosen, pickOnMap),
    h('div', { class: 'mx-row' }, field('Rayon', radius), field('Âge de l’enfant', age)),
    field('Spécialité', specialism),
    h('div', { class: 'mx-row' }, field('Genre', gender), field('Langue parlée', language)),
    h('fieldset', { class: 'fr-fieldset' }, h('legend', { class: 'fr-fieldset__legend' }, 'Disponibilité'),
      openNow, available, collective),
    h('fieldset', { class: 'fr-fieldset' }, h('legend', { class: 'fr-fieldset__legend' }, 'Éloignement du danger (facultatif)'),
      h('div', { class: 'mx-row' },
        field('Lieu de danger', awayInput, 'Code INSEE de commune ou code de département'),
        field('À au moins (km)', awayKm))),
    submit);

  clear(root, h('div', { class: 'mx-search' },
    h('div', {}, form),
    h('section', { 'aria-labelledby': 'results-title' },
      h('h2', { id: 'results-title' }, 'Résultats'), status, mapBox, mapNote, list, more)));

  // Messages go into the screen's one live region, which announces them: not live regions of their own.
  function say(node) {
    if (node instanceof Element) node.removeAttribute('role');
    status.replaceChildren(node);
  }

  // --- the place: a commune or postal code from the list, or a point -----------------------------
  let active = -1;
  let options = [];
  let pending = null;

  function choose(option) {
    place = option;
    placeInput.value = option.label;
    placeChosen.textContent = `Lieu retenu : ${option.label}`;
    closeSuggestions();
  }

  function closeSuggestions() {
    suggestions.hidden = true;
    placeInput.setAttribute('aria-expanded', 'false');
    placeInput.removeAttribute('aria-activedescendant');
    active = -1;
  }

  function showSuggestions() {
    clear(suggestions, ...options.map((option, index) => h('li', {
      id: `${suggestions.id}-${index}`, role: 'option', 'aria-selected': index === active ? 'true' : 'false',
      onmousedown: (event) => { event.preventDefault(); choose(option); },
    }, option.label)));
    suggestions.hidden = options.length === 0;
    placeInput.setAttribute('aria-expanded', options.length ? 'true' : 'false');
    if (active >= 0) placeInput.setAttribute('aria-activedescendant', `${suggestions.id}-${active}`);
    else placeInput.removeAttribute('aria-activedescendant');
  }

  placeInput.addEventListener('input', () => {
    // The suggestions were for the text before: none of them may be taken for this one.
    place = null;
    options = [];
    active = -1;
    showSuggestions();
    placeChosen.textContent = '';
    clearTimeout(pending);
    const text = placeInput.value.trim();
    if (text.length < 2) return;
    pending = setTimeout(async () => {
      try {
        const communes = await get('/v1/communes', { q: text, limit: 8 });
        if (placeInput.value.trim() !== text) return;
        // A postal code offers its communes one by one, and all of them together when there are several.
        options = communes.map((c) => ({
          label: `${c.name} (${c.departement.code})${/^\d{5}$/.test(text) ? ` — ${text}` : ''}`,
          query: { commune: c.code },
        }));
        if (/^\d{5}$/.test(text) && communes.length > 1) {
          options.unshift({ label: `Code postal ${text} (${communes.length} communes)`, query: { postal_code: text } });
        }
        active = -1;
        showSuggestions();
      } catch (error) {
        options = [];
        showSuggestions();
        placeChosen.textContent = error instanceof ApiError ? error.message : 'Recherche de commune indisponible';
      }
    }, 200);
  });

  placeInput.addEventListener('keydown', (event) => {
    if (!options.length) return;
    if (suggestions.hidden && event.key !== 'ArrowDown') return; // ArrowDown opens them again after Escape
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      active = (active + (event.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length;
      showSuggestions();
    } else if (event.key === 'Enter' && active >= 0) {
      event.preventDefault();
      choose(options[active]);
    } else if (event.key === 'Escape') {
      closeSuggestions();
    }
  });
  placeInput.addEventListener('blur', () => setTimeout(closeSuggestions, 150));

  let picking = false;
  pickOnMap.addEventListener('click', async () => {
    if (picking) return;
    const drawn = await ensureMap();
    if (!drawn) return;
    picking = true;
    placeChosen.textContent = 'Cliquez sur la carte à l’endroit où se trouve l’enfant.';
    drawn.getCanvas().style.cursor = 'crosshair';
    drawn.once('click', (event) => {
      picking = false;
      drawn.getCanvas().style.cursor = '';
      const { lng, lat } = event.lngLat;
      choose({ label: 'Point choisi sur la carte', query: { lat: lat.toFixed(5), lon: lng.toFixed(5) } });
      showPlace(drawn);
    });
  });

  // --- search ---------------------------------------------------------------------------------------
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!place && options.length === 1) choose(options[0]);
    if (!place) {
      say(alert('error', null, 'Choisissez un lieu dans la liste des communes, ou un point sur la carte.'));
      placeInput.focus();
      return;
    }
    const query = {
      ...place.query,
      radius_km: radius.value,
      specialism: specialism.value,
      age: age.value,
      gender: gender.value,
      language: language.value,
      open_now: openNow.querySelector('input').checked ? 'true' : null,
      available: available.querySelector('input').checked ? 'true' : null,
      collective: collective.querySelector('input').checked ? 'ensemble-contre-la-traite' : null,
      away_from: awayInput.value.trim(),
      min_distance_km: awayInput.value.trim() ? awayKm.value : null,
    };
    submit.disabled = true;
    say(h('p', {}, 'Recherche en cours…'));
    performance.clearMarks('mx-search-submit');
    performance.mark('mx-search-submit');
    try {
      const page = await get('/v1/services/search', query);
      results = [];
      clear(list);
      show(page, true);
    } catch (error) {
      say(alert('error', 'La recherche a échoué', error.message));
    } finally {
      submit.disabled = false;
    }
  });

  more.addEventListener('click', async () => {
    const next = more.dataset.next;
    more.disabled = true;
    try {
      const target = new URL(next);
      const page = (await request(target.pathname + target.search)).data;
      show(page, false);
    } catch (error) {
      say(alert('error', null, error.message));
    } finally {
      more.disabled = false;
    }
  });

  function show(page, first) {
    const features = page.features;
    results.push(...features);
    list.append(...features.map((feature) => card(feature, labels, ctx)));
    if (first && features.length) {
      performance.mark('mx-first-result');
      performance.measure('mx-search-to-first-result', 'mx-search-submit', 'mx-first-result');
    }
    const next = (page.links || []).find((link) => link.rel === 'next');
    more.hidden = !next;
    if (next) more.dataset.next = next.href;
    if (!results.length) {
      const reason = page.empty_reason;
      say(alert('info', 'Aucun service trouvé',
        reason ? `${reason.detail}` : 'Aucun service ne correspond à ces critères.'));
    } else {
      say(h('p', {}, `${results.length} service${results.length > 1 ? 's' : ''} trouvé${results.length > 1 ? 's' : ''}${next ? ' (d’autres suivent)' : ''}.`));
    }
    drawResults();
  }

  async function ensureMap() {
    if (map) return map;
    mapBox.hidden = false;
    mapNote.hidden = false;
    try {
      const { createMap } = await import('../map.js');
      map = await createMap(mapBox, { ariaLabel: 'Carte des résultats (la liste donne les mêmes informations)', styleUrl: ctx.config.map_style_url });
      map.addSource('results', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
      map.addSource('place', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
      map.addLayer({ id: 'results-exact', type: 'circle', source: 'results', filter: ['==', ['get', 'precision'], 'exact'],
        paint: { 'circle-radius': 7, 'circle-color': '#000091', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
      map.addLayer({ id: 'results-commune', type: 'circle', source: 'results', filter: ['==', ['get', 'precision'], 'commune'],
        paint: { 'circle-radius': 16, 'circle-color': 'rgba(206, 97, 64, 0.15)', 'circle-stroke-color': '#ce6140', 'circle-stroke-width': 2 } });
      map.addLayer({ id: 'place', type: 'circle', source: 'place',
        paint: { 'circle-radius': 6, 'circle-color': '#e1000f', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
      for (const layer of ['results-exact', 'results-commune']) {
        map.on('click', layer, (event) => {
          const id = event.features[0]?.properties?.id;
          document.getElementById(`result-${id}`)?.focus();
        });
      }
      ctx.onLeave(() => { map?.remove(); map = null; });
      return map;
    } catch (error) {
      mapBox.hidden = true;
      mapNote.hidden = false;
      mapNote.textContent = `${error.message || 'La carte est indisponible'} : la liste donne les mêmes informations.`;
      return null;
    }
  }

  function showPlace(drawn) {
    const { lat, lon } = place?.query || {};
    drawn.getSource('place')?.setData({ type: 'FeatureCollection', features: lat ? [
      { type: 'Feature', geometry: { type: 'Point', coordinates: [Number(lon), Number(lat)] }, properties: {} }] : [] });
  }

  async function drawResults() {
    const drawn = await ensureMap();
    if (!drawn) return;
    const located = results.filter((f) => f.geometry);
    drawn.getSource('results').setData({ type: 'FeatureCollection', features: located.map((f) => ({
      type: 'Feature', geometry: f.geometry,
      properties: { id: f.id, precision: f.properties.location_precision === 'exact' ? 'exact' : 'commune' } })) });
    showPlace(drawn);
    // Frame the services received near the place (a national service far away would zoom out to France).
    const near = located.filter((f) => f.properties.match?.reach === 'within_radius');
    const points = (near.length ? near : located).map((f) => f.geometry.coordinates);
    if (points.length) {
      const { boundsOf } = await import('../map.js');
      drawn.fitBounds(boundsOf(points), { padding: 40, maxZoom: 12, duration: 0 });
    }
  }
}

function km(metres) {
  if (metres === null || metres === undefined) return null;
  return metres < 1000 ? `${Math.round(metres / 100) * 100} m` : `${(metres / 1000).toFixed(metres < 10000 ? 1 : 0).replace('.', ',')} km`;
}

// A place shown at its commune is as far as its commune's point (a safe house's distance even comes
// rounded to the km): say so, never "0 m".
function distance(metres, approximate) {
  if (metres === null || metres === undefined) return 'Sans lieu d’accueil (téléphone, en ligne)';
  if (!approximate) return `À ${km(metres)}`;
  return metres < 1000 ? 'À moins de 1 km environ,' : `À ${Math.round(metres / 1000)} km environ,`;
}

function card(feature, labels, ctx) {
  const p = feature.properties;
  const m = p.match || {};
  const [openKind, openText] = OPEN[m.open] || ['info', 'Horaires inconnus'];
  const capacity = p.capacity ? CAPACITY[p.capacity.state] : null;
  const titleId = `result-title-${feature.id}`;
  // A safe house: hidden (its commune and its front door only), or shown exactly to a specialist who
  // has a handoff to it — whose address must then never be passed on. A public place may come at its
  // commune too (not located more precisely), with its address.
  const hidden = Boolean(p.front_door);
  const confidential = p.confidential ?? hidden;
  const atCommune = p.location_precision !== 'exact';
  const zone = zoneOf(p);
  return h('li', { class: 'mx-result', id: `result-${feature.id}`, tabindex: '-1', 'aria-labelledby': titleId },
    h('h3', { id: titleId }, p.name),
    h('p', {}, p.organisation.name, p.demo ? ' ' : null, p.demo ? badge('info', 'démo') : null),
    h('div', { class: 'mx-facts' },
      badge(openKind, openText),
      capacity ? badge(capacity[0], capacity[1] + (p.capacity.places !== null && p.capacity.places !== undefined ? ` (${p.capacity.places})` : '')) : null,
      p.stale ? badge('warning', 'À revérifier') : badge('success', 'Vérifié'),
      p.status === 'temporarily_closed' ? badge('error', 'Fermeture temporaire') : null),
    h('p', {},
      [distance(p.distance_m, atCommune),
        p.commune ? `${atCommune ? 'commune de' : '—'} ${p.commune.name}` : null].filter(Boolean).join(' ')),
    p.next_opening ? h('p', {}, `Prochaine ouverture : ${formatDateTime(p.next_opening, zone)}${zone === 'Europe/Paris' ? '' : ' (heure locale)'}`) : null,
    p.closure ? h('p', {}, `Fermé${p.closure.until ? ` jusqu’au ${formatDate(p.closure.until, zone)}` : ''}${p.closure.message ? ` : ${p.closure.message}` : ''}`) : null,
    hidden
      ? h('p', {}, 'Lieu confidentiel : adresse non communiquée. Contact par la porte d’entrée : ',
        [p.front_door?.phone, p.front_door?.email].filter(Boolean).join(' · ') || 'non renseigné')
      : confidential
        ? h('div', { class: 'mx-confidential' },
          h('p', {}, h('strong', {}, 'Lieu confidentiel (mise à l’abri) : '), 'son adresse vous est montrée pour une orientation en cours. Ne la communiquez jamais à l’appelant·e ni à la famille.'),
          p.address ? h('p', {}, p.address) : null)
        : p.address ? h('p', {}, p.address) : null,
    h('p', {}, [p.contact?.phone, p.contact?.email].filter(Boolean).join(' · ')),
    h('p', { class: 'mx-why' }, 'Pourquoi ce service : ',
      [(m.specialisms || []).map((s) => labels[s] || s).join(', '), REACH[m.reach], m.distance_band,
        m.away_km !== null && m.away_km !== undefined ? `à ${m.away_km} km au moins du lieu de danger` : null,
        p.last_verified_at ? `vérifié le ${formatDate(p.last_verified_at, zone)}` : 'jamais vérifié',
        p.capacity?.as_of ? `places au ${formatDateTime(p.capacity.as_of, zone)}` : null].filter(Boolean).join(' · ')),
    ctx.me.role === 'specialist'
      ? h('button', { class: 'fr-btn fr-btn--sm fr-btn--secondary', type: 'button',
        onclick: () => ctx.go('case', { service: { id: feature.id, name: p.name, organisation: p.organisation } }) },
      'Orienter vers ce service', h('span', { class: 'mx-visually-hidden' }, ` : ${p.name}`))
      : null);
}
