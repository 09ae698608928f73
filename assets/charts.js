// Small inline SVG charts for the tutor's pages: no library, no network. Each function returns
// an <svg role="img"> with a text description for screen readers.
'use strict';
window.TutorCharts = (() => {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = (w, h, label) => {
    const s = document.createElementNS(NS, 'svg');
    s.setAttribute('viewBox', `0 0 ${w} ${h}`);
    s.setAttribute('width', '100%');
    s.setAttribute('role', 'img');
    s.setAttribute('aria-label', label);
    const t = document.createElementNS(NS, 'title');
    t.textContent = label;
    s.appendChild(t);
    return s;
  };
  const node = (name, attrs, text) => {
    const n = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };

  // Mastery after each answer: a line from 0 to 1, dots filled for right answers, hollow for
  // wrong ones, and a dashed line at the proficient threshold.
  function trend(points, proficient, label) {
    const w = 320, h = 120, pad = 18;
    const s = svg(w, h, label);
    s.classList.add('chart', 'trend');
    const x = (i) => pad + (points.length < 2 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (points.length - 1));
    const y = (m) => h - pad - m * (h - 2 * pad);
    s.appendChild(node('line', { x1: pad, x2: w - pad, y1: y(proficient), y2: y(proficient), class: 'threshold' }));
    s.appendChild(node('text', { x: w - pad, y: y(proficient) - 3, 'text-anchor': 'end', class: 'axis' }, 'proficient'));
    s.appendChild(node('text', { x: 2, y: y(1) + 4, class: 'axis' }, '1'));
    s.appendChild(node('text', { x: 2, y: y(0) + 4, class: 'axis' }, '0'));
    if (points.length > 1) {
      const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(p.mastery).toFixed(1)}`).join(' ');
      s.appendChild(node('path', { d, class: 'line' }));
    }
    points.forEach((p, i) => {
      const c = node('circle', { cx: x(i), cy: y(p.mastery), r: 4, class: p.correct ? 'dot right' : 'dot wrong' });
      c.appendChild(node('title', {}, `${p.correct ? 'right' : 'wrong'}, mastery ${p.mastery.toFixed(2)}`));
      s.appendChild(c);
    });
    return s;
  }

  // Horizontal bars: items [{label, value (0..max) or null when suppressed, text}].
  function bars(items, max, label) {
    const rowH = 26, w = 560, labelW = 230, h = Math.max(rowH, items.length * rowH) + 6;
    const s = svg(w, h, label);
    s.classList.add('chart', 'bars');
    items.forEach((it, i) => {
      const top = 4 + i * rowH;
      s.appendChild(node('text', { x: 0, y: top + 16, class: 'label' }, it.label.length > 34 ? it.label.slice(0, 33) + '…' : it.label));
      if (it.value === null) {
        s.appendChild(node('text', { x: labelW, y: top + 16, class: 'suppressed' }, it.text));
        return;
      }
      const bw = max > 0 ? ((w - labelW - 70) * it.value) / max : 0;
      s.appendChild(node('rect', { x: labelW, y: top + 4, width: Math.max(1, bw), height: rowH - 10, class: 'bar' }));
      s.appendChild(node('text', { x: labelW + bw + 6, y: top + 16, class: 'value' }, it.text));
    });
    return s;
  }

  // Stacked columns per week: weeks [{week, shares: [intro, developing, proficient, mastered]
  // or null when suppressed}].
  function stacked(weeks, names, label) {
    const w = 560, h = 180, pad = 24, colW = Math.min(40, (w - 2 * pad) / Math.max(1, weeks.length) - 6);
    const s = svg(w, h + 40, label);
    s.classList.add('chart', 'stacked');
    weeks.forEach((wk, i) => {
      const left = pad + i * (colW + 6);
      if (!wk.shares) {
        s.appendChild(node('rect', { x: left, y: pad, width: colW, height: h - pad, class: 'hidden-col' }));
        s.appendChild(node('text', { x: left + colW / 2, y: h / 2 + 10, 'text-anchor': 'middle', class: 'axis' }, '<' + wk.min));
      } else {
        let top = h;
        wk.shares.forEach((share, b) => {
          const bh = share * (h - pad);
          top -= bh;
          const r = node('rect', { x: left, y: top, width: colW, height: bh, class: `band b${b}` });
          r.appendChild(node('title', {}, `${wk.week}: ${names[b]} ${(share * 100).toFixed(0)}%`));
          s.appendChild(r);
        });
      }
      s.appendChild(node('text', { x: left + colW / 2, y: h + 14, 'text-anchor': 'middle', class: 'axis' }, wk.week.slice(5)));
    });
    names.forEach((n, b) => {
      const left = pad + b * 120;
      s.appendChild(node('rect', { x: left, y: h + 24, width: 10, height: 10, class: `band b${b}` }));
      s.appendChild(node('text', { x: left + 14, y: h + 33, class: 'axis' }, n));
    });
    return s;
  }

  return { trend, bars, stacked };
})();
