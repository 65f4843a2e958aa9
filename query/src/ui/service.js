// A service's RED page: rate, error rate and p50/p99 over the last hour from
// GET /api/v1/services/{service}/red, drawn as inline SVG. The service name comes from the
// URL and reaches the page as text only.
import { api, el, svg, internalLink, showError } from '/ui/common.js';

const PREFIX = '/services/';
const statusBox = document.getElementById('status');

function serviceFromPath() {
  try {
    return decodeURIComponent(location.pathname.slice(PREFIX.length));
  } catch {
    return null;
  }
}

const pad = (x) => String(x).padStart(2, '0');
const clock = (unixS) => {
  const d = new Date(unixS * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

/** A line chart of `series` ([{cls, values: [number|null]}]) over the points' times. */
function lineChart(id, times, series) {
  const W = 560, H = 160, L = 48, R = 8, T = 10, B = 22;
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const max = Math.max(1e-9, ...all) * 1.1;
  const n = Math.max(1, times.length - 1);
  const x = (i) => L + ((W - L - R) * i) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const chart = svg('svg', { class: 'red-chart', attrs: { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': id.replace('chart-', '') } });
  chart.append(svg('line', { class: 'axis', attrs: { x1: L, y1: H - B, x2: W - R, y2: H - B } }));
  chart.append(svg('line', { class: 'axis', attrs: { x1: L, y1: T, x2: L, y2: H - B } }));
  for (const f of [0, 0.5, 1]) {
    chart.append(svg('text', { class: 'tick', text: fmt(max * f / 1.1), attrs: { x: L - 4, y: y(max * f / 1.1) + 4, 'text-anchor': 'end' } }));
  }
  const last = times.length - 1;
  for (const [i, anchor] of [[0, 'start'], [Math.floor(last / 2), 'middle'], [last, 'end']]) {
    if (times[i] === undefined) continue;
    chart.append(svg('text', { class: 'tick', text: clock(times[i]), attrs: { x: x(i), y: H - 6, 'text-anchor': anchor } }));
  }
  for (const s of series) {
    // a minute without requests has no duration: the line breaks there
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
    });
    chart.append(svg('path', { class: 'series ' + s.cls, attrs: { d: d.trim() || 'M0,0', 'data-points': s.values.filter((v) => v !== null).length } }));
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) return;
      chart.append(svg('circle', { class: 'dot ' + s.cls, attrs: { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2 } },
        svg('title', { text: `${clock(times[i])}  ${fmt(v)}` })));
    });
  }
  document.getElementById(id).replaceChildren(chart);
}

async function load() {
  const service = serviceFromPath();
  const title = document.getElementById('service-name');
  if (!service) {
    showError(statusBox, 'no service named in the address');
    document.body.dataset.state = 'ready';
    return;
  }
  title.textContent = service;
  document.title = 'clew · ' + service;
  document.getElementById('links').replaceChildren(
    internalLink('/?service=' + encodeURIComponent(service), 'traces'), ' · ',
    internalLink('/?service=' + encodeURIComponent(service) + '&error=true', 'error traces'), ' · ',
    internalLink('/map', 'service map'));
  document.body.dataset.state = 'loading';
  try {
    const { body } = await api('/api/v1/services/' + encodeURIComponent(service) + '/red');
    draw(body);
  } catch (e) {
    showError(statusBox, e.status === 404 ? e.message : 'could not load the service history: ' + e.message);
  }
  document.body.dataset.state = 'ready';
}

function draw(body) {
  const points = Array.isArray(body.points) ? body.points : [];
  const step = Number(body.step_seconds) || 60;
  const times = points.map((p) => Number(p.t));
  const calls = points.map((p) => Number(p.calls) || 0);
  const errors = points.map((p) => Number(p.errors) || 0);
  const total = calls.reduce((a, b) => a + b, 0);
  const failed = errors.reduce((a, b) => a + b, 0);
  statusBox.textContent = `${total} request${total === 1 ? '' : 's'}, ${failed} error${failed === 1 ? '' : 's'} in the last hour`;
  statusBox.dataset.calls = String(total);
  statusBox.dataset.errors = String(failed);
  lineChart('chart-rate', times, [{ cls: 'rate', values: calls.map((c) => c / step) }]);
  lineChart('chart-errors', times, [{ cls: 'errors', values: calls.map((c, i) => (c ? (100 * errors[i]) / c : null)) }]);
  const ms = (v) => (v === null || v === undefined ? null : Number(v));
  lineChart('chart-latency', times, [
    { cls: 'p50', values: points.map((p) => ms(p.p50_ms)) },
    { cls: 'p99', values: points.map((p) => ms(p.p99_ms)) },
  ]);
}

load();
setInterval(load, 60_000);
