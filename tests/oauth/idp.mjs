// A real OAuth 2 / OpenID authorization server for the end-to-end tests: panva's
// oidc-provider (not our code), served over TLS with a test CA. Configured by environment:
//   IDP_ISSUER        issuer URL, e.g. https://idp.example.test
//   IDP_PORT          port to listen on (127.0.0.1)
//   IDP_CERT/IDP_KEY  PEM leaf certificate (CA:FALSE, signed by the test CA) and its key
//   IDP_CLIENTS       JSON array of static clients
//   IDP_ACCESS_TTL    access-token lifetime in seconds (short, to exercise refresh)
//   IDP_SLOW_DOWN     "1": answer the first poll of each device code with slow_down
//   IDP_EVENTS        file that gets one JSON line per event the tests count
// Prints "listening <port>" on stdout once it accepts connections.
import { appendFileSync, readFileSync } from 'node:fs';
import https from 'node:https';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

const env = process.env;
const log = (event) => appendFileSync(env.IDP_EVENTS, `${JSON.stringify({ at: Date.now(), ...event })}\n`);

const provider = new Provider(env.IDP_ISSUER, {
  clients: JSON.parse(env.IDP_CLIENTS || '[]'),
  cookies: { keys: ['authsome-test-cookie-key-0123456789'] },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    registration: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  // Refresh tokens for every client allowed the grant (not only with offline_access).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: {
    AccessToken: Number(env.IDP_ACCESS_TTL || 3600),
    RefreshToken: 86400,
    DeviceCode: 600,
    Grant: 86400,
    Interaction: 3600,
    Session: 86400,
    AuthorizationCode: 60,
  },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});

provider.on('registration_create.success', (ctx, client) => log({ event: 'registration', client_id: client.clientId }));
provider.on('grant.success', (ctx) => log({ event: 'grant', grant_type: ctx.oidc.params.grant_type }));
provider.on('grant.error', (ctx, err) => log({ event: 'grant_error', grant_type: ctx.oidc.params?.grant_type, error: err.error }));
provider.on('grant.revoked', (ctx, grantId) => log({ event: 'grant_revoked', grant: grantId }));

const slowedDown = new Set();
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.is('application/x-www-form-urlencoded')) {
    // Read the body here (oidc-provider then uses req.body) to see the grant type.
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString();
    ctx.req.body = raw;
    const body = querystring.parse(raw);
    log({ event: 'token_request', grant_type: body.grant_type });
    if (env.IDP_SLOW_DOWN === '1' && body.grant_type === 'urn:ietf:params:oauth:grant-type:device_code'
        && !slowedDown.has(body.device_code)) {
      slowedDown.add(body.device_code);
      log({ event: 'slow_down' });
      ctx.status = 400;
      ctx.body = { error: 'slow_down', error_description: 'poll less often' };
      return;
    }
  }
  await next();
  // 9.x sends no interval: ask for 1 s so the tests poll quickly.
  if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
    ctx.body.interval = 1;
  }
});

const server = https.createServer(
  { cert: readFileSync(env.IDP_CERT), key: readFileSync(env.IDP_KEY) },
  provider.callback(),
);
server.listen(Number(env.IDP_PORT || 0), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
