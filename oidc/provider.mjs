// A local OpenID provider (panva/oidc-provider) for tests and `make run`: a stand-in for the 119's,
// the départements' and the associations' own providers. Never for production.
//
// Configured by one JSON document in OIDC_CONFIG:
//   port, keys (private JWKs; the first of each algorithm signs, all are published),
//   resources: { "<resource indicator>": { audience, ttl, alg } }  -- JWT access tokens (RFC 9068)
//   clients: [{ client_id, client_secret, claims }]                 -- client credentials grant
//   users: [{ id, password, claims }] and apps: [{ client_id, redirect_uris, post_logout_redirect_uris }]
//                                                                  -- authorization code + PKCE
// `claims` are added to the access tokens issued to that client or user (e.g. { "groups": [...] }).
// It prints "listening <issuer> <nonce>" once it accepts connections (`nonce` from the configuration:
// the caller knows the provider it started answers, not some other process on the port).
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_CONFIG || '{}');
const port = Number(config.port || 4000);
const issuer = config.issuer || `http://127.0.0.1:${port}`;
const resources = config.resources || {};
const clients = config.clients || [];
const users = config.users || [];
const apps = config.apps || [];
const claimsOf = Object.fromEntries([
  ...clients.map((c) => [`client:${c.client_id}`, c.claims || {}]),
  ...users.map((u) => [`user:${u.id}`, u.claims || {}]),
]);

const provider = new Provider(issuer, {
  clients: [
    ...clients.map(({ client_id, client_secret }) => ({
      client_id, client_secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
    })),
    ...apps.map(({ client_id, redirect_uris, post_logout_redirect_uris = [] }) => ({
      client_id, token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'],
      redirect_uris, post_logout_redirect_uris, response_types: ['code'],
    })),
  ],
  jwks: { keys: config.keys },
  pkce: { required: () => true },
  findAccount: (ctx, id) => (users.some((u) => u.id === id)
    ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: true }, // a plain login form: any listed user id, for local runs only
    // RP-initiated logout, asked to confirm on a page of its own (the default one fetches a web font
    // from Google: nothing here calls outside this machine).
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>Déconnexion</title></head>
<body><main><h1>Se déconnecter du fournisseur d’identité local ?</h1>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Oui, me déconnecter</button>
<button type="submit" form="op.logoutForm">Non, rester connecté·e</button></main></body></html>`;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => Object.keys(resources)[0],
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        const resource = resources[indicator];
        if (!resource) throw new Error(`unknown resource ${indicator}`);
        return {
          scope: 'openid api',
          audience: resource.audience,
          accessTokenTTL: resource.ttl || 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: resource.alg || 'ES256' } },
        };
      },
    },
  },
  extraTokenClaims: (ctx, token) => claimsOf[token.accountId ? `user:${token.accountId}` : `client:${token.clientId}`] || {},
});
provider.listen(port, '127.0.0.1', () => console.log(`listening ${issuer} ${config.nonce || ''}`));
