#!/usr/bin/env node
// The OAuth flows of bearergate's built-in authorization server, driven by a real third-party
// client library: openid-client v6 (discovery, RFC 7591 registration, authorization code +
// PKCE, device flow, refresh with rotation, introspection, revocation, userinfo). The person
// in front of the browser is played by lib.mjs's FetchBrowser: it follows the issuer's 303s
// by hand, keeps the session cookie, reads the hidden csrf field and posts the sign-in,
// consent and device forms. Redirect URIs are loopback URLs nobody listens on: the code is
// read from the Location header. The scenarios of what must be refused are in refusals.mjs,
// the steps they share in steps.mjs.
//
// usage: node flows.mjs ISSUER_URL SCENARIO [SCENARIO...]
//   env: NODE_EXTRA_CA_CERTS  the test CA (for an https issuer)
//        USERNAME, PASSWORD   a mail account the issuer's sign-in accepts
//        API_KEY              a key with the oauth-client-registration permission
//        MAX_ATTEMPTS         the issuer's max_attempts (default 3)
//        CLIENT_ID, REFRESH_TOKEN   for `refresh-once`
//        CLIENT_ID, CLIENT_NAME, REDIRECT_URI   for `registered-client` (an admin-registered client)
//
// Output: one JSON object per line, {"step", "ok", "detail", ...}; steps that produce tokens
// add "access_token" (and "refresh_token", "client_id") so the caller can use them. The exit
// status is 0 only when every step of every scenario went as expected; the failing step is
// the last line, with "ok": false.

import * as client from 'openid-client';

import {
  DEVICE_GRANT,
  FetchBrowser,
  MAIL_SCOPE,
  RecordingFetch,
  Unexpected,
  approveDevice,
  authorizationRequest,
  authorizeInBrowser,
  check,
  clientOptions,
  emit,
  env,
  errorStatus,
  expectOAuthError,
  loopbackPort,
  oauthError,
  pass,
  register,
  unregistered,
} from './lib.mjs';
import { REFUSALS } from './refusals.mjs';
import {
  DEVICE_ONLY,
  assertNoStore,
  codeFlow,
  discover,
  issuer,
  recorderFor,
  registerConfidential,
  registerPublic,
  user,
  verifyAccessToken,
} from './steps.mjs';

const scenarios = process.argv.slice(3);

// ---- scenarios ------------------------------------------------------------------------------

const SCENARIOS = {
  /** Both discovery documents, through openid-client, and what they must say. */
  async discovery() {
    const recorder = new RecordingFetch();
    const oidc = await discover('discovery-probe', recorder);
    const oauth = await client.discovery(new URL(issuer), 'discovery-probe', undefined, client.None(), {
      ...clientOptions(issuer, recorder),
      algorithm: 'oauth2',
    });
    for (const [name, config] of [['openid-configuration', oidc], ['oauth-authorization-server', oauth]]) {
      const m = config.serverMetadata();
      const step = `discovery-${name}`;
      check(step, m.issuer === issuer, `issuer ${m.issuer}`);
      const paths = {
        authorization_endpoint: '/auth/authorize',
        token_endpoint: '/auth/token',
        device_authorization_endpoint: '/auth/device',
        introspection_endpoint: '/auth/introspect',
        revocation_endpoint: '/auth/revoke',
        registration_endpoint: '/auth/register',
        jwks_uri: '/auth/jwks.json',
      };
      for (const [key, path] of Object.entries(paths)) {
        check(step, m[key] === `${issuer}${path}`, `${key} ${m[key]}`);
      }
      check(step, JSON.stringify(m.code_challenge_methods_supported) === '["S256"]', `code_challenge_methods_supported ${JSON.stringify(m.code_challenge_methods_supported)}`);
      check(step, JSON.stringify(m.response_types_supported) === '["code"]', `response_types_supported ${JSON.stringify(m.response_types_supported)}`);
      for (const grant of ['authorization_code', 'refresh_token', DEVICE_GRANT]) {
        check(step, m.grant_types_supported?.includes(grant), `grant_types_supported lacks ${grant}`);
      }
      check(step, !m.grant_types_supported?.includes('implicit') && !m.grant_types_supported?.includes('password'), `unsafe grant types ${m.grant_types_supported}`);
      check(step, m.scopes_supported?.includes(MAIL_SCOPE), `scopes_supported ${m.scopes_supported}`);
      for (const method of ['none', 'client_secret_basic']) {
        check(step, m.token_endpoint_auth_methods_supported?.includes(method), `token_endpoint_auth_methods_supported lacks ${method}`);
      }
      check(step, m.authorization_response_iss_parameter_supported === true, 'authorization_response_iss_parameter_supported is not true');
      const fetched = recorder.responses.find((r) => r.url.endsWith(`/.well-known/${name}`));
      check(step, fetched?.status === 200, `GET /.well-known/${name} status ${fetched?.status}`);
      pass(step, `issuer ${m.issuer}, endpoints at their paths`);
    }
    const m = oidc.serverMetadata();
    check('discovery-oidc', m.userinfo_endpoint === `${issuer}/auth/userinfo`, `userinfo_endpoint ${m.userinfo_endpoint}`);
    check('discovery-oidc', m.id_token_signing_alg_values_supported?.includes('ES256'), `id_token_signing_alg_values_supported ${m.id_token_signing_alg_values_supported}`);
    pass('discovery-oidc', 'userinfo endpoint and ES256 ID tokens announced');

    const response = await fetch(m.jwks_uri);
    check('jwks', response.status === 200, `GET jwks status ${response.status}`);
    const jwks = await response.json();
    check('jwks', Array.isArray(jwks.keys) && jwks.keys.length >= 1, `keys ${JSON.stringify(jwks)}`);
    for (const key of jwks.keys) {
      check('jwks', key.kty === 'EC' && key.crv === 'P-256' && key.alg === 'ES256', `key ${JSON.stringify(key)}`);
      check('jwks', typeof key.kid === 'string' && key.kid !== '', 'key without kid');
      check('jwks', key.d === undefined, 'the JWKS publishes a private key');
    }
    pass('jwks', `${jwks.keys.length} ES256 key(s): ${jwks.keys.map((k) => k.kid).join(' ')}`);
  },

  /** RFC 7591 with the API key; without one (or a wrong one) it is refused with 401. */
  async register() {
    const recorder = new RecordingFetch();
    const { config, metadata } = await registerPublic(recorder, { client_name: 'Flows Registration Check' });
    check('register', typeof metadata.client_id === 'string' && metadata.client_id !== '', 'no client_id');
    check('register', metadata.client_secret === undefined, 'a public client got a secret');
    check('register', metadata.token_endpoint_auth_method === 'none', `token_endpoint_auth_method ${metadata.token_endpoint_auth_method}`);
    check('register', metadata.client_name === 'Flows Registration Check', `client_name ${metadata.client_name}`);
    const answer = recorder.last('/auth/register');
    check('register', answer?.status === 201, `registration status ${answer?.status}`);
    check('register', /no-store/i.test(answer.headers.get('cache-control') ?? ''), 'registration answer is cacheable');
    pass('register', `public client ${metadata.client_id}`, { client_id: config.clientMetadata().client_id });

    const confidential = await registerConfidential(recorder);
    check('register-confidential', typeof confidential.metadata.client_secret === 'string' && confidential.metadata.client_secret.length >= 22, 'no (or a short) client_secret');
    check('register-confidential', confidential.metadata.token_endpoint_auth_method === 'client_secret_basic', `token_endpoint_auth_method ${confidential.metadata.token_endpoint_auth_method}`);
    pass('register-confidential', `confidential client ${confidential.metadata.client_id}`);

    for (const [step, key] of [['register-without-key', undefined], ['register-wrong-key', 'bgk_not-a-key-we-issued']]) {
      recorder.responses.length = 0;
      let registered;
      try {
        // Without a key, a public native client may register (open_native, profile.mjs):
        // ask as a web client instead, which needs one.
        const metadata = key === undefined ? { redirect_uris: ['https://app.example/cb'] } : {};
        registered = await register(issuer, key, metadata, client.None(), recorder);
      } catch (error) {
        const status = errorStatus(error) ?? recorder.last('/auth/register')?.status;
        check(step, status === 401, () => `status ${status}: ${error.message}`);
        const challenge = recorder.last('/auth/register')?.headers.get('www-authenticate') ?? '';
        check(step, /^Bearer/i.test(challenge), `WWW-Authenticate ${JSON.stringify(challenge)}`);
        pass(step, `refused: 401, WWW-Authenticate ${challenge}`);
        continue;
      }
      throw new Unexpected(step, `registered ${registered.metadata.client_id}`);
    }
  },

  /**
   * Authorization code + PKCE S256, as a native app does it; consent is asked again for a
   * loopback client, remembered for a registered https one; deny sends access_denied.
   */
  async code() {
    const recorder = new RecordingFetch();
    const { config, metadata } = await registerPublic(recorder, { client_name: 'Flows Code App' });
    recorderFor(config, recorder);
    // RFC 8252 §7.3: a loopback redirect matches on any port.
    const redirectUri = `http://127.0.0.1:${loopbackPort()}/cb`;
    const scope = `openid ${MAIL_SCOPE}`;
    const { tokens, seen, browser } = await codeFlow('code', config, { redirectUri, scope });
    check('code', seen.signedIn, 'the issuer did not ask for a sign-in');
    check('code', seen.consentPage !== null, 'no consent page for a new client');
    const consentText = seen.consentPage.text();
    check('code', consentText.includes('Flows Code App'), 'consent page does not name the client');
    check('code', /unverified/i.test(consentText), 'a self-registered client name is not marked unverified');
    check('code', consentText.includes('127.0.0.1'), 'consent page does not show the redirect host');
    const session = browser.setCookies.find((c) => /^(__Host-)?bearergate=/.test(c)) ?? '';
    const secure = new URL(issuer).protocol === 'https:';
    check('code', session !== '', `no session cookie: ${browser.setCookies}`);
    check('code', /HttpOnly/i.test(session), `session cookie not HttpOnly: ${session}`);
    check('code', /SameSite=(Lax|Strict)/i.test(session), `session cookie without SameSite: ${session}`);
    if (secure) {
      check('code', /^__Host-bearergate=/.test(session) && /;\s*Secure/i.test(session) && /Path=\//i.test(session) && !/Domain=/i.test(session), `https session cookie ${session}`);
    } else {
      // Plaintext (loopback test) mode: browsers refuse __Host- and Secure cookies over http.
      check('code', /^bearergate=/.test(session) && !/;\s*Secure/i.test(session), `plaintext session cookie ${session}`);
    }
    assertNoStore('code', recorder);
    check('code', tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
    check('code', typeof tokens.refresh_token === 'string' && tokens.refresh_token !== '', 'no refresh token');
    check('code', typeof tokens.expires_in === 'number' && tokens.expires_in > 0, `expires_in ${tokens.expires_in}`);
    const claims = await verifyAccessToken('code', config, tokens.access_token, { clientId: metadata.client_id, scope });
    check('code', Math.abs(claims.exp - claims.iat - tokens.expires_in) <= 1, `exp-iat ${claims.exp - claims.iat}, expires_in ${tokens.expires_in}`);
    const idClaims = tokens.claims();
    check('code', idClaims?.sub === user().username, `ID token sub ${idClaims?.sub}`);
    check('code', idClaims?.aud === metadata.client_id || idClaims?.aud?.includes?.(metadata.client_id), `ID token aud ${idClaims?.aud}`);
    pass('code', `tokens for ${claims.sub}, scope ${claims.scope}, ${session.split('=')[0]} cookie`, {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      client_id: metadata.client_id,
    });

    // A second authorization in the same session: no sign-in, but a loopback client's
    // identity cannot be assured, so the person is asked again (RFC 8252 §8.6).
    const again = await authorizationRequest(config, redirectUri, scope);
    const second = await authorizeInBrowser(browser, again.url, { ...user(), step: 'code-asked-again' });
    check('code-asked-again', !second.signedIn, 'asked to sign in again within the session');
    check('code-asked-again', second.consentPage !== null, 'consent skipped for a loopback client');
    const more = await client.authorizationCodeGrant(config, new URL(second.location), {
      pkceCodeVerifier: again.verifier,
      expectedState: again.state,
    });
    check('code-asked-again', more.access_token !== tokens.access_token, 'the same access token twice');
    pass('code-asked-again', 'same session: no sign-in, consent asked again for a loopback client');

    // A registered client with an https redirect is recognisable: its consent is remembered.
    // The browser only reads the Location; nothing listens at app.example.
    const { config: web, metadata: webMetadata } = await registerPublic(recorder, {
      client_name: 'Flows Web App',
      redirect_uris: ['https://app.example/oauth/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const webRedirect = webMetadata.redirect_uris[0];
    const webFirst = await codeFlow('code-remembered', web, { browser, redirectUri: webRedirect, scope: MAIL_SCOPE });
    check('code-remembered', webFirst.seen.consentPage !== null, 'no consent page the first time');
    const webAgain = await authorizationRequest(web, webRedirect, MAIL_SCOPE);
    const webSecond = await authorizeInBrowser(browser, webAgain.url, { ...user(), step: 'code-remembered' });
    check('code-remembered', webSecond.consentPage === null, 'asked again for a registered https client');
    await client.authorizationCodeGrant(web, new URL(webSecond.location), {
      pkceCodeVerifier: webAgain.verifier,
      expectedState: webAgain.state,
    });
    pass('code-remembered', 'a registered https client: consent remembered, straight back with a code');

    // Denying (another client, so no consent is remembered): back to the client with
    // access_denied, iss and state.
    const { config: other, metadata: otherMetadata } = await registerPublic(recorder, { client_name: 'Flows Denied App' });
    const denied = await codeFlow('code-deny', other, {
      browser,
      redirectUri: otherMetadata.redirect_uris[0],
      scope: MAIL_SCOPE,
      decision: 'deny',
    });
    check('code-deny', denied.callback.searchParams.get('error') === 'access_denied', `redirect ${denied.callback}`);
    check('code-deny', !denied.callback.searchParams.has('code'), 'a code after deny');
    pass('code-deny', 'deny sends access_denied');
  },

  /** Refresh with rotation; a spent refresh token kills the family (RFC 9700 §4.14.2). */
  async refresh() {
    const recorder = new RecordingFetch();
    const { config } = await registerPublic(recorder);
    recorderFor(config, recorder);
    const { tokens } = await codeFlow('refresh-setup', config, { redirectUri: config.clientMetadata().redirect_uris[0], scope: MAIL_SCOPE });
    const first = tokens.refresh_token;
    const rotated = await client.refreshTokenGrant(config, first);
    assertNoStore('refresh', recorder);
    check('refresh', typeof rotated.refresh_token === 'string' && rotated.refresh_token !== first, 'the refresh token was not rotated');
    check('refresh', rotated.access_token !== tokens.access_token, 'the same access token again');
    check('refresh', String(rotated.scope ?? '').split(' ').includes(MAIL_SCOPE), `scope ${rotated.scope}`);
    pass('refresh', 'rotated: a new refresh token and access token', { access_token: rotated.access_token, refresh_token: rotated.refresh_token });

    const newer = await client.refreshTokenGrant(config, rotated.refresh_token);
    check('refresh-again', newer.refresh_token !== rotated.refresh_token, 'not rotated on the second use');
    pass('refresh-again', 'the newest refresh token rotates again', { access_token: newer.access_token });

    await expectOAuthError('refresh-reuse', 'invalid_grant', () => client.refreshTokenGrant(config, first));
    pass('refresh-reuse', 'the spent refresh token is refused with invalid_grant');
    await expectOAuthError('refresh-family-dead', 'invalid_grant', () => client.refreshTokenGrant(config, newer.refresh_token));
    pass('refresh-family-dead', 'after the reuse the newest refresh token is refused too', {
      access_token: newer.access_token,
    });
  },

  /** One refresh with CLIENT_ID and REFRESH_TOKEN from the environment (restart survival). */
  async 'refresh-once'() {
    const config = await discover(env('CLIENT_ID'));
    const rotated = await client.refreshTokenGrant(config, env('REFRESH_TOKEN'));
    await verifyAccessToken('refresh-once', config, rotated.access_token, { clientId: env('CLIENT_ID'), scope: MAIL_SCOPE });
    pass('refresh-once', 'the refresh token was accepted', {
      access_token: rotated.access_token,
      refresh_token: rotated.refresh_token,
    });
  },

  /**
   * A public client the admin registered (`bearergate clients add`): CLIENT_ID, CLIENT_NAME,
   * REDIRECT_URI (a loopback one, used here on another port). Its name is shown as checked.
   */
  async 'registered-client'() {
    const clientId = env('CLIENT_ID');
    const config = await discover(clientId);
    const registered = new URL(env('REDIRECT_URI'));
    registered.port = String(loopbackPort());
    const redirectUri = registered.href;
    const { tokens, seen } = await codeFlow('registered-client', config, { redirectUri, scope: MAIL_SCOPE });
    const text = seen.consentPage?.text() ?? '';
    check('registered-client', text.includes(env('CLIENT_NAME')), () => `consent page does not name ${env('CLIENT_NAME')}: ${text.slice(0, 300)}`);
    check('registered-client', !/unverified/i.test(text), 'an admin-registered client is shown as unverified');
    await verifyAccessToken('registered-client', config, tokens.access_token, { clientId, scope: MAIL_SCOPE });
    pass('registered-client', `${clientId} (admin-registered) got tokens; its name is not marked unverified`, {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
    });
  },

  /** RFC 8628 with the approval given in parallel by the browser. */
  async device() {
    const recorder = new RecordingFetch();
    const { config, metadata } = await registerPublic(recorder, DEVICE_ONLY('Flows Device App'));
    recorderFor(config, recorder);
    const authorization = await client.initiateDeviceAuthorization(config, {});
    check('device', /^[A-Z0-9]{4}-[A-Z0-9]{4}$/.test(authorization.user_code), `user_code ${authorization.user_code}`);
    check('device', authorization.verification_uri === `${issuer}/auth/device/verify`, `verification_uri ${authorization.verification_uri}`);
    check('device', authorization.verification_uri_complete?.startsWith(`${issuer}/auth/device/verify?`), `verification_uri_complete ${authorization.verification_uri_complete}`);
    const authorizationAnswer = recorder.last('/auth/device');
    check('device', /no-store/i.test(authorizationAnswer?.headers.get('cache-control') ?? ''), 'device authorization answer is cacheable');
    pass('device-authorization', `user code ${authorization.user_code}, every ${authorization.interval ?? 5}s for ${authorization.expires_in}s`);
    const browser = new FetchBrowser(issuer);
    const [tokens, approval] = await Promise.all([
      client.pollDeviceAuthorizationGrant(config, authorization),
      approveDevice(browser, authorization.verification_uri, authorization.user_code, { ...user(), step: 'device-approval' }),
    ]);
    check('device-approval', /has access/i.test(approval.confirmPage.text()), () => `done page: ${approval.confirmPage.text().slice(0, 200)}`);
    pass('device-approval', 'code typed in lower case without the dash, approved');
    assertNoStore('device', recorder);
    await verifyAccessToken('device', config, tokens.access_token, { clientId: metadata.client_id, scope: MAIL_SCOPE });
    check('device', String(tokens.scope ?? '') === MAIL_SCOPE, `default scope ${tokens.scope}`);
    pass('device', 'tokens by polling', {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token,
      client_id: metadata.client_id,
    });
  },

  /** Denied on the device page: the poll ends with access_denied. */
  async 'device-deny'() {
    const { config } = await registerPublic(undefined, DEVICE_ONLY('Flows Device Test'));
    const authorization = await client.initiateDeviceAuthorization(config, {});
    const [denied] = await Promise.all([
      expectOAuthError('device-deny', 'access_denied', () => client.pollDeviceAuthorizationGrant(config, authorization)),
      approveDevice(new FetchBrowser(issuer), authorization.verification_uri, authorization.user_code, { ...user(), decision: 'deny', step: 'device-deny' }),
    ]);
    pass('device-deny', `poll ended with ${oauthError(denied)}`);
  },

  /** RFC 7662 by a confidential client; a public client may not introspect. */
  async introspect() {
    const recorder = new RecordingFetch();
    const { config, metadata } = await registerPublic(recorder);
    const { tokens } = await codeFlow('introspect-setup', config, { redirectUri: metadata.redirect_uris[0], scope: MAIL_SCOPE });
    const { config: introspector } = await registerConfidential(recorder);
    const active = await client.tokenIntrospection(introspector, tokens.access_token);
    check('introspect-access', active.active === true, `answer ${JSON.stringify(active)}`);
    check('introspect-access', active.sub === user().username, `sub ${active.sub}`);
    check('introspect-access', active.client_id === metadata.client_id, `client_id ${active.client_id}`);
    check('introspect-access', String(active.scope).split(' ').includes(MAIL_SCOPE), `scope ${active.scope}`);
    check('introspect-access', active.iss === undefined || active.iss === issuer, `iss ${active.iss}`);
    check('introspect-access', typeof active.exp === 'number', `exp ${active.exp}`);
    pass('introspect-access', `active, sub ${active.sub}, client ${active.client_id}`);
    const refresh = await client.tokenIntrospection(introspector, tokens.refresh_token);
    check('introspect-refresh', refresh.active === true, `answer ${JSON.stringify(refresh)}`);
    pass('introspect-refresh', 'the refresh token is active');
    const garbage = await client.tokenIntrospection(introspector, 'not-a-token-of-this-issuer');
    check('introspect-unknown', garbage.active === false && Object.keys(garbage).length === 1, `answer ${JSON.stringify(garbage)}`);
    pass('introspect-unknown', 'an unknown token is {"active": false}');
    await expectOAuthError('introspect-public-client', 'invalid_client', () => client.tokenIntrospection(config, tokens.access_token));
    pass('introspect-public-client', 'a public client may not introspect');
  },

  /** RFC 7009: revoking the refresh token revokes the grant (access token inactive too). */
  async revoke() {
    const recorder = new RecordingFetch();
    const { config, metadata } = await registerPublic(recorder);
    const { tokens } = await codeFlow('revoke-setup', config, { redirectUri: metadata.redirect_uris[0], scope: MAIL_SCOPE });
    const { config: introspector } = await registerConfidential(recorder);
    await client.tokenRevocation(config, tokens.refresh_token);
    const answer = recorder.last('/auth/revoke');
    check('revoke', answer?.status === 200, `revocation status ${answer?.status}`);
    pass('revoke', 'refresh token revoked (200)', { access_token: tokens.access_token });
    await expectOAuthError('revoke-refresh-dead', 'invalid_grant', () => client.refreshTokenGrant(config, tokens.refresh_token));
    pass('revoke-refresh-dead', 'the revoked refresh token is refused');
    const access = await client.tokenIntrospection(introspector, tokens.access_token);
    check('revoke-access-dead', access.active === false, `introspection after revocation: ${JSON.stringify(access)}`);
    pass('revoke-access-dead', 'the access token of the revoked grant is inactive');
    // Revoking an unknown or already revoked token still answers 200 (RFC 7009 §2.2).
    await client.tokenRevocation(config, tokens.refresh_token);
    await client.tokenRevocation(config, 'never-issued');
    pass('revoke-idempotent', 'revoking again or an unknown token answers 200');
  },

  /** OpenID userinfo with the access token. */
  async userinfo() {
    const { config, metadata } = await registerPublic(new RecordingFetch());
    const { tokens } = await codeFlow('userinfo-setup', config, { redirectUri: metadata.redirect_uris[0], scope: `openid ${MAIL_SCOPE}` });
    const info = await client.fetchUserInfo(config, tokens.access_token, user().username);
    check('userinfo', info.sub === user().username, `sub ${info.sub}`);
    pass('userinfo', `sub ${info.sub}`);
    let refused;
    try {
      await client.fetchUserInfo(config, `${tokens.access_token.slice(0, -4)}AAAA`, client.skipSubjectCheck);
    } catch (error) {
      refused = error;
    }
    check('userinfo-bad-token', refused !== undefined, 'a forged token got userinfo');
    check('userinfo-bad-token', errorStatus(refused) === 401, `status ${errorStatus(refused)}: ${refused?.message}`);
    pass('userinfo-bad-token', 'a token with a broken signature gets 401');
  },

  /** An unregistered client id: allowed with PKCE S256 and a loopback redirect, shown unverified. */
  async unregistered() {
    const clientId = `unregistered-${loopbackPort()}`;
    const config = await unregistered(issuer, clientId);
    const redirectUri = `http://127.0.0.1:${loopbackPort()}/callback`;
    const { tokens, seen } = await codeFlow('unregistered', config, { redirectUri, scope: MAIL_SCOPE });
    check('unregistered', /unverified/i.test(seen.consentPage?.text() ?? ''), 'consent for an unregistered client does not say unverified');
    check('unregistered', seen.consentPage.text().includes(clientId), 'consent page does not show the client id');
    await verifyAccessToken('unregistered', config, tokens.access_token, { clientId, scope: MAIL_SCOPE });
    pass('unregistered', `unregistered ${clientId} got tokens through a loopback redirect`, {
      access_token: tokens.access_token,
    });
  },

  ...REFUSALS,
};

/** What `all` runs: every scenario that needs no special issuer settings. */
const ALL = ['discovery', 'register', 'code', 'refresh', 'device', 'device-deny', 'introspect', 'revoke', 'userinfo', 'unregistered', 'bad-redirect', 'wrong-verifier', 'code-replay', 'csrf'];

async function main() {
  if (!issuer || scenarios.length === 0) {
    console.error(`usage: node flows.mjs ISSUER_URL SCENARIO...\nscenarios: all ${Object.keys(SCENARIOS).join(' ')}`);
    process.exit(2);
  }
  const chosen = scenarios.flatMap((s) => (s === 'all' ? ALL : [s]));
  for (const name of chosen) {
    const scenario = SCENARIOS[name];
    if (scenario === undefined) {
      emit(name, false, `unknown scenario; known: all ${Object.keys(SCENARIOS).join(' ')}`);
      process.exit(2);
    }
    try {
      await scenario();
      emit(`scenario:${name}`, true, 'done');
    } catch (error) {
      const step = error instanceof Unexpected ? error.step : name;
      const detail = error instanceof Unexpected
        ? error.detail
        : `${error?.name}: ${error?.message}${error?.error ? ` (${error.error}: ${error.error_description ?? ''})` : ''}${error?.cause ? ` cause: ${error.cause?.message ?? JSON.stringify(error.cause)}` : ''}`;
      emit(step, false, detail, { scenario: name });
      process.exit(1);
    }
  }
}

await main();
