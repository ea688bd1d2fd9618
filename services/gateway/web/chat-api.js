// The chat page's connection to the gateway: the token (sign-in), API calls, and a
// session's event stream (Server-Sent Events read with fetch(), which can send the
// Authorization header EventSource cannot; resumed with Last-Event-ID, so nothing is
// missed or shown twice). The token is kept in localStorage only once the server has
// accepted it, and only ever sent in Authorization headers: never logged, never in a URL.
'use strict';

export const TOKEN_KEY = 'threadline.token';

export class ApiError extends Error {
  constructor(status, message, type = '') {
    super(message);
    this.status = status;
    this.type = type;
  }
}

export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

export const api = {
  token: localStorage.getItem(TOKEN_KEY) || '',
  // called with a sentence when the server stops accepting the token
  onRejected: () => {},

  headers(extra) {
    return { Authorization: `Bearer ${this.token}`, ...(extra || {}) };
  },

  async call(method, path, body, extraHeaders) {
    const init = { method, headers: this.headers(extraHeaders), cache: 'no-store' };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'The server could not be reached. Check your connection and try again.');
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) this.onRejected('Your sign-in is no longer accepted. Sign in again.');
    if (!response.ok) {
      const message = (data && data.error && data.error.message) || `the server answered ${response.status}`;
      throw new ApiError(response.status, message, (data && data.error && data.error.type) || '');
    }
    return data;
  },

  // 'ok', 'rejected' (401) or 'unreachable': asks the server before anything is kept
  async check(token) {
    try {
      const response = await fetch('/v1/sessions?limit=1', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
      if (response.ok) return 'ok';
      return response.status === 401 ? 'rejected' : 'unreachable';
    } catch (_) {
      return 'unreachable';
    }
  },

  // keeps a token the server accepted (in this tab and, through localStorage, the others)
  keep(token) {
    this.token = token;
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  },

  // the dev token, when the gateway runs under `threadline up` and this is its machine
  async devSignin() {
    try {
      const response = await fetch('/web/dev-signin', { cache: 'no-store' });
      if (!response.ok) return null;
      return await response.json();
    } catch (_) {
      return null;
    }
  },
};

// Reads one response body as Server-Sent Events: onEvent({id, event, data}) per event,
// onId(id) per id field, onRetry(ms) per retry field; comments are skipped.
export async function readEventStream(body, handlers) {
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
    if (text[0] === ':') return;
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

// Follows a session's events: replay from the start (or after position `after`), then
// live; reconnects with Last-Event-ID after the server's retry hint. onStatus(state,
// text): 'connecting', 'live', 'reconnecting', 'unauthorized', 'not-found'. `headers`
// makes the request's headers (default: the signed-in token's).
export class SessionStream {
  constructor(sessionId, onEvent, onStatus, { after = 0, headers = (extra) => api.headers(extra) } = {}) {
    this.url = `/v1/sessions/${encodeURIComponent(sessionId)}/events` + (after ? `?after=${after}` : '');
    this.headers = headers;
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
    while (!signal.aborted) {
      let wait = this.retryMs;
      try {
        const headers = this.headers({ Accept: 'text/event-stream' });
        if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
        this.onStatus('connecting', 'connecting…');
        const response = await fetch(this.url, { headers, signal, cache: 'no-store' });
        if (response.status === 401) { api.onRejected('Your sign-in is no longer accepted. Sign in again.'); this.onStatus('unauthorized', 'signed out'); return; }
        if (response.status === 404 || response.status === 403) { this.onStatus('not-found', 'not found'); return; }
        if (response.status === 429) wait = 1000 * Number(response.headers.get('Retry-After') || 5);
        if (response.ok && response.body) {
          this.onStatus('live', 'live');
          await readEventStream(response.body, {
            onEvent: (message) => this.onEvent(message),
            onId: (id) => { this.lastId = id; },
            onRetry: (ms) => { this.retryMs = ms; wait = ms; },
          });
        }
      } catch (_) {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      this.onStatus('reconnecting', 'reconnecting…');
      await sleep(wait + Math.random() * 250, signal);
    }
  }
}
