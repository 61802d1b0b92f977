// A new mail client setting itself up from nothing but an address, as the IETF mail OAuth
// profile has it (draft-ietf-mailmaint-pacc-02, draft-ietf-mailmaint-oauth-public):
//
//   1. the address's domain publishes a PACC document: the servers and the OAuth issuer;
//   2. the client discovers the issuer (RFC 8414) and registers itself (RFC 7591) as a
//      public native client, with no key and no secret;
//   3. authorization code + PKCE S256 through a loopback redirect (RFC 8252 §7.3): an HTTP
//      listener of this script on 127.0.0.1 receives the browser's redirect, the sign-in and
//      consent forms are posted by the fetch browser of lib.mjs, as a person would;
//   4. it prints the access token and the servers, one JSON line each, for the test that
//      runs it to log in to IMAP, SMTP, POP3 and ManageSieve with.
//
// usage: node newclient.mjs BASE_URL ADDRESS   (USERNAME, PASSWORD: the person signing in)
//
// BASE_URL stands in for https://ua-auto-config.<domain> (there is no DNS in the tests, so
// neither the host name nor the `_ua-auto-config` TXT digest can be looked up; the digest is
// checked against the one the server logged instead, by the caller).

import http from 'node:http';

import * as client from 'openid-client';

import {
  FetchBrowser,
  MAIL_SCOPE,
  Unexpected,
  authorizeInBrowser,
  check,
  clientOptions,
  emit,
  env,
  pass,
} from './lib.mjs';

const [base, address] = process.argv.slice(2);

/** The PACC document's bytes from `path` under `base`, checked to be JSON. */
async function fetchPacc(step, path) {
  const response = await fetch(new URL(path, base));
  check(step, response.status === 200, `${path}: status ${response.status}`);
  const type = response.headers.get('content-type') ?? '';
  check(step, type.startsWith('application/json'), `${path}: content-type ${type}`);
  return Buffer.from(await response.arrayBuffer());
}

/**
 * An HTTP listener on a free loopback port that takes one redirect: `next()` resolves with
 * the URL the browser was sent to (code, state, iss).
 */
async function loopbackListener() {
  let deliver;
  const arrived = new Promise((resolve) => {
    deliver = resolve;
  });
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    response.end('Signed in. You can close this window.\n');
    deliver(new URL(request.url, `http://127.0.0.1:${server.address().port}`));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    next: () => arrived,
    close: () => server.close(),
  };
}

async function main() {
  const at = address?.lastIndexOf('@') ?? -1;
  check('address', base !== undefined && at > 0, 'usage: node newclient.mjs BASE_URL ADDRESS');
  const domain = address.slice(at + 1);

  // 1. PACC: the draft's name and the earlier one, the same bytes.
  const bytes = await fetchPacc('pacc', '/.well-known/user-agent-configuration.json');
  const legacy = await fetchPacc('pacc', '/.well-known/pacc.json');
  check('pacc', bytes.equals(legacy), 'pacc.json differs from user-agent-configuration.json');
  const pacc = JSON.parse(bytes.toString('utf8'));
  const issuer = pacc.authentication?.['oauth-public']?.issuer;
  check('pacc', typeof issuer === 'string' && issuer !== '', `no oauth-public issuer: ${bytes}`);
  const protocols = pacc.protocols ?? {};
  for (const wanted of ['imap', 'smtp']) {
    check('pacc', typeof protocols[wanted]?.host === 'string', `no ${wanted} host: ${bytes}`);
  }
  pass('pacc', `${domain}: issuer ${issuer}, ${Object.keys(protocols).join(' ')}`, {
    issuer,
    protocols,
    pacc: bytes.toString('utf8'),
  });

  // 2. Discovery (RFC 8414) and registration without any key.
  const callback = await loopbackListener();
  try {
    const redirectUri = `http://127.0.0.1:${callback.port}/callback`;
    const config = await client.dynamicClientRegistration(
      new URL(issuer),
      {
        client_name: 'bearergate new mail client test',
        application_type: 'native',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
      client.None(),
      { ...clientOptions(issuer), algorithm: 'oauth2' },
    );
    const metadata = config.serverMetadata();
    check('register', metadata.issuer === issuer, `metadata issuer ${metadata.issuer}`);
    check('register', (metadata.code_challenge_methods_supported ?? []).includes('S256'), 'no S256');
    const clientId = config.clientMetadata().client_id;
    check('register', typeof clientId === 'string' && clientId !== '', 'no client_id');
    check('register', config.clientMetadata().client_secret === undefined, 'a public client got a secret');
    pass('register', `client_id of ${clientId.length} characters`, { client_id: clientId });

    // 3. Code + PKCE; the browser ends at the loopback listener.
    const offline = (metadata.scopes_supported ?? []).includes('offline_access');
    const scope = offline ? `${MAIL_SCOPE} offline_access` : MAIL_SCOPE;
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    });
    const browser = new FetchBrowser(issuer);
    const seen = await authorizeInBrowser(browser, url, {
      username: env('USERNAME'),
      password: env('PASSWORD'),
      step: 'authorize',
    });
    check('authorize', seen.location?.startsWith(`${redirectUri}?`), `sent to ${seen.location}`);
    const landed = await fetch(seen.location);
    check('authorize', landed.status === 200, `loopback listener answered ${landed.status}`);
    const redirected = await callback.next();
    check('authorize', redirected.searchParams.get('iss') === issuer, `iss ${redirected.searchParams.get('iss')}`);
    pass('authorize', `redirected to 127.0.0.1:${callback.port}${redirected.pathname}`);

    const tokens = await client.authorizationCodeGrant(config, redirected, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    check('token', typeof tokens.access_token === 'string', 'no access_token');
    const granted = String(tokens.scope ?? '').split(' ');
    check('token', granted.includes(MAIL_SCOPE), `scope ${tokens.scope}`);
    check('token', !offline || typeof tokens.refresh_token === 'string', 'offline_access but no refresh_token');
    pass('token', `scope ${tokens.scope}, expires in ${tokens.expires_in}s`, {
      access_token: tokens.access_token,
    });
  } finally {
    callback.close();
  }
}

try {
  await main();
} catch (error) {
  if (error instanceof Unexpected) {
    emit(error.step, false, error.detail);
  } else {
    emit('error', false, `${error?.name}: ${error?.message} ${error?.cause ? JSON.stringify(error.cause) : ''}`);
  }
  process.exitCode = 1;
}
