// The specialist's case: open a pseudonymous case, see the competent CRIPs, send an information
// préoccupante or an orientation, follow the pathway and record a runaway or a return.
//
// A case holds no name: age, caller, channel, collectivité of residence, needs. The console keeps the
// open case's id in the session's memory only (ctx.state.caseId); to come back to a case after a
// lock, the specialist types its identifier.
import { h, clear, field, checkbox, select, alert, formatDateTime } from '../dom.js';
import { get, getAll, post, ApiError } from '../api.js';

const CALLERS = [['parent', 'Parent'], ['relative', 'Proche'], ['professional', 'Professionnel·le'], ['minor', 'L’enfant'], ['other', 'Autre']];
const CHANNELS = [['phone', 'Téléphone'], ['chat', 'Tchat'], ['web_form', 'Formulaire'], ['partner', 'Partenaire']];
const GENDERS = [['', 'Non précisé'], ['female', 'Fille'], ['male', 'Garçon'], ['other', 'Autre']];
const URGENCIES = [['within_24h', 'Sous 24 heures'], ['immediate', 'Immédiate'], ['routine', 'Ordinaire']];
const BENEFICIARIES = [['minor', 'L’enfant'], ['entourage', 'L’entourage'], ['professional', 'Un·e professionnel·le']];
const BASES = [['child_protection_duty', 'Protection de l’enfance (sans consentement requis)'], ['consent', 'Consentement recueilli']];
const KINDS = { information_preoccupante: 'Information préoccupante', orientation: 'Orientation',
  professional_contact: 'Mise en relation', signalement: 'Signalement', shelter_request: 'Demande de mise à l’abri' };
const STATUSES = { sent: 'envoyée', acknowledged: 'accusée réception', accepted: 'acceptée', declined: 'refusée',
  in_progress: 'en cours', on_hold: 'en attente', completed: 'terminée', failed: 'échouée', cancelled: 'annulée',
  expired: 'expirée', entered_in_error: 'saisie par erreur' };
const EVENTS = { runaway_started: 'Fugue', runaway_ended: 'Retour de fugue', relapse: 'Rechute', placement: 'Placement',
  complaint_filed: 'Plainte déposée', hospitalisation: 'Hospitalisation', contact_lost: 'Contact perdu',
  contact_restored: 'Contact rétabli', note: 'Note' };
const REASONS = { residence: 'résidence de l’enfant', found_in: 'lieu où l’enfant a été trouvé·e' };

export async function render(root, ctx) {
  const heading = h('h1', { tabindex: '-1' }, 'Dossier et parcours');
  const status = h('div', { role: 'status', 'aria-live': 'polite', id: 'case-status' });
  const body = h('div');
  clear(root, heading, status, body);
  const service = ctx.params.service || null;

  if (ctx.state.caseId) return refresh(ctx.state.caseId, null);
  return showOpen();

  // Messages go into the screen's one live region, which announces them: not live regions of their own.
  function say(node) {
    if (node instanceof Element) node.removeAttribute('role');
    status.replaceChildren(node);
  }

  // --- open a case, or come back to one ------------------------------------------------------------
  async function showOpen() {
    const collectivites = (await getAll('/v1/collectivites', { limit: 100 }))
      .map((f) => f.properties).sort((a, b) => a.code.localeCompare(b.code));
    const age = h('input', { type: 'number', min: '0', max: '21', required: true, inputmode: 'numeric' });
    const residence = select([['', 'Choisir…'], ...collectivites.map((c) => [c.code, `${c.name} (${c.code})`])], { required: true });
    const caller = select(CALLERS);
    const channel = select(CHANNELS);
    const gender = select(GENDERS);
    const foundIn = h('input', { type: 'text', autocomplete: 'off', inputmode: 'numeric', pattern: '[0-9]{2}[0-9AB][0-9]{2}' });
    const noParents = checkbox('Ne pas contacter les parents');
    const noMinor = checkbox('Ne pas contacter l’enfant directement');
    const form = h('form', { id: 'case-form', novalidate: true },
      h('h2', {}, 'Ouvrir un dossier'),
      h('p', { class: 'fr-hint-text' }, 'Aucun nom : le dossier est pseudonyme.'),
      service ? alert('info', null, `Orientation prévue vers : ${service.name} (${service.organisation.name})`) : null,
      h('div', { class: 'mx-row' }, field('Âge de l’enfant', age), field('Genre', gender)),
      field('Département de résidence', residence),
      field('Commune où l’enfant se trouve (code INSEE, facultatif)', foundIn),
      h('div', { class: 'mx-row' }, field('Appelant·e', caller), field('Canal', channel)),
      h('fieldset', { class: 'fr-fieldset' }, h('legend', { class: 'fr-fieldset__legend' }, 'Précautions'), noParents, noMinor),
      h('button', { class: 'fr-btn', type: 'submit' }, 'Ouvrir le dossier'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy(form)) return;
      try {
        let data;
        try {
          ({ data } = await post('/v1/cases', {
            age: Number(age.value), residence_collectivite: residence.value, caller: caller.value,
            intake_channel: channel.value, gender: gender.value || null, found_in_commune: foundIn.value.trim() || null,
            do_not_contact_parents: noParents.querySelector('input').checked,
            do_not_contact_minor_directly: noMinor.querySelector('input').checked,
          }));
        } catch (error) {
          say(alert('error', 'Le dossier n’a pas été ouvert', error.message));
          return;
        }
        ctx.state.caseId = data.id;
        await refresh(data.id, `Dossier ${data.reference} ouvert.`);
      } finally {
        idle(form);
      }
    });
    const existing = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const reopen = h('form', { id: 'case-find' },
      h('h2', {}, 'Reprendre un dossier'),
      field('Identifiant du dossier', existing),
      h('button', { class: 'fr-btn fr-btn--secondary', type: 'submit' }, 'Afficher'));
    reopen.addEventListener('submit', async (event) => {
      event.preventDefault();
      const id = existing.value.trim();
      if (!/^[0-9a-f-]{36}$/i.test(id)) {
        say(alert('error', null, 'Un identifiant de dossier a la forme xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.'));
        return;
      }
      ctx.state.caseId = id;
      await refresh(id, null);
    });
    clear(body, form, reopen);
  }

  // --- a case: CRIPs, handoffs, pathway --------------------------------------------------------------
  // Show a case after a write (`done` says what was recorded) or when it is opened. A write that was
  // recorded is never reported as failed because reading the case again did: the case stays the one
  // on screen, with a way to read it again, so nobody opens it (or sends it) twice.
  async function refresh(caseId, done) {
    try {
      if (await showCase(caseId) && done) say(alert('success', null, done));
    } catch (error) {
      say(alert(done ? 'warning' : 'error', done, `Le dossier n’a pas pu être affiché : ${error.message}`));
      clear(body, h('section', { class: 'mx-panel' },
        h('p', {}, 'Identifiant du dossier : ', h('code', { id: 'case-id' }, caseId)),
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: () => refresh(caseId, null) }, 'Afficher le dossier à nouveau'),
        ' ',
        h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', onclick: () => { ctx.state.caseId = null; say(''); showOpen().catch((error) => say(alert('error', null, error.message))); } }, 'Fermer l’affichage du dossier')));
    }
  }

  // Returns false (the form to open one shown) when no case visible to this person has that id;
  // throws when the case could not be read.
  async function showCase(caseId) {
    let record;
    try {
      record = await get(`/v1/cases/${encodeURIComponent(caseId)}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      ctx.state.caseId = null;
      say(alert('error', 'Dossier introuvable', 'Aucun dossier visible ne porte cet identifiant.'));
      await showOpen();
      return false;
    }
    const [crips, pathway] = await Promise.all([
      get(`/v1/cases/${caseId}/competent-crips`), get(`/v1/cases/${caseId}/pathway`)]);
    const orgNames = new Map(crips.map((c) => [c.crip.id, c.crip.name]));
    if (service) orgNames.set(service.organisation.id, service.organisation.name);
    for (const handoff of record.handoffs || []) if (handoff.receiver?.id) orgNames.set(handoff.receiver.id, handoff.receiver.name);

    clear(body,
      h('section', { class: 'mx-panel', 'aria-labelledby': 'case-title' },
        h('h2', { id: 'case-title' }, `Dossier ${record.reference}`),
        h('p', {}, `Identifiant : `, h('code', { id: 'case-id' }, record.id)),
        h('p', {}, [`${record.age} ans`, record.residence_collectivite ? `réside : ${record.residence_collectivite.name}` : null,
          record.found_in_commune ? `trouvé·e à : ${record.found_in_commune.name}` : null,
          record.status === 'closed' ? 'dossier clos' : 'dossier ouvert'].filter(Boolean).join(' · ')),
        h('button', { class: 'fr-btn fr-btn--tertiary fr-btn--sm', type: 'button',
          onclick: () => { ctx.state.caseId = null; say(''); showOpen().catch((error) => say(alert('error', null, error.message))); } }, 'Fermer l’affichage du dossier')),
      cripSection(record, crips),
      service ? orientationSection(record, service) : h('p', {}, 'Pour orienter vers un service, cherchez-le dans « Rechercher » puis « Orienter vers ce service ».'),
      eventSection(record),
      pathwaySection(pathway, orgNames));
    heading.focus();
    return true;
  }

  function cripSection(record, crips) {
    return h('section', { class: 'mx-panel', 'aria-labelledby': 'crip-title' },
      h('h2', { id: 'crip-title' }, 'CRIP compétentes'),
      crips.length ? h('ul', {}, crips.map((c) => h('li', {},
        h('strong', {}, c.crip.name), ` — ${REASONS[c.reason] || c.reason} (${c.collectivite.name})`,
        h('br'), [c.crip.phone, c.crip.email].filter(Boolean).join(' · ') || 'coordonnées non renseignées',
        c.crip.contact_state !== 'verified' ? ' (coordonnées non vérifiées)' : '')))
        : h('p', {}, 'Aucune CRIP connue pour ce dossier.'),
      handoffForm(record, 'information_preoccupante', null, 'Envoyer une information préoccupante à la CRIP de résidence'));
  }

  function orientationSection(record, target) {
    return h('section', { class: 'mx-panel', 'aria-labelledby': 'orientation-title' },
      h('h2', { id: 'orientation-title' }, 'Orientation'),
      h('p', {}, `Vers ${target.name} (${target.organisation.name})`),
      handoffForm(record, 'orientation', target, 'Envoyer l’orientation'));
  }

  function handoffForm(record, kind, target, label) {
    const urgency = select(URGENCIES);
    const beneficiary = select(BENEFICIARIES);
    const basis = select(BASES);
    const reason = h('input', { type: 'text', maxlength: '500', autocomplete: 'off' });
    const form = h('form', { class: 'mx-handoff', dataset: { kind } },
      h('div', { class: 'mx-row' }, field('Urgence', urgency), field('Bénéficiaire', beneficiary)),
      field('Base légale', basis),
      field('Motif, en quelques mots', reason, 'Aucun nom ni élément identifiant.'),
      h('button', { class: 'fr-btn', type: 'submit' }, label));
    // One key per content: a retry after a failure (or a double click) cannot send it twice; a change
    // to the form makes it a new handoff.
    let key = crypto.randomUUID();
    form.addEventListener('input', () => { key = crypto.randomUUID(); });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (busy(form)) return;
      try {
        try {
          await post('/v1/handoffs', {
            case_id: record.id, kind, urgency: urgency.value, beneficiary: beneficiary.value, legal_basis: basis.value,
            reason: reason.value.trim() || null,
            ...(target ? { to_organisation_id: target.organisation.id, to_service_id: target.id } : {}),
          }, { headers: { 'Idempotency-Key': key } });
        } catch (error) {
          say(alert('error', `${KINDS[kind]} non envoyée`, error.message));
          return;
        }
        await refresh(record.id, `${KINDS[kind]} envoyée.`);
      } finally {
        idle(form);
      }
    });
    return form;
  }

  function eventSection(record) {
    const note = h('input', { type: 'text', maxlength: '500', autocomplete: 'off' });
    const record_ = (kind) => async (event) => {
      const buttons = event.currentTarget.parentElement;
      if (busy(buttons)) return;
      try {
        try {
          await post(`/v1/cases/${record.id}/events`, { kind, note: note.value.trim() || null });
        } catch (error) {
          say(alert('error', 'Événement non enregistré', error.message));
          return;
        }
        await refresh(record.id, `${EVENTS[kind]} enregistré${kind === 'runaway_started' ? 'e' : ''}.`);
      } finally {
        idle(buttons);
      }
    };
    return h('section', { class: 'mx-panel', 'aria-labelledby': 'events-title' },
      h('h2', { id: 'events-title' }, 'Fugue, retour, événements'),
      field('Note (facultative)', note, 'Aucun nom ni élément identifiant.'),
      h('div', { class: 'mx-row' },
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: record_('runaway_started') }, 'Signaler une fugue'),
        h('button', { class: 'fr-btn fr-btn--secondary', type: 'button', onclick: record_('runaway_ended') }, 'Signaler un retour'),
        h('button', { class: 'fr-btn fr-btn--tertiary', type: 'button', onclick: record_('contact_lost') }, 'Contact perdu')));
  }

  function pathwaySection(items, orgNames) {
    return h('section', { class: 'mx-panel', 'aria-labelledby': 'pathway-title' },
      h('h2', { id: 'pathway-title' }, 'Parcours'),
      items.length ? h('ol', { class: 'mx-timeline', id: 'pathway' }, items.map((item) => h('li', {},
        h('strong', {}, formatDateTime(item.at)), ' — ', describe(item, orgNames))))
        : h('p', {}, 'Rien encore dans le parcours.'));
  }
}

function describe(item, orgNames) {
  if (item.type === 'event') return [EVENTS[item.kind] || item.kind, item.note].filter(Boolean).join(' : ');
  const kind = KINDS[item.kind] || item.kind;
  if (item.type === 'handoff_created') return `${kind} envoyée`;
  const by = orgNames.get(item.by?.organisation_id);
  return [`${kind} ${STATUSES[item.to] || item.to}`, by ? `par ${by}` : null, item.reason ? `motif : ${item.reason}` : null]
    .filter(Boolean).join(' — ');
}

// While a write is on its way, its buttons say they are disabled and a second click sends nothing
// (aria-disabled rather than disabled: the keyboard's focus stays where it was). Returns whether one
// was already on its way.
function busy(container) {
  if (container.dataset.busy) return true;
  container.dataset.busy = '1';
  for (const button of container.querySelectorAll('button')) button.setAttribute('aria-disabled', 'true');
  return false;
}

function idle(container) {
  delete container.dataset.busy;
  for (const button of container.querySelectorAll('button')) button.removeAttribute('aria-disabled');
}
