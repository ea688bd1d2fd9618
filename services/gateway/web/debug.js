// Threadline's replay debugger (/debug): any session, any age, read from its log.
//
// The session's raw log comes from GET /v1/sessions/{id}/export (every stored record
// with its position and hash), its turns as the server folds them (status, the attempt
// that counts, usage, TTFT, duration, the context cut) from GET /v1/sessions/{id}, and
// its hash-chain check from GET /v1/sessions/{id}/verify. Nothing here decides what a
// turn is: the page groups the log by the envelopes' turn ids and asks the server's
// fold which attempt counts. Deep links: #session=ID&turn=N&event=POSITION.
// The token is the chat page's (localStorage), sent only in Authorization headers.
import { Player, el, ms } from './debug-player.js';
import { pairs, renderRequests, renderSteps, renderTurnHead, shorten, tokens } from './debug-turn.js';
import { renderDiff } from './debug-diff.js';
import { LiveFollow } from './debug-live.js';
import { ApiError, TOKEN_KEY, randomKey } from './chat-api.js';

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ the API

const api = {
  token: localStorage.getItem(TOKEN_KEY) || '',

  async fetch(method, path, body, extra) {
    const headers = { Authorization: `Bearer ${this.token}`, ...(extra || {}) };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(path, init);
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error.message || message; } catch (_) { /* not JSON */ }
      if (response.status === 401) {
        forgetToken(); // a token the gateway rejects is not kept
        askToken('Your token was not accepted: sign in again.');
      }
      throw new ApiError(response.status, message);
    }
    return response;
  },

  async json(method, path, body, extra) {
    return (await this.fetch(method, path, body, extra)).json();
  },
};

function session(path) {
  return `/v1/sessions/${encodeURIComponent(view.sessionId)}${path}`;
}

// ------------------------------------------------------------------ state

const view = {
  sessionId: null,
  records: [], // {position, hash, env, raw}
  byPosition: new Map(),
  detail: null,
  started: null, // the session_started envelope
  turns: [], // {n, id, detail, records}
  session: null, // the events outside any turn, as turn 0
  chain: null,
  turn: null,
  selected: null, // position of the event shown in the inspector
  player: null,
  loading: 0,
  follow: null, // the live follow of the session shown
  refreshing: null,
};

function message(text) {
  $('message').textContent = text || '';
}

function parseHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const id = params.get('session');
  const number = (name) => (/^\d+$/.test(params.get(name) || '') ? Number(params.get(name)) : null);
  return { session: id && /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null, turn: number('turn'), event: number('event') };
}

function setHash() {
  if (!view.sessionId) return;
  let hash = `#session=${view.sessionId}`;
  if (view.turn) hash += `&turn=${view.turn.n}`;
  if (view.selected !== null) hash += `&event=${view.selected}`;
  if (hash !== location.hash) history.replaceState(null, '', hash);
}

// ------------------------------------------------------------------ loading

async function readExport() {
  const text = await (await api.fetch('GET', session('/export'))).text();
  const records = [];
  const quarantined = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const item = JSON.parse(line);
    if (item.record) records.push({ position: item.position, hash: item.hash, env: item.record });
    else quarantined.push({ position: item.position, reason: item.quarantined });
  }
  return { records, quarantined };
}

async function loadSession(id, target) {
  const ticket = ++view.loading;
  view.sessionId = id;
  stopFollow();
  if (view.player) view.player.pause();
  message('Loading…');
  for (const section of ['sessions', 'overview', 'turns', 'turn', 'inspector', 'diff']) $(section).hidden = true;
  setChain('unknown', 'chain: checking…');
  let loaded;
  try {
    loaded = await Promise.all([readExport(), api.json('GET', session(''))]);
  } catch (error) {
    if (ticket !== view.loading) return;
    setChain('unknown', 'chain: not checked');
    message(error.status === 404 ? `There is no session ${id} you may read.` : `Could not load the session: ${error.message}`);
    return;
  }
  if (ticket !== view.loading) return;
  const [{ records, quarantined }, detail] = loaded;
  view.records = records;
  view.byPosition = new Map(records.map((r) => [r.position, r]));
  view.detail = detail;
  view.chain = null; // checked next, without holding up the rest
  view.started = records.find((r) => r.env.event.kind === 'session_started') || null;
  view.turns = groupTurns(records, detail);
  view.session = sessionTurn(records);
  message('');
  showOverview();
  showTurnList();
  const origin = view.started && view.started.env.event.forked_from;
  $('show-diff').hidden = !origin;
  if (origin) showDiff(origin);
  route(target);
  // (a loop: spreading a long session's positions into Math.max would overflow the stack)
  let last = detail.position;
  for (const item of [...records, ...quarantined]) last = Math.max(last, item.position);
  startFollow(last);
  checkChain(ticket);
}

// The hash-chain check (the gateway reads every stored record): shown when it answers,
// the turns and events it names marked.
async function checkChain(ticket) {
  let chain;
  try {
    chain = await api.json('GET', session('/verify'));
  } catch (error) {
    if (ticket === view.loading) setChain('unknown', `chain: not checked (${error.message})`);
    return;
  }
  if (ticket !== view.loading) return;
  view.chain = chain;
  showChain(chain);
  showTurnList();
  if (!view.turn) return;
  markCurrent(view.turn);
  showSteps(view.turn);
  onCursor(view.player.cursor, view.player.playing);
  if (view.selected !== null) showEvent(view.selected, false);
}

// ------------------------------------------------------------------ live

function stopFollow() {
  if (view.follow) view.follow.stop();
  view.follow = null;
  $('live').dataset.state = 'off';
  $('live').textContent = '';
}

// New events of the session shown are added as they are stored; the turns, the chain
// check and the selected turn are read again once they stop coming for a moment.
function startFollow(after) {
  const follow = new LiveFollow({
    sessionId: view.sessionId,
    after,
    token: () => api.token,
    onRecord: (rec) => {
      if (follow !== view.follow || view.byPosition.has(rec.position)) return;
      view.records.push(rec);
      view.byPosition.set(rec.position, rec);
      clearTimeout(view.refreshing);
      view.refreshing = setTimeout(refresh, 250);
    },
    onState: (state) => {
      if (follow !== view.follow) return;
      $('live').dataset.state = state;
      $('live').textContent = state === 'live' ? '● live' : state === 'reconnecting' ? 'reconnecting…' : '';
    },
  });
  view.follow = follow;
  follow.run();
}

async function refresh() {
  const ticket = view.loading;
  let detail;
  let chain;
  try {
    [detail, chain] = await Promise.all([api.json('GET', session('')), api.json('GET', session('/verify'))]);
  } catch (_) {
    return; // the next event tries again
  }
  if (ticket !== view.loading) return;
  const old = view.turn;
  const player = view.player;
  const atEnd = !old || player.cursor >= player.records.length;
  const wasLast = !old || old.n === view.turns.length;
  view.detail = detail;
  view.chain = chain;
  view.turns = groupTurns(view.records, detail);
  view.session = sessionTurn(view.records);
  showChain(chain);
  showOverview();
  showTurnList();
  const origin = view.started && view.started.env.event.forked_from;
  if (origin && !$('diff').hidden) showDiff(origin);
  let turn = old ? findTurn(old.id) : null;
  if (wasLast && atEnd && !player.playing) turn = view.turns[view.turns.length - 1] || turn;
  if (!turn) return;
  if (old && turn.id === old.id && player.playing) {
    view.turn = turn;
    markCurrent(turn);
    renderTurnHead($('turn-head'), turn);
    showSteps(turn);
    player.extend(turn.records);
    return;
  }
  const at = !atEnd && old && turn.id === old.id ? player.records[player.cursor - 1] : null;
  selectTurn(turn, at ? at.position : null);
}

// The log grouped by turn, in the order the server's fold lists the turns.
function groupTurns(records, detail) {
  const byTurn = new Map();
  for (const rec of records) {
    if (!rec.env.turn) continue;
    if (!byTurn.has(rec.env.turn)) byTurn.set(rec.env.turn, []);
    byTurn.get(rec.env.turn).push(rec);
  }
  return detail.turns.map((turn, i) => ({ n: i + 1, id: turn.turn_id, detail: turn, records: byTurn.get(turn.turn_id) || [] }));
}

// The events outside any turn (the session's start, renames, a message outside a turn),
// listed as "turn 0".
function sessionTurn(records) {
  const detail = { status: 'session', attempt: 0, provider: '', model: '', fallbacks: [], usage: null, ttft_ms: null, duration_ms: null, context: null };
  return { n: 0, id: '', detail, records: records.filter((r) => !r.env.turn) };
}

function findTurn(id) {
  return id ? view.turns.find((t) => t.id === id) || null : view.session;
}

// Selects what the deep link names: an event (and its turn), a turn, or the last turn.
function route(target) {
  let turn = null;
  let event = null;
  if (target.event !== null && view.byPosition.has(target.event)) {
    event = target.event;
    const rec = view.byPosition.get(event);
    turn = findTurn(rec.env.turn);
  } else if (target.event !== null) {
    message(`Position ${target.event} is not an event of this session.`);
  }
  if (!turn && target.turn !== null) turn = target.turn === 0 ? view.session : view.turns[target.turn - 1] || null;
  if (!turn) turn = view.turns[view.turns.length - 1] || null;
  if (turn) selectTurn(turn, event);
  else if (event !== null) showEvent(event);
  else setHash();
}

// ------------------------------------------------------------------ the chain

function setChain(state, text, title) {
  const badge = $('chain');
  badge.dataset.state = state;
  badge.textContent = text;
  badge.title = title || 'hash chain';
}

function showChain(chain) {
  const problems = $('problems');
  problems.replaceChildren();
  if (chain.ok) {
    delete $('chain').dataset.firstBroken;
    setChain('ok', `chain OK · ${chain.events} events · head ${chain.head.slice(0, 12)}…`, `head ${chain.head}`);
    problems.hidden = true;
    return;
  }
  $('chain').dataset.firstBroken = String(chain.first_broken);
  setChain('broken', `chain BROKEN at position ${chain.first_broken}`, chain.problems[0].reason);
  problems.append(el('h3', '', 'The hash chain does not hold'));
  const list = el('ul', 'plain');
  for (const p of chain.problems) {
    const item = el('li', 'problem');
    item.append(el('span', 'pos', `position ${p.position}`), document.createTextNode(` ${p.version === null ? '' : `(version ${p.version}) `}${p.reason} `));
    if (view.byPosition.has(p.position)) {
      const show = el('button', 'secondary small', 'show');
      show.type = 'button';
      show.addEventListener('click', () => route({ event: p.position, turn: null }));
      item.append(show);
    }
    list.append(item);
  }
  problems.append(list);
  problems.hidden = false;
}

// ------------------------------------------------------------------ overview and turns

function showOverview() {
  const d = view.detail;
  $('title').textContent = d.title || '(untitled)';
  const params = Object.entries(d.params || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`);
  const origin = view.started && view.started.env.event.forked_from;
  $('meta').textContent = [
    d.id, `owner ${d.owner}`, `${d.provider}${d.model ? '/' + d.model : ''}`,
    params.length ? params.join(', ') : 'default parameters',
    `tools: ${d.tool_servers.length ? d.tool_servers.join(', ') : 'none'}`,
    d.double_texting ? `double texting: ${d.double_texting}` : '',
    origin ? `forked from ${origin.session} at version ${origin.version}` : '',
  ].filter(Boolean).join(' · ');
  $('to-chat').href = `/#session=${encodeURIComponent(d.id)}`;
  const statuses = {};
  let input = 0;
  let output = 0;
  let duration = 0;
  const ttfts = [];
  for (const t of d.turns) {
    statuses[t.status] = (statuses[t.status] || 0) + 1;
    if (t.usage) { input += t.usage.input_tokens || 0; output += t.usage.output_tokens || 0; }
    if (t.duration_ms) duration += t.duration_ms;
    if (t.ttft_ms !== null && t.ttft_ms !== undefined) ttfts.push(t.ttft_ms);
  }
  const rows = [
    ['turns', `${d.turns.length}${d.turns.length ? ` (${Object.entries(statuses).map(([s, n]) => `${n} ${s}`).join(', ')})` : ''}`],
    ['tokens', `${input} in / ${output} out`],
    ['time answering', ms(duration)],
    ['mean TTFT', ttfts.length ? ms(ttfts.reduce((a, b) => a + b, 0) / ttfts.length) : '–'],
    ['events', `${view.records.length} (versions 1–${d.version})${d.quarantined.length ? `, ${d.quarantined.length} unreadable` : ''}`],
    ['created', new Date(d.created_at / 1000).toLocaleString()],
  ];
  $('totals').replaceChildren(...pairs(rows));
  $('overview').hidden = false;
}

function showTurnList() {
  const list = $('turn-list');
  list.replaceChildren();
  if (view.session.records.length) {
    const item = el('li', 'turn-item s-session');
    item.dataset.turn = '';
    item.dataset.n = '0';
    const button = el('button', 'turn-button');
    button.type = 'button';
    const kinds = [...new Set(view.session.records.map((r) => r.env.event.kind))].join(', ');
    button.append(el('span', 'n', '0'), el('span', 'q', 'Session events'), el('span', 'cost meta', `${view.session.records.length} · ${kinds}`));
    button.addEventListener('click', () => selectTurn(view.session, null));
    item.append(button);
    list.append(item);
  }
  for (const turn of view.turns) {
    const t = turn.detail;
    const item = el('li', `turn-item s-${t.status}`);
    item.dataset.turn = turn.id;
    item.dataset.n = String(turn.n);
    const user = turn.records.find((r) => r.env.event.kind === 'user_message');
    const button = el('button', 'turn-button');
    button.type = 'button';
    button.append(
      el('span', 'n', `${turn.n}`),
      el('span', 'q', user ? shorten(user.env.event.text, 120) : '(no question)'),
      el('span', 'cost meta', [t.status, tokens(t.usage), t.duration_ms ? ms(t.duration_ms) : '', t.ttft_ms !== null && t.ttft_ms !== undefined ? `TTFT ${ms(t.ttft_ms)}` : ''].filter(Boolean).join(' · ')),
    );
    const marks = el('span', 'marks');
    if (t.attempt > 1) marks.append(el('span', 'mark', `attempt ${t.attempt}`));
    // a retry of a turn asks its question again under the key regenerate:<turn> (docs/events.md)
    const asked = user && /^regenerate:(.+)$/.exec(user.env.key);
    const retried = asked && view.turns.find((other) => other.id === asked[1]);
    if (retried) marks.append(el('span', 'mark', `retry of turn ${retried.n}`));
    if (t.fallbacks.length) marks.append(el('span', 'mark warn', `${t.fallbacks.length} fallback${t.fallbacks.length > 1 ? 's' : ''}`));
    if (t.context) marks.append(el('span', 'mark', `context cut: ${t.context.turns} turns`));
    if (t.cancel_requested) marks.append(el('span', 'mark', 'stop asked'));
    if (t.rolled_back) marks.append(el('span', 'mark', 'rolled back: left out of the context'));
    if (turn.records.some((r) => r.env.copied_from)) marks.append(el('span', 'mark', 'copied'));
    if (view.chain && !view.chain.ok && turn.records.some((r) => r.position === view.chain.first_broken)) marks.append(el('span', 'mark bad', 'chain broken'));
    button.append(marks);
    button.addEventListener('click', () => selectTurn(turn, null));
    item.append(button);
    list.append(item);
  }
  if (!view.turns.length) list.append(el('li', 'meta', 'No turns yet.'));
  $('turns').hidden = false;
}

// ------------------------------------------------------------------ one turn

function markCurrent(turn) {
  for (const item of document.querySelectorAll('#turn-list .turn-item')) item.classList.toggle('current', item.dataset.turn === turn.id);
}

function selectTurn(turn, position) {
  view.turn = turn;
  markCurrent(turn);
  renderTurnHead($('turn-head'), turn);
  renderRequests($('request'), turn, view.detail);
  showSteps(turn);
  $('turn').hidden = false;
  $('fork-result').replaceChildren();
  const index = position === null ? -1 : turn.records.findIndex((r) => r.position === position);
  view.player.load(turn.records, index < 0 ? turn.records.length : index + 1);
  const last = index >= 0 ? turn.records[index] : turn.records[turn.records.length - 1];
  if (last) showEvent(last.position, index >= 0);
  else setHash();
}

function showSteps(turn) {
  renderSteps($('steps'), turn, view.chain, (i, position) => {
    view.player.pause();
    view.player.seek(i + 1);
    showEvent(position, true);
  });
}

// Marks the player's position in the event list (the last event shown).
function onCursor(cursor, playing) {
  const turn = view.turn;
  if (!turn) return;
  for (const item of document.querySelectorAll('#steps li.at')) item.classList.remove('at');
  const rec = cursor ? turn.records[cursor - 1] : null;
  const fork = $('fork');
  const version = rec ? rec.env.version : Math.max(1, (turn.records[0] ? turn.records[0].env.version : 2) - 1);
  fork.dataset.version = String(version);
  fork.textContent = `Fork from here (version ${version})`;
  if (!rec) return;
  const row = document.querySelector(`#steps li[data-position="${rec.position}"]`);
  if (row) row.classList.add('at');
  if (!playing) showEvent(rec.position, false);
}

function showEvent(position, scroll) {
  const rec = view.byPosition.get(position);
  if (!rec) return;
  view.selected = position;
  const env = rec.env;
  const rows = [
    ['position', String(position)], ['version', String(env.version)], ['kind', env.event.kind],
    ['at', new Date(env.at / 1000).toISOString()], ['actor', env.actor], ['key', env.key],
  ];
  if (env.turn) rows.push(['turn', `${env.turn}${env.attempt ? ` · attempt ${env.attempt}` : ''}`]);
  if (env.copied_from) rows.push(['copy of', `${env.copied_from.session} version ${env.copied_from.version}`]);
  rows.push(['hash', rec.hash || '(shown after a reload)'], ['prev', env.prev]);
  const problem = view.chain && view.chain.problems.find((p) => p.position === position);
  if (problem) rows.push(['chain', problem.reason]);
  $('event-meta').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', '', k), el('dd', k === 'chain' ? 'bad' : '', v)]));
  $('event-json').textContent = JSON.stringify(env, null, 2);
  $('inspector').hidden = false;
  $('inspector').dataset.position = String(position);
  for (const item of document.querySelectorAll('#steps li.selected')) item.classList.remove('selected');
  const row = document.querySelector(`#steps li[data-position="${position}"]`);
  if (row) {
    row.classList.add('selected');
    if (scroll) row.scrollIntoView({ block: 'nearest' });
  }
  setHash();
}

// ------------------------------------------------------------------ fork and diff

async function forkHere() {
  const version = Number($('fork').dataset.version);
  const button = $('fork');
  const out = $('fork-result');
  button.disabled = true;
  out.textContent = 'Forking…';
  try {
    const created = await api.json('POST', session('/fork'), { version }, { 'Idempotency-Key': randomKey() });
    out.replaceChildren(document.createTextNode(`Forked at version ${version} into ${created.id} (the turns that had ended by then). `));
    const debug = el('a', 'fork-link', 'Open the fork here');
    debug.href = `#session=${created.id}`;
    const chat = el('a', '', 'continue it in the chat');
    chat.href = `/#session=${created.id}`;
    out.append(debug, document.createTextNode(' or '), chat);
    out.dataset.fork = created.id;
  } catch (error) {
    out.textContent = `Fork failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function showDiff(origin) {
  const body = $('diff-body');
  $('diff-title').textContent = 'This fork and its source';
  body.replaceChildren(el('p', 'meta', 'Loading the source…'));
  $('diff').hidden = false;
  const ticket = view.loading;
  try {
    const source = await api.json('GET', `/v1/sessions/${encodeURIComponent(origin.session)}`);
    if (ticket === view.loading) renderDiff(body, source, view.detail, origin);
  } catch (error) {
    if (ticket === view.loading) body.replaceChildren(el('p', 'meta', `The source cannot be read: ${error.message}`));
  }
}

// ------------------------------------------------------------------ sign-in and start

function askToken(text) {
  $('token-form').hidden = false;
  $('token-status').textContent = text || '';
}

async function signIn(event) {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  $('token').value = '';
  const response = await fetch('/v1/sessions?limit=1', { headers: { Authorization: `Bearer ${value}` }, cache: 'no-store' });
  if (response.status === 401) { $('token-status').textContent = 'That token was rejected; nothing was saved.'; return; }
  api.token = value;
  localStorage.setItem(TOKEN_KEY, value);
  $('token-form').hidden = true;
  start();
}

async function showSessions() {
  for (const section of ['overview', 'turns', 'turn', 'inspector', 'diff']) $(section).hidden = true;
  setChain('unknown', 'chain: no session');
  view.sessionId = null;
  view.loading += 1;
  stopFollow();
  try {
    const page = await api.json('GET', '/v1/sessions?limit=100');
    const list = $('session-list');
    list.replaceChildren();
    for (const s of page.sessions) {
      const item = el('li');
      const link = el('a', '', s.title || '(untitled)');
      link.href = `#session=${s.id}`;
      item.append(link, el('span', 'meta', ` ${new Date(s.created_at / 1000).toLocaleString()} · ${s.id}`));
      list.append(item);
    }
    if (!page.sessions.length) list.append(el('li', 'meta', 'No sessions yet: start one in the chat.'));
    $('sessions').hidden = false;
    message('');
  } catch (error) {
    message(`Could not list your sessions: ${error.message}`);
  }
}

function forgetToken() {
  api.token = '';
  localStorage.removeItem(TOKEN_KEY);
}

// Under `threadline up` the gateway hands its dev token to a browser on this machine
// (GET /web/dev-signin, docs/web.md); anywhere else it answers 404.
async function devSignin() {
  try {
    const response = await fetch('/web/dev-signin', { cache: 'no-store' });
    return response.ok ? (await response.json()).token || '' : '';
  } catch (_) {
    return '';
  }
}

let devSigninTried = false;

async function start() {
  if (!api.token && !devSigninTried) {
    devSigninTried = true;
    const token = await devSignin();
    if (token) {
      api.token = token;
      localStorage.setItem(TOKEN_KEY, token);
    }
  }
  if (!api.token) { askToken('Paste your API token or JWT (threadline up prints its dev token).'); return; }
  const target = parseHash();
  if (!target.session) { showSessions(); return; }
  if (target.session === view.sessionId && view.detail) route(target);
  else loadSession(target.session, target);
}

function main() {
  view.player = new Player({
    screen: $('screen'), scrubber: $('scrubber'), clock: $('clock'), button: $('play'), speed: $('speed'), onCursor,
  });
  $('fork').addEventListener('click', forkHere);
  $('hide-deltas').addEventListener('change', (event) => $('steps').classList.toggle('hide-deltas', event.target.checked));
  $('token-form').addEventListener('submit', signIn);
  $('reload').addEventListener('click', () => {
    view.detail = null;
    start();
  });
  $('show-diff').addEventListener('click', () => {
    const origin = view.started && view.started.env.event.forked_from;
    if (origin) showDiff(origin);
  });
  $('hide-diff').addEventListener('click', () => { $('diff').hidden = true; });
  $('open-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('session-input').value.trim();
    if (/^[A-Za-z0-9_-]{1,64}$/.test(id)) location.hash = `#session=${id}`;
  });
  window.addEventListener('hashchange', start);
  document.addEventListener('keydown', (event) => {
    if (event.target.closest('input, select, textarea, button, a, summary') || !view.turn) return;
    if (event.key === ' ') { event.preventDefault(); $('play').click(); }
    if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
      event.preventDefault();
      view.player.pause();
      view.player.seek(view.player.cursor + (event.key === 'ArrowRight' ? 1 : -1));
    }
  });
  start();
}

main();
