// Drives the gateway's web page in headless Chromium (run by tests/web/test_page.py).
//
// Environment: GATEWAY_URL, TOKEN, CHROMIUM (executable), SHOTS (screenshot folder).
// Prints one JSON line with what it saw; exits 1 with the reason on the first failed check.
import { chromium } from 'playwright-core';

const { GATEWAY_URL: base, TOKEN: token, CHROMIUM: executablePath, SHOTS: shots } = process.env;
const WAIT = { timeout: 20000 };
const TOOL_MESSAGE = 'say it back [[tool:echo {"text": "hello"}]]';
const problems = [];
let reconnects = 0; // event-stream requests that resume with Last-Event-ID
let onReconnect = () => {};

// Resolves once `count` resumed event-stream requests have been seen (the gateway ends
// streams every 2.5 s, so open pages keep resuming); fails after `timeout` ms.
function reconnected(count, timeout = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${reconnects} resumed streams`)), timeout);
    onReconnect = () => {
      if (reconnects >= count) { clearTimeout(timer); resolve(); }
    };
    onReconnect();
  });
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function openPage(context, name, hash = '') {
  const page = await context.newPage();
  page.on('request', (request) => {
    if (request.url().endsWith('/events') && request.headers()['last-event-id']) {
      reconnects += 1;
      onReconnect();
    }
  });
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on('console', (msg) => {
    if (msg.text().includes(token)) problems.push(`${name}: the token was logged to the console`);
    if (msg.type() === 'error') problems.push(`${name}: console error: ${msg.text()}`);
  });
  const response = await page.goto(`${base}/${hash}`);
  check(response.ok(), `${name}: GET / answered ${response.status()}`);
  return page;
}

// Every turn on the page with its status, user text, answer, tool calls and results.
function turns(page) {
  return page.$$eval('#messages .turn', (nodes) => nodes.map((n) => ({
    status: n.dataset.status,
    user: n.querySelector('.bubble.user').textContent,
    answer: Array.from(n.querySelectorAll('.answer'), (a) => a.textContent).join(''),
    tools: Array.from(n.querySelectorAll('.tool-call .tool-name'), (t) => t.textContent),
    args: Array.from(n.querySelectorAll('.tool-call .tool-args'), (t) => t.textContent),
    results: Array.from(n.querySelectorAll('.tool-result'), (t) => t.textContent),
    statusText: n.querySelector('.status').textContent,
  })));
}

function timeline(page) {
  return page.$$eval('#timeline li', (rows) => rows.map((r) => ({
    position: Number(r.dataset.position),
    time: r.querySelector('.time').textContent,
    kind: r.querySelector('.kind').textContent,
  })));
}

async function waitTurn(page, index, status) {
  await page.waitForFunction(
    ([i, s]) => {
      const turn = document.querySelectorAll('#messages .turn')[i];
      return turn && turn.dataset.status === s;
    },
    [index, status],
    WAIT,
  );
}

// Samples the answer of turn `index` on `page` until it ends: the lengths seen on the way.
async function sampleAnswer(page, index) {
  const lengths = [];
  for (let i = 0; i < 1000; i++) {
    const state = await page.evaluate((n) => {
      const turn = document.querySelectorAll('#messages .turn')[n];
      if (!turn) return null;
      return { status: turn.dataset.status, length: turn.querySelector('.assistant').textContent.length };
    }, index);
    if (state) {
      if (lengths[lengths.length - 1] !== state.length) lengths.push(state.length);
      if (['completed', 'failed', 'cancelled'].includes(state.status)) return lengths;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error('the streamed answer never ended');
}

async function send(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

async function main() {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  const result = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const one = await openPage(context, 'page 1');
    // the token: entered once, kept in localStorage, never shown back
    await one.fill('#token', token);
    await one.click('#token-form button[type=submit]');
    await one.waitForFunction(() => document.getElementById('auth-status').dataset.state === 'ok', null, WAIT);
    check(await one.inputValue('#token') === '', 'the token field is cleared after saving');
    // a new session from the page
    await one.fill('#new-title', 'Browser test');
    await one.click('#new-session button[type=submit]');
    await one.waitForFunction(() => /^#session=/.test(location.hash), null, WAIT);
    const session = (await one.evaluate(() => location.hash)).slice('#session='.length);
    result.session = session;
    await one.waitForFunction(() => document.getElementById('session-title').textContent === 'Browser test', null, WAIT);
    await one.waitForSelector(`#session-list li[data-session="${session}"].current`, WAIT);
    // a second tab on the same session (same browser profile: it finds the token)
    const two = await openPage(context, 'page 2', `#session=${session}`);
    for (const page of [one, two]) {
      await page.waitForFunction(() => document.getElementById('stream-status').textContent === 'live', null, WAIT);
    }

    // 1. a tool call, sent from page 1, seen live on both pages
    await send(one, TOOL_MESSAGE);
    const toolSamples = sampleAnswer(two, 0);
    for (const page of [one, two]) await waitTurn(page, 0, 'completed');
    result.toolSamples = await toolSamples;
    result.turns = [await turns(one), await turns(two)];
    for (const [i, seen] of result.turns.entries()) {
      const turn = seen[0];
      check(turn.user === TOOL_MESSAGE, `page ${i + 1} shows the user message: ${turn.user}`);
      check(turn.tools.length === 1 && turn.tools[0].includes('threadline__echo'), `page ${i + 1} shows the tool call: ${turn.tools}`);
      check(JSON.parse(turn.args[0]).text === 'hello', `page ${i + 1} shows the call's arguments: ${turn.args}`);
      check(turn.results.length === 1 && turn.results[0].includes('hello'), `page ${i + 1} shows the tool result: ${turn.results}`);
      check(turn.answer.includes('hello'), `page ${i + 1} shows the answer: ${turn.answer}`);
      check(turn.statusText.startsWith('completed'), `page ${i + 1} shows the turn completed: ${turn.statusText}`);
    }
    check(result.turns[0][0].answer === result.turns[1][0].answer, 'both pages show the same answer');

    // 2. a long answer streams in on page 2, piece by piece
    await send(one, 'stream please [[pace:ttft=0,tps=40]] [[words:30]]');
    result.streamSamples = await sampleAnswer(two, 1);
    const partial = result.streamSamples.filter((n) => n > 0);
    check(partial.length >= 4, `page 2 saw the answer grow (${result.streamSamples})`);
    await waitTurn(one, 1, 'completed');

    // 3. Stop, pressed on page 2 while page 1's long answer streams: both see it cancelled
    await send(one, 'a long one [[pace:ttft=0,tps=10]] [[words:100]]');
    await two.waitForFunction(() => {
      const turn = document.querySelectorAll('#messages .turn')[2];
      return turn && turn.dataset.status === 'running' && turn.querySelector('.assistant').textContent.length > 10;
    }, null, WAIT);
    await two.waitForSelector('#stop:not([disabled])', WAIT);
    await two.screenshot({ path: `${shots}/streaming.png` });
    await two.click('#stop');
    for (const page of [one, two]) await waitTurn(page, 2, 'cancelled');
    check(await one.isDisabled('#stop'), 'Stop is disabled once nothing runs');

    // 4. a provider error a retry gets past (a fallback), and one that fails the turn
    await send(one, 'hiccup [[fail:500 times=1]]');
    for (const page of [one, two]) await waitTurn(page, 3, 'completed');
    await send(one, 'bad key [[fail:401]]');
    for (const page of [one, two]) await waitTurn(page, 4, 'failed');
    for (const [i, page] of [one, two].entries()) {
      const notes = await page.$$eval('#messages .turn:nth-child(4) .note.fallback', (n) => n.map((x) => x.textContent));
      check(notes.length >= 1 && notes[0].includes('retry'), `page ${i + 1} shows the fallback: ${notes}`);
      const failed = (await turns(page))[4].statusText;
      check(failed.startsWith('failed (auth)'), `page ${i + 1} shows the failure: ${failed}`);
    }

    // 5. a failed turn's Retry button (pressed on page 2) asks its question again
    await send(one, 'flaky [[fail:500 times=4]]');
    for (const page of [one, two]) await waitTurn(page, 5, 'failed');
    await two.click('#messages .turn:nth-child(6) button.retry');
    for (const page of [one, two]) await waitTurn(page, 6, 'completed');
    for (const [i, page] of [one, two].entries()) {
      const retried = (await turns(page))[6];
      check(retried.user === 'flaky [[fail:500 times=4]]' && retried.answer.includes('flaky'), `page ${i + 1} shows the retried turn: ${JSON.stringify(retried)}`);
    }

    // the timeline: every event, positions increasing, with times
    for (const [i, page] of [one, two].entries()) {
      const rows = await timeline(page);
      const positions = rows.map((r) => r.position);
      check(rows.length >= 10, `page ${i + 1}'s timeline has the events (${rows.length})`);
      check(positions.every((p, j) => Number.isInteger(p) && p > 0 && (j === 0 || p > positions[j - 1])), `page ${i + 1}'s positions increase: ${positions}`);
      check(rows.every((r) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(r.time)), `page ${i + 1}'s rows have times`);
      const kinds = new Set(rows.map((r) => r.kind));
      for (const kind of ['session_started', 'user_message', 'turn_started', 'text_delta', 'tool_call', 'tool_result',
        'assistant_message', 'turn_completed', 'cancel_requested', 'turn_cancelled', 'fallback', 'turn_failed']) {
        check(kinds.has(kind), `page ${i + 1}'s timeline shows ${kind}`);
      }
      result[`timeline${i + 1}`] = positions;
    }
    check(result.timeline1.join() === result.timeline2.join(), 'both timelines list the same positions');
    // a row opens to the raw envelope
    await one.click('#timeline li.k-tool_call');
    const raw = await one.textContent('#timeline li.k-tool_call pre');
    check(JSON.parse(raw).event.kind === 'tool_call', 'a timeline row shows its raw event');
    await one.screenshot({ path: `${shots}/page.png` });

    // a reload rebuilds the same chat from the log
    await two.reload();
    await waitTurn(two, 6, 'completed');
    const reloaded = await turns(two);
    const statuses = reloaded.map((t) => t.status).join();
    check(statuses === 'completed,completed,cancelled,completed,failed,failed,completed', `after a reload: ${statuses}`);
    check(reloaded[0].answer === result.turns[0][0].answer, 'after a reload the answer is the same');

    for (const page of [one, two]) {
      const html = await page.content();
      check(!html.includes(token) && !page.url().includes(token), 'the token is not in the page or its URL');
    }
    await reconnected(2); // however fast the turns ran, the pages resume with Last-Event-ID
    check(problems.length === 0, problems.join('\n'));
    result.reconnects = reconnects;
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
