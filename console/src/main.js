// The console: start, login, the workspaces of each role, the lock. Each workspace is a module of
// screens/ loaded when first opened; the map is loaded by the screens that draw one, when they do.
import { h, clear, alert } from './dom.js';
import * as api from './api.js';
import { startLogin, completeLogin, forgetPendingLogin, logoutUrl } from './auth.js';
import { watchInactivity } from './lock.js';

const WORKSPACES = {
  search: { label: 'Rechercher', load: () => import('./screens/search.js') },
  case: { label: 'Dossier et parcours', load: () => import('./screens/case.js') },
  listings: { label: 'Nos services', load: () => import('./screens/partner.js') },
  inbox: { label: 'Orientations reçues', load: () => import('./screens/inbox.js') },
  stats: { label: 'Statistiques', load: () => import('./screens/stats.js') },
};
const BY_ROLE = {
  specialist: ['search', 'case'],
  partner: ['listings', 'inbox'],
  department: ['stats'],
  admin: ['search', 'stats'],
};
const ROLE_NAMES = { specialist: 'Écoutant·e du 119', partner: 'Partenaire', department: 'Département', admin: 'Administration' };

const main = document.getElementById('contenu');
const tabs = document.getElementById('tabs');
const who = document.getElementById('who');
const logout = document.getElementById('logout');

let config = null;
let session = null; // { me, stopWatching, leave, state }
let navigation = 0; // the current go(): an earlier one still loading draws nothing

// Why the console last locked, kept across the reload that wipes the page's memory, until the next
// login: { message, continuing, at }. It never holds anything about a child, a case or a place.
// `continuing`: the token ran out while the person was at work (active in the last two minutes), so
// the next login within two minutes may use the provider's session; every other login, in any tab,
// authenticates again.
const CONTINUING_MS = 2 * 60 * 1000;
const LOCKED = 'maillage.locked';

function announce(title) {
  document.title = `${title} — Maillage`;
}

async function boot() {
  config = await fetch('/console/config.json', { cache: 'no-store', credentials: 'omit' }).then((r) => r.json());
  api.whenUnauthorized(() => lock('Votre session a expiré.', { continuing: stillThere() }));
  logout.addEventListener('click', () => lock('Vous êtes déconnecté·e de la console.', { logout: true }));
  // Back from the browser's back/forward cache: the page kept in memory is reloaded, locked.
  window.addEventListener('pageshow', (event) => { if (event.persisted) window.location.replace('/console'); });
  window.addEventListener('pagehide', () => {
    if (session) lock('La console a été quittée.', { navigate: false });
  });
  const locked = lastLock();
  if (window.location.pathname === '/console/callback') {
    try {
      const { accessToken, expiresIn } = await completeLogin(config.oidc);
      await open(accessToken, expiresIn);
    } catch (error) {
      api.setToken(null);
      showLogin(`La connexion a échoué : ${error.message}`, locked);
    }
    return;
  }
  forgetPendingLogin();
  showLogin(locked?.message, locked);
}

function showLogin(message, locked) {
  announce('Connexion');
  const start = async () => {
    try {
      const continuing = Boolean(locked?.continuing) && Date.now() - locked.at < CONTINUING_MS;
      await startLogin(config.oidc, { reauthenticate: !continuing });
    } catch (error) {
      showLogin(`Le fournisseur d’identité ne répond pas (${error.message}). Réessayez dans un instant.`, locked);
    }
  };
  clear(main,
    h('section', { class: 'mx-lock' },
      h('h1', {}, 'Connexion'),
      message ? alert('info', null, message) : null,
      config.oidc
        ? h('p', {}, 'Connectez-vous avec le compte de votre organisation.')
        : alert('error', 'Connexion non configurée', 'Aucun fournisseur d’identité n’est configuré (MAILLAGE_CONSOLE_OIDC_ISSUER).'),
      config.oidc ? h('button', { class: 'fr-btn', type: 'button', id: 'login', onclick: start }, 'Se connecter') : null));
  main.focus();
}

async function open(accessToken, expiresIn) {
  api.setToken(accessToken);
  const me = await api.get('/v1/me');
  sessionStorage.removeItem(LOCKED); // logged in: the last lock is behind us
  // Inactivity and the token's end are both read on the wall clock (a laptop waking from sleep locks
  // at once); the token is given up 30 s before the provider's deadline.
  const { stop: stopWatching, idleMs } = watchInactivity(config.lock_minutes, {
    expiresAt: Date.now() + Math.max(expiresIn - 30, 30) * 1000,
    onIdle: () => lock(`La console s’est verrouillée après ${config.lock_minutes} minutes d’inactivité.`),
    onExpired: () => lock('Votre session a expiré.', { continuing: stillThere() }),
  });
  session = { me, stopWatching, idleMs, leave: null, state: {} };
  const scope = me.organisation?.name || me.collectivite?.name || '';
  who.textContent = [ROLE_NAMES[me.role] || me.role, scope].filter(Boolean).join(' · ');
  logout.hidden = false;
  const names = BY_ROLE[me.role] || [];
  clear(tabs, ...names.map((name) => h('button', {
    class: 'fr-btn fr-btn--tertiary-no-outline fr-btn--sm', type: 'button', dataset: { workspace: name },
    onclick: () => go(name),
  }, WORKSPACES[name].label)));
  tabs.hidden = names.length === 0;
  if (names.length) await go(names[0]);
  else clear(main, alert('warning', 'Aucun espace', 'Votre rôle n’a pas d’espace dans la console.'));
}

// Open a workspace. `params` carries what one screen hands to another (a service to orient towards),
// in memory only: never in the URL. Each screen draws into a view of its own, which a later go()
// replaces: a screen still loading when another tab is chosen draws nothing anyone sees.
export async function go(name, params = {}) {
  if (!session) return;
  const current = ++navigation;
  leave();
  for (const tab of tabs.querySelectorAll('button')) {
    if (tab.dataset.workspace === name) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  announce(WORKSPACES[name].label);
  const view = h('div', {}, h('p', {}, 'Chargement…'));
  clear(main, view);
  const stillCurrent = () => session !== null && current === navigation;
  try {
    const screen = await WORKSPACES[name].load();
    if (!stillCurrent()) return;
    clear(view);
    const context = {
      me: session.me, config, state: session.state, params, go,
      // A screen's clean-up (its map) runs when it is left, or at once if it was left already.
      onLeave: (callback) => { if (stillCurrent()) session.leave = callback; else callback(); },
    };
    await screen.render(view, context);
  } catch (error) {
    // A screen that cannot load or draw says so in place, and the other tabs stay usable.
    if (!stillCurrent()) return;
    clear(view, alert('error', `L’écran « ${WORKSPACES[name].label} » n’a pas pu s’afficher`, error.message));
  }
  if (stillCurrent()) main.focus();
}

// Whether the person was at work a moment ago (a key press or a click in the last two minutes).
function stillThere() {
  return session !== null && session.idleMs() < CONTINUING_MS;
}

function lastLock() {
  try {
    return JSON.parse(sessionStorage.getItem(LOCKED) || 'null');
  } catch {
    return null;
  }
}

function leave() {
  const callback = session?.leave;
  if (session) session.leave = null;
  try {
    callback?.();
  } catch {
    // A screen that fails to clean up must not keep the console from moving on or locking.
  }
}

// Forget the token and everything shown; only a new login brings them back. The token goes first, so
// nothing after it can fail open. Then the page is loaded again: its memory (results, the map, the
// browser's record of the requests made) goes with it. After a lock or a logout the next login
// authenticates again at the provider; "Se déconnecter" also ends the provider's session.
async function lock(message, { continuing = false, logout: endSession = false, navigate = true } = {}) {
  if (!session) return;
  api.setToken(null);
  const { stopWatching } = session;
  stopWatching();
  leave();
  session = null;
  navigation += 1;
  clear(main);
  clear(tabs);
  who.textContent = '';
  logout.hidden = true;
  tabs.hidden = true;
  performance.clearResourceTimings();
  try {
    sessionStorage.setItem(LOCKED, JSON.stringify({ message, continuing, at: Date.now() }));
  } catch {
    // No storage: the console is locked all the same, without its message.
  }
  if (!navigate) return;
  if (endSession) {
    try {
      const target = await logoutUrl(config.oidc);
      if (target) {
        window.location.assign(target);
        return;
      }
    } catch {
      // The provider cannot be reached: the console is locked all the same; its session ends on its own.
    }
  }
  window.location.replace('/console');
}

boot().catch((error) => {
  clear(main, alert('error', 'La console n’a pas pu démarrer', error.message));
});
