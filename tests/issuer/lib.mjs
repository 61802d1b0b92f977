// Shared by flows.mjs and browser.mjs: the JSON-lines report, openid-client set-up against the
// issuer (discovery, RFC 7591 registration with the API key), a recording fetch for the
// headers openid-client does not expose, and a cookie-keeping "browser" made of fetch that
// reads the issuer's server-rendered pages (hidden fields, CSRF token, 303s) the way a person's
// browser would submit them.
//
// Nothing here downloads anything: every request goes to the issuer under test on loopback.

import * as client from 'openid-client';

/** The mail scope every token for IMAP/SMTP/ManageSieve/POP3 logins needs. */
export const MAIL_SCOPE = 'urn:ietf:params:oauth:scope:mail';
export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** A failed expectation: the step it belongs to and what was seen. */
export class Unexpected extends Error {
  constructor(step, detail) {
    super(`${step}: ${detail}`);
    this.step = step;
    this.detail = detail;
  }
}

/** One JSON object per line on stdout: {step, ok, detail, ...extra}. */
export function emit(step, ok, detail, extra = {}) {
  process.stdout.write(`${JSON.stringify({ step, ok, detail, ...extra })}\n`);
}

/** Asserts `condition` for `step`, throwing an {@link Unexpected} with `detail` otherwise. */
export function check(step, condition, detail) {
  if (!condition) {
    throw new Unexpected(step, typeof detail === 'function' ? detail() : detail);
  }
}

/** Emits a passed step. */
export function pass(step, detail, extra = {}) {
  emit(step, true, detail, extra);
}

/** A required environment variable. */
export function env(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Unexpected('setup', `environment variable ${name} is not set`);
  }
  return value;
}

/** A loopback port for redirect URIs nobody listens on: the code is read from Location. */
export function loopbackPort() {
  return 20_000 + Math.floor(Math.random() * 40_000);
}

/**
 * A fetch that remembers the last response per URL path (status and headers), so that steps
 * can check headers openid-client hides (Cache-Control: no-store on the token endpoint).
 */
export class RecordingFetch {
  constructor() {
    this.responses = [];
    this.fetch = async (url, options) => {
      const response = await fetch(url, options);
      this.responses.push({
        url: String(url),
        method: options?.method ?? 'GET',
        status: response.status,
        headers: response.headers,
      });
      return response;
    };
  }

  /** The newest recorded response whose URL path is `path`. */
  last(path) {
    for (let i = this.responses.length - 1; i >= 0; i -= 1) {
      if (new URL(this.responses[i].url).pathname === path) {
        return this.responses[i];
      }
    }
    return undefined;
  }
}

/** Options shared by every openid-client entry point: plain http only for loopback tests. */
export function clientOptions(issuer, recorder) {
  const options = {};
  if (recorder) {
    options[client.customFetch] = recorder.fetch;
  }
  if (new URL(issuer).protocol === 'http:') {
    options.execute = [client.allowInsecureRequests];
  }
  return options;
}

/**
 * Registers a client by RFC 7591 with the API key as initial access token and returns its
 * openid-client Configuration. `metadata` is merged over a public loopback client.
 */
export async function register(issuer, apiKey, metadata, auth, recorder) {
  const port = loopbackPort();
  const wanted = {
    client_name: 'bearergate flows test',
    redirect_uris: [`http://127.0.0.1:${port}/cb`],
    grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...metadata,
  };
  const options = { ...clientOptions(issuer, recorder), initialAccessToken: apiKey };
  const config = await client.dynamicClientRegistration(
    new URL(issuer),
    wanted,
    auth ?? (wanted.token_endpoint_auth_method === 'none' ? client.None() : undefined),
    options,
  );
  return { config, port, metadata: config.clientMetadata() };
}

/** A Configuration for a client id the issuer has never seen (no registration). */
export async function unregistered(issuer, clientId, recorder) {
  return client.discovery(
    new URL(issuer),
    clientId,
    undefined,
    client.None(),
    clientOptions(issuer, recorder),
  );
}

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** HTML character references decoded (minijinja escapes `/` as `&#x2f;`, quotes, ...). */
export function unescapeHtml(text) {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, ref) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return ENTITIES[ref.toLowerCase()] ?? whole;
  });
}

/** The attributes of one start tag, names lower-cased, values unescaped. */
function attributes(tag) {
  const attrs = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const inner = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
  let m;
  while ((m = re.exec(inner)) !== null) {
    attrs[m[1].toLowerCase()] = unescapeHtml(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/**
 * Every form of a page: its method, action (resolved against `base`), its inputs as
 * [name, value] pairs (hidden and visible alike) and its submit buttons.
 */
export function forms(html, base) {
  const found = [];
  const re = /<form\b[^>]*>([\s\S]*?)<\/form>/gi;
  let m;
  while ((m = re.exec(html)) !== null) {
    const open = m[0].slice(0, m[0].indexOf('>') + 1);
    const attrs = attributes(open);
    const inputs = [];
    for (const tag of m[1].match(/<input\b[^>]*>/gi) ?? []) {
      const a = attributes(tag);
      if (a.name !== undefined) {
        inputs.push({ name: a.name, value: a.value ?? '', type: (a.type ?? 'text').toLowerCase() });
      }
    }
    const buttons = [];
    for (const tag of m[1].match(/<button\b[^>]*>/gi) ?? []) {
      const a = attributes(tag);
      buttons.push({ name: a.name, value: a.value ?? '' });
    }
    found.push({
      method: (attrs.method ?? 'get').toUpperCase(),
      action: new URL(attrs.action ?? '', base).href,
      inputs,
      buttons,
      field(name) {
        return inputs.find((i) => i.name === name)?.value;
      },
    });
  }
  return found;
}

/** The text of a page without tags, whitespace collapsed, references decoded. */
export function pageText(html) {
  return unescapeHtml(
    html
      .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ')
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim(),
  );
}

/**
 * A person's browser reduced to what the issuer's pages need: a cookie jar for the issuer's
 * origin, redirects followed by hand (so each hop can be checked), forms posted as
 * application/x-www-form-urlencoded with the Origin header every browser sends on a POST.
 */
export class FetchBrowser {
  constructor(issuer) {
    this.issuer = new URL(issuer);
    this.origin = this.issuer.origin;
    this.cookies = new Map();
    /** Every Set-Cookie line received, for checks of the cookie's attributes. */
    this.setCookies = [];
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  remember(response) {
    for (const line of response.headers.getSetCookie()) {
      this.setCookies.push(line);
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-)/i.test(a));
      if (expired || value === '') {
        this.cookies.delete(name);
      } else {
        this.cookies.set(name, value);
      }
    }
  }

  /**
   * One request, redirects not followed. `form` (an object or array of pairs) makes it a POST
   * with the Origin and Sec-Fetch-Site headers a browser sends from the issuer's own page;
   * `origin` overrides the Origin (`Sec-Fetch-Site` then says cross-site, unless
   * `fetchSite` says otherwise), or, when null, omits both.
   */
  async request(url, { form, origin, fetchSite, method } = {}) {
    const target = new URL(url, this.issuer);
    const headers = { accept: 'text/html,application/xhtml+xml' };
    if (target.origin === this.origin && this.cookies.size > 0) {
      headers.cookie = this.cookieHeader();
    }
    let body;
    if (form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      if (origin !== null) {
        headers.origin = origin ?? this.origin;
        headers['sec-fetch-site'] = fetchSite ?? (origin === undefined || origin === this.origin ? 'same-origin' : 'cross-site');
      }
      body = new URLSearchParams(Array.isArray(form) ? form : Object.entries(form)).toString();
    }
    const response = await fetch(target, {
      method: method ?? (form === undefined ? 'GET' : 'POST'),
      headers,
      body,
      redirect: 'manual',
    });
    if (target.origin === this.origin) {
      this.remember(response);
    }
    const text = await response.text();
    const location = response.headers.get('location');
    return {
      url: target.href,
      status: response.status,
      headers: response.headers,
      location: location === null ? null : new URL(location, target).href,
      body: text,
      forms: () => forms(text, target),
      text: () => pageText(text),
    };
  }

  /**
   * GET `url` and follow redirects while they stay on the issuer; returns the last response
   * (a page, or the redirect that leaves the issuer, e.g. to the client's redirect_uri).
   */
  async follow(url, options = {}) {
    let response = await this.request(url, options);
    for (let hops = 0; hops < 10; hops += 1) {
      if (response.location === null || ![301, 302, 303, 307, 308].includes(response.status)) {
        return response;
      }
      if (new URL(response.location).origin !== this.origin) {
        return response;
      }
      response = await this.request(response.location);
    }
    throw new Unexpected('browser', `too many redirects from ${url}`);
  }
}

/** Checks the headers every page must carry: never framed. */
export function assertUnframeable(step, response) {
  const xfo = response.headers.get('x-frame-options');
  const csp = response.headers.get('content-security-policy') ?? '';
  check(step, xfo !== null && xfo.toUpperCase() === 'DENY', `X-Frame-Options ${xfo} on ${response.url}`);
  check(step, /frame-ancestors\s+'none'/.test(csp), `CSP ${JSON.stringify(csp)} on ${response.url}`);
}

/** The sign-in form on a page, checked for the fields the contract names. */
export function signinForm(step, page) {
  const form = page.forms().find((f) => f.inputs.some((i) => i.name === 'password'));
  check(step, form !== undefined, () => `no sign-in form (status ${page.status}) at ${page.url}: ${page.text().slice(0, 300)}`);
  check(step, form.method === 'POST', `sign-in form method ${form.method}`);
  check(step, new URL(form.action).pathname === '/auth/signin', `sign-in form posts to ${form.action}`);
  check(step, (form.field('csrf') ?? '') !== '', 'sign-in form has no csrf value');
  check(step, form.field('return_to') !== undefined, 'sign-in form has no return_to');
  check(step, form.field('username') !== undefined, 'sign-in form has no username field');
  return form;
}

/** The form's fields as pairs, with `overrides` replacing (or, when undefined, dropping) some. */
export function formPairs(form, overrides = {}) {
  const pairs = form.inputs
    .filter((i) => !(i.name in overrides))
    .map((i) => [i.name, i.value]);
  for (const [name, value] of Object.entries(overrides)) {
    if (value !== undefined) {
      pairs.push([name, value]);
    }
  }
  return pairs;
}

/**
 * Signs in on the sign-in page `page` (which the browser was sent to) and returns the
 * response to the POST: a 303 back to return_to on success.
 */
export async function submitSignin(browser, page, username, password, step = 'signin') {
  const form = signinForm(step, page);
  return browser.request(form.action, {
    form: formPairs(form, { username, password }),
  });
}

/**
 * The browser part of the code flow: GET the authorization URL, sign in when sent to the
 * sign-in page, approve (or deny) on the consent page. Returns {location, consentPage,
 * signedIn} where location is where the issuer finally sent the browser (the redirect_uri
 * with code, state and iss) — read from the Location header, never fetched.
 */
export async function authorizeInBrowser(browser, authUrl, { username, password, decision = 'approve', step = 'authorize' }) {
  let response = await browser.request(authUrl);
  let signedIn = false;
  if (response.status === 303 && new URL(response.location).pathname === '/auth/signin') {
    const returnTo = new URL(response.location).searchParams.get('return_to');
    check(step, returnTo !== null, `sign-in redirect without return_to: ${response.location}`);
    const page = await browser.request(response.location);
    check(step, page.status === 200, `sign-in page status ${page.status}`);
    assertUnframeable(step, page);
    const done = await submitSignin(browser, page, username, password, step);
    check(step, done.status === 303, () => `sign-in POST status ${done.status}: ${done.text().slice(0, 300)}`);
    check(step, new URL(done.location).pathname === '/auth/authorize', `sign-in sent the browser to ${done.location}`);
    signedIn = true;
    response = await browser.request(done.location);
  }
  if (response.status === 303 && new URL(response.location).origin !== browser.origin) {
    // Consent remembered: straight back to the client.
    return { location: response.location, consentPage: null, signedIn };
  }
  check(step, response.status === 200, () => `consent page status ${response.status} (${response.location ?? ''}): ${response.text().slice(0, 300)}`);
  assertUnframeable(step, response);
  const consent = response.forms().find((f) => f.buttons.some((b) => b.name === 'action' && b.value === 'approve'));
  check(step, consent !== undefined, () => `no consent form: ${response.text().slice(0, 300)}`);
  check(step, new URL(consent.action).pathname === '/auth/authorize', `consent form posts to ${consent.action}`);
  check(step, (consent.field('csrf') ?? '') !== '', 'consent form has no csrf');
  const decided = await browser.request(consent.action, {
    form: formPairs(consent, { action: decision }),
  });
  check(step, decided.status === 303, () => `consent POST status ${decided.status}: ${decided.text().slice(0, 300)}`);
  return { location: decided.location, consentPage: response, signedIn };
}

/** PKCE and state for one authorization request, and its URL. */
export async function authorizationRequest(config, redirectUri, scope, extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const parameters = {
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    ...extra,
  };
  if (scope !== undefined) {
    parameters.scope = scope;
  }
  return { url: client.buildAuthorizationUrl(config, parameters), verifier, state, redirectUri };
}

/**
 * The browser part of the device flow: open the verification page, sign in if asked, type
 * the user code (lower case, without the dash, as people do), confirm. Returns the final
 * page (device_done).
 */
export async function approveDevice(browser, verificationUri, userCode, { username, password, decision = 'approve', step = 'device-approval' }) {
  let page = await browser.request(verificationUri);
  if (page.status === 303 && new URL(page.location).pathname === '/auth/signin') {
    const signin = await browser.request(page.location);
    const done = await submitSignin(browser, signin, username, password, step);
    check(step, done.status === 303, () => `sign-in POST status ${done.status}: ${done.text().slice(0, 300)}`);
    check(step, new URL(done.location).pathname === '/auth/device/verify', `sign-in sent the browser to ${done.location}`);
    page = await browser.request(done.location);
  }
  check(step, page.status === 200, () => `device entry page status ${page.status}: ${page.text().slice(0, 300)}`);
  assertUnframeable(step, page);
  const entry = page.forms().find((f) => f.field('action') === 'lookup');
  check(step, entry !== undefined, () => `no code entry form: ${page.text().slice(0, 300)}`);
  check(step, new URL(entry.action).pathname === '/auth/device/verify', `entry form posts to ${entry.action}`);
  const typed = userCode.replace(/-/g, '').toLowerCase();
  let confirm = await browser.follow(entry.action, {
    form: formPairs(entry, { user_code: typed }),
  });
  check(step, confirm.status === 200, () => `confirmation page status ${confirm.status}: ${confirm.text().slice(0, 300)}`);
  const form = confirm.forms().find((f) => f.buttons.some((b) => b.name === 'action' && b.value === 'approve'));
  check(step, form !== undefined, () => `no confirmation form: ${confirm.text().slice(0, 300)}`);
  check(step, form.field('user_code') !== undefined, 'confirmation form without user_code');
  check(step, confirm.text().includes(userCode), () => `confirmation page does not show ${userCode}: ${confirm.text().slice(0, 300)}`);
  const decided = await browser.request(form.action, { form: formPairs(form, { action: decision }) });
  check(step, decided.status === 303, () => `confirmation POST status ${decided.status}: ${decided.text().slice(0, 300)}`);
  const done = new URL(decided.location);
  const want = decision === 'approve' ? 'approved' : 'denied';
  check(step, done.pathname === '/auth/device/verify' && done.searchParams.get('done') === want, `confirmation sent the browser to ${decided.location}`);
  confirm = await browser.request(decided.location);
  check(step, confirm.status === 200, `done page status ${confirm.status}`);
  return { confirmPage: confirm, location: decided.location };
}

/** The OAuth error code of a failed openid-client call (`invalid_grant`, ...), or undefined. */
export function oauthError(error) {
  return error?.error ?? error?.cause?.error;
}

/** The HTTP status of a failed openid-client call, when it had a response. */
export function errorStatus(error) {
  return error?.status ?? error?.response?.status ?? error?.cause?.status;
}

/** Runs `call`, which must fail with OAuth error `code`; returns the error. */
export async function expectOAuthError(step, code, call) {
  let result;
  try {
    result = await call();
  } catch (error) {
    const got = oauthError(error);
    check(step, got === code, () => `want ${code}, got ${got ?? 'no OAuth error'} (status ${errorStatus(error)}): ${error?.message}`);
    return error;
  }
  throw new Unexpected(step, `want ${code}, but the call succeeded: ${JSON.stringify(result).slice(0, 200)}`);
}

/** The JOSE header and claims of a compact JWS, decoded, not verified. */
export function jwtParts(token) {
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new Unexpected('jwt', `not a compact JWS (${parts.length} parts)`);
  }
  const decode = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  return { header: decode(parts[0]), claims: decode(parts[1]) };
}
