// status.js — brokers, topics and end offsets, each read model's position and
// lag, dead letters and the command writer's readiness; polled every 2 s.
import * as api from './api.js';
import { h, table, errorBox } from './dom.js';

const EVERY_MS = 2000;

// brokers_down, partitions_unavailable, ...: lists of ids or "topic/partition" names
function list(x) {
  if (!Array.isArray(x)) return 'unknown';
  return x.length ? x.join(', ') : 'none';
}

function stateCell(s) { return h('span', { class: `state-${s}` }, s); }

function details(summary, tbl) {
  return h('details', {}, h('summary', {}, summary), h('div', { class: 'table-wrap' }, tbl));
}

function card(title, ...lines) {
  return h('div', { class: 'card' }, h('h2', {}, title), lines.filter((l) => l !== null).map((l) => h('p', {}, l)));
}

function draw(box, st, ready, when) {
  const k = st.kafka || {};
  const rm = st.read_models || {};
  const lagOf = (m) => (m && m.available ? (m.lag === null ? 'unknown' : String(m.lag)) : 'unavailable');
  const cards = h('div', { class: 'cards' },
    card('Kafka', k.connected ? stateCell('up') : stateCell('down'),
      k.error ? h('span', { class: 'state-bad' }, k.error) : null,
      `brokers down: ${list(k.brokers_down)}`,
      `partitions unavailable: ${list(k.partitions_unavailable)}`,
      `under-replicated: ${list(k.partitions_under_replicated)}`),
    card('Command writer', ready.ok ? stateCell('up') : stateCell('down'),
      ready.ok ? 'ready' : (ready.body && ready.body.detail) ||
        ready.error || `HTTP ${ready.status}`, h('span', { class: 'muted' }, ready.url)),
    card('LMDB read model', `lag: ${lagOf(rm.lmdb)}`),
    card('PostgreSQL read model', `lag: ${lagOf(rm.postgresql)}`),
    card('Dead letters', st.dead_letters === null || st.dead_letters === undefined ? 'unknown' : String(st.dead_letters)));
  const brokers = table(['id', 'address', 'state'],
    (k.brokers || []).map((b) => [String(b.id), b.host ? `${b.host}:${b.port}` : '', stateCell(b.state)]), 'Brokers');
  const topicRows = [];
  const partRows = [];
  for (const [name, t] of Object.entries(k.topics || {})) {
    const parts = t.partitions || [];
    let end = 0;
    let bad = 0;
    for (const p of parts) {
      end += Number(p.high || 0);
      if (p.state && p.state !== 'ok') bad += 1;
      partRows.push([name, String(p.partition), String(p.leader), (p.isr || []).join(','),
        p.state || '', p.low === undefined ? '' : String(p.low), p.high === undefined ? '' : String(p.high)]);
    }
    topicRows.push([name, String(parts.length), String(end),
      bad ? h('span', { class: 'state-bad' }, `${bad} not ok`) : stateCell('ok')]);
  }
  const topics = table(['topic', 'partitions', 'end offsets (sum)', 'state'], topicRows,
    'Topics and end offsets');
  const partitions = details('Every partition', table(['topic', 'partition', 'leader', 'in-sync replicas',
    'state', 'start offset', 'end offset'], partRows, 'Partitions'));
  const posRows = [];
  for (const [target, m] of Object.entries(rm)) {
    for (const [tp, p] of Object.entries((m && m.positions) || {})) {
      posRows.push([target, tp, String(p.next_offset), p.end_offset === null ? '' : String(p.end_offset),
        p.lag === null ? '' : String(p.lag)]);
    }
  }
  const positions = details('Read model positions per partition', table(['read model', 'topic:partition',
    'position', 'end offset', 'lag'], posRows, 'Read model positions'));
  // a redraw keeps the disclosures the reader opened
  const open = new Set([...box.querySelectorAll('details[open] > summary')].map((x) => x.textContent));
  [partitions, positions].forEach((d) => { d.open = open.has(d.querySelector('summary').textContent); });
  box.replaceChildren(cards, h('div', { class: 'table-wrap' }, brokers), h('div', { class: 'table-wrap' }, topics),
    partitions, positions,
    h('p', { class: 'muted', 'aria-live': 'off' }, `updated ${when.toISOString()}`));
}

export async function render(root, ctx) {
  root.append(h('h1', { id: 'page-title' }, 'Status'));
  const box = h('div', { id: 'status-body' }, h('p', {}, 'loading…'));
  const err = h('div', { 'aria-live': 'polite' });
  root.append(err, box);
  let timer = null;
  const tick = async () => {
    try {
      const [st, ready] = await Promise.all([api.query('/api/v1/status', { token: null }), api.commandsReady()]);
      if (!ctx.alive()) return;
      err.replaceChildren();
      draw(box, st, ready, new Date());
    } catch (e) {
      if (!ctx.alive()) return;
      err.replaceChildren(errorBox(e));
    }
    if (ctx.alive()) timer = setTimeout(tick, EVERY_MS);
  };
  await tick();
  return () => clearTimeout(timer);
}
