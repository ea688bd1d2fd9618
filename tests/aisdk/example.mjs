// Drives examples/aisdk-react in headless Chromium (run by test_example_app.py).
//
// Environment: APP_URL (the app's page, on its own origin, with its #hash settings),
// GATEWAY_URL, CHROMIUM (executable), PLAYWRIGHT (playwright-core's index.mjs), PROMPT.
// Prints one JSON line with what it saw; exits 1 with the reason on the first failure.
import { pathToFileURL } from 'node:url';

const { APP_URL: app, GATEWAY_URL: gateway, CHROMIUM: executablePath } = process.env;
const { chromium } = await import(pathToFileURL(process.env.PLAYWRIGHT).href);
const WAIT = { timeout: 20000 };
const problems = [];
const seen = []; // [method, path, status, allow-origin] of every call to the gateway

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function open(context) {
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.origin !== gateway) return;
    const origin = response.headers()['access-control-allow-origin'] ?? null;
    seen.push([response.request().method(), url.pathname, response.status(), origin]);
  });
  const loaded = await page.goto(app);
  check(loaded.ok(), `GET ${app} answered ${loaded.status()}`);
  return page;
}

const ready = (page) => page.waitForSelector('main[data-status="ready"]', WAIT);
const answerText = (page) =>
  page.$$eval('#messages li[data-role="assistant"] .text', (n) => n.map((e) => e.textContent).join(''));

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
const result = { ok: false };
try {
  const context = await browser.newContext();
  const page = await open(context);
  await ready(page); // the new chat's resume: 204, nothing to resume, no error
  check((await page.$('#error')) === null, 'a new chat shows an error');

  await page.fill('#input', process.env.PROMPT);
  await page.click('#send');
  // mid-answer: some text has streamed, the Stop button shows
  await page.waitForFunction(
    () => document.querySelector('#messages li[data-role="assistant"] .text')?.textContent,
    null,
    WAIT,
  );
  result.turn = await page.getAttribute('#messages li[data-role="assistant"]', 'data-id');
  await page.click('#stop');
  await page.waitForSelector('main[data-cancel="202"]', WAIT);
  await ready(page);
  result.stoppedAt = (await answerText(page)).length;
  check(result.stoppedAt > 0, 'no answer text before Stop');

  await page.reload();
  await ready(page);
  result.afterReload = {
    messages: await page.$$eval('#messages li', (n) => n.length),
    error: await page.$eval('#error', (e) => e.textContent).catch(() => null),
  };
  result.requests = seen;
  result.problems = problems;
  result.ok = true;
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
