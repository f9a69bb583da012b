// Login by OpenID Connect, authorization code + PKCE, as a public client (oauth4webapi, made for it).
//
// The access token lives in memory only (api.js): a reload or a lock means logging in again. After a
// lock or a logout the next login asks the provider to authenticate again (prompt=login): whoever sits
// down next is never let in as the previous person by the provider's session. "Se déconnecter" also
// ends that session at the provider (RP-initiated logout) when the provider offers it.
// What must survive the trip to the provider and back — the PKCE verifier and the state — stays in
// sessionStorage for that trip only and is removed as soon as the console loads again, whatever the
// outcome. The code in the callback URL is replaced in the history at once.
import * as oauth from 'oauth4webapi';

const PENDING = 'maillage.login';

async function server(config) {
  const issuer = new URL(config.issuer);
  const options = config.allow_http ? { [oauth.allowInsecureRequests]: true } : {};
  const response = await oauth.discoveryRequest(issuer, { ...options, algorithm: 'oidc' });
  return { as: await oauth.processDiscoveryResponse(issuer, response), options };
}

export async function startLogin(config, { reauthenticate = false } = {}) {
  const { as } = await server(config);
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const target = new URL(as.authorization_endpoint);
  target.searchParams.set('client_id', config.client_id);
  target.searchParams.set('redirect_uri', config.redirect_uri);
  target.searchParams.set('response_type', 'code');
  target.searchParams.set('scope', 'openid api');
  target.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  target.searchParams.set('code_challenge_method', 'S256');
  target.searchParams.set('state', state);
  if (config.resource) target.searchParams.set('resource', config.resource);
  if (reauthenticate) target.searchParams.set('prompt', 'login');
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
  const result = await oauth.processAuthorizationCodeResponse(as, client, response);
  return { accessToken: result.access_token, expiresIn: result.expires_in || 900 };
}
