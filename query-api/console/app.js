// app.js — sign-in, sign-out, the page router (#/page[/id]) and role checks.
// Each page module exports render(root, ctx) and may return a stop function
// (its polling timers) that runs when the page is left.
import * as api from './api.js';
import { h, showError, errorBox } from './dom.js';
import * as status from './status.js';
import * as resources from './resources.js';
import * as workflows from './workflows.js';
import * as runs from './runs.js';
import * as audit from './audit.js';
import * as readmodels from './readmodels.js';

const PAGES = {
  status: { mod: status, role: 'reader', title: 'Status' },
  resources: { mod: resources, role: 'reader', title: 'Resources' },
  workflows: { mod: workflows, role: 'reader', title: 'Workflows' },
  runs: { mod: runs, role: 'reader', title: 'Runs' },
  audit: { mod: audit, role: 'auditor', title: 'Audit' },
  readmodels: { mod: readmodels, role: 'reader', title: 'Read models' },
};

let stop = null;
let generation = 0;

function can(role) {
  const w = api.who();
  if (!w || !Array.isArray(w.roles)) return false;
  return w.roles.includes('admin') || w.roles.includes(role);
}

function showSignIn() {
  document.getElementById('signin').hidden = false;
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  document.getElementById('page').replaceChildren();
  document.title = 'Sign in — kcqrs console';
  document.getElementById('signin-key').focus();
}

function showChrome() {
  const w = api.who();
  document.getElementById('signin').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-name').textContent =
    `${w.actor} (${w.roles.join(', ')})`;
  document.querySelectorAll('#nav li[data-role]').forEach((li) => {
    li.hidden = !can(li.dataset.role);
  });
}

function firstPage() {
  return Object.keys(PAGES).find((p) => can(PAGES[p].role));
}

async function route() {
  if (stop) { try { stop(); } catch { /* a page's cleanup never blocks navigation */ } stop = null; }
  generation += 1;
  const mine = generation;
  if (!api.key()) { showSignIn(); return; }
  showChrome();
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  let name = parts[0];
  if (!PAGES[name]) {
    const f = firstPage();
    if (!f) {
      document.getElementById('page').replaceChildren(
        h('p', { role: 'alert' }, 'This key has none of the roles the console pages need (reader or auditor).'));
      return;
    }
    location.replace(`#/${f}`);
    return;
  }
  const page = PAGES[name];
  document.querySelectorAll('#nav a').forEach((a) => {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const root = h('section', { 'aria-labelledby': 'page-title' });
  document.getElementById('page').replaceChildren(root);
  document.title = `${page.title} — kcqrs console`;
  if (!can(page.role)) {
    root.append(h('h1', { id: 'page-title' }, page.title),
      h('p', { role: 'alert' }, `This key lacks the ${page.role} role this page needs.`));
    return;
  }
  const ctx = {
    can,
    arg: parts.slice(1).join('/'),
    alive: () => mine === generation,
    go: (hash) => { location.hash = hash; },
  };
  try {
    const s = await page.mod.render(root, ctx);
    if (typeof s === 'function') {
      if (mine === generation) stop = s; else s();
    }
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof api.ApiError && e.status === 401) { doSignOut(); return; }
    root.append(errorBox(e));
  }
  const h1 = root.querySelector('h1');
  if (h1 && document.activeElement === document.body) document.getElementById('main').focus();
}

function doSignOut() {
  if (stop) { try { stop(); } catch { /* ignore */ } stop = null; }
  api.signOut();
  // a fresh document: nothing the session showed (secrets included) stays in memory or the DOM
  location.replace('/console');
}

async function onSignIn(ev) {
  ev.preventDefault();
  const form = ev.target;
  const input = document.getElementById('signin-key');
  const k = input.value.trim();
  const btn = form.querySelector('button');
  if (!k) {
    showError(form, { status: 0, code: 'validation_failed', message: 'enter an API key',
      errors: [{ field: 'key', message: 'required' }] });
    return;
  }
  btn.disabled = true;
  try {
    const w = await api.signInWith(k);
    input.value = '';
    api.signedIn(k, w);
    form.querySelectorAll('.form-error, .field-error').forEach((e) => e.remove());
    if (!PAGES[location.hash.replace(/^#\/?/, '').split('/')[0]]) location.hash = '';
    await route();
  } catch (e) {
    showError(form, e.status === 401
      ? Object.assign(e, { errors: [{ field: 'key', message: 'this key is not valid' }] }) : e);
  } finally {
    btn.disabled = false;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('signin-form').addEventListener('submit', onSignIn);
  document.getElementById('signout').addEventListener('click', doSignOut);
  window.addEventListener('hashchange', route);
  route();
});
