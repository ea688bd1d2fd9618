// The web pages' screenshots for docs/screenshots/ (run by `make screenshots`, through
// tests/web/screenshots.py, which starts a gateway with the dev model).
//
// Environment: GATEWAY_URL, TOKEN, CHROMIUM (executable), OUT (folder). Each entry of
// SHOTS makes its own sessions through the API and writes `<name>-<variant>.png` for the
// three variants: light and dark at 1280x800, and a phone (390x844, light).
import { chromium } from 'playwright-core';
import { debuggerShots } from './screenshots-debugger.mjs';

const { GATEWAY_URL: base, TOKEN: token, CHROMIUM: executablePath, OUT: out } = process.env;
const WAIT = { timeout: 30000 };
export const VARIANTS = [
  { name: 'light', viewport: { width: 1280, height: 800 }, colorScheme: 'light' },
  { name: 'dark', viewport: { width: 1280, height: 800 }, colorScheme: 'dark' },
  { name: 'phone', viewport: { width: 390, height: 844 }, colorScheme: 'light', isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
];

// A call to the gateway's API with the token.
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}`, 'Idempotency-Key': crypto.randomUUID() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
}

// Waits until every turn of a session has ended (read through the API).
export async function settled(session) {
  for (let i = 0; i < 600; i++) {
    const detail = await api('GET', `/v1/sessions/${session}`);
    if (detail.turns.length && detail.turns.every((t) => ['completed', 'failed', 'cancelled'].includes(t.status))) return detail;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`session ${session} never settled`);
}

const ANSWER = `[[verbatim]]
Here is a **short summary** of what changed, with a table and some code.

| service | p50 | p99 |
|---|---:|---:|
| gateway | 4 ms | 19 ms |
| agent | 11 ms | 44 ms |

\`\`\`python
async def ask(client, text):
    response = await client.post("/v1/sessions", json={"title": text})
    return response.json()["id"]
\`\`\`

1. Start with \`threadline up\`
2. Open the page: no token to paste.`;

// The chat: a session with a tool call, a markdown answer and a failed turn.
async function chat(browser) {
  const session = (await api('POST', '/v1/sessions', { title: 'Release notes draft' })).id;
  await api('POST', '/v1/sessions', { title: 'Trip planning' });
  await api('POST', '/v1/sessions', { title: 'SQL question' });
  await api('POST', `/v1/sessions/${session}/messages`, { text: 'check the tool [[tool:threadline__echo {"text": "hello"}]]' });
  await settled(session);
  await api('POST', `/v1/sessions/${session}/messages`, { text: ANSWER });
  await settled(session);
  for (const variant of VARIANTS) {
    const context = await browser.newContext({ ...variant, name: undefined });
    await context.addInitScript((t) => localStorage.setItem('threadline.token', t), token);
    const page = await context.newPage();
    page.on('pageerror', (error) => process.stderr.write(`page error: ${error.message}\n`));
    page.on('console', (msg) => { if (msg.type() === 'error') process.stderr.write(`console: ${msg.text()}\n`); });
    await page.goto(`${base}/#session=${session}`);
    await page.waitForFunction(() => document.querySelectorAll('#messages .turn[data-status="completed"]').length >= 2, null, WAIT);
    await page.waitForTimeout(300); // fonts and the last scroll
    await page.screenshot({ path: `${out}/chat-${variant.name}.png` });
    await context.close();
  }
}

// Each entry writes its own <name>-<variant>.png files.
const SHOTS = [
  chat,
  (browser) => debuggerShots(browser, { base, token, out, api, settled, variants: VARIANTS }),
];

async function main() {
  const browser = await chromium.launch({
    executablePath, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    for (const shot of SHOTS) await shot(browser);
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
