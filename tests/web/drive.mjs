// Drives the gateway's web page in headless Chromium (run by tests/web/test_page.py).
//
// Environment: GATEWAY_URL, TOKEN, CHROMIUM (executable), SHOTS (screenshot folder). The
// gateway hands TOKEN to the page as `threadline up`'s dev sign-in does.
// Prints one JSON line with what it saw; exits 1 with the reason on the first failed check.
import { chromium } from 'playwright-core';

const { GATEWAY_URL: base, TOKEN: token, CHROMIUM: executablePath, SHOTS: shots } = process.env;
const WAIT = { timeout: 20000 };
const TOOL_MESSAGE = 'say it back [[tool:echo {"text": "hello"}]]';
const problems = [];
let reconnects = 0; // event-stream requests that resume with Last-Event-ID
let onReconnect = () => {};
const allowed = []; // [page name, console error pattern] a step expects

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
    // expected: the 401 of the rejected token, and the CSP blocking the inline handler of
    // the hostile markdown (inside DOMPurify's inert parse; the page is never touched)
    // (and on the phone, the 404 of the unknown chat it opens)
    const expected = /status of 401|Executing inline event handler violates/.test(msg.text())
      || (name === 'phone' && /status of 404/.test(msg.text()))
      || allowed.some(([n, pattern]) => n === name && pattern.test(msg.text()));
    if (msg.type() === 'error' && !expected) problems.push(`${name}: console error: ${msg.text()}`);
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
    statusText: n.querySelector('.status .status-text').textContent,
    retry: Boolean(n.querySelector('.status button.retry')),
  })));
}

// The event log's rows; a row of consecutive deltas lists all their positions.
function timeline(page) {
  return page.$$eval('#timeline li', (rows) => rows.map((r) => ({
    positions: r.dataset.positions.split(',').map(Number),
    time: r.querySelector('.time').textContent,
    kind: r.querySelector('.kind').textContent.split(' ')[0],
    summary: r.querySelector('.sum').textContent,
  })));
}

function live(page) {
  return page.waitForFunction(() => document.getElementById('stream-status').dataset.state === 'live', null, WAIT);
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

// A new chat; its id.
async function newChat(page, title) {
  const before = await page.evaluate(() => location.hash);
  await page.fill('#new-title', title);
  await page.click('#new-session button[type=submit]');
  await page.waitForFunction((old) => /^#session=/.test(location.hash) && location.hash !== old, before, WAIT);
  await live(page);
  return (await page.evaluate(() => location.hash)).slice('#session='.length);
}

const MARKDOWN = `[[verbatim]]
A **bold** claim, a [link](https://example.com) and \`inline code\`.

| name | value |
|---|---:|
| alpha | 1 |
| beta | 2 |

\`\`\`python
def add(a, b):
    return a + b
\`\`\`

<img src="x" onerror="window.pwned = 1"><script>window.pwned = 2</script>`;

// Markdown renders (sanitised); a long streamed answer stays in view unless the reader
// scrolled up, and then "jump to latest" brings it back.
async function markdownAndFollowing(page, result) {
  result.markdownSession = await newChat(page, 'Markdown');
  await send(page, MARKDOWN);
  await waitTurn(page, 0, 'completed');
  const seen = await page.evaluate(() => {
    const answer = document.querySelector('#messages .turn .answer');
    return {
      strong: answer.querySelector('strong') && answer.querySelector('strong').textContent,
      code: answer.querySelector('pre code') && answer.querySelector('pre code').textContent,
      highlighted: Boolean(answer.querySelector('pre code.hljs span')),
      copy: Boolean(answer.querySelector('.code-block button.copy')),
      cells: Array.from(answer.querySelectorAll('table td'), (td) => td.textContent),
      link: answer.querySelector('a') && answer.querySelector('a').rel,
      unsafe: Boolean(answer.querySelector('script, img[onerror], [onerror]')) || Boolean(window.pwned),
    };
  });
  check(seen.strong === 'bold', `markdown renders <strong>: ${JSON.stringify(seen)}`);
  check(seen.code && seen.code.includes('return a + b') && seen.highlighted && seen.copy, `a code block is highlighted with a copy button: ${JSON.stringify(seen)}`);
  check(seen.cells.join() === 'alpha,1,beta,2', `a table renders: ${seen.cells}`);
  check(seen.link.includes('noopener') && !seen.unsafe, `the HTML is sanitised: ${JSON.stringify(seen)}`);

  // a long answer: the view follows it to the end
  await send(page, 'tell me a long story [[pace:ttft=0,tps=120]] [[words:700]]');
  const gaps = [];
  let tall = false;
  for (let i = 0; i < 400; i++) {
    const state = await page.evaluate(() => {
      const box = document.getElementById('messages');
      const turn = document.querySelectorAll('#messages .turn')[1];
      return { gap: box.scrollHeight - box.scrollTop - box.clientHeight, tall: box.scrollHeight > 2 * box.clientHeight, status: turn && turn.dataset.status };
    });
    gaps.push(Math.round(state.gap));
    tall = tall || state.tall;
    if (state.status === 'completed') break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await page.waitForTimeout(100); // the last frame
  const end = await page.evaluate(() => { const b = document.getElementById('messages'); return b.scrollHeight - b.scrollTop - b.clientHeight; });
  check(tall, 'the long answer is taller than the view');
  check(end < 2 && gaps.filter((g) => g > 150).length <= 2, `the long answer stayed in view: gaps ${gaps}`);
  result.followGaps = gaps;

  // scrolled up while it streams: the view stays where the reader is; jump to latest
  await send(page, 'and another one [[pace:ttft=0,tps=60]] [[words:500]]');
  await page.waitForFunction(() => {
    const turn = document.querySelectorAll('#messages .turn')[2];
    return turn && turn.querySelector('.assistant').textContent.length > 200;
  }, null, WAIT);
  await page.hover('#messages');
  await page.mouse.wheel(0, -1500);
  await page.waitForSelector('#jump', { state: 'visible', ...WAIT });
  const held = await page.evaluate(() => document.getElementById('messages').scrollTop);
  await page.waitForTimeout(300);
  const still = await page.evaluate(() => document.getElementById('messages').scrollTop);
  check(Math.abs(still - held) < 2, `the view stays where the reader scrolled (${held} -> ${still})`);
  await page.click('#jump');
  await waitTurn(page, 2, 'completed');
  await page.waitForTimeout(100);
  const back = await page.evaluate(() => { const b = document.getElementById('messages'); return b.scrollHeight - b.scrollTop - b.clientHeight; });
  check(back < 2 && await page.isHidden('#jump'), `"jump to latest" follows the answer again (gap ${back})`);
}

// Edit-and-resend: a fork at the message, asked the edited text, linked both ways.
async function editMakesABranch(page, session, result) {
  await page.evaluate((id) => { location.hash = `#session=${id}`; }, session);
  await waitTurn(page, 6, 'completed');
  await page.hover('#messages .turn:nth-child(2) .bubble.user');
  await page.click('#messages .turn:nth-child(2) button.edit');
  await page.fill('#messages .turn:nth-child(2) .edit-form textarea', 'an edited question');
  await page.press('#messages .turn:nth-child(2) .edit-form textarea', 'Enter');
  await page.waitForFunction((id) => /^#session=/.test(location.hash) && !location.hash.endsWith(id), session, WAIT);
  const fork = (await page.evaluate(() => location.hash)).slice('#session='.length);
  result.fork = fork;
  await waitTurn(page, 1, 'completed');
  const forked = await turns(page);
  check(forked.length === 2 && forked[0].user === TOOL_MESSAGE && forked[1].user === 'an edited question', `the branch has the history before the edit, then the edit: ${forked.map((t) => t.user)}`);
  await page.waitForSelector('#session-meta a.branch-of', WAIT);
  check(await page.textContent('#session-meta a.branch-of') === 'Browser test', 'the branch links to its source');
  await page.click('#session-meta a.branch-of');
  await page.waitForSelector('#messages .turn:nth-child(2) a.branch', WAIT);
  const link = await page.getAttribute('#messages .turn:nth-child(2) a.branch', 'href');
  check(link === `#session=${fork}`, `the edited message links to its branch: ${link}`);
}

// The buttons of a call that waits for approval, per tab: [approve, deny] counts.
function approvalButtons(page) {
  return page.$$eval('#messages .tool-call .approval button', (b) => b.filter((x) => !x.hidden).map((x) => x.textContent));
}

function decisions(page, turn) {
  return page.$$eval(`#messages .turn:nth-child(${turn + 1}) .approval-decision`, (n) => n.map((x) => x.textContent));
}

async function waitButtons(page, present) {
  await page.waitForFunction((want) => Boolean(document.querySelector('#messages .tool-call .approval button.approve')) === want, present, WAIT);
}

// Tool approvals in two tabs: a session whose calls all wait (made over REST); approved
// in one tab, both lose the buttons and the call runs; denied with a reason in the other,
// the model is told; a tab that answers too late (its stream held back) gets a quiet note;
// Stop while a call waits removes the buttons.
async function approvals(context, result) {
  const response = await fetch(`${base}/v1/sessions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ title: 'Approvals', tool_servers: ['threadline'], approval: 'always' }),
  });
  check(response.status === 201 || response.status === 200, `the session was created: ${response.status}`);
  const session = (await response.json()).id;
  result.approvalSession = session;
  const one = await openPage(context, 'approve 1', `#session=${session}`);
  const two = await openPage(context, 'approve 2', `#session=${session}`);
  for (const page of [one, two]) await live(page);

  // 1. approved in tab 1: both tabs lose the buttons, the tool runs, the answer completes
  await send(one, 'run it [[tool:echo {"text": "approved-run"}]]');
  for (const page of [one, two]) await waitButtons(page, true);
  for (const page of [one, two]) {
    check((await approvalButtons(page)).join() === 'Approve,Deny', `both tabs show Approve / Deny: ${await approvalButtons(page)}`);
    check(/Waiting for approval/.test(await page.textContent('#messages .turn:nth-child(1) .status-text')), 'the turn says it waits');
  }
  await one.screenshot({ path: `${shots}/approval.png` });
  await one.click('#messages .tool-call .approval button.approve');
  for (const page of [one, two]) await waitTurn(page, 0, 'completed');
  for (const [i, page] of [one, two].entries()) {
    check((await approvalButtons(page)).length === 0, `tab ${i + 1} lost the buttons`);
    const said = await decisions(page, 0);
    check(said.length === 1 && said[0].startsWith('Approved by '), `tab ${i + 1} says who approved: ${said}`);
    const turn = (await turns(page))[0];
    check(turn.results.join().includes('approved-run') && turn.answer.includes('approved-run'), `tab ${i + 1}: the tool ran and the answer completed: ${JSON.stringify(turn)}`);
  }

  // 2. denied with a reason in tab 2: the card says so, the model's answer quotes it
  await send(one, 'and this [[tool:echo {"text": "never-run"}]]');
  for (const page of [one, two]) await waitButtons(page, true);
  await two.click('#messages .turn:nth-child(2) .approval button.deny');
  await two.fill('#messages .turn:nth-child(2) .deny-reason', 'not on prod');
  await two.click('#messages .turn:nth-child(2) .deny-send');
  for (const page of [one, two]) await waitTurn(page, 1, 'completed');
  for (const [i, page] of [one, two].entries()) {
    check((await approvalButtons(page)).length === 0, `tab ${i + 1} lost the deny buttons`);
    const said = await decisions(page, 1);
    check(said.length === 1 && said[0].startsWith('Denied by ') && said[0].endsWith(': not on prod'), `tab ${i + 1} says who denied and why: ${said}`);
    const turn = (await turns(page))[1];
    const state = await page.textContent('#messages .turn:nth-child(2) .tool-state');
    check(state === 'denied' && turn.answer.includes('denied') && turn.answer.includes('not on prod'), `tab ${i + 1}: the model was told: ${state} ${JSON.stringify(turn)}`);
  }

  // 3. a lost race: tab 2's stream is held back (its reconnections refused) while tab 1
  // approves; tab 2's late Deny gets a 409, shown as a quiet note, not an error
  await send(one, 'last one [[tool:echo {"text": "raced"}]]');
  for (const page of [one, two]) await waitButtons(page, true);
  allowed.push(['approve 2', /status of 409|ERR_FAILED/]);
  await two.route('**/events', (route) => route.abort());
  await two.waitForFunction(() => document.getElementById('stream-status').dataset.state === 'reconnecting', null, { timeout: 20000 });
  await one.click('#messages .turn:nth-child(3) .approval button.approve');
  await waitTurn(one, 2, 'completed');
  // (the same answer by the same person would be a retry, 200: tab 2 denies)
  await two.click('#messages .turn:nth-child(3) .approval button.deny');
  await two.fill('#messages .turn:nth-child(3) .deny-reason', 'too late');
  await two.click('#messages .turn:nth-child(3) .deny-send');
  await two.waitForSelector('#messages .turn:nth-child(3) .approval-note', WAIT);
  const note = await two.textContent('#messages .turn:nth-child(3) .approval-note');
  check(note === 'Already decided elsewhere.', `the lost race is a quiet note: ${note}`);
  check(await two.isHidden('#page-error'), 'the lost race is not shown as an error');
  await two.unroute('**/events');
  await waitTurn(two, 2, 'completed');
  check((await approvalButtons(two)).length === 0 && !(await two.$('.approval-note')), 'once its stream resumes, tab 2 shows the decision');
  check((await decisions(two, 2)).join().startsWith('Approved by '), 'tab 2 says who approved');

  // 4. Stop while a call waits: the turn ends at once and the buttons go away in both tabs
  await send(one, 'stop me [[tool:echo {"text": "stopped"}]]');
  for (const page of [one, two]) await waitButtons(page, true);
  await one.click('#stop');
  for (const page of [one, two]) await waitTurn(page, 3, 'cancelled');
  for (const [i, page] of [one, two].entries()) {
    check((await approvalButtons(page)).length === 0, `tab ${i + 1}: a stopped turn has no buttons`);
  }
  await one.close();
  await two.close();
}

// A phone: signed in by the dev sign-in, no horizontal overflow, the box in view, one
// scroller; an unknown chat says so and disables the box.
async function phone(browser, session, result) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const page = await openPage(context, 'phone', `#session=${session}`);
  await waitTurn(page, 6, 'completed');
  const layout = await page.evaluate(() => {
    const input = document.getElementById('input').getBoundingClientRect();
    const scrollers = Array.from(document.querySelectorAll('*')).filter((n) => {
      const style = getComputedStyle(n);
      return /(auto|scroll)/.test(style.overflowY) && n.scrollHeight > n.clientHeight + 1 && n.getClientRects().length && n.closest('.layout') && !n.closest('.sessions');
    }).map((n) => n.id || n.className);
    const wide = Array.from(document.querySelectorAll('*')).filter((n) => n.getBoundingClientRect().right > 391 && n.getClientRects().length)
      .slice(0, 8).map((n) => `${n.tagName}.${n.className}#${n.id}:${Math.round(n.getBoundingClientRect().right)}`).concat([`inner ${innerWidth}`]);
    return {
      wide,
      width: document.documentElement.scrollWidth,
      bodyScroll: document.scrollingElement.scrollHeight - innerHeight,
      inputBottom: input.bottom, inputTop: input.top, scrollers,
    };
  });
  check(layout.width <= 390, `no horizontal overflow at 390 px: ${layout.width} ${layout.wide}`);
  check(layout.inputTop > 0 && layout.inputBottom <= 844, `the message box is in view: ${JSON.stringify(layout)}`);
  check(layout.bodyScroll <= 1 && layout.scrollers.join() === 'messages', `one scroll area, the messages: ${JSON.stringify(layout)}`);
  await page.screenshot({ path: `${shots}/phone.png` });
  await page.click('#toggle-sessions');
  await page.waitForSelector(`#session-list li[data-session="${session}"]`, { state: 'visible', ...WAIT });
  await page.evaluate(() => { location.hash = '#session=no-such-chat'; });
  await page.waitForFunction(() => document.getElementById('session-title').textContent === 'Chat not found', null, WAIT);
  check(await page.isDisabled('#input') && await page.isDisabled('#send'), 'an unknown chat disables the message box');
  result.phone = layout;
  await context.close();
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
    // signed in without a token to paste (the dev sign-in, as under `threadline up`)
    await one.waitForFunction(() => document.getElementById('auth-status').dataset.state === 'ok', null, WAIT);
    check(await one.evaluate(() => localStorage.getItem('threadline.token')) === token, 'the dev sign-in keeps the token');
    // signed out, a deployment's sign-in: a rejected token is never kept, an accepted one is
    await one.click('#sign-out');
    await one.waitForSelector('#token-form', { state: 'visible', ...WAIT });
    await one.fill('#token', 'not-a-token');
    await one.click('#token-form button[type=submit]');
    await one.waitForFunction(() => /not accept/.test(document.getElementById('signin-status').textContent), null, WAIT);
    check(await one.evaluate(() => localStorage.getItem('threadline.token')) === null, 'a rejected token is not kept');
    check(await one.isVisible('#token-form'), 'the sign-in form stays after a rejected token');
    await one.fill('#token', token);
    await one.click('#token-form button[type=submit]');
    await one.waitForFunction(() => document.getElementById('auth-status').dataset.state === 'ok', null, WAIT);
    check(await one.inputValue('#token') === '', 'the token field is cleared after saving');
    check(await one.evaluate(() => localStorage.getItem('threadline.token')) === token, 'an accepted token is kept');
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
    for (const page of [one, two]) await live(page);

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
      check(turn.status === 'completed' && / s|ms/.test(turn.statusText), `page ${i + 1} shows the turn completed: ${turn.statusText}`);
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
      check(notes.length === 1 && notes[0].includes('tried again') && !notes[0].includes('fallback'), `page ${i + 1} shows the retry in words, once: ${notes}`);
      const failed = (await turns(page))[4];
      check(failed.statusText.startsWith('No answer:') && failed.statusText.includes('credentials') && failed.retry, `page ${i + 1} shows the failure in words, with Retry: ${failed.statusText}`);
    }

    // 5. a failed turn's Retry button (pressed on page 2) asks its question again
    await send(one, 'flaky [[fail:500 times=4]]');
    for (const page of [one, two]) await waitTurn(page, 5, 'failed');
    for (const [i, page] of [one, two].entries()) {
      const said = await page.$$eval('#messages .turn:nth-child(6) .note, #messages .turn:nth-child(6) .status-text', (n) => n.map((x) => x.textContent));
      check(said.length === 2 && said[0].includes('(3 times)') && said[1].startsWith('No answer:'), `page ${i + 1} tells the retries and the failure once each: ${said}`);
    }
    await two.click('#messages .turn:nth-child(6) button.retry');
    for (const page of [one, two]) await waitTurn(page, 6, 'completed');
    for (const [i, page] of [one, two].entries()) {
      const retried = (await turns(page))[6];
      check(retried.user === 'flaky [[fail:500 times=4]]' && retried.answer.includes('flaky'), `page ${i + 1} shows the retried turn: ${JSON.stringify(retried)}`);
    }

    // the timeline: every event, positions increasing, with times
    for (const [i, page] of [one, two].entries()) {
      const rows = await timeline(page);
      const positions = rows.flatMap((r) => r.positions);
      check(rows.length >= 10, `page ${i + 1}'s timeline has the events (${rows.length})`);
      check(positions.every((p, j) => Number.isInteger(p) && p > 0 && (j === 0 || p > positions[j - 1])), `page ${i + 1}'s positions increase: ${positions}`);
      check(rows.every((r) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(r.time)), `page ${i + 1}'s rows have times`);
      const kinds = new Set(rows.map((r) => r.kind));
      for (const kind of ['session_started', 'user_message', 'turn_started', 'text_delta', 'tool_call', 'tool_result',
        'assistant_message', 'turn_completed', 'cancel_requested', 'turn_cancelled', 'fallback', 'turn_failed']) {
        check(kinds.has(kind), `page ${i + 1}'s timeline shows ${kind}`);
      }
      const grouped = rows.filter((r) => r.kind === 'text_delta' && r.positions.length > 1);
      check(grouped.some((r) => r.summary.split(' ').length >= 30), `page ${i + 1}'s log joins a step's deltas into one row, its text whole`);
      result[`timeline${i + 1}`] = positions;
    }
    check(result.timeline1.join() === result.timeline2.join(), 'both timelines list the same positions');
    // a row opens to the raw envelope
    await one.click('#toggle-events');
    await one.click('#timeline li.k-tool_call');
    const raw = await one.textContent('#timeline li.k-tool_call pre');
    check(JSON.parse(raw).event.kind === 'tool_call', 'a timeline row shows its raw event');
    await one.screenshot({ path: `${shots}/page.png` });
    await one.click('#toggle-events');

    // a reload rebuilds the same chat from the log
    await two.reload();
    await waitTurn(two, 6, 'completed');
    const reloaded = await turns(two);
    const statuses = reloaded.map((t) => t.status).join();
    check(statuses === 'completed,completed,cancelled,completed,failed,failed,completed', `after a reload: ${statuses}`);
    check(reloaded[0].answer === result.turns[0][0].answer, 'after a reload the answer is the same');

    await approvals(context, result);
    await markdownAndFollowing(one, result);
    await editMakesABranch(one, session, result);
    await phone(browser, session, result);

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
