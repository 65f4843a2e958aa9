// Every trace of one business key, on a shared time axis (oldest at the top).
import { api, el, internalLink, tracePath, serviceChip, formatDuration, formatTime, big, showError } from '/ui/common.js';

const title = document.getElementById('key-title');
const statusBox = document.getElementById('status');
const timeline = document.getElementById('timeline');

function pathParts() {
  const rest = location.pathname.slice('/keys/'.length).split('/');
  try {
    return rest.length === 2 ? rest.map(decodeURIComponent) : null;
  } catch {
    return null;
  }
}

async function main() {
  const parts = pathParts();
  if (!parts || !parts[0]) {
    showError(statusBox, 'expected /keys/{name}/{value}');
    return;
  }
  const [name, value] = parts;
  title.textContent = `${name} = ${value}`;
  let traces = [], more = false;
  try {
    const { body } = await api(`/api/v1/keys/${encodeURIComponent(name)}/${encodeURIComponent(value)}?limit=1000`);
    traces = Array.isArray(body.traces) ? body.traces : [];
    more = typeof body.next_cursor === 'string';
  } catch (e) {
    showError(statusBox, 'lookup failed: ' + e.message);
    return;
  }
  statusBox.textContent = traces.length === 0 ? 'no traces carry this key'
    : `${traces.length} trace${traces.length === 1 ? '' : 's'}${more ? ' (the newest 1000; older ones exist)' : ''}`;
  traces.sort((a, b) => (big(a.start_time_unix_nano) < big(b.start_time_unix_nano) ? -1 : 1));
  if (!traces.length) return;
  const t0 = traces.reduce((m, t) => (big(t.start_time_unix_nano) < m ? big(t.start_time_unix_nano) : m), big(traces[0].start_time_unix_nano));
  const t1 = traces.reduce((m, t) => {
    const end = big(t.start_time_unix_nano) + BigInt(Math.max(0, Number(t.duration_nanos) || 0));
    return end > m ? end : m;
  }, t0 + 1n);
  const total = Number(t1 - t0);
  const fragment = document.createDocumentFragment();
  fragment.append(el('div', { class: 'timeline-axis' },
    el('span', { text: formatTime(Number(t0 / 1000000n)) }),
    el('span', { text: 'span ' + formatDuration(total) }),
    el('span', { text: formatTime(Number(t1 / 1000000n)) })));
  for (const t of traces) {
    const label = `${t.root_service ?? '?'}: ${t.root_operation ?? '?'}`;
    const path = tracePath(t.trace_id);
    const bar = el('div', { class: 'span-bar' + (t.error_count > 0 ? ' error' : '') });
    bar.style.left = (100 * Number(big(t.start_time_unix_nano) - t0)) / total + '%';
    bar.style.width = Math.max(0.3, (100 * (Number(t.duration_nanos) || 0)) / total) + '%';
    fragment.append(el('div', { class: 'timeline-row' + (t.error_count > 0 ? ' error' : ''), attrs: { 'data-trace-id': t.trace_id } },
      el('div', { class: 'timeline-label' },
        path ? internalLink(path, label) : el('span', { text: label }),
        el('span', { class: 'muted', text: ` ${formatTime(Number(big(t.start_time_unix_nano) / 1000000n))} · ${formatDuration(t.duration_nanos)} · ${t.span_count} spans` }),
        t.error_count > 0 ? el('span', { class: 'badge error', text: `${t.error_count} errors` }) : null,
        el('span', { class: 'services' }, ...(t.services || []).map((s) => serviceChip(s.name)))),
      el('div', { class: 'bar-cell' }, bar)));
  }
  timeline.replaceChildren(fragment);
}

main().finally(() => { document.body.dataset.state = 'ready'; });
