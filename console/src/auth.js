// Login by OpenID Connect, authorization code + PKCE, as a public client (oauth4webapi, made for it).
//
// The access token lives in memory only (api.js): a reload or a lock means logging in again. Every
// login asks the provider to authenticate the person again (prompt=login, max_age=0) and checks from
// the ID token's auth_time that it did: whoever sits down at a console — a new tab, a reloaded one, one
// locked for inactivity — is never let in as the last person by the provider's session. The one
// exception is the person still at work when their token ran out (main.js). "Se déconnecter" also
// ends the provider's session (RP-initiated logout) when the provider offers it.
// What must survive the trip to the provider and back — the PKCE verifier and the state — stays in
// sessionStorage for that trip only and is removed as soon as the console loads again, whatever the
// outcome. The code in the callback URL is replaced in the history at once.
import * as oauth from 'oauth4webapi';

const PENDING = 'maillage.login';

async function server(config) {
  const issuer = new URL(config.issuer);
  const options = config.allow_http ? { [oauth.allowInsecureRequests]: true } : {};
  const response = await oauth.discoveryRequest(issuer, { ...options, algorithm: 'oidc', signal: AbortSignal.timeout(10000) });
  return { as: await oauth.processDiscoveryResponse(issuer, response), options };
}

export async function startLogin(config, { reauthenticate = false } = {}) {
  const { as } = await server(config);
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const since = Math.floor(Date.now() / 1000);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, reauthenticate, since }));
  const target = new URL(as.authorization_endpoint);
  target.searchParams.set('client_id', config.client_id);
  target.searchParams.set('redirect_uri', config.redirect_uri);
  target.searchParams.set('response_type', 'code');
  target.searchParams.set('scope', 'openid api');
  target.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  target.searchParams.set('code_challenge_method', 'S256');
  target.searchParams.set('state', state);
  if (config.resource) target.searchParams.set('resource', config.resource);
  if (reauthenticate) {
    target.searchParams.set('prompt', 'login');
    target.searchParams.set('max_age', '0');
  }
  window.location.assign(target.href);
}

// A login abandoned at the provider leaves nothing behind once the console loads without completing it.
export function forgetPendingLogin() {
  sessionStorage.removeItem(PENDING);
}

// Where to send the browser to end the person's session at the provider, or null when it offers none.
export async function logoutUrl(config) {
  const { as } = await server(config);
  if (!as.end_session_endpoint) return null;
  const target = new URL(as.end_session_endpoint);
  target.searchParams.set('client_id', config.client_id);
  target.searchParams.set('post_logout_redirect_uri', config.post_logout_redirect_uri);
  return target.href;
}

// Back from the provider: trade the code for tokens. Returns { accessToken, expiresIn }.
export async function completeLogin(config) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  const callback = new URL(window.location.href);
  window.history.replaceState(null, '', '/console');
  if (!pending) throw new Error('Aucune connexion en cours : recommencez.');
  const { as, options } = await server(config);
  const client = { client_id: config.client_id };
  const params = oauth.validateAuthResponse(as, client, callback, pending.state);
  const response = await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), params, config.redirect_uri, pending.verifier,
    { ...options, additionalParameters: config.resource ? { resource: config.resource } : {} },
  );
  // Asked to authenticate again: the person must have done so since the login started (a minute's
  // leeway for clocks), or the provider ignored the request and the login is refused.
  const maxAge = pending.reauthenticate ? Math.floor(Date.now() / 1000) - pending.since + 60 : oauth.skipAuthTimeCheck;
  const result = await oauth.processAuthorizationCodeResponse(as, client, response, { maxAge, requireIdToken: Boolean(pending.reauthenticate) });
  return { accessToken: result.access_token, expiresIn: result.expires_in || 900 };
}
