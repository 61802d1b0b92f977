#!/usr/bin/env node
// A real browser on the issuer's pages: Playwright (playwright-core, no browser download)
// driving the system's Chromium through sign-in (a wrong password first), consent, the
// redirect back to a loopback client, and the device pages (the code typed in lower case
// without the dash), checking what a person sees — the client's name marked unverified for a
// self-registered client, the redirect host — and that no page can be framed. Each page is
// saved as a PNG in SCREENSHOT_DIR. The OAuth side is openid-client, as in flows.mjs.
//
// usage: node browser.mjs ISSUER_URL SCREENSHOT_DIR
//   env: USERNAME, PASSWORD, API_KEY (as flows.mjs); NODE_EXTRA_CA_CERTS (the test CA, for
//        openid-client); ISSUER_CERT (the issuer's PEM certificate, first in the file:
//        Chromium is told to accept exactly that key, --ignore-certificate-errors-spki-list);
//        CHROMIUM (default /usr/bin/chromium)
//
// Output: JSON lines {"step", "ok", "detail"} as flows.mjs; exit status 0 only when every step
// passed. On a failure the page at that moment is saved as failure.png.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

import * as client from 'openid-client';
import { chromium } from 'playwright-core';

import {
  DEVICE_GRANT,
  MAIL_SCOPE,
  Unexpected,
  authorizationRequest,
  check,
  emit,
  env,
  pass,
  register,
  unregistered,
} from './lib.mjs';

const [issuer, screenshotDir] = process.argv.slice(2);
const CLIENT_NAME = 'Screenshot Mail App';
/** What Playwright waits for any one thing (a page, an element) at most. */
const WAIT_MS = 15_000;

/** base64(SHA-256(SubjectPublicKeyInfo)) of the first certificate in a PEM file. */
function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

/**
 * The loopback "client": /cb is where the issuer sends the browser back (a page saying so),
 * /frame tries to embed the issuer's sign-in page.
 */
async function startLoopbackSite() {
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, 'http://127.0.0.1');
    response.setHeader('content-type', 'text/html; charset=utf-8');
    if (url.pathname === '/cb') {
      response.end(`<!DOCTYPE html><title>Back at the app</title><h1>Back at ${CLIENT_NAME}</h1><p id="result">${url.searchParams.has('code') ? 'code received' : 'no code'}</p>`);
    } else if (url.pathname === '/frame') {
      response.end(`<!DOCTYPE html><title>Framing attempt</title><h1>A page that frames the sign-in</h1><iframe id="victim" src="${issuer}/auth/signin" width="600" height="400"></iframe>`);
    } else {
      response.statusCode = 404;
      response.end('not found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.address().port };
}

async function shot(page, name) {
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The headers every page must carry, from a Playwright response. */
function assertUnframeableHeaders(step, response) {
  check(step, response !== null, 'no response for the navigation');
  const headers = response.headers();
  check(step, (headers['x-frame-options'] ?? '').toUpperCase() === 'DENY', `X-Frame-Options ${headers['x-frame-options']} on ${response.url()}`);
  check(step, /frame-ancestors\s+'none'/.test(headers['content-security-policy'] ?? ''), `CSP ${headers['content-security-policy']} on ${response.url()}`);
}

/** The response to a form POST must be a page of the flow, not a refusal. */
async function notRefused(step, page, response) {
  check(step, response !== null, 'no response to the form');
  const status = response.status();
  if (status === 403 || status >= 500) {
    const text = (await page.locator('main').textContent().catch(() => '')).replace(/\s+/g, ' ').trim();
    throw new Unexpected(step, `the form POST was refused with ${status}: "${text}"`);
  }
}

/** Asserts a locator is visible, naming the step. */
async function visible(step, locator, what) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout: WAIT_MS });
  } catch {
    throw new Unexpected(step, `${what} is not visible`);
  }
}

async function run(page, site, consoleLines) {
  const { username, password } = { username: env('USERNAME'), password: env('PASSWORD') };
  const redirectUri = `http://127.0.0.1:${site.port}/cb`;
  const { config, metadata } = await register(issuer, env('API_KEY'), {
    client_name: CLIENT_NAME,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
  });
  pass('register', `client ${metadata.client_id} for ${redirectUri}`);

  // ---- sign-in ----------------------------------------------------------------------------
  const request = await authorizationRequest(config, redirectUri, MAIL_SCOPE);
  let response = await page.goto(request.url.href);
  check('signin-page', new URL(page.url()).pathname === '/auth/signin', `landed on ${page.url()}`);
  check('signin-page', response.status() === 200, `status ${response.status()}`);
  assertUnframeableHeaders('signin-page', response);
  await visible('signin-page', page.getByLabel(/user name/i), 'the user name field');
  await visible('signin-page', page.getByLabel(/password/i), 'the password field');
  await visible('signin-page', page.getByRole('button', { name: /sign in/i }), 'the sign-in button');
  pass('signin-page', `sign-in page, screenshot ${await shot(page, '01-signin')}`);

  await page.getByLabel(/user name/i).fill(username);
  await page.getByLabel(/password/i).fill(`${password}-wrong`);
  response = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: /sign in/i }).click()]).then(([r]) => r);
  await notRefused('signin-wrong', page, response);
  await visible('signin-wrong', page.getByRole('alert'), 'an error message');
  check('signin-wrong', new URL(page.url()).pathname === '/auth/signin', `after a wrong password: ${page.url()}`);
  check('signin-wrong', (await page.getByLabel(/password/i).inputValue()) === '', 'the wrong password is still in the field');
  assertUnframeableHeaders('signin-wrong', response);
  pass('signin-wrong', `"${(await page.getByRole('alert').first().textContent()).trim()}", screenshot ${await shot(page, '02-signin-wrong-password')}`);

  await page.getByLabel(/user name/i).fill(username);
  await page.getByLabel(/password/i).fill(password);
  response = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: /sign in/i }).click()]).then(([r]) => r);
  await notRefused('signin', page, response);

  // ---- consent ----------------------------------------------------------------------------
  check('consent-page', new URL(page.url()).pathname === '/auth/authorize', `after sign-in: ${page.url()}`);
  assertUnframeableHeaders('consent-page', response);
  await visible('consent-page', page.getByText(CLIENT_NAME, { exact: true }), `the client name ${CLIENT_NAME}`);
  await visible('consent-page', page.getByText(/unverified/i), 'the unverified mark');
  await visible('consent-page', page.locator('code', { hasText: /^127\.0\.0\.1/ }), 'the redirect host 127.0.0.1');
  await visible('consent-page', page.getByText(metadata.client_id), 'the client id');
  await visible('consent-page', page.getByText(MAIL_SCOPE), 'the mail scope');
  await visible('consent-page', page.getByText(username), 'who is signed in');
  pass('consent-page', `names ${CLIENT_NAME} (unverified) and 127.0.0.1, screenshot ${await shot(page, '03-consent')}`);

  response = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: /allow/i }).click()]).then(([r]) => r);
  await notRefused('callback', page, response);
  check('callback', page.url().startsWith(`${redirectUri}?`), `after Allow: ${page.url()}`);
  await visible('callback', page.getByText('code received'), 'the loopback page');
  const callback = new URL(page.url());
  check('callback', callback.searchParams.get('iss') === issuer, `iss ${callback.searchParams.get('iss')}`);
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
  });
  check('callback', typeof tokens.access_token === 'string', 'no access token');
  pass('callback', `back at the loopback client with a code, exchanged; screenshot ${await shot(page, '04-callback')}`);

  // ---- device -----------------------------------------------------------------------------
  const authorization = await client.initiateDeviceAuthorization(config, {});
  const polled = client.pollDeviceAuthorizationGrant(config, authorization);
  response = await page.goto(authorization.verification_uri);
  check('device-entry', new URL(page.url()).pathname === '/auth/device/verify', `landed on ${page.url()}`);
  assertUnframeableHeaders('device-entry', response);
  const codeField = page.getByLabel(/code/i);
  await visible('device-entry', codeField, 'the code field');
  pass('device-entry', `code entry page, screenshot ${await shot(page, '05-device-entry')}`);
  const typed = authorization.user_code.replace(/-/g, '').toLowerCase();
  await codeField.fill(typed);
  response = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: /continue/i }).click()]).then(([r]) => r);
  await notRefused('device-confirm', page, response);
  assertUnframeableHeaders('device-confirm', response);
  await visible('device-confirm', page.getByText(authorization.user_code, { exact: true }), `the code ${authorization.user_code}`);
  await visible('device-confirm', page.getByText(CLIENT_NAME, { exact: true }), `the client name ${CLIENT_NAME}`);
  await visible('device-confirm', page.getByText(/unverified/i), 'the unverified mark');
  pass('device-confirm', `typed ${typed}; the page shows ${authorization.user_code}, screenshot ${await shot(page, '06-device-confirm')}`);
  response = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: /allow/i }).click()]).then(([r]) => r);
  await notRefused('device-done', page, response);
  check('device-done', new URL(page.url()).searchParams.get('done') === 'approved', `after approval: ${page.url()}`);
  await visible('device-done', page.getByText(/has access/i), 'the done message');
  const deviceTokens = await polled;
  check('device-done', typeof deviceTokens.access_token === 'string', 'the poll got no access token');
  pass('device-done', `approved; the poll got tokens; screenshot ${await shot(page, '07-device-done')}`);

  // ---- framing ----------------------------------------------------------------------------
  consoleLines.length = 0;
  await page.goto(`http://127.0.0.1:${site.port}/frame`);
  await page.waitForLoadState('load');
  const child = page.frames().find((f) => f !== page.mainFrame());
  let framedForm = 0;
  try {
    framedForm = await child.locator('input[name=password]').count();
  } catch {
    framedForm = 0; // an error frame Playwright cannot look into: nothing rendered
  }
  check('framing', framedForm === 0, `the sign-in form rendered inside a frame (${child?.url()})`);
  const refusal = consoleLines.find((l) => /frame-ancestors|X-Frame-Options/i.test(l));
  check('framing', refusal !== undefined, () => `Chromium logged no framing refusal; console: ${JSON.stringify(consoleLines)}`);
  pass('framing', `Chromium refused to frame the sign-in page: "${refusal.slice(0, 160)}", screenshot ${await shot(page, '08-framing-refused')}`);

  // ---- error page -------------------------------------------------------------------------
  const web = await unregistered(issuer, 'unregistered-web-app');
  const bad = await authorizationRequest(web, 'https://attacker.example/cb', MAIL_SCOPE);
  response = await page.goto(bad.url.href);
  check('error-page', response.status() >= 400 && response.status() < 500, `status ${response.status()}`);
  check('error-page', new URL(page.url()).origin === new URL(issuer).origin, `the browser left the issuer: ${page.url()}`);
  assertUnframeableHeaders('error-page', response);
  await visible('error-page', page.getByRole('alert'), 'an error message');
  pass('error-page', `"${(await page.getByRole('alert').first().textContent()).trim().slice(0, 120)}", screenshot ${await shot(page, '09-error')}`);
}

async function main() {
  if (!issuer || !screenshotDir) {
    console.error('usage: node browser.mjs ISSUER_URL SCREENSHOT_DIR');
    process.exit(2);
  }
  fs.mkdirSync(screenshotDir, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bearergate-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ];
  if (new URL(issuer).protocol === 'https:') {
    args.push(`--ignore-certificate-errors-spki-list=${spkiHash(env('ISSUER_CERT'))}`);
  }
  const site = await startLoopbackSite();
  let context;
  let page;
  let failed = false;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args,
      viewport: { width: 900, height: 700 },
    });
    context.setDefaultTimeout(WAIT_MS);
    page = context.pages()[0] ?? (await context.newPage());
    const consoleLines = [];
    page.on('console', (message) => consoleLines.push(message.text()));
    // What Chromium sends with each form POST (no cookies, no bodies): for diagnosing
    // refusals of the issuer's same-origin check.
    page.on('request', async (request) => {
      if (request.method() === 'POST') {
        const headers = await request.allHeaders();
        console.error(`POST ${request.url()} origin=${headers.origin} sec-fetch-site=${headers['sec-fetch-site']} referer=${headers.referer}`);
      }
    });
    await run(page, site, consoleLines);
    emit('browser', true, `screenshots in ${screenshotDir}`);
  } catch (error) {
    failed = true;
    const step = error instanceof Unexpected ? error.step : 'browser';
    const detail = error instanceof Unexpected ? error.detail : `${error?.name}: ${error?.message}`;
    let where = '';
    if (page) {
      where = ` (at ${page.url()})`;
      await page.screenshot({ path: path.join(screenshotDir, 'failure.png'), fullPage: true }).catch(() => {});
    }
    emit(step, false, `${detail}${where}`);
  } finally {
    await context?.close().catch(() => {});
    site.server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

await main();
