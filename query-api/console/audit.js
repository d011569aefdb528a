// audit.js — search the audit log by actor, aggregate, event type and time
// range (RFC 3339, inclusive), paged; export every matching event (up to
// EXPORT_MAX) as NDJSON or CSV, built in the page from the same API; the
// hash-chain state of each partition (/api/v1/audit/chain), refreshed every
// CHAIN_EVERY_MS.
import * as api from './api.js';
import { h, field, table, showError, clearErrors, link, fmtTime, errorBox } from './dom.js';

const EXPORT_MAX = 50000;
const PAGE = 50;
const CHAIN_EVERY_MS = 2000;
const CHAIN_STATE = { intact: 'intact', broken: 'BROKEN', not_verified: 'not verified yet' };

function chainSummary(d) {
  if (d.intact === true) return `Every partition intact (${d.partitions.length} partitions).`;
  if (d.intact === false) {
    const n = d.partitions.filter((p) => p.state === 'broken').length;
    return `${n} of ${d.partitions.length} partitions BROKEN.`;
  }
  return d.partitions.length ? 'Checking: some partitions are not verified yet.' : 'No partition known yet.';
}

function chainTable(d) {
  return table(['topic:partition', 'state', 'events checked', 'last checked offset', 'head', 'checked at'],
    d.partitions.map((p) => [`${p.topic}:${p.partition}`,
      h('span', { class: p.state === 'intact' ? 'state-ok' : p.state === 'broken' ? 'state-bad' : 'state-pending',
        'data-state': p.state },
      p.break ? `${CHAIN_STATE[p.state]} at offset ${p.break.offset} (${p.break.kind}): ${p.break.message}`
        : CHAIN_STATE[p.state] || p.state),
      String(p.events_checked), p.last_checked_offset === null ? '' : String(p.last_checked_offset),
      p.head ? h('code', { title: p.head }, p.head.slice(0, 16)) : '', fmtTime(p.checked_at)]),
    'Hash chain per partition');
}
const COLUMNS = ['occurred_at', 'actor', 'aggregate_type', 'aggregate_id', 'version', 'event_type',
  'event_id', 'command_id', 'correlation_id', 'topic', 'partition', 'offset', 'payload'];

function filters(form) {
  const q = new URLSearchParams();
  for (const k of ['actor', 'aggregate_type', 'aggregate_id', 'event_type', 'since', 'until']) {
    const v = form.elements[k].value.trim();
    if (v) q.set(k, v);
  }
  return q;
}

function csvCell(v) {
  const s = v === null || v === undefined ? '' : (typeof v === 'object' ? JSON.stringify(v) : String(v));
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function aggLink(e) {
  const page = { resource: 'resources', workflow: 'workflows', run: 'runs' }[e.aggregate_type];
  return page ? link(`#/${page}/${encodeURIComponent(e.aggregate_id)}`, e.aggregate_id) : e.aggregate_id;
}

export async function render(root, ctx) {
  const form = h('form', { 'aria-labelledby': 'audit-search-title' },
    h('h2', { id: 'audit-search-title' }, 'Search'),
    field('Actor', h('input', { name: 'actor', autocomplete: 'off' })),
    field('Aggregate type', h('select', { name: 'aggregate_type' }, h('option', { value: '' }, 'any'),
      ['resource', 'workflow', 'run'].map((t) => h('option', { value: t }, t)))),
    field('Aggregate id', h('input', { name: 'aggregate_id', autocomplete: 'off' })),
    field('Event type', h('input', { name: 'event_type', autocomplete: 'off' }), 'e.g. ResourceCreated'),
    field('Since', h('input', { name: 'since', autocomplete: 'off', placeholder: '2026-12-01T00:00:00Z' }),
      'RFC 3339 time, inclusive'),
    field('Until', h('input', { name: 'until', autocomplete: 'off', placeholder: '2026-12-31T23:59:59Z' }),
      'RFC 3339 time, inclusive'),
    h('button', { type: 'submit' }, 'Search'));
  const result = h('div', { class: 'table-wrap', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'secondary' }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next page');
  const ndjson = h('button', { type: 'button', class: 'secondary' }, 'Export NDJSON');
  const csv = h('button', { type: 'button', class: 'secondary' }, 'Export CSV');
  const exportNote = h('p', { class: 'help', 'aria-live': 'polite' });
  const state = { q: new URLSearchParams(), cursors: [null], page: 0 };

  async function load() {
    const q = new URLSearchParams(state.q);
    q.set('limit', String(PAGE));
    if (state.cursors[state.page]) q.set('cursor', state.cursors[state.page]);
    clearErrors(form);
    try {
      const d = await api.query(`/api/v1/audit?${q}`);
      if (!ctx.alive()) return;
      result.replaceChildren(table(['time', 'actor', 'aggregate', 'version', 'event', 'partition/offset'],
        d.items.map((e) => [fmtTime(e.occurred_at), e.actor, [`${e.aggregate_type} `, aggLink(e)],
          String(e.version), e.event_type, `${e.partition}/${e.offset}`]), `Audit events, page ${state.page + 1}`));
      state.cursors[state.page + 1] = d.next_cursor;
      prev.disabled = state.page === 0;
      next.disabled = !d.next_cursor;
    } catch (e) {
      if (ctx.alive()) showError(form, e);
    }
  }

  async function exportAs(kind) {
    exportNote.textContent = 'exporting…';
    const lines = kind === 'csv' ? [COLUMNS.join(',')] : [];
    let cursor = null;
    let n = 0;
    try {
      do {
        const q = new URLSearchParams(state.q);
        q.set('limit', '1000');
        if (cursor) q.set('cursor', cursor);
        const d = await api.query(`/api/v1/audit?${q}`);
        for (const e of d.items) {
          lines.push(kind === 'csv' ? COLUMNS.map((c) => csvCell(e[c])).join(',') : JSON.stringify(e));
          n += 1;
        }
        cursor = d.next_cursor;
      } while (cursor && n < EXPORT_MAX && ctx.alive());
    } catch (e) {
      showError(form, e);
      exportNote.textContent = '';
      return;
    }
    const blob = new Blob([lines.join('\n') + (lines.length ? '\n' : '')],
      { type: kind === 'csv' ? 'text/csv' : 'application/x-ndjson' });
    const a = h('a', { href: URL.createObjectURL(blob), download: `kcqrs-audit.${kind === 'csv' ? 'csv' : 'ndjson'}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    exportNote.textContent = `exported ${n} events${cursor ? ` (stopped at ${EXPORT_MAX}; narrow the search)` : ''}`;
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.q = filters(form);
    state.cursors = [null];
    state.page = 0;
    load();
  });
  prev.addEventListener('click', () => { if (state.page > 0) { state.page -= 1; load(); } });
  next.addEventListener('click', () => { if (state.cursors[state.page + 1]) { state.page += 1; load(); } });
  ndjson.addEventListener('click', () => exportAs('ndjson'));
  csv.addEventListener('click', () => exportAs('csv'));
  const chainNote = h('p', { id: 'chain-summary', 'aria-live': 'polite' });
  const chainBox = h('div', { class: 'table-wrap', id: 'chain' });
  let timer = null;
  const chainTick = async () => {
    try {
      const d = await api.query('/api/v1/audit/chain', { token: null });
      if (!ctx.alive()) return;
      chainNote.textContent = chainSummary(d);
      chainBox.replaceChildren(chainTable(d));
    } catch (e) {
      if (ctx.alive()) chainBox.replaceChildren(errorBox(e));
    }
    if (ctx.alive()) timer = setTimeout(chainTick, CHAIN_EVERY_MS);
  };
  root.append(h('h1', { id: 'page-title' }, 'Audit'), form, result,
    h('div', { class: 'pager' }, prev, next, ndjson, csv), exportNote,
    h('h2', {}, 'Hash chain'),
    h('p', { class: 'help' }, 'Each partition\'s chain of record hashes, checked by the query API as events ',
      'arrive (the check kcqrs-audit verify-chain makes).'),
    chainNote, chainBox);
  await Promise.all([load(), chainTick()]);
  return () => clearTimeout(timer);
}
