// The steps flows.mjs and refusals.mjs build their scenarios from: the issuer under test
// (the first argument), the signed-in person (USERNAME, PASSWORD), registration with the API
// key (API_KEY), the code flow through the fetch browser, and the checks an access token and
// a token response must pass. openid-client makes every OAuth call.

import * as client from 'openid-client';
import * as jose from 'jose';

import {
  DEVICE_GRANT,
  FetchBrowser,
  authorizationRequest,
  authorizeInBrowser,
  check,
  clientOptions,
  env,
  jwtParts,
  register,
} from './lib.mjs';

/** The issuer identifier under test: the scripts' first argument. */
export const issuer = process.argv[2];

export function user() {
  return { username: env('USERNAME'), password: env('PASSWORD') };
}

export function maxAttempts() {
  return Number(process.env.MAX_ATTEMPTS ?? '3');
}

/** Registration metadata of a device-flow-only client: no redirect URIs at all. */
export function DEVICE_ONLY(name) {
  return { client_name: name, redirect_uris: undefined, response_types: undefined, grant_types: [DEVICE_GRANT, 'refresh_token'] };
}

// ---- building blocks ------------------------------------------------------------------------

/** Discovery through openid-client, for a client id (registered or not). */
export async function discover(clientId, recorder) {
  return client.discovery(new URL(issuer), clientId, undefined, client.None(), clientOptions(issuer, recorder));
}

/** A public loopback client registered with the API key. */
export async function registerPublic(recorder, metadata = {}) {
  return register(issuer, env('API_KEY'), metadata, client.None(), recorder);
}

/** A confidential client (client_secret_basic) that may introspect, registered with the API key. */
export async function registerConfidential(recorder) {
  const registered = await register(
    issuer,
    env('API_KEY'),
    {
      client_name: 'bearergate flows introspector',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
    },
    client.ClientSecretBasic(),
    recorder,
  );
  return registered;
}

/**
 * Verifies an access token the way a resource server would (jose against the JWKS found by
 * discovery) and checks the RFC 9068 shape; returns its claims.
 */
export async function verifyAccessToken(step, config, token, { clientId, scope }) {
  const metadata = config.serverMetadata();
  const { header } = jwtParts(token);
  check(step, header.typ === 'at+jwt', `typ ${header.typ}`);
  check(step, header.alg === 'ES256', `alg ${header.alg}`);
  check(step, typeof header.kid === 'string' && header.kid !== '', 'no kid');
  const jwks = jose.createRemoteJWKSet(new URL(metadata.jwks_uri));
  const { payload } = await jose.jwtVerify(token, jwks, {
    issuer,
    typ: 'at+jwt',
    algorithms: ['ES256'],
  });
  const { username } = user();
  check(step, payload.sub === username, `sub ${payload.sub}`);
  check(step, payload.client_id === clientId, `client_id ${payload.client_id}, want ${clientId}`);
  const scopes = String(payload.scope ?? '').split(' ');
  for (const wanted of scope.split(' ')) {
    check(step, scopes.includes(wanted), `scope ${payload.scope} lacks ${wanted}`);
  }
  check(step, typeof payload.exp === 'number' && payload.exp > Date.now() / 1000, `exp ${payload.exp}`);
  check(step, typeof payload.jti === 'string' && payload.jti !== '', 'no jti');
  return payload;
}

/** The token endpoint's last answer must not be cached (RFC 6749 §5.1). */
export function assertNoStore(step, recorder) {
  const last = recorder.last(new URL(recorder.tokenEndpoint).pathname);
  check(step, last !== undefined, 'no token endpoint response recorded');
  const cache = last.headers.get('cache-control') ?? '';
  check(step, /no-store/i.test(cache), `token response Cache-Control ${JSON.stringify(cache)}`);
}

/**
 * The whole code flow for `config` with the browser: authorization URL with PKCE S256 and
 * state, sign-in, consent, code exchange. Returns tokens and what the browser saw.
 */
export async function codeFlow(step, config, { browser, redirectUri, scope, decision } = {}) {
  const b = browser ?? new FetchBrowser(issuer);
  const request = await authorizationRequest(config, redirectUri, scope);
  const seen = await authorizeInBrowser(b, request.url, { ...user(), decision, step });
  const callback = new URL(seen.location);
  check(step, callback.origin + callback.pathname === redirectUri, `sent to ${seen.location}, want ${redirectUri}`);
  check(step, callback.searchParams.get('iss') === issuer, `iss ${callback.searchParams.get('iss')} in the redirect (RFC 9207)`);
  check(step, callback.searchParams.get('state') === request.state, 'state not returned');
  if (decision === 'deny') {
    return { callback, seen, browser: b, request };
  }
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
  });
  return { tokens, callback, seen, browser: b, request };
}

export function recorderFor(config, recorder) {
  recorder.tokenEndpoint = config.serverMetadata().token_endpoint;
  return recorder;
}
