// The real AI SDK against a Threadline gateway, for tests/aisdk (Python drives it).
//
// node chat.mjs '<json>' where json is
//   {"mode": "send", "api", "token", "chatId", "text", "body"?}
//       useChat's core (AbstractChat + DefaultChatTransport): sendMessage({text})
//   {"mode": "resume", "api", "token", "chatId"}
//       the same chat core, useChat({resume: true}) style: resumeStream()
//   {"mode": "regenerate", "api", "token", "chatId", "messages"}
//       regenerate() the last assistant message of ``messages``
//   {"mode": "stop", "api", "token", "chatId", "text", "cancel": bool}
//       sendMessage({text}), and once answer text shows, stop() and (if ``cancel``)
//       POST <api>/<chatId>/cancel: a durable stop as docs/aisdk.md shows it
//   {"mode": "approve", "api", "token", "chatId", "text", "body"?, "approved", "reason"?,
//    "elsewhere"?: {"approved", "reason"?}}
//       sendMessage({text}) with sendAutomaticallyWhen:
//       lastAssistantMessageIsCompleteWithApprovalResponses; when the answer waits for a
//       tool approval, addToolApprovalResponse({id, approved, reason}) (after, with
//       ``elsewhere``, another client answered it over REST first) and the automatic
//       request that continues the message
//   {"mode": "replay"} with {"name": "<SSE text>", ...} on stdin
//       each stream through DefaultChatTransport's parser (the real zod chunk schema)
//       and readUIMessageStream
// Prints one JSON object on stdout.
import {
  AbstractChat,
  DefaultChatTransport,
  lastAssistantMessageIsCompleteWithApprovalResponses,
  readUIMessageStream,
} from 'ai';

/** A plain ChatState, as @ai-sdk/react's (immutable arrays, structuredClone snapshots). */
class State {
  constructor(messages = [], onChange = () => {}) {
    this.status = 'ready';
    this.error = undefined;
    this.messages = messages;
    this.onChange = onChange;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
    this.onChange(message);
  };
  snapshot = (value) => structuredClone(value);
}

class Chat extends AbstractChat {
  constructor({ messages, onChange, ...init }) {
    super({ ...init, state: new State(messages, onChange) });
  }
}

function chatFor(args, log) {
  const transport = new DefaultChatTransport({
    api: args.api,
    headers: { Authorization: `Bearer ${args.token}` },
    body: args.body ?? {},
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      log.responses.push({
        method: init?.method ?? 'GET',
        url: String(url),
        status: response.status,
        at: Date.now(),
        contentType: response.headers.get('content-type'),
        protocol: response.headers.get('x-vercel-ai-ui-message-stream'),
        session: response.headers.get('x-threadline-session'),
      });
      return response;
    },
  });
  return new Chat({
    id: args.chatId,
    messages: args.messages ?? [],
    onChange: (message) => log.onChange?.(message),
    transport,
    onData: (part) => log.data.push(part),
    onError: (error) => log.errors.push(String(error?.message ?? error)),
    onFinish: ({ finishReason, isAbort, isError, isDisconnect }) => {
      log.finish = { finishReason: finishReason ?? null, isAbort, isError, isDisconnect };
      log.onFinish?.();
    },
    ...(args.mode === 'approve'
      ? { sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses }
      : {}),
  });
}

async function converse(args) {
  const log = { responses: [], data: [], errors: [], finish: null };
  const chat = chatFor(args, log);
  if (args.mode === 'send') {
    await chat.sendMessage({ text: args.text });
  } else if (args.mode === 'approve') {
    await approve(chat, args, log);
  } else if (args.mode === 'regenerate') {
    await chat.regenerate();
  } else if (args.mode === 'stop') {
    const answering = new Promise((resolve) => {
      log.onChange = (m) => m.parts.some((p) => p.type === 'text' && p.text) && resolve();
    });
    const sending = chat.sendMessage({ text: args.text });
    await answering;
    await chat.stop(); // closes the connection only
    if (args.cancel) {
      const url = `${args.api}/${encodeURIComponent(args.chatId)}/cancel`;
      const headers = { Authorization: `Bearer ${args.token}` };
      const response = await fetch(url, { method: 'POST', headers });
      log.cancel = { status: response.status, body: await response.json() };
    }
    await sending;
    delete log.onChange;
  } else {
    await chat.resumeStream();
  }
  return {
    status: chat.status,
    error: chat.error ? String(chat.error.message ?? chat.error) : null,
    messages: chat.messages,
    ...log,
  };
}

async function approve(chat, args, log) {
  await chat.sendMessage({ text: args.text });
  log.paused = { status: chat.status, finish: log.finish, message: chat.lastMessage };
  const part = chat.lastMessage.parts.find((p) => p.state === 'approval-requested');
  if (!part) return;
  if (args.elsewhere) {
    const session = log.responses.at(-1).session;
    const base = args.api.replace(/\/api\/chat$/, '');
    const url = `${base}/v1/sessions/${session}/approvals/${encodeURIComponent(part.approval.id)}`;
    const response = await fetch(url, {
      method: 'POST',
      headers: { Authorization: `Bearer ${args.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(args.elsewhere),
    });
    log.elsewhere = { status: response.status, body: await response.json() };
  }
  const finished = new Promise((resolve) => {
    log.onFinish = resolve;
  });
  await chat.addToolApprovalResponse({
    id: part.approval.id,
    approved: args.approved,
    reason: args.reason,
  });
  await finished;
  delete log.onFinish;
}

async function replay() {
  let input = '';
  for await (const piece of process.stdin) input += piece;
  const transport = new DefaultChatTransport();
  const out = {};
  for (const [name, sse] of Object.entries(JSON.parse(input))) {
    const body = new Response(sse).body;
    const errors = [];
    let message = null;
    try {
      const stream = transport.processResponseStream(body);
      for await (const m of readUIMessageStream({ stream, onError: (e) => errors.push(String(e)) })) {
        message = m;
      }
    } catch (error) {
      errors.push(String(error?.message ?? error));
    }
    out[name] = { message, errors };
  }
  return out;
}

const args = JSON.parse(process.argv[2] ?? '{}');
const result = args.mode === 'replay' ? await replay() : await converse(args);
process.stdout.write(JSON.stringify(result));
