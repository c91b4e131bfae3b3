// The operator dashboard in a real browser: Debian's headless Chromium, driven by
// playwright-core, against a running pool-local on the emulator (scripts/browser-test starts
// it). BASE_URL is the server, POOL_API_KEY its key, EMULATOR_URL the emulator pool-local runs
// (its control API under /_emulator slows joins down and makes creation fail); screenshots go
// to SCREENSHOT_DIR.
// Prints each step; exits non-zero on the first failure (with a screenshot of the page then).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = (process.env.BASE_URL || '').replace(/\/+$/, '');
const KEY = process.env.POOL_API_KEY || '';
const EMULATOR_URL = (process.env.EMULATOR_URL || '').replace(/\/+$/, '');
const SHOTS = process.env.SCREENSHOT_DIR || 'artifacts/screenshots';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The emulator is fast, CI machines are slow: every wait is generous.
const WAIT = Number(process.env.WAIT_MS || 30_000);

assert.ok(BASE_URL, 'BASE_URL is required (e.g. http://127.0.0.1:3001)');
assert.ok(KEY, 'POOL_API_KEY is required');
assert.ok(EMULATOR_URL, "EMULATOR_URL is required (the emulator's base URL, e.g. http://127.0.0.1:8090)");
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
  // From the top: scrolled, the sticky header would be drawn over the middle of a full-page shot.
  await page.evaluate(() => window.scrollTo(0, 0));
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
// The emulator's control API (loopback, no token) and the pool's API, from node: these are not
// the page's requests, so they do not count as requests to other hosts.
async function emulator(method, route, body) {
  const response = await fetch(`${EMULATOR_URL}/_emulator${route}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`emulator ${method} ${route}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
async function poolGet(route) {
  const response = await fetch(`${BASE_URL}${route}`, {
    headers: { Authorization: `Bearer ${KEY}`, Accept: 'application/json' },
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`pool GET ${route}: ${response.status} ${text}`);
  return JSON.parse(text);
}
// Polls `probe` until it returns something truthy; fails with `what` after `timeout` ms.
async function until(what, probe, timeout = WAIT * 2) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`waited ${timeout / 1000} s for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
const secsSince = (t) => ((Date.now() - t) / 1000).toFixed(1);
// Records every text the launch result's heading shows (with its spinner or not), so a state
// the test could miss on a slow machine is still seen.
async function watchResultHead() {
  await page.evaluate(() => {
    const head = document.querySelector('[data-testid="result-head"]');
    window.__heads = [];
    const note = () => {
      const entry = { text: head.textContent.trim(), spinner: !!head.querySelector('.spinner') };
      const last = window.__heads[window.__heads.length - 1];
      if (entry.text && (!last || last.text !== entry.text || last.spinner !== entry.spinner)) window.__heads.push(entry);
    };
    window.__headObserver?.disconnect();
    window.__headObserver = new MutationObserver(note);
    window.__headObserver.observe(head, { childList: true, subtree: true, characterData: true });
  });
}
async function fillJoin(name, instructions) {
  await page.locator(tid('launch-mode-join')).check();
  await page.locator(tid('launch-name')).fill(name);
  await page.locator(tid('launch-join-url')).fill(joinUrl(name));
  await page.locator(tid('launch-instructions')).fill(instructions);
}
// An invite the emulated convos CLI decodes (emulator/README.md: base64url of
// `emulated-convos-invite:`…); a made-up slug is refused like on the real gateway.
// One invite per join: the pool answers a second claim for an invite that a live agent already
// serves with that agent's claim (issue 15.5).
const joinUrl = (name) => `https://dev.convos.org/v2?i=${Buffer.from(`emulated-convos-invite:${name}`).toString('base64url')}`;
const claimPost = (r) => r.url() === `${ORIGIN}/api/pool/claim` && r.request().method() === 'POST';

function assertKeyNotInPage(html, where) {
  assert.ok(!html.includes(KEY), `the page HTML contains the API key (${where})`);
}

try {
  step('open the dashboard');
  const response = await page.goto(`${BASE_URL}/`);
  assert.equal(response.status(), 200);
  const csp = response.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/, 'the page is served with its Content-Security-Policy');
  // Issue 14: no inline script runs; the page's script is its own file on this origin.
  assert.match(csp, /script-src 'self';/, 'scripts only from this origin');
  assert.doesNotMatch(csp, /script-src[^;]*'unsafe-inline'/, 'no inline script allowed');
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
  // The QR code is fetched from the agent's own route (issue 14) once the row is drawn.
  await row.locator(`${tid('agent-qr')} svg`).first().waitFor({ state: 'attached' });
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

  step('a join that outlasts the claim\'s 20 s wait: the claim answers 202 and the page waits');
  // The emulator scales join_delay_ms by its speed: ask for ~25 s of real time, 5 s more than
  // the pool's claim waits before answering 202 (EngineSettings claim_wait).
  const emulatorConfig = await emulator('GET', '/config');
  const { speed } = emulatorConfig;
  assert.ok(speed > 0, `the emulator runs at speed ${speed}; a join delay needs speed > 0`);
  const savedJoin = { join_delay_ms: emulatorConfig.join_delay_ms, join_outcome: emulatorConfig.join_outcome };
  const slowJoinMs = Math.round(25_000 / speed);
  const slowConfig = await emulator('PUT', '/config', { join_delay_ms: slowJoinMs, join_outcome: 'joined' });
  assert.equal(slowConfig.join_delay_ms, slowJoinMs);
  await waitCount('idle', 1);
  const joinName = `browser-join-${Math.random().toString(36).slice(2, 8)}`;
  await fillJoin(joinName, 'You join trips already planned.');
  await watchResultHead();
  // Every answer of the claim's status URL, in order.
  const claimPolls = [];
  page.on('response', async (r) => {
    if (/\/api\/pool\/claims\/[^/]+$/.test(new URL(r.url()).pathname) && r.request().method() === 'GET') {
      try { claimPolls.push({ url: r.url(), status: r.status(), body: await r.json() }); } catch { /* page gone */ }
    }
  });
  const joinStarted = Date.now();
  const gotClaim = page.waitForResponse(claimPost, { timeout: 60_000 });
  await page.locator(tid('launch-submit')).click();
  const submit = page.locator(tid('launch-submit'));
  await page.waitForFunction(() => {
    const b = document.querySelector('[data-testid="launch-submit"]');
    return b.disabled && b.getAttribute('aria-busy') === 'true';
  }, null, { timeout: 5_000 });
  assert.match(await submit.textContent(), /joining/i, 'the submit button says it is joining');
  const accepted = await gotClaim;
  const claimSecs = secsSince(joinStarted);
  assert.equal(accepted.status(), 202, `the claim answered ${accepted.status()}, not 202`);
  const pendingBody = await accepted.json();
  assert.equal(pendingBody.status, 'pending');
  assert.match(pendingBody.statusUrl, /^\/api\/pool\/claims\/[0-9a-f-]{36}$/, 'a same-origin status URL');
  assert.ok(pendingBody.instanceId, 'the 202 names the instance');
  assert.ok(Date.now() - joinStarted >= 15_000, `the claim answered 202 after only ${claimSecs} s`);
  // The waiting state: a spinner in the result heading, the busy button, no invite yet.
  const head = page.locator(tid('result-head'));
  await page.locator(`${tid('result-head')} .spinner`).waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await head.textContent(), /joining/i);
  assert.equal(await page.locator(tid('result-invite-url')).isVisible(), false, 'no invite while waiting');
  assert.equal(await submit.isDisabled(), true, 'the submit button stays busy while the join runs');
  // The page polls the status URL (every 1.5 s) and says it is still waiting.
  await page.waitForResponse((r) => r.url() === `${ORIGIN}${pendingBody.statusUrl}`, { timeout: 15_000 });
  await page.locator(tid('result-sub')).filter({ hasText: /still waiting/ }).waitFor({ state: 'visible', timeout: 10_000 });
  assert.ok(claimPolls.some((p) => p.body.status === 'pending'), 'a poll answered pending');
  await shot('04-join-waiting.png');
  ok(`202 after ${claimSecs} s (join delay ${slowJoinMs} ms at speed ${speed}); waiting state shown; polling ${pendingBody.statusUrl}`);

  step('the join finishes: the page shows the joined result and lists the agent');
  await page.waitForFunction(() => {
    const h = document.querySelector('[data-testid="result-head"]');
    return !h.querySelector('.spinner') && h.textContent.trim() === 'Agent joined the conversation';
  }, null, { timeout: 60_000 });
  const joinSecs = secsSince(joinStarted);
  // (Bodies are read after the page has them: wait for the final one here too.)
  const finalPoll = await until('a final answer of the status URL', () =>
    claimPolls.find((p) => p.url === `${ORIGIN}${pendingBody.statusUrl}` && p.body.status !== 'pending'), 5_000);
  assert.equal(finalPoll.status, 200);
  assert.equal(finalPoll.body.status, 'joined');
  assert.equal(finalPoll.body.joined, true);
  assert.equal(finalPoll.body.instanceId, pendingBody.instanceId);
  assert.ok(finalPoll.body.conversationId, 'the joined claim has a conversation');
  assert.match(await page.locator(tid('result-sub')).textContent(), new RegExp(`conversation ${finalPoll.body.conversationId}`));
  assert.equal((await page.locator(tid('result-invite-url')).textContent()).trim(), finalPoll.body.inviteUrl);
  await page.waitForFunction(() => !document.querySelector('[data-testid="launch-submit"]').disabled, null, { timeout: 5_000 });
  const heads = await page.evaluate(() => window.__heads);
  const firstPending = heads.findIndex((h) => h.spinner);
  const firstJoined = heads.findIndex((h) => h.text === 'Agent joined the conversation');
  assert.ok(firstPending >= 0 && firstPending < firstJoined, `heading went waiting -> joined (${JSON.stringify(heads)})`);
  const joinedRow = page.locator(`${tid('agent-row')}[data-instance-id="${pendingBody.instanceId}"]`);
  await joinedRow.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal((await joinedRow.locator(tid('agent-name')).textContent()).trim(), joinName);
  await page.waitForFunction(
    (id) => document.querySelector(`[data-testid="agent-row"][data-instance-id="${id}"] [data-testid="agent-join"]`)?.textContent === 'join: joined',
    pendingBody.instanceId,
    { timeout: WAIT },
  );
  await shot('05-join-joined.png');
  ok(`joined after ${joinSecs} s (${claimPolls.length} polls); claim status joined, joined true; agent ${pendingBody.instanceId} listed`);

  step('a join that ends waiting for acceptance');
  const quickJoinMs = Math.round(1_000 / speed);
  await emulator('PUT', '/config', { join_delay_ms: quickJoinMs, join_outcome: 'waiting_for_acceptance' });
  await waitCount('idle', 1);
  const waitingName = `browser-wait-${Math.random().toString(36).slice(2, 8)}`;
  await fillJoin(waitingName, 'You wait to be let in.');
  await watchResultHead();
  const gotWaiting = page.waitForResponse(claimPost, { timeout: WAIT * 2 });
  await page.locator(tid('launch-submit')).click();
  const waitingReply = await gotWaiting;
  assert.equal(waitingReply.status(), 200, `the claim answered ${waitingReply.status()}`);
  const waitingBody = await waitingReply.json();
  assert.equal(waitingBody.status, 'waiting_for_acceptance');
  assert.equal(waitingBody.joined, false);
  await page.waitForFunction(() => {
    const h = document.querySelector('[data-testid="result-head"]');
    return !h.querySelector('.spinner') && /waiting for the conversation's creator to accept/i.test(h.textContent);
  }, null, { timeout: WAIT });
  const waitingHead = (await head.textContent()).trim();
  const waitingRow = page.locator(`${tid('agent-row')}[data-instance-id="${waitingBody.instanceId}"]`);
  await waitingRow.waitFor({ state: 'visible', timeout: WAIT });
  assert.equal((await waitingRow.locator(tid('agent-name')).textContent()).trim(), waitingName);
  await page.waitForFunction(
    (id) => document.querySelector(`[data-testid="agent-row"][data-instance-id="${id}"] [data-testid="agent-join"]`)?.textContent === 'join: waiting for acceptance',
    waitingBody.instanceId,
    { timeout: WAIT },
  );
  const restored = await emulator('PUT', '/config', savedJoin);
  assert.equal(restored.join_delay_ms, savedJoin.join_delay_ms);
  assert.equal(restored.join_outcome, savedJoin.join_outcome);
  await shot('06-join-waiting-for-acceptance.png');
  ok(`result "${waitingHead}"; agent ${waitingBody.instanceId} listed with "join: waiting for acceptance"; join settings reset`);

  step('the settings panel shows the stored settings and saves a change');
  const before = await poolGet('/api/pool/settings');
  const minIdle = page.locator(tid('settings-min-idle'));
  await until('the settings form filled from the pool', async () => (await minIdle.inputValue()) === String(before.settings.minIdle));
  // A refused change names its field and stores nothing.
  await page.locator(tid('settings-max-total')).fill(String(before.settings.minIdle));
  await minIdle.fill(String(before.settings.minIdle + 1));
  const errorsBefore = consoleErrors.length;
  await page.locator(tid('settings-submit')).click();
  await page.locator(tid('settings-msg')).filter({ hasText: /Not saved: maxTotal: must not be below minIdle/ }).waitFor({ state: 'visible', timeout: WAIT });
  assert.equal((await poolGet('/api/pool/settings')).revision, before.revision, 'a refused change stores nothing');
  // Chromium reports the refused request's 400 on the console: that one line is expected, and
  // taken out so the final check still sees every other console error.
  const refusal = consoleErrors.splice(errorsBefore);
  assert.equal(refusal.length, 1, `one console line for the refused save: ${refusal.join(' | ')}`);
  assert.match(refusal[0], /status of 400 .*\/api\/pool\/settings/);
  await page.locator(tid('settings-max-total')).fill(String(before.settings.maxTotal + 1));
  await page.locator(tid('settings-submit')).click();
  await page.locator(tid('settings-msg')).filter({ hasText: /Saved \(revision/ }).waitFor({ state: 'visible', timeout: WAIT });
  const after = await poolGet('/api/pool/settings');
  assert.equal(after.settings.minIdle, before.settings.minIdle + 1);
  assert.equal(after.settings.maxTotal, before.settings.maxTotal + 1);
  assert.match(after.history[0].actor, /^api:[0-9a-f]{8}$/, 'the change names the key it was made with');
  assert.deepEqual(after.history[0].detail.minIdle, { old: before.settings.minIdle, new: before.settings.minIdle + 1 });
  await page.locator(tid('settings-meta')).filter({ hasText: `Revision ${after.revision}` }).waitFor({ state: 'visible', timeout: WAIT });
  await shot('07-settings-saved.png');
  ok(`min idle ${before.settings.minIdle} -> ${after.settings.minIdle}, max total ${before.settings.maxTotal} -> ${after.settings.maxTotal}, by ${after.history[0].actor}`);

  // Last: an open breaker pauses creation for 5 minutes.
  step('creation fails: the circuit-breaker banner shows the pause and the last failure');
  // An instance reaching idle closes the breaker: start from a pool with nothing provisioning.
  const settled = await until('nothing provisioning and the minimum idle', async () => {
    const status = await poolGet('/api/pool/status');
    return (status.counts.provisioning || 0) === 0 && (status.counts.idle || 0) >= status.minIdle && status;
  });
  assert.equal(settled.breaker.openUntil, null, 'the breaker is closed before the faults');
  assert.equal(await page.locator(tid('breaker-banner')).isVisible(), false, 'no banner before the faults');
  const failure = 'browser-test: injected create failure';
  const fault = await emulator('POST', '/faults', {
    route: 'sprites.create',
    count: 50,
    // A refusal (400) counts toward the breaker at once; a 5xx is retried and counts only when
    // the instance is given up (issue 19: only permanent failures open the breaker).
    kind: { type: 'status', status: 400, body: JSON.stringify({ error: failure }) },
  });
  assert.ok(fault.id, 'the fault has an id');
  const breakerStarted = Date.now();
  await page.locator(tid('replenish-count')).fill('3');
  await page.locator(tid('replenish-submit')).click();
  await page.locator(tid('controls-msg')).filter({ hasText: /Started 3 instances/ }).waitFor({ state: 'visible', timeout: WAIT });
  const banner = page.locator(tid('breaker-banner'));
  // Each refused create counts; the breaker opens on the 3rd refusal in a row.
  await banner.waitFor({ state: 'visible', timeout: 45_000 });
  const bannerSecs = secsSince(breakerStarted);
  const bannerText = (await banner.textContent()).replace(/\s+/g, ' ').trim();
  const { breaker } = await poolGet('/api/pool/status');
  assert.ok(breaker.openUntil, 'the pool says the breaker is open');
  const pauseMs = Date.parse(breaker.openUntil) - Date.now();
  assert.ok(pauseMs > 200_000 && pauseMs <= 300_000, `paused for ${pauseMs} ms more`);
  assert.ok(breaker.consecutiveFailures >= 3, `${breaker.consecutiveFailures} failures in a row`);
  assert.match(breaker.lastFailure, new RegExp(failure));
  const untilClock = await page.evaluate((iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }), breaker.openUntil);
  assert.match(bannerText, /^Creation paused until /);
  assert.ok(bannerText.includes(`until ${untilClock}`), `the banner shows the pause end ${untilClock}: "${bannerText}"`);
  assert.match(bannerText, /\(in [45]m \d\ds\)/, 'the banner shows how long the pause lasts');
  assert.ok(bannerText.includes(failure), `the banner shows the last failure: "${bannerText}"`);
  assert.match(bannerText, /\d+ failures in a row/);
  // Replenishing now starts nothing and says why.
  await page.locator(tid('replenish-count')).fill('1');
  await page.locator(tid('replenish-submit')).click();
  await page.locator(tid('controls-msg')).filter({ hasText: /Creation is paused \(circuit breaker\); started 0/ }).waitFor({ state: 'visible', timeout: WAIT });
  const faults = await emulator('GET', '/faults');
  const hits = (Array.isArray(faults) ? faults : faults.faults || []).find((f) => f.id === fault.id)?.hits;
  await shot('08-breaker-open.png');
  await emulator('DELETE', '/faults');
  ok(`banner after ${bannerSecs} s: "${bannerText}"; ${hits ?? '?'} create calls refused; replenish says creation is paused`);

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
  try {
    await emulator('DELETE', '/faults');
  } catch { /* the emulator may be gone */ }
  if (pageErrors.length) process.stdout.write(`page errors: ${pageErrors.join(' | ')}\n`);
  if (consoleErrors.length) process.stdout.write(`console errors: ${consoleErrors.join(' | ')}\n`);
  await browser.close();
  process.stdout.write(`browser-test: ${passed} passed, 1 failed\n`);
  process.exit(1);
}

await browser.close();
process.stdout.write(`total ${((Date.now() - started) / 1000).toFixed(1)} s in the browser\n`);
process.stdout.write(`browser-test: ${passed} passed, 0 failed\n`);
