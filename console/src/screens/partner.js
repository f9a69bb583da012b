// The partner's listings ("Nos services"): its organisation's services, with what a coordinator keeps
// true in a few clicks — free places, a temporary closure, a verification — and its locations and
// service areas.
//
// Writes on a stale version never overwrite: the capacity is written with If-Match (the ETag of the
// version shown); when the API answers 412, the screen reads the current version, shows which of the
// fields the person saw have changed meanwhile, and what the person meant to do, and lets them apply
// it again to the current version or drop it.
import { h, append, clear, alert, badge, field, select, uid, zoneOf, formatter } from '../dom.js';
import * as api from '../api.js';

const CAPACITY = { available: 'Places disponibles', limited: 'Places limitées', full: 'Complet', waitlist: 'Liste d’attente' };
const CAPACITY_BADGE = { available: 'success', limited: 'warning', full: 'error', waitlist: 'warning' };
const STATUS = { active: 'Ouvert', temporarily_closed: 'Fermé temporairement', suspended: 'Suspendu par Maillage' };
const DAYS = [['mon', 'lun.'], ['tue', 'mar.'], ['wed', 'mer.'], ['thu', 'jeu.'], ['fri', 'ven.'], ['sat', 'sam.'], ['sun', 'dim.']];
const CHANNELS = { in_person: 'sur place', phone: 'téléphone', online: 'en ligne', chat: 'tchat', mobile: 'équipe mobile', outreach: 'maraude' };
const GENDERS = { female: 'filles', male: 'garçons', other: 'autres' };
// Opening hours and dates are those of the service's place: a closure "until the 12th" in Réunion
// ends at midnight in Réunion.
const ZONE_NAMES = { 'America/Guadeloupe': 'heure de la Guadeloupe', 'America/Martinique': 'heure de la Martinique',
  'America/Cayenne': 'heure de la Guyane', 'Indian/Reunion': 'heure de La Réunion', 'Indian/Mayotte': 'heure de Mayotte' };
const FRESHNESS_DAYS = 30;

export async function render(root, ctx) {
  const organisation = ctx.me.organisation;
  const heading = h('h1', { tabindex: '-1' }, 'Nos services');
  const body = h('div', {}, h('p', {}, 'Chargement de vos services…'));
  clear(root, heading, body);
  if (!organisation) {
    body.replaceChildren(alert('warning', 'Aucune organisation', 'Votre compte n’est rattaché à aucune organisation : il n’y a pas de service à tenir à jour.'));
    return;
  }
  let alive = true;
  ctx.onLeave(() => { alive = false; });

  const base = `/v1/organisations/${encodeURIComponent(organisation.id)}`;
  let org;
  let locations;
  let areas;
  let labels;
  try {
    [org, locations, areas, labels] = await Promise.all([
      api.get(base),
      everything(`${base}/locations`),
      everything(`${base}/service-areas`),
      specialismLabels(ctx.state),
    ]);
  } catch (error) {
    body.replaceChildren(alert('error', 'Vos services n’ont pas pu être chargés', error.message));
    return;
  }
  if (!alive) return;
  const cards = new Map();
  const summaries = org.services || [];
  const detailed = await inBatches(summaries, 6, async (summary) => {
    try {
      const { data, etag } = await api.request(`/v1/services/${encodeURIComponent(summary.id)}`);
      return { id: summary.id, feature: data, etag, error: null };
    } catch (error) {
      return { id: summary.id, feature: null, etag: null, error, name: summary.name };
    }
  });
  if (!alive) return;

  const overview = h('p', { class: 'mx-partner-overview' });
  const freshness = h('section', { class: 'mx-panel mx-freshness', 'aria-labelledby': 'freshness-title' });
  const list = h('div', { class: 'mx-services' });
  for (const entry of detailed) {
    const card = serviceCard(entry);
    cards.set(entry.id, card);
    list.append(card.el);
  }
  body.replaceChildren(
    h('p', { class: 'mx-partner-org' }, org.name),
    overview,
    freshness,
    h('section', { 'aria-labelledby': 'services-title' },
      h('h2', { id: 'services-title' }, `Services (${summaries.length})`),
      summaries.length ? list : h('p', {}, 'Votre organisation n’a pas encore de service dans Maillage.')),
    locationsSection(locations),
    areasSection(areas, detailed));
  updateOverview();
  await refreshFreshness();

  // --- freshness: what needs re-verifying --------------------------------------------------------
  async function refreshFreshness() {
    let data;
    try {
      data = await api.get(`${base}/freshness`, { within_days: FRESHNESS_DAYS });
    } catch (error) {
      freshness.replaceChildren(h('h2', { id: 'freshness-title' }, 'À revérifier'),
        alert('error', 'La liste des services à revérifier n’a pas pu être chargée', error.message));
      return;
    }
    if (!alive) return;
    const items = data.items || [];
    freshness.replaceChildren(
      h('h2', { id: 'freshness-title' }, `À revérifier (${items.length})`),
      items.length
        ? h('div', {},
          h('p', {}, `Une fiche non vérifiée depuis ${data.stale_after_days} jours est signalée comme ancienne aux écoutant·es du 119. `
            + 'Vérifiez ces fiches, corrigez-les si besoin, puis confirmez qu’elles sont à jour.'),
          h('ul', { class: 'mx-freshness-list' }, items.map((item) => h('li', {},
            h('a', { href: `#service-${item.service_id}`, onclick: (event) => { event.preventDefault(); focusCard(item.service_id); } }, item.name),
            ' — ',
            item.last_verified_at ? `vérifiée le ${formatDate(item.last_verified_at)}` : 'jamais vérifiée',
            ', ',
            item.stale ? 'à revérifier dès maintenant' : `à revérifier avant le ${formatDate(item.due_at)}`,
            ' ',
            item.stale ? badge('error', 'Ancienne') : badge('warning', 'Bientôt')))))
        : h('p', {}, `Toutes vos fiches sont à jour : aucune vérification n’est due dans les ${data.within_days} prochains jours.`));
  }

  function focusCard(id) {
    const card = cards.get(id);
    if (!card) return;
    const title = card.el.querySelector('h3');
    title.scrollIntoView({ block: 'start' });
    title.focus();
  }

  function updateOverview() {
    const features = [...cards.values()].map((c) => c.feature).filter(Boolean);
    const closed = features.filter((f) => f.properties.status !== 'active').length;
    const full = features.filter((f) => f.properties.capacity?.state === 'full').length;
    const stale = features.filter((f) => f.properties.stale).length;
    overview.textContent = [
      plural(features.length, 'service', 'services'),
      `${closed} fermé${closed > 1 ? 's' : ''} ou suspendu${closed > 1 ? 's' : ''}`,
      `${full} complet${full > 1 ? 's' : ''}`,
      `${stale} fiche${stale > 1 ? 's' : ''} ancienne${stale > 1 ? 's' : ''}`,
    ].join(' · ');
  }

  // --- one service -------------------------------------------------------------------------------
  function serviceCard(entry) {
    const card = {
      id: entry.id, feature: entry.feature, etag: entry.etag,
      el: h('article', { class: 'mx-panel mx-service', id: `service-${entry.id}`, 'aria-labelledby': `service-${entry.id}-title` }),
      body: h('div'),
      messages: h('div', { class: 'mx-service-messages' }),
      live: h('div', { role: 'status', 'aria-live': 'polite', class: 'mx-service-live' }),
      closureOpen: false,
    };
    card.el.append(card.body, card.messages, card.live);
    if (entry.error) {
      card.body.append(h('h3', { id: `service-${entry.id}-title`, tabindex: '-1' }, entry.name),
        alert('error', 'Ce service n’a pas pu être chargé', entry.error.message));
    } else {
      draw(card);
    }
    return card;
  }

  function draw(card) {
    const p = card.feature.properties;
    const zone = zoneOf(p);
    const id = card.id;
    const suffix = h('span', { class: 'mx-visually-hidden' }, ` : ${p.name}`);
    const capacity = p.capacity;
    card.el.classList.toggle('mx-service--closed', p.status !== 'active');
    const facts = [
      ['Spécialités', p.specialisms?.length
        ? h('ul', { class: 'fr-tags-group mx-tags' }, p.specialisms.map((s) => h('li', {}, h('p', { class: 'fr-tag fr-tag--sm' }, labels.get(s) || s))))
        : 'Aucune'],
      ['Capacité', capacityText(capacity, zone)],
      ['Fermeture', closureText(p, zone)],
      ['Horaires', scheduleText(p.schedule)],
      ['Lieu', locationText(p)],
      ['Zones d’intervention', areasText(p.areas)],
      ['Public', publicText(p)],
      ['Dernière vérification', p.last_verified_at ? formatDateTime(p.last_verified_at, zone) : 'Jamais vérifiée'],
    ];
    const badges = h('p', { class: 'mx-service-badges' },
      badge(p.status === 'active' ? 'success' : 'error', STATUS[p.status] || p.status),
      capacity ? badge(CAPACITY_BADGE[capacity.state] || 'info', CAPACITY[capacity.state] || capacity.state) : badge('info', 'Capacité non renseignée'),
      p.stale ? badge('warning', 'Fiche ancienne') : null,
      p.demo ? badge('info', 'Démo') : null,
      p.source ? badge('info', `Importé de ${p.source.name}`) : null);
    append(clear(card.body), [
      h('h3', { id: `service-${id}-title`, class: 'mx-service-title', tabindex: '-1' }, p.name),
      badges,
      h('dl', { class: 'mx-service-facts' }, facts.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)])),
      p.status === 'suspended'
        ? alert('warning', null, 'Ce service est suspendu par Maillage : seule l’administration de Maillage peut lever la suspension.')
        : null,
      capacityActions(card, suffix),
      p.status === 'suspended' ? null : closureActions(card, suffix, zone),
      h('div', { class: 'mx-partner-actions' },
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', dataset: { focus: 'verify' }, onclick: () => verify(card) },
          'Confirmer que cette fiche est à jour', suffix.cloneNode(true)))]);
  }

  function capacityActions(card, suffix) {
    const p = card.feature.properties;
    const current = p.capacity;
    const places = h('input', { type: 'number', min: '0', max: '10000', step: '1', inputmode: 'numeric', dataset: { focus: 'places' },
      value: current?.places ?? '' });
    const state = select(Object.entries(CAPACITY), { dataset: { focus: 'state' } });
    state.value = current?.state || 'available';
    places.addEventListener('input', () => {
      const n = Number(places.value);
      if (places.value !== '' && n === 0 && (state.value === 'available' || state.value === 'limited')) state.value = 'full';
      else if (n > 0 && state.value === 'full') state.value = 'available';
    });
    const form = h('form', { class: 'mx-capacity-form', novalidate: true },
      h('div', { class: 'mx-row' },
        field('Places libres', places, 'Nombre entier, de 0 à 10 000 ; vide si vous ne comptez pas en places.'),
        field('Situation', state),
        h('div', { class: 'mx-capacity-submit' },
          h('button', { class: 'fr-btn', type: 'submit', dataset: { focus: 'capacity-save' } }, 'Enregistrer la capacité', suffix.cloneNode(true)))));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const raw = places.value.trim();
      const n = Number(raw);
      if (raw !== '' && (!Number.isInteger(n) || n < 0 || n > 10000)) {
        invalid(card, places, 'Le nombre de places libres doit être un nombre entier entre 0 et 10 000.');
        return;
      }
      const value = raw === '' ? (state.value === 'full' ? 0 : null) : n;
      capacityWrite(card, { state: state.value, places: value }, ['capacity-save']);
    });
    const showFull = !(current?.state === 'full' && (current.places ?? 0) === 0);
    return h('fieldset', { class: 'mx-capacity' },
      h('legend', { class: 'mx-capacity-legend' }, 'Capacité'),
      showFull
        ? h('div', { class: 'mx-partner-actions' },
          h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', dataset: { focus: 'full' },
            onclick: () => capacityWrite(card, { state: 'full', places: 0 }, ['full', 'places']) }, 'Marquer complet', suffix.cloneNode(true)))
        : null,
      form);
  }

  function closureActions(card, suffix, zone) {
    const p = card.feature.properties;
    if (p.status === 'temporarily_closed') {
      return h('div', { class: 'mx-closure' },
        h('h4', {}, 'Fermeture temporaire'),
        h('div', { class: 'mx-partner-actions' },
          h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', dataset: { focus: 'reopen' }, onclick: () => reopen(card) },
            'Rouvrir maintenant', suffix.cloneNode(true))));
    }
    const formId = uid('closure');
    const toggle = h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', dataset: { focus: 'closure-toggle' },
      'aria-expanded': String(card.closureOpen), 'aria-controls': formId }, 'Fermer temporairement…', suffix.cloneNode(true));
    const today = isoDate(new Date(), zone);
    const from = h('input', { type: 'date', required: true, value: today, dataset: { focus: 'closure-from' } });
    const until = h('input', { type: 'date', min: today, dataset: { focus: 'closure-until' } });
    const message = h('input', { type: 'text', maxlength: '500', autocomplete: 'off', dataset: { focus: 'closure-message' } });
    const zoneHint = zone === 'Europe/Paris' ? '' : ` (${ZONE_NAMES[zone]})`;
    const form = h('form', { id: formId, class: 'mx-closure-form', novalidate: true, hidden: !card.closureOpen },
      h('div', { class: 'mx-row' },
        field('Fermé à partir du', from, `Dès 0 h ce jour-là${zoneHint}.`),
        field('Réouverture le', until, 'Facultatif : le service rouvre ce jour-là à 0 h. Vide : jusqu’à ce que vous le rouvriez.')),
      field('Motif', message, 'Affiché aux écoutant·es du 119 (500 caractères au plus). Aucune donnée personnelle.'),
      h('div', { class: 'mx-partner-actions' },
        h('button', { class: 'fr-btn', type: 'submit', dataset: { focus: 'closure-save' } }, 'Enregistrer la fermeture', suffix.cloneNode(true)),
        h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', onclick: () => { setOpen(false); toggle.focus(); } }, 'Annuler')));
    function setOpen(open) {
      card.closureOpen = open;
      form.hidden = !open;
      toggle.setAttribute('aria-expanded', String(open));
    }
    toggle.addEventListener('click', () => {
      setOpen(form.hidden);
      if (!form.hidden) from.focus();
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!from.value) {
        invalid(card, from, 'Indiquez le premier jour de la fermeture.');
        return;
      }
      if (until.value && until.value <= from.value) {
        invalid(card, until, 'La réouverture doit venir après le début de la fermeture.');
        return;
      }
      const body = { from: zonedMidnight(from.value, zone), until: until.value ? zonedMidnight(until.value, zone) : null,
        message: message.value.trim() || null };
      write(card, {
        focus: ['reopen'],
        touches: ['status', 'closure'],
        closesForm: true,
        describe: `fermeture à partir du ${formatDate(body.from, zone)}${body.until ? `, réouverture le ${formatDate(body.until, zone)}` : ''}`,
        run: (etag) => api.request(`/v1/services/${card.id}/closures`, { method: 'POST', body, headers: ifMatch(etag) }),
        done: () => `Fermeture enregistrée : ${closureText(card.feature.properties, zone)}.`,
        failure: 'La fermeture n’a pas été enregistrée',
      });
    });
    return h('div', { class: 'mx-closure' }, h('div', { class: 'mx-partner-actions' }, toggle), form);
  }

  // --- writes ------------------------------------------------------------------------------------
  function capacityWrite(card, value, focus) {
    const zone = zoneOf(card.feature.properties);
    write(card, {
      focus,
      touches: ['capacity', 'places', 'capacity_as_of'],
      describe: `capacité « ${CAPACITY[value.state]} »${value.places === null ? '' : `, ${plural(value.places, 'place libre', 'places libres')}`}`,
      run: (etag) => api.request(`/v1/services/${card.id}/capacity`, { method: 'PUT', body: value, headers: ifMatch(etag) }),
      done: () => `Capacité enregistrée : ${capacityText(card.feature.properties.capacity, zone)}.`,
      failure: 'La capacité n’a pas été enregistrée',
    });
  }

  function reopen(card) {
    write(card, {
      focus: ['closure-toggle'],
      touches: ['status', 'closure'],
      describe: 'réouverture immédiate',
      run: (etag) => api.request(`/v1/services/${card.id}/reopen`, { method: 'POST', headers: ifMatch(etag) }),
      done: () => 'Service rouvert : il est de nouveau proposé aux écoutant·es.',
      failure: 'Le service n’a pas été rouvert',
    });
  }

  function verify(card) {
    write(card, {
      focus: ['verify'],
      touches: ['last_verified_at'],
      describe: 'confirmation que la fiche est à jour',
      run: (etag) => api.request(`/v1/services/${card.id}/verify`, { method: 'POST', headers: ifMatch(etag) }),
      done: () => `Fiche confirmée à jour le ${formatDateTime(card.feature.properties.last_verified_at, zoneOf(card.feature.properties))}.`,
      failure: 'La vérification n’a pas été enregistrée',
      after: refreshFreshness,
    });
  }

  // One write: the card's controls are disabled meanwhile; the answer redraws the card and focus goes
  // back to the control that was used (or the card's title). A refusal leaves the form as it was, with
  // the API's reason; a 412 opens the conflict panel. Fields the write did not touch but that changed
  // meanwhile (someone else's change, seen only now) are named.
  async function write(card, intent) {
    const seen = card.feature;
    const controls = [...card.el.querySelectorAll('button:not([disabled]), input:not([disabled]), select:not([disabled])')];
    const active = document.activeElement;
    card.el.setAttribute('aria-busy', 'true');
    for (const control of controls) {
      control.disabled = true;
      control.removeAttribute('aria-invalid');
      control.removeAttribute('aria-describedby');
    }
    card.messages.replaceChildren();
    card.live.replaceChildren();
    let answer;
    try {
      answer = await intent.run(card.etag);
    } catch (error) {
      if (!alive) return;
      card.el.removeAttribute('aria-busy');
      for (const control of controls) control.disabled = false;
      if (error instanceof api.ApiError && error.status === 412) {
        await conflict(card, seen, intent);
      } else {
        card.messages.replaceChildren(alert('error', intent.failure, error.message));
        if (active && card.el.contains(active)) active.focus();
        else refocus(card, intent.focus);
      }
      return;
    }
    if (!alive) return;
    card.el.removeAttribute('aria-busy');
    card.feature = answer.data;
    card.etag = answer.etag;
    if (intent.closesForm) card.closureOpen = false;
    draw(card);
    updateOverview();
    const others = differences(seen, answer.data, intent.touches);
    card.live.replaceChildren(notice('success', intent.done()));
    if (others.length) {
      card.messages.replaceChildren(h('div', { class: 'fr-alert fr-alert--info fr-alert--sm' },
        h('h4', { class: 'fr-alert__title' }, 'D’autres informations de ce service ont changé entre-temps'),
        changesTable(others, 'Changements faits par ailleurs depuis votre lecture')));
    }
    refocus(card, intent.focus);
    if (intent.after) await intent.after();
  }

  async function conflict(card, seen, intent) {
    let fresh;
    try {
      fresh = await api.request(`/v1/services/${card.id}`);
    } catch (error) {
      draw(card);
      card.messages.replaceChildren(alert('error', intent.failure,
        `Le service a été modifié entre-temps et sa version actuelle n’a pas pu être lue : ${error.message}`));
      refocus(card, intent.focus);
      return;
    }
    if (!alive) return;
    card.feature = fresh.data;
    card.etag = fresh.etag;
    draw(card);
    updateOverview();
    const changes = differences(seen, fresh.data);
    const titleId = uid('conflict');
    const panel = h('div', { class: 'fr-alert fr-alert--warning mx-conflict', role: 'alert', tabindex: '-1', 'aria-labelledby': titleId },
      h('h4', { class: 'fr-alert__title', id: titleId }, 'Ce service a été modifié pendant que vous le consultiez'),
      h('p', {}, 'Votre modification n’a pas été enregistrée : elle portait sur une version dépassée. La fiche ci-dessus montre maintenant la version actuelle.'),
      changes.length
        ? changesTable(changes, 'Ce qui a changé depuis votre lecture')
        : h('p', {}, 'Aucune des informations affichées n’a changé : seule la version de la fiche a avancé.'),
      h('p', { class: 'mx-intent' }, h('strong', {}, 'Votre modification : '), intent.describe, '.'),
      h('div', { class: 'mx-partner-actions' },
        h('button', { class: 'fr-btn', type: 'button', onclick: () => write(card, intent) },
          'Appliquer ma modification à la version actuelle'),
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: () => {
          card.messages.replaceChildren();
          card.live.replaceChildren(notice('info', 'Modification abandonnée : la version actuelle est affichée.'));
          refocus(card, intent.focus);
        } }, 'Abandonner ma modification')));
    card.messages.replaceChildren(panel);
    panel.focus();
  }

  // A value the browser can judge: said next to the card, tied to the field, which gets the focus.
  function invalid(card, control, message) {
    const error = alert('error', 'À corriger', message);
    error.id = uid('error');
    for (const other of card.el.querySelectorAll('[aria-invalid]')) {
      other.removeAttribute('aria-invalid');
      other.removeAttribute('aria-describedby');
    }
    control.setAttribute('aria-invalid', 'true');
    control.setAttribute('aria-describedby', error.id);
    card.messages.replaceChildren(error);
    control.focus();
  }

  function refocus(card, keys = []) {
    const target = keys.map((key) => card.el.querySelector(`[data-focus="${key}"]:not([disabled])`)).find(Boolean)
      || card.el.querySelector('h3');
    target.focus();
  }
}

// --- what changed -------------------------------------------------------------------------------

// The fields of a service a partner reads on its card, as text, in the order shown.
function facts(feature) {
  const p = feature.properties;
  const zone = zoneOf(p);
  return [
    ['name', 'Nom', p.name],
    ['status', 'État', STATUS[p.status] || p.status],
    ['closure', 'Fermeture', closureText(p, zone)],
    ['capacity', 'Capacité', p.capacity ? CAPACITY[p.capacity.state] || p.capacity.state : 'Non renseignée'],
    ['places', 'Places libres', p.capacity && p.capacity.places !== null && p.capacity.places !== undefined ? String(p.capacity.places) : 'Non précisé'],
    ['capacity_as_of', 'Capacité à jour au', p.capacity?.as_of ? formatDateTime(p.capacity.as_of, zone) : '—'],
    ['last_verified_at', 'Dernière vérification', p.last_verified_at ? formatDateTime(p.last_verified_at, zone) : 'Jamais vérifiée'],
    ['specialisms', 'Spécialités', (p.specialisms || []).join(', ')],
    ['schedule', 'Horaires', scheduleText(p.schedule)],
    ['location', 'Lieu', locationText(p)],
    ['areas', 'Zones d’intervention', areasText(p.areas)],
    ['public', 'Public', publicText(p)],
    ['description', 'Description', p.description || '—'],
    ['contact', 'Contact', [p.contact?.phone, p.contact?.email, p.contact?.website].filter(Boolean).join(' · ') || '—'],
  ];
}

function differences(before, after, skip = []) {
  const old = new Map(facts(before).map(([key, , value]) => [key, value]));
  return facts(after)
    .filter(([key, , value]) => !skip.includes(key) && old.get(key) !== value)
    .map(([key, label, value]) => ({ key, label, before: old.get(key), after: value }));
}

function changesTable(changes, caption) {
  return h('div', { class: 'fr-table fr-table--sm mx-changes' },
    h('div', { class: 'fr-table__wrapper' }, h('div', { class: 'fr-table__container' }, h('div', { class: 'fr-table__content' },
      h('table', {},
        h('caption', {}, caption),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Information'), h('th', { scope: 'col' }, 'Ce que vous aviez vu'),
          h('th', { scope: 'col' }, 'Maintenant'))),
        h('tbody', {}, changes.map((c) => h('tr', { dataset: { field: c.key } },
          h('th', { scope: 'row' }, c.label), h('td', {}, c.before), h('td', {}, c.after)))))))));
}

// --- text of a service --------------------------------------------------------------------------

function capacityText(capacity, zone) {
  if (!capacity) return 'Non renseignée';
  const parts = [CAPACITY[capacity.state] || capacity.state];
  if (capacity.places !== null && capacity.places !== undefined) parts.push(plural(capacity.places, 'place libre', 'places libres'));
  if (capacity.as_of) parts.push(`au ${formatDateTime(capacity.as_of, zone)}`);
  return parts.join(', ');
}

function closureText(p, zone) {
  if (p.status !== 'temporarily_closed' || !p.closure) return 'Aucune';
  const { from, until, message } = p.closure;
  const now = Date.now();
  const start = from ? new Date(from).getTime() : null;
  let text;
  if (start && start > now) text = `Prévue à partir du ${formatDateTime(from, zone)}`;
  else text = from ? `Depuis le ${formatDateTime(from, zone)}` : 'En cours';
  text += until ? `, réouverture le ${formatDateTime(until, zone)}` : ', jusqu’à réouverture';
  return message ? `${text} — ${message}` : text;
}

function scheduleText(schedule) {
  if (!schedule) return 'Inconnus';
  switch (schedule.mode) {
    case 'always': return '24 h/24, 7 j/7';
    case 'on_call': return 'Sur appel (astreinte)';
    case 'unknown': return 'Inconnus';
    case 'weekly': {
      const days = DAYS.filter(([day]) => schedule.weekly?.[day]?.length)
        .map(([day, label]) => `${label} ${schedule.weekly[day].map(([a, b]) => `${a}–${b}`).join(', ')}`);
      const text = days.length ? days.join(' ; ') : 'Aucune plage';
      const extra = [schedule.closed_on_public_holidays === false ? 'ouvert les jours fériés' : 'fermé les jours fériés'];
      if (schedule.exceptions?.length) extra.push(plural(schedule.exceptions.length, 'exception datée', 'exceptions datées'));
      return `${text} (${extra.join(', ')})`;
    }
    default: return JSON.stringify(schedule);
  }
}

function locationText(p) {
  if (!p.location && !p.commune) return 'Sans lieu (service à distance)';
  const name = p.location?.name;
  const commune = p.commune ? `${p.commune.name} (${p.commune.code})` : p.location?.commune_code;
  const parts = [name, p.address, commune].filter(Boolean);
  const confidential = p.location?.visibility === 'confidential' ? ' — adresse confidentielle' : '';
  return `${parts.join(', ')}${confidential}`;
}

function areaText(area) {
  if (area.national) return 'toute la France';
  const parts = [];
  if (area.regions?.length) parts.push(`${area.regions.length > 1 ? 'régions' : 'région'} ${area.regions.join(', ')}`);
  if (area.collectivites?.length) parts.push(`${area.collectivites.length > 1 ? 'collectivités' : 'collectivité'} ${area.collectivites.join(', ')}`);
  if (area.departements?.length) parts.push(`${area.departements.length > 1 ? 'départements' : 'département'} ${area.departements.join(', ')}`);
  if (area.communes?.length) parts.push(`${area.communes.length > 1 ? 'communes' : 'commune'} ${area.communes.join(', ')}`);
  if (area.radius_km) parts.push(`${area.radius_km} km autour du lieu`);
  return parts.join(' ; ') || 'non précisée';
}

function areasText(areas) {
  return areas?.length ? areas.map(areaText).join(' · ') : 'Aucune (le lieu seul)';
}

function publicText(p) {
  const parts = [];
  if (p.age_min !== null && p.age_min !== undefined && p.age_max !== null && p.age_max !== undefined) parts.push(`${p.age_min} à ${p.age_max} ans`);
  else if (p.age_min !== null && p.age_min !== undefined) parts.push(`dès ${p.age_min} ans`);
  else if (p.age_max !== null && p.age_max !== undefined) parts.push(`jusqu’à ${p.age_max} ans`);
  if (p.genders?.length) parts.push(p.genders.map((g) => GENDERS[g] || g).join(', '));
  if (p.channels?.length) parts.push(p.channels.map((c) => CHANNELS[c] || c).join(', '));
  if (p.languages?.length) parts.push(`langues : ${p.languages.join(', ')}`);
  return parts.join(' · ') || '—';
}

// --- locations and areas ------------------------------------------------------------------------

function locationsSection(locations) {
  return h('section', { 'aria-labelledby': 'locations-title' },
    h('h2', { id: 'locations-title' }, `Lieux (${locations.length})`),
    locations.length
      ? table('Lieux de votre organisation', ['Nom', 'Commune', 'Adresse', 'Visibilité', 'Position'], locations.map((l) => [
        l.name || 'Sans nom',
        `${l.commune.name} (${l.commune.code})`,
        l.address || '—',
        l.visibility === 'confidential' ? 'Confidentielle (mise à l’abri)' : 'Publique',
        l.location_precision === 'exact' ? 'Exacte' : 'Au centre de la commune',
      ]))
      : h('p', {}, 'Aucun lieu enregistré.'));
}

function areasSection(areas, detailed) {
  const names = new Map(detailed.map((d) => [d.id, d.feature?.properties.name || d.name]));
  return h('section', { 'aria-labelledby': 'areas-title' },
    h('h2', { id: 'areas-title' }, `Zones d’intervention (${areas.length})`),
    areas.length
      ? table('Zones d’intervention de vos services', ['Service', 'Zone'], areas.map((a) => [names.get(a.service_id) || a.service_id, areaText(a)]))
      : h('p', {}, 'Aucune zone d’intervention : vos services reçoivent autour de leur lieu.'));
}

function table(caption, columns, rows) {
  return h('div', { class: 'fr-table fr-table--sm' },
    h('div', { class: 'fr-table__wrapper' }, h('div', { class: 'fr-table__container' }, h('div', { class: 'fr-table__content' },
      h('table', {},
        h('caption', {}, caption),
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))))))));
}

// --- reading ------------------------------------------------------------------------------------

async function everything(path) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < 20; page += 1) {
    const answer = await api.get(path, { limit: 100, cursor });
    items.push(...answer.items);
    const next = (answer.links || []).find((link) => link.rel === 'next');
    cursor = next ? new URL(next.href, window.location.origin).searchParams.get('cursor') : null;
    if (!cursor) break;
  }
  return items;
}

async function inBatches(items, size, work) {
  const results = [];
  for (let i = 0; i < items.length; i += size) results.push(...await Promise.all(items.slice(i, i + size).map(work)));
  return results;
}

async function specialismLabels(state) {
  if (!state.specialismLabels) {
    try {
      const taxonomy = await api.get('/v1/specialisms');
      state.specialismLabels = new Map(taxonomy.items.map((s) => [s.slug, s.label_fr]));
    } catch {
      return new Map(); // labels are a comfort: the slugs are shown instead
    }
  }
  return state.specialismLabels;
}

// --- dates in the service's own time zone -------------------------------------------------------

function formatDateTime(iso, zone = 'Europe/Paris') {
  if (!iso) return '—';
  const date = new Date(iso);
  const time = formatter(zone, { hour: '2-digit', minute: '2-digit' }).format(date);
  const day = formatter(zone, { day: 'numeric', month: 'long', year: 'numeric' }).format(date);
  return time === '00:00' ? day : `${day} à ${time.replace(':', ' h ')}`;
}

function formatDate(iso, zone = 'Europe/Paris') {
  return iso ? formatter(zone, { day: 'numeric', month: 'long', year: 'numeric' }).format(new Date(iso)) : '—';
}

// YYYY-MM-DD of an instant in a time zone.
function isoDate(date, zone) {
  const parts = Object.fromEntries(formatter(zone, { year: 'numeric', month: '2-digit', day: '2-digit' })
    .formatToParts(date).map((part) => [part.type, part.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

// Minutes the zone is ahead of UTC at that instant.
function offset(date, zone) {
  const parts = Object.fromEntries(formatter(zone, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit',
    minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).formatToParts(date).map((part) => [part.type, Number(part.value)]));
  return (Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second) - date.getTime()) / 60000;
}

// Midnight at the start of a calendar day in a time zone, as an ISO instant (UTC).
function zonedMidnight(day, zone) {
  const [year, month, date] = day.split('-').map(Number);
  const wall = Date.UTC(year, month - 1, date);
  let instant = wall - offset(new Date(wall), zone) * 60000;
  instant = wall - offset(new Date(instant), zone) * 60000; // once more, across a change of offset
  return new Date(instant).toISOString();
}

function plural(n, one, many) {
  return `${n} ${n > 1 ? many : one}`;
}

// A message inside a live region (role=status already): no role of its own.
function notice(kind, text) {
  return h('div', { class: `fr-alert fr-alert--${kind} fr-alert--sm` }, h('p', {}, text));
}

// The version a write is based on; none when the listing came without one (the API then takes the
// write as it is for closures and verification, and asks for one for capacity).
function ifMatch(etag) {
  return etag ? { 'If-Match': etag } : {};
}
