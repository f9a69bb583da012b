// The console's only way to Maillage: the public /v1 API, with the bearer token held in memory.
// Answers are never cached by the browser (cache: 'no-store'); no cookie is sent (credentials: 'omit').

let token = null;
let onUnauthorized = () => {};

export function setToken(value) {
  token = value;
}

export function hasToken() {
  return token !== null;
}

export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export class ApiError extends Error {
  // What to tell the user: the problem's detail (or title), then each field it names with its message.
  // Set in the constructor: Error's own `message` property would hide a getter on the prototype.
  constructor(status, problem) {
    const body = problem || {};
    const fields = Array.isArray(body.errors)
      ? body.errors.map((e) => [e.name || e.pointer?.replace(/^\//, ''), e.message].filter(Boolean).join(' : '))
      : [];
    super([body.detail || body.title || `Erreur ${status}`, ...fields.filter(Boolean)].join(' — '));
    this.name = 'ApiError';
    this.status = status;
    this.problem = body;
  }
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  // The token goes to Maillage only: a link that leads elsewhere (a `next` of "//host/…") is refused.
  if (target.origin !== window.location.origin) throw new ApiError(0, { title: 'Adresse hors de Maillage refusée' });
  for (const [key, value] of Object.entries(query || {})) {
    if (value === null || value === undefined || value === '' || value === false) continue;
    for (const one of Array.isArray(value) ? value : [value]) target.searchParams.append(key, String(one));
  }
  return target;
}

export async function request(path, { method = 'GET', query, body, headers = {}, accept = 'application/json' } = {}) {
  if (token === null) throw new ApiError(401, { title: 'Session verrouillée' });
  const response = await fetch(url(path, query), {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      Accept: accept,
      ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...headers,
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (response.status === 401) {
    onUnauthorized();
    throw new ApiError(401, await problem(response));
  }
  if (!response.ok) throw new ApiError(response.status, await problem(response));
  const type = response.headers.get('Content-Type') || '';
  const data = response.status === 204 ? null : type.includes('json') ? await response.json() : await response.text();
  return { data, etag: response.headers.get('ETag'), headers: response.headers, status: response.status };
}

async function problem(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText };
  }
}

export const get = (path, query, options = {}) => request(path, { ...options, query }).then((r) => r.data);
export const post = (path, body, options = {}) => request(path, { ...options, method: 'POST', body });

// For MapLibre's tile requests: the same bearer header.
export function authorization() {
  return token === null ? {} : { Authorization: `Bearer ${token}` };
}

// Every page of a paged list (the `next` link of each page), for the short reference lists a form needs.
export async function getAll(path, query) {
  const page = await get(path, query);
  const items = [...(page.features || page.items || [])];
  let next = (page.links || []).find((link) => link.rel === 'next');
  while (next) {
    const target = new URL(next.href);
    const more = (await request(target.pathname + target.search)).data;
    items.push(...(more.features || more.items || []));
    next = (more.links || []).find((link) => link.rel === 'next');
  }
  return items;
}
