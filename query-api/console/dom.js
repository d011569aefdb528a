// dom.js — building the page without innerHTML: every text from the API goes
// in as a text node. Forms show each API error next to the field it names.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  // the API validates every input; its answer is what a form shows (no browser bubbles)
  if (tag === 'form') el.noValidate = true;
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
export function nextId(prefix) { uid += 1; return `${prefix}-${uid}`; }

// A labelled control: h-style attrs for the input; `name` is the API field it sends.
export function field(label, input, help) {
  const id = input.id || nextId('f');
  input.id = id;
  const wrap = h('div', { class: 'field', 'data-field': input.name || '' },
    h('label', { for: id }, label), input);
  if (help) {
    const hid = `${id}-help`;
    wrap.append(h('p', { class: 'help', id: hid }, help));
    input.setAttribute('aria-describedby', hid);
  }
  return wrap;
}

export function clearErrors(form) {
  form.querySelectorAll('.field-error, .form-error').forEach((e) => e.remove());
  form.querySelectorAll('[aria-invalid]').forEach((e) => {
    e.removeAttribute('aria-invalid');
    const d = (e.getAttribute('aria-describedby') || '').split(' ').filter((x) => !x.endsWith('-err'));
    if (d.length) e.setAttribute('aria-describedby', d.join(' ')); else e.removeAttribute('aria-describedby');
  });
}

// "actions[0].url" -> ["actions[0].url", "actions[0]", "actions"]
function prefixes(f) {
  const out = [];
  let n = f;
  while (n) {
    out.push(n);
    const m = n.replace(/(\[[^\]]*\]|\.[^.[]*)$/, '');
    if (m === n) break;
    n = m;
  }
  return out;
}

// Show an ApiError in `form`: one message under each field it names (the
// field's data-field, or its longest prefix: "actions[0].url" -> "actions"),
// the rest and the detail in an alert at the top of the form.
export function showError(form, err, extra) {
  clearErrors(form);
  const loose = [];
  for (const e of err.errors || []) {
    const f = String(e.field || '');
    let box = null;
    for (const name of prefixes(f)) {
      box = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
      if (box) break;
    }
    if (!box) { loose.push(e); continue; }
    const ctl = box.querySelector('input, select, textarea');
    const id = `${ctl ? ctl.id : nextId('x')}-err`;
    const msg = box.querySelector(`#${CSS.escape(id)}`) ||
      box.appendChild(h('p', { class: 'field-error', id }));
    msg.append(h('span', {}, f === box.dataset.field ? e.message : `${f}: ${e.message}`), ' ');
    if (ctl) {
      ctl.setAttribute('aria-invalid', 'true');
      const d = (ctl.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      if (!d.includes(id)) ctl.setAttribute('aria-describedby', [...d, id].join(' '));
    }
  }
  const top = h('div', { class: 'form-error', role: 'alert' },
    h('p', {}, h('strong', {}, `${err.status ? `${err.status} ` : ''}${err.code}: `), err.message),
    loose.length ? h('ul', {}, loose.map((e) => h('li', {}, `${e.field}: ${e.message}`))) : null,
    extra || null);
  form.prepend(top);
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
  return top;
}

// An error shown on its own (not tied to a form), e.g. a failed page load.
export function errorBox(err) {
  return h('div', { class: 'form-error', role: 'alert' },
    h('p', {}, h('strong', {}, `${err.status ? `${err.status} ` : ''}${err.code || 'error'}: `), err.message));
}

export function table(headers, rows, caption) {
  return h('table', {},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, 'nothing here'))));
}

export function link(href, text) { return h('a', { href }, text); }

export function fmtTime(t) { return t ? String(t).replace('T', ' ').replace(/\.\d+Z$/, 'Z') : ''; }
