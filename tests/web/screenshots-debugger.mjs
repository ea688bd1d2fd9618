// The replay debugger's screenshots (docs/screenshots/debugger-*.png), an entry of
// screenshots.mjs's SHOTS: a session with a tool call, a streamed answer and a turn a
// retry got past, shown at the long answer half-way through its replay; and a fork of
// it continued differently, compared with its source (debugger-diff.png).
const WAIT = { timeout: 30000 };

export async function debuggerShots(browser, { base, token, out, api, settled, variants }) {
  const session = (await api('POST', '/v1/sessions', { title: 'Weekly report', tool_servers: ['threadline'] })).id;
  for (const text of [
    'what time is it? [[tool:threadline__now {}]]',
    'draft the summary [[pace:ttft=0,tps=80]] [[words:60]]',
    'and a title [[fail:500 times=1]]',
  ]) {
    await api('POST', `/v1/sessions/${session}/messages`, { text });
    await settled(session);
  }
  const detail = await api('GET', `/v1/sessions/${session}`);
  // fork where the second question was asked: the first turn had ended
  const second = detail.messages.find((m) => m.role === 'user' && m.turn_id === detail.turns[1].turn_id);
  const fork = (await api('POST', `/v1/sessions/${session}/fork`, { version: second.version - 1 })).id;
  await api('POST', `/v1/sessions/${fork}/messages`, { text: 'draft a shorter summary [[words:20]]' });
  await settled(fork);

  for (const variant of variants) {
    const context = await browser.newContext({ ...variant, name: undefined });
    await context.addInitScript((t) => {
      if (location.protocol.startsWith('http')) localStorage.setItem('threadline.token', t);
    }, token);
    const page = await context.newPage();
    await page.goto(`${base}/debug#session=${session}&turn=2`);
    await page.waitForFunction(() => document.getElementById('chain').dataset.state === 'ok'
      && document.querySelectorAll('#steps li').length > 10, null, WAIT);
    // half-way through the answer, an event selected
    const middle = await page.$eval('#steps', (list) => Math.floor(list.children.length / 2));
    await page.click(`#steps li[data-index="${middle}"] button`);
    await page.evaluate((phone) => {
      if (phone) document.getElementById('turn').scrollIntoView();
      else window.scrollTo(0, 0);
    }, variant.name === 'phone');
    await page.waitForTimeout(300); // fonts
    await page.screenshot({ path: `${out}/debugger-${variant.name}.png` });
    if (variant.name === 'light') {
      await page.goto(`${base}/debug#session=${fork}`);
      await page.waitForSelector('#diff:not([hidden]) .diff-row', WAIT);
      await page.waitForTimeout(300);
      await page.locator('#diff').screenshot({ path: `${out}/debugger-diff.png` });
    }
    await context.close();
  }
}
