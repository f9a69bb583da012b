// The partner's inbox ("Orientations reçues"): the handoffs addressed to its organisation, to
// acknowledge, accept or decline (with a reason), then to follow through.
//
// Every move states the status the person saw (`from`): when someone else moved the handoff meanwhile,
// the API refuses it (409) instead of overriding; the screen then shows the handoff as it is now,
// what changed, and offers the same move again when it is still possible.
import { h, append, clear, alert, badge, field, select, uid } from '../dom.js';
import * as api from '../api.js';

const KINDS = { information_preoccupante: 'Information préoccupante', orientation: 'Orientation',
  professional_contact: 'Mise en relation', signalement: 'Signalement', shelter_request: 'Demande de mise à l’abri' };
const STATUSES = { sent: 'Envoyée', acknowledged: 'Réception accusée', accepted: 'Acceptée', declined: 'Refusée',
  in_progress: 'Accompagnement en cours', on_hold: 'En attente', completed: 'Terminée', failed: 'Échec',
  cancelled: 'Annulée par l’expéditeur', expired: 'Expirée sans réponse', entered_in_error: 'Saisie par erreur' };
const STATUS_BADGE = { sent: 'new', acknowledged: 'info', accepted: 'success', in_progress: 'success', on_hold: 'warning',
  completed: 'success', declined: 'error', failed: 'error', cancelled: 'warning', expired: 'error', entered_in_error: 'warning' };
const URGENCIES = { immediate: ['error', 'Urgence immédiate'], within_24h: ['warning', 'Sous 24 heures'], routine: ['info', 'Ordinaire'] };
const BENEFICIARIES = { minor: 'L’enfant', entourage: 'L’entourage de l’enfant', professional: 'Un·e professionnel·le' };
const BASES = { child_protection_duty: 'Protection de l’enfance', consent: 'Consentement recueilli' };
const NEEDS_FALLBACK = 'Non précisés';
// The receiver's moves from each status (the API's state machine decides; this only offers the buttons).
const MOVES = {
  sent: ['acknowledged', 'accepted', 'declined'],
  acknowledged: ['accepted', 'declined'],
  accepted: ['in_progress', 'on_hold', 'failed'],
  in_progress: ['on_hold', 'completed', 'failed'],
  on_hold: ['in_progress', 'failed'],
};
const MOVE_LABELS = { acknowledged: 'Accuser réception', accepted: 'Accepter', declined: 'Refuser…',
  in_progress: 'Commencer l’accompagnement', on_hold: 'Mettre en attente', completed: 'Terminer l’accompagnement',
  failed: 'Signaler un échec…' };
const MOVE_DONE = { acknowledged: 'Réception accusée : l’expéditeur sait que vous avez reçu la demande.',
  accepted: 'Orientation acceptée.', declined: 'Orientation refusée.', in_progress: 'Accompagnement commencé.',
  on_hold: 'Accompagnement mis en attente.', completed: 'Accompagnement terminé.', failed: 'Échec enregistré.' };
const REASONS = {
  declined: [['no_capacity', 'Plus de place disponible'], ['out_of_criteria', 'Hors de nos critères d’accueil'],
    ['out_of_territory', 'Hors de notre territoire'], ['refused_by_young_person', 'Refus du ou de la jeune'],
    ['other', 'Autre motif (à préciser)']],
  failed: [['unreachable', 'Injoignable'], ['runaway', 'Fugue'], ['refused', 'Refus de l’accompagnement'],
    ['other', 'Autre motif (à préciser)']],
};
const REASON_LABELS = Object.fromEntries([...REASONS.declined, ...REASONS.failed]);
const VIEWS = [
  ['todo', 'À traiter (envoyées, réception accusée)', ['sent', 'acknowledged']],
  ['ongoing', 'En cours (acceptées, en cours, en attente)', ['accepted', 'in_progress', 'on_hold']],
  ['closed', 'Terminées (refusées, terminées, échouées, annulées, expirées)', ['declined', 'completed', 'failed', 'cancelled', 'expired', 'entered_in_error']],
  ['all', 'Toutes', null],
];
const PAGE = 20;

export async function render(root, ctx) {
  const heading = h('h1', { tabindex: '-1' }, 'Orientations reçues');
  const status = h('div', { role: 'status', 'aria-live': 'polite', class: 'mx-inbox-status' });
  const view = select(VIEWS.map(([value, label]) => [value, label]));
  view.value = ctx.state.inboxView || 'todo';
  const filters = h('form', { class: 'mx-inbox-filters' },
    h('div', { class: 'mx-row' },
      field('Orientations à afficher', view),
      h('div', { class: 'mx-partner-actions' },
        h('button', { class: 'fr-btn', type: 'submit' }, 'Afficher'),
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: () => load(true) }, 'Actualiser'))));
  const summary = h('h2', { id: 'inbox-list-title', tabindex: '-1' }, 'Chargement…');
  const list = h('ul', { class: 'mx-handoffs', 'aria-labelledby': 'inbox-list-title' });
  const more = h('div', { class: 'mx-partner-actions' });
  append(clear(root), [heading,
    ctx.me.organisation ? h('p', { class: 'mx-partner-org' }, `Adressées à ${ctx.me.organisation.name}`) : null,
    filters, status, summary, list, more]);
  let alive = true;
  ctx.onLeave(() => { alive = false; });
  let cursor = null;
  let shown = 0;

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.state.inboxView = view.value;
    load(true);
  });
  await load(false);

  async function load(announce) {
    const [, label, statuses] = VIEWS.find(([value]) => value === view.value) || VIEWS[0];
    cursor = null;
    shown = 0;
    list.replaceChildren();
    more.replaceChildren();
    summary.textContent = 'Chargement…';
    let page;
    try {
      page = await api.get('/v1/handoffs', { box: 'inbox', status: statuses, limit: PAGE });
    } catch (error) {
      if (!alive) return;
      summary.textContent = 'Orientations reçues';
      status.replaceChildren(alert('error', 'Les orientations n’ont pas pu être chargées', error.message));
      return;
    }
    if (!alive) return;
    status.replaceChildren();
    appendPage(page);
    summary.textContent = `${label.replace(/ \(.*\)$/, '')} : ${count(shown, page)}`;
    if (announce) summary.focus();
  }

  async function loadMore() {
    let page;
    try {
      page = await api.get('/v1/handoffs', { box: 'inbox', status: (VIEWS.find(([v]) => v === view.value) || VIEWS[0])[2], limit: PAGE, cursor });
    } catch (error) {
      status.replaceChildren(alert('error', 'La suite des orientations n’a pas pu être chargée', error.message));
      return;
    }
    if (!alive) return;
    const first = list.children.length;
    appendPage(page);
    const target = list.children[first]?.querySelector('h3');
    if (target) target.focus();
  }

  function appendPage(page) {
    for (const handoff of page.items) {
      list.append(handoffCard(handoff).el);
      shown += 1;
    }
    const next = (page.links || []).find((link) => link.rel === 'next');
    cursor = next ? new URL(next.href, window.location.origin).searchParams.get('cursor') : null;
    clear(more);
    if (cursor) more.append(h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: loadMore }, 'Afficher les orientations suivantes'));
    if (!shown) list.append(h('li', { class: 'mx-handoff-empty' }, 'Aucune orientation ici.'));
  }

  function count(n, page) {
    const suffix = (page.links || []).some((link) => link.rel === 'next') ? ' (et d’autres plus anciennes)' : '';
    return `${n} orientation${n > 1 ? 's' : ''}${suffix}`;
  }

  // --- one handoff -------------------------------------------------------------------------------
  function handoffCard(handoff) {
    const card = {
      handoff,
      el: h('li', { class: 'mx-panel mx-handoff', id: `handoff-${handoff.id}` }),
      body: h('div'),
      messages: h('div', { class: 'mx-handoff-messages' }),
      live: h('div', { role: 'status', 'aria-live': 'polite', class: 'mx-handoff-live' }),
      caseBox: h('div', { class: 'mx-handoff-case' }),
      form: null,
    };
    card.el.append(card.body, card.caseBox, card.messages, card.live);
    draw(card);
    return card;
  }

  function draw(card) {
    const x = card.handoff;
    const titleId = `handoff-${x.id}-title`;
    const [urgencyKind, urgencyLabel] = URGENCIES[x.urgency] || ['info', x.urgency];
    const title = `${KINDS[x.kind] || x.kind}${x.service ? ` vers ${x.service.name}` : ''}`;
    const facts = [
      ['Envoyée par', x.sender?.name || '—'],
      ['Reçue le', formatDateTime(x.created_at)],
      ['Réponse attendue avant', formatDateTime(x.acknowledge_by)],
      ['Pour', BENEFICIARIES[x.beneficiary] || x.beneficiary],
      ['Cadre', BASES[x.legal_basis] || x.legal_basis],
      ['Motif de l’envoi', x.reason || '—'],
      x.acknowledged_at ? ['Réception accusée le', formatDateTime(x.acknowledged_at)] : null,
      x.accepted_at ? ['Acceptée le', formatDateTime(x.accepted_at)] : null,
      x.decline_reason ? ['Motif du refus', REASON_LABELS[x.decline_reason] || x.decline_reason] : null,
      x.closed_at ? ['Close le', formatDateTime(x.closed_at)] : null,
    ].filter(Boolean);
    const suffix = () => h('span', { class: 'mx-visually-hidden' }, ` : ${title}, reçue le ${formatDateTime(x.created_at)}`);
    const moves = MOVES[x.status] || [];
    card.el.setAttribute('aria-labelledby', titleId);
    // Once the handoff is over, the partner's part in the case is too: what was shown of it goes.
    if (!MOVES[x.status]) card.caseBox.replaceChildren();
    append(clear(card.body), [
      h('h3', { id: titleId, class: 'mx-handoff-title', tabindex: '-1' }, title),
      h('p', { class: 'mx-handoff-badges' },
        badge(STATUS_BADGE[x.status] || 'info', STATUSES[x.status] || x.status),
        badge(urgencyKind, urgencyLabel),
        x.overdue ? badge('error', 'Réponse en retard') : null),
      h('dl', { class: 'mx-handoff-facts' }, facts.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)])),
      moves.length
        ? h('div', { class: 'mx-partner-actions', role: 'group', 'aria-label': `Répondre : ${title}` },
          moves.map((to) => h('button', {
            class: `fr-btn${to === 'accepted' ? '' : ' fr-btn--secondary'}`, type: 'button', dataset: { move: to },
            'aria-expanded': REASONS[to] ? String(card.form?.to === to) : null,
            onclick: () => (REASONS[to] ? toggleReasons(card, to) : move(card, { to })),
          }, MOVE_LABELS[to], suffix())))
        : null,
      card.form?.to ? reasonsForm(card, card.form.to, suffix) : null,
      MOVES[x.status]
        ? h('div', { class: 'mx-partner-actions' },
          h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', dataset: { case: 'toggle' },
            'aria-expanded': String(!card.caseBox.hidden && card.caseBox.childElementCount > 0),
            onclick: () => toggleCase(card) }, 'Ce qu’il faut savoir de l’enfant', suffix()))
        : null]);
  }

  function toggleReasons(card, to) {
    card.form = card.form?.to === to ? null : { to };
    draw(card);
    const target = card.form ? card.el.querySelector('input[type=radio]') : card.el.querySelector(`[data-move="${to}"]`);
    if (target) target.focus();
  }

  // The reason of a refusal or a failure: a code, and a few words (needed for "other").
  function reasonsForm(card, to, suffix) {
    const name = uid('reason');
    const text = h('textarea', { rows: '2', maxlength: '500', dataset: { reasonText: '' } });
    const legend = to === 'declined' ? 'Motif du refus' : 'Motif de l’échec';
    const form = h('form', { class: 'mx-reasons', novalidate: true },
      h('fieldset', { class: 'fr-fieldset' },
        h('legend', { class: 'fr-fieldset__legend' }, legend),
        REASONS[to].map(([value, label], i) => {
          const id = `${name}-${i}`;
          return h('div', { class: 'fr-fieldset__element' }, h('div', { class: 'fr-radio-group' },
            h('input', { type: 'radio', id, name, value }),
            h('label', { class: 'fr-label', for: id }, label)));
        })),
      field('Précisions', text, 'Obligatoires pour « Autre motif ». Quelques mots : ni nom, ni téléphone, ni adresse, ni date de naissance.'),
      h('div', { class: 'mx-partner-actions' },
        h('button', { class: 'fr-btn', type: 'submit' }, to === 'declined' ? 'Confirmer le refus' : 'Confirmer l’échec', suffix()),
        h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', onclick: () => toggleReasons(card, to) }, 'Annuler')));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const chosen = form.querySelector('input[type=radio]:checked');
      if (!chosen) {
        card.messages.replaceChildren(alert('error', 'À corriger', `Choisissez le ${legend.toLowerCase()}.`));
        form.querySelector('input[type=radio]').focus();
        return;
      }
      const reason = text.value.trim();
      if (chosen.value === 'other' && !reason) {
        text.setAttribute('aria-invalid', 'true');
        card.messages.replaceChildren(alert('error', 'À corriger', 'Précisez le motif en quelques mots.'));
        text.focus();
        return;
      }
      move(card, { to, reason_code: chosen.value, reason: reason || null });
    });
    return form;
  }

  async function toggleCase(card) {
    const button = card.el.querySelector('[data-case="toggle"]');
    if (card.caseBox.childElementCount) {
      card.caseBox.replaceChildren();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    button.setAttribute('aria-expanded', 'true');
    card.caseBox.replaceChildren(h('p', {}, 'Chargement…'));
    try {
      const [data, labels] = await Promise.all([api.get(`/v1/cases/${encodeURIComponent(card.handoff.case_id)}`),
        specialismLabels(ctx.state)]);
      if (!alive) return;
      const cautions = [
        data.do_not_contact_parents ? 'Ne pas contacter les parents.' : null,
        data.do_not_contact_minor_directly ? 'Ne pas contacter l’enfant directement.' : null,
        data.safe_contact ? `Contact sûr : ${data.safe_contact}` : null,
      ].filter(Boolean);
      card.caseBox.replaceChildren(h('div', { class: 'mx-handoff-case-body' },
        h('h4', {}, `Dossier ${data.reference}`),
        h('dl', { class: 'mx-handoff-facts' },
          h('dt', {}, 'Âge'), h('dd', {}, data.age === null || data.age === undefined ? 'Non précisé' : `${data.age} ans`),
          h('dt', {}, 'Besoins'), h('dd', {}, data.needs?.length ? data.needs.map((n) => labels.get(n) || n).join(', ') : NEEDS_FALLBACK)),
        cautions.length
          ? h('div', { class: 'fr-alert fr-alert--warning fr-alert--sm' }, h('h5', { class: 'fr-alert__title' }, 'Précautions de contact'),
            h('p', {}, cautions.join(' ')))
          : h('p', {}, 'Aucune précaution de contact particulière.')));
    } catch (error) {
      card.caseBox.replaceChildren(alert('error', 'Le dossier n’a pas pu être lu', error.message));
    }
  }

  // One move, stating the status seen. A 409 (moved meanwhile, or no longer allowed) reads the
  // handoff again and says what changed; the same move is offered again when still possible.
  async function move(card, intent) {
    const seen = card.handoff;
    const controls = [...card.el.querySelectorAll('button:not([disabled]), input:not([disabled]), textarea:not([disabled])')];
    card.el.setAttribute('aria-busy', 'true');
    for (const control of controls) control.disabled = true;
    card.messages.replaceChildren();
    card.live.replaceChildren();
    try {
      const { data } = await api.post(`/v1/handoffs/${encodeURIComponent(seen.id)}/transitions`, { ...intent, from: seen.status });
      if (!alive) return;
      card.handoff = data;
      card.form = null;
      card.el.removeAttribute('aria-busy');
      draw(card);
      const reason = intent.reason_code ? ` Motif : ${REASON_LABELS[intent.reason_code] || intent.reason_code}.` : '';
      card.live.replaceChildren(notice('success', `${MOVE_DONE[intent.to] || 'Enregistré.'}${reason}`));
      focusNext(card);
    } catch (error) {
      if (!alive) return;
      card.el.removeAttribute('aria-busy');
      for (const control of controls) control.disabled = false;
      if (error instanceof api.ApiError && error.status === 409) await conflict(card, seen, intent, error);
      else {
        card.messages.replaceChildren(alert('error', 'Votre réponse n’a pas été enregistrée', error.message));
        const focusable = card.el.querySelector(`[data-move="${intent.to}"]`) || card.el.querySelector('h3');
        if (!card.el.contains(document.activeElement)) focusable.focus();
      }
    }
  }

  async function conflict(card, seen, intent, error) {
    let fresh = null;
    try {
      fresh = await api.get(`/v1/handoffs/${encodeURIComponent(seen.id)}`);
    } catch {
      // Shown below with the API's reason for the refusal.
    }
    if (!alive) return;
    if (fresh) {
      card.handoff = fresh;
      card.form = null;
      draw(card);
    }
    const allowed = error.problem.allowed || [];
    const current = fresh?.status || error.problem.current_status;
    const changes = fresh ? handoffChanges(seen, fresh) : [];
    const moved = Boolean(current && current !== seen.status);
    const titleId = uid('conflict');
    const panel = h('div', { class: 'fr-alert fr-alert--warning mx-conflict', role: 'alert', tabindex: '-1', 'aria-labelledby': titleId },
      h('h4', { class: 'fr-alert__title', id: titleId }, moved
        ? 'Cette orientation a changé pendant que vous la consultiez'
        : 'Votre réponse n’a pas été acceptée'),
      h('p', {}, `Votre réponse (« ${MOVE_LABELS[intent.to].replace('…', '')} ») n’a pas été enregistrée`,
        moved ? ' : elle portait sur une version dépassée. L’orientation ci-dessus est affichée telle qu’elle est maintenant.' : ` : ${error.message}`),
      changes.length ? changesTable(changes) : null,
      !fresh
        // Redoing it on the version that was refused would be refused again: the current one comes first.
        ? h('p', {}, 'La version actuelle de l’orientation n’a pas pu être lue : rouvrez l’onglet « Orientations reçues » (en haut de la page) pour la voir.')
        : allowed.includes(intent.to)
        ? h('div', { class: 'mx-partner-actions' },
          h('button', { class: 'fr-btn', type: 'button', onclick: () => move(card, intent) },
            `${MOVE_LABELS[intent.to].replace('…', '')} quand même`),
          h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: () => {
            card.messages.replaceChildren();
            card.el.querySelector('h3').focus();
          } }, 'Ne rien faire'))
        : h('p', {}, `Cette réponse n’est plus possible pour une orientation « ${STATUSES[current] || current} ».`));
    card.messages.replaceChildren(panel);
    panel.focus();
  }

  function focusNext(card) {
    const next = card.el.querySelector('[data-move]:not([disabled])') || card.el.querySelector('h3');
    next.focus();
  }
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

function handoffChanges(before, after) {
  const rows = [
    ['status', 'État', (x) => STATUSES[x.status] || x.status],
    ['acknowledged_at', 'Réception accusée le', (x) => formatDateTime(x.acknowledged_at)],
    ['accepted_at', 'Acceptée le', (x) => formatDateTime(x.accepted_at)],
    ['decline_reason', 'Motif du refus', (x) => (x.decline_reason ? REASON_LABELS[x.decline_reason] || x.decline_reason : '—')],
    ['closed_at', 'Close le', (x) => formatDateTime(x.closed_at)],
    ['urgency', 'Urgence', (x) => (URGENCIES[x.urgency] || [null, x.urgency])[1]],
  ];
  return rows.map(([key, label, text]) => ({ key, label, before: text(before), after: text(after) }))
    .filter((row) => row.before !== row.after);
}

function changesTable(changes) {
  return h('div', { class: 'fr-table fr-table--sm mx-changes' },
    h('div', { class: 'fr-table__wrapper' }, h('div', { class: 'fr-table__container' }, h('div', { class: 'fr-table__content' },
      h('table', {},
        h('caption', {}, 'Ce qui a changé depuis votre lecture'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Information'), h('th', { scope: 'col' }, 'Ce que vous aviez vu'),
          h('th', { scope: 'col' }, 'Maintenant'))),
        h('tbody', {}, changes.map((c) => h('tr', { dataset: { field: c.key } },
          h('th', { scope: 'row' }, c.label), h('td', {}, c.before), h('td', {}, c.after)))))))));
}

const dateTime = new Intl.DateTimeFormat('fr-FR', { day: 'numeric', month: 'long', year: 'numeric', hour: '2-digit', minute: '2-digit', timeZone: 'Europe/Paris' });
function formatDateTime(iso) {
  return iso ? dateTime.format(new Date(iso)) : '—';
}

// A message inside a live region (role=status already): no role of its own.
function notice(kind, text) {
  return h('div', { class: `fr-alert fr-alert--${kind} fr-alert--sm` }, h('p', {}, text));
}
