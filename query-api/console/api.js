// api.js — the console's only way to the server: the query API on this origin,
// the commands API at /console/config.json's commands_url (CORS). The API key
// lives in sessionStorage only (never in a URL); every error answer
// (application/problem+json) becomes an ApiError with its code, detail and
// per-field errors.

const KEY = 'kcqrs.console.key';
const WHO = 'kcqrs.console.who';
let settings = null;
let lastToken = null;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || `http_${status}`;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.problem = problem;
  }
}

// An error answer: application/problem+json (RFC 9457) with "code", "detail"
// and "errors"; anything else (a proxy's page, an empty body) by its status.
export function problemOf(status, body) {
  if (body && typeof body === 'object' && (typeof body.code === 'string' || typeof body.type === 'string')) {
    return { ...body, status: body.status || status, detail: body.detail || body.title };
  }
  return { status, code: `http_${status}`, detail: `the server answered HTTP ${status}`, errors: [] };
}

// The version a 412 names: in the error item for "version" (or top level).
export function currentVersion(e) {
  const item = e.errors.find((x) => x && x.current_version !== undefined);
  if (item) return item.current_version;
  return e.problem ? e.problem.current_version : undefined;
}

export async function config() {
  if (settings === null) {
    const r = await fetch('/console/config.json', { cache: 'no-store' });
    if (!r.ok) throw new ApiError(r.status, problemOf(r.status, null));
    settings = await r.json();
  }
  return settings;
}

export function key() { return sessionStorage.getItem(KEY); }
export function who() {
  try { return JSON.parse(sessionStorage.getItem(WHO) || 'null'); } catch { return null; }
}
export function signedIn(k, w) {
  sessionStorage.setItem(KEY, k);
  sessionStorage.setItem(WHO, JSON.stringify(w));
}
export function signOut() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(WHO);
  sessionStorage.clear();
  lastToken = null;
}

// The consistency token of the last command: the next read waits for it.
export function token() { return lastToken; }

async function call(base, method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const k = opts.key !== undefined ? opts.key : key();
  if (k) headers.Authorization = `Bearer ${k}`;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.ifMatch !== undefined && opts.ifMatch !== null) headers['If-Match'] = `"${opts.ifMatch}"`;
  if (opts.token) headers['X-Consistency-Token'] = opts.token;
  let r;
  try {
    r = await fetch(base + path, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
  } catch (e) {
    throw new ApiError(0, {
      code: 'unreachable',
      detail: `cannot reach ${base || 'the query API'} (${e.message}); is it running, and does its KCQRS_CORS_ORIGINS allow this page?`,
    });
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) throw new ApiError(r.status, problemOf(r.status, data));
  if (opts.raw) return { data, response: r };
  return data;
}

// GET on the query API; waits for the last command's token unless told not to.
export function query(path, opts = {}) {
  const o = { ...opts };
  if (o.token === undefined) o.token = lastToken;
  return call('', 'GET', path, o);
}

// A command on the commands API; remembers its consistency token.
export async function command(method, path, opts = {}) {
  const s = await config();
  const d = await call(s.commands_url, method, path, opts);
  if (d && typeof d.consistency_token === 'string') lastToken = d.consistency_token;
  return d;
}

export async function commandsReady() {
  const s = await config();
  try {
    const r = await fetch(`${s.commands_url}/ready`, { cache: 'no-store', credentials: 'omit' });
    const t = await r.text();
    let d = null;
    try { d = JSON.parse(t); } catch { d = null; }
    return { ok: r.ok, status: r.status, body: d, url: s.commands_url };
  } catch (e) {
    return { ok: false, status: 0, body: null, url: s.commands_url, error: e.message };
  }
}

export function signInWith(k) {
  return call('', 'GET', '/api/v1/whoami', { key: k });
}
