// The educators' page in a real Chromium, driven by Playwright (playwright-core, Debian's
// chromium). Called by tests/pages.rs with the server's address and tokens in the environment;
// prints one JSON object of what it saw and exits non-zero on the first failed step.
'use strict';
const { chromium } = require('playwright-core');
const path = require('path');

const BASE = process.env.BASE;
const SHOTS = process.env.SHOTS;
const seen = {};

function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  seen[what] = true;
}

// Presses Tab until the focused element matches, as a keyboard user would.
async function tabTo(page, test, what, max = 80) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(test)) return;
  }
  throw new Error(`failed: could not reach ${what} with Tab`);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

    // the queue, with the flag the three wrong answers raised
    await page.goto(`${BASE}/educator#token=${process.env.TOKEN_A}`);
    await page.waitForSelector('[data-flag-row]');
    check(!page.url().includes('token='), 'the token leaves the address bar');
    const rows = await page.$$eval('[data-flag-row]', (rs) => rs.map((r) => r.textContent));
    check(rows.some((r) => r.includes(process.env.LEARNER)), 'the flag is in the queue');
    check(/Open [1-9]/.test(await page.textContent('#counts')), 'the counts show open flags');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'educator-queue.png') });

    // open it with the keyboard alone
    await page.focus('body');
    await tabTo(page, `document.activeElement && document.activeElement.textContent.startsWith(${JSON.stringify(process.env.LEARNER)})`, 'the flag');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#detail:not([hidden]) .answers');
    const detail = await page.textContent('#detail');
    check(detail.includes('3/8'), 'the answers are shown');
    check(detail.includes('Multiplied instead of dividing'), 'the diagnosis is shown');
    check(detail.includes('wrong streak'), 'the rule that fired is shown');
    check((await page.$$('#detail svg.trend circle')).length >= 3, 'the mastery trend is drawn');
    check(await page.evaluate(() => document.activeElement.id === 'detail'), 'focus moves to the flag');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'educator-flag.png'), fullPage: true });

    // resolve it with a note, by keyboard
    await tabTo(page, `document.activeElement.id === 'note'`, 'the note');
    await page.keyboard.type(process.env.NOTE);
    await tabTo(page, `document.activeElement.textContent === 'Resolve'`, 'the Resolve button');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('status').textContent.includes('resolved'));
    const history = await page.textContent('#detail .history');
    check(history.includes(process.env.NOTE), 'the note is in the history');
    await page.waitForFunction((l) => ![...document.querySelectorAll('[data-flag-row]')].some((r) => r.textContent.includes(l)), process.env.LEARNER);
    seen['the resolved flag leaves the open list'] = true;
    await page.keyboard.press('Escape');

    // analytics: the struggling skill, and a small group suppressed
    await tabTo(page, `document.activeElement.id === 'show-analytics'`, 'the Analytics button');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#demand table');
    const demand = await page.textContent('#demand');
    check(demand.includes(process.env.SKILL_NAME), 'the struggling skill is in the analytics');
    const rate = await page.textContent(`#demand td[data-skill="${process.env.SKILL}"]`);
    check(/\d+%/.test(rate), 'its wrong-answer rate is shown');
    const groups = await page.$$eval('#group option', (os) => os.map((o) => o.textContent));
    check(groups.some((g) => g.includes(process.env.SMALL_GROUP) && g.includes('fewer than 5 learners')), 'the small group is listed as suppressed');
    check((await page.$$('#components svg.bars rect')).length > 0, 'struggle by component is drawn');
    check((await page.$$('#progression svg.stacked rect.band')).length > 0, 'the progression is drawn');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'educator-analytics.png'), fullPage: true });
    await page.selectOption('#group', process.env.SMALL_GROUP);
    await page.waitForFunction((g) => document.getElementById('a-summary').textContent.includes('Group ' + g), process.env.SMALL_GROUP);
    const small = await page.textContent('#demand');
    check(small.includes('fewer than 5 learners') && !/\d+%/.test(small), 'the small group shows no figure');
    // a tablet: the page fits its width (wide tables scroll inside their box)
    await page.setViewportSize({ width: 820, height: 1180 });
    await page.click('#show-queue');
    await page.waitForSelector('[data-flag-row]');
    check(await page.evaluate(() => document.documentElement.scrollWidth <= 820), 'the page fits a tablet');
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, 'educator-tablet.png') });
    if (errors.length) throw new Error('failed: script errors: ' + errors.join('; '));
    seen['no script errors'] = true;

    // an educator of the other course sees none of these flags
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${BASE}/educator#token=${process.env.TOKEN_B}`);
    await other.waitForFunction(() => document.getElementById('counts').textContent.includes('Open'));
    const theirs = await other.$$eval('[data-flag-row]', (rs) => rs.map((r) => r.textContent));
    check(!theirs.some((r) => r.includes(process.env.LEARNER)), "another course's educator does not see the flag");
    const courses = await other.$$eval('#course option', (os) => os.map((o) => o.value));
    check(courses.length === 1 && courses[0] === process.env.OTHER_COURSE, 'they can pick only their course');
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ ok: true, seen: Object.keys(seen) }));
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message || e), seen: Object.keys(seen) }));
  process.exit(1);
});
