// The embeddable tutor. One tag turns a content page into a page with the tutor:
//   <script src="https://tutor.example/widget.js" data-token="…" data-component="fractions-divide-ex-1"></script>
// Attributes: data-endpoint (default: where this script came from), data-token (a learner
// token; none in dev mode), data-learner (dev mode: who the learner is), data-component (the
// page's component id), data-mount (a CSS selector to render into; default: a panel at the
// bottom right), data-open ("true": start open), data-offers ("off": the host page shows the
// plan's skip offers itself). Vanilla JS, no build step, no other network
// than the endpoint. window.TutorWidget: setComponent(id), open(), ask(text).
'use strict';
(() => {
  const script = document.currentScript;
  const cfg = script ? script.dataset : {};
  const endpoint = (cfg.endpoint || (script ? new URL(script.src).origin : location.origin)).replace(/\/$/, '');
  const st = {
    token: cfg.token || null, learner: cfg.learner || null, component: cfg.component || null,
    session: null, busy: false, me: null, plan: null,
  };

  // ---- DOM helpers: text goes in as text, never as HTML ----
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

  // A small, safe Markdown: paragraphs, ## headings, - lists, **bold**, _em_ / *em*, `code`,
  // and [component-id] citations as links to the component's page.
  function inline(text, into) {
    const re = /(\*\*[^*]+\*\*|_[^_]+_|\*[^*\s][^*]*\*|`[^`]+`|\[[a-z0-9][a-z0-9-]*\])/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) into.append(text.slice(last, m.index));
      const t = m[0];
      if (t.startsWith('**')) into.append(el('strong', {}, t.slice(2, -2)));
      else if (t.startsWith('`')) into.append(el('code', {}, t.slice(1, -1)));
      else if (t.startsWith('[')) {
        const id = t.slice(1, -1);
        into.append(el('a', { href: `${endpoint}/components/${id}`, class: 'tw-cite' }, id));
      } else into.append(el('em', {}, t.slice(1, -1)));
      last = m.index + t.length;
    }
    if (last < text.length) into.append(text.slice(last));
    return into;
  }
  function markdown(text) {
    const box = el('div', { class: 'tw-md' });
    for (const block of text.split(/\n{2,}/)) {
      const lines = block.split('\n').filter((l) => l.trim());
      if (!lines.length) continue;
      const h = lines[0].match(/^(#{1,4})\s+(.*)$/);
      if (h && lines.length === 1) box.append(inline(h[2], el('p', { class: 'tw-h' })));
      else if (lines.every((l) => /^\s*([-*]|\d+\.)\s+/.test(l))) {
        const list = el(/^\s*\d/.test(lines[0]) ? 'ol' : 'ul');
        for (const l of lines) list.append(inline(l.replace(/^\s*([-*]|\d+\.)\s+/, ''), el('li')));
        box.append(list);
      } else {
        const p = el('p');
        lines.forEach((l, i) => { if (i) p.append(el('br')); inline(l.replace(/^#{1,4}\s+/, ''), p); });
        box.append(p);
      }
    }
    return box;
  }

  // ---- the API ----
  class Failure extends Error {
    constructor(status, code, message, retry) { super(message); this.status = status; this.code = code; this.retry = retry; }
  }
  function plain(status, code, message, retry) {
    if (status === 0) return 'The tutor cannot be reached right now. Check your connection and try again.';
    if (status === 401) return 'Your sign-in has expired or was not accepted. Reload the page to sign in again.';
    if (status === 403) return 'This page may not use the tutor for you (' + message + ').';
    if (status === 429) {
      const wait = retry ? ` Try again in ${retry > 90 ? Math.ceil(retry / 60) + ' minutes' : retry + ' seconds'}.` : ' Try again in a moment.';
      if (code === 'llm_budget_spent') return 'You have used today\'s tutor allowance.' + wait;
      if (code === 'too_many_turns') return 'The tutor is still answering your last question.' + wait;
      return 'That was a lot of questions at once.' + wait;
    }
    if (status >= 500) return 'The tutor had a problem answering. Try again in a moment.';
    return message;
  }
  function headers(extra) {
    const h = Object.assign({ Accept: 'application/json' }, extra || {});
    if (st.token) h.Authorization = `Bearer ${st.token}`;
    return h;
  }
  async function failure(r) {
    let code = 'error', message = `The tutor answered ${r.status}.`;
    try { const e = (await r.json()).error; code = e.code; message = e.message; } catch (_) { /* not JSON */ }
    const retry = Number(r.headers.get('retry-after')) || 0;
    return new Failure(r.status, code, plain(r.status, code, message, retry), retry);
  }
  async function api(path, body) {
    let r;
    try {
      r = await fetch(endpoint + path, body === undefined ? { headers: headers() }
        : { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
    } catch (_) { throw new Failure(0, 'network', plain(0)); }
    if (!r.ok) throw await failure(r);
    return r.json();
  }
  const learnerQuery = () => (st.me && st.me.role === 'learner' ? '' : `?learner=${encodeURIComponent(st.learner || '')}`);
  function post(verb, component, extra) {
    const stmt = Object.assign({
      id: `w-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`,
      actor: st.learner, verb, object: { component }, timestamp: new Date().toISOString(),
    }, extra || {});
    return api('/v1/events', [stmt]);
  }

  // ---- the panel ----
  const css = el('link', { rel: 'stylesheet', href: `${endpoint}/assets/widget.css` });
  document.head.append(css);
  const mount = cfg.mount ? document.querySelector(cfg.mount) : null;
  const log = el('div', { class: 'tw-log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions text', 'aria-label': 'Conversation with the tutor' });
  const status = el('p', { class: 'tw-status', role: 'status' });
  const input = el('textarea', { id: 'tw-input', rows: '2', maxlength: '4000', placeholder: 'Ask about this page…', 'aria-describedby': 'tw-keys' });
  const send = el('button', { type: 'submit', class: 'tw-primary' }, 'Send');
  const stuck = el('button', { type: 'button', class: 'tw-stuck', onclick: () => ask("I'm stuck on this page and don't understand it.") }, "I'm stuck");
  const offer = el('div', { class: 'tw-offer', hidden: true });
  const recs = el('div', { class: 'tw-recs', hidden: true });
  const form = el('form', { class: 'tw-form', onsubmit: (e) => { e.preventDefault(); ask(input.value); } },
    el('label', { for: 'tw-input', class: 'tw-sr' }, 'Your question'), input,
    el('p', { id: 'tw-keys', class: 'tw-hint' }, 'Enter sends, Shift+Enter starts a new line.'),
    el('div', { class: 'tw-row' }, send, stuck));
  const about = el('p', { class: 'tw-about' });
  const empty = () => el('p', { class: 'tw-muted tw-empty' }, 'Ask about what you are reading: answers come from the course, with their sources. Stuck? Press “I\'m stuck”.');
  log.append(empty());
  const panel = el('section', { class: 'tw-panel' + (mount ? ' tw-inline' : ''), 'aria-label': 'Tutor', id: 'tw-panel' },
    el('header', { class: 'tw-head' }, el('div', {}, el('h2', {}, 'Tutor'), about),
      mount ? null : el('button', { type: 'button', class: 'tw-close', 'aria-label': 'Close the tutor', onclick: () => toggle(false) }, '×')),
    offer, log, status, form, recs);
  const opener = el('button', { type: 'button', class: 'tw-open', 'aria-controls': 'tw-panel', 'aria-expanded': 'false', onclick: () => toggle(true) }, 'Ask the tutor');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); ask(input.value); }
  });
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !mount) toggle(false); });
  function toggle(open) {
    panel.hidden = !open;
    opener.hidden = open;
    opener.setAttribute('aria-expanded', String(open));
    (open ? input : opener).focus();
  }
  if (mount) mount.append(panel);
  else {
    document.body.append(opener, panel);
    panel.hidden = cfg.open !== 'true';
    opener.hidden = !panel.hidden;
  }
  function say(text, kind) {
    status.textContent = text || '';
    status.className = 'tw-status' + (kind ? ` tw-${kind}` : '');
  }

  // ---- messages ----
  function bubble(role, text) {
    for (const e of log.querySelectorAll('.tw-empty')) e.remove();
    const body = el('div', { class: 'tw-body' });
    const m = el('div', { class: `tw-msg tw-${role}` }, el('span', { class: 'tw-sr' }, role === 'learner' ? 'You said: ' : 'Tutor: '), body);
    if (role === 'learner') body.textContent = text; else body.append(markdown(text || ''));
    log.append(m);
    log.scrollTop = log.scrollHeight;
    return { m, body };
  }
  function finish(b, citations, component) {
    const foot = el('div', { class: 'tw-foot' });
    if (citations && citations.length) {
      foot.append(el('span', { class: 'tw-muted' }, 'Sources: '));
      citations.forEach((id, i) => {
        if (i) foot.append(', ');
        const a = el('a', { href: `${endpoint}/components/${id}` }, id);
        title(id).then((t) => { if (t) a.textContent = t; });
        foot.append(a);
      });
    }
    const rated = component || (citations && citations[0]);
    if (rated) {
      const note = el('span', { class: 'tw-muted', role: 'status' });
      const rate = (score) => async (e) => {
        for (const btn of e.target.parentNode.querySelectorAll('button')) btn.disabled = true;
        input.focus(); // the pressed button is disabled: focus goes back to the question box
        try { await post('rated', rated, { result: { score } }); note.textContent = ' Thanks — noted.'; } catch (err) { note.textContent = ' ' + err.message; }
      };
      foot.append(el('span', { class: 'tw-rate' }, ' Was this helpful? ',
        el('button', { type: 'button', onclick: rate(1), 'aria-label': 'This answer helped' }, 'Yes'),
        el('button', { type: 'button', onclick: rate(0), 'aria-label': 'This answer did not help' }, 'No'), note));
    }
    b.m.append(foot);
  }

  // a cited component's title, fetched once
  const titles = new Map();
  function title(id) {
    if (!titles.has(id)) titles.set(id, api(`/v1/components/${encodeURIComponent(id)}`).then((c) => c.title, () => null));
    return titles.get(id);
  }

  // ---- a turn: Server-Sent Events over a POST ----
  async function ask(text) {
    text = (text || '').trim();
    if (!text || st.busy) return;
    st.busy = true;
    const on = st.component; // the turn belongs to the page it was asked on
    send.disabled = stuck.disabled = true;
    input.value = '';
    say('');
    bubble('learner', text);
    const b = bubble('tutor', '');
    b.m.setAttribute('aria-busy', 'true');
    let answer = '', done = null;
    const body = { message: text, component_id: st.component || undefined, session_id: st.session || undefined };
    if (!st.me || st.me.role !== 'learner') body.learner_id = st.learner;
    try {
      let r;
      try {
        r = await fetch(endpoint + '/v1/tutor/chat', { method: 'POST', headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }), body: JSON.stringify(body) });
      } catch (_) { throw new Failure(0, 'network', plain(0)); }
      if (!r.ok) throw await failure(r);
      // for the page-weight figures: first byte, the chunk with the first delta, its rendering
      const timing = window.__twTiming = { headers: performance.now(), firstDeltaChunk: 0, firstDeltaRendered: 0, deltas: 0 };
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        let chunk;
        try { chunk = await reader.read(); } catch (_) { break; }
        if (chunk.done) break;
        const arrived = performance.now();
        buf += dec.decode(chunk.value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const raw = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = 'message', data = '';
          for (const line of raw.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
          }
          let ev;
          try { ev = JSON.parse(data || '{}'); } catch (_) { continue; }
          if (name === 'tool') say(toolWords(ev.name), 'tool');
          else if (name === 'delta') {
            answer += ev.text || '';
            say('');
            timing.deltas += 1;
            if (!timing.firstDeltaChunk) timing.firstDeltaChunk = arrived;
          }
          else if (name === 'replace') { answer = ''; say(ev.reason === 'repair' ? 'Checking the answer against the course…' : '', 'tool'); }
          else if (name === 'done') { done = ev; answer = ev.answer || answer; }
          if (name === 'delta' || name === 'replace' || name === 'done') {
            b.body.replaceChildren(markdown(answer));
            log.scrollTop = log.scrollHeight;
            if (!timing.firstDeltaRendered && answer) {
              timing.firstDeltaRendered = performance.now();
              requestAnimationFrame(() => { timing.firstDeltaPainted = performance.now(); });
            }
          }
        }
      }
      if (!done) throw new Failure(0, 'dropped', 'The connection dropped before the answer was finished. Your question is back in the box: press Send to try again.');
      if (on === st.component) {
        st.session = done.session_id;
        remember();
      }
      finish(b, done.citations, on);
      say('');
    } catch (err) {
      if (!answer) b.m.remove();
      else b.m.append(el('p', { class: 'tw-muted' }, '(interrupted)'));
      input.value = text;
      say(err.message, 'error');
    } finally {
      b.m.removeAttribute('aria-busy');
      st.busy = false;
      send.disabled = stuck.disabled = false;
      input.focus();
      if (st.pending !== undefined) { const next = st.pending; delete st.pending; window.TutorWidget.setComponent(next); }
    }
  }
  function toolWords(name) {
    return ({ retrieve_components: 'Looking in the course…', lookup_mastery: 'Checking what you know…',
      render_format: 'Choosing the best explanation…', raise_flag: 'Letting your teacher know…' })[name] || 'Thinking…';
  }

  // ---- the conversation survives a reload ----
  const storeKey = () => `tutor.session.${st.learner}.${st.component || '-'}`;
  function remember() { try { localStorage.setItem(storeKey(), st.session); } catch (_) { /* private mode */ } }
  let generation = 0;
  async function restore() {
    const mine = ++generation;
    let id = null;
    try { id = localStorage.getItem(storeKey()); } catch (_) { /* private mode */ }
    if (!id) return;
    try {
      const s = await api(`/v1/sessions/${encodeURIComponent(id)}${learnerQuery()}`);
      if (mine !== generation) return; // the page moved on to another component meanwhile
      st.session = s.session_id;
      for (const m of s.messages) {
        const b = bubble(m.role, m.content);
        if (m.role === 'tutor') finish(b, m.citations, null);
      }
    } catch (err) {
      if (err.status === 404) { try { localStorage.removeItem(storeKey()); } catch (_) { /* ignore */ } } else say(err.message, 'error');
    }
  }

  // ---- the plan's skip offer, and what to study next ----
  async function showOffer() {
    offer.hidden = true;
    offer.replaceChildren();
    if (!st.component || !st.learner || cfg.offers === 'off') return;
    try {
      st.plan = await api(`/v1/learners/${encodeURIComponent(st.learner)}/plan?component=${encodeURIComponent(st.component)}`);
    } catch (_) { return; }
    if (!st.plan.skip_offer.offered) return;
    const component = st.component;
    const choose = (accept) => async () => {
      for (const btn of offer.querySelectorAll('button')) btn.disabled = true;
      try {
        await post(accept ? 'skipped' : 'viewed', component, { result: { response: accept ? 'skip offer: accepted' : 'skip offer: declined' } });
        offer.replaceChildren(el('p', { role: 'status' }, accept ? 'Skipped. Moving on.' : 'Fine — stay as long as you like.'));
        document.dispatchEvent(new CustomEvent('tutor:skip', { detail: { component, accepted: accept } }));
      } catch (err) { say(err.message, 'error'); }
    };
    offer.append(el('p', {}, el('strong', {}, 'You seem to know this already — skip ahead?'), ' ', el('span', { class: 'tw-muted' }, st.plan.skip_offer.reason)),
      el('div', { class: 'tw-row' }, el('button', { type: 'button', class: 'tw-primary', onclick: choose(true) }, 'Skip ahead'),
        el('button', { type: 'button', onclick: choose(false) }, 'Stay on this page')));
    offer.hidden = false;
  }
  async function showRecs() {
    if (!st.learner) return;
    let r;
    try { r = await api(`/v1/learners/${encodeURIComponent(st.learner)}/recommendations?limit=3`); } catch (_) { return; }
    recs.replaceChildren(el('h3', { tabindex: '-1' }, 'What next?'));
    const list = el('ul');
    for (const rec of r.recommendations) {
      const fb = (feedback, words) => el('button', { type: 'button', 'aria-label': `${words}: ${rec.name}`, onclick: async (e) => {
        e.target.disabled = true;
        try {
          await api(`/v1/learners/${encodeURIComponent(st.learner)}/recommendations/${encodeURIComponent(rec.id)}/feedback`, { feedback });
          await showRecs();
          recs.querySelector('h3').focus(); // the pressed button is gone with the old list
        } catch (err) { say(err.message, 'error'); }
      } }, words);
      list.append(el('li', {}, el('a', { href: `${endpoint}/components/${rec.component_id}` }, rec.name), el('br'),
        el('span', { class: 'tw-muted' }, rec.reason), el('br'),
        el('span', { class: 'tw-row' }, fb('helpful', 'Helpful'), fb('not_now', 'Not now'), fb('already_know', 'I know this'), fb('dismiss', 'Dismiss'))));
    }
    recs.append(r.recommendations.length ? list : el('p', { class: 'tw-muted' }, 'Nothing to suggest right now.'));
    recs.hidden = false;
  }

  function showAbout() {
    about.textContent = '';
    if (st.component) title(st.component).then((t) => { if (t) about.textContent = `About: ${t}`; });
  }

  async function start() {
    try { st.me = await api('/v1/me'); } catch (err) { say(err.message, 'error'); return; }
    if (st.me.role === 'learner') st.learner = st.me.sub;
    if (!st.learner) { say('No learner: give the widget a learner token (or data-learner in dev mode).', 'error'); return; }
    showAbout();
    await restore();
    showOffer();
    showRecs();
  }

  window.TutorWidget = {
    setComponent(id) {
      if (st.busy) { st.pending = id; return; } // after the running turn
      if (id === st.component) return;
      st.component = id;
      st.session = null;
      log.replaceChildren(empty());
      showAbout();
      restore();
      showOffer();
    },
    open() { if (!mount) toggle(true); else input.focus(); },
    ask,
    refresh() { showOffer(); showRecs(); },
  };
  start();
})();
