// The person's side of `bearergate token login`, for the token helper's tests: sign in as
// USERNAME/PASSWORD at the issuer (the first argument) and either approve a device code or
// follow an authorization URL through consent and deliver the code to the loopback redirect
// bearergate listens on.
//
//   node approve.mjs ISSUER device VERIFICATION_URI USER_CODE
//   node approve.mjs ISSUER browser AUTHORIZATION_URL
//
// Prints one JSON line per step ({step, ok, detail}) like the other scripts; exits non-zero
// on the first failed expectation.

import {
  FetchBrowser,
  Unexpected,
  approveDevice,
  authorizeInBrowser,
  check,
  emit,
  env,
  pass,
} from './lib.mjs';

const [issuer, mode, ...rest] = process.argv.slice(2);
const person = { username: env('USERNAME'), password: env('PASSWORD') };

async function device([verificationUri, userCode]) {
  check('device', verificationUri?.startsWith(issuer), `verification URI ${verificationUri} is not under ${issuer}`);
  const approval = await approveDevice(new FetchBrowser(issuer), verificationUri, userCode, { ...person, step: 'device' });
  check('device', /has access/i.test(approval.confirmPage.text()), () => `done page: ${approval.confirmPage.text().slice(0, 200)}`);
  pass('device', `approved ${userCode}`);
}

async function browser([authorizationUrl]) {
  const url = new URL(authorizationUrl);
  check('browser', url.origin === new URL(issuer).origin, `authorization URL ${url.origin} is not the issuer's`);
  check('browser', url.searchParams.get('code_challenge_method') === 'S256', 'no PKCE S256');
  const redirectUri = new URL(url.searchParams.get('redirect_uri'));
  check('browser', redirectUri.protocol === 'http:' && redirectUri.hostname === '127.0.0.1', `redirect_uri ${redirectUri}`);
  const seen = await authorizeInBrowser(new FetchBrowser(issuer), authorizationUrl, { ...person, step: 'browser' });
  const back = new URL(seen.location);
  check('browser', back.origin === redirectUri.origin, `sent to ${seen.location}, want ${redirectUri.origin}`);
  check('browser', back.searchParams.get('state') === url.searchParams.get('state'), 'state not returned');
  // A stray request first: the helper must answer it and keep waiting for the real one.
  const stray = await fetch(new URL('/favicon.ico', redirectUri));
  check('browser', stray.status === 404, `stray request answered ${stray.status}`);
  const forged = new URL(back);
  forged.searchParams.set('state', 'forged');
  const wrongState = await fetch(forged);
  check('browser', wrongState.status === 400, `wrong state answered ${wrongState.status}`);
  const delivered = await fetch(back);
  const page = await delivered.text();
  check('browser', delivered.status === 200 && /Signed in/.test(page), `loopback page ${delivered.status}: ${page.slice(0, 200)}`);
  pass('browser', 'signed in, consented, code delivered to the loopback redirect');
}

try {
  if (mode === 'device') {
    await device(rest);
  } else if (mode === 'browser') {
    await browser(rest);
  } else {
    throw new Unexpected('setup', `unknown mode ${mode}`);
  }
} catch (error) {
  emit(error.step ?? 'error', false, error.detail ?? String(error?.stack ?? error));
  process.exitCode = 1;
}
