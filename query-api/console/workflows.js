// workflows.js — the workflow list (enabled filter, pages), create, and one
// workflow's page: edit name and actions (the API's per-field errors under
// the field they name), enable/disable, rotate the webhook secret (shown
// once), trigger a run with a payload, and its event history.
import * as api from './api.js';
import { h, field, showError, clearErrors, errorBox, link, fmtTime } from './dom.js';
import { pagedList } from './list.js';

const EXAMPLE = '[\n  {"type": "http", "name": "notify", "method": "POST",\n   "url": "https://hooks.example/notify"}\n]';

// Parse a JSON textarea; on a syntax error show it under the field and return undefined.
function jsonField(form, name, text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    showError(form, { code: 'validation_failed', message: `${name} is not valid JSON`,
      errors: [{ field: name, message: `not valid JSON (${e.message}); ${what}` }] });
    return undefined;
  }
}

// The one-time secret: shown until dismissed, never stored.
function secretBox(secret) {
  const box = h('div', { class: 'notice', role: 'status' },
    h('p', {}, 'Webhook secret (shown once; copy it now): ', h('code', { class: 'secret' }, secret)));
  const done = h('button', { type: 'button', class: 'secondary' }, 'I have copied it');
  done.addEventListener('click', () => box.remove());
  box.append(done);
  return box;
}

function listPage(root, ctx) {
  const filter = h('form', { class: 'inline', 'aria-label': 'Filter workflows' },
    field('Enabled', h('select', { name: 'enabled' }, h('option', { value: '' }, 'any'),
      h('option', { value: 'true' }, 'enabled'), h('option', { value: 'false' }, 'disabled'))),
    h('button', { type: 'submit' }, 'Apply'));
  const list = pagedList(ctx, {
    path: '/api/v1/workflows', filter, caption: 'Workflows',
    params: (f) => ({ enabled: f.elements.enabled.value }),
    columns: ['id', 'name', 'enabled', 'actions', 'version', 'updated'],
    row: (w) => [link(`#/workflows/${encodeURIComponent(w.id)}`, w.id), w.name,
      w.enabled ? 'yes' : 'no', String((w.actions || []).length), String(w.version), fmtTime(w.updated_at)],
  });
  root.append(h('h1', { id: 'page-title' }, 'Workflows'));
  if (ctx.can('writer')) root.append(createForm(list.load));
  root.append(h('h2', {}, 'List'), filter, list.result, list.pager);
  return list.load();
}

function createForm(reload) {
  const notice = h('div', { 'aria-live': 'polite' });
  const form = h('form', { 'aria-labelledby': 'wf-create-title' },
    h('h2', { id: 'wf-create-title' }, 'Create a workflow'),
    field('Name', h('input', { name: 'name', autocomplete: 'off' })),
    h('div', { class: 'field', 'data-field': 'enabled' },
      h('label', {}, h('input', { type: 'checkbox', name: 'enabled', checked: true }), ' Enabled')),
    field('Webhook secret (optional)', h('input', { name: 'secret', type: 'password', autocomplete: 'new-password' }),
      'Leave empty and the server makes one, shown once.'),
    field('Actions (JSON array)', h('textarea', { name: 'actions', rows: 6 }, EXAMPLE),
      'Each action: {"type":"http","url",...} or {"type":"email","to":[...],"subject",...}.'),
    h('button', { type: 'submit' }, 'Create workflow'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const el = form.elements;
    clearErrors(form);
    notice.replaceChildren();
    const actions = jsonField(form, 'actions', el.actions.value, 'expected an array of actions');
    if (actions === undefined) return;
    const body = { name: el.name.value, enabled: el.enabled.checked, actions };
    if (el.secret.value) body.secret = el.secret.value;
    try {
      const d = await api.command('POST', '/api/v1/workflows', { body });
      el.secret.value = '';
      notice.replaceChildren(h('p', { class: 'notice', role: 'status' }, 'Created workflow ',
        link(`#/workflows/${encodeURIComponent(d.id)}`, d.id), '.'));
      if (d.webhook_secret) notice.append(secretBox(d.webhook_secret));
      await reload();
    } catch (e) {
      showError(form, e);
    }
  });
  return h('div', {}, form, notice);
}

async function detailPage(root, ctx, id) {
  const path = `/api/v1/workflows/${encodeURIComponent(id)}`;
  root.append(h('p', {}, link('#/workflows', '← All workflows')),
    h('h1', { id: 'page-title' }, `Workflow ${id}`));
  const secretArea = h('div', { 'aria-live': 'polite' });
  const body = h('div', {});
  root.append(secretArea, body);

  async function load() {
    const w = await api.query(path);
    if (!ctx.alive()) return;
    body.replaceChildren(
      h('dl', { class: 'props' },
        h('dt', {}, 'name'), h('dd', { 'data-prop': 'name' }, w.name),
        h('dt', {}, 'enabled'), h('dd', { 'data-prop': 'enabled' }, w.enabled ? 'yes' : 'no'),
        h('dt', {}, 'version'), h('dd', { 'data-prop': 'version' }, String(w.version)),
        h('dt', {}, 'updated'), h('dd', {}, fmtTime(w.updated_at)),
        h('dt', {}, 'runs'), h('dd', {}, link(`#/runs/workflow=${encodeURIComponent(w.id)}`, 'this workflow\'s runs'))),
      h('h2', {}, 'Actions'), h('pre', {}, JSON.stringify(w.actions, null, 2)));
    if (ctx.can('writer')) body.append(triggerForm(w), controls(w), editForm(w));
  }

  async function put(form, w, changes) {
    clearErrors(form);
    try {
      const d = await api.command('PUT', path, { body: changes, ifMatch: w.version });
      if (d && d.webhook_secret) secretArea.replaceChildren(secretBox(d.webhook_secret));
      await load();
    } catch (e) {
      if (e.status === 412) {
        const reload = h('button', { type: 'button', class: 'secondary' }, 'Reload the current version');
        reload.addEventListener('click', () => load());
        const cur = api.currentVersion(e);
        showError(form, e, h('p', {}, `This workflow changed after you loaded version ${w.version}` +
          `${cur !== undefined ? ` (it is now at version ${cur})` : ''}. Your change was not saved. `, reload));
      } else {
        showError(form, e);
      }
    }
  }

  function controls(w) {
    const form = h('form', { 'aria-labelledby': 'wf-controls-title' },
      h('h2', { id: 'wf-controls-title' }, 'Switches'));
    const toggle = h('button', { type: 'button' }, w.enabled ? 'Disable' : 'Enable');
    toggle.addEventListener('click', () => put(form, w, { enabled: !w.enabled }));
    const rotate = h('button', { type: 'button', class: 'secondary' }, 'Rotate webhook secret');
    rotate.addEventListener('click', () => put(form, w, { rotate_secret: true }));
    form.append(h('div', { class: 'pager' }, toggle, rotate));
    return form;
  }

  function editForm(w) {
    const form = h('form', { 'aria-labelledby': 'wf-edit-title' },
      h('h2', { id: 'wf-edit-title' }, `Edit (version ${w.version})`),
      field('Name', h('input', { name: 'name', value: w.name, autocomplete: 'off' })),
      field('Actions (JSON array)', h('textarea', { name: 'actions', rows: 8 }, JSON.stringify(w.actions, null, 2))),
      h('button', { type: 'submit' }, 'Save'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const actions = jsonField(form, 'actions', form.elements.actions.value, 'expected an array of actions');
      if (actions === undefined) return;
      const changes = {};
      if (form.elements.name.value !== w.name) changes.name = form.elements.name.value;
      if (JSON.stringify(actions) !== JSON.stringify(w.actions)) changes.actions = actions;
      if (!Object.keys(changes).length) {
        showError(form, { code: 'no_change', message: 'nothing was changed', errors: [] });
        return;
      }
      put(form, w, changes);
    });
    return form;
  }

  function triggerForm(w) {
    const form = h('form', { 'aria-labelledby': 'wf-trigger-title' },
      h('h2', { id: 'wf-trigger-title' }, 'Trigger a run'),
      field('Payload (JSON object)', h('textarea', { name: 'payload', rows: 3 }, '{}')),
      h('button', { type: 'submit', disabled: !w.enabled }, 'Trigger run'),
      w.enabled ? null : h('p', { class: 'help' }, 'Enable the workflow to trigger it.'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const payload = jsonField(form, 'payload', form.elements.payload.value, 'expected a JSON object');
      if (payload === undefined) return;
      try {
        const d = await api.command('POST', `${path}/runs`, { body: payload });
        ctx.go(`#/runs/${encodeURIComponent(d.run_id)}`);
      } catch (e) {
        showError(form, e);
      }
    });
    return form;
  }

  await load();
}

export function render(root, ctx) {
  if (ctx.arg) return detailPage(root, ctx, ctx.arg);
  return listPage(root, ctx);
}
