// The operator dashboard in a real browser: Debian's headless Chromium, driven by
// playwright-core, against a running pool-local on the emulator (scripts/browser-test starts
// it). BASE_URL is the server, POOL_API_KEY its key; screenshots go to SCREENSHOT_DIR.
// Prints each step; exits non-zero on the first failure (with a screenshot of the page then).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/+$/, '');
const KEY = process.env.POOL_API_KEY || '';
const SHOTS = process.env.SCREENSHOT_DIR || 'artifacts/screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The emulator is fast, CI machines are slow: every wait is generous.
const WAIT = Number(process.env.WAIT_MS || 30_000);

assert.ok(BASE_URL, 'BASE_URL is required (e.g. http://127.0.0.1:3001)');
assert.ok(KEY, 'POOL_API_KEY is required');
const ORIGIN = new URL(BASE_URL).origin;
mkdirSync(SHOTS, { recursive: true });

const started = Date.now();
let passed = 0;
let stepStarted = Date.now();
function step(text) {
  stepStarted = Date.now();
  process.stdout.write(`-- ${text}\n`);
}
function ok(text) {
  passed += 1;
  const secs = ((Date.now() - stepStarted) / 1000).toFixed(1);
  process.stdout.write(`ok ${passed} - ${text} (${secs} s)\n`);
}

const tid = (id) => `[data-testid="${id}"]`;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // We run as root (CI too), where Chromium's sandbox cannot start.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
const page = await context.newPage();
page.setDefaultTimeout(WAIT);

// Everything the page asks for must come from its own origin (the CSP says so; this checks the
// page does not even try). data: and about: URLs are not requests to another host.
const foreign = [];
const requests = [];
page.on('request', (request) => {
  const url = request.url();
  requests.push(`${request.method()} ${url}`);
  if (/^(data|about|blob):/.test(url)) return;
  if (new URL(url).origin !== ORIGIN) foreign.push(url);
});
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(String(error)));
const consoleErrors = [];
page.on('console', (message) => {
  // A failed 401 fetch is logged by Chromium as a console error; that one is expected.
  if (message.type() === 'error' && !/status of 401/.test(message.text())) {
    consoleErrors.push(`${message.text()} [${message.location().url || 'page'}]`);
  }
});
const dialogs = [];
page.on('dialog', async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.accept();
});

async function shot(name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage: true });
  process.stdout.write(`   screenshot ${file}\n`);
}
async function count(status) {
  return Number((await page.locator(tid(`count-${status}`)).textContent()).trim());
}
// Waits until the count cell of `status` is within [min, max].
async function waitCount(status, min, max = Infinity) {
  const label = max === Infinity ? `>= ${min}` : min === max ? `= ${min}` : `${min}..${max}`;
  await page.waitForFunction(
    ([id, lo, hi]) => {
      const text = (document.querySelector(`[data-testid="${id}"]`)?.textContent || '').trim();
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return n >= lo && n <= (hi ?? Infinity);
    },
    [`count-${status}`, min, max === Infinity ? null : max],
    { timeout: WAIT * 2 },
  ).catch((err) => {
    throw new Error(`counts: waited for ${status} ${label}: ${err.message.split('\n')[0]}`);
  });
}
function assertKeyNotInPage(html, where) {
  assert.ok(!html.includes(KEY), `the page HTML contains the API key (${where})`);
}

try {
  step('open the dashboard');
  const response = await page.goto(`${BASE_URL}/`);
  assert.equal(response.status(), 200);
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/, 'the page is served with its Content-Security-Policy');
  await page.locator(tid('key-form')).waitFor({ state: 'visible' });
  assert.equal(await page.locator(tid('authed')).isVisible(), false, 'nothing but counts before a key');
  // Counts are public: they show before any key.
  await page.waitForFunction(() => /^\d+$/.test(document.querySelector('[data-testid="count-idle"]').textContent.trim()));
  const badge = (await page.locator(tid('env-badge')).textContent()).trim();
  assert.equal(badge, 'dev');
  ok(`page served with CSP; key form shown; public counts shown (idle ${await count('idle')}); environment badge "${badge}"`);

  step('a wrong key is refused and asked for again');
  const wrongKey = `wrong-${Math.random().toString(36).slice(2)}`;
  const got401 = page.waitForResponse((r) => r.url().startsWith(`${ORIGIN}/api/pool/`) && r.status() === 401);
  await page.locator(tid('key-input')).fill(wrongKey);
  await page.locator(tid('key-save')).click();
  await got401;
  await page.locator(tid('key-error')).waitFor({ state: 'visible' });
  assert.match(await page.locator(tid('key-error')).textContent(), /wrong or missing key/i);
  assert.equal(await page.locator(tid('key-form')).isVisible(), true, 'the key form is shown again');
  assert.equal(await page.locator(tid('authed')).isVisible(), false);
  assert.equal(await page.evaluate(() => localStorage.getItem('convosPoolKey')), null, 'a 401 forgets the key');
  assert.ok(!(await page.content()).includes(wrongKey), 'the page HTML contains the wrong key');
  await shot('00-wrong-key.png');
  ok('401 seen; "wrong or missing key" shown; key form back; stored key cleared');

  step('the right key is accepted');
  await page.locator(tid('key-input')).fill(KEY);
  await page.locator(tid('key-save')).click();
  await page.locator(tid('authed')).waitFor({ state: 'visible' });
  await page.locator(tid('key-form')).waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => localStorage.getItem('convosPoolKey')), KEY, 'the key is kept in localStorage');
  assert.equal(await page.locator(tid('key-input')).inputValue(), '', 'the key input is emptied');
  await page.locator(`${tid('instance-row')}`).first().waitFor({ state: 'attached' });
  await page.locator(tid('event-row')).first().waitFor({ state: 'attached' });
  assertKeyNotInPage(await page.content(), 'after key entry');
  // Still there after a reload: the key stays in this browser.
  await page.reload();
  await page.locator(tid('authed')).waitFor({ state: 'visible' });
  assert.equal(await page.locator(tid('key-form')).isVisible(), false, 'no key form after a reload');
  await page.locator(`${tid('instance-row')}`).first().waitFor({ state: 'attached' });
  await shot('01-key-entered.png');
  ok('key kept in localStorage (not in the HTML); instances table and activity feed filled; survives a reload');

  step('wait for an idle instance');
  await waitCount('idle', 1);
  const claimedBefore = await count('claimed');
  ok(`idle ${await count('idle')}, claimed ${claimedBefore}`);

  step('launch an agent (create mode) with markup in its instructions');
  const agentName = `browser-test-${Math.random().toString(36).slice(2, 8)}`;
  const instructions = 'You plan trips.\n<script>window.__xss=1</script><b>bold</b> & "quotes"';
  await page.locator(tid('launch-mode-create')).check();
  assert.equal(await page.locator(tid('launch-join-url')).isVisible(), false, 'no join URL in create mode');
  await page.locator(tid('launch-mode-join')).check();
  assert.equal(await page.locator(tid('launch-join-url')).isVisible(), true, 'join mode shows the join URL');
  await page.locator(tid('launch-mode-create')).check();
  await page.locator(tid('launch-name')).fill(agentName);
  await page.locator(tid('launch-instructions')).fill(instructions);
  // Watch the submit button for its busy state, however short it is.
  await page.evaluate(() => {
    const button = document.querySelector('[data-testid="launch-submit"]');
    window.__sawBusy = false;
    new MutationObserver(() => {
      if (button.disabled && button.getAttribute('aria-busy') === 'true') window.__sawBusy = true;
    }).observe(button, { attributes: true });
  });
  await page.locator(tid('launch-submit')).click();
  const resultUrl = page.locator(tid('result-invite-url'));
  await resultUrl.waitFor({ state: 'visible' });
  const inviteUrl = (await resultUrl.textContent()).trim();
  assert.ok(inviteUrl.length > 0, 'the result shows an invite URL');
  assert.equal(await page.evaluate(() => window.__sawBusy), true, 'the submit button showed a busy state');
  await page.locator(`${tid('result-qr')} svg`).waitFor({ state: 'attached' });
  ok(`result: ${(await page.locator(tid('result-head')).textContent()).trim()}; invite ${inviteUrl}; QR shown`);

  step('the agent is listed with its QR code and its instructions as text');
  const row = page.locator(tid('agent-row'), { has: page.locator(tid('agent-name'), { hasText: agentName }) });
  await row.waitFor({ state: 'visible' });
  assert.equal((await row.locator(tid('agent-name')).textContent()).trim(), agentName);
  assert.ok((await row.locator(`${tid('agent-qr')} svg`).count()) >= 1, 'an svg QR code in the agent row');
  assert.equal((await row.locator(tid('agent-invite-url')).textContent()).trim(), inviteUrl);
  const cell = row.locator(tid('agent-instructions'));
  const shown = await cell.textContent();
  assert.equal(shown, instructions, 'the instructions are shown exactly as typed');
  assert.ok(shown.includes('<script>'), 'the cell text contains <script> literally');
  assert.equal(await cell.locator('b').count(), 0, 'no <b> element inside the instructions cell');
  assert.equal(await cell.locator('script').count(), 0, 'no <script> element inside the instructions cell');
  assert.equal(await page.evaluate(() => typeof window.__xss), 'undefined', 'the script in the instructions did not run');
  assert.match((await row.locator(tid('agent-uptime')).textContent()).trim(), /^up \d+/);
  ok('row with name, uptime, invite URL and svg QR; instructions literal, nothing ran');

  step('counts show the claim');
  await waitCount('claimed', claimedBefore + 1);
  assertKeyNotInPage(await page.content(), 'after launch');
  await shot('02-agent-launched.png');
  ok(`claimed ${await count('claimed')}`);

  step('recycle the agent');
  const instanceId = await row.getAttribute('data-instance-id');
  assert.ok(instanceId);
  const byId = page.locator(`${tid('agent-row')}[data-instance-id="${instanceId}"]`);
  await byId.locator(tid('agent-recycle')).click();
  // Shown as recycling (busy button, state line) until the instance is idle again.
  await page.locator(`${tid('agent-row')}[data-instance-id="${instanceId}"][data-state="recycling"]`).waitFor({ state: 'attached', timeout: 5_000 });
  assert.match(await byId.locator(tid('agent-state')).textContent(), /recycling/i);
  assert.equal(await byId.locator(tid('agent-recycle')).isDisabled(), true, 'the recycle button is busy');
  ok(`${instanceId} shows as recycling`);

  step('the agent leaves the list and the counts go back');
  await byId.waitFor({ state: 'detached' });
  await waitCount('claimed', claimedBefore, claimedBefore);
  const instRow = page.locator(`${tid('instance-row')}[data-instance-id="${instanceId}"]`);
  await page.waitForFunction(
    (id) => document.querySelector(`[data-testid="instance-row"][data-instance-id="${id}"] .pill`)?.textContent === 'idle',
    instanceId,
    { timeout: WAIT * 2 },
  );
  assert.equal(await instRow.count(), 1);
  assert.equal(dialogs.length, 0, `no confirm() outside production (got ${dialogs.join(' | ')})`);
  await shot('03-agent-recycled.png');
  ok(`gone from the agents list; claimed ${await count('claimed')}; instance ${instanceId} idle again`);

  step('the page never held the key and asked nothing of other hosts');
  assertKeyNotInPage(await page.content(), 'at the end');
  assert.deepEqual(foreign, [], `requests to other origins: ${foreign.join(', ')}`);
  assert.deepEqual(pageErrors, [], `uncaught errors in the page: ${pageErrors.join(' | ')}`);
  assert.deepEqual(consoleErrors, [], `console errors (CSP violations show here): ${consoleErrors.join(' | ')}`);
  ok(`${requests.length} requests, all to ${ORIGIN}; no page or console errors`);
} catch (error) {
  process.stdout.write(`not ok - ${error.stack || error}\n`);
  try {
    await shot('99-failure.png');
  } catch { /* the page may be gone */ }
  if (pageErrors.length) process.stdout.write(`page errors: ${pageErrors.join(' | ')}\n`);
  if (consoleErrors.length) process.stdout.write(`console errors: ${consoleErrors.join(' | ')}\n`);
  await browser.close();
  process.stdout.write(`browser-test: ${passed} passed, 1 failed\n`);
  process.exit(1);
}

await browser.close();
process.stdout.write(`total ${((Date.now() - started) / 1000).toFixed(1)} s in the browser\n`);
process.stdout.write(`browser-test: ${passed} passed, 0 failed\n`);
