// The replay debugger's live follow: the session's events after the last one loaded,
// from GET /v1/sessions/{id}/events?after=POSITION (Server-Sent Events read with
// fetch(), which can send the Authorization header EventSource cannot), resumed with
// Last-Event-ID after the server's retry hint, so nothing is missed or seen twice: the
// chat page's SessionStream, with the debugger's token.

import { SessionStream } from './chat-api.js';

// SHA-256 of a record's bytes, as the log chains them (`data:` is the stored record; the
// Web Crypto API exists on https and localhost only: elsewhere the hash is left empty).
async function hashOf(data) {
  if (!globalThis.crypto || !crypto.subtle) return '';
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(data));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

// onRecord({position, hash, env}) per new event; onState('live' | 'reconnecting' | 'off').
export class LiveFollow {
  constructor({ sessionId, after, token, onRecord, onState }) {
    const states = { live: 'live', reconnecting: 'reconnecting', unauthorized: 'off', 'not-found': 'off' };
    const onEvent = (message) => {
      const rec = { position: Number(message.id), hash: '', env: JSON.parse(message.data) };
      onRecord(rec);
      hashOf(message.data).then((hash) => { rec.hash = hash; });
    };
    const headers = (extra) => ({ Authorization: `Bearer ${token()}`, ...extra });
    this.stream = new SessionStream(sessionId, onEvent, (state) => states[state] && onState(states[state]), { after, headers });
  }

  stop() {
    this.stream.stop();
  }

  run() {
    return this.stream.run();
  }
}
