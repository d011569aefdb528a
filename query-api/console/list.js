// list.js — a list read page by page with the API's cursors: the caller's
// filter form, the result table and the pager (resources, workflows, runs).
import * as api from './api.js';
import { h, table, showError, clearErrors } from './dom.js';

// opts: path (the API list route), filter (a form), params(filter) -> the
// filter's query parameters ({name: value}, empty values left out), initial
// (the parameters before the first Apply), columns, row(item) -> cells,
// caption, every (ms: reread the first page that often; 0 = never), live
// (announce changes to screen readers; off for a list that polls).
// Returns { result, pager, load, stop }.
export function pagedList(ctx, opts) {
  const state = { params: opts.initial || {}, cursors: [null], page: 0 };
  const result = h('div', opts.live === false ? { class: 'table-wrap' } :
    { class: 'table-wrap', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', class: 'secondary' }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary' }, 'Next page');
  const pager = h('div', { class: 'pager' }, prev, next);
  let timer = null;

  async function load() {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: '20' });
    for (const [k, v] of Object.entries(state.params)) if (v) q.set(k, v);
    if (state.cursors[state.page]) q.set('cursor', state.cursors[state.page]);
    try {
      const d = await api.query(`${opts.path}?${q}`);
      if (!ctx.alive()) return;
      clearErrors(opts.filter);
      result.replaceChildren(table(opts.columns, d.items.map(opts.row),
        `${opts.caption}, page ${state.page + 1}`));
      state.cursors[state.page + 1] = d.next_cursor;
      prev.disabled = state.page === 0;
      next.disabled = !d.next_cursor;
    } catch (e) {
      if (ctx.alive()) showError(opts.filter, e);
    }
    if (opts.every && ctx.alive() && state.page === 0) timer = setTimeout(load, opts.every);
  }
  opts.filter.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.params = opts.params(opts.filter);
    state.cursors = [null];
    state.page = 0;
    load();
  });
  prev.addEventListener('click', () => { if (state.page > 0) { state.page -= 1; load(); } });
  next.addEventListener('click', () => { if (state.cursors[state.page + 1]) { state.page += 1; load(); } });
  return { result, pager, load, stop: () => clearTimeout(timer) };
}
