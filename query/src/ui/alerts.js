// The alert board: firing and recently resolved error-signature alerts from
// GET /api/v1/alerts, newest first, refreshed every few seconds. Every field but the
// state comes from span data and is set as text; the only links are built here from a
// checked trace id (/trace/{id}) or an encoded service name (/services/{service}).
import { api, el, internalLink, nsToMs, formatTime, serviceChip, showError, traceLink } from '/ui/common.js';

const REFRESH_MS = 5000;
const statusBox = document.getElementById('status');
const rows = document.querySelector('#alerts tbody');

async function load() {
  document.body.dataset.state = 'loading';
  try {
    const { body } = await api('/api/v1/alerts');
    draw(body);
  } catch (e) {
    showError(statusBox, 'could not load alerts: ' + e.message);
  }
  document.body.dataset.state = 'ready';
}

function text(v) {
  return v === undefined || v === null ? '' : String(v);
}

function draw(body) {
  const alerts = Array.isArray(body.alerts) ? body.alerts : [];
  const firing = alerts.filter((a) => a.state === 'firing').length;
  if (!body.enabled) {
    statusBox.textContent = 'no error rules are configured ([[alerting.error_rules]] in the config file)';
  } else {
    statusBox.textContent = `${firing} firing, ${alerts.length - firing} resolved in the last hour · rules: ` +
      (Array.isArray(body.rules) ? body.rules.map(text).join(', ') : '');
  }
  rows.replaceChildren(...alerts.map(row));
}

function row(a) {
  const state = a.state === 'firing' ? 'firing' : 'resolved';
  const service = text(a.service);
  const serviceCell = el('td', {}, internalLink('/services/' + encodeURIComponent(service), '', 'service-link'));
  serviceCell.firstChild.append(serviceChip(service));
  const error = el('td', { class: 'alert-error' },
    el('div', { class: 'exception-type', text: text(a.exception_type) }),
    el('div', { class: 'message', text: text(a.message) }),
    a.top_frame ? el('div', { class: 'frame', text: text(a.top_frame) }) : null,
    el('div', { class: 'signature', text: 'signature ' + text(a.signature) }));
  const ids = Array.isArray(a.example_trace_ids) ? a.example_trace_ids : [];
  const examples = el('td', { class: 'examples' });
  for (const id of ids) examples.append(el('div', {}, traceLink(text(id), text(id).slice(0, 16) + '…')));
  const resolved = a.resolved_at_unix_nano ? ' · resolved ' + formatTime(nsToMs(a.resolved_at_unix_nano)) : '';
  return el('tr', { class: 'alert ' + state, attrs: { 'data-signature': text(a.signature), 'data-state': state } },
    el('td', {}, el('span', { class: 'state ' + state, text: state })),
    el('td', { class: 'severity', text: text(a.severity) }),
    el('td', { class: 'alertname', text: text(a.alertname) }),
    serviceCell,
    el('td', { class: 'operation', text: text(a.operation) }),
    error,
    el('td', { class: 'count', text: text(a.count) }),
    el('td', { text: formatTime(nsToMs(a.first_seen_unix_nano)) }),
    el('td', { text: formatTime(nsToMs(a.last_seen_unix_nano)) + resolved }),
    examples);
}

load();
setInterval(load, REFRESH_MS);
