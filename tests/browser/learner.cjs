// The learners' pages and the embeddable widget in a real Chromium, driven by Playwright
// (playwright-core, Debian's chromium). Called by tests/pages.rs with the server's address,
// learner tokens and the answer keys' secrets in the environment; prints one JSON object of
// what it saw (and the timings it measured) and exits non-zero on the first failed step.
'use strict';
const { chromium } = require('playwright-core');
const http = require('http');
const fs = require('fs');
const path = require('path');

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const T = JSON.parse(process.env.TOKENS);
const SECRETS = JSON.parse(fs.readFileSync(process.env.SECRETS, 'utf8')).map((s) => s.toLowerCase());
const seen = {};
const timings = {};

function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  seen[what] = true;
}

// Presses Tab until the focused element matches, as a keyboard user would.
async function tabTo(page, test, what, max = 120, key = 'Tab') {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(key);
    if (await page.evaluate(test)) return;
  }
  throw new Error(`failed: could not reach ${what} with Tab`);
}

// Every response body the page receives, for the answer-key scan; and what the learner earned
// by asking: a hint they asked for, the diagnosis of their own wrong answer.
const earned = new Set();
function recordBodies(page, into) {
  page.on('response', async (r) => {
    let body;
    try { body = await r.text(); } catch (_) { return; /* redirects, aborted */ }
    into.push({ url: r.url(), body: body.toLowerCase() });
    try {
      const j = JSON.parse(body);
      if (r.url().endsWith('/hint') && j.hint) earned.add(j.hint.toLowerCase());
      if (r.url().endsWith('/v1/events')) for (const g of j.graded || []) if (g.diagnosis) earned.add(g.diagnosis.toLowerCase());
    } catch (_) { /* not JSON */ }
  });
}

// A static content page on another origin that embeds the widget: with a learner's token at
// /, with a token the service does not accept at /bad.
function hostPage(port, token) {
  const html = (t) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host page</title></head>
<body><h1>A page of another site</h1><p>About dividing fractions.</p>
<script src="${BASE}/widget.js" data-endpoint="${BASE}" data-token="${t}" data-component="fractions-divide-explain-intro" data-open="true"></script>
</body></html>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(html(req.url === '/bad' ? 'not-a-token' : token));
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(server)));
}

async function ask(page, text) {
  const before = await page.$$eval('.tw-tutor .tw-foot', (f) => f.length);
  await page.fill('#tw-input', text);
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('.tw-tutor .tw-foot').length > n, before, { timeout: 20000 });
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const bodies = [];
  const errors = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    recordBodies(page, bodies);

    // ---- the lesson: two learners, two pages ----
    const divide = '[data-skill="fractions.divide"] .material';
    await page.goto(`${BASE}/#token=${T.ada}`);
    await page.waitForSelector(divide);
    check(!page.url().includes('token='), 'the token leaves the address bar');
    const adaVariant = await page.getAttribute(divide, 'data-component');
    await page.waitForSelector('.tw-panel');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'lesson.png') });
    const ben = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const benPage = await ben.newPage();
    recordBodies(benPage, bodies);
    await benPage.goto(`${BASE}/#token=${T.ben}`);
    await benPage.waitForSelector(divide);
    const benVariant = await benPage.getAttribute(divide, 'data-component');
    check(adaVariant && benVariant && adaVariant !== benVariant, 'two learners see different variants of the same page');
    check((await benPage.textContent(divide)).includes('mastered'), 'the variant says why it was chosen');

    // ---- a question, answered as it streams, with its sources ----
    await ask(page, 'how do I divide fractions?');
    const answer = await page.textContent('.tw-tutor:last-of-type');
    check(answer.includes('Sources:') && (await page.$$('.tw-tutor:last-of-type .tw-foot a')).length > 0, 'the answer cites the course');
    check(/\/components\/fractions-/.test(await page.getAttribute('.tw-tutor:last-of-type .tw-foot a', 'href')), 'citations link to the components');
    const t = await page.evaluate(() => window.__twTiming);
    check(t && t.firstDeltaChunk > 0 && t.firstDeltaRendered >= t.firstDeltaChunk, 'the first delta is timed');
    timings.first_delta_on_page_ms = +(t.firstDeltaRendered - t.firstDeltaChunk).toFixed(2);
    timings.first_delta_painted_ms = +(t.firstDeltaPainted - t.firstDeltaChunk).toFixed(2);
    timings.first_byte_to_first_delta_ms = +(t.firstDeltaRendered - t.headers).toFixed(2);
    check(t.deltas > 1, 'the answer streamed in pieces');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'widget.png') });

    // ---- the conversation survives a reload ----
    await page.reload();
    await page.waitForSelector('.tw-tutor .tw-foot');
    check((await page.textContent('.tw-log')).includes('how do I divide fractions?'), 'the conversation survives a reload');

    // ---- exercises: right or wrong, a hint on request, the diagnosis; three wrong answers raise a flag ----
    const cai = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const caiPage = await cai.newPage();
    recordBodies(caiPage, bodies);
    caiPage.on('pageerror', (e) => errors.push(String(e)));
    await caiPage.goto(`${BASE}/#token=${T.cai}`);
    const item = '[data-component="fractions-divide-ex-1"] form[data-item="q1"]';
    await caiPage.waitForSelector(item);
    await caiPage.click(`${item} button.ghost`);
    await caiPage.waitForSelector(`${item} .hints li`);
    check((await caiPage.textContent(`${item} .hints`)).length > 5, 'a hint comes on request');
    for (let i = 0; i < 3; i++) {
      await caiPage.fill(`${item} input`, '3/8');
      await caiPage.click(`${item} button[type=submit]`);
      await caiPage.waitForFunction((sel) => /Not yet/.test(document.querySelector(sel + ' .result').textContent), item);
      await caiPage.evaluate((sel) => { document.querySelector(sel + ' .result').textContent = ''; }, item);
    }
    await caiPage.fill(`${item} input`, '3/8');
    await caiPage.click(`${item} button[type=submit]`);
    await caiPage.waitForFunction((sel) => /Multiplied/.test(document.querySelector(sel + ' .result').textContent), item);
    check(true, 'a wrong answer shows what it showed');
    seen['three wrong answers were posted'] = true;

    // ---- the skip offer, put to a learner who knows the page, and the choice posted ----
    await benPage.goto(`${BASE}/components/fractions-divide-explain-intro#token=${T.ben}`);
    await benPage.click('.tw-open');
    await benPage.waitForSelector('.tw-offer:not([hidden])');
    check((await benPage.textContent('.tw-offer')).includes('You seem to know this already'), 'the skip offer is shown');
    const posted = benPage.waitForResponse((r) => r.url().endsWith('/v1/events') && (r.request().postData() || '').includes('"skipped"'));
    await benPage.click('.tw-offer button.tw-primary');
    const skipped = await posted;
    check(skipped.status() === 200 && (await skipped.json()).accepted === 1, "the skip offer's choice is posted");

    // ---- the widget with the keyboard alone, on a phone-sized page ----
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    const kb = await phone.newPage();
    recordBodies(kb, bodies);
    kb.on('pageerror', (e) => errors.push(String(e)));
    await kb.goto(`${BASE}/components/fractions-multiply-explain-intro#token=${T.dee}`);
    await kb.waitForSelector('.tw-open');
    await kb.focus('body');
    await tabTo(kb, "document.activeElement && document.activeElement.classList.contains('tw-open')", 'the tutor button');
    await kb.keyboard.press('Enter');
    check(await kb.evaluate(() => document.activeElement.id === 'tw-input'), 'opening the tutor puts focus in the question box');
    await kb.keyboard.type('how do I multiply fractions?');
    await kb.keyboard.press('Enter');
    await kb.waitForSelector('.tw-tutor .tw-foot', { timeout: 20000 });
    check(await kb.evaluate(() => document.activeElement.id === 'tw-input'), 'focus stays in the question box after an answer');
    await tabTo(kb, "document.activeElement && document.activeElement.getAttribute('aria-label') === 'This answer helped'", 'the rating', 20, 'Shift+Tab');
    const rated = kb.waitForResponse((r) => r.url().endsWith('/v1/events') && (r.request().postData() || '').includes('"rated"'));
    await kb.keyboard.press('Enter');
    check((await rated).status() === 200, 'an answer is rated with the keyboard');
    await kb.keyboard.press('Escape');
    check(await kb.evaluate(() => document.activeElement.classList.contains('tw-open')), 'Escape closes the tutor and returns focus');
    check(await kb.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'the page fits a phone');
    await kb.click('.tw-open');
    if (SHOTS) await kb.screenshot({ path: path.join(SHOTS, 'widget-phone.png') });
    check(true, 'the widget is usable with the keyboard alone');

    // ---- "my passport": evidence, and a recommendation dismissed ----
    await caiPage.goto(`${BASE}/me`);
    await caiPage.waitForSelector('[data-skill="fractions.divide"]');
    await caiPage.click('[data-skill="fractions.divide"] button.link');
    await caiPage.waitForSelector('[data-skill="fractions.divide"] .trail li');
    const trail = await caiPage.textContent('[data-skill="fractions.divide"] .evidence');
    check(/Wrong on q1/.test(trail) && trail.includes('Multiplied'), 'the passport shows why it thinks so');
    await caiPage.waitForSelector('#recs li[data-rec]');
    const first = await caiPage.getAttribute('#recs li[data-rec]', 'data-rec');
    if (SHOTS) await caiPage.screenshot({ path: path.join(SHOTS, 'me.png'), fullPage: true });
    await caiPage.click(`#recs li[data-rec="${first}"] button[data-feedback="dismiss"]`);
    await caiPage.waitForFunction((id) => !document.querySelector(`#recs li[data-rec="${id}"]`), first);
    await caiPage.reload();
    await caiPage.waitForSelector('#recs li[data-rec], #recs p');
    check(!(await caiPage.$(`#recs li[data-rec="${first}"]`)), 'a recommendation dismissed disappears');

    // ---- a 429 and a dropped stream, in plain words, and the widget recovers ----
    const flaky = await ctx.newPage();
    flaky.on('pageerror', (e) => errors.push(String(e)));
    await flaky.goto(`${BASE}/components/fractions-divide-worked-developing#token=${T.ada}`);
    await flaky.click('.tw-open');
    await flaky.route('**/v1/tutor/chat', (r) => r.fulfill({ status: 429, headers: { 'retry-after': '7', 'content-type': 'application/json' },
      body: JSON.stringify({ error: { code: 'too_many_turns', message: 'at most 1 chat turn at once per learner' } }) }));
    await flaky.fill('#tw-input', 'why flip the second fraction?');
    await flaky.keyboard.press('Enter');
    await flaky.waitForFunction(() => /Try again in 7 seconds/.test(document.querySelector('.tw-status').textContent));
    check(await flaky.inputValue('#tw-input') === 'why flip the second fraction?', 'a 429 is said in plain words and the question is kept');
    await flaky.unroute('**/v1/tutor/chat');
    await flaky.route('**/v1/tutor/chat', (r) => r.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' },
      body: 'event: delta\ndata: {"text":"Flipping the divisor turns"}\n\n' }));
    await flaky.keyboard.press('Enter');
    await flaky.waitForFunction(() => /connection dropped/.test(document.querySelector('.tw-status').textContent));
    check(await flaky.inputValue('#tw-input') === 'why flip the second fraction?', 'a dropped stream is said in plain words and the question is kept');
    await flaky.unroute('**/v1/tutor/chat');
    await flaky.focus('#tw-input');
    await flaky.keyboard.press('Enter');
    await flaky.waitForSelector('.tw-tutor .tw-foot', { timeout: 20000 });
    check(!(await flaky.textContent('.tw-status')).trim(), 'the widget recovers');

    // ---- "I'm stuck": a turn the struggle rules see ----
    await flaky.click('.tw-stuck');
    await flaky.waitForFunction(() => document.querySelectorAll('.tw-tutor .tw-foot').length >= 2, null, { timeout: 20000 });
    check((await flaky.textContent('.tw-log')).includes("I'm stuck"), "I'm stuck asks the tutor");

    // ---- errors in plain words: a token that is not accepted ----
    const bad = await browser.newContext();
    const badPage = await bad.newPage();
    await badPage.goto(`http://127.0.0.1:${process.env.HOST_PORT}/bad`);
    await badPage.waitForFunction(() => /sign-in/.test((document.querySelector('.tw-status') || {}).textContent || ''));
    check(true, 'a refused token is explained in plain words');

    // ---- the widget on another origin: allowed through CORS, refused from one not listed ----
    const host = await browser.newContext();
    const hostTab = await host.newPage();
    hostTab.on('pageerror', (e) => errors.push(String(e)));
    await hostTab.goto(`http://127.0.0.1:${process.env.HOST_PORT}/`);
    await hostTab.waitForSelector('.tw-panel:not([hidden])');
    await ask(hostTab, 'how do I divide fractions?');
    check((await hostTab.textContent('.tw-log')).includes('Sources:'), 'the widget works on a page of an allowed origin');
    const other = await host.newPage();
    await other.goto(`http://127.0.0.1:${process.env.OTHER_PORT}/`);
    await other.waitForFunction(() => /cannot be reached/.test((document.querySelector('.tw-status') || {}).textContent || ''));
    check(true, 'the widget is refused on an origin not on the list');

    // ---- nothing of an answer key reached the browser ----
    const unearned = SECRETS.filter((s) => !earned.has(s));
    const leak = bodies.find((b) => unearned.some((s) => b.body.includes(s)));
    check(earned.size >= 2 && unearned.length > 150, 'the scan knows what was asked for');
    check(!leak, 'no answer key reaches the browser' + (leak ? `: ${leak.url} shows ${unearned.find((s) => leak.body.includes(s))}` : ''));
    timings.responses_scanned = bodies.length;
    const real = errors.filter((e) => !/401|Unauthorized|CORS|Failed to load resource|net::ERR_FAILED/.test(e));
    check(real.length === 0, 'no script errors' + (real.length ? `: ${real.join(' | ')}` : ''));
  } finally {
    await browser.close();
  }
}

(async () => {
  const a = await hostPage(Number(process.env.HOST_PORT), T.eli);
  const b = await hostPage(Number(process.env.OTHER_PORT), T.eli);
  try {
    await main();
    console.log(JSON.stringify({ ok: true, seen: Object.keys(seen), timings }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e.stack || e), seen: Object.keys(seen), timings }));
    process.exitCode = 1;
  } finally {
    a.close();
    b.close();
  }
})();
