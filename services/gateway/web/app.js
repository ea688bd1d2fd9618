// Threadline's chat page: sign-in, the list of chats (search, rename, branches), the
// chat itself (chat-view.js) and the raw event log of the open chat.
//
// Plain ES modules and three vendored libraries (marked, DOMPurify, highlight.js under
// /web/vendor/), no build step. Everything from the server is inserted as text, or as
// markdown sanitised by DOMPurify. docs/web.md describes the page.
'use strict';

import { ApiError, SessionStream, TOKEN_KEY, api, randomKey } from './chat-api.js';
import { clock, copyCode, el, envelopeOf, summary } from './chat-render.js';
import { ChatView } from './chat-view.js';

const EVENTS_KEY = 'threadline.events-open';
const page = { sessionId: null, stream: null, chat: null, providers: null, sessions: [], started: null, notFound: false, signedOut: false };

function $(id) {
  return document.getElementById(id);
}

function sessionPath(id, rest = '') {
  return `/v1/sessions/${encodeURIComponent(id)}${rest}`;
}

// ------------------------------------------------------------------ sign-in

function setAuth(state, text) {
  const badge = $('auth-status');
  badge.dataset.state = state;
  badge.textContent = text;
}

function showSignin(message) {
  $('signin').hidden = false;
  $('layout').hidden = true;
  $('sign-out').hidden = true;
  $('signin-status').textContent = message || '';
  setAuth('missing', 'signed out');
  $('token').focus();
}

function signedIn(how) {
  $('signin').hidden = true;
  $('layout').hidden = false;
  $('sign-out').hidden = false;
  setAuth('ok', how === 'dev' ? 'signed in as dev' : 'signed in');
  page.providers = null;
  loadProviders();
  loadSessions();
  openSession(sessionFromHash());
}

// A kept token if the server still takes it, else threadline up's dev sign-in, else
// the sign-in form. A token the server rejects is never kept.
async function start() {
  if (api.token) {
    const verdict = await api.check(api.token);
    if (verdict === 'ok') { signedIn('token'); return; }
    if (verdict === 'unreachable') { showSignin('The server could not be reached. Reload to try again.'); return; }
    api.keep('');
  }
  const dev = page.signedOut ? null : await api.devSignin();
  if (dev && (await api.check(dev.token)) === 'ok') {
    api.keep(dev.token);
    signedIn('dev');
    return;
  }
  showSignin(page.signedOut ? 'Signed out.' : '');
}

async function submitToken(event) {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  $('signin-status').textContent = 'Checking…';
  const verdict = await api.check(value);
  $('token').value = '';
  if (verdict === 'ok') {
    api.keep(value);
    signedIn('token');
    return;
  }
  $('signin-status').textContent = verdict === 'rejected'
    ? 'The server did not accept that token, so it was not saved. Check it and try again.'
    : 'The server could not be reached; nothing was saved. Try again.';
  setAuth('rejected', 'not signed in');
}

function signOut() {
  api.keep('');
  page.signedOut = true;
  closeSession();
  showSignin('Signed out.');
}

api.onRejected = (message) => {
  if (!api.token) return;
  api.keep('');
  closeSession();
  showSignin(message);
};

// ------------------------------------------------------------------ the list of chats

function titleOf(s) {
  return s.title || 'New chat';
}

async function loadSessions(waitFor) {
  const list = $('session-list');
  try {
    const data = await api.call('GET', `/v1/sessions?limit=200${waitFor ? `&wait_for=${waitFor}` : ''}`);
    page.sessions = data.sessions;
  } catch (error) {
    if (error.status !== 401) list.replaceChildren(el('li', 'empty', `The chats could not be loaded: ${error.message}`));
    return;
  }
  renderSessions();
  if (page.chat) page.chat.setBranches(branchesOf(page.sessionId));
  showHeader();
}

function branchesOf(id) {
  return page.sessions.filter((s) => s.forked_from === id).map((s) => ({ ...s, title: titleOf(s) }));
}

function renderSessions() {
  const list = $('session-list');
  const query = $('search').value.trim().toLowerCase();
  const shown = page.sessions.filter((s) => !query || titleOf(s).toLowerCase().includes(query) || s.id.includes(query));
  list.replaceChildren();
  for (const s of shown) {
    const item = el('li', s.id === page.sessionId ? 'current' : '');
    item.dataset.session = s.id;
    const link = el('a', '', titleOf(s));
    link.href = `#session=${encodeURIComponent(s.id)}`;
    const source = s.forked_from && page.sessions.find((o) => o.id === s.forked_from);
    const when = new Date(s.created_at / 1000).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
    const meta = el('div', 'meta', s.forked_from ? `branch of ${source ? titleOf(source) : 'another chat'} · ${when}` : when);
    if (s.forked_from) item.classList.add('branch');
    item.append(link, meta);
    list.append(item);
  }
  if (!page.sessions.length) list.append(el('li', 'empty', 'No chats yet. Start one above.'));
  else if (!shown.length) list.append(el('li', 'empty', 'No chat matches your search.'));
}

async function loadProviders() {
  if (page.providers) return;
  try {
    page.providers = await api.call('GET', '/v1/providers');
  } catch (_) { return; }
  const select = $('new-provider');
  select.replaceChildren(el('option', '', 'default'));
  select.firstChild.value = '';
  for (const p of page.providers.providers) {
    const option = el('option', '', p.name);
    option.value = p.name;
    select.append(option);
  }
  const tools = $('new-tools');
  tools.replaceChildren(el('legend', '', 'Tool servers'));
  for (const name of page.providers.tool_servers) {
    const label = el('label', 'check');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = name;
    box.checked = true;
    label.append(box, document.createTextNode(` ${name}`));
    tools.append(label);
  }
}

async function createSession(event) {
  event.preventDefault();
  const body = { title: $('new-title').value.trim() };
  const provider = $('new-provider').value;
  if (provider) body.provider = provider;
  body.tool_servers = Array.from(document.querySelectorAll('#new-tools input:checked'), (b) => b.value);
  try {
    const created = await api.call('POST', '/v1/sessions', body, { 'Idempotency-Key': randomKey() });
    $('new-title').value = '';
    setDrawer(false);
    location.hash = `#session=${created.id}`;
    await loadSessions(created.position);
  } catch (error) {
    showError(`The chat could not be created: ${error.message}`);
  }
}

// ------------------------------------------------------------------ rename

function startRename() {
  $('rename-input').value = $('session-title').textContent;
  $('rename-form').hidden = false;
  $('session-title').hidden = true;
  $('rename-input').focus();
  $('rename-input').select();
}

function endRename() {
  $('rename-form').hidden = true;
  $('session-title').hidden = false;
}

async function rename(event) {
  event.preventDefault();
  const title = $('rename-input').value.trim();
  if (!title || !page.sessionId) { endRename(); return; }
  try {
    const done = await api.call('PATCH', sessionPath(page.sessionId), { title }, { 'Idempotency-Key': randomKey() });
    endRename();
    await loadSessions(done.position);
  } catch (error) {
    showError(`The chat could not be renamed: ${error.message}`);
  }
}

// ------------------------------------------------------------------ the open chat

function showError(text) {
  const box = $('page-error');
  box.textContent = text;
  box.hidden = !text;
}

function setStream(state, text) {
  const badge = $('stream-status');
  badge.dataset.state = state;
  badge.textContent = state === 'live' ? '' : text;
}

function updateControls() {
  const open = Boolean(page.sessionId && api.token && !page.notFound);
  const busy = Boolean(open && page.chat && page.chat.busy());
  $('input').disabled = !open;
  $('send').disabled = !open;
  $('stop').disabled = !busy;
  $('stop').hidden = !busy;
  $('send').hidden = busy;
  const empty = $('empty');
  const hasTurns = Boolean(page.chat && page.chat.turns.size);
  empty.hidden = hasTurns;
  if (!hasTurns) empty.replaceChildren(...emptyState());
}

function emptyState() {
  if (page.notFound) return [el('h3', '', 'Chat not found'), el('p', '', 'This chat does not exist, or it belongs to someone else. Pick another one from the list, or start a new chat.')];
  if (!page.sessionId) return [el('h3', '', 'Start a conversation'), el('p', '', 'Create a new chat, or open one from the list.')];
  return [el('h3', '', 'Ask anything'), el('p', '', 'Answers stream in as they are written; tools the model uses show up as cards. Enter sends, Shift+Enter starts a new line.')];
}

function closeSession() {
  if (page.stream) page.stream.stop();
  if (page.chat) page.chat.close();
  page.stream = null;
  page.chat = null;
}

function openSession(sessionId) {
  closeSession();
  page.sessionId = sessionId;
  page.started = null;
  page.notFound = false;
  endRename();
  showError('');
  $('messages').replaceChildren();
  $('timeline').replaceChildren();
  $('jump').hidden = true;
  for (const item of document.querySelectorAll('#session-list li')) item.classList.toggle('current', item.dataset.session === sessionId);
  page.chat = new ChatView($('messages'), { retry: retryTurn, edit: editTurn, decide: decideCall, jump: (show) => { $('jump').hidden = !show; } });
  page.chat.setBranches(branchesOf(sessionId));
  showHeader();
  updateControls();
  if (!sessionId || !api.token) return;
  const stream = new SessionStream(sessionId, (message) => {
    if (stream !== page.stream) return;
    let env;
    try { env = envelopeOf(message.data); } catch (_) { return; }
    addTimelineRow(message, env);
    page.chat.apply(env);
    const kind = env.event.kind;
    if (kind === 'session_started') { page.started = env; showHeader(); }
    if (kind === 'session_renamed') { page.started = { ...page.started, renamed: env.event.title }; showHeader(); loadSessions(); }
    updateControls();
  }, (state, text) => {
    if (stream !== page.stream) return;
    if (state === 'not-found') { page.notFound = true; showHeader(); updateControls(); }
    setStream(state, text);
  });
  page.stream = stream;
  stream.run();
  if (!matchMedia('(max-width: 760px)').matches) $('input').focus();
}

function showHeader() {
  const id = page.sessionId;
  const listed = page.sessions.find((s) => s.id === id);
  const started = page.started && page.started.event;
  const renamed = page.started && page.started.renamed;
  let title = 'Threadline';
  if (page.notFound) title = 'Chat not found';
  else if (id) title = renamed || (listed && listed.title) || (started && started.title) || 'New chat';
  $('session-title').textContent = title;
  document.title = id ? `${title} · Threadline` : 'Threadline';
  const meta = $('session-meta');
  meta.replaceChildren();
  $('rename').hidden = !id || page.notFound;
  $('debug-link').hidden = !id || page.notFound;
  if (id) $('debug-link').href = `/debug#session=${encodeURIComponent(id)}`;
  if (!started) return;
  const parts = [`${started.provider || 'default model'}${started.model ? ' · ' + started.model : ''}`];
  if (started.tool_servers && started.tool_servers.length) parts.push(`tools: ${started.tool_servers.join(', ')}`);
  meta.append(document.createTextNode(parts.join(' · ')));
  const origin = started.forked_from;
  if (origin) {
    const source = page.sessions.find((s) => s.id === origin.session);
    const link = el('a', 'branch-of', source ? titleOf(source) : 'the chat it came from');
    link.href = `#session=${encodeURIComponent(origin.session)}`;
    meta.append(document.createTextNode(' · branch of '), link);
  }
}

// ------------------------------------------------------------------ the event log

function addTimelineRow(message, env) {
  const timeline = $('timeline');
  const e = env.event;
  const kind = e.kind || message.event;
  const last = timeline.lastElementChild;
  // consecutive deltas of one step are one row: their text joined
  if ((kind === 'text_delta' || kind === 'reasoning_delta') && last && last.dataset.group === `${kind}/${env.turn}/${env.attempt}/${e.step}`) {
    last.positions.push(Number(message.id));
    last.dataset.positions = last.positions.join(',');
    last.querySelector('.kind').textContent = `${kind} ×${last.positions.length}`;
    last.querySelector('.sum').append(e.text);
    return;
  }
  const row = el('li', `ev k-${kind}`);
  row.positions = [Number(message.id)];
  row.dataset.positions = message.id;
  if (kind === 'text_delta' || kind === 'reasoning_delta') row.dataset.group = `${kind}/${env.turn}/${env.attempt}/${e.step}`;
  const head = el('div', 'ev-head');
  head.append(el('span', 'pos', message.id), el('span', 'time', env.at ? clock(env.at) : ''), el('span', 'kind', kind));
  head.title = `version ${env.version} · ${env.actor}${env.turn ? ` · turn ${env.turn} attempt ${env.attempt}` : ''}`;
  row.append(head, el('div', 'sum', summary(e)));
  row.raw = [message.data];
  row.addEventListener('click', () => {
    const open = row.querySelector('pre');
    if (open) { open.remove(); return; }
    row.append(el('pre', 'raw', JSON.stringify(JSON.parse(message.data), null, 2)));
  });
  const stick = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 40;
  timeline.append(row);
  if (stick) timeline.scrollTop = timeline.scrollHeight;
}

// ------------------------------------------------------------------ actions

async function sendMessage(event) {
  event.preventDefault();
  const input = $('input');
  const text = input.value;
  if (!text.trim() || !page.sessionId || page.notFound) return;
  $('send').disabled = true;
  showError('');
  try {
    await api.call('POST', sessionPath(page.sessionId, '/messages'), { text }, { 'Idempotency-Key': randomKey() });
    input.value = '';
    autosize();
    if (page.chat) page.chat.toBottom();
  } catch (error) {
    showError(error.status === 409 ? `Not sent: ${error.message}` : `The message could not be sent: ${error.message}`);
  } finally {
    updateControls();
    input.focus();
  }
}

async function retryTurn(turnId, button) {
  if (!page.sessionId) return;
  button.disabled = true;
  try {
    await api.call('POST', sessionPath(page.sessionId, '/retry'), { turn_id: turnId });
    if (page.chat) page.chat.toBottom();
  } catch (error) {
    showError(`Could not retry: ${error.message}`);
    button.disabled = false;
  }
}

// Edit and resend: a new chat with this one's history up to just before the message
// (a fork), asked the edited message; the two link to each other.
// Approves or denies a waiting tool call: '' when recorded; a quiet note when another
// tab, client or the deadline decided first (409); null after an error shown.
async function decideCall(callId, approved, reason) {
  const body = reason ? { approved, reason } : { approved };
  try {
    await api.call('POST', sessionPath(page.sessionId, `/approvals/${encodeURIComponent(callId)}`), body);
    return '';
  } catch (error) {
    if (error.status === 409) return error.type === 'turn_finished' ? 'The turn ended before this answer.' : 'Already decided elsewhere.';
    showError(`Could not ${approved ? 'approve' : 'deny'} the tool call: ${error.message}`);
    return null;
  }
}

async function editTurn(turn, text) {
  const source = page.sessionId;
  try {
    const fork = await api.call('POST', sessionPath(source, '/fork'), { version: turn.version - 1 }, { 'Idempotency-Key': randomKey() });
    await api.call('POST', sessionPath(fork.id, '/messages'), { text }, { 'Idempotency-Key': randomKey() });
    location.hash = `#session=${fork.id}`;
    await loadSessions(fork.position);
    return true;
  } catch (error) {
    showError(error instanceof ApiError ? `The edit could not be sent: ${error.message}` : String(error));
    return false;
  }
}

async function stopTurn() {
  if (!page.sessionId || !page.chat || !page.chat.busy()) return;
  $('stop').disabled = true;
  try {
    await api.call('POST', sessionPath(page.sessionId, '/cancel'), { reason: 'stopped from the web page' });
  } catch (error) {
    if (error.status !== 409) showError(`Could not stop: ${error.message}`); // 409: nothing left to stop
  }
}

// ------------------------------------------------------------------ layout

function sessionFromHash() {
  const match = /^#session=([A-Za-z0-9_-]{1,64})$/.exec(location.hash);
  return match ? match[1] : null;
}

function setDrawer(open) {
  document.body.classList.toggle('drawer-open', open);
  $('toggle-sessions').setAttribute('aria-expanded', String(open));
}

function setEvents(open) {
  $('events-panel').hidden = !open;
  document.body.classList.toggle('events-open', open);
  $('toggle-events').setAttribute('aria-expanded', String(open));
  localStorage.setItem(EVENTS_KEY, open ? '1' : '');
}

function autosize() {
  const input = $('input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
}

function main() {
  $('token-form').addEventListener('submit', submitToken);
  $('sign-out').addEventListener('click', signOut);
  $('new-session').addEventListener('submit', createSession);
  $('search').addEventListener('input', renderSessions);
  $('composer').addEventListener('submit', sendMessage);
  $('stop').addEventListener('click', stopTurn);
  $('rename').addEventListener('click', startRename);
  $('rename-form').addEventListener('submit', rename);
  $('rename-cancel').addEventListener('click', endRename);
  $('rename-input').addEventListener('keydown', (event) => { if (event.key === 'Escape') { event.stopPropagation(); endRename(); } });
  $('jump').addEventListener('click', () => { if (page.chat) page.chat.toBottom(); });
  $('toggle-sessions').addEventListener('click', () => setDrawer(!document.body.classList.contains('drawer-open')));
  $('session-list').addEventListener('click', (event) => { if (event.target.closest('a')) setDrawer(false); });
  $('toggle-events').addEventListener('click', () => setEvents($('events-panel').hidden));
  $('close-events').addEventListener('click', () => setEvents(false));
  $('messages').addEventListener('click', (event) => {
    const copy = event.target.closest('button.copy');
    if (copy) copyCode(copy);
  });
  $('input').addEventListener('input', autosize);
  $('input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('composer').requestSubmit();
    }
  });
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.defaultPrevented) return;
    if (document.body.classList.contains('drawer-open')) { setDrawer(false); return; }
    if (page.chat && page.chat.busy()) { event.preventDefault(); stopTurn(); }
  });
  window.addEventListener('hashchange', () => {
    const id = sessionFromHash();
    if (id !== page.sessionId && api.token) openSession(id);
  });
  // chats made or renamed in another tab or client show up when this one is back in front
  window.addEventListener('focus', () => { if (api.token && !$('layout').hidden) loadSessions(); });
  window.addEventListener('storage', (event) => {
    if (event.key !== TOKEN_KEY || (event.newValue || '') === api.token) return;
    api.token = event.newValue || '';
    if (api.token) signedIn('token');
    else { closeSession(); showSignin('Signed out in another tab.'); }
  });
  setEvents(Boolean(localStorage.getItem(EVENTS_KEY)));
  start();
}

main();
