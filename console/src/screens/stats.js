// The département's workspace: its referral statistics (handoffs by month and kind, acceptance, delays,
// unmet needs) as tables and charts, and where its network leaves communes beyond reach of a specialism,
// on a map and in a list.
//
// Only aggregates of the public /v1/stats API, exactly as it publishes them: a suppressed cell or a
// masked count (null) is shown as « secret statistique », never as 0, and no figure is recomputed here
// from others (a sum of published cells would not be the protected total). Each chart is drawn by hand
// (no chart library: the bundle stays small) beside its table, which is its accessible equivalent, and a
// sentence that sums it up. Every table downloads as CSV built here from the figures already shown.
//
// A département reads its own collectivité only: the API refuses another one, and then nothing but the
// refusal is shown. The map (MapLibre, console/src/map.js) is loaded only when a coverage gap is drawn.
import { h, clear, field, select, alert, uid } from '../dom.js';
import { get, ApiError } from '../api.js';

const KINDS = {
  information_preoccupante: 'Information préoccupante',
  orientation: 'Orientation vers un service',
  professional_contact: 'Mise en relation professionnelle',
  signalement: 'Signalement au parquet',
  shelter_request: 'Demande de mise à l’abri',
};
const SIGNALS = [
  ['empty_searches', 'Recherches sans résultat'],
  ['declined_no_capacity', 'Refus faute de place'],
  ['declined_out_of_territory', 'Refus hors territoire'],
  ['expired', 'Orientations expirées sans réponse'],
];
const SECRET = 'secret statistique';
const CODE = /^[0-9]{1,3}[A-Z]{1,2}$/;
const MONTH = /^20[0-9]{2}-(0[1-9]|1[0-2])$/;
const MAX_MONTHS = 60; // the API's longest period

const integer = new Intl.NumberFormat('fr-FR', { maximumFractionDigits: 0 });
const oneDecimal = new Intl.NumberFormat('fr-FR', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const kilometres = new Intl.NumberFormat('fr-FR', { maximumFractionDigits: 1 });
const monthLong = new Intl.DateTimeFormat('fr-FR', { month: 'long', year: 'numeric', timeZone: 'UTC' });
const monthShort = new Intl.DateTimeFormat('fr-FR', { month: 'short', timeZone: 'UTC' });

// --- small helpers ---------------------------------------------------------------------------------

const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);

// One figure of a table: its text on screen, its text in the CSV (no thousands separator: spreadsheets
// read "1234", not "1 234"), and whether it is hidden by the API's rule.
function count(value) {
  return isNumber(value)
    ? { value, text: integer.format(value), csv: String(Math.round(value)), secret: false }
    : { value: null, text: SECRET, csv: SECRET, secret: true };
}

function percent(rate) {
  return isNumber(rate) ? decimal(rate * 100) : count(null);
}

function decimal(value) {
  if (!isNumber(value)) return count(null);
  const text = oneDecimal.format(value);
  return { value, text, csv: text.replace(/\s/g, ''), secret: false };
}

function label(text) {
  return { value: null, text, csv: text, secret: false };
}

function monthDate(ym) {
  const [y, m] = ym.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, 1));
}

export function monthName(ym) {
  return monthLong.format(monthDate(ym));
}

function addMonths(ym, n) {
  const [y, m] = ym.split('-').map(Number);
  const t = y * 12 + (m - 1) + n;
  return `${Math.floor(t / 12)}-${String((t % 12) + 1).padStart(2, '0')}`;
}

function monthsFrom(a, b) {
  const [ya, ma] = a.split('-').map(Number);
  const [yb, mb] = b.split('-').map(Number);
  return (yb - ya) * 12 + (mb - ma);
}

function currentMonth() {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}`;
}

const plural = (n, one, many) => `${integer.format(n)} ${n > 1 ? many : one}`;

// --- tables and their CSV ------------------------------------------------------------------------------
// A table model: { caption, columns: [label…] (the first heads the row labels), rows: [{ head, cells }],
// foot: [{ head, cells }], filename }. The same model gives the HTML table and the CSV.

function dataTable(model) {
  const captionId = uid('cap');
  const head = h('thead', {}, h('tr', {}, model.columns.map((name, i) => h('th', { scope: 'col', class: i ? 'mx-st-num' : null }, name))));
  const line = (row) => h('tr', {},
    h('th', { scope: 'row' }, row.head.text),
    row.cells.map((cell) => h('td', { class: cell.secret ? 'mx-st-num mx-st-secret' : 'mx-st-num' }, cell.text)));
  const table = h('table', { id: model.id },
    h('caption', { id: captionId }, model.caption),
    head,
    h('tbody', {}, model.rows.map(line)),
    model.foot?.length ? h('tfoot', {}, model.foot.map(line)) : null);
  return h('div', { class: 'fr-table fr-table--sm fr-table--bordered fr-table--multiline mx-st-table' },
    h('div', { class: 'fr-table__wrapper' },
      // Focusable, so that a table wider than the screen can be scrolled from the keyboard.
      h('div', { class: 'fr-table__container', tabindex: '0', role: 'region', 'aria-labelledby': captionId },
        h('div', { class: 'fr-table__content' }, table))));
}

// CSV for French spreadsheets: semicolons (Excel in French uses the comma as its decimal separator and
// expects ";" between fields), a UTF-8 byte order mark (without it Excel reads the file as Windows-1252
// and garbles every accent), CRLF line ends (RFC 4180). Fields are quoted when needed, and a text that
// a spreadsheet would run as a formula (= + - @) is defused with a leading apostrophe.
export function toCsv(model) {
  const quote = (text) => {
    let value = String(text);
    if (/^[=+\-@\t\r]/.test(value)) value = `'${value}`;
    return /[;"\r\n]/.test(value) || value !== value.trim() ? `"${value.replace(/"/g, '""')}"` : value;
  };
  const lines = [model.columns, ...[...model.rows, ...(model.foot || [])].map((row) => [row.head.csv, ...row.cells.map((c) => c.csv)])];
  return `\uFEFF${lines.map((fields) => fields.map(quote).join(';')).join('\r\n')}\r\n`;
}

function download(model) {
  const blob = new Blob([toCsv(model)], { type: 'text/csv;charset=utf-8' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: model.filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function downloadButton(model) {
  return h('p', { class: 'mx-st-download' },
    h('button', { class: 'fr-btn fr-btn--secondary fr-btn--sm', type: 'button', dataset: { csv: model.filename },
      onclick: () => download(model) },
    'Télécharger ce tableau (CSV)', h('span', { class: 'mx-visually-hidden' }, ` : ${model.caption}`)));
}

// --- charts ----------------------------------------------------------------------------------------
// Horizontal bars in HTML (they reflow and zoom with the text): groups of labelled bars, each with its
// value written out, a suppressed value written « secret statistique » with no bar. The chart is an
// image for assistive technologies (role img, named): its table says the same, figure by figure.

function barChart({ name, groups, max, unit = '' }) {
  const top = max ?? Math.max(0, ...groups.flatMap((g) => g.bars.map((b) => (isNumber(b.value) ? b.value : 0))));
  const bar = (item, rowLabel) => {
    const fill = h('span', { class: 'mx-st-fill' });
    // Through the CSSOM: the console's Content-Security-Policy refuses style attributes.
    if (isNumber(item.value)) fill.style.width = `${top > 0 ? Math.min(100, Math.max((item.value / top) * 100, item.value > 0 ? 0.5 : 0)) : 0}%`;
    return h('div', { class: 'mx-st-bar-row' },
      h('span', { class: 'mx-st-bar-label' }, rowLabel),
      h('span', { class: 'mx-st-track' }, item.secret ? null : fill),
      h('span', { class: item.secret ? 'mx-st-bar-value mx-st-secret' : 'mx-st-bar-value' }, item.secret ? SECRET : `${item.text}${unit}`));
  };
  const chart = h('div', { class: 'mx-st-bars', role: 'img', 'aria-label': name });
  for (const group of groups) {
    // One bar per group: one line, the group's name as its label; several: the group's name above them.
    if (group.bars.length === 1 && !group.bars[0].label) chart.append(bar(group.bars[0], group.label));
    else chart.append(h('div', { class: 'mx-st-bar-group' }, h('p', { class: 'mx-st-bar-title' }, group.label), group.bars.map((b) => bar(b, b.label))));
  }
  return chart;
}

// Handoffs by month, one row of columns per kind (small multiples: no colour to tell series apart).
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  for (const child of children) if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  return el;
}

function monthColumns({ name, months, kinds, at }) {
  const width = 900;
  const left = 8;
  const panel = 64;
  const title = 24;
  const axis = 34;
  const column = (width - left) / Math.max(months.length, 1);
  const values = kinds.flatMap((kind) => months.map((month) => at(month, kind)?.handoffs)).filter(isNumber);
  const top = Math.max(1, ...values);
  const height = kinds.length * (panel + title) + axis;
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, class: 'mx-st-svg', role: 'img', 'aria-label': name, focusable: 'false' });
  kinds.forEach((kind, i) => {
    const y0 = i * (panel + title) + title;
    const base = y0 + panel;
    svg.append(s('text', { x: left, y: y0 - 8, class: 'mx-st-svg-title' }, KINDS[kind] || kind));
    svg.append(s('line', { x1: left, x2: width, y1: base, y2: base, class: 'mx-st-svg-axis' }));
    months.forEach((month, j) => {
      const cell = at(month, kind);
      const x = left + j * column;
      const middle = x + column / 2;
      if (cell && isNumber(cell.handoffs)) {
        const barHeight = Math.max((cell.handoffs / top) * (panel - 16), 1);
        svg.append(s('rect', { x: x + column * 0.15, y: base - barHeight, width: column * 0.7, height: barHeight, class: 'mx-st-svg-bar' }));
        if (column >= 20) {
          svg.append(s('text', { x: middle, y: base - barHeight - 3, 'text-anchor': 'middle', class: 'mx-st-svg-value' },
            integer.format(cell.handoffs)));
        }
      } else if (column >= 10) {
        svg.append(s('text', { x: middle, y: base - 3, 'text-anchor': 'middle', class: 'mx-st-svg-secret' }, 's'));
      }
    });
  });
  const every = Math.ceil(months.length / 15);
  const y = kinds.length * (panel + title);
  months.forEach((month, j) => {
    if (j % every) return;
    const x = left + j * column + column / 2;
    svg.append(s('text', { x, y: y + 14, 'text-anchor': 'middle', class: 'mx-st-svg-month' }, monthShort.format(monthDate(month))));
    if (j === 0 || month.endsWith('-01')) {
      svg.append(s('text', { x, y: y + 29, 'text-anchor': 'middle', class: 'mx-st-svg-month' }, month.slice(0, 4)));
    }
  });
  return svg;
}

function chartFigure(caption, chart, legend) {
  return h('figure', { class: 'mx-st-figure' },
    chart,
    h('figcaption', { class: 'mx-st-figcaption' }, caption, legend ? h('span', { class: 'mx-st-legend' }, ` ${legend}`) : null));
}

// --- the screen ----------------------------------------------------------------------------------------

export async function render(root, ctx) {
  const me = ctx.me;
  const own = me.collectivite || null; // { code, name } for a département
  const isDepartment = me.role === 'department';
  const saved = (ctx.state.stats ||= {});
  const taxonomy = await get('/v1/specialisms').catch(() => ({ items: [] }));
  let generation = 0;
  let coverageGeneration = 0;
  let map = null;
  let names = {}; // collectivité code → name, for admins (from /v1/collectivites)
  ctx.onLeave(() => {
    generation += 1;
    coverageGeneration += 1;
    map?.remove();
    map = null;
  });

  // Form: territory and period.
  const territory = h('input', { type: 'text', name: 'collectivite', autocomplete: 'off', spellcheck: 'false',
    value: saved.territory ?? own?.code ?? '', maxlength: '5', class: 'mx-st-code' });
  const to = h('input', { type: 'month', name: 'to', value: saved.to || currentMonth(), pattern: '20[0-9]{2}-(0[1-9]|1[0-2])' });
  const from = h('input', { type: 'month', name: 'from', value: saved.from || addMonths(to.value, -11), pattern: '20[0-9]{2}-(0[1-9]|1[0-2])' });
  const territoryHint = isDepartment ? 'Code de collectivité, ex. 93D' : 'Code de collectivité, ex. 93D ; vide : France entière';
  const territoryGroup = field('Territoire', territory, territoryHint);
  const fromGroup = field('Premier mois', from, 'Format AAAA-MM');
  const toGroup = field('Dernier mois', to, 'Format AAAA-MM');
  const submit = h('button', { class: 'fr-btn', type: 'submit' }, 'Afficher les statistiques');
  const form = h('form', { id: 'stats-form', novalidate: true, 'aria-labelledby': 'stats-form-title' },
    h('h2', { id: 'stats-form-title', class: 'fr-h5' }, 'Territoire et période'),
    h('div', { class: 'mx-row mx-st-fields' }, territoryGroup, fromGroup, toGroup, h('div', { class: 'mx-st-submit' }, submit)),
    isDepartment && own
      ? h('p', { class: 'mx-st-note' }, `Vous consultez les statistiques de votre collectivité, ${own.name} (${own.code}), et d’elle seule.`)
      : null);

  const rule = h('div', { class: 'fr-callout mx-st-rule', id: 'stats-rule' },
    h('h2', { class: 'fr-callout__title fr-h6' }, 'Secret statistique'),
    ruleText(null));
  const status = h('div', { id: 'stats-status', role: 'status', 'aria-live': 'polite', class: 'mx-st-status' });
  const results = h('div', { id: 'stats-results', 'aria-live': 'off' });
  const heading = h('h1', { id: 'stats-title' }, 'Statistiques');
  const coverage = coverageSection();

  clear(root,
    heading,
    h('p', { class: 'mx-st-intro' }, 'Chiffres agrégés des orientations vers les services et les CRIP : aucun dossier, aucun enfant n’y est identifiable.'),
    rule,
    form,
    status,
    results);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load();
  });

  if (!isDepartment) {
    // Admins may read any collectivité: offer the list (with names for the messages).
    get('/v1/collectivites', { limit: 100 }).then((page) => {
      const list = h('datalist', { id: uid('collectivites') },
        (page.features || []).map((f) => h('option', { value: f.properties.code }, `${f.properties.name} (${f.properties.code})`)));
      names = Object.fromEntries((page.features || []).map((f) => [f.properties.code, f.properties.name]));
      territory.setAttribute('list', list.id);
      territoryGroup.append(list);
    }).catch(() => {});
  }

  await load();

  // --- reading the form --------------------------------------------------------------------------------

  function fieldError(group, input, message) {
    const previous = group.querySelector('.fr-error-text');
    previous?.remove();
    group.classList.toggle('fr-input-group--error', Boolean(message));
    if (message) {
      const error = h('p', { class: 'fr-error-text', id: uid('err') }, message);
      group.append(error);
      input.setAttribute('aria-invalid', 'true');
      input.setAttribute('aria-describedby', error.id);
    } else {
      input.removeAttribute('aria-invalid');
      input.removeAttribute('aria-describedby');
    }
    return Boolean(message);
  }

  function readForm() {
    const code = territory.value.trim().toUpperCase();
    territory.value = code;
    const errors = [
      fieldError(territoryGroup, territory, code && !CODE.test(code)
        ? 'Code de collectivité : 1 à 3 chiffres puis 1 ou 2 lettres, par exemple 93D.' : (!code && isDepartment ? 'Indiquez le code de votre collectivité.' : null)),
      fieldError(fromGroup, from, MONTH.test(from.value) ? null : 'Indiquez un mois au format AAAA-MM.'),
      fieldError(toGroup, to, MONTH.test(to.value) ? null : 'Indiquez un mois au format AAAA-MM.'),
    ];
    if (!errors[1] && !errors[2]) {
      const span = monthsFrom(from.value, to.value);
      if (span < 0) errors.push(fieldError(fromGroup, from, 'Le premier mois doit précéder le dernier.'));
      else if (span >= MAX_MONTHS) errors.push(fieldError(fromGroup, from, `Au plus ${MAX_MONTHS} mois à la fois.`));
    }
    if (errors.some(Boolean)) {
      form.querySelector('[aria-invalid="true"]')?.focus();
      return null;
    }
    return { code, from: from.value, to: to.value };
  }

  function place(code) {
    if (!code) return 'la France entière';
    if (own && code === own.code) return `${own.name} (${code})`;
    return names[code] ? `${names[code]} (${code})` : code;
  }

  // What a refused territory means, said plainly; null when the error is something else.
  function refusal(error, code) {
    if (!(error instanceof ApiError) || ![403, 404].includes(error.status)) return null;
    if (isDepartment && own && code !== own.code) {
      return alert('error', 'Accès refusé',
        `Vous ne pouvez consulter que les statistiques de votre collectivité : ${own.name} (${own.code}). `
        + `Aucun chiffre de ${code} n’est affiché.`);
    }
    if (error.status === 404 && code) return alert('error', 'Territoire inconnu', `Aucune collectivité ne porte le code ${code}.`);
    if (error.status === 403) return alert('error', 'Accès refusé', 'Votre rôle ne donne pas accès à ces statistiques.');
    return null;
  }

  function failure(what, error) {
    if (error instanceof ApiError && error.status === 429) {
      return alert('error', `${what} : trop de requêtes`, 'Les statistiques sont limitées à quelques requêtes par minute. Réessayez dans une minute.');
    }
    return alert('error', `${what} : chargement impossible`, error instanceof ApiError ? explain(error) : 'Maillage ne répond pas.');
  }

  // --- the statistics ----------------------------------------------------------------------------------

  async function load() {
    const query = readForm();
    if (!query) return;
    Object.assign(saved, { from: query.from, to: query.to });
    const mine = (generation += 1);
    const where = place(query.code);
    const period = `de ${monthName(query.from)} à ${monthName(query.to)}`;
    heading.textContent = query.code ? `Statistiques — ${where}` : 'Statistiques — France entière';
    clear(results);
    coverage.reset();
    results.setAttribute('aria-busy', 'true');
    submit.disabled = true;
    status.textContent = `Chargement des statistiques : ${where}, ${period}…`;
    const params = { from: query.from, to: query.to, collectivite: query.code || null };
    try {
      let matrix;
      try {
        matrix = await get('/v1/stats/handoffs', { ...params, group_by: ['month', 'kind'] });
      } catch (error) {
        if (mine !== generation) return;
        const refused = refusal(error, query.code);
        heading.textContent = 'Statistiques';
        clear(results, refused || failure('Statistiques des orientations', error));
        status.textContent = refused ? 'Accès refusé : aucune statistique affichée.' : 'Les statistiques n’ont pas pu être chargées.';
        coverage.disable(refused ? 'Aucune statistique de ce territoire ne peut être affichée.' : null);
        return;
      }
      const [byKind, needs] = await Promise.allSettled([
        get('/v1/stats/handoffs', { ...params, group_by: ['kind'] }),
        get('/v1/stats/needs', params),
      ]);
      if (mine !== generation) return;
      rule.replaceChildren(rule.firstChild, ruleText(matrix.k, matrix.suppression,
        needs.status === 'fulfilled' ? needs.value.suppression : null));
      saved.territory = query.code; // kept for the session once answered: a refused code is not
      const context = { code: query.code, where, period, from: query.from, to: query.to };
      coverage.enable(query.code);
      showViews([
        ['handoffs', 'Orientations par mois', [matrixSection(matrix, context)]],
        ['acceptance', 'Acceptation et délais', byKind.status === 'fulfilled'
          ? [acceptanceSection(byKind.value, context), delaySection(byKind.value, context)]
          : [sectionError('Acceptation et délais', byKind.reason)]],
        ['needs', 'Besoins non couverts', [needs.status === 'fulfilled' ? needsSection(needs.value, context) : sectionError('Besoins non couverts', needs.reason)]],
        ['coverage', 'Couverture du territoire', [coverage.section]],
      ]);
      status.textContent = `Statistiques affichées : ${where}, ${period}.`;
    } finally {
      if (mine === generation) {
        results.removeAttribute('aria-busy');
        submit.disabled = false;
      }
    }
  }

  // The views of the figures, one at a time (a segmented control: radio buttons, so one is chosen and
  // the arrow keys move between them); the chosen one is kept for the session.
  function showViews(views) {
    const name = uid('view');
    const panels = [];
    const choices = views.map(([key, title, sections]) => {
      const panel = h('div', { class: 'mx-st-panel', id: `stats-view-${key}`, hidden: true }, sections);
      panels.push([key, panel]);
      const input = h('input', { type: 'radio', name, id: uid('v'), value: key, checked: key === (saved.view || 'handoffs'),
        onchange: () => choose(key) });
      return h('div', { class: 'fr-segmented__element' }, input, h('label', { class: 'fr-label', for: input.id }, title));
    });
    const choose = (key) => {
      saved.view = key;
      for (const [k, panel] of panels) panel.hidden = k !== key;
    };
    results.append(
      h('fieldset', { class: 'fr-segmented mx-st-views', id: 'stats-views' },
        h('legend', { class: 'fr-segmented__legend' }, 'Afficher'),
        h('div', { class: 'fr-segmented__elements' }, choices)),
      ...panels.map(([, panel]) => panel));
    choose(views.some(([key]) => key === saved.view) ? saved.view : 'handoffs');
  }

  function sectionError(title, error) {
    return h('section', { class: 'mx-st-section' }, h('h2', {}, title), failure(title, error));
  }

  // Handoffs by month × kind: the table and its small multiples.
  function matrixSection(data, { code, where, period, from: first, to: last }) {
    const months = [...new Set(data.cells.map((c) => c.month))];
    const kinds = [...new Set(data.cells.map((c) => c.kind))];
    const byKey = new Map(data.cells.map((c) => [`${c.month}|${c.kind}`, c]));
    const at = (month, kind) => byKey.get(`${month}|${kind}`);
    const published = data.cells.filter((c) => !c.suppressed && isNumber(c.handoffs));
    const largest = published.reduce((best, c) => (best && best.handoffs >= c.handoffs ? best : c), null);
    const total = data.total;
    const title = 'Orientations par mois et par type';
    const model = {
      id: 'table-month-kind',
      caption: `${title} — ${where}, ${period}`,
      columns: ['Mois', ...kinds.map((k) => KINDS[k] || k)],
      rows: months.map((month) => ({ head: label(monthName(month)), cells: kinds.map((kind) => count(at(month, kind)?.handoffs)) })),
      filename: filename('orientations-par-mois-et-type', code, first, last),
    };
    const summary = [
      total && !total.suppressed && isNumber(total.handoffs)
        ? `Sur la période, ${plural(total.handoffs, 'orientation', 'orientations')}`
          + (isNumber(total.cases) ? ` pour ${plural(total.cases, 'cas distinct', 'cas distincts')}.` : ' (nombre de cas distincts : secret statistique).')
        : 'Le total de la période est couvert par le secret statistique.',
      ` ${plural(published.length, 'case publiée', 'cases publiées')} sur ${integer.format(data.cells.length)} ;`
        + ` ${plural(data.cells.length - published.length, 'couverte', 'couvertes')} par le secret statistique.`,
      largest ? ` La plus forte : ${plural(largest.handoffs, 'orientation', 'orientations')} de type « ${KINDS[largest.kind] || largest.kind} » en ${monthName(largest.month)}.` : '',
    ].join('');
    return h('section', { class: 'mx-st-section', id: 'stats-month-kind', 'aria-labelledby': 'stats-month-kind-title' },
      h('h2', { id: 'stats-month-kind-title' }, title),
      h('p', { class: 'mx-st-summary' }, summary),
      chartFigure(`Graphique : orientations par mois, une ligne par type (${where}, ${period}).`,
        monthColumns({ name: `Graphique des orientations par mois et par type, ${where}, ${period} : les mêmes chiffres sont dans le tableau qui suit.`, months, kinds, at }),
        '« s » : secret statistique. Les chiffres sont dans le tableau.'),
      dataTable(model),
      downloadButton(model));
  }

  function acceptanceSection(data, { code, where, period, from: first, to: last }) {
    const title = 'Acceptation, par type d’orientation';
    const line = (cell) => [
      count(cell.handoffs), count(cell.cases), percent(cell.accepted_rate), percent(cell.declined_rate),
      percent(cell.failed_rate), count(cell.overdue), count(cell.cases_with_runaway),
    ];
    const model = {
      id: 'table-acceptance',
      caption: `${title} — ${where}, ${period}`,
      columns: ['Type d’orientation', 'Orientations', 'Cas distincts', 'Acceptées (%)', 'Refusées (%)', 'Échouées (%)',
        'Accusé de réception en retard', 'Cas avec une fugue'],
      rows: data.cells.map((cell) => ({ head: label(KINDS[cell.kind] || cell.kind), cells: line(cell) })),
      foot: [{ head: label('Tous types'), cells: line(data.total) }],
      filename: filename('acceptation-par-type', code, first, last),
    };
    const total = data.total;
    const published = data.cells.filter((c) => isNumber(c.accepted_rate));
    const best = published.reduce((a, c) => (a && a.accepted_rate >= c.accepted_rate ? a : c), null);
    const summary = [
      isNumber(total.accepted_rate)
        ? `Tous types confondus, ${percent(total.accepted_rate).text} % des orientations ont été acceptées.`
        : 'Le taux d’acceptation tous types confondus est couvert par le secret statistique.',
      best ? ` Le taux publié le plus élevé : ${percent(best.accepted_rate).text} % (${KINDS[best.kind] || best.kind}).` : '',
      ` ${plural(data.cells.length - published.length, 'type a son taux', 'types ont leur taux')} couvert par le secret statistique.`,
    ].join('');
    const chart = barChart({
      name: `Graphique du taux d’acceptation par type d’orientation, ${where}, ${period} : les mêmes chiffres sont dans le tableau qui suit.`,
      max: 100,
      unit: ' %',
      groups: [...data.cells, { ...total, kind: null }].map((cell) => {
        const p = percent(cell.accepted_rate);
        return { label: cell.kind ? KINDS[cell.kind] || cell.kind : 'Tous types', bars: [{ value: p.value, text: p.text, secret: p.secret }] };
      }),
    });
    return h('section', { class: 'mx-st-section', id: 'stats-acceptance', 'aria-labelledby': 'stats-acceptance-title' },
      h('h2', { id: 'stats-acceptance-title' }, title),
      h('p', { class: 'mx-st-summary' }, summary),
      chartFigure('Graphique : part des orientations acceptées, par type.', chart),
      dataTable(model),
      downloadButton(model));
  }

  function delaySection(data, { code, where, period, from: first, to: last }) {
    const title = 'Délais de réponse, par type d’orientation';
    const line = (cell) => [
      decimal(cell.median_hours_to_acknowledgement), decimal(cell.p90_hours_to_acknowledgement),
      decimal(cell.median_hours_to_acceptance), decimal(cell.p90_hours_to_acceptance),
    ];
    const model = {
      id: 'table-delays',
      caption: `${title} (en heures) — ${where}, ${period}`,
      columns: ['Type d’orientation', 'Accusé de réception : délai médian (h)', 'Accusé de réception : 9 sur 10 en moins de (h)',
        'Acceptation : délai médian (h)', 'Acceptation : 9 sur 10 en moins de (h)'],
      rows: data.cells.map((cell) => ({ head: label(KINDS[cell.kind] || cell.kind), cells: line(cell) })),
      foot: [{ head: label('Tous types'), cells: line(data.total) }],
      filename: filename('delais-par-type', code, first, last),
    };
    const total = data.total;
    const summary = [
      isNumber(total.median_hours_to_acknowledgement)
        ? `Tous types confondus, la moitié des accusés de réception sont arrivés moins de ${oneDecimal.format(total.median_hours_to_acknowledgement)} h après l’envoi de l’orientation`
        : 'Tous types confondus, le délai médian d’accusé de réception est couvert par le secret statistique',
      isNumber(total.median_hours_to_acceptance)
        ? ` ; la moitié des acceptations, moins de ${oneDecimal.format(total.median_hours_to_acceptance)} h après.`
        : ' ; le délai médian d’acceptation est couvert par le secret statistique.',
    ].join('');
    const groups = [...data.cells, { ...total, kind: null }].map((cell) => {
      const ack = decimal(cell.median_hours_to_acknowledgement);
      const acc = decimal(cell.median_hours_to_acceptance);
      return {
        label: cell.kind ? KINDS[cell.kind] || cell.kind : 'Tous types',
        bars: [
          { label: 'Accusé de réception', value: ack.value, text: ack.text, secret: ack.secret },
          { label: 'Acceptation', value: acc.value, text: acc.text, secret: acc.secret },
        ],
      };
    });
    const chart = barChart({
      name: `Graphique des délais médians d’accusé de réception et d’acceptation par type d’orientation, ${where}, ${period} : les mêmes chiffres sont dans le tableau qui suit.`,
      groups,
      unit: ' h',
    });
    return h('section', { class: 'mx-st-section', id: 'stats-delays', 'aria-labelledby': 'stats-delays-title' },
      h('h2', { id: 'stats-delays-title' }, title),
      h('p', { class: 'mx-st-summary' }, summary),
      chartFigure('Graphique : délais médians, en heures, depuis l’envoi de l’orientation.', chart),
      dataTable(model),
      downloadButton(model));
  }

  function needsSection(data, { code, where, period, from: first, to: last }) {
    const title = 'Besoins non couverts, par spécialité';
    const national = !code;
    const specialismName = (slug) => (slug ? coverage.labels[slug] || slug : 'Spécialité non précisée');
    const rows = data.cells.map((cell) => ({
      head: label(national ? `${place(cell.collectivite)} — ${specialismName(cell.specialism)}` : specialismName(cell.specialism)),
      cells: SIGNALS.map(([key]) => count(cell[key])),
    }));
    const model = {
      id: 'table-needs',
      caption: `${title} — ${where}, ${period}`,
      columns: [national ? 'Collectivité — spécialité' : 'Spécialité', ...SIGNALS.map(([, name]) => name)],
      rows,
      filename: filename('besoins-non-couverts', code, first, last),
    };
    const section = h('section', { class: 'mx-st-section', id: 'stats-needs', 'aria-labelledby': 'stats-needs-title' },
      h('h2', { id: 'stats-needs-title' }, title),
      h('p', { class: 'mx-st-note' }, 'Recherches des écoutant·es qui n’ont rien trouvé, orientations refusées faute de place ou hors territoire, orientations expirées. '
        + 'Seules les spécialités dont au moins un signal est publiable sont listées.'));
    if (!data.cells.length) {
      section.append(h('p', { class: 'mx-st-summary' },
        `Aucun besoin non couvert publiable ${period} : aucun signal n’atteint le seuil du secret statistique (${data.k}).`));
      return section;
    }
    const strongest = data.cells.reduce((best, c) => (isNumber(c.empty_searches) && (!best || c.empty_searches > best.empty_searches) ? c : best), null);
    section.append(
      h('p', { class: 'mx-st-summary' },
        `${plural(data.cells.length, 'ligne a', 'lignes ont')} au moins un signal publiable.`
        + (strongest ? ` Le plus de recherches sans résultat : ${specialismName(strongest.specialism)} (${integer.format(strongest.empty_searches)}).` : '')),
      chartFigure('Graphique : signaux de besoins non couverts, par spécialité.', barChart({
        name: `Graphique des besoins non couverts par spécialité, ${where}, ${period} : les mêmes chiffres sont dans le tableau qui suit.`,
        groups: rows.map((row) => ({
          label: row.head.text,
          bars: SIGNALS.map(([, name], i) => ({ label: name, value: row.cells[i].value, text: row.cells[i].text, secret: row.cells[i].secret })),
        })),
      })),
      dataTable(model),
      downloadButton(model));
    return section;
  }

  // --- coverage: communes beyond reach of a specialism -----------------------------------------------

  function coverageSection() {
    const labels = {};
    const specialism = select([['', 'Toutes les spécialités (vue d’ensemble)']], { name: 'specialism' });
    const within = h('input', { type: 'number', name: 'within_km', min: '1', max: '100', step: '1', value: '20', inputmode: 'numeric' });
    const population = h('input', { type: 'number', name: 'min_population', min: '0', max: '1000000', step: '100', value: '1000', inputmode: 'numeric' });
    const withinGroup = field('Distance (km)', within, 'De 1 à 100 km, à vol d’oiseau depuis la mairie');
    const populationGroup = field('Communes à partir de (habitants)', population, 'Plus petites : ni listées ni cartographiées');
    const button = h('button', { class: 'fr-btn', type: 'submit' }, 'Afficher la couverture');
    const note = h('p', { class: 'mx-st-note', id: 'coverage-note' });
    const out = h('div', { id: 'coverage-results' });
    const live = h('div', { role: 'status', 'aria-live': 'polite', class: 'mx-st-status', id: 'coverage-status' });
    const form = h('form', { id: 'coverage-form', novalidate: true, 'aria-labelledby': 'coverage-title' },
      h('div', { class: 'mx-row mx-st-fields' }, field('Spécialité', specialism, 'Toutes : la part couverte de chacune'), withinGroup, populationGroup,
        h('div', { class: 'mx-st-submit' }, button)));
    const section = h('section', { class: 'mx-st-section', id: 'stats-coverage', 'aria-labelledby': 'coverage-title' },
      h('h2', { id: 'coverage-title' }, 'Couverture du territoire'),
      h('p', { class: 'mx-st-note' }, 'Part de la population qui vit à moins d’une distance donnée d’un service actif de chaque spécialité, '
        + 'et les communes hors de portée. Les services de démonstration ne comptent pas. Aucune donnée de dossier.'),
      form, note, live, out);
    let code = null;

    for (const item of taxonomy.items) {
      labels[item.slug] = item.label_fr;
      specialism.append(h('option', { value: item.slug }, item.label_fr));
    }
    for (const control of form.elements) control.disabled = true;

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      show();
    });

    async function show() {
      const km = Number(within.value);
      const minimum = Number(population.value);
      const bad = [
        fieldError(withinGroup, within, Number.isFinite(km) && km > 0 && km <= 100 ? null : 'Indiquez une distance de 1 à 100 km.'),
        fieldError(populationGroup, population, Number.isInteger(minimum) && minimum >= 0 && minimum <= 1_000_000 ? null : 'Indiquez un nombre d’habitants de 0 à 1 000 000.'),
      ];
      if (bad.some(Boolean)) {
        form.querySelector('[aria-invalid="true"]')?.focus();
        return;
      }
      const slug = specialism.value;
      const mine = (coverageGeneration += 1);
      const where = place(code);
      clear(out);
      out.setAttribute('aria-busy', 'true');
      button.disabled = true;
      live.textContent = 'Chargement de la couverture…';
      try {
        const data = await get('/v1/stats/coverage', {
          collectivite: code, within_km: km, min_population: minimum,
          specialism: slug || null, geometry: Boolean(slug),
        });
        if (mine !== coverageGeneration) return;
        if (slug) await gaps(data, slug, where, mine);
        else overview(data, where);
        live.textContent = `Couverture affichée : ${where}.`;
      } catch (error) {
        if (mine !== coverageGeneration) return;
        clear(out, refusal(error, code) || failure('Couverture', error));
        live.textContent = 'La couverture n’a pas pu être affichée.';
      } finally {
        if (mine === coverageGeneration) {
          out.removeAttribute('aria-busy');
          button.disabled = false;
        }
      }
    }

    function overview(data, where) {
      const km = kilometres.format(data.within_km);
      const title = `Population à moins de ${km} km d’un service, par spécialité`;
      const rows = data.items.map((item) => ({
        head: label(labels[item.specialism] || item.specialism),
        cells: [count(item.population), count(item.covered_population), percent(item.covered_share), count(item.uncovered_communes.length)],
      }));
      const model = {
        id: 'table-coverage',
        caption: `${title} — ${where}`,
        columns: ['Spécialité', 'Population', `Population à moins de ${km} km`, 'Part couverte (%)',
          `Communes hors de portée (${integer.format(data.min_population)} habitants ou plus)`],
        rows,
        filename: `maillage-couverture-${code}-${data.within_km}km.csv`,
      };
      const ranked = data.items.filter((i) => isNumber(i.covered_share)).sort((a, b) => a.covered_share - b.covered_share);
      const weakest = ranked[0];
      out.append(
        h('h3', {}, title),
        h('p', { class: 'mx-st-summary' }, weakest
          ? `La spécialité la moins accessible : ${labels[weakest.specialism] || weakest.specialism}, à moins de ${km} km de ${percent(weakest.covered_share).text} % de la population. `
            + `Choisissez une spécialité pour voir ses communes hors de portée sur une carte.`
          : 'Aucune population à couvrir.'),
        chartFigure(`Graphique : part de la population à moins de ${km} km d’un service, par spécialité.`, barChart({
          name: `Graphique de la part de la population couverte par spécialité, ${where} : les mêmes chiffres sont dans le tableau qui suit.`,
          max: 100,
          unit: ' %',
          groups: rows.map((row) => ({ label: row.head.text, bars: [{ value: row.cells[2].value, text: row.cells[2].text, secret: false }] })),
        })),
        dataTable(model),
        downloadButton(model));
    }

    async function gaps(data, slug, where, mine) {
      const item = data.items.find((i) => i.specialism === slug) || { population: 0, covered_population: 0, covered_share: null, uncovered_communes: [] };
      const name = labels[slug] || slug;
      const km = kilometres.format(data.within_km);
      const minimum = integer.format(data.min_population);
      const communes = item.uncovered_communes;
      const title = `Communes à plus de ${km} km d’un service « ${name} »`;
      const model = {
        id: 'table-uncovered',
        caption: `${title} (${minimum} habitants ou plus) — ${where}`,
        columns: ['Commune', 'Code INSEE', 'Population'],
        rows: communes.map((c) => ({ head: label(c.name), cells: [label(c.code), count(c.population)] })),
        filename: `maillage-couverture-${code}-${slug}-${data.within_km}km.csv`,
      };
      out.append(
        h('h3', {}, title),
        h('p', { class: 'mx-st-summary', id: 'coverage-summary' },
          isNumber(item.covered_share)
            ? `${percent(item.covered_share).text} % de la population (${plural(item.covered_population, 'habitant', 'habitants')} sur ${integer.format(item.population)}) vit à moins de ${km} km d’un service actif « ${name} ». `
            : '',
          communes.length
            ? `${plural(communes.length, 'commune', 'communes')} de ${minimum} habitants ou plus ${communes.length > 1 ? 'sont' : 'est'} hors de portée.`
            : `Aucune commune de ${minimum} habitants ou plus n’est hors de portée.`));
      if (!communes.length) return;
      const mapBox = h('div', { class: 'mx-map mx-st-map', id: 'coverage-map' });
      const legend = h('p', { class: 'mx-map-note mx-st-map-legend' },
        h('span', { class: 'mx-st-swatch', 'aria-hidden': 'true' }),
        ` En couleur : les communes de ${minimum} habitants ou plus à plus de ${km} km d’un service « ${name} ». La liste qui suit donne les mêmes communes.`);
      out.append(mapBox, legend, dataTable(model), downloadButton(model));
      await drawMap(mapBox, legend, data.uncovered || { type: 'FeatureCollection', features: [] }, `Carte des communes hors de portée d’un service « ${name} », ${where} : la liste qui suit donne les mêmes communes.`, mine);
    }

    async function drawMap(box, legend, collection, ariaLabel, mine) {
      map?.remove();
      map = null;
      try {
        const { createMap } = await import('../map.js');
        if (mine !== coverageGeneration) return;
        const drawn = await createMap(box, { ariaLabel, bounds: extent(collection) || undefined, styleUrl: ctx.config.map_style_url });
        if (mine !== coverageGeneration) {
          drawn.remove();
          return;
        }
        map = drawn;
        map.addSource('uncovered', { type: 'geojson', data: collection });
        map.addLayer({ id: 'uncovered-fill', type: 'fill', source: 'uncovered', paint: { 'fill-color': '#ce614a', 'fill-opacity': 0.55 } });
        map.addLayer({ id: 'uncovered-line', type: 'line', source: 'uncovered', paint: { 'line-color': '#8d2c1a', 'line-width': 1.2 } });
        box.dataset.ready = 'true';
      } catch (error) {
        box.hidden = true;
        legend.textContent = `${error?.message || 'La carte est indisponible'} : la liste qui suit donne les communes hors de portée.`;
      }
    }

    return {
      section,
      labels,
      reset() {
        coverageGeneration += 1;
        map?.remove();
        map = null;
        clear(out);
        live.textContent = '';
      },
      enable(chosen) {
        code = chosen || null;
        for (const control of form.elements) control.disabled = !code;
        note.textContent = code
          ? `Territoire : ${place(code)}.`
          : 'Indiquez un territoire (code de collectivité) ci-dessus pour afficher sa couverture : la carte se lit une collectivité à la fois.';
      },
      disable(message) {
        code = null;
        for (const control of form.elements) control.disabled = true;
        note.textContent = message || '';
      },
    };
  }
}

function ruleText(k, suppression, needsSuppression) {
  if (!k) {
    return h('p', { class: 'fr-callout__text mx-st-rule-text' },
      `Une case qui concerne trop peu d’enfants n’est pas publiée : elle apparaît « ${SECRET} », jamais 0.`);
  }
  return h('div', {},
    h('p', { class: 'fr-callout__text mx-st-rule-text' },
      `Une case qui compte moins de ${k} cas distincts (moins de ${k} enfants), zéro compris, n’est pas publiée : `
      + `elle apparaît « ${SECRET} », jamais 0. `
      + 'D’autres cases peuvent être masquées avec elle, pour qu’on ne puisse pas la retrouver par soustraction. '
      + `Dans une case publiée, tout compte inférieur à ${k} (zéro compris) et les taux qui en découlent sont masqués de la même façon ; `
      + `les délais ne sont donnés qu’à partir de ${k} orientations. `
      + `Les orientations d’un mois et d’un type qui comptent moins de ${k} cas ne sont comptées nulle part. `
      + 'Chaque nombre publié porte un léger bruit (2 au plus, en plus ou en moins) : deux tableaux ne se soustraient pas exactement.'),
    h('p', { class: 'fr-callout__text mx-st-rule-text' },
      `Besoins non couverts : un mois qui concerne moins de ${k} cas (ou moins de ${k} recherches) n’est pas compté ; `
      + `un signal sans aucun mois publiable apparaît « ${SECRET} » ; une spécialité sans aucun signal publiable n’est pas listée.`),
    suppression ? h('details', { class: 'mx-st-details' },
      h('summary', {}, 'La règle exacte, telle que l’API la publie (en anglais)'),
      h('p', { lang: 'en' }, suppression),
      needsSuppression ? h('p', { lang: 'en' }, needsSuppression) : null) : null);
}

// A problem's detail and the parameters it names ({ in, name, message } items: api/errors.py).
function explain(error) {
  const { detail, title, errors } = error.problem || {};
  const named = Array.isArray(errors) ? errors.map((e) => [e.name, e.message].filter(Boolean).join(' : ')) : [];
  return [detail || title || `Erreur ${error.status}`, ...named].filter(Boolean).join(' — ');
}

function filename(what, code, first, last) {
  return `maillage-${what}-${code || 'france'}-${first}-${last}.csv`;
}

function extent(collection) {
  let [minX, minY, maxX, maxY] = [180, 90, -180, -90];
  let any = false;
  const walk = (coords) => {
    if (typeof coords[0] === 'number') {
      any = true;
      minX = Math.min(minX, coords[0]); minY = Math.min(minY, coords[1]);
      maxX = Math.max(maxX, coords[0]); maxY = Math.max(maxY, coords[1]);
    } else for (const c of coords) walk(c);
  };
  for (const feature of collection.features || []) if (feature.geometry) walk(feature.geometry.coordinates);
  return any ? [[minX, minY], [maxX, maxY]] : null;
}
