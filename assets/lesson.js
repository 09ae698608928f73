// The demo lesson (/) and a component's page (/components/{id}): course text rendered by the
// service, exercises that post `answered` statements and show right or wrong, a hint on
// request and the diagnosis of a known misconception; the material chosen by the learner's
// plan (level, format), prerequisite review links, the skip offer; and the tutor widget.
'use strict';
(() => {
  const L = window.Learner;
  const { el } = L;
  const $ = (id) => document.getElementById(id);
  const only = (location.pathname.match(/^\/components\/([a-z0-9-]+)$/) || [])[1] || null;
  const keep = (path) => path + location.search;

  function announce(into, text, kind) {
    into.replaceChildren(el('span', { class: kind || '' }, text));
  }

  // ---- one exercise: an input per item; the answer is graded by the service ----
  function exercise(c) {
    const box = el('section', { class: 'card exercise', id: `c-${c.id}`, 'data-component': c.id, 'aria-labelledby': `h-${c.id}` },
      el('h3', { id: `h-${c.id}` }, c.title, ' ', el('span', { class: 'tag' }, 'practice')));
    box.append(el('div', { class: 'prose' }, L.sanitised(c.html)));
    for (const item of c.items) {
      const id = `a-${c.id}-${item.id}`;
      const result = el('p', { class: 'result', role: 'status', id: `r-${c.id}-${item.id}` });
      const hints = el('ul', { class: 'hints' });
      let shown = 0; // hints shown; the service counts them in the next answer
      const input = el('input', { id, type: 'text', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': result.id });
      const hintBtn = el('button', { type: 'button', class: 'ghost', disabled: item.hints ? null : true }, item.hints ? 'Hint' : 'No hints');
      hintBtn.addEventListener('click', async () => {
        try {
          const h = await L.api(`/v1/components/${c.id}/items/${encodeURIComponent(item.id)}/hint`, { body: { number: shown + 1, learner: L.st.learner } });
          shown = h.number;
          hints.append(el('li', {}, h.hint));
          if (shown >= h.of) { hintBtn.disabled = true; hintBtn.textContent = 'No more hints'; }
        } catch (err) { announce(result, err.message, 'wrong'); }
      });
      const form = el('form', { class: 'item', 'data-item': item.id },
        el('div', { class: 'prompt' }, el('label', { for: id }, L.sanitised(item.prompt_html))),
        el('div', { class: 'answer-row' }, input, el('button', { type: 'submit', class: 'primary' }, 'Check'), hintBtn),
        hints, result);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const response = input.value.trim();
        if (!response) { announce(result, 'Type an answer first.'); input.focus(); return; }
        try {
          const r = await L.api('/v1/events', { body: [L.statement('answered', c.id, {
            object: { component: c.id, item: item.id }, result: { response } })] });
          const g = r.graded[0];
          result.replaceChildren(g.success ? el('strong', { class: 'right' }, 'Right!')
            : el('strong', { class: 'wrong' }, 'Not yet.'), g.diagnosis ? el('span', { class: 'diagnosis' }, ' ' + g.diagnosis) : ' Try again, or ask for a hint.');
          if (window.TutorWidget) window.TutorWidget.refresh();
        } catch (err) { announce(result, err.message, 'wrong'); }
      });
      box.append(form);
    }
    return box;
  }

  // ---- material, with what the plan says about it ----
  function material(c, plan) {
    const box = el('section', { class: 'card material', id: `c-${c.id}`, 'data-component': c.id, 'aria-labelledby': `h-${c.id}` });
    box.append(el('h3', { id: `h-${c.id}` }, c.title, ' ', el('span', { class: 'tag' }, `${c.level} · ${c.format.replace('_', ' ')}`)));
    if (plan) {
      box.append(el('p', { class: 'why muted' }, 'Chosen for you: ' + plan.variant.reason));
      if (plan.review.length) {
        box.append(el('div', { class: 'review' }, el('strong', {}, 'Review first:'),
          el('ul', {}, plan.review.map((r) => el('li', {}, r.component_id ? el('a', { href: keep(`/components/${r.component_id}`) }, r.title) : r.skill, ' — ', r.reason)))));
      }
      if (plan.skip_offer.offered) box.append(skipOffer(c.id, plan.skip_offer.reason));
    }
    box.append(el('div', { class: 'prose' }, L.sanitised(c.html)));
    box.append(el('button', { type: 'button', class: 'ghost ask', onclick: () => askAbout(c.id) }, 'Ask the tutor about this'));
    return box;
  }

  function skipOffer(component, reason) {
    const box = el('div', { class: 'offer', role: 'group', 'aria-label': 'Skip offer' });
    const choose = (accept) => async () => {
      for (const b of box.querySelectorAll('button')) b.disabled = true;
      try {
        await L.api('/v1/events', { body: [L.statement(accept ? 'skipped' : 'viewed', component,
          { result: { response: accept ? 'skip offer: accepted' : 'skip offer: declined' } })] });
        box.replaceChildren(el('p', { role: 'status' }, accept ? 'Skipped — on to the next part.' : 'Staying here. Take your time.'));
        if (accept) {
          const next = box.closest('.section')?.nextElementSibling;
          if (next) { next.setAttribute('tabindex', '-1'); next.focus(); }
        }
      } catch (err) { box.append(el('p', { class: 'wrong' }, err.message)); }
    };
    box.append(el('p', {}, el('strong', {}, 'You seem to know this already — skip ahead?'), ' ', el('span', { class: 'muted' }, reason)),
      el('div', { class: 'actions' }, el('button', { type: 'button', class: 'primary', onclick: choose(true) }, 'Skip ahead'),
        el('button', { type: 'button', onclick: choose(false) }, 'Stay')));
    return box;
  }

  function askAbout(id) {
    if (!window.TutorWidget) return;
    window.TutorWidget.setComponent(id);
    window.TutorWidget.open();
  }

  function widget(component) {
    const s = document.createElement('script');
    s.src = '/widget.js';
    s.dataset.learner = L.st.learner;
    if (L.st.token) s.dataset.token = L.st.token;
    if (component) s.dataset.component = component;
    if (only) {
      // one component: the tutor as a panel at the bottom right, with the page's skip offer
      $('tutor').hidden = true;
    } else {
      // the lesson: the tutor beside it; each section puts its own skip offer
      s.dataset.mount = '#tutor';
      s.dataset.offers = 'off';
    }
    document.body.append(s);
  }

  async function lesson(course) {
    const box = $('lesson');
    box.setAttribute('aria-busy', 'true');
    const l = await L.api(`/v1/learners/${L.lid()}/lesson?course=${encodeURIComponent(course)}`);
    box.replaceChildren(el('h2', {}, l.title), el('p', { class: 'muted' }, l.description));
    for (const s of l.sections) {
      const sec = el('section', { class: 'section', 'data-skill': s.skill.id, 'aria-labelledby': `s-${s.skill.id}` },
        el('h2', { id: `s-${s.skill.id}`, class: 'skill' }, s.skill.name));
      if (s.prerequisites.length) sec.append(el('p', { class: 'muted' }, 'Builds on: ' + s.prerequisites.map((p) => p.name).join(', ')));
      if (s.material) sec.append(material(s.material, s.plan));
      for (const e of s.exercises) sec.append(exercise(e));
      box.append(sec);
    }
    box.setAttribute('aria-busy', 'false');
    document.title = `${l.title} · tutor`;
    const first = l.sections.find((s) => s.material);
    return first ? first.material.id : null;
  }

  async function one(id) {
    const box = $('lesson');
    const c = await L.api(`/v1/components/${id}`);
    let plan = null;
    try { plan = await L.api(`/v1/learners/${L.lid()}/plan?component=${id}`); } catch (_) { /* the page works without */ }
    box.replaceChildren(el('p', {}, el('a', { href: keep('/') }, '← The whole lesson')));
    if (c.format === 'exercise') box.append(exercise(c));
    else {
      if (plan && plan.variant.component_id !== c.id) {
        box.append(el('p', { class: 'note' }, 'There is a version of this page for your level: ',
          el('a', { href: keep(`/components/${plan.variant.component_id}`) }, plan.variant.title), '. ', plan.variant.reason));
      }
      // the widget puts this page's skip offer to the learner
      box.append(material(c, plan && Object.assign({}, plan, { skip_offer: { offered: false } })));
    }
    box.setAttribute('aria-busy', 'false');
    document.title = `${c.title} · tutor`;
    return c.id;
  }

  async function search(q) {
    const out = $('search-results');
    if (!q.trim()) { out.replaceChildren(); return; }
    try {
      const course = $('course').value;
      const hits = await L.api(`/v1/search?q=${encodeURIComponent(q)}&k=5${course ? `&course=${encodeURIComponent(course)}` : ''}`);
      out.replaceChildren(el('h2', {}, `Results for “${q}”`), hits.length ? el('ol', { class: 'hits' }, hits.map((h) => el('li', {},
        el('a', { href: keep(`/components/${h.component_id}`) }, h.title), ' ', el('span', { class: 'tag' }, `${h.level} · ${h.format.replace('_', ' ')}`),
        el('p', { class: 'muted' }, h.text.replace(/[#*_]/g, '').slice(0, 220) + '…')))) : el('p', {}, 'Nothing found.'));
    } catch (err) { out.replaceChildren(el('p', { class: 'wrong' }, err.message)); }
  }

  async function main() {
    if (!(await L.init())) return;
    const sel = $('course');
    for (const c of L.st.me.courses) sel.append(el('option', { value: c.id }, c.title));
    const wanted = new URLSearchParams(location.search).get('course');
    if (wanted) sel.value = wanted;
    sel.addEventListener('change', () => {
      const u = new URL(location.href);
      u.searchParams.set('course', sel.value);
      location.href = u.pathname === '/' ? u.toString() : '/' + u.search;
    });
    $('search-form').addEventListener('submit', (e) => { e.preventDefault(); search($('q').value); });
    $('me-link').href = keep('/me');
    try {
      const first = only ? await one(only) : await lesson(sel.value);
      widget(first);
    } catch (err) {
      $('lesson').replaceChildren(el('p', { class: 'wrong', role: 'alert' }, err.message));
    }
  }
  main();
})();
