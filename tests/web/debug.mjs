// Drives the replay debugger (/debug) in headless Chromium (run by tests/web/test_debugger.py).
//
// Environment: GATEWAY_URL, TOKEN, CHROMIUM (executable), SHOTS (screenshot folder),
// SCENARIO (JSON: the sessions test_debugger.py made). Prints one JSON line with what it
// saw; exits 1 with the reason on the first failed check.
import { chromium } from 'playwright-core';

const { GATEWAY_URL: base, TOKEN: token, CHROMIUM: executablePath, SHOTS: shots } = process.env;
const scenario = JSON.parse(process.env.SCENARIO || '{}');
const WAIT = { timeout: 20000 };
const problems = [];
let expect401 = false;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(`${base}${path}`, init);
  check(response.ok, `${method} ${path} answered ${response.status}`);
  return response.json();
}

// The answer of a turn as the session's history has it: its assistant steps' text.
async function answerOf(session, n) {
  const detail = await api('GET', `/v1/sessions/${session}`);
  const turn = detail.turns[n - 1].turn_id;
  return detail.messages.filter((m) => m.role === 'assistant' && m.turn_id === turn).map((m) => m.text).join('');
}

function watch(page, name) {
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on('console', (msg) => {
    // the page asks for a dev sign-in first: only `threadline up` answers it (else 404)
    if (msg.type() === 'error' && (msg.location().url || '').endsWith('/web/dev-signin')) return;
    if (msg.text().includes(token)) problems.push(`${name}: the token was logged to the console`);
    // the deliberately rejected token's request
    if (msg.type() === 'error' && /status of 401/.test(msg.text()) && expect401) { expect401 = false; return; }
    if (msg.type() === 'error') problems.push(`${name}: console error: ${msg.text()}`);
  });
}

// A fresh load of the page at `hash` (as a deep link pasted in the address bar).
async function open(page, hash) {
  await page.goto('about:blank');
  const response = await page.goto(`${base}/debug${hash}`);
  check(response.ok(), `GET /debug answered ${response.status()}`);
}

async function waitLoaded(page, session) {
  await page.waitForFunction((id) => {
    const badge = document.getElementById('chain');
    return ['ok', 'broken'].includes(badge.dataset.state) && !document.getElementById('overview').hidden
      && document.getElementById('meta').textContent.startsWith(id);
  }, session, WAIT);
}

async function chain(page) {
  return page.$eval('#chain', (b) => ({ state: b.dataset.state, text: b.textContent, first: b.dataset.firstBroken }));
}

// Plays the current turn at `speed` and samples the screen's answer until the player stops.
async function play(page, speed) {
  await page.selectOption('#speed', speed);
  const started = Date.now();
  await page.click('#play');
  const growth = [];
  for (let i = 0; i < 2000; i++) {
    const state = await page.evaluate(() => ({
      playing: document.getElementById('screen').dataset.playing,
      length: Array.from(document.querySelectorAll('#screen .answer'), (a) => a.textContent).join('').length,
    }));
    if (growth[growth.length - 1] !== state.length) growth.push(state.length);
    if (state.playing === 'false' && i > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { growth, elapsed: Date.now() - started };
}

function screenText(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#screen .answer'), (a) => a.textContent).join(''));
}

async function noOverflow(page, what) {
  const sizes = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  check(sizes.scroll <= sizes.client, `${what}: no horizontal overflow (${sizes.scroll} > ${sizes.client})`);
}

function launch() {
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// MODE=devsignin: a gateway that hands out its dev token (`threadline up`): the page
// opens the session with nothing pasted, and keeps the token.
async function devSigninMain() {
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    watch(page, 'dev sign-in');
    await open(page, `#session=${scenario.session}`);
    await waitLoaded(page, scenario.session);
    check(await page.isHidden('#token-form'), 'no token asked for');
    check(await page.evaluate(() => localStorage.getItem('threadline.token')) === token, 'the dev token is kept');
    check(problems.length === 0, problems.join('\n'));
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify({ ok: true }) + '\n');
}

async function main() {
  if (process.env.MODE === 'devsignin') return devSigninMain();
  const browser = await launch();
  const result = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    watch(page, 'debugger');
    const { session } = scenario;

    // sign in: a rejected token is not kept; the good one is
    await open(page, `#session=${session}`);
    await page.waitForSelector('#token-form:not([hidden])', WAIT);
    expect401 = true;
    await page.fill('#token', 'not-a-token');
    await page.click('#token-form button[type=submit]');
    await page.waitForFunction(() => /rejected/.test(document.getElementById('token-status').textContent), null, WAIT);
    check(await page.evaluate(() => localStorage.getItem('threadline.token')) === null, 'a rejected token is not stored');
    await page.fill('#token', token);
    await page.click('#token-form button[type=submit]');
    await waitLoaded(page, session);

    // the chain is checked and shown OK
    const ok = await chain(page);
    check(ok.state === 'ok' && ok.text.startsWith('chain OK'), `the chain is OK: ${ok.text}`);
    const turns = await page.$$eval('#turn-list .turn-item:not(.s-session)', (items) => items.map((i) => i.textContent));
    check(turns.length === 3, `three turns listed: ${turns}`);
    check(/in \/ \d+ out/.test(turns[1]) && /TTFT/.test(turns[1]), `a turn shows its cost: ${turns[1]}`);
    check(/fallback/.test(turns[2]), `the retried turn shows its fallback: ${turns[2]}`);

    // the long answer, replayed at recorded pace, is the answer the user got, exactly
    await page.click('#turn-list .turn-item[data-n="2"] button');
    await page.waitForFunction(() => document.getElementById('turn-head').textContent.startsWith('Turn 2'), null, WAIT);
    const request = await page.textContent('#request');
    check(/attempt 1 · dev/.test(request) && /context: the whole conversation/.test(request), `the model request: ${request}`);
    const replay = await play(page, '1');
    result.growth = replay.growth;
    result.replayed = await screenText(page);
    result.expected = await answerOf(session, 2);
    check(result.replayed === result.expected, `the replay is the answer:\n${result.replayed}\n${result.expected}`);
    const span = await page.evaluate(() => {
      const rows = document.querySelectorAll('#steps li .offset');
      return parseFloat(rows[rows.length - 1].textContent.slice(1)) * 1000;
    });
    result.pace = { elapsed: replay.elapsed, recorded: span };
    check(replay.elapsed >= Math.min(span, 3000) * 0.8, `played at recorded pace: ${replay.elapsed} ms for ${span} ms`);
    // scrubbing back shows less; instant shows all again
    await page.$eval('#scrubber', (s) => { s.value = '3'; s.dispatchEvent(new Event('input')); });
    check((await screenText(page)).length < result.expected.length, 'the scrubber goes back');
    const instant = await play(page, '0');
    check(await screenText(page) === result.expected && instant.elapsed < 5000, 'instant replay shows it all');

    // the turn a retry got past: the fallback in the events and on the screen
    await page.click('#turn-list .turn-item[data-n="3"] button');
    await page.waitForFunction(() => document.getElementById('turn-head').textContent.startsWith('Turn 3'), null, WAIT);
    const fallback = await page.textContent('#steps li.k-fallback .sum');
    check(/^retry/.test(fallback), `the fallback is listed: ${fallback}`);
    check(/retry/.test(await page.textContent('#screen .note.fallback')), 'the replay shows the fallback');

    // a deep link opens at the event: the tool call of turn 1
    await open(page, `#session=${session}&turn=1&event=${scenario.toolCall}`);
    await waitLoaded(page, session);
    await page.waitForFunction((p) => document.getElementById('inspector').dataset.position === String(p), scenario.toolCall, WAIT);
    const opened = await page.evaluate(() => ({
      selected: document.querySelector('#steps li.selected').dataset.position,
      turn: document.querySelector('#turn-list .current').dataset.n,
      cursor: document.getElementById('screen').dataset.cursor,
      index: document.querySelector('#steps li.selected').dataset.index,
      tools: Array.from(document.querySelectorAll('#screen .tool-call .tool-name'), (t) => t.textContent),
      json: document.getElementById('event-json').textContent,
    }));
    check(opened.selected === String(scenario.toolCall) && opened.turn === '1', `the deep link selects the event: ${JSON.stringify(opened)}`);
    check(Number(opened.cursor) === Number(opened.index) + 1, 'the player stands at the event');
    check(opened.tools.length === 1 && opened.tools[0].includes('echo'), `the screen shows the tool call: ${opened.tools}`);
    check(JSON.parse(opened.json).event.kind === 'tool_call', 'the inspector shows the stored event');
    await page.screenshot({ path: `${shots}/debugger-light.png`, fullPage: false });
    // the session's own events (outside any turn) are "turn 0"
    await open(page, `#session=${session}&event=${scenario.started}`);
    await waitLoaded(page, session);
    await page.waitForFunction((p) => document.getElementById('inspector').dataset.position === String(p), scenario.started, WAIT);
    check(await page.getAttribute('#turn-list .current', 'data-n') === '0', 'the session events are selected');
    check(JSON.parse(await page.textContent('#event-json')).event.kind === 'session_started', 'the inspector shows session_started');
    await open(page, `#session=${session}&turn=1&event=${scenario.toolCall}`);
    await waitLoaded(page, session);
    await page.waitForFunction((p) => document.getElementById('inspector').dataset.position === String(p), scenario.toolCall, WAIT);

    // fork from the end of turn 1
    await page.click('#steps li.k-turn_completed button');
    const forkVersion = Number(await page.getAttribute('#fork', 'data-version'));
    await page.click('#fork');
    await page.waitForSelector('#fork-result a.fork-link', WAIT);
    const fork = await page.getAttribute('#fork-result', 'data-fork');
    result.fork = fork;
    result.forkVersion = forkVersion;
    // continue the fork differently, then open it: the diff shows what changed
    const posted = await api('POST', `/v1/sessions/${fork}/messages`, { text: 'stream differently [[words:5]]' });
    for (let i = 0; ; i++) {
      const detail = await api('GET', `/v1/sessions/${fork}`);
      const turn = detail.turns.find((t) => t.turn_id === posted.turn_id);
      if (turn && turn.status === 'completed') break;
      check(i < 400, 'the fork\'s turn completes');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await page.click('#fork-result a.fork-link');
    await waitLoaded(page, fork);
    await page.waitForSelector('#diff:not([hidden]) .diff-row', WAIT);
    const diff = await page.evaluate(() => ({
      head: document.querySelector('#diff-body > p').textContent,
      rows: document.querySelectorAll('#diff .diff-row').length,
      ins: Array.from(document.querySelectorAll('#diff .diff-cell.fork .bubble.user ins'), (n) => n.textContent).join(' '),
      del: Array.from(document.querySelectorAll('#diff .diff-cell.source .bubble.user del'), (n) => n.textContent).join(' '),
      meta: document.getElementById('meta').textContent,
    }));
    result.diff = diff;
    check(diff.meta.includes(`forked from ${session} at version ${forkVersion}`), `the fork names its source: ${diff.meta}`);
    check(/1 turn\(s\) shared/.test(diff.head), `one turn shared: ${diff.head}`);
    check(diff.rows === 2, `two turns after the fork point on the source's side: ${diff.rows}`);
    check(diff.ins.includes('differently') && !diff.ins.includes('stream'), `the fork's changed words: ${diff.ins}`);
    check(diff.del.includes('please'), `the source's changed words: ${diff.del}`);
    // live: a turn asked elsewhere shows up in the open debugger, which moves to it
    await page.waitForFunction(() => document.getElementById('live').dataset.state === 'live', null, WAIT);
    await api('POST', `/v1/sessions/${fork}/messages`, { text: 'and live [[words:3]]' });
    await page.waitForFunction(() => document.querySelectorAll('#turn-list .turn-item:not(.s-session)').length === 3
      && document.getElementById('turn-head').textContent.startsWith('Turn 3 · completed')
      && document.getElementById('chain').dataset.state === 'ok', null, WAIT);
    check((await page.textContent('#screen .bubble.user')) === 'and live [[words:3]]', 'the new turn is shown');
    const exported = (await (await fetch(`${base}/v1/sessions/${fork}/export`, { headers: { Authorization: `Bearer ${token}` } })).text()).trim().split('\n').map((l) => JSON.parse(l));
    const shownHash = await page.$eval('#event-meta', (dl) => Array.from(dl.querySelectorAll('dt')).find((dt) => dt.textContent === 'hash').nextElementSibling.textContent);
    const shownPosition = Number(await page.getAttribute('#inspector', 'data-position'));
    const stored = exported.find((line) => line.position === shownPosition);
    check(stored && stored.hash === shownHash, `a live event's hash is the stored record's: ${shownHash} at ${shownPosition}`);
    await noOverflow(page, 'desktop');
    await page.locator('#diff').screenshot({ path: `${shots}/debugger-diff.png` });

    // a tampered session: the chain is shown broken at the forged record
    await open(page, `#session=${scenario.tampered}&event=${scenario.forged}`);
    await waitLoaded(page, scenario.tampered);
    const broken = await chain(page);
    check(broken.state === 'broken' && broken.first === String(scenario.forged), `the chain is broken: ${JSON.stringify(broken)}`);
    check(broken.text.includes(`position ${scenario.forged}`), `the badge names the position: ${broken.text}`);
    await page.waitForSelector(`#steps li.broken[data-position="${scenario.forged}"].selected`, WAIT);
    check(/hash chain broken/.test(await page.textContent('#problems')), 'the problem is explained');
    check(/hash chain broken/.test(await page.textContent('#event-meta')), 'the inspector says why');
    // its failed turn, that turn's retry, and a turn stopped at once
    const listed = await page.$$eval('#turn-list .turn-item:not(.s-session)', (items) => items.map((i) => ({ cls: i.className, text: i.textContent })));
    check(listed.map((t) => /s-(\w+)/.exec(t.cls)[1]).join() === 'completed,failed,failed,cancelled', `statuses: ${JSON.stringify(listed)}`);
    check(listed[2].text.includes('retry of turn 2'), `the retry names its turn: ${listed[2].text}`);
    await page.click('#turn-list .turn-item[data-n="2"] button');
    await page.waitForFunction(() => document.getElementById('screen').dataset.status === 'failed', null, WAIT);
    check(/failed \(auth\)/.test(await page.textContent('#screen .status')), 'the replay ends with the failure');
    await page.click('#turn-list .turn-item[data-n="4"] button');
    await page.waitForFunction(() => document.getElementById('screen').dataset.status === 'cancelled', null, WAIT);
    check(await page.$('#steps li.k-cancel_requested') !== null, 'the stop request is listed');

    // dark and phone screenshots of the source session
    const dark = await browser.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme: 'dark' });
    await dark.addInitScript((t) => { if (location.protocol.startsWith('http')) localStorage.setItem('threadline.token', t); }, token);
    const darkPage = await dark.newPage();
    watch(darkPage, 'dark');
    await open(darkPage, `#session=${session}&turn=2`);
    await waitLoaded(darkPage, session);
    await darkPage.screenshot({ path: `${shots}/debugger-dark.png` });
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await phone.addInitScript((t) => { if (location.protocol.startsWith('http')) localStorage.setItem('threadline.token', t); }, token);
    const phonePage = await phone.newPage();
    watch(phonePage, 'phone');
    await open(phonePage, `#session=${fork}`);
    await waitLoaded(phonePage, fork);
    await phonePage.waitForSelector('#diff:not([hidden]) .diff-row', WAIT);
    await noOverflow(phonePage, 'phone');
    await phonePage.screenshot({ path: `${shots}/debugger-phone.png` });

    const html = await page.content();
    check(!html.includes(token) && !page.url().includes(token), 'the token is not in the page or its URL');
    check(problems.length === 0, problems.join('\n'));
    result.ok = true;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n${problems.join('\n')}\n`);
  process.exit(1);
});
