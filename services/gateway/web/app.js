// Threadline web page: sessions, live chat and the raw event timeline of one session.
//
// Plain JavaScript, no build step. The API needs `Authorization: Bearer ...`, which
// EventSource cannot send, so the event stream is read with fetch() and a small
// Server-Sent Events parser; it reconnects with Last-Event-ID, so nothing is missed or
// shown twice. The chat is a fold of the session's events (replayed from the start,
// then live), so every tab on a session shows the same thing. Everything from the
// server is inserted as text (textContent), never as HTML. The token stays in
// localStorage and in Authorization headers; it is never logged or put in a URL.
'use strict';

const TOKEN_KEY = 'threadline.token';
// Stored events leave out fields that have their default value (docs/events.md).
const DEFAULTS = {
  session_started: { title: '', provider: '', model: '', system_prompt: '', tool_servers: [] },
  user_message: { client_message_id: '' },
  turn_started: { worker: '' },
  text_delta: { step: 0 },
  reasoning_delta: { step: 0 },
  tool_call: { server: '', arguments: {}, step: 0 },
  tool_result: { tool: '', content: '', is_error: false, duration_ms: 0, summary: '', step: 0 },
  fallback: { reason: '', from: '', to: '', attempt: 0 },
  assistant_message: { finish_reason: 'stop', usage: {}, reasoning: '', tool_calls: [], step: 0 },
  context_trimmed: { through_turn: '', through_version: 0, estimated_tokens: 0, budget_tokens: 0, context_tokens: 0, step: 0, refused: false },
  turn_completed: { usage: {}, ttft_ms: null, duration_ms: 0, steps: 1 },
  turn_failed: { retryable: false },
  cancel_requested: { reason: '' },
  turn_cancelled: { partial_text: '', reason: '' },
};

// The envelope of an SSE message's data, with the event's defaults filled in.
function envelopeOf(data) {
  const env = JSON.parse(data);
  const event = env.event || {};
  env.event = { ...(DEFAULTS[event.kind] || {}), ...event };
  return env;
}

// ------------------------------------------------------------------ small helpers

function $(id) {
  return document.getElementById(id);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function clock(atMicros) {
  const d = new Date(atMicros / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function shorten(text, n) {
  const s = String(text).replace(/\s+/g, ' ').trim();
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function json(value) {
  return JSON.stringify(value);
}

// ------------------------------------------------------------------ the API

const api = {
  token: localStorage.getItem(TOKEN_KEY) || '',

  headers(extra) {
    return { Authorization: `Bearer ${this.token}`, ...(extra || {}) };
  },

  async call(method, path, body, extraHeaders) {
    const init = { method, headers: this.headers(extraHeaders), cache: 'no-store' };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) setAuth('rejected', 'token rejected');
    if (!response.ok) {
      const message = (data && data.error && data.error.message) || `HTTP ${response.status}`;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return data;
  },
};

// ------------------------------------------------------------------ SSE over fetch()

// Reads one response body as Server-Sent Events: calls onEvent({id, event, data}) per
// dispatched event, onComment(text) per comment line, onRetry(ms) per retry field.
async function readEventStream(body, handlers) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let data = [];
  let event = '';
  let id = null;
  const line = (text) => {
    if (text === '') {
      if (data.length) handlers.onEvent({ id, event: event || 'message', data: data.join('\n') });
      data = [];
      event = '';
      return;
    }
    if (text[0] === ':') { handlers.onComment(text.slice(1).trim()); return; }
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id' && !value.includes('\0')) { id = value; handlers.onId(value); }
    else if (field === 'retry' && /^\d+$/.test(value)) handlers.onRetry(Number(value));
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    // a trailing CR may be the first half of CRLF: keep it for the next chunk
    let start = 0;
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r' && i === buffer.length - 1 && !done) break;
      line(buffer.slice(start, i));
      if (c === '\r' && buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    buffer = buffer.slice(start);
    if (done) return; // an unterminated event is dropped, as the spec says
  }
}

// Follows a session's events: replay from `lastId` (none: the start), then live;
// reconnects with Last-Event-ID after the server's retry hint.
class SessionStream {
  constructor(sessionId, onEvent, onStatus) {
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = null;
    this.retryMs = 3000;
    this.controller = new AbortController();
  }

  stop() {
    this.controller.abort();
  }

  async run() {
    const signal = this.controller.signal;
    const url = `/v1/sessions/${encodeURIComponent(this.sessionId)}/events`;
    while (!signal.aborted) {
      let wait = this.retryMs;
      try {
        const headers = api.headers({ Accept: 'text/event-stream' });
        if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
        this.onStatus('connecting', 'connecting…');
        const response = await fetch(url, { headers, signal, cache: 'no-store' });
        if (response.status === 401) { setAuth('rejected', 'token rejected'); this.onStatus('error', 'unauthorized'); return; }
        if (response.status === 404) { this.onStatus('error', 'session not found'); return; }
        if (response.status === 429) wait = 1000 * Number(response.headers.get('Retry-After') || 5);
        if (response.ok && response.body) {
          this.onStatus('live', 'live');
          await readEventStream(response.body, {
            onEvent: (message) => this.onEvent(message),
            onId: (id) => { this.lastId = id; },
            onRetry: (ms) => { this.retryMs = ms; wait = ms; },
            onComment: () => {},
          });
        }
      } catch (error) {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      this.onStatus('reconnecting', 'reconnecting…');
      await sleep(wait + Math.random() * 250, signal);
    }
  }
}

// ------------------------------------------------------------------ the chat view

class ChatView {
  constructor(root) {
    this.root = root;
    this.turns = new Map();
    this.scheduled = false;
  }

  busy() {
    for (const turn of this.turns.values()) {
      if (turn.status === 'pending' || turn.status === 'running') return true;
    }
    return false;
  }

  stickToBottom() {
    const nearBottom = this.root.scrollHeight - this.root.scrollTop - this.root.clientHeight < 80;
    if (!nearBottom || this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; this.root.scrollTop = this.root.scrollHeight; });
  }

  turn(id) {
    let turn = this.turns.get(id);
    if (!turn) {
      const node = el('article', 'turn');
      node.dataset.turn = id;
      const user = el('div', 'bubble user');
      const answer = el('div', 'assistant');
      const status = el('div', 'status');
      node.append(user, answer, status);
      this.root.append(node);
      turn = { node, user, answer, statusNode: status, attempt: 0, steps: new Map(), tools: new Map(), status: '' };
      this.turns.set(id, turn);
      this.setStatus(turn, 'pending', 'waiting for the agent…');
    }
    return turn;
  }

  setStatus(turn, status, text) {
    turn.status = status;
    turn.node.dataset.status = status;
    turn.statusNode.textContent = text;
  }

  step(turn, n) {
    let step = turn.steps.get(n);
    if (!step) {
      const node = el('div', 'step');
      node.dataset.step = String(n);
      const text = el('div', 'answer');
      node.append(text);
      turn.answer.append(node);
      step = { node, text, reasoning: null };
      turn.steps.set(n, step);
    }
    return step;
  }

  note(turn, className, text) {
    turn.answer.append(el('div', `note ${className}`, text));
  }

  apply(env) {
    const e = env.event;
    if (!env.turn) return; // session_started: the header shows it
    const turn = this.turn(env.turn);
    if (env.attempt && env.attempt < turn.attempt) return; // a superseded attempt
    switch (e.kind) {
      case 'user_message':
        turn.user.textContent = e.text;
        break;
      case 'turn_started':
        if (turn.attempt > 0 && e.attempt > turn.attempt) {
          turn.answer.replaceChildren();
          turn.steps.clear();
          turn.tools.clear();
          this.note(turn, 'retry', `attempt ${e.attempt}`);
        }
        turn.attempt = e.attempt;
        this.setStatus(turn, 'running', `answering · ${e.provider}${e.model ? '/' + e.model : ''}`);
        break;
      case 'text_delta':
        this.step(turn, e.step).text.append(e.text);
        break;
      case 'reasoning_delta': {
        const step = this.step(turn, e.step);
        if (!step.reasoning) {
          const details = el('details', 'reasoning');
          details.append(el('summary', '', 'reasoning'));
          step.reasoning = el('div', 'reasoning-text');
          details.append(step.reasoning);
          step.node.prepend(details);
        }
        step.reasoning.append(e.text);
        break;
      }
      case 'tool_call': {
        const card = el('div', 'tool-call');
        card.append(el('span', 'tool-name', `⚙ ${e.tool}`), el('code', 'tool-args', json(e.arguments)));
        const result = el('div', 'tool-result pending', 'running…');
        card.append(result);
        this.step(turn, e.step).node.append(card);
        turn.tools.set(e.call_id, result);
        break;
      }
      case 'tool_result': {
        let result = turn.tools.get(e.call_id);
        if (!result) {
          result = el('div', 'tool-result');
          this.step(turn, e.step).node.append(result);
        }
        result.className = e.is_error ? 'tool-result error' : 'tool-result';
        const took = e.duration_ms ? ` (${Math.round(e.duration_ms)} ms)` : '';
        result.textContent = `${e.is_error ? '✗' : '→'} ${shorten(e.content, 2000)}${took}`;
        break;
      }
      case 'assistant_message':
        if (e.text) this.step(turn, e.step).text.textContent = e.text;
        break;
      case 'fallback':
        this.note(turn, 'fallback', `fallback: ${e.fallback}${e.from || e.to ? ` (${e.from} → ${e.to})` : ''} — ${e.reason}`);
        break;
      case 'cancel_requested':
        if (turn.status !== 'completed') this.setStatus(turn, turn.status, 'stopping…');
        break;
      case 'context_trimmed':
        if (e.turns) this.note(turn, 'context', `${e.turns} older turns left out of the model's context`);
        break;
      case 'turn_completed': {
        const u = e.usage;
        const parts = [`completed · ${(e.duration_ms / 1000).toFixed(2)} s`];
        if (e.ttft_ms !== null) parts.push(`ttft ${Math.round(e.ttft_ms)} ms`);
        parts.push(`${u.input_tokens || 0} in / ${u.output_tokens || 0} out tokens`);
        this.setStatus(turn, 'completed', parts.join(' · '));
        break;
      }
      case 'turn_failed': {
        this.setStatus(turn, 'failed', `failed (${e.error}): ${e.message} `);
        // its question is left out of the model's context: Retry asks it again
        const retry = el('button', 'retry', 'Retry');
        retry.type = 'button';
        retry.addEventListener('click', () => retryTurn(env.turn, retry));
        turn.statusNode.append(retry);
        break;
      }
      case 'turn_cancelled':
        this.setStatus(turn, 'cancelled', `cancelled${e.reason ? `: ${e.reason}` : ''}`);
        break;
      default:
        break;
    }
    this.stickToBottom();
  }
}

// ------------------------------------------------------------------ the timeline

function summary(e) {
  switch (e.kind) {
    case 'session_started': return `${e.title || '(untitled)'} · ${e.provider || 'default'}`;
    case 'user_message': return shorten(e.text, 80);
    case 'turn_started': return `attempt ${e.attempt} · ${e.provider}${e.model ? '/' + e.model : ''}`;
    case 'text_delta': case 'reasoning_delta': return json(e.text);
    case 'tool_call': return `${e.tool} ${shorten(json(e.arguments), 60)}`;
    case 'tool_result': return `${e.tool}${e.is_error ? ' ✗' : ''} ${shorten(e.content, 60)}`;
    case 'fallback': return `${e.fallback}: ${shorten(e.reason, 60)}`;
    case 'assistant_message': return `step ${e.step} · ${e.finish_reason} · ${shorten(e.text, 50)}`;
    case 'context_trimmed': return e.turns ? `${e.turns} turns (${e.messages} messages) left out · ~${e.estimated_tokens}/${e.budget_tokens} tokens` : 'whole conversation sent';
    case 'turn_completed': return `${Math.round(e.duration_ms)} ms`;
    case 'turn_failed': return `${e.error}: ${shorten(e.message, 60)}`;
    case 'turn_cancelled': case 'cancel_requested': return e.reason || '';
    default: return '';
  }
}

function timelineRow(message, env) {
  const e = env.event;
  const row = el('li', `ev k-${e.kind || message.event}`);
  row.dataset.position = message.id;
  const head = el('div', 'ev-head');
  head.append(
    el('span', 'pos', message.id),
    el('span', 'time', env.at ? clock(env.at) : ''),
    el('span', 'kind', e.kind || message.event),
    el('span', 'sum', summary(e)),
  );
  head.title = `version ${env.version} · ${env.actor}${env.turn ? ` · turn ${env.turn} attempt ${env.attempt}` : ''}`;
  row.append(head);
  row.addEventListener('click', () => {
    const open = row.querySelector('pre');
    if (open) { open.remove(); return; }
    row.append(el('pre', 'raw', JSON.stringify(JSON.parse(message.data), null, 2))); // as stored
  });
  return row;
}

// ------------------------------------------------------------------ the page

const page = { sessionId: null, stream: null, chat: null, providers: null };

function setAuth(state, text) {
  const badge = $('auth-status');
  badge.dataset.state = state;
  badge.textContent = text;
}

function setStream(state, text) {
  const badge = $('stream-status');
  badge.dataset.state = state;
  badge.textContent = text;
}

function showError(error) {
  setStream('error', error.message || String(error));
}

function updateControls() {
  const open = Boolean(page.sessionId && api.token);
  $('input').disabled = !open;
  $('send').disabled = !open;
  $('stop').disabled = !(open && page.chat && page.chat.busy());
}

async function loadSessions() {
  const list = $('session-list');
  if (!api.token) { list.replaceChildren(el('li', 'empty', 'Enter a token to see your sessions.')); return; }
  try {
    const data = await api.call('GET', '/v1/sessions?limit=100');
    setAuth('ok', 'token accepted');
    list.replaceChildren();
    for (const s of data.sessions) {
      const item = el('li', s.id === page.sessionId ? 'current' : '');
      const link = el('a', '', s.title || '(untitled)');
      link.href = `#session=${encodeURIComponent(s.id)}`;
      item.append(link, el('div', 'meta', `${new Date(s.created_at / 1000).toLocaleString()} · ${s.id.slice(0, 8)}`));
      item.dataset.session = s.id;
      list.append(item);
    }
    if (!data.sessions.length) list.append(el('li', 'empty', 'No sessions yet.'));
  } catch (error) {
    list.replaceChildren(el('li', 'empty', error.message));
  }
}

async function loadProviders() {
  if (!api.token || page.providers) return;
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

function openSession(sessionId) {
  if (page.stream) page.stream.stop();
  page.sessionId = sessionId;
  page.stream = null;
  $('messages').replaceChildren();
  $('timeline').replaceChildren();
  $('session-meta').textContent = '';
  $('session-title').textContent = sessionId ? 'Loading…' : 'No session selected';
  for (const item of document.querySelectorAll('#session-list li')) {
    item.classList.toggle('current', item.dataset.session === sessionId);
  }
  page.chat = new ChatView($('messages'));
  updateControls();
  if (!sessionId || !api.token) return;
  const timeline = $('timeline');
  const stream = new SessionStream(sessionId, (message) => {
    let env;
    try { env = envelopeOf(message.data); } catch (_) { return; }
    if (stream !== page.stream) return;
    const stick = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight < 60;
    timeline.append(timelineRow(message, env));
    if (stick) timeline.scrollTop = timeline.scrollHeight;
    page.chat.apply(env);
    if (env.event && env.event.kind === 'session_started') showHeader(env);
    updateControls();
  }, (state, text) => { if (stream === page.stream) setStream(state, text); });
  page.stream = stream;
  stream.run();
}

function showHeader(env) {
  const e = env.event;
  $('session-title').textContent = e.title || '(untitled)';
  const tools = e.tool_servers && e.tool_servers.length ? e.tool_servers.join(', ') : 'none';
  $('session-meta').textContent = `${env.session} · ${e.provider || 'default provider'}${e.model ? '/' + e.model : ''} · tools: ${tools}`;
}

function sessionFromHash() {
  const match = /^#session=([A-Za-z0-9_-]{1,64})$/.exec(location.hash);
  return match ? match[1] : null;
}

async function createSession(event) {
  event.preventDefault();
  if (!api.token) { setAuth('missing', 'enter a token first'); return; }
  const body = { title: $('new-title').value.trim() };
  const provider = $('new-provider').value;
  if (provider) body.provider = provider;
  body.tool_servers = Array.from(document.querySelectorAll('#new-tools input:checked'), (b) => b.value);
  try {
    const created = await api.call('POST', '/v1/sessions', body, { 'Idempotency-Key': randomKey() });
    $('new-title').value = '';
    location.hash = `#session=${created.id}`;
    await loadSessions();
  } catch (error) {
    showError(error);
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const input = $('input');
  const text = input.value;
  if (!text.trim() || !page.sessionId) return;
  $('send').disabled = true;
  try {
    const path = `/v1/sessions/${encodeURIComponent(page.sessionId)}/messages`;
    await api.call('POST', path, { text }, { 'Idempotency-Key': randomKey() });
    input.value = '';
  } catch (error) {
    showError(error);
  } finally {
    updateControls();
    input.focus();
  }
}

async function retryTurn(turnId, button) {
  if (!page.sessionId) return;
  button.disabled = true;
  try {
    await api.call('POST', `/v1/sessions/${encodeURIComponent(page.sessionId)}/retry`, { turn_id: turnId });
  } catch (error) {
    showError(error);
    button.disabled = false;
  }
}

async function stopTurn() {
  if (!page.sessionId) return;
  $('stop').disabled = true;
  try {
    await api.call('POST', `/v1/sessions/${encodeURIComponent(page.sessionId)}/cancel`, { reason: 'stopped from the web page' });
  } catch (error) {
    if (error.status !== 409) showError(error); // 409: nothing left to stop
  }
}

function showTokenState() {
  $('token').placeholder = api.token ? 'saved (enter another to replace)' : 'bearer token';
  setAuth(api.token ? 'unknown' : 'missing', api.token ? 'token saved' : 'no token');
}

function useToken(token) {
  api.token = token;
  page.providers = null;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  showTokenState();
  loadProviders();
  loadSessions();
  openSession(sessionFromHash());
}

function main() {
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token').value.trim();
    $('token').value = '';
    if (value) useToken(value);
  });
  $('forget').addEventListener('click', () => { $('token').value = ''; useToken(''); });
  $('new-session').addEventListener('submit', createSession);
  $('refresh').addEventListener('click', loadSessions);
  $('composer').addEventListener('submit', sendMessage);
  $('stop').addEventListener('click', stopTurn);
  $('hide-deltas').addEventListener('change', (event) => {
    $('timeline').classList.toggle('hide-deltas', event.target.checked);
  });
  $('input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $('composer').requestSubmit();
    }
  });
  window.addEventListener('hashchange', () => {
    const id = sessionFromHash();
    if (id !== page.sessionId) openSession(id);
  });
  window.addEventListener('storage', (event) => {
    if (event.key === TOKEN_KEY && (event.newValue || '') !== api.token) {
      api.token = event.newValue || '';
      showTokenState();
      loadSessions();
      openSession(sessionFromHash());
    }
  });
  showTokenState();
  loadProviders();
  loadSessions();
  openSession(sessionFromHash());
}

main();
