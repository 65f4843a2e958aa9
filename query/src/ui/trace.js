// The trace page: summary, waterfall (built once; collapsing toggles a class), span detail.
import {
  api, el, clear, internalLink, traceLink, serviceChip, serviceColor, valueNode,
  formatDuration, formatTime, nsToMs, big, durationScale,
} from '/ui/common.js';

const summaryBox = document.getElementById('summary');
const ruler = document.getElementById('ruler');
const waterfall = document.getElementById('waterfall');
const detail = document.getElementById('detail');
const download = document.getElementById('download');
const traceBody = document.getElementById('trace-body');

const rawId = decodeURIComponent(location.pathname.slice('/trace/'.length));
let spans = [];
let rows = [];      // row element per span
let depth = [];     // tree depth per span
let subtreeEnd = []; // index after the last descendant
const collapsed = new Set();
let selected = -1;

function isError(span) {
  return span.status?.code === 'error' || (span.events || []).some((e) => e.name === 'exception');
}

/** A message instead of the trace; the waterfall and its buttons stay hidden. */
function noTrace(title, why) {
  summaryBox.replaceChildren(
    el('h1', { class: 'trace-title', attrs: { id: 'no-trace' }, text: title }),
    el('p', { class: 'error-message', text: why }),
  );
  traceBody.classList.add('hidden');
  document.body.dataset.state = 'ready';
}

async function main() {
  const shown = rawId.length > 64 ? rawId.slice(0, 64) + '…' : rawId;
  if (!/^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{16})$/.test(rawId)) {
    noTrace('Not a valid trace id', `“${shown}” is not a trace id: expected 32 (or 16) hex digits`);
    return;
  }
  let trace, text;
  try {
    ({ body: trace, text } = await api('/api/v1/traces/' + rawId.toLowerCase()));
  } catch (e) {
    if (e.status === 404) {
      noTrace('Trace not found', `no trace ${rawId.toLowerCase()} is stored: it may not have arrived yet, or it expired`);
    } else {
      noTrace('Could not load the trace', e.message);
    }
    return;
  }
  traceBody.classList.remove('hidden');
  spans = Array.isArray(trace.spans) ? trace.spans : [];
  document.title = 'clew · trace ' + String(trace.trace_id).slice(0, 8);
  const blob = new Blob([text], { type: 'application/json' });
  download.setAttribute('href', URL.createObjectURL(blob));
  download.setAttribute('download', `trace-${String(trace.trace_id).replace(/[^0-9a-f]/g, '')}.json`);
  download.classList.remove('hidden');
  layout();
  renderSummary(trace);
  renderWaterfall();
  document.body.dataset.state = 'ready';
}

/** Depth and subtree extent per span. The API lists spans depth-first from the roots, then
 * orphans (whose parent is missing); a span whose parent does not come before it is drawn
 * at depth 0 and marked. */
function layout() {
  const firstIndex = new Map();
  spans.forEach((s, i) => { if (!firstIndex.has(s.span_id)) firstIndex.set(s.span_id, i); });
  depth = spans.map(() => 0);
  spans.forEach((s, i) => {
    const p = s.parent_span_id ? firstIndex.get(s.parent_span_id) : undefined;
    s._orphan = Boolean(s.parent_span_id) && !(p !== undefined && p < i);
    depth[i] = !s._orphan && s.parent_span_id ? depth[p] + 1 : 0;
  });
  subtreeEnd = spans.map(() => 0);
  const stack = [];
  for (let i = 0; i <= spans.length; i++) {
    const d = i < spans.length ? depth[i] : -1;
    while (stack.length && depth[stack[stack.length - 1]] >= d) subtreeEnd[stack.pop()] = i;
    if (i < spans.length) stack.push(i);
  }
}

function traceBounds() {
  let start = null, end = null;
  for (const s of spans) {
    const a = big(s.start_time_unix_nano), b = big(s.end_time_unix_nano);
    if (start === null || a < start) start = a;
    if (end === null || b > end) end = b;
  }
  return { start: start ?? 0n, end: end ?? 0n };
}

function renderSummary(trace) {
  const { start, end } = traceBounds();
  const root = spans.find((s) => !s.parent_span_id) || spans[0];
  const services = [...new Set(spans.map((s) => s.service))];
  const errors = spans.filter(isError).length;
  const keys = new Map();
  for (const s of spans) for (const [k, v] of Object.entries(s.business_keys || {})) if (!keys.has(k)) keys.set(k, v);
  const title = root ? `${root.service}: ${root.name}` : '(empty trace)';
  const facts = el('dl', { class: 'facts' },
    el('dt', { text: 'Trace' }), el('dd', { class: 'mono trace-id', attrs: { id: 'trace-id', title: 'trace id (click to select)' }, text: trace.trace_id }),
    el('dt', { text: 'Start' }), el('dd', { text: formatTime(Number(start / 1000000n)) }),
    el('dt', { text: 'Duration' }), el('dd', { attrs: { id: 'trace-duration' }, text: formatDuration(Number(end - start)) }),
    el('dt', { text: 'Spans' }), el('dd', { attrs: { id: 'span-count' }, text: String(trace.span_count ?? spans.length) }),
    el('dt', { text: 'Errors' }), el('dd', { attrs: { id: 'error-count' }, class: errors ? 'error-text' : '', text: String(errors) }),
  );
  const chips = el('div', { class: 'services' }, ...services.map(serviceChip));
  const keyList = el('div', { class: 'business-keys' });
  for (const [k, v] of keys) {
    keyList.append(internalLink('/keys/' + encodeURIComponent(k) + '/' + encodeURIComponent(v), `${k} = ${v}`, 'key-pill'));
  }
  summaryBox.replaceChildren(...[
    el('h1', { class: 'trace-title', text: title }),
    trace.truncated ? el('p', { class: 'badge warn', attrs: { id: 'truncated' }, text: 'truncated: spans past the per-trace cap were not stored' }) : null,
    facts, chips, keyList,
  ].filter(Boolean));
}

function renderWaterfall() {
  const { start, end } = traceBounds();
  const total = Number(end - start) || 1;
  // ruler
  const ticks = el('div', { class: 'ruler-ticks' });
  const scale = durationScale(total); // one unit along the ruler
  for (let k = 0; k <= 4; k++) {
    const tick = el('span', { class: 'tick', text: scale.format(Math.round((total * k) / 4)) });
    tick.style.left = (k * 25) + '%';
    ticks.append(tick);
  }
  ruler.replaceChildren(el('div', { class: 'ruler-label', text: 'service · operation' }), ticks);
  // rows, built once
  const fragment = document.createDocumentFragment();
  rows = spans.map((s, i) => {
    const hasChildren = subtreeEnd[i] > i + 1;
    const toggle = el('button', { class: 'toggle' + (hasChildren ? '' : ' leaf'), text: hasChildren ? '▾' : '', attrs: { type: 'button', tabindex: hasChildren ? 0 : -1, 'aria-label': 'collapse' } });
    const label = el('div', { class: 'span-label' },
      toggle,
      el('span', { class: 'swatch' }),
      el('span', { class: 'span-service', text: s.service }),
      el('span', { class: 'span-name', text: s.name }),
      s._orphan ? el('span', { class: 'badge', text: 'parent missing' }) : null,
    );
    label.style.paddingLeft = (4 + Math.min(depth[i], 40) * 14) + 'px';
    const offset = Number(big(s.start_time_unix_nano) - start);
    const bar = el('div', { class: 'span-bar' });
    bar.style.left = ((100 * offset) / total) + '%';
    bar.style.width = Math.max(0.2, (100 * (Number(s.duration_nanos) || 0)) / total) + '%';
    bar.style.backgroundColor = serviceColor(s.service);
    const barCell = el('div', { class: 'bar-cell' }, bar, el('span', { class: 'bar-text', text: formatDuration(s.duration_nanos) }));
    const row = el('div', {
      class: 'span-row' + (isError(s) ? ' error' : ''),
      attrs: { 'data-index': i, 'data-span-id': s.span_id, role: 'treeitem' },
    }, label, barCell);
    row.querySelector('.swatch').style.backgroundColor = serviceColor(s.service);
    return row;
  });
  for (const r of rows) fragment.append(r);
  waterfall.replaceChildren(fragment);
}

/** Hides or shows the descendants of every row according to `collapsed`. */
function applyCollapse(from = 0, to = spans.length) {
  let hideUntil = -1;
  for (let i = from; i < to; i++) {
    rows[i].classList.toggle('hidden', i < hideUntil);
    if (i >= hideUntil && collapsed.has(i)) hideUntil = subtreeEnd[i];
    const t = rows[i].firstChild.firstChild;
    if (!t.classList.contains('leaf')) {
      t.textContent = collapsed.has(i) ? '▸' : '▾';
      t.setAttribute('aria-label', collapsed.has(i) ? 'expand' : 'collapse');
    }
  }
}

function toggle(i) {
  if (collapsed.has(i)) collapsed.delete(i); else collapsed.add(i);
  applyCollapse(i, subtreeEnd[i]);
}

function select(i) {
  if (selected >= 0 && rows[selected]) rows[selected].classList.remove('selected');
  selected = i;
  rows[i].classList.add('selected');
  renderDetail(spans[i]);
}

function attrTable(obj, cls) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el('p', { class: 'muted', text: 'none' });
  const table = el('table', { class: 'attrs ' + (cls || '') });
  for (const [k, v] of entries) table.append(el('tr', {}, el('th', { text: k }), el('td', {}, valueNode(v))));
  return table;
}

function renderDetail(s) {
  const start = traceBounds().start;
  const parts = [
    el('h2', { class: 'detail-title', text: s.name }),
    el('div', {}, serviceChip(s.service), isError(s) ? el('span', { class: 'badge error', text: 'error' }) : null),
    el('dl', { class: 'facts' },
      el('dt', { text: 'Span id' }), el('dd', { class: 'mono', text: s.span_id }),
      el('dt', { text: 'Parent' }), el('dd', { class: 'mono', text: (s.parent_span_id ?? '(root)') + (s._orphan ? ' (not in this trace)' : '') }),
      el('dt', { text: 'Kind' }), el('dd', { text: s.kind }),
      el('dt', { text: 'Status' }), el('dd', { class: s.status?.code === 'error' ? 'error-text' : '', text: [s.status?.code, s.status?.message].filter(Boolean).join(': ') }),
      el('dt', { text: 'Start' }), el('dd', { text: `${formatTime(nsToMs(s.start_time_unix_nano))} (+${formatDuration(Number(big(s.start_time_unix_nano) - start))})` }),
      el('dt', { text: 'Duration' }), el('dd', { text: formatDuration(s.duration_nanos) }),
      el('dt', { text: 'Scope' }), el('dd', { text: [s.scope?.name, s.scope?.version].filter(Boolean).join(' ') }),
    ),
  ];
  const keys = Object.entries(s.business_keys || {});
  if (keys.length) {
    parts.push(el('h3', { text: 'Business keys' }), el('div', { class: 'business-keys' },
      ...keys.map(([k, v]) => internalLink('/keys/' + encodeURIComponent(k) + '/' + encodeURIComponent(v), `${k} = ${v}`, 'key-pill'))));
  }
  parts.push(el('h3', { text: 'Events' }));
  if (!(s.events || []).length) parts.push(el('p', { class: 'muted', text: 'none' }));
  for (const e of s.events || []) {
    const a = e.attributes || {};
    const box = el('div', { class: 'event' + (e.name === 'exception' ? ' exception' : '') },
      el('div', { class: 'event-head' },
        el('span', { class: 'event-name', text: e.name }),
        el('span', { class: 'muted', text: ' +' + formatDuration(Number(big(e.time_unix_nano) - start)) })));
    if (e.name === 'exception') {
      box.append(
        el('div', { class: 'exception-type', text: a['exception.type'] ?? '' }),
        el('div', { class: 'exception-message', text: a['exception.message'] ?? '' }),
      );
      if (a['exception.stacktrace'] !== undefined) {
        box.append(el('pre', { class: 'stacktrace', text: String(a['exception.stacktrace']) }));
      }
      const rest = Object.fromEntries(Object.entries(a).filter(([k]) => !['exception.type', 'exception.message', 'exception.stacktrace'].includes(k)));
      if (Object.keys(rest).length) box.append(attrTable(rest));
    } else {
      box.append(attrTable(a));
    }
    parts.push(box);
  }
  parts.push(el('h3', { text: 'Attributes' }), attrTable(s.attributes, 'span-attrs'));
  parts.push(el('h3', { text: 'Resource' }), attrTable(s.resource?.attributes, 'resource-attrs'));
  if ((s.links || []).length) {
    parts.push(el('h3', { text: 'Links' }));
    for (const l of s.links) {
      parts.push(el('div', { class: 'link' }, traceLink(l.trace_id), el('span', { class: 'mono muted', text: ' span ' + l.span_id }), attrTable(l.attributes)));
    }
  }
  if ((s.repairs || []).length) parts.push(el('h3', { text: 'Repairs' }), el('p', { text: s.repairs.join(', ') }));
  const dropped = [['attributes', s.dropped_attributes_count], ['events', s.dropped_events_count], ['links', s.dropped_links_count]].filter(([, n]) => n > 0);
  if (dropped.length) parts.push(el('p', { class: 'muted', text: 'dropped by the SDK: ' + dropped.map(([w, n]) => `${n} ${w}`).join(', ') }));
  detail.replaceChildren(...parts.filter(Boolean));
}

waterfall.addEventListener('click', (e) => {
  const row = e.target.closest('.span-row');
  if (!row) return;
  const i = Number(row.dataset.index);
  if (e.target.closest('.toggle')) {
    if (!e.target.closest('.toggle').classList.contains('leaf')) toggle(i);
    return;
  }
  select(i);
});
document.getElementById('expand-all').addEventListener('click', () => { collapsed.clear(); applyCollapse(); });
document.getElementById('collapse-all').addEventListener('click', () => {
  collapsed.clear();
  spans.forEach((_, i) => { if (subtreeEnd[i] > i + 1 && depth[i] === 0) collapsed.add(i); });
  applyCollapse();
});

main();
