// The replay debugger's player: a turn's events applied one by one to a screen that
// shows the turn as the chat showed it (the user message, the answer streaming in,
// reasoning, tool calls with arguments, progress and results, fallbacks, the ending),
// at the recorded pace (the envelopes' `at`), faster, or at once, with a scrubber.
// Everything is inserted as text, never as HTML.
import { el } from './chat-render.js';

export { el };

// gaps between events longer than this are shortened to it (an idle queue, a slow tool)
export const MAX_GAP_MS = 3000;

export function json(value) {
  return JSON.stringify(value);
}

export function ms(value) {
  if (value === null || value === undefined) return '–';
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

// Applies events to a screen; a fresh Screen applying events 0..k shows position k.
export class Screen {
  constructor(root) {
    this.root = root;
    this.user = el('div', 'bubble user');
    this.answer = el('div', 'assistant');
    this.status = el('div', 'status');
    root.replaceChildren(this.user, this.answer, this.status);
    this.attempt = 0;
    this.steps = new Map();
    this.tools = new Map();
  }

  step(n) {
    let step = this.steps.get(n);
    if (!step) {
      const node = el('div', 'step');
      node.dataset.step = String(n);
      const text = el('div', 'answer');
      node.append(text);
      this.answer.append(node);
      step = { node, text, reasoning: null };
      this.steps.set(n, step);
    }
    return step;
  }

  note(className, text) {
    this.answer.append(el('div', `note ${className}`, text));
  }

  setStatus(state, text) {
    this.root.dataset.status = state;
    this.status.textContent = text;
  }

  // The answer's text as shown: every step's text, in order.
  text() {
    return Array.from(this.answer.querySelectorAll('.answer'), (node) => node.textContent).join('');
  }

  apply(env) {
    const e = env.event;
    if (env.attempt && env.attempt < this.attempt) return; // superseded: the chat dropped it
    switch (e.kind) {
      case 'user_message':
        this.user.textContent = e.text;
        this.setStatus('pending', 'waiting for the agent…');
        break;
      case 'turn_started':
        if (this.attempt > 0 && e.attempt > this.attempt) {
          this.answer.replaceChildren();
          this.steps.clear();
          this.tools.clear();
          this.note('retry', `attempt ${e.attempt}: the answer starts again`);
        }
        this.attempt = e.attempt;
        this.setStatus('running', `answering · ${e.provider}${e.model ? '/' + e.model : ''}`);
        break;
      case 'text_delta':
        this.step(e.step || 0).text.append(e.text);
        break;
      case 'reasoning_delta': {
        const step = this.step(e.step || 0);
        if (!step.reasoning) {
          const details = el('details', 'reasoning');
          details.open = true;
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
        card.append(el('div', 'tool-name', `⚙ ${e.tool}`), el('code', 'tool-args', json(e.arguments || {})));
        const progress = el('div', 'tool-progress');
        const result = el('div', 'tool-result pending', 'running…');
        card.append(progress, result);
        this.step(e.step || 0).node.append(card);
        this.tools.set(e.call_id, { progress, result });
        break;
      }
      case 'tool_progress': {
        const tool = this.tools.get(e.call_id);
        const of = e.total ? ` of ${e.total}` : '';
        if (tool) tool.progress.textContent = `progress ${e.progress}${of}${e.message ? ` · ${e.message}` : ''}`;
        break;
      }
      case 'tool_result': {
        let tool = this.tools.get(e.call_id);
        if (!tool) {
          tool = { progress: el('div'), result: el('div') };
          this.step(e.step || 0).node.append(tool.result);
        }
        tool.result.className = e.is_error ? 'tool-result error' : 'tool-result';
        const took = e.duration_ms ? ` (${ms(e.duration_ms)})` : '';
        tool.result.textContent = `${e.is_error ? '✗' : '→'} ${e.content || ''}${took}`;
        break;
      }
      case 'assistant_message':
        if (e.text) this.step(e.step || 0).text.textContent = e.text;
        break;
      case 'fallback':
        this.note('fallback', `${e.fallback}${e.from || e.to ? ` (${e.from || ''} → ${e.to || ''})` : ''}: ${e.reason || ''}`);
        break;
      case 'context_trimmed':
        if (e.turns) this.note('context', `${e.turns} older turns left out of the model's context`);
        break;
      case 'cancel_requested':
        this.setStatus(this.root.dataset.status || 'running', 'stopping…');
        break;
      case 'turn_completed':
        this.setStatus('completed', `completed · ${ms(e.duration_ms || 0)}`);
        break;
      case 'turn_failed':
        this.setStatus('failed', `failed (${e.error}): ${e.message}`);
        break;
      case 'turn_cancelled':
        this.setStatus('cancelled', `cancelled${e.reason ? `: ${e.reason}` : ''}`);
        break;
      default:
        break;
    }
  }
}

function sleep(msDelay) {
  return new Promise((resolve) => setTimeout(resolve, msDelay));
}

// Plays a list of records (`{position, env}`) onto a Screen.
export class Player {
  constructor({ screen, scrubber, clock, button, speed, onCursor }) {
    this.root = screen;
    this.scrubber = scrubber;
    this.clock = clock;
    this.button = button;
    this.speed = speed;
    this.onCursor = onCursor;
    this.records = [];
    this.cursor = 0;
    this.run = 0;
    this.playing = false;
    this.scrubber.addEventListener('input', () => { this.pause(); this.seek(Number(this.scrubber.value)); });
    this.button.addEventListener('click', () => (this.playing ? this.pause() : this.play()));
  }

  load(records, cursor) {
    this.pause();
    this.records = records;
    this.scrubber.max = String(records.length);
    this.seek(cursor === undefined ? records.length : cursor);
  }

  // More events of the same turn arrived (live): keep the position, and keep playing.
  extend(records) {
    this.records = records;
    this.scrubber.max = String(records.length);
    this.moved();
  }

  // Shows the turn after its first `k` events.
  seek(k) {
    this.cursor = Math.max(0, Math.min(k, this.records.length));
    this.screen = new Screen(this.root);
    for (let i = 0; i < this.cursor; i++) this.screen.apply(this.records[i].env);
    this.moved();
  }

  moved() {
    this.scrubber.value = String(this.cursor);
    const n = this.records.length;
    const first = n ? this.records[0].env.at : 0;
    const at = this.cursor ? this.records[this.cursor - 1].env.at : first;
    const total = n ? (this.records[n - 1].env.at - first) / 1e6 : 0;
    this.clock.textContent = `+${((at - first) / 1e6).toFixed(2)} s of ${total.toFixed(2)} s · event ${this.cursor} of ${n}`;
    this.root.dataset.cursor = String(this.cursor);
    this.onCursor(this.cursor, this.playing);
  }

  gap(i) {
    if (i === 0) return 0;
    return Math.min(MAX_GAP_MS, (this.records[i].env.at - this.records[i - 1].env.at) / 1000);
  }

  async play() {
    if (this.playing) return;
    if (this.cursor >= this.records.length) this.seek(0);
    const run = ++this.run;
    this.setPlaying(true);
    const speed = Number(this.speed.value);
    while (this.cursor < this.records.length && run === this.run) {
      if (speed > 0) await sleep(this.gap(this.cursor) / speed);
      if (run !== this.run) return;
      this.screen.apply(this.records[this.cursor].env);
      this.cursor += 1;
      this.moved();
    }
    if (run === this.run) {
      this.setPlaying(false);
      this.moved();
    }
  }

  pause() {
    this.run += 1;
    if (this.playing) this.setPlaying(false);
  }

  setPlaying(playing) {
    this.playing = playing;
    this.button.textContent = playing ? '❚❚ Pause' : '▶ Play';
    this.root.dataset.playing = playing ? 'true' : 'false';
  }
}
