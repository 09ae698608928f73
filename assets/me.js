// "My passport" (/me): the learner's own skills with band, confidence and trend, and for each
// the evidence behind the estimate; results by cognitive demand in words; the format they do
// best with and why; recommendations with reasons, which they can rate or dismiss.
'use strict';
(() => {
  const L = window.Learner;
  const { el } = L;
  const $ = (id) => document.getElementById(id);
  const FORMATS = { worked_example: 'worked examples', explanation: 'explanations', scenario: 'scenarios',
    analogy: 'analogies', summary: 'summaries', reference: 'reference pages', exercise: 'exercises' };
  const arrow = { rising: '↑ rising', falling: '↓ falling', steady: '→ steady' };

  function format(p) {
    const f = p.format_preference;
    if (!f.formats.length) return el('p', { class: 'muted' }, 'Not enough to say yet: rate the tutor\'s answers, and answer questions after reading, and this will show which kind of material works for you.');
    const best = f.preferred ? el('p', {}, el('strong', {}, `You do best with ${FORMATS[f.preferred] || f.preferred}.`),
      ' Pages are shown in that format when there is one at your level.') : el('p', {}, 'No format stands out yet (each needs at least 2 signals).');
    const rows = f.formats.slice().sort((a, b) => b.score - a.score).map((x) => el('tr', {},
      el('th', { scope: 'row' }, FORMATS[x.format] || x.format), el('td', {}, `${Math.round(x.score * 100)}%`),
      el('td', {}, `${x.signals} signal${x.signals === 1 ? '' : 's'}`)));
    return el('div', {}, best, el('table', { class: 'narrow' }, el('caption', { class: 'muted' }, 'Evidence: your ratings of material in each format, and whether your next answer after reading it was right'),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Format'), el('th', { scope: 'col' }, 'Score'), el('th', { scope: 'col' }, 'Signals'))), el('tbody', {}, rows)));
  }

  function meter(mastery, band) {
    return el('div', { class: `meter ${band}`, role: 'img', 'aria-label': `estimate ${mastery.toFixed(2)} of 1` }, el('span', { style: null, 'data-w': Math.round(mastery * 100) }));
  }

  async function trail(s, into, btn) {
    if (!into.hidden) { into.hidden = true; btn.setAttribute('aria-expanded', 'false'); return; }
    btn.setAttribute('aria-expanded', 'true');
    into.hidden = false;
    into.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    try {
      const t = await L.api(`/v1/learners/${L.lid()}/skills/${encodeURIComponent(s.skill)}/evidence`);
      into.replaceChildren(el('p', {}, t.summary), el('ol', { class: 'trail', reversed: true }, t.steps.map((x) => el('li', { class: x.correct ? 'right-step' : 'wrong-step' },
        el('strong', { class: x.correct ? 'right' : 'wrong' }, `${x.mastery_after >= x.mastery_before ? '+' : '−'}${Math.abs(x.mastery_after - x.mastery_before).toFixed(2)}`), ' ', x.sentence,
        x.response ? el('span', { class: 'muted' }, ` You answered “${x.response}”.`) : null))));
    } catch (err) { into.replaceChildren(el('p', { class: 'wrong' }, err.message)); }
  }

  function skill(s) {
    const id = `t-${s.skill}`;
    const more = el('div', { class: 'evidence', id, hidden: true });
    const btn = el('button', { type: 'button', class: 'link', 'aria-expanded': 'false', 'aria-controls': id }, 'Why does the tutor think so?');
    btn.addEventListener('click', () => trail(s, more, btn));
    const m = meter(s.mastery, s.band);
    m.firstChild.style.width = `${Math.round(s.mastery * 100)}%`;
    return el('li', { class: 'card skill-card', 'data-skill': s.skill },
      el('h3', {}, s.name, ' ', el('span', { class: `band ${s.band}` }, s.band)),
      m,
      el('p', {}, `Estimate ${s.mastery.toFixed(2)} · ${s.confidence} confidence (${s.evidence} answer${s.evidence === 1 ? '' : 's'}) · ${arrow[s.trend] || s.trend}`),
      el('p', {}, s.recent.charAt(0).toUpperCase() + s.recent.slice(1) + '.'),
      s.demand_summary ? el('p', {}, `By kind of question: ${s.demand_summary}.`) : null,
      s.misconceptions.length ? el('p', { class: 'muted' }, `A mix-up we noticed: ${s.misconceptions[s.misconceptions.length - 1].diagnosis}`) : null,
      btn, more);
  }

  async function main() {
    if (!(await L.init())) return;
    $('lesson-link').href = '/' + location.search;
    L.recommendations($('recs'), 5);
    try {
      const p = await L.api(`/v1/learners/${L.lid()}/passport`);
      $('format').replaceChildren(format(p));
      const skills = p.skills.slice().sort((a, b) => a.course.localeCompare(b.course) || a.mastery - b.mastery);
      $('skills').replaceChildren(skills.length ? el('ul', { class: 'skills' }, skills.map(skill))
        : el('p', {}, 'No answers yet. Open the ', el('a', { href: '/' + location.search }, 'lesson'), ' and try the practice questions: this page fills in as you go.'));
      if (p.prerequisite_gaps.length) {
        $('skills').prepend(el('p', { class: 'note' }, 'Worth shoring up first: ', p.prerequisite_gaps.map((g) => `${g.name} (needed for ${g.needed_by.length} skill${g.needed_by.length === 1 ? '' : 's'} you are working on)`).join('; '), '.'));
      }
    } catch (err) { $('skills').replaceChildren(el('p', { class: 'wrong', role: 'alert' }, err.message)); }
  }
  main();
})();
