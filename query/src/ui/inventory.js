// The fleet inventory: GET /api/v1/inventory, one table per service with its instances,
// refreshed every few seconds. Every value shown comes from span resources and is set as
// text; the only links are built here from an encoded service name (its traces, its RED
// page).
import { api, el, internalLink, formatTime, serviceChip, servicePath, showError } from '/ui/common.js';

const REFRESH_MS = 5000;
const FILTERS = ['service', 'sdk', 'version', 'quiet_for'];
const statusBox = document.getElementById('status');
const servicesBox = document.getElementById('services');
const form = document.getElementById('filters');

function text(v) {
  return v === undefined || v === null ? '' : String(v);
}

function query() {
  const p = new URLSearchParams();
  for (const name of FILTERS) {
    const v = document.getElementById(name).value.trim();
    if (v) p.set(name, v);
  }
  return p.toString();
}

async function load() {
  document.body.dataset.state = 'loading';
  try {
    const q = query();
    const { body } = await api('/api/v1/inventory' + (q ? '?' + q : ''));
    draw(body);
  } catch (e) {
    showError(statusBox, 'could not load the inventory: ' + e.message);
  }
  document.body.dataset.state = 'ready';
}

function ago(nowMs, ms) {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 120) return s + ' s ago';
  if (s < 7200) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function sdkText(i) {
  const name = [text(i.sdk_language), text(i.sdk_name)].filter(Boolean).join(' · ');
  return name ? name + (i.sdk_version ? ' ' + text(i.sdk_version) : '') : '';
}

function draw(body) {
  if (!body.enabled) {
    statusBox.textContent = 'this process keeps no inventory ([inventory] enabled = false, or a query-only node)';
    servicesBox.replaceChildren();
    return;
  }
  const services = Array.isArray(body.services) ? body.services : [];
  const shown = services.reduce((n, s) => n + (Array.isArray(s.instances) ? s.instances.length : 0), 0);
  let status = `${services.length} services, ${shown} instances shown of ${text(body.instances_kept)} kept` +
    ` · quiet after ${text(body.quiet_after_secs)} s`;
  if (body.instances_left_out > 0) {
    status += ` · ${text(body.instances_left_out)}${body.instances_left_out_saturated ? '+' : ''} instances` +
      ` (${text(body.spans_left_out)} spans) left out: the inventory holds at most ${text(body.max_instances)}`;
  }
  statusBox.textContent = status;
  servicesBox.replaceChildren(...services.map((s) => serviceTable(s, body.now_ms)));
}

function serviceTable(s, nowMs) {
  const name = text(s.service);
  const heading = el('h2', { class: 'inventory-service' },
    internalLink(servicePath(name), '', 'service-link'),
    ' ',
    internalLink('/?service=' + encodeURIComponent(name), 'traces', 'traces-link'),
    ' ',
    internalLink(servicePath(name), 'RED', 'red-link'),
    el('span', { class: 'muted', text: ` · ${(s.instances || []).length} instances, ${text(s.quiet_instances)} quiet · ` +
      `${text(s.spans_per_minute)} spans/min · versions ${(s.service_versions || []).map(text).join(', ') || '—'}` }));
  heading.firstChild.append(serviceChip(name));
  const rows = (s.instances || []).map((i) => instanceRow(i, nowMs));
  return el('section', { class: 'inventory-block', attrs: { 'data-service': name } },
    heading,
    el('table', { class: 'inventory' },
      el('thead', {}, el('tr', {}, ...['instance', 'host', 'version', 'SDK', 'runtime', 'receivers', 'agent',
        'spans/min', 'spans', 'first seen', 'last seen'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...rows)));
}

function instanceRow(i, nowMs) {
  const classes = ['instance'];
  if (i.quiet) classes.push('quiet');
  if (i.sdk_outdated) classes.push('outdated');
  const sdk = el('td', { class: 'sdk', text: sdkText(i) });
  if (i.sdk_outdated) sdk.append(el('span', { class: 'badge outdated', text: 'outdated' }));
  const last = el('td', { class: 'last-seen', text: ago(nowMs, i.last_seen_ms) });
  if (i.quiet) last.append(el('span', { class: 'badge quiet', text: 'quiet' }));
  const agent = i.agent ? text(i.agent.name) + (i.agent.version ? ' ' + text(i.agent.version) : '') : '';
  return el('tr', { class: classes.join(' '), attrs: { 'data-instance': text(i.instance) } },
    el('td', { class: 'instance-id', text: text(i.instance) || '(unnamed)' }),
    el('td', { text: text(i.host) + (i.pid !== null && i.pid !== undefined ? ' · pid ' + text(i.pid) : '') }),
    el('td', { class: 'service-version', text: text(i.service_version) }),
    sdk,
    el('td', { text: [text(i.runtime_name), text(i.runtime_version)].filter(Boolean).join(' ') }),
    el('td', { class: 'receivers', text: (i.receivers || []).map(text).join(', ') }),
    el('td', { class: 'agent', text: agent }),
    el('td', { class: 'rate', text: text(i.spans_per_minute) }),
    el('td', { text: text(i.spans_total) }),
    el('td', { text: formatTime(i.first_seen_ms) }),
    last);
}

// the filters live in the URL, so a filtered view can be shared
const initial = new URLSearchParams(location.search);
for (const name of FILTERS) {
  if (initial.get(name)) document.getElementById(name).value = initial.get(name);
}
form.addEventListener('submit', (e) => {
  e.preventDefault();
  const q = query();
  history.replaceState(null, '', '/inventory' + (q ? '?' + q : ''));
  load();
});
load();
setInterval(load, REFRESH_MS);
