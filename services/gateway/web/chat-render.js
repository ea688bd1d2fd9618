// What the chat page shows for text and events: markdown (marked, then DOMPurify, then
// highlight.js for code, each vendored under /web/vendor/), errors and fallbacks in
// plain words, and one-line summaries for the event timeline.
'use strict';

/* global marked, DOMPurify, hljs */

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function shorten(text, n) {
  const s = String(text).replace(/\s+/g, ' ').trim();
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

// Stored events leave out fields that have their default value (docs/events.md).
const DEFAULTS = {
  session_started: { title: '', provider: '', model: '', system_prompt: '', tool_servers: [], forked_from: null },
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
  approval_requested: { server: '', arguments: {}, step: 0, deadline: 0 },
  approval_granted: { reason: '' },
  approval_denied: { reason: '', expired: false },
};

// The envelope of an SSE message's data, with the event's defaults filled in.
export function envelopeOf(data) {
  const env = JSON.parse(data);
  const event = env.event || {};
  env.event = { ...(DEFAULTS[event.kind] || {}), ...event };
  return env;
}

// ------------------------------------------------------------------ markdown

const PURIFY = { FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'img', 'video', 'audio', 'iframe'], FORBID_ATTR: ['style'] };
let configured = false;

function configure() {
  if (configured) return;
  configured = true;
  marked.setOptions({ gfm: true, breaks: false });
  // links open elsewhere and tell nothing about this page
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.getAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer nofollow');
    }
  });
}

// Renders markdown `text` into `node` (sanitised), code highlighted with a copy button,
// tables in a box of their own (a wide table scrolls inside it, not the page).
export function renderMarkdown(node, text) {
  configure();
  node.innerHTML = DOMPurify.sanitize(marked.parse(text), PURIFY);
  for (const code of node.querySelectorAll('pre > code')) decorateCode(code);
  for (const table of node.querySelectorAll('table')) {
    const box = el('div', 'table-box');
    table.replaceWith(box);
    box.append(table);
  }
}

function decorateCode(code) {
  const pre = code.parentElement;
  const language = (/\blanguage-([\w+#-]+)/.exec(code.className) || [])[1] || '';
  if (language && hljs.getLanguage(language)) {
    code.innerHTML = hljs.highlight(code.textContent, { language, ignoreIllegals: true }).value;
    code.classList.add('hljs');
  }
  const block = el('div', 'code-block');
  const head = el('div', 'code-head');
  const copy = el('button', 'copy', 'Copy');
  copy.type = 'button';
  copy.setAttribute('aria-label', 'Copy the code');
  head.append(el('span', 'code-lang', language || 'code'), copy);
  pre.replaceWith(block);
  block.append(head, pre);
}

// Copies a code block's text (the page's click handler calls it for any .copy button).
export async function copyCode(button) {
  const code = button.closest('.code-block').querySelector('code');
  const text = code.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) { // not a secure context: select it for the reader to copy
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = 'Press Ctrl+C';
    return;
  }
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = 'Copy'; }, 1500);
}

// ------------------------------------------------------------------ plain words

const FAILURES = {
  auth: 'the model provider did not accept this deployment\'s credentials',
  rate_limit: 'the model provider is busy right now',
  model_not_found: 'the model this chat uses is not available',
  bad_request: 'the model provider refused the request',
  context_too_long: 'this conversation has grown too long for the model',
  network: 'the model provider could not be reached',
  timeout: 'the model took too long to answer',
  tool_error: 'a tool it needed failed',
  configuration: 'this chat\'s model is not set up correctly',
  provider_error: 'the model provider had a problem',
  max_deliveries: 'the answer could not be finished after several tries',
  internal: 'something went wrong on the server',
};

export function failureText(kind) {
  return `No answer: ${FAILURES[kind] || 'something went wrong'}.`;
}

// What a turn's fallbacks of one kind mean, `count` of them so far.
export function fallbackText(e, count) {
  switch (e.fallback) {
    case 'retry': return count > 1 ? `The model provider had trouble; tried again (${count} times).` : 'The model provider had trouble; tried again.';
    case 'provider_switched': return `Answered by ${e.to || 'another provider'} instead of ${e.from || 'the usual one'}.`;
    case 'tools_disabled': return 'Answered without tools: the model could not use them.';
    case 'mcp_unavailable': return 'A tool server was unavailable; answered without it.';
    case 'step_limit': return 'Stopped using tools after the step limit.';
    default: return 'Something did not go as planned; the answer carried on another way.';
  }
}

// Who decided a tool call, in words: `user:alice` is alice; `system` the deadline.
export function decisionText(e, actor) {
  const who = String(actor || '').replace(/^user:/, '') || 'someone';
  if (e.kind === 'approval_granted') return `Approved by ${who}${e.reason ? `: ${e.reason}` : '.'}`;
  if (e.expired) return 'Denied: nobody approved it before its deadline.';
  return `Denied by ${who}${e.reason ? `: ${e.reason}` : '.'}`;
}

export function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// ------------------------------------------------------------------ the timeline

function json(value) {
  return JSON.stringify(value);
}

export function summary(e) {
  switch (e.kind) {
    case 'session_started': return `${e.title || '(untitled)'} · ${e.provider || 'default'}${e.forked_from ? ` · fork of ${e.forked_from.session} at ${e.forked_from.version}` : ''}`;
    case 'session_renamed': return e.title;
    case 'user_message': return shorten(e.text, 300);
    case 'turn_started': return `attempt ${e.attempt} · ${e.provider}${e.model ? '/' + e.model : ''}`;
    case 'text_delta': case 'reasoning_delta': return e.text;
    case 'tool_call': return `${e.tool} ${shorten(json(e.arguments), 300)}`;
    case 'tool_result': return `${e.tool}${e.is_error ? ' ✗' : ''} ${shorten(e.content, 300)}`;
    case 'fallback': return `${e.fallback}: ${shorten(e.reason, 300)}`;
    case 'assistant_message': return `step ${e.step} · ${e.finish_reason} · ${shorten(e.text, 300)}`;
    case 'context_trimmed': return e.turns ? `${e.turns} turns (${e.messages} messages) left out · ~${e.estimated_tokens}/${e.budget_tokens} tokens` : 'whole conversation sent';
    case 'turn_completed': return `${Math.round(e.duration_ms)} ms`;
    case 'turn_failed': return `${e.error}: ${shorten(e.message, 300)}`;
    case 'turn_cancelled': case 'cancel_requested': return e.reason || '';
    case 'approval_requested': return `${e.call_id} ${e.tool} ${shorten(json(e.arguments), 300)}`;
    case 'approval_granted': case 'approval_denied': return `${e.call_id}${e.expired ? ' · deadline passed' : ''}${e.reason ? `: ${shorten(e.reason, 300)}` : ''}`;
    default: return '';
  }
}

export function clock(atMicros) {
  const d = new Date(atMicros / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
