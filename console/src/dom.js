// A small DOM builder. Text always goes in as text nodes: nothing the API returns is ever parsed as HTML.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'value' || key === 'checked' || key === 'selected') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Empty an element, then put children in as append() does (null and false leave no "null" on screen).
export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let ids = 0;
export function uid(prefix = 'mx') {
  ids += 1;
  return `${prefix}-${ids}`;
}

// Form fields in the design system's markup (label tied to its control, hint inside the label).
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const isSelect = control.tagName === 'SELECT';
  control.classList.add(isSelect ? 'fr-select' : 'fr-input');
  return h('div', { class: isSelect ? 'fr-select-group' : 'fr-input-group' },
    h('label', { class: 'fr-label', for: id }, label, hint ? h('span', { class: 'fr-hint-text' }, hint) : null),
    control);
}

export function checkbox(label, attrs = {}) {
  const id = attrs.id || uid('c');
  return h('div', { class: 'fr-checkbox-group' },
    h('input', { type: 'checkbox', id, ...attrs }),
    h('label', { class: 'fr-label', for: id }, label));
}

export function select(options, attrs = {}) {
  return h('select', attrs, options.map(([value, label]) => h('option', { value }, label)));
}

export function alert(kind, title, text) {
  return h('div', { class: `fr-alert fr-alert--${kind} fr-alert--sm`, role: kind === 'error' ? 'alert' : 'status' },
    title ? h('h3', { class: 'fr-alert__title' }, title) : null,
    text ? h('p', {}, text) : null);
}

export function badge(kind, text) {
  return h('p', { class: `fr-badge fr-badge--sm fr-badge--${kind} fr-badge--no-icon` }, text);
}

// A place's own time zone, from its commune: an opening in Réunion is said in Réunion's time.
const ZONES = { 971: 'America/Guadeloupe', 972: 'America/Martinique', 973: 'America/Cayenne', 974: 'Indian/Reunion', 976: 'Indian/Mayotte' };
export function zoneOf(p) {
  const code = p.commune?.code || p.location?.commune_code || '';
  return ZONES[code.slice(0, 3)] || 'Europe/Paris';
}

// One Intl formatter per zone and options, made once (they are costly to build).
const formats = new Map();
export function formatter(zone, options) {
  const key = `${zone}|${JSON.stringify(options)}`;
  if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat('fr-FR', { ...options, timeZone: zone }));
  return formats.get(key);
}
export const formatDateTime = (iso, zone = 'Europe/Paris') => (iso ? formatter(zone, { dateStyle: 'short', timeStyle: 'short' }).format(new Date(iso)) : '—');
export const formatDate = (iso, zone = 'Europe/Paris') => (iso ? formatter(zone, { dateStyle: 'long' }).format(new Date(iso)) : '—');
