// What the learners' pages share: who the learner is, the API with errors in plain words, and
// small DOM helpers. With auth on, the learner's token comes from the URL fragment (#token=…,
// never sent to a server) or the sign-in box and stays in this tab; in dev mode (no auth) a
// picker chooses the learner, so a newcomer can see two learners get two different pages.
'use strict';
window.Learner = (() => {
  const $ = (id) => document.getElementById(id);
  const KEY = 'tutor.learner.token';
  const st = { token: null, learner: null, me: null };

  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) n.append(c);
    return n;
  }

  // HTML the service rendered from course Markdown and sanitised (ammonia) before sending it.
  function sanitised(html) {
    const t = document.createElement('template');
    t.innerHTML = html;
    return t.content;
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function words(status, code, message, retry) {
    if (status === 0) return 'The tutor service cannot be reached. Check your connection and try again.';
    if (status === 401) return 'Your sign-in was not accepted (' + message + '). Sign in again.';
    if (status === 429) {
      if (code === 'too_many_answers') return 'That is a lot of tries on one question. Take a break and come back to it later.';
      return `Too many requests for now; try again in ${retry || 'a few'} seconds.`;
    }
    if (status >= 500) return 'The service had a problem. Try again in a moment.';
    return message;
  }

  async function api(path, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let r;
    try {
      r = await fetch(path, { method: opts.method || (body ? 'POST' : 'GET'), headers, body });
    } catch (_) { throw new ApiError(0, 'network', words(0)); }
    if (r.ok) return r.json();
    let code = 'error', message = `The service answered ${r.status}.`;
    try { const e = (await r.json()).error; code = e.code; message = e.message; } catch (_) { /* not JSON */ }
    if (r.status === 401) { sessionStorage.removeItem(KEY); signin(words(401, code, message)); }
    throw new ApiError(r.status, code, words(r.status, code, message, r.headers.get('retry-after')));
  }

  const lid = () => encodeURIComponent(st.learner);

  function statement(verb, component, extra) {
    return Object.assign({
      id: `p-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
      actor: st.learner, verb, object: { component }, timestamp: new Date().toISOString(),
    }, extra || {});
  }

  function signin(message) {
    const box = $('signin');
    if (!box) return;
    box.hidden = false;
    $('app').hidden = true;
    $('signin-msg').textContent = message || '';
    $('token').focus();
  }

  // The learner: a learner token's subject; in dev mode, ?learner=, the last one picked, or "ada".
  async function init() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    st.token = sessionStorage.getItem(KEY);
    const form = $('signin-form');
    if (form) {
      form.addEventListener('submit', (e) => {
        e.preventDefault();
        sessionStorage.setItem(KEY, $('token').value.trim());
        location.reload();
      });
    }
    try {
      st.me = await api('/v1/me');
    } catch (err) {
      if (err.status !== 401) signin(err.message);
      else if (!st.token) signin('Paste the learner token your course platform gave you.');
      return null;
    }
    const picker = $('picker-form');
    if (st.me.dev) {
      const q = new URLSearchParams(location.search).get('learner');
      st.learner = q || localStorage.getItem('tutor.dev.learner') || 'ada';
      localStorage.setItem('tutor.dev.learner', st.learner);
      if (picker) {
        picker.hidden = false;
        const input = $('learner');
        input.value = st.learner;
        picker.addEventListener('submit', (e) => {
          e.preventDefault();
          const v = input.value.trim();
          if (!v) return;
          localStorage.setItem('tutor.dev.learner', v);
          const u = new URL(location.href);
          u.searchParams.set('learner', v);
          location.href = u.toString();
        });
      }
    } else if (st.me.role === 'learner') {
      st.learner = st.me.sub;
    } else {
      signin('This page is for learners: sign in with a learner token.');
      return null;
    }
    const who = $('who');
    if (who) who.textContent = st.me.dev ? `Dev mode (no sign-in): you are learner “${st.learner}”.` : `Signed in as ${st.learner}.`;
    $('app').hidden = false;
    return st;
  }

  // Recommendations with their reasons and the learner's say on each.
  async function recommendations(into, limit) {
    let r;
    try {
      r = await api(`/v1/learners/${lid()}/recommendations?limit=${limit || 5}`);
    } catch (err) {
      into.replaceChildren(el('p', { class: 'error' }, err.message));
      return;
    }
    if (!r.recommendations.length) {
      into.replaceChildren(el('p', { class: 'muted' }, 'Nothing to suggest right now.'));
      return;
    }
    const list = el('ul', { class: 'recs' });
    for (const rec of r.recommendations) {
      const say = (feedback, label) => el('button', {
        type: 'button', class: 'ghost', 'data-feedback': feedback,
        'aria-label': `${label}: ${rec.name}`,
        onclick: async () => {
          try {
            await api(`/v1/learners/${lid()}/recommendations/${encodeURIComponent(rec.id)}/feedback`, { body: { feedback } });
            await recommendations(into, limit);
            const first = into.querySelector('a, button');
            if (first) first.focus();
          } catch (err) { into.prepend(el('p', { class: 'error', role: 'alert' }, err.message)); }
        },
      }, label);
      list.append(el('li', { 'data-rec': rec.id, class: rec.kind },
        el('a', { href: `/components/${rec.component_id}${location.search}` }, rec.name), ' ',
        el('span', { class: 'tag' }, rec.kind.replace('_', ' ')), el('br'),
        el('span', {}, rec.reason), el('br'),
        el('span', { class: 'muted' }, `${rec.title} · ${rec.level} · ${rec.format.replace('_', ' ')}`),
        el('div', { class: 'actions' }, say('helpful', 'Helpful'), say('not_now', 'Not now'), say('already_know', 'I know this'), say('dismiss', 'Dismiss'))));
    }
    into.replaceChildren(list);
  }

  return { st, el, sanitised, api, init, statement, recommendations, lid, ApiError };
})();
