#!/usr/bin/env node
// A new mail client following the IETF mail-client OAuth profile (draft-ietf-mailmaint-
// oauth-public) against bearergate's built-in authorization server, every OAuth call made by
// openid-client v6: discovery, RFC 7591 registration WITHOUT an API key (a public native
// client: no secret, a loopback redirect), the code flow with PKCE S256 asking for the mail
// scope and an RFC 8707 resource naming the IMAP service, refresh (the audience stays), and
// what must be refused: a keyless registration with an https redirect, and a resource of
// another server (invalid_target) on the authorization request and on a refresh.
//
// usage: node profile.mjs ISSUER_URL
//   env: NODE_EXTRA_CA_CERTS  the test CA
//        USERNAME, PASSWORD   a mail account the issuer's sign-in accepts
//        RESOURCE             the IMAP service to ask for, e.g. imap://localhost
//
// Output: one JSON object per line, {"step", "ok", "detail", ...}, as flows.mjs; the token
// steps add "access_token" (and "refresh_token", "client_id"). Exit status 0 only when every
// step went as expected.

import * as client from 'openid-client';

import {
  FetchBrowser,
  MAIL_SCOPE,
  RecordingFetch,
  Unexpected,
  authorizationRequest,
  authorizeInBrowser,
  check,
  clientOptions,
  emit,
  env,
  errorStatus,
  expectOAuthError,
  jwtParts,
  loopbackPort,
  oauthError,
  pass,
} from './lib.mjs';
import { issuer, user } from './steps.mjs';

const FOREIGN_RESOURCE = 'imap://mail.elsewhere.example';

/** RFC 7591 registration with no initial access token. */
async function registerWithoutKey(metadata, recorder) {
  return client.dynamicClientRegistration(
    new URL(issuer),
    metadata,
    client.None(),
    clientOptions(issuer, recorder),
  );
}

async function main() {
  const resource = env('RESOURCE');
  const recorder = new RecordingFetch();

  // ---- registration: a public native client needs no key --------------------------------
  const port = loopbackPort();
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  const config = await registerWithoutKey(
    {
      client_name: 'Profile Mail',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    recorder,
  );
  const metadata = config.clientMetadata();
  const answer = recorder.last('/auth/register');
  check('register-native', answer?.status === 201, `registration status ${answer?.status}`);
  check('register-native', typeof metadata.client_id === 'string' && metadata.client_id.startsWith('bgn1.'), `client_id ${metadata.client_id}`);
  check('register-native', metadata.client_secret === undefined, 'a public client got a secret');
  check('register-native', config.serverMetadata().scopes_supported?.includes(MAIL_SCOPE), 'scopes_supported lacks the mail scope');
  pass('register-native', `self-contained client id, ${metadata.client_id.length} characters`, { client_id: metadata.client_id });

  // ---- without a key, an https redirect is no native client: refused ------------------
  let refused;
  try {
    await registerWithoutKey(
      {
        client_name: 'Web Mail',
        redirect_uris: ['https://webmail.example/callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      },
      recorder,
    );
  } catch (error) {
    refused = error;
  }
  check('register-https-refused', refused !== undefined, 'a keyless registration with an https redirect succeeded');
  const status = errorStatus(refused) ?? recorder.last('/auth/register')?.status;
  check('register-https-refused', status === 401, `status ${status}: ${refused?.message}`);
  pass('register-https-refused', `401 ${oauthError(refused) ?? ''}`);

  // ---- code flow with PKCE, the mail scope and the IMAP resource ------------------------
  const browser = new FetchBrowser(issuer);
  const request = await authorizationRequest(config, redirectUri, MAIL_SCOPE, { resource });
  const seen = await authorizeInBrowser(browser, request.url, { ...user(), step: 'code-resource' });
  check('code-resource', seen.consentPage !== null, 'no consent page: a native client must be asked every time');
  const consent = seen.consentPage.text();
  check('code-resource', consent.includes('Profile Mail') && /unverified/i.test(consent), `consent page: ${consent.slice(0, 300)}`);
  const callback = new URL(seen.location);
  check('code-resource', callback.searchParams.get('error') === null, `error ${callback.searchParams.get('error')}`);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
  });
  const { claims } = jwtParts(tokens.access_token);
  check('code-resource', claims.aud === resource, `aud ${JSON.stringify(claims.aud)}, want ${resource}`);
  check('code-resource', String(claims.scope).split(' ').includes(MAIL_SCOPE), `scope ${claims.scope}`);
  check('code-resource', claims.client_id === metadata.client_id, 'client_id claim');
  pass('code-resource', `aud ${claims.aud}`, {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    client_id: metadata.client_id,
  });

  // ---- a refresh naming another server's resource: invalid_target, nothing spent ----------
  await expectOAuthError('refresh-foreign-resource', 'invalid_target', () =>
    client.refreshTokenGrant(config, tokens.refresh_token, { resource: FOREIGN_RESOURCE }));
  pass('refresh-foreign-resource', 'invalid_target');

  // ---- the refreshed token keeps the audience ---------------------------------------------
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const after = jwtParts(refreshed.access_token).claims;
  check('refresh-keeps-resource', after.aud === resource, `aud after refresh ${JSON.stringify(after.aud)}`);
  check('refresh-keeps-resource', refreshed.refresh_token !== tokens.refresh_token, 'refresh token not rotated');
  pass('refresh-keeps-resource', `aud ${after.aud}`, { access_token: refreshed.access_token });

  // ---- an authorization request for another server's resource -----------------------------
  const foreign = await authorizationRequest(config, redirectUri, MAIL_SCOPE, { resource: FOREIGN_RESOURCE });
  const response = await browser.request(foreign.url.href);
  check('authorize-foreign-resource', response.status === 303, `status ${response.status}: ${response.text().slice(0, 200)}`);
  const back = new URL(response.location);
  check('authorize-foreign-resource', back.origin + back.pathname === redirectUri, `sent to ${response.location}`);
  check('authorize-foreign-resource', back.searchParams.get('error') === 'invalid_target', `error ${back.searchParams.get('error')}`);
  check('authorize-foreign-resource', back.searchParams.get('state') === foreign.state, 'state not returned');
  check('authorize-foreign-resource', back.searchParams.get('code') === null, 'a code for a foreign resource');
  pass('authorize-foreign-resource', 'invalid_target back at the client');
}

try {
  await main();
  emit('scenario:profile', true, 'done');
} catch (error) {
  const step = error instanceof Unexpected ? error.step : 'profile';
  const detail = error instanceof Unexpected ? error.detail : `${error?.name}: ${error?.message} ${oauthError(error) ?? ''}`;
  emit(step, false, detail);
  process.exitCode = 1;
}
