// The replay debugger's live follow: the session's events after the last one loaded,
// from GET /v1/sessions/{id}/events?after=POSITION (Server-Sent Events read with
// fetch(), which can send the Authorization header EventSource cannot), resumed with
// Last-Event-ID after the server's retry hint, so nothing is missed or seen twice.

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// Calls onMessage({id, data}) for each event of an SSE body; onRetry(ms) for retry hints.
async function readEvents(body, onMessage, onRetry) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  let buffer = '';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop(); // an unfinished line (a lone trailing CR is finished: the server sends LF)
    for (const line of lines) {
      if (line === '') {
        if (data.length && id !== null) onMessage({ id, data: data.join('\n') });
        data = [];
      } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      else if (line.startsWith('id:')) id = line.slice(3).trim();
      else if (line.startsWith('retry:') && /^\d+$/.test(line.slice(6).trim())) onRetry(Number(line.slice(6).trim()));
    }
  }
}

// SHA-256 of a record's bytes, as the log chains them (`data:` is the stored record; the
// Web Crypto API exists on https and localhost only: elsewhere the hash is left empty).
async function hashOf(data) {
  if (!globalThis.crypto || !crypto.subtle) return '';
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(data));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

export class LiveFollow {
  // onRecord({position, env}) per new event; onState('live' | 'reconnecting' | 'off').
  constructor({ sessionId, after, token, onRecord, onState }) {
    this.url = `/v1/sessions/${encodeURIComponent(sessionId)}/events?after=${after}`;
    this.lastId = null;
    this.token = token;
    this.onRecord = onRecord;
    this.onState = onState;
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
        const headers = { Authorization: `Bearer ${this.token()}`, Accept: 'text/event-stream' };
        if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
        const response = await fetch(this.url, { headers, signal, cache: 'no-store' });
        if (response.status === 401 || response.status === 404) { this.onState('off'); return; }
        if (response.status === 429) wait = 1000 * Number(response.headers.get('Retry-After') || 5);
        if (response.ok && response.body) {
          this.onState('live');
          await readEvents(response.body, (message) => {
            this.lastId = message.id;
            const rec = { position: Number(message.id), hash: '', env: JSON.parse(message.data) };
            this.onRecord(rec);
            hashOf(message.data).then((hash) => { rec.hash = hash; });
          }, (ms) => { this.retryMs = ms; wait = ms; });
        }
      } catch (_) {
        if (signal.aborted) return;
      }
      if (signal.aborted) return;
      this.onState('reconnecting');
      await sleep(wait, signal);
    }
  }
}
