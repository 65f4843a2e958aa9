// The service map: which service calls which, from GET /api/v1/dependencies, drawn as
// columns (a service sits one column right of its furthest caller).
import { api, el, svg, internalLink, serviceColor, servicePath, showError } from '/ui/common.js';

const PRESETS = ['15m', '1h', '6h', '24h', '7d'];
const form = document.getElementById('map-form');
const lookbackSelect = document.getElementById('lookback');
const statusBox = document.getElementById('status');
const graph = document.getElementById('graph');
const edgeRows = document.querySelector('#edges tbody');

function currentLookback() {
  const v = new URLSearchParams(location.search).get('lookback');
  return PRESETS.includes(v) ? v : '1h';
}

async function load() {
  const lookback = currentLookback();
  lookbackSelect.value = lookback;
  document.body.dataset.state = 'loading';
  statusBox.textContent = 'loading…';
  try {
    const { body } = await api('/api/v1/dependencies?lookback=' + encodeURIComponent(lookback));
    draw(body);
  } catch (e) {
    showError(statusBox, 'could not load dependencies: ' + e.message);
  }
  document.body.dataset.state = 'ready';
}

function layers(services, edges) {
  const layer = new Map(services.map((s) => [s, 0]));
  // longest path from a caller-less service; cycles stop after |services| rounds
  for (let round = 0; round < services.length; round++) {
    let changed = false;
    for (const e of edges) {
      const want = (layer.get(e.parent) ?? 0) + 1;
      if (want > (layer.get(e.child) ?? 0) && want < services.length) {
        layer.set(e.child, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

function draw(body) {
  const edges = Array.isArray(body.edges) ? body.edges : [];
  const services = Array.isArray(body.services) ? body.services.map(String) : [];
  for (const e of edges) for (const s of [e.parent, e.child]) if (!services.includes(s)) services.push(s);
  statusBox.textContent = `${services.length} services, ${edges.length} call paths, from the newest ${body.traces_considered} traces` +
    (body.more_traces ? ' (older traces of the range were not read)' : '');
  const layer = layers(services, edges);
  const columns = [];
  for (const s of services) {
    const l = layer.get(s) ?? 0;
    (columns[l] ||= []).push(s);
  }
  const NW = 180, NH = 36, GX = 130, GY = 40, PAD = 20;
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((s, r) => pos.set(s, { x: PAD + c * (NW + GX), y: PAD + r * (NH + GY) })));
  const width = PAD * 2 + Math.max(1, columns.length) * (NW + GX) - GX;
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => c.length)) * (NH + GY) - GY;
  const chart = svg('svg', { class: 'service-map', attrs: { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'service map' } });
  chart.append(svg('defs', {}, svg('marker', {
    attrs: { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
  }, svg('path', { class: 'arrow-head', attrs: { d: 'M0,0 L10,5 L0,10 z' } }))));
  for (const e of edges) {
    const a = pos.get(e.parent), b = pos.get(e.child);
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
    const back = x2 <= x1;
    const d = back
      ? `M${a.x + NW / 2},${a.y + NH} C${a.x + NW / 2},${a.y + NH + 60} ${b.x + NW / 2},${b.y + NH + 60} ${b.x + NW / 2},${b.y + NH}`
      : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    const mx = back ? (a.x + b.x + NW) / 2 : (x1 + x2) / 2;
    const my = back ? Math.max(a.y, b.y) + NH + 40 : (y1 + y2) / 2 - 6;
    const label = `${e.call_count} call${e.call_count === 1 ? '' : 's'}` + (e.error_count ? `, ${e.error_count} err` : '');
    chart.append(svg('g', { class: 'edge' + (e.error_count ? ' error' : ''), attrs: { 'data-parent': e.parent, 'data-child': e.child } },
      svg('path', { attrs: { d, 'marker-end': 'url(#arrow)' } }),
      svg('text', { class: 'edge-label', text: label, attrs: { x: mx, y: my, 'text-anchor': 'middle' } })));
  }
  for (const s of services) {
    const p = pos.get(s);
    const rect = svg('rect', { attrs: { x: p.x, y: p.y, width: NW, height: NH, rx: 6 } });
    rect.style.stroke = serviceColor(s);
    const name = s.length > 24 ? s.slice(0, 23) + '…' : s;
    const node = svg('g', { class: 'node', attrs: { 'data-service': s, role: 'link', tabindex: 0 } },
      rect,
      svg('title', { text: s + ' (open the service page)' }),
      svg('text', { text: name, attrs: { x: p.x + NW / 2, y: p.y + NH / 2 + 5, 'text-anchor': 'middle' } }));
    // the service page; the path is built here from the name, never taken as a URL
    const open = () => location.assign(servicePath(s));
    node.addEventListener('click', open);
    node.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
    chart.append(node);
  }
  graph.replaceChildren(services.length ? chart : el('p', { class: 'muted', text: 'no traces in this range' }));
  const fragment = document.createDocumentFragment();
  for (const e of edges) {
    fragment.append(el('tr', { attrs: { 'data-parent': e.parent, 'data-child': e.child } },
      el('td', {}, internalLink(servicePath(e.parent), e.parent)), el('td', {}, internalLink(servicePath(e.child), e.child)),
      el('td', { class: 'calls', text: String(e.call_count) }),
      el('td', { class: 'errors' + (e.error_count ? ' error-text' : ''), text: String(e.error_count) })));
  }
  edgeRows.replaceChildren(fragment);
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const url = '/map?lookback=' + encodeURIComponent(lookbackSelect.value);
  if (url !== location.pathname + location.search) history.pushState(null, '', url);
  load();
});
window.addEventListener('popstate', load);
load();
