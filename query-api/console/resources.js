// resources.js — the resource list (status filter, pages), create, and one
// resource's page: its fields, edit and delete with If-Match (a stale version
// shows the conflict and offers to reload), and its event history.
import * as api from './api.js';
import { h, field, table, showError, clearErrors, errorBox, link, fmtTime } from './dom.js';
import { pagedList } from './list.js';

const STATUSES = ['active', 'inactive', 'archived'];

function statusSelect(name, value, withAny) {
  const s = h('select', { name },
    withAny ? h('option', { value: '' }, 'any') : null,
    STATUSES.map((x) => h('option', { value: x, selected: x === value }, x)));
  return s;
}

function listPage(root, ctx) {
  const filter = h('form', { class: 'inline', 'aria-label': 'Filter resources' },
    field('Status', statusSelect('status', '', true)),
    h('button', { type: 'submit' }, 'Apply'));
  const list = pagedList(ctx, {
    path: '/api/v1/resources', filter, caption: 'Resources',
    params: (f) => ({ status: f.elements.status.value }),
    columns: ['id', 'name', 'status', 'version', 'updated'],
    row: (r) => [link(`#/resources/${encodeURIComponent(r.id)}`, r.id), r.name, r.status,
      String(r.version), fmtTime(r.updated_at)],
  });
  root.append(h('h1', { id: 'page-title' }, 'Resources'));
  if (ctx.can('writer')) root.append(createForm(ctx, list.load));
  root.append(h('h2', {}, 'List'), filter, list.result, list.pager);
  return list.load();
}

function createForm(ctx, reload) {
  const notice = h('div', { 'aria-live': 'polite' });
  const form = h('form', { 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, 'Create a resource'),
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' })),
    field('Description', h('textarea', { name: 'description', rows: 3 })),
    field('Status', statusSelect('status', 'active', false)),
    field('Id (optional)', h('input', { name: 'id', autocomplete: 'off' }), 'Leave empty for a new UUID.'),
    h('button', { type: 'submit' }, 'Create'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const el = form.elements;
    const body = { name: el.name.value, description: el.description.value, status: el.status.value };
    if (el.id.value) body.id = el.id.value;
    clearErrors(form);
    notice.replaceChildren();
    try {
      const d = await api.command('POST', '/api/v1/resources', { body });
      form.reset();
      notice.replaceChildren(h('p', { class: 'notice', role: 'status' }, 'Created ',
        link(`#/resources/${encodeURIComponent(d.id)}`, d.id), ` (version ${d.version}).`));
      await reload();
    } catch (e) {
      showError(form, e);
    }
  });
  return h('div', {}, form, notice);
}

async function detailPage(root, ctx, id) {
  const path = `/api/v1/resources/${encodeURIComponent(id)}`;
  root.append(h('p', {}, link('#/resources', '← All resources')),
    h('h1', { id: 'page-title' }, `Resource ${id}`));
  const body = h('div', {});
  root.append(body);

  async function load() {
    const r = await api.query(path);
    if (!ctx.alive()) return;
    const props = h('dl', { class: 'props' },
      ['name', 'description', 'status', 'version', 'created_at', 'updated_at'].map((k) => [
        h('dt', {}, k), h('dd', { 'data-prop': k }, String(r[k] ?? ''))]));
    body.replaceChildren(props);
    if (ctx.can('writer')) body.append(editForm(r), deleteForm(r));
    body.append(await history());
  }

  function editForm(r) {
    const form = h('form', { 'aria-labelledby': 'edit-title' },
      h('h2', { id: 'edit-title' }, `Edit (version ${r.version})`),
      field('Name', h('input', { name: 'name', value: r.name, autocomplete: 'off' })),
      field('Description', h('textarea', { name: 'description', rows: 3 }, r.description || '')),
      field('Status', statusSelect('status', r.status, false)),
      h('button', { type: 'submit' }, 'Save'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const el = form.elements;
      const changes = {};
      if (el.name.value !== r.name) changes.name = el.name.value;
      if (el.description.value !== (r.description || '')) changes.description = el.description.value;
      if (el.status.value !== r.status) changes.status = el.status.value;
      clearErrors(form);
      if (!Object.keys(changes).length) {
        showError(form, { code: 'no_change', message: 'nothing was changed', errors: [] });
        return;
      }
      try {
        await api.command('PUT', path, { body: changes, ifMatch: r.version });
        await load();
      } catch (e) {
        showConflictOr(form, e, r);
      }
    });
    return form;
  }

  function showConflictOr(form, e, r) {
    if (e.status !== 412) { showError(form, e); return; }
    const cur = api.currentVersion(e);
    const reload = h('button', { type: 'button', class: 'secondary' }, 'Reload the current version');
    reload.addEventListener('click', () => load());
    showError(form, e, h('p', {},
      `Someone changed this resource after you loaded version ${r.version}` +
      `${cur !== undefined ? ` (it is now at version ${cur})` : ''}. Your edit was not saved. `, reload));
  }

  function deleteForm(r) {
    const form = h('form', { 'aria-labelledby': 'delete-title' },
      h('h2', { id: 'delete-title' }, 'Delete'),
      h('div', { class: 'field', 'data-field': 'confirm' },
        h('label', {}, h('input', { type: 'checkbox', name: 'confirm' }), ` Yes, delete version ${r.version}`)),
      h('button', { type: 'submit', class: 'danger' }, 'Delete'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!form.elements.confirm.checked) {
        showError(form, { code: 'validation_failed', message: 'tick the box to confirm',
          errors: [{ field: 'confirm', message: 'required' }] });
        return;
      }
      try {
        await api.command('DELETE', path, { ifMatch: r.version });
        ctx.go('#/resources');
      } catch (e) {
        showConflictOr(form, e, r);
      }
    });
    return form;
  }

  async function history() {
    const box = h('div', { class: 'table-wrap' }, h('h2', {}, 'Event history'));
    try {
      const d = await api.query(`${path}/events?limit=100`);
      box.append(table(['version', 'event', 'time', 'actor', 'payload'],
        d.items.map((e) => [String(e.version), e.event_type, fmtTime(e.occurred_at), e.actor,
          h('code', {}, JSON.stringify(e.payload))]), 'Events, oldest first'));
      if (d.next_cursor) box.append(h('p', { class: 'muted' }, 'Only the first 100 events are shown.'));
    } catch (e) {
      box.append(errorBox(e));
    }
    return box;
  }

  await load();
}

export function render(root, ctx) {
  if (ctx.arg) return detailPage(root, ctx, ctx.arg);
  return listPage(root, ctx);
}
