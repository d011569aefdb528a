// runs.js — runs by workflow and status (pages, refreshed every 3 s on the
// first page), and one run's timeline: every step and every attempt (status
// code or error, duration, next delay, delivery id), refreshed every second
// while the run is pending or running.
import * as api from './api.js';
import { h, field, table, showError, clearErrors, errorBox, link, fmtTime } from './dom.js';

const STATUSES = ['pending', 'running', 'succeeded', 'failed'];
const LIST_EVERY_MS = 3000;
const RUN_EVERY_MS = 1000;

function badge(s) { return h('span', { class: `state-${s}` }, s); }

function listPage(root, ctx, workflowId) {
  const state = { workflow: workflowId || '', status: '', cursors: [null], page: 0 };
  const filter = h('form', { class: 'inline', 'aria-label': 'Filter runs' },
    field('Workflow id', h('input', { name: 'workflow_id', value: state.workflow, autocomplete: 'off' })),
    field('Status', h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
      STATUSES.map((s) => h('option', { value: s }, s)))),
    h('button', { type: 'submit' }, 'Apply'));
  const result = h('div', { class: 'table-wrap' });
  const prev = h('button', { type: 'button', class: 'secondary' }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next page');
  let timer = null;

  async function load() {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: '20' });
    if (state.workflow) q.set('workflow_id', state.workflow);
    if (state.status) q.set('status', state.status);
    if (state.cursors[state.page]) q.set('cursor', state.cursors[state.page]);
    try {
      const d = await api.query(`/api/v1/runs?${q}`);
      if (!ctx.alive()) return;
      clearErrors(filter);
      result.replaceChildren(table(['run', 'workflow', 'status', 'trigger', 'created', 'updated'],
        d.items.map((r) => [link(`#/runs/${encodeURIComponent(r.id)}`, r.id),
          link(`#/workflows/${encodeURIComponent(r.workflow_id)}`, r.workflow_id), badge(r.status),
          r.trigger, fmtTime(r.created_at), fmtTime(r.updated_at)]), `Runs, page ${state.page + 1}`));
      state.cursors[state.page + 1] = d.next_cursor;
      prev.disabled = state.page === 0;
      next.disabled = !d.next_cursor;
    } catch (e) {
      if (ctx.alive()) showError(filter, e);
    }
    if (ctx.alive() && state.page === 0) timer = setTimeout(load, LIST_EVERY_MS);
  }
  filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.workflow = filter.elements.workflow_id.value.trim();
    state.status = filter.elements.status.value;
    state.cursors = [null];
    state.page = 0;
    load();
  });
  prev.addEventListener('click', () => { if (state.page > 0) { state.page -= 1; load(); } });
  next.addEventListener('click', () => { if (state.cursors[state.page + 1]) { state.page += 1; load(); } });
  root.append(h('h1', { id: 'page-title' }, 'Runs'), filter, result, h('div', { class: 'pager' }, prev, next));
  return load().then(() => () => clearTimeout(timer));
}

function attemptRows(step) {
  return (step.attempts || []).map((a) => [String(a.attempt),
    a.status_code !== undefined ? `HTTP ${a.status_code}` : (a.error || ''),
    fmtTime(a.at), `${a.duration_ms} ms`,
    a.next_delay_ms === null || a.next_delay_ms === undefined ? '—' : `${a.next_delay_ms} ms`,
    h('code', {}, a.delivery_id || '')]);
}

async function runPage(root, ctx, id) {
  const path = `/api/v1/runs/${encodeURIComponent(id)}`;
  root.append(h('p', {}, link('#/runs', '← All runs')), h('h1', { id: 'page-title' }, `Run ${id}`));
  const live = h('p', { 'aria-live': 'polite', id: 'run-status' });
  const body = h('div', {});
  const err = h('div', {});
  root.append(live, err, body);
  let timer = null;

  async function load() {
    try {
      const r = await api.query(path);
      if (!ctx.alive()) return;
      err.replaceChildren();
      live.replaceChildren('Status: ', badge(r.status),
        r.status === 'pending' || r.status === 'running' ? ' (updating live)' : '');
      body.replaceChildren(
        h('dl', { class: 'props' },
          h('dt', {}, 'workflow'), h('dd', {}, link(`#/workflows/${encodeURIComponent(r.workflow_id)}`,
            `${r.workflow_id} (version ${r.workflow_version})`)),
          h('dt', {}, 'trigger'), h('dd', {}, r.trigger),
          h('dt', {}, 'created'), h('dd', {}, fmtTime(r.created_at)),
          h('dt', {}, 'updated'), h('dd', {}, fmtTime(r.updated_at)),
          r.error ? [h('dt', {}, 'error'), h('dd', {}, r.error)] : null),
        h('h2', {}, 'Payload'), h('pre', {}, JSON.stringify(r.payload, null, 2)),
        h('h2', {}, 'Timeline'),
        ...(r.steps || []).map((s) => h('div', { class: 'table-wrap' },
          table(['attempt', 'result', 'at', 'duration', 'next delay', 'delivery id'], attemptRows(s),
            `Step ${s.index}${s.name ? ` ${s.name}` : ''} (${s.type}): ${s.status}`))));
      if (r.status === 'pending' || r.status === 'running') timer = setTimeout(load, RUN_EVERY_MS);
    } catch (e) {
      if (!ctx.alive()) return;
      err.replaceChildren(errorBox(e));
      if (e.status !== 404 && e.status !== 400) timer = setTimeout(load, RUN_EVERY_MS);
    }
  }
  await load();
  return () => clearTimeout(timer);
}

export function render(root, ctx) {
  if (ctx.arg.startsWith('workflow=')) return listPage(root, ctx, ctx.arg.slice('workflow='.length));
  if (ctx.arg) return runPage(root, ctx, ctx.arg);
  return listPage(root, ctx, '');
}
