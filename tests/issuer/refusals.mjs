// Scenarios of what the issuer must refuse, for flows.mjs: redirects it must not follow,
// wrong PKCE verifiers, replayed codes, forged or cross-site page POSTs, guessed passwords,
// and device codes nobody approved in time.

import * as client from 'openid-client';

import {
  FetchBrowser,
  MAIL_SCOPE,
  assertUnframeable,
  authorizationRequest,
  authorizeInBrowser,
  check,
  expectOAuthError,
  formPairs,
  loopbackPort,
  pass,
  signinForm,
  submitSignin,
  unregistered,
} from './lib.mjs';
import { DEVICE_ONLY, codeFlow, issuer, maxAttempts, registerPublic, user } from './steps.mjs';

export const REFUSALS = {
  /**
   * A device code nobody approves dies after user_code_lifetime: the poll (which waits the
   * interval first, then asks) ends with expired_token.
   */
  async 'device-expired'() {
    const { config } = await registerPublic(undefined, DEVICE_ONLY('Flows Device Test'));
    const authorization = await client.initiateDeviceAuthorization(config, {});
    const started = Date.now();
    // openid-client stops polling after expires_in by itself (an abort, not an answer); give
    // it longer, so the issuer's own answer is what ends the loop.
    await expectOAuthError('device-expired', 'expired_token', () =>
      client.pollDeviceAuthorizationGrant(config, authorization, undefined, { signal: AbortSignal.timeout(120_000) }),
    );
    pass('device-expired', `expired_token after ${Math.round((Date.now() - started) / 1000)}s (expires_in ${authorization.expires_in})`);
    // The page refuses the dead code too.
    const browser = new FetchBrowser(issuer);
    const entry = await browser.request(authorization.verification_uri);
    const signin = await browser.request(entry.location);
    const done = await submitSignin(browser, signin, user().username, user().password, 'device-expired-page');
    const page = await browser.request(done.location);
    const form = page.forms().find((f) => f.field('action') === 'lookup');
    check('device-expired-page', form !== undefined, 'no entry form');
    const answer = await browser.follow(form.action, { form: formPairs(form, { user_code: authorization.user_code }) });
    check('device-expired-page', !answer.forms().some((f) => f.buttons.some((b) => b.value === 'approve')), 'an expired code can still be approved');
    pass('device-expired-page', `entering the expired code: status ${answer.status}, no approval form`);
  },

  /** Redirects the issuer must not follow: an error page, no Location. */
  async 'bad-redirect'() {
    const browser = new FetchBrowser(issuer);
    const config = await unregistered(issuer, 'unregistered-web-app');
    for (const [step, redirectUri, chosenConfig] of [
      ['unregistered-https-redirect', 'https://attacker.example/cb', config],
      ['unregistered-non-loopback-http', 'http://192.0.2.1:8080/cb', config],
    ]) {
      const request = await authorizationRequest(chosenConfig, redirectUri, MAIL_SCOPE);
      const page = await browser.request(request.url);
      check(step, page.status >= 400 && page.status < 500, `status ${page.status}, location ${page.location}`);
      check(step, page.location === null, `redirected to ${page.location}`);
      check(step, /text\/html/.test(page.headers.get('content-type') ?? ''), `content-type ${page.headers.get('content-type')}`);
      check(step, !page.body.includes('attacker.example/cb?') && !page.forms().some((f) => f.action.startsWith(redirectUri)), 'the page leads to the redirect');
      assertUnframeable(step, page);
      pass(step, `error page ${page.status}: ${page.text().slice(0, 120)}`);
    }
    // A registered client with redirects it did not register: another host, another path.
    const { config: registered, metadata } = await registerPublic();
    const port = new URL(metadata.redirect_uris[0]).port;
    for (const [step, redirectUri] of [
      ['registered-unknown-redirect', 'https://attacker.example/cb'],
      ['registered-other-path', `http://127.0.0.1:${port}/elsewhere`],
    ]) {
      const request = await authorizationRequest(registered, redirectUri, MAIL_SCOPE);
      const page = await browser.request(request.url);
      check(step, page.status >= 400 && page.status < 500 && page.location === null, `status ${page.status}, location ${page.location}`);
      pass(step, `error page ${page.status}, no redirect`);
    }
    // Unregistered without PKCE: refused (never a code without PKCE for an unknown client).
    const noPkce = client.buildAuthorizationUrl(config, {
      redirect_uri: `http://127.0.0.1:${loopbackPort()}/cb`,
      scope: MAIL_SCOPE,
      state: client.randomState(),
    });
    const refused = await browser.request(noPkce);
    const code = refused.location === null ? null : new URL(refused.location).searchParams.get('code');
    check('unregistered-without-pkce', code === null && refused.status !== 200, `status ${refused.status}, location ${refused.location}`);
    pass('unregistered-without-pkce', `refused: ${refused.status} ${refused.location ?? ''}`);
  },

  /** A wrong PKCE verifier; max_attempts of them kill the code. */
  async 'wrong-verifier'() {
    const { config, metadata } = await registerPublic();
    const redirectUri = metadata.redirect_uris[0];
    const browser = new FetchBrowser(issuer);
    let request = await authorizationRequest(config, redirectUri, MAIL_SCOPE);
    let seen = await authorizeInBrowser(browser, request.url, { ...user(), step: 'wrong-verifier' });
    await expectOAuthError('wrong-verifier', 'invalid_grant', () =>
      client.authorizationCodeGrant(config, new URL(seen.location), { pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: request.state }),
    );
    pass('wrong-verifier', 'a wrong code_verifier gets invalid_grant');
    const tokens = await client.authorizationCodeGrant(config, new URL(seen.location), { pkceCodeVerifier: request.verifier, expectedState: request.state });
    check('wrong-verifier-then-right', typeof tokens.access_token === 'string', 'no access token');
    pass('wrong-verifier-then-right', `fewer than max_attempts (${maxAttempts()}) wrong verifiers leave the code usable`);

    request = await authorizationRequest(config, redirectUri, MAIL_SCOPE);
    seen = await authorizeInBrowser(browser, request.url, { ...user(), step: 'wrong-verifier-max' });
    for (let i = 0; i < maxAttempts(); i += 1) {
      await expectOAuthError('wrong-verifier-max', 'invalid_grant', () =>
        client.authorizationCodeGrant(config, new URL(seen.location), { pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: request.state }),
      );
    }
    await expectOAuthError('wrong-verifier-max', 'invalid_grant', () =>
      client.authorizationCodeGrant(config, new URL(seen.location), { pkceCodeVerifier: request.verifier, expectedState: request.state }),
    );
    pass('wrong-verifier-max', `after ${maxAttempts()} wrong verifiers the right one is refused too`);
  },

  /** A code used twice: the second exchange fails and the grant of the first is revoked. */
  async 'code-replay'() {
    const { config, metadata } = await registerPublic();
    const { tokens, callback, request } = await codeFlow('code-replay', config, { redirectUri: metadata.redirect_uris[0], scope: MAIL_SCOPE });
    await expectOAuthError('code-replay', 'invalid_grant', () =>
      client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state }),
    );
    pass('code-replay', 'the second exchange of a code gets invalid_grant', { access_token: tokens.access_token });
    await expectOAuthError('code-replay-revokes', 'invalid_grant', () => client.refreshTokenGrant(config, tokens.refresh_token));
    pass('code-replay-revokes', 'the replay revoked the grant: its refresh token is dead', { access_token: tokens.access_token });
  },

  /** Page POSTs without (or with a wrong) CSRF token, or from another origin: 403. */
  async csrf() {
    const browser = new FetchBrowser(issuer);
    const { config, metadata } = await registerPublic();
    const request = await authorizationRequest(config, metadata.redirect_uris[0], MAIL_SCOPE);
    const start = await browser.request(request.url);
    check('csrf', start.status === 303, `authorize status ${start.status}`);
    const page = await browser.request(start.location);
    const form = signinForm('csrf', page);
    const { username, password } = user();
    for (const [step, pairs, origin] of [
      ['csrf-missing', formPairs(form, { username, password, csrf: undefined }), undefined],
      ['csrf-wrong', formPairs(form, { username, password, csrf: `${form.field('csrf')}x` }), undefined],
      ['csrf-cross-origin', formPairs(form, { username, password }), 'https://attacker.example'],
    ]) {
      const answer = await browser.request(form.action, { form: pairs, origin });
      check(step, answer.status === 403, `status ${answer.status}, location ${answer.location}`);
      check(step, answer.location === null, `redirected to ${answer.location}`);
      assertUnframeable(step, answer);
      pass(step, `sign-in POST refused with 403`);
    }
    // The real form still works, then the consent POST needs its token too.
    const signedIn = await submitSignin(browser, page, username, password, 'csrf-signin');
    check('csrf-signin', signedIn.status === 303, `status ${signedIn.status}`);
    const consentPage = await browser.request(signedIn.location);
    const consent = consentPage.forms().find((f) => f.buttons.some((b) => b.value === 'approve'));
    check('csrf-consent', consent !== undefined, 'no consent form');
    const forged = await browser.request(consent.action, { form: formPairs(consent, { action: 'approve', csrf: undefined }) });
    check('csrf-consent', forged.status === 403 && forged.location === null, `consent without csrf: status ${forged.status}, location ${forged.location}`);
    pass('csrf-consent', 'consent POST without csrf refused with 403');

    // What browsers really send from these pages: they carry Referrer-Policy: no-referrer,
    // under which the Fetch standard serialises a POST's Origin as "null" (Chromium and
    // Firefox do), with Sec-Fetch-Site: same-origin. With the right csrf that must work.
    const fresh = new FetchBrowser(issuer);
    const retry = await authorizationRequest(config, metadata.redirect_uris[0], MAIL_SCOPE);
    const back = await fresh.request(retry.url);
    const signin = await fresh.request(back.location);
    const real = signinForm('csrf-origin-null', signin);
    // Not when the browser says the form came from another site (a valid csrf notwithstanding) ...
    const cross = await fresh.request(real.action, {
      form: formPairs(real, { username, password }),
      origin: 'null',
      fetchSite: 'cross-site',
    });
    check('csrf-origin-null-cross-site', cross.status === 403, `Origin: null with Sec-Fetch-Site: cross-site got ${cross.status}`);
    pass('csrf-origin-null-cross-site', 'Origin: null with Sec-Fetch-Site: cross-site is refused');
    // ... but from the page itself it must work.
    const answer = await fresh.request(real.action, {
      form: formPairs(real, { username, password }),
      origin: 'null',
      fetchSite: 'same-origin',
    });
    check('csrf-origin-null', answer.status === 303, () => `a same-origin sign-in with Origin: null (as Chromium sends it under no-referrer) got ${answer.status}: ${answer.text().slice(0, 200)}`);
    pass('csrf-origin-null', 'Origin: null with Sec-Fetch-Site: same-origin and the right csrf signs in');
  },

  /** Wrong passwords: after max_attempts, sign-in is refused with a 429 page. */
  async 'password-limit'() {
    const browser = new FetchBrowser(issuer);
    const { config, metadata } = await registerPublic();
    const request = await authorizationRequest(config, metadata.redirect_uris[0], MAIL_SCOPE);
    const start = await browser.request(request.url);
    let page = await browser.request(start.location);
    const { username, password } = user();
    const statuses = [];
    for (let i = 0; i < maxAttempts(); i += 1) {
      const sent = Date.now();
      const answer = await submitSignin(browser, page, username, `${password}-wrong-${i}`, 'password-wrong');
      statuses.push(`${answer.status} (${Date.now() - sent} ms)`);
      check('password-wrong', answer.status !== 303, `a wrong password signed in: ${answer.location}`);
      check('password-wrong', answer.status === 200 || answer.status === 401 || answer.status === 429, `status ${answer.status}`);
      if (answer.status === 429) {
        break;
      }
      check('password-wrong', /wrong|incorrect|invalid|not/i.test(answer.text()), () => `no error shown: ${answer.text().slice(0, 200)}`);
      check('password-wrong', !answer.body.includes(`${password}-wrong-${i}`), 'the page echoes the password');
      page = answer;
    }
    pass('password-wrong', `wrong passwords: ${statuses.join(' ')}`);
    const sent = Date.now();
    const limited = await submitSignin(browser, page, username, `${password}-wrong-last`, 'password-limit');
    const took = Date.now() - sent;
    check('password-limit', limited.status === 429, `status ${limited.status} after ${maxAttempts()} wrong passwords`);
    check('password-limit', /text\/html/.test(limited.headers.get('content-type') ?? ''), `content-type ${limited.headers.get('content-type')}`);
    assertUnframeable('password-limit', limited);
    const retry = limited.headers.get('retry-after');
    check('password-limit', retry !== null && Number(retry) >= 1, `Retry-After ${retry}`);
    pass('password-limit', `429 page after ${took} ms, Retry-After ${retry}: ${limited.text().slice(0, 120)}`);
    // While limited even the right password is refused: the limit is no password oracle.
    const form = signinForm('password-limit-right', limited.forms().length > 0 ? limited : page);
    const right = await browser.request(form.action, { form: formPairs(form, { username, password }) });
    check('password-limit-right', right.status === 429, `the right password while limited: status ${right.status}`);
    pass('password-limit-right', 'the right password is refused while the limit holds');
  },
};
