// oidc-provider (OpenID-certified, from npm) as an independent authorization server for
// tokenward's interop tests (`cargo test -p tokenward-tests --test interop`), plus a tiny
// protected resource that validates the provider's own tokens.
//
//   node server.mjs [--port N] [--access-token-ttl SECONDS] [--issuer-path /PATH]
//
// With --issuer-path the provider is mounted under that path and its issuer has it
// (http://127.0.0.1:N/PATH), as multi-tenant servers do; the other routes stay at the root.
//
// Listens on 127.0.0.1 (port 0 = ephemeral unless --port is given) and, once listening,
// prints ONE JSON line to stdout: the issuer, the port, the endpoints, the resource and the
// registered clients. Everything else (warnings, errors) goes to stderr.
//
// Routes served next to the provider:
//   GET /interaction/:uid   completes any login/consent interaction at once (no UI):
//                           account "alice" logs in and is granted every requested scope
//   GET /resource           200 for an active access token issued for the resource below,
//                           401 `Bearer error="invalid_token"` otherwise
//   GET /resource/:scope    as /resource, and 403 `Bearer error="insufficient_scope"` when the
//                           token lacks :scope
//   GET /stats              counters from the provider's events (grant successes and errors,
//                           refresh-token reuse, revoked grants) and resource answers
import crypto from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'access-token-ttl': { type: 'string', default: '300' },
    'issuer-path': { type: 'string', default: '' },
  },
});
const issuerPath = args['issuer-path'];
if (issuerPath && (!issuerPath.startsWith('/') || issuerPath.endsWith('/'))) {
  console.error('--issuer-path must start with / and not end with /');
  process.exit(2);
}
const port = Number(args.port);
const accessTokenTTL = Number(args['access-token-ttl']);
if (!Number.isInteger(port) || port < 0 || !Number.isInteger(accessTokenTTL) || accessTokenTTL < 1) {
  console.error('usage: node server.mjs [--port N] [--access-token-ttl SECONDS]');
  process.exit(2);
}

// The scopes the protected resource knows; clients may ask for any of them.
const RESOURCE_SCOPES = 'jobs.read jobs.write';
const OIDC_SCOPES = new Set(['openid', 'offline_access']);

const CLIENTS = {
  // Machine to machine: client_credentials with a resource indicator, client_secret_post.
  clientCredentials: { id: 'cc-client', secret: 'cc-secret' },
  // A confidential web app: authorization code + PKCE, rotating refresh tokens,
  // client_secret_basic with a secret that needs form-urlencoding (RFC 6749 §2.3.1).
  web: { id: 'web-client', secret: 'web:secret+/%&= ~x', redirect_uri: 'https://client.example/callback' },
  // A native public client on a loopback redirect URI, any port (RFC 8252): the CLI's authorize.
  cli: { id: 'cli-client', redirect_uri: 'http://127.0.0.1/callback' },
  // The resource server itself, for introspection.
  resourceServer: { id: 'rs-client', secret: 'rs-secret' },
  // Machine to machine with private_key_jwt (RFC 7523): its public keys are registered, its
  // private keys (made at start, PKCS#8 PEM) are printed for the test to sign with.
  keyClient: { id: 'key-client' },
};

// The key client's keys, one per algorithm tested.
const clientKeys = Object.fromEntries(
  [
    ['ES256', crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['RS256', crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['EdDSA', crypto.generateKeyPairSync('ed25519')],
  ].map(([alg, pair]) => [alg, pair]),
);
CLIENTS.keyClient.keys = Object.fromEntries(
  Object.entries(clientKeys).map(([alg, pair]) => [alg, pair.privateKey.export({ format: 'pem', type: 'pkcs8' })]),
);
// The same private keys as JWKs (RFC 7517), each with its kid and alg, as JSON text.
CLIENTS.keyClient.jwks = Object.fromEntries(
  Object.entries(clientKeys).map(([alg, pair]) => [
    alg,
    JSON.stringify({ ...pair.privateKey.export({ format: 'jwk' }), kid: alg, alg }),
  ]),
);

const stats = {
  grant_success: {},
  grant_error: {},
  refresh_token_reuse: 0,
  grants_revoked: 0,
  resource: {},
};
const bump = (map, key) => {
  map[key] = (map[key] ?? 0) + 1;
};

// The process-local signing key (ID tokens) and cookie key: nothing persists between runs.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'interop', use: 'sig', alg: 'RS256' };

const server = http.createServer();
// Node closes a keep-alive connection after 5 s idle by default. A client that picks that
// connection from its pool just as the close arrives sees its request fail before any answer
// (hyper: SendRequest), which is a race in the test harness, not in the code under test. Keep
// connections for longer than any test runs.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(port, '127.0.0.1', () => {
  const origin = `http://127.0.0.1:${server.address().port}`;
  const issuer = `${origin}${issuerPath}`;
  const resource = `${origin}/resource`;
  const provider = newProvider(issuer, resource);
  const callback = provider.callback();

  server.on('request', (req, res) => {
    const url = new URL(req.url, origin);
    let handled;
    if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      handled = completeInteraction(provider, req, res);
    } else if (req.method === 'GET' && (url.pathname === '/resource' || url.pathname.startsWith('/resource/'))) {
      handled = protectedResource(provider, resource, url, req, res);
    } else if (req.method === 'GET' && url.pathname === '/stats') {
      handled = json(res, 200, stats);
    } else if (!issuerPath) {
      callback(req, res);
      return;
    } else if (url.pathname === issuerPath || url.pathname.startsWith(`${issuerPath}/`)) {
      // Mounted: the provider sees the path below the mount, and finds the mount path from
      // originalUrl, as under express's app.use(path, ...).
      req.originalUrl = req.url;
      req.url = req.url.slice(issuerPath.length) || '/';
      callback(req, res);
      return;
    } else {
      handled = json(res, 404, { error: 'not_found' });
    }
    Promise.resolve(handled).catch((err) => {
      console.error(err);
      if (!res.headersSent) json(res, 500, { error: 'server_error', error_description: String(err) });
    });
  });

  process.stdout.write(`${JSON.stringify({
    issuer,
    origin,
    port: server.address().port,
    authorization_endpoint: `${issuer}/auth`,
    token_endpoint: `${issuer}/token`,
    introspection_endpoint: `${issuer}/token/introspection`,
    revocation_endpoint: `${issuer}/token/revocation`,
    resource,
    access_token_ttl: accessTokenTTL,
    clients: CLIENTS,
  })}\n`);
});
server.on('error', (err) => {
  console.error(`cannot listen: ${err.message}`);
  process.exit(1);
});

// The parent (the Rust test harness) closing our stdin means it is gone: exit with it.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));

function newProvider(issuer, resource) {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENTS.clientCredentials.id,
        client_secret: CLIENTS.clientCredentials.secret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        client_id: CLIENTS.web.id,
        client_secret: CLIENTS.web.secret,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [CLIENTS.web.redirect_uri],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: CLIENTS.cli.id,
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [CLIENTS.cli.redirect_uri],
        token_endpoint_auth_method: 'none',
      },
      {
        client_id: CLIENTS.keyClient.id,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: {
          keys: Object.entries(clientKeys).map(([alg, pair]) => ({
            ...pair.publicKey.export({ format: 'jwk' }),
            kid: alg,
            alg,
            use: 'sig',
          })),
        },
      },
      {
        client_id: CLIENTS.resourceServer.id,
        client_secret: CLIENTS.resourceServer.secret,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    findAccount: (_ctx, accountId) => ({ accountId, claims: () => ({ sub: accountId }) }),
    scopes: [...OIDC_SCOPES],
    pkce: { required: () => true },
    rotateRefreshToken: true,
    issueRefreshToken: (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    ttl: {
      AccessToken: accessTokenTTL,
      ClientCredentials: accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: 14 * 24 * 3600,
      RefreshToken: 14 * 24 * 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== resource) throw new errors.InvalidTarget();
          return {
            scope: RESOURCE_SCOPES,
            audience: resource,
            accessTokenTTL,
            accessTokenFormat: 'opaque',
          };
        },
      },
    },
  });

  provider.on('grant.success', (ctx) => bump(stats.grant_success, ctx.oidc.params.grant_type));
  provider.on('grant.error', (ctx, err) => {
    bump(stats.grant_error, err.error ?? 'unknown');
    if (err.error_detail === 'refresh token already used') stats.refresh_token_reuse += 1;
  });
  provider.on('grant.revoked', () => {
    stats.grants_revoked += 1;
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  return provider;
}

// Logs "alice" in and grants every scope asked for (OIDC scopes, and the resource's scopes
// for the requested resource indicator), in one step: no UI, no second round trip.
async function completeInteraction(provider, req, res) {
  const { uid, prompt, params, session, grantId } = await provider.interactionDetails(req, res);
  const accountId = session?.accountId ?? 'alice';
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  const requested = String(params.scope ?? '').split(' ').filter(Boolean);
  const oidc = requested.filter((s) => OIDC_SCOPES.has(s));
  if (oidc.length) grant.addOIDCScope(oidc.join(' '));
  const resources = [params.resource ?? []].flat();
  const resourceScopes = requested.filter((s) => !OIDC_SCOPES.has(s));
  for (const indicator of resources) {
    if (resourceScopes.length) grant.addResourceScope(indicator, resourceScopes.join(' '));
  }
  const result = { login: { accountId }, consent: { grantId: await grant.save() } };
  console.error(`interaction ${uid} (${prompt.name}) completed for ${accountId}`);
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// The protected resource: accepts only active access tokens issued for it.
async function protectedResource(provider, resource, url, req, res) {
  const required = url.pathname.startsWith('/resource/')
    ? decodeURIComponent(url.pathname.slice('/resource/'.length))
    : undefined;
  const answer = (status, challenge, body) => {
    bump(stats.resource, status);
    if (challenge) res.setHeader('WWW-Authenticate', challenge);
    return json(res, status, body);
  };
  const invalid = (description) => answer(
    401,
    `Bearer realm="${resource}", error="invalid_token", error_description="${description}"`,
    { error: 'invalid_token', error_description: description },
  );

  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(req.headers.authorization ?? '');
  if (!match) {
    return answer(401, `Bearer realm="${resource}"`, { error: 'missing bearer token' });
  }
  const value = match[1];
  const token = (await provider.AccessToken.find(value)) ?? (await provider.ClientCredentials.find(value));
  if (!token || !token.isValid) return invalid('the access token is unknown, expired or revoked');
  if (token.aud !== resource) return invalid('the access token was not issued for this resource');
  if (token.grantId && !(await provider.Grant.find(token.grantId))) {
    return invalid('the grant of the access token was revoked');
  }
  const scopes = new Set(String(token.scope ?? '').split(' ').filter(Boolean));
  if (required && !scopes.has(required)) {
    return answer(
      403,
      `Bearer realm="${resource}", error="insufficient_scope", scope="${required}", error_description="the access token lacks ${required}"`,
      { error: 'insufficient_scope', scope: required },
    );
  }
  return answer(200, undefined, {
    ok: true, client_id: token.clientId, sub: token.accountId, scope: token.scope,
  });
}

function json(res, status, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify(body));
}
