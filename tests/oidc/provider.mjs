// A real third-party OpenID provider for bearergate's end-to-end tests: npm's oidc-provider on
// plain HTTP at 127.0.0.1, with
//   * client `bearergate` (client_secret_basic) that may introspect any token (RFC 7662);
//   * client `mail-alice` (client_secret_basic) with the client_credentials grant; its tokens
//     carry `username: "alice"` (client metadata `mail_user`, added by extraTokenClaims) so the
//     proxy can map them to a Dovecot user;
//   * resource indicators (RFC 8707): `resource=urn:bearergate:mail` gives an ES256 JWT access
//     token (RFC 9068) with aud = that resource and scope `mail`; `urn:bearergate:other` the same
//     for another audience; without `resource` the token is opaque and only introspection
//     answers for it.
//
// Usage: node provider.mjs [PORT]   (PORT 0 or absent: any free port)
// Once listening it prints one JSON line on stdout: {"issuer":"http://127.0.0.1:N","port":N,"kid":"..."}.
// Everything else (including oidc-provider's own notices) goes to stderr.
//
// Key rotation without a new issuer or port: `POST /__rotate` builds a new Provider instance
// with a freshly generated key and swaps it in; the answer is {"kid": new, "kids": [published]}.
// `POST /__rotate?keep=1` keeps publishing the previous key after the new one (the new key
// signs). Issued opaque tokens survive a rotation, as at a real provider: they live in one
// store for the whole process (oidc-provider's own in-memory adapter keeps a store per Provider
// instance, so a swap would forget them).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info, i.e. to stdout, which is reserved for the
// ready line.
console.log = console.error;
console.info = console.error;

const RESOURCES = {
  'urn:bearergate:mail': 'urn:bearergate:mail',
  'urn:bearergate:other': 'urn:bearergate:other',
};

const CLIENTS = [
  {
    client_id: 'bearergate',
    // Characters RFC 6749 §2.3.1 makes the client form-urlencode before HTTP Basic.
    client_secret: 'intro secret+/:%&=~',
    grant_types: [],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'mail-alice',
    client_secret: 'alice-client-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'mail',
    mail_user: 'alice',
  },
];

const INTROSPECTOR = 'bearergate';

function log(message) {
  process.stderr.write(`oidc-test-provider: ${message}\n`);
}

function generateKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), use: 'sig', alg: 'ES256' };
}

// Every stored artifact (tokens, grants, sessions) by `${model}:${id}`, with its expiry.
const STORE = new Map();

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** oidc-provider's storage adapter interface over {@link STORE}. */
class ProcessAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    STORE.set(this.key(id), { payload, expiresAt });
  }

  async find(id) {
    const key = this.key(id);
    const entry = STORE.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      STORE.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async findBy(field, value) {
    for (const [key, { payload }] of STORE) {
      if (key.startsWith(`${this.model}:`) && payload[field] === value) {
        return this.find(key.slice(this.model.length + 1));
      }
    }
    return undefined;
  }

  findByUid(uid) {
    return this.findBy('uid', uid);
  }

  findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const entry = STORE.get(this.key(id));
    if (entry) entry.payload.consumed = nowSeconds();
  }

  async destroy(id) {
    STORE.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of STORE) {
      if (payload.grantId === grantId) STORE.delete(key);
    }
  }
}

function configuration(keys) {
  return {
    adapter: ProcessAdapter,
    clients: CLIENTS,
    jwks: { keys },
    // Every signature this provider makes is ES256: there is no RSA key.
    clientDefaults: {
      grant_types: [],
      response_types: [],
      id_token_signed_response_alg: 'ES256',
    },
    extraClientMetadata: {
      properties: ['mail_user'],
      validator(_ctx, key, value) {
        if (key === 'mail_user' && value !== undefined && typeof value !== 'string') {
          throw new errors.InvalidClientMetadata('mail_user must be a string');
        }
      },
    },
    // `mail` is a known scope so that it survives on opaque tokens (requested without a
    // resource indicator).
    scopes: ['openid', 'offline_access', 'mail'],
    async extraTokenClaims(ctx, token) {
      const client = ctx.oidc.client ?? (await ctx.oidc.provider.Client.find(token.clientId));
      return client?.mail_user ? { username: client.mail_user } : undefined;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // The proxy's client may introspect anything; a client only its own tokens.
        async allowedPolicy(ctx, client, token) {
          return client.clientId === INTROSPECTOR || client.clientId === token.clientId;
        },
      },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        async defaultResource() {
          return undefined;
        },
        async useGrantedResource() {
          return false;
        },
        async getResourceServerInfo(_ctx, resourceIndicator) {
          const audience = RESOURCES[resourceIndicator];
          if (!audience) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            scope: 'mail',
            audience,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: 600,
      ClientCredentials: 600,
      Grant: 600,
      IdToken: 600,
      Interaction: 600,
      Session: 600,
    },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    async findAccount() {
      return undefined;
    },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  };
}

function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, configuration(keys));
  provider.on('server_error', (_ctx, err) => log(`server_error: ${err.stack ?? err}`));
  provider.on('grant.error', (_ctx, err) => log(`grant.error: ${err.message} ${err.error_description ?? ''}`));
  provider.on('introspection.error', (_ctx, err) => log(`introspection.error: ${err.message} ${err.error_description ?? ''}`));
  return { keys, callback: provider.callback() };
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

const portArg = process.argv[2] ?? '0';
const port = Number.parseInt(portArg, 10);
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  log(`usage: node provider.mjs [PORT], not ${JSON.stringify(portArg)}`);
  process.exit(2);
}

let issuer;
let current;

const server = http.createServer((req, res) => {
  log(`${req.method} ${req.url}`);
  if (!current) {
    sendJson(res, 503, { error: 'temporarily_unavailable' });
    return;
  }
  const url = new URL(req.url, issuer);
  if (url.pathname === '/__rotate') {
    if (req.method !== 'POST') {
      sendJson(res, 405, { error: 'POST only' });
      return;
    }
    const fresh = generateKey();
    const keys = url.searchParams.get('keep') === '1' ? [fresh, ...current.keys] : [fresh];
    current = buildProvider(issuer, keys);
    log(`rotated: signing with ${fresh.kid}, publishing ${keys.map((k) => k.kid).join(' ')}`);
    sendJson(res, 200, { kid: fresh.kid, kids: keys.map((k) => k.kid) });
    return;
  }
  current.callback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  issuer = `http://127.0.0.1:${bound}`;
  const key = generateKey();
  current = buildProvider(issuer, [key]);
  log(`listening at ${issuer}, signing with ${key.kid}`);
  process.stdout.write(`${JSON.stringify({ issuer, port: bound, kid: key.kid })}\n`);
});

// The test harness kills the process; closing stdin (the parent went away) ends it as well.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
