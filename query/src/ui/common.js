// Shared by every page of the clew UI. Every string that came from the server (span data
// above all) reaches the page through textContent or setAttribute on a plain attribute;
// nothing is ever parsed as HTML, and only http/https values become external links.

export const HEX32 = /^[0-9a-f]{32}$/;
const TRACE_ID = /^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{16})$/;
const SVG_NS = 'http://www.w3.org/2000/svg';

/** An element with optional class, text and children; attrs go through setAttribute. */
export function el(tag, opts = {}, ...children) {
  const node = document.createElement(tag);
  fill(node, opts, children);
  return node;
}

/** An SVG element (same rules as el). */
export function svg(tag, opts = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  fill(node, opts, children);
  return node;
}

function fill(node, opts, children) {
  if (opts.class) node.setAttribute('class', opts.class);
  if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
  for (const [name, value] of Object.entries(opts.attrs || {})) {
    // event handlers, style and links never come from here: links go through link()
    if (/^on/i.test(name) || name === 'style' || name === 'href' || name === 'src') {
      throw new Error('refusing to set attribute ' + name);
    }
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** A same-origin link to one of the UI's own paths (built here, never taken from data). */
export function internalLink(path, text, cls) {
  const a = el('a', { class: cls, text });
  a.setAttribute('href', path);
  return a;
}

/** The UI path of a trace, or null when the id is not a trace id. */
export function tracePath(id) {
  if (typeof id !== 'string' || !TRACE_ID.test(id) || /^0+$/.test(id)) return null;
  return '/trace/' + id.toLowerCase();
}

/** A link to another trace only when `id` is exactly 32 hex digits; otherwise plain text. */
export function traceLink(id, text) {
  const path = typeof id === 'string' && HEX32.test(id) && !/^0+$/.test(id) ? tracePath(id) : null;
  return path ? internalLink(path, text ?? id) : el('span', { text: text ?? String(id) });
}

/** `value` as an absolute http(s) URL string, or null. */
export function safeUrl(value) {
  if (typeof value !== 'string' || !/^https?:\/\//i.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** An attribute value shown as text; http(s) URLs become links that open elsewhere. */
export function valueNode(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const url = safeUrl(value);
  if (!url) return el('span', { class: 'value', text });
  const a = el('a', { class: 'value', text, attrs: { rel: 'noopener noreferrer nofollow', target: '_blank' } });
  a.setAttribute('href', url);
  return a;
}

// Bearer token for a clew with [auth]: asked for once, on the first 401, and kept in this
// tab's sessionStorage (gone when the tab closes; never in localStorage or a cookie).
const TOKEN_KEY = 'clew.token';
// One prompt for every request that got a 401 at the same time.
let tokenPrompt = null;

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Forgets the token (the next API call asks again). */
export function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {}
}

/** Shows the token form over the page; resolves with the token the user entered. */
function askForToken(problem) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const input = el('input', { attrs: { id: 'auth-token', type: 'password', autocomplete: 'off', required: '', 'aria-label': 'bearer token' } });
    const form = el('form', { class: 'panel auth-form', attrs: { id: 'auth-form' } },
      el('h2', { text: 'Token required', attrs: { id: 'auth-title' } }),
      el('p', { text: 'This clew asks for a bearer token with the read scope. It is kept in this browser tab only (session storage) and sent with every request to the API.' }),
      problem ? el('p', { class: 'error-message', text: problem, attrs: { id: 'auth-problem' } }) : null,
      el('label', {}, 'Token ', input),
      el('button', { text: 'Continue', attrs: { type: 'submit', id: 'auth-submit' } }));
    const overlay = el('div', { class: 'auth-overlay', attrs: { id: 'auth-overlay', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'auth-title' } }, form);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch {}
      overlay.remove();
      tokenPrompt = null;
      resolve(token);
    });
    document.body.append(overlay);
    input.focus();
  });
  return tokenPrompt;
}

/** While a token is in use: a header button that forgets it (to use another one). */
function offerTokenChange() {
  if (document.getElementById('change-token')) return;
  const header = document.querySelector('header.top');
  if (!header) return;
  const button = el('button', { class: 'change-token', text: 'use another token', attrs: { id: 'change-token', type: 'button' } });
  button.addEventListener('click', () => {
    forgetToken();
    location.reload();
  });
  header.append(button);
}

/** The server's message of an error answer (clew's `{"error"}` or Jaeger's envelope). */
function errorText(body, status) {
  if (body && typeof body.error === 'string') return body.error;
  if (body && Array.isArray(body.errors) && body.errors[0] && typeof body.errors[0].msg === 'string') return body.errors[0].msg;
  return `status ${status}`;
}

/** GET a JSON API path; errors carry the server's message. Asks for a token on a 401
 * (and again when the one entered is refused); a 403 is an error saying "not authorised". */
export async function api(path) {
  let problem = null;
  for (;;) {
    const headers = { accept: 'application/json' };
    const token = storedToken();
    if (token) headers.authorization = 'Bearer ' + token;
    let response;
    try {
      response = await fetch(path, { headers });
    } catch (e) {
      throw new Error('the query API is unreachable: ' + e.message);
    }
    const text = await response.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`unexpected answer (${response.status}) from ${path}`);
    }
    if (response.status === 401) {
      // a token that was refused is dropped; the form says why
      if (token) {
        forgetToken();
        problem = 'That token was not accepted: ' + errorText(body, 401);
      }
      await askForToken(problem);
      continue;
    }
    if (token) offerTokenChange();
    if (!response.ok) {
      const why = errorText(body, response.status);
      const error = new Error(response.status === 403 ? 'not authorised: ' + why : why);
      error.status = response.status;
      throw error;
    }
    return { body, text };
  }
}

/** Unix-nanosecond decimal string → milliseconds (Number; sub-ms precision dropped). */
export function nsToMs(ns) {
  try {
    return Number(BigInt(ns) / 1000000n);
  } catch {
    return NaN;
  }
}

/** Unix-nanosecond decimal string → BigInt (0n when malformed). */
export function big(ns) {
  try {
    return BigInt(ns);
  } catch {
    return 0n;
  }
}

export function formatDuration(nanos) {
  const n = Number(nanos);
  if (!Number.isFinite(n)) return '?';
  if (n < 1e3) return n + ' ns';
  if (n < 1e6) return (n / 1e3).toFixed(n < 1e4 ? 2 : 1) + ' µs';
  if (n < 1e9) return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + ' ms';
  if (n < 60e9) return (n / 1e9).toFixed(2) + ' s';
  if (n < 3600e9) return (n / 60e9).toFixed(1) + ' min';
  return (n / 3600e9).toFixed(1) + ' h';
}

const UNITS = [['ns', 1], ['µs', 1e3], ['ms', 1e6], ['s', 1e9], ['min', 60e9], ['h', 3600e9]];

/** One unit for a whole axis that runs up to `maxNanos`: the largest unit the maximum
 * reaches, with the decimals that keep ticks apart ("0 ms · 5.6 ms · 11.1 ms"). */
export function durationScale(maxNanos) {
  const max = Math.max(0, Number(maxNanos) || 0);
  let [unit, size] = UNITS[0];
  for (const [u, n] of UNITS) if (max >= n) [unit, size] = [u, n];
  const top = max / size;
  const decimals = size === 1 ? 0 : top < 10 ? 2 : top < 100 ? 1 : 0;
  return { unit, format: (nanos) => (Number(nanos) / size).toFixed(decimals) + ' ' + unit };
}

/** A duration field's text as the API's duration with a unit, or null when it has none:
 * a bare number would be read as nanoseconds, which is rarely what was meant. */
export function durationWithUnit(text) {
  const t = String(text ?? '').trim();
  if (!t) return '';
  return /^\d+(\.\d*)?$/.test(t) ? null : t;
}

export function formatTime(ms) {
  if (!Number.isFinite(ms)) return '?';
  const d = new Date(ms);
  const pad = (x, w = 2) => String(x).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A stable colour per service name. */
export function serviceColor(name) {
  let h = 2166136261;
  for (const ch of String(name)) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 16777619);
  }
  const hue = (h >>> 0) % 360;
  return `hsl(${hue}, 55%, 52%)`;
}

/** The UI path of a service's page (RED charts). */
export function servicePath(name) {
  return '/services/' + encodeURIComponent(String(name));
}

/** A small coloured service label; a link to the service's page when `linked`. */
export function serviceChip(name, linked = false) {
  const chip = linked ? internalLink(servicePath(name), name, 'chip') : el('span', { class: 'chip', text: name });
  chip.style.setProperty('--service', serviceColor(name));
  return chip;
}

export function showError(container, message) {
  container.replaceChildren(el('p', { class: 'error-message', text: message }));
}

/** Removes every child of `node`. */
export function clear(node) {
  node.replaceChildren();
}
