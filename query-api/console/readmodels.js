// readmodels.js — the read models: each one's availability, position and lag
// per partition (from /api/v1/status), the named point-in-time snapshots
// kcqrs-replay built (/api/v1/snapshots) and the last rebuild, snapshot and
// verify results (/api/v1/replay/runs); refreshed every 2 s.
import * as api from './api.js';
import { h, table, errorBox, fmtTime } from './dom.js';

const EVERY_MS = 2000;

function snapshotTable(items) {
  return table(['name', 'built', 'events (sum of positions)', 'read with'],
    items.map((s) => {
      const sum = Object.values(s.positions || {}).reduce((a, b) => a + Number(b), 0);
      return [s.name, fmtTime(s.built_at), s.error ? `unreadable: ${s.error}` : String(sum),
        h('code', {}, `?snapshot=${s.name}`)];
    }), 'Snapshots');
}

const OUTCOME = {
  succeeded: 'succeeded', differences: 'differences found', failed: 'failed', interrupted: 'interrupted',
};

function runsTable(items) {
  return table(['kind', 'target', 'started', 'finished', 'events', 'outcome', 'differences', 'detail'],
    items.map((r) => [r.kind + (r.name ? ` ${r.name}` : ''), r.target, fmtTime(r.started_at),
      fmtTime(r.finished_at), String(r.events),
      h('span', { class: r.outcome === 'succeeded' ? 'state-ok' : 'state-bad', 'data-outcome': r.outcome },
        OUTCOME[r.outcome] || r.outcome),
      r.differences === null ? '' : String(r.differences),
      r.detail ? h('span', { class: 'detail' }, r.detail) : '']), 'Replay runs');
}

export async function render(root, ctx) {
  root.append(h('h1', { id: 'page-title' }, 'Read models'));
  const box = h('div', {});
  const err = h('div', { 'aria-live': 'polite' });
  root.append(err, box);
  let timer = null;
  const tick = async () => {
    try {
      const [st, snaps, runs] = await Promise.all([api.query('/api/v1/status', { token: null }),
        api.query('/api/v1/snapshots', { token: null }),
        api.query('/api/v1/replay/runs', { token: null })]);
      if (!ctx.alive()) return;
      err.replaceChildren();
      const parts = [];
      for (const [name, m] of Object.entries(st.read_models || {})) {
        const rows = Object.entries((m && m.positions) || {}).map(([tp, p]) => [tp, String(p.next_offset),
          p.end_offset === null ? '' : String(p.end_offset), p.lag === null ? '' : String(p.lag)]);
        parts.push(h('h2', {}, name === 'lmdb' ? 'LMDB (points and lists)' : 'PostgreSQL (history and audit)'),
          h('p', {}, m && m.available ? `available; total lag ${m.lag === null ? 'unknown' : m.lag}` : 'unavailable'),
          h('div', { class: 'table-wrap' }, table(['topic:partition', 'position', 'end offset', 'lag'], rows,
            `${name} positions`)));
      }
      parts.push(h('h2', {}, 'Point-in-time snapshots'),
        h('p', { class: 'help' }, 'Built with kcqrs-replay rebuild --until TIME --name NAME; ',
          'every read route takes ?snapshot=NAME.'),
        h('div', { class: 'table-wrap' }, snapshotTable(snaps.items || [])),
        h('h2', {}, 'Last rebuild, snapshot and verify runs'),
        h('p', { class: 'help' }, 'Every kcqrs-replay run records its result, newest first.'),
        h('div', { class: 'table-wrap', id: 'replay-runs', tabindex: '0', role: 'region',
          'aria-label': 'Replay runs (scrolls sideways)' }, runsTable(runs.items || [])));
      box.replaceChildren(...parts);
    } catch (e) {
      if (ctx.alive()) err.replaceChildren(errorBox(e));
    }
    if (ctx.alive()) timer = setTimeout(tick, EVERY_MS);
  };
  await tick();
  return () => clearTimeout(timer);
}
