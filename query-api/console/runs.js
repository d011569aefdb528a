// runs.js — runs by workflow and status (pages, refreshed every 3 s on the
// first page), and one run's timeline: every step and every attempt (status
// code or error, duration, next delay, delivery id), refreshed every second
// while the run is pending or running.
import * as api from './api.js';
import { h, field, table, errorBox, link, fmtTime } from './dom.js';
import { pagedList } from './list.js';

const STATUSES = ['pending', 'running', 'succeeded', 'failed'];
const LIST_EVERY_MS = 3000;
const RUN_EVERY_MS = 1000;

function badge(s) { return h('span', { class: `state-${s}` }, s); }

function listPage(root, ctx, workflowId) {
  const filter = h('form', { class: 'inline', 'aria-label': 'Filter runs' },
    field('Workflow id', h('input', { name: 'workflow_id', value: workflowId, autocomplete: 'off' })),
    field('Status', h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
      STATUSES.map((s) => h('option', { value: s }, s)))),
    h('button', { type: 'submit' }, 'Apply'));
  const list = pagedList(ctx, {
    path: '/api/v1/runs', filter, caption: 'Runs', every: LIST_EVERY_MS, live: false,
    initial: { workflow_id: workflowId },
    params: (f) => ({ workflow_id: f.elements.workflow_id.value.trim(), status: f.elements.status.value }),
    columns: ['run', 'workflow', 'status', 'trigger', 'created', 'updated'],
    row: (r) => [link(`#/runs/${encodeURIComponent(r.id)}`, r.id),
      link(`#/workflows/${encodeURIComponent(r.workflow_id)}`, r.workflow_id), badge(r.status),
      r.trigger, fmtTime(r.created_at), fmtTime(r.updated_at)],
  });
  root.append(h('h1', { id: 'page-title' }, 'Runs'), filter, list.result, list.pager);
  return list.load().then(() => list.stop);
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
