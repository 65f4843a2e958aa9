// The search page. The page's own query string is the search state (shareable, and the
// back button walks through earlier searches); it uses the API's parameter names, plus
// `range` for the preset.
import {
  api, el, svg, clear, internalLink, tracePath, serviceChip, formatDuration, formatTime,
  nsToMs, showError, durationScale, durationWithUnit,
} from '/ui/common.js';

const PRESETS = ['15m', '1h', '6h', '24h', '7d'];
const form = document.getElementById('search-form');
const serviceSelect = document.getElementById('service');
const operationSelect = document.getElementById('operation');
const rangeSelect = document.getElementById('range');
const customRange = document.getElementById('custom-range');
const statusBox = document.getElementById('status');
const results = document.getElementById('results');
const scatter = document.getElementById('scatter');
const moreButton = document.getElementById('more');

let shown = []; // summaries on screen
let nextCursor = null;
let apiQuery = ''; // the API query of the results on screen (without cursor)
let generation = 0; // a newer search makes older answers stale

// ---- form <-> URL ----------------------------------------------------------------------

/** The page state of the form, as URLSearchParams. */
function formToParams() {
  const p = new URLSearchParams();
  const v = (id) => document.getElementById(id).value.trim();
  if (v('service')) p.set('service', v('service'));
  if (v('operation')) p.set('operation', v('operation'));
  if (v('key-name')) p.set('key', v('key-name') + ':' + v('key-value'));
  if (document.getElementById('errors-only').checked) p.set('error', 'true');
  if (v('min-duration')) p.set('min_duration', v('min-duration'));
  if (v('max-duration')) p.set('max_duration', v('max-duration'));
  if (rangeSelect.value === 'custom') {
    const start = localToIso(v('start'));
    const end = localToIso(v('end'));
    if (start) p.set('start', start);
    if (end) p.set('end', end);
  } else {
    p.set('lookback', rangeSelect.value);
  }
  for (const line of v('attrs').split('\n')) {
    if (line.trim()) p.append('attr', line.trim());
  }
  if (v('q')) p.set('q', v('q'));
  if (v('limit') !== '20') p.set('limit', v('limit'));
  return p;
}

/** Fills the form from the page's query string. */
async function paramsToForm(p) {
  const set = (id, value) => { document.getElementById(id).value = value ?? ''; };
  const key = p.get('key') || '';
  const colon = key.indexOf(':');
  set('key-name', colon >= 0 ? key.slice(0, colon) : key);
  set('key-value', colon >= 0 ? key.slice(colon + 1) : '');
  document.getElementById('errors-only').checked = p.get('error') === 'true';
  set('min-duration', explicitNanos(p.get('min_duration')));
  set('max-duration', explicitNanos(p.get('max_duration')));
  const lookback = p.get('lookback');
  if (p.has('start') || p.has('end')) {
    rangeSelect.value = 'custom';
    set('start', isoToLocal(p.get('start')));
    set('end', isoToLocal(p.get('end')));
  } else {
    rangeSelect.value = PRESETS.includes(lookback) ? lookback : '1h';
  }
  customRange.classList.toggle('hidden', rangeSelect.value !== 'custom');
  set('attrs', p.getAll('attr').join('\n'));
  set('q', p.get('q'));
  const limit = p.get('limit') || '20';
  ensureOption(document.getElementById('limit'), limit, limit);
  set('limit', limit);
  const service = p.get('service') || '';
  ensureOption(serviceSelect, service, service);
  serviceSelect.value = service;
  await loadOperations(service);
  const operation = p.get('operation') || '';
  ensureOption(operationSelect, operation, operation);
  operationSelect.value = operation;
}

/** A bare number in a duration parameter of a shared URL is nanoseconds to the API; the
 * UI says so by writing the unit. */
function explicitNanos(value) {
  return value && /^\d+$/.test(value.trim()) ? value.trim() + 'ns' : value;
}

/** The first duration field without a unit, as a message (null when both are fine). */
function durationProblem() {
  for (const [id, what] of [['min-duration', 'minimum'], ['max-duration', 'maximum']]) {
    const input = document.getElementById(id);
    const ok = durationWithUnit(input.value) !== null;
    input.toggleAttribute('aria-invalid', !ok);
    if (!ok) {
      return `the ${what} duration \`${input.value.trim()}\` needs a unit: e.g. ${input.value.trim()}ms, 1.5s, 250us or 100ns`;
    }
  }
  return null;
}

/** The API query for page state `p` (the page state uses the API's names already). */
function apiParams(p) {
  const q = new URLSearchParams();
  for (const [name, value] of p) {
    if (name === 'range') continue;
    q.append(name, name === 'min_duration' || name === 'max_duration' ? explicitNanos(value) : value);
  }
  if (!q.has('lookback') && !q.has('start') && !q.has('end')) q.set('lookback', '1h');
  return q;
}

function localToIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function isoToLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function ensureOption(select, value, text) {
  if (!value) return;
  if (![...select.options].some((o) => o.value === value)) {
    select.append(el('option', { text, attrs: { value } }));
  }
}

// ---- pickers ---------------------------------------------------------------------------

async function loadServices() {
  try {
    const { body } = await api('/api/v1/services');
    const current = serviceSelect.value;
    for (const name of body.services || []) ensureOption(serviceSelect, name, name);
    serviceSelect.value = current;
  } catch (e) {
    statusBox.textContent = 'could not list services: ' + e.message;
  }
}

async function loadOperations(service) {
  operationSelect.replaceChildren(el('option', { text: 'any operation', attrs: { value: '' } }));
  if (!service) return;
  try {
    const { body } = await api('/api/v1/services/' + encodeURIComponent(service) + '/operations');
    for (const name of body.operations || []) ensureOption(operationSelect, name, name);
  } catch (e) {
    statusBox.textContent = 'could not list operations: ' + e.message;
  }
}

// ---- search and results ----------------------------------------------------------------

async function runSearch(pageParams) {
  const mine = ++generation;
  apiQuery = apiParams(pageParams).toString();
  shown = [];
  nextCursor = null;
  clear(results);
  clear(scatter);
  moreButton.classList.add('hidden');
  statusBox.textContent = 'searching…';
  document.body.dataset.state = 'loading';
  await fetchPage(mine, null);
}

async function fetchPage(mine, cursor) {
  const q = new URLSearchParams(apiQuery);
  if (cursor) q.set('cursor', cursor);
  try {
    const { body } = await api('/api/v1/search?' + q.toString());
    if (mine !== generation) return;
    const page = Array.isArray(body.traces) ? body.traces : [];
    shown = shown.concat(page);
    nextCursor = typeof body.next_cursor === 'string' ? body.next_cursor : null;
    render();
    statusBox.textContent = shown.length === 0
      ? 'no traces match'
      : `${shown.length} trace${shown.length === 1 ? '' : 's'}${nextCursor ? ' (more available)' : ''}`;
  } catch (e) {
    if (mine !== generation) return;
    showError(statusBox, 'search failed: ' + e.message);
  }
  document.body.dataset.state = 'ready';
}

function render() {
  // newest first (the API orders so; sorting again keeps appended pages in order)
  shown.sort((a, b) => nsToMs(b.start_time_unix_nano) - nsToMs(a.start_time_unix_nano));
  const maxDuration = Math.max(1, ...shown.map((t) => Number(t.duration_nanos) || 0));
  const fragment = document.createDocumentFragment();
  for (const t of shown) fragment.append(resultRow(t, maxDuration));
  results.replaceChildren(fragment);
  drawScatter();
  moreButton.classList.toggle('hidden', !nextCursor);
}

function resultRow(t, maxDuration) {
  const path = tracePath(t.trace_id);
  const title = `${t.root_service ?? '(no root)'}: ${t.root_operation ?? '(no root span)'}`;
  const head = el('div', { class: 'result-head' },
    path ? internalLink(path, title, 'result-title') : el('span', { class: 'result-title', text: title }),
    t.error_count > 0 ? el('span', { class: 'badge error', text: `${t.error_count} error${t.error_count === 1 ? '' : 's'}` }) : null,
    t.truncated ? el('span', { class: 'badge', text: 'truncated' }) : null,
  );
  const bar = el('div', { class: 'duration-bar' });
  bar.style.width = Math.max(0.5, (100 * (Number(t.duration_nanos) || 0)) / maxDuration) + '%';
  if (t.error_count > 0) bar.classList.add('error');
  const services = el('div', { class: 'services' });
  for (const s of t.services || []) {
    const chip = serviceChip(s.name, true);
    chip.append(el('span', { class: 'count', text: ' ' + s.span_count }));
    services.append(chip);
  }
  const keys = Object.entries(t.business_keys || {});
  return el('li', { class: 'result', attrs: { 'data-trace-id': t.trace_id } },
    head,
    el('div', { class: 'result-meta' },
      el('span', { class: 'start', text: formatTime(nsToMs(t.start_time_unix_nano)) }),
      el('span', { class: 'duration', text: formatDuration(t.duration_nanos) }),
      el('span', { class: 'span-count', text: `${t.span_count} span${t.span_count === 1 ? '' : 's'}` }),
      keys.length ? el('span', { class: 'keys', text: keys.map(([k, v]) => `${k}=${v}`).join(' ') }) : null,
    ),
    el('div', { class: 'bar-track' }, bar),
    services,
  );
}

function drawScatter() {
  if (shown.length === 0) {
    clear(scatter);
    return;
  }
  const W = 900, H = 200, L = 64, R = 12, T = 10, B = 28;
  const times = shown.map((t) => nsToMs(t.start_time_unix_nano));
  const durations = shown.map((t) => Number(t.duration_nanos) || 0);
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (t1 - t0 < 1000) { t0 -= 500; t1 += 500; }
  const pad = (t1 - t0) * 0.03; // keep the outermost points off the axes
  t0 -= pad; t1 += pad;
  const dMax = Math.max(1, ...durations) * 1.1;
  const x = (ms) => L + ((ms - t0) / (t1 - t0)) * (W - L - R);
  const y = (d) => H - B - (d / dMax) * (H - T - B);
  const chart = svg('svg', { class: 'scatter-plot', attrs: { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'duration over time' } });
  chart.append(svg('line', { class: 'axis', attrs: { x1: L, y1: H - B, x2: W - R, y2: H - B } }));
  chart.append(svg('line', { class: 'axis', attrs: { x1: L, y1: T, x2: L, y2: H - B } }));
  const scale = durationScale(dMax / 1.1); // one unit for the whole axis
  for (const f of [0, 0.5, 1]) {
    const d = (dMax / 1.1) * f;
    chart.append(svg('text', { class: 'tick y-tick', text: scale.format(d), attrs: { x: L - 6, y: y(d) + 4, 'text-anchor': 'end' } }));
  }
  for (const [f, anchor] of [[0, 'start'], [1, 'end']]) {
    const ms = t0 + (t1 - t0) * f;
    chart.append(svg('text', { class: 'tick', text: formatTime(ms).slice(11, 19), attrs: { x: x(ms), y: H - 8, 'text-anchor': anchor } }));
  }
  shown.forEach((t, i) => {
    const path = tracePath(t.trace_id);
    const point = svg('circle', {
      class: 'point' + (t.error_count > 0 ? ' error' : ''),
      attrs: { cx: x(times[i]).toFixed(1), cy: y(durations[i]).toFixed(1), r: 5, 'data-trace-id': t.trace_id, tabindex: 0 },
    }, svg('title', { text: `${t.root_service ?? ''}: ${t.root_operation ?? ''} · ${formatDuration(t.duration_nanos)}` }));
    if (path) {
      point.addEventListener('click', () => { location.assign(path); });
      point.addEventListener('keydown', (e) => { if (e.key === 'Enter') location.assign(path); });
    }
    chart.append(point);
  });
  scatter.replaceChildren(chart);
}

// ---- wiring ----------------------------------------------------------------------------

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const problem = durationProblem();
  if (problem) {
    showError(statusBox, problem);
    return;
  }
  const p = formToParams();
  const url = location.pathname + (p.toString() ? '?' + p.toString() : '');
  if (url !== location.pathname + location.search) history.pushState(null, '', url);
  runSearch(p);
});
serviceSelect.addEventListener('change', () => loadOperations(serviceSelect.value));
rangeSelect.addEventListener('change', () => {
  customRange.classList.toggle('hidden', rangeSelect.value !== 'custom');
});
moreButton.addEventListener('click', () => {
  if (nextCursor) fetchPage(generation, nextCursor);
});
window.addEventListener('popstate', async () => {
  const p = new URLSearchParams(location.search);
  await paramsToForm(p);
  runSearch(p);
});

(async () => {
  await loadServices();
  const p = new URLSearchParams(location.search);
  await paramsToForm(p);
  runSearch(p);
})();
