// The educators' page: the struggle review queue and the course analytics, over the tutor's
// API. Vanilla JS, no build step. The token comes from the URL fragment (#token=…, never sent
// to a server) or the sign-in form, and is kept in this tab's sessionStorage only.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const KEY = 'tutor.educator.token';
  const st = { token: null, me: null, course: null, cursor: null, flag: null, analytics: null };

  // ---- tokens and the API ----
  function takeToken() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return sessionStorage.getItem(KEY);
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, opts = {}) {
    const headers = { Accept: opts.accept || 'application/json' };
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let r;
    try {
      r = await fetch(path, { method: opts.method || 'GET', headers, body });
    } catch (e) {
      throw new ApiError(0, 'network', 'The service cannot be reached. Check your connection and try again.');
    }
    if (r.ok) return opts.accept === 'text/csv' ? r.text() : r.json();
    let code = 'error', message = `The service answered ${r.status}.`;
    try {
      const e = (await r.json()).error;
      code = e.code;
      message = e.message;
    } catch (_) { /* not JSON */ }
    if (r.status === 401) {
      sessionStorage.removeItem(KEY);
      showSignin('Your token was not accepted (' + message + '). Paste a new one.');
    }
    if (r.status === 429) message = 'Too many requests for now; wait a moment and try again.';
    throw new ApiError(r.status, code, message);
  }

  // ---- small helpers ----
  function el(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      n.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return n;
  }
  const clear = (n) => { while (n.firstChild) n.removeChild(n.firstChild); return n; };
  let sayTimer = null;
  const say = (text) => {
    $('status').textContent = text;
    clearTimeout(sayTimer);
    sayTimer = setTimeout(() => { $('status').textContent = ''; }, 6000);
  };
  const fail = (e) => say(e.message || String(e));
  const when = (ms) => new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
  function ago(ms) {
    const m = Math.max(0, (Date.now() - ms) / 60000);
    if (m < 60) return `${Math.round(m)} min ago`;
    if (m < 48 * 60) return `${Math.round(m / 60)} h ago`;
    return `${Math.round(m / 1440)} days ago`;
  }
  const pct = (x) => `${Math.round(x * 100)}%`;
  const isNum = (f) => typeof f === 'number';
  const fewer = () => `fewer than ${st.me ? st.me.min_group : 5} learners`;
  // a figure: a number, "suppressed" (too few learners), or null (nothing to compute it over)
  const fig = (f, fmt = (x) => String(Math.round(x))) => (isNum(f) ? fmt(f) : f === null ? '—' : fewer());
  const skillName = (id) => {
    const c = st.me && st.me.courses.find((c) => c.id === st.course);
    const s = c && c.skills.find((s) => s.id === id);
    return s ? s.name : id;
  };

  // ---- sign in ----
  function showSignin(why) {
    $('app').hidden = true;
    $('signin').hidden = false;
    if (why) say(why);
    $('token').focus();
  }
  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    st.token = t;
    start();
  });

  async function start() {
    st.token = takeToken();
    try {
      st.me = await api('/v1/me');
    } catch (e) {
      if (e.status !== 401) fail(e);
      if (e.status === 401 && !st.token) showSignin('This service needs a token to sign in.');
      return;
    }
    if (st.me.role !== 'educator' && st.me.role !== 'admin') {
      showSignin('This page is for educators; the token given is a ' + st.me.role + "'s.");
      return;
    }
    $('signin').hidden = true;
    $('app').hidden = false;
    $('who').textContent = st.me.dev
      ? 'Development mode: no sign-in, every course.'
      : `Signed in as ${st.me.sub} (${st.me.role}${st.me.group ? ', group ' + st.me.group : ''})`;
    const sel = clear($('course'));
    for (const c of st.me.courses) sel.appendChild(el('option', { value: c.id }, c.title));
    if (!st.me.courses.length) {
      say('Your token names no course of this service.');
      return;
    }
    st.course = st.me.courses[0].id;
    courseChanged();
  }

  function courseChanged() {
    st.course = $('course').value || st.course;
    const skills = clear($('f-skill'));
    skills.appendChild(el('option', { value: '' }, 'Any'));
    const c = st.me.courses.find((c) => c.id === st.course);
    for (const s of c ? c.skills : []) skills.appendChild(el('option', { value: s.id }, s.name));
    closeDetail(false);
    loadFlags(false);
    st.analytics = null;
    if (!$('analytics').hidden) loadAnalytics();
  }
  $('course').addEventListener('change', courseChanged);

  // ---- views ----
  function show(view) {
    const queue = view === 'queue';
    $('queue').hidden = !queue;
    $('analytics').hidden = queue;
    $('show-queue').setAttribute('aria-pressed', String(queue));
    $('show-analytics').setAttribute('aria-pressed', String(!queue));
    if (!queue && !st.analytics) loadAnalytics();
  }
  $('show-queue').addEventListener('click', () => show('queue'));
  $('show-analytics').addEventListener('click', () => show('analytics'));

  // ---- the queue ----
  function query() {
    const p = new URLSearchParams({ course: st.course, limit: '25' });
    for (const [k, id] of [['status', 'f-status'], ['severity', 'f-severity'], ['skill', 'f-skill']]) {
      if ($(id).value) p.set(k, $(id).value);
    }
    return p;
  }

  async function loadFlags(more) {
    const p = query();
    if (more && st.cursor) p.set('cursor', st.cursor);
    let page;
    try {
      page = await api('/v1/flags?' + p);
    } catch (e) {
      return fail(e);
    }
    const body = $('flags').tBodies[0];
    if (!more) clear(body);
    for (const f of page.flags) {
      const open = el('button', { type: 'button', class: 'link', 'data-flag': f.id, onclick: () => openFlag(f.id) },
        `${f.learner} · ${skillName(f.skill)}`);
      body.appendChild(el('tr', { 'data-flag-row': f.id },
        el('td', {}, el('span', { class: `sev ${f.severity}` }, f.severity)),
        el('td', {}, open),
        el('td', {}, f.evidence.length ? f.evidence[f.evidence.length - 1].detail : f.reason),
        el('td', { title: when(f.created_at) }, ago(f.created_at)),
        el('td', {}, f.status)));
    }
    st.cursor = page.next_cursor || null;
    $('more').hidden = !st.cursor;
    $('empty').hidden = body.rows.length > 0;
    const c = page.counts;
    $('counts').textContent = `Open ${c.open} · Acknowledged ${c.acknowledged} · Resolved ${c.resolved}`;
  }
  for (const id of ['f-status', 'f-severity', 'f-skill']) $(id).addEventListener('change', () => loadFlags(false));
  $('more').addEventListener('click', () => loadFlags(true));

  function closeDetail(focus) {
    const d = $('detail');
    const id = st.flag && st.flag.flag.id;
    d.hidden = true;
    clear(d);
    st.flag = null;
    if (focus && id) {
      const b = document.querySelector(`[data-flag="${id}"]`);
      if (b) b.focus();
      else $('flags').focus();
    }
  }

  async function openFlag(id) {
    let d;
    try {
      d = await api('/v1/flags/' + encodeURIComponent(id));
    } catch (e) {
      return fail(e);
    }
    st.flag = d;
    renderDetail();
  }

  function renderDetail() {
    const d = st.flag, f = d.flag, box = clear($('detail'));
    box.hidden = false;
    box.appendChild(el('div', { class: 'detail-head' },
      el('h3', { id: 'detail-h' }, `${f.learner} · ${d.skill_name}`),
      el('button', { type: 'button', class: 'ghost', onclick: () => closeDetail(true), 'aria-label': 'Close the flag' }, 'Close')));
    box.appendChild(el('p', {}, el('span', { class: `sev ${f.severity}` }, f.severity), ` ${f.status} · opened ${ago(f.created_at)}`,
      f.component ? ` · on ${f.component}` : ''));

    box.appendChild(el('h4', {}, 'What the rules saw'));
    box.appendChild(el('ul', { class: 'rules' }, d.rules.map((r) =>
      el('li', {}, el('strong', {}, r.rule.replace(/_/g, ' ')), ` — ${r.detail}`, el('span', { class: 'muted' }, ` (${when(r.at)})`),
        r.excerpt ? el('blockquote', {}, r.excerpt) : null))));

    box.appendChild(el('h4', {}, 'Mastery trend'));
    if (d.trend.length) {
      const last = d.trend[d.trend.length - 1];
      box.appendChild(window.TutorCharts.trend(d.trend, st.me.proficient || 0.7,
        `Mastery of ${d.skill_name} over ${d.trend.length} answers, now ${last.mastery.toFixed(2)}`));
    } else box.appendChild(el('p', { class: 'muted' }, 'No answers on this skill are stored.'));

    box.appendChild(el('h4', {}, `Answers (${d.answers.length})`));
    if (d.answers.length) {
      box.appendChild(el('div', { class: 'scroll' }, el('table', { class: 'answers' },
        el('thead', {}, el('tr', {}, ['When', 'Question', 'Answer', 'Result', 'Hints', 'Time', 'Diagnosis'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, d.answers.map((a) => el('tr', {},
          el('td', {}, when(a.at)),
          el('td', {}, a.prompt || `${a.component} ${a.item}`),
          el('td', {}, a.response === null ? '—' : a.response),
          el('td', { class: a.correct ? 'right' : 'wrong' }, a.correct ? 'right' : 'wrong'),
          el('td', {}, a.hints_used === null ? '—' : String(a.hints_used)),
          el('td', {}, a.duration_ms === null ? '—' : `${Math.round(a.duration_ms / 1000)} s`),
          el('td', {}, a.diagnosis || '')))))));
    } else box.appendChild(el('p', { class: 'muted' }, 'No answers in this course are stored.'));

    box.appendChild(el('h4', {}, 'Conversation around it'));
    if (d.transcript.length) {
      box.appendChild(el('ol', { class: 'transcript' }, d.transcript.map((t) =>
        el('li', { class: t.role }, el('span', { class: 'muted' }, `${t.role === 'learner' ? f.learner : 'tutor'}, ${when(t.at)}: `), t.content))));
    } else box.appendChild(el('p', { class: 'muted' }, 'No tutor conversation near these answers.'));

    box.appendChild(el('h4', {}, 'History'));
    box.appendChild(el('ol', { class: 'history' }, d.history.map((h) =>
      el('li', {}, `${when(h.at)} — ${h.action} by ${h.by}`, h.outcome ? ` (${h.outcome.replace(/_/g, ' ')})` : '',
        h.note ? el('blockquote', {}, h.note) : null))));

    const form = el('form', { class: 'review' });
    form.appendChild(el('h4', {}, 'Review'));
    form.appendChild(el('label', { for: 'note' }, 'Note'));
    form.appendChild(el('textarea', { id: 'note', rows: 3, maxlength: 2000 }));
    form.appendChild(el('label', { for: 'outcome' }, 'Outcome (to resolve)'));
    form.appendChild(el('select', { id: 'outcome' },
      el('option', { value: 'supported' }, 'Supported the learner'),
      el('option', { value: 'content_changed' }, 'Changed the content'),
      el('option', { value: 'no_action' }, 'No action needed'),
      el('option', { value: 'false_alarm' }, 'False alarm')));
    const actions = el('div', { class: 'actions' });
    if (f.status === 'open') actions.appendChild(el('button', { type: 'button', onclick: () => act('acknowledge') }, 'Acknowledge'));
    if (f.status !== 'resolved') actions.appendChild(el('button', { type: 'button', class: 'primary', onclick: () => act('resolve') }, 'Resolve'));
    else actions.appendChild(el('button', { type: 'button', onclick: () => act('reopen') }, 'Reopen'));
    form.appendChild(actions);
    form.addEventListener('submit', (e) => e.preventDefault());
    box.appendChild(form);
    box.focus();
  }

  async function act(what) {
    const f = st.flag.flag;
    const body = { note: $('note').value.trim() || undefined };
    if (what === 'resolve') body.outcome = $('outcome').value;
    let r;
    try {
      r = await api(`/v1/flags/${encodeURIComponent(f.id)}/${what}`, { method: 'POST', body });
    } catch (e) {
      return fail(e);
    }
    st.flag.flag = r.flag;
    st.flag.history = r.history;
    await loadFlags(false);
    renderDetail();
    say(r.changed ? `Flag ${r.flag.status}.` : `Already ${r.flag.status} (someone got there first).`);
  }

  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && st.flag) closeDetail(true);
  });

  // ---- analytics ----
  async function loadAnalytics() {
    const p = new URLSearchParams({ course: st.course });
    const g = $('group').value;
    if (g) p.set('group', g);
    let skills, comps, prios;
    try {
      [skills, comps, prios] = await Promise.all([
        api('/v1/analytics/skills?' + p),
        api('/v1/analytics/components?' + p),
        api(`/v1/courses/${encodeURIComponent(st.course)}/priorities`),
      ]);
    } catch (e) {
      return fail(e);
    }
    st.analytics = { skills, comps, prios };
    renderAnalytics();
  }
  $('group').addEventListener('change', loadAnalytics);

  function shade(cell, rate) {
    // wrong-answer rate as the depth of a warm colour
    cell.style.backgroundColor = `rgba(196, 64, 40, ${(0.08 + 0.75 * rate).toFixed(2)})`;
    if (rate > 0.55) cell.classList.add('on-dark');
  }

  function renderAnalytics() {
    const { skills, comps, prios } = st.analytics;
    // the group picker: every group, suppressed ones too (they can be chosen, and say so)
    const gsel = $('group'), chosen = gsel.value;
    clear(gsel).appendChild(el('option', { value: '' }, 'The whole course'));
    const psel = $('prio-group'), pchosen = psel.value;
    clear(psel).appendChild(el('option', { value: '' }, 'The whole course'));
    for (const g of skills.groups) {
      gsel.appendChild(el('option', { value: g.group }, `Group ${g.group} (${fig(g.learners)})`));
      psel.appendChild(el('option', { value: g.group }, `Group ${g.group}`));
    }
    gsel.value = chosen;
    psel.value = pchosen;
    $('a-summary').textContent = `${skills.group ? 'Group ' + skills.group : 'The whole course'}: ${fig(skills.learners)} learners. ` +
      `Figures over fewer than ${skills.min_group} learners are not shown.`;

    // skills × cognitive demand
    const demands = ['recall', 'application', 'reasoning'];
    const table = el('table', { class: 'demand' },
      el('caption', { class: 'sr-only' }, 'Wrong-answer rate by skill and cognitive demand'),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Skill'), el('th', { scope: 'col' }, 'Learners'),
        el('th', { scope: 'col' }, 'Wrong overall'), demands.map((d) => el('th', { scope: 'col' }, d)),
        el('th', { scope: 'col' }, 'Hints per answer'), el('th', { scope: 'col' }, 'Flags'),
        el('th', { scope: 'col' }, 'Median time to proficient'))),
      el('tbody', {}, skills.skills.map((s) => {
        const overall = el('td', { 'data-skill': s.skill }, fig(s.wrong_rate, pct));
        if (isNum(s.wrong_rate)) shade(overall, s.wrong_rate);
        const cells = demands.map((d) => {
          const c = s.demand[d];
          if (!c) return el('td', { class: 'muted' }, 'no items');
          const td = el('td', {}, isNum(c.wrong_rate) ? `${pct(c.wrong_rate)} of ${fig(c.attempts)}` : fig(c.wrong_rate));
          if (isNum(c.wrong_rate)) shade(td, c.wrong_rate);
          return td;
        });
        return el('tr', {}, el('th', { scope: 'row' }, s.name), el('td', {}, fig(s.learners)), overall, cells,
          el('td', {}, fig(s.hints_per_answer, (x) => x.toFixed(2))), el('td', {}, fig(s.flags_opened)),
          el('td', {}, fig(s.median_hours_to_proficient, (h) => (h < 1 ? `${Math.round(h * 60)} min` : h < 48 ? `${h.toFixed(1)} h` : `${(h / 24).toFixed(1)} days`))));
      })));
    clear($('demand')).appendChild(table);

    // struggle by component: wrong-answer rate of the exercises
    const ex = comps.components.filter((c) => c.format === 'exercise' && c.attempts !== 0);
    clear($('components')).appendChild(window.TutorCharts.bars(
      ex.map((c) => ({ label: c.title, value: isNum(c.wrong_rate) ? c.wrong_rate : null,
        text: isNum(c.wrong_rate) ? `${pct(c.wrong_rate)} wrong of ${fig(c.attempts)}` : fewer() })),
      1, 'Wrong-answer rate by exercise'));
    const list = el('ul', { class: 'sr-only' }, ex.map((c) => el('li', {}, `${c.title}: ${isNum(c.wrong_rate) ? pct(c.wrong_rate) + ' wrong' : fewer()}`)));
    $('components').appendChild(list);

    // drop-off
    const drop = $('dropoff');
    clear(drop);
    drop.appendChild(el('p', { class: 'muted' },
      `Learners with no activity for ${comps.dropoff_days} days: ${fig(comps.quiet_learners)}. Where they were last:`));
    if (comps.dropoff.length) {
      const max = Math.max(1, ...comps.dropoff.map((d) => (isNum(d.learners) ? d.learners : 0)));
      drop.appendChild(window.TutorCharts.bars(comps.dropoff.slice(0, 8).map((d) => ({
        label: d.title, value: isNum(d.learners) ? d.learners : null, text: isNum(d.learners) ? `${d.learners} learners` : fewer() })),
      max, 'Components most often last seen before learners went quiet'));
    } else drop.appendChild(el('p', { class: 'muted' }, 'No one has gone quiet.'));

    // progression
    const names = ['intro', 'developing', 'proficient', 'mastered'];
    const prog = clear($('progression'));
    if (skills.progression.length) {
      prog.appendChild(window.TutorCharts.stacked(skills.progression.map((w) => ({
        week: w.week, min: skills.min_group,
        shares: isNum(w.learners) && names.every((n) => isNum(w.bands[n])) ? names.map((n) => w.bands[n]) : null })),
      names, 'Share of learners’ skills in each mastery band, by week'));
    } else prog.appendChild(el('p', { class: 'muted' }, 'No answers yet.'));

    // misconceptions
    const mis = clear($('misconceptions'));
    const all = skills.skills.flatMap((s) => s.misconceptions.map((m) => ({ ...m, skill: s.name })));
    for (const m of all) mis.appendChild(el('li', {}, el('strong', {}, m.skill), `: ${m.diagnosis} (${m.learners} learners, ${m.component} ${m.item})`));
    if (!all.length) mis.appendChild(el('li', { class: 'muted' }, `None shared by ${skills.min_group} or more learners.`));

    renderPriorities(prios);
  }

  function renderPriorities(prios) {
    const group = $('prio-group').value || null;
    const set = new Set(prios.priorities.filter((p) => (p.group || null) === group).map((p) => p.skill));
    const box = $('prio-skills');
    while (box.children.length > 1) box.removeChild(box.lastChild);
    const c = st.me.courses.find((c) => c.id === st.course);
    for (const s of c ? c.skills : []) {
      const id = `prio-${s.id}`;
      box.appendChild(el('div', { class: 'check' },
        el('input', { type: 'checkbox', id, value: s.id, checked: set.has(s.id) }),
        el('label', { for: id }, s.name)));
    }
  }
  $('prio-group').addEventListener('change', () => st.analytics && renderPriorities(st.analytics.prios));
  $('priorities').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const skills = [...$('prio-skills').querySelectorAll('input:checked')].map((i) => i.value);
    const group = $('prio-group').value || undefined;
    try {
      st.analytics.prios = await api(`/v1/courses/${encodeURIComponent(st.course)}/priorities`, { method: 'PUT', body: { group, skills } });
      say(`Priorities saved: ${skills.length} skill(s).`);
    } catch (e) {
      fail(e);
    }
  });

  async function download(kind) {
    const p = new URLSearchParams({ course: st.course, format: 'csv' });
    if ($('group').value) p.set('group', $('group').value);
    try {
      const text = await api(`/v1/analytics/${kind}?` + p, { accept: 'text/csv' });
      const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: `${st.course}-${kind}.csv` });
      document.body.appendChild(a);
      a.click();
      a.remove();
    } catch (e) {
      fail(e);
    }
  }
  $('csv-skills').addEventListener('click', () => download('skills'));
  $('csv-components').addEventListener('click', () => download('components'));

  start();
})();
