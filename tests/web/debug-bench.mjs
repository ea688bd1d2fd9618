// Times the replay debugger on a long session (run by tests/web/debugger_bench.py).
// Environment: GATEWAY_URL, TOKEN, CHROMIUM, SESSION, TURNS. Prints one JSON line.
import { chromium } from 'playwright-core';

const { GATEWAY_URL: base, TOKEN: token, CHROMIUM: executablePath, SESSION: session, TURNS: turns } = process.env;
const browser = await chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu'] });
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  await context.addInitScript((t) => { if (location.protocol.startsWith('http')) localStorage.setItem('threadline.token', t); }, token);
  const page = await context.newPage();
  const runs = [];
  for (let i = 0; i < 3; i++) {
    await page.goto('about:blank');
    const start = Date.now();
    await page.goto(`${base}/debug#session=${session}`);
    await page.waitForFunction((n) => document.querySelectorAll('#turn-list .turn-item:not(.s-session)').length === n
      && document.querySelectorAll('#steps li').length > 0, Number(turns), { timeout: 120000 });
    const shown = Date.now() - start;
    await page.waitForFunction(() => document.getElementById('chain').dataset.state === 'ok', null, { timeout: 120000 });
    // selecting a turn: the page's own work (script, then style and layout)
    const select = await page.evaluate(() => {
      const t0 = performance.now();
      document.querySelector('#turn-list .turn-item[data-n="2"] button').click();
      const t1 = performance.now();
      void document.body.offsetHeight;
      return { script_ms: t1 - t0, layout_ms: performance.now() - t1 };
    });
    runs.push({ shown_ms: shown, checked_ms: Date.now() - start, ...select });
  }
  process.stdout.write(JSON.stringify(runs) + '\n');
} finally {
  await browser.close();
}
