// The console: start, login, the workspaces of each role, the lock. Each workspace is a module of
// screens/ loaded when first opened; the map is loaded by the screens that draw one, when they do.
import { h, clear, alert } from './dom.js';
import * as api from './api.js';
import { startLogin, completeLogin } from './auth.js';
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
let session = null; // { me, stopWatching, expiry, leave }

function announce(title) {
  document.title = `${title} — Maillage`;
}

async function boot() {
  config = await fetch('/console/config.json', { cache: 'no-store', credentials: 'omit' }).then((r) => r.json());
  api.whenUnauthorized(() => lock('Votre session a expiré.'));
  logout.addEventListener('click', () => lock('Vous êtes déconnecté·e.'));
  if (window.location.pathname === '/console/callback') {
    try {
      const { accessToken, expiresIn } = await completeLogin(config.oidc);
      await open(accessToken, expiresIn);
    } catch (error) {
      showLogin(`La connexion a échoué : ${error.message}`);
    }
    return;
  }
  showLogin();
}

function showLogin(message) {
  announce('Connexion');
  clear(main,
    h('section', { class: 'mx-lock' },
      h('h1', {}, 'Connexion'),
      message ? alert('info', null, message) : null,
      config.oidc
        ? h('p', {}, 'Connectez-vous avec le compte de votre organisation.')
        : alert('error', 'Connexion non configurée', 'Aucun fournisseur d’identité n’est configuré (MAILLAGE_CONSOLE_OIDC_ISSUER).'),
      config.oidc ? h('button', { class: 'fr-btn', type: 'button', id: 'login', onclick: () => startLogin(config.oidc) }, 'Se connecter') : null));
  main.focus();
}

async function open(accessToken, expiresIn) {
  api.setToken(accessToken);
  const me = await api.get('/v1/me');
  const stopWatching = watchInactivity(config.lock_minutes, () => lock(
    `La console s’est verrouillée après ${config.lock_minutes} minutes d’inactivité.`));
  const expiry = setTimeout(() => lock('Votre session a expiré.'), Math.max(expiresIn - 30, 30) * 1000);
  session = { me, stopWatching, expiry, leave: null, state: {} };
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
// in memory only: never in the URL.
export async function go(name, params = {}) {
  if (!session) return;
  if (session.leave) session.leave();
  session.leave = null;
  for (const tab of tabs.querySelectorAll('button')) {
    if (tab.dataset.workspace === name) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  announce(WORKSPACES[name].label);
  clear(main, h('p', {}, 'Chargement…'));
  try {
    const screen = await WORKSPACES[name].load();
    if (!session) return;
    clear(main);
    const context = {
      me: session.me, config, state: session.state, params, go,
      onLeave: (callback) => { session.leave = callback; },
    };
    await screen.render(main, context);
  } catch (error) {
    // A screen that cannot load or draw says so in place, and the other tabs stay usable.
    if (!session) return;
    clear(main, alert('error', `L’écran « ${WORKSPACES[name].label} » n’a pas pu s’afficher`, error.message));
  }
  main.focus();
}

// Forget the token and everything shown; only a new login brings them back.
function lock(message) {
  if (!session) return;
  session.stopWatching();
  clearTimeout(session.expiry);
  if (session.leave) session.leave();
  session = null;
  api.setToken(null);
  who.textContent = '';
  logout.hidden = true;
  clear(tabs);
  tabs.hidden = true;
  showLogin(message);
}

boot().catch((error) => {
  clear(main, alert('error', 'La console n’a pas pu démarrer', error.message));
});
