// The AI SDK peer of the Threadline benchmark: a chat route as the AI SDK documents it
// for resumable streams ("Chatbot resume streams"), served by node:http instead of Next.js.
//
//   POST /api/chat {id, message}   the chat's messages are kept in Redis; the dev model's
//                                  answer is streamed with streamText(...)
//                                  .toUIMessageStreamResponse(), a copy of the SSE stream
//                                  goes into a resumable stream (resumable-stream + Redis)
//                                  and the finished messages are saved in onFinish
//   GET /api/chat/:id/stream       resume the chat's active stream (204 if none)
//
// Environment: DEV_MODEL_URL (OpenAI-compatible base URL, ending in /v1), REDIS_URL, PORT.
// Prints "aisdk peer on http://127.0.0.1:PORT" once Redis is connected and it listens.

import http from "node:http";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import {
  UI_MESSAGE_STREAM_HEADERS,
  convertToModelMessages,
  generateId,
  streamText,
} from "ai";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const model = createOpenAICompatible({
  name: "dev",
  baseURL: process.env.DEV_MODEL_URL,
  apiKey: "bench",
}).chatModel("threadline-dev");

const publisher = createClient({ url: process.env.REDIS_URL });
const subscriber = publisher.duplicate();
const streamContext = createResumableStreamContext({
  waitUntil: null, // a long-lived server: nothing to keep alive
  publisher,
  subscriber,
});

async function loadChat(id) {
  const saved = await publisher.get(`chat:${id}:messages`);
  return saved ? JSON.parse(saved) : [];
}

async function postChat(body) {
  const { id, message } = body;
  const messages = [...(await loadChat(id)), message];
  await publisher.set(`chat:${id}:messages`, JSON.stringify(messages));
  const result = streamText({ model, messages: await convertToModelMessages(messages) });
  return result.toUIMessageStreamResponse({
    originalMessages: messages,
    generateMessageId: generateId,
    onFinish: async ({ messages: finished }) => {
      await publisher.set(`chat:${id}:messages`, JSON.stringify(finished));
      await publisher.del(`chat:${id}:stream`);
    },
    consumeSseStream: async ({ stream }) => {
      const streamId = generateId();
      await streamContext.createNewResumableStream(streamId, () => stream);
      await publisher.set(`chat:${id}:stream`, streamId);
    },
  });
}

async function resumeChat(id) {
  const streamId = await publisher.get(`chat:${id}:stream`);
  const stream = streamId ? await streamContext.resumeExistingStream(streamId) : null;
  if (!stream) return new Response(null, { status: 204 });
  return new Response(stream.pipeThrough(new TextEncoderStream()), {
    headers: UI_MESSAGE_STREAM_HEADERS,
  });
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function route(req) {
  const url = new URL(req.url, "http://peer");
  if (req.method === "POST" && url.pathname === "/api/chat") return postChat(await readJson(req));
  const resume = url.pathname.match(/^\/api\/chat\/([^/]+)\/stream$/);
  if (req.method === "GET" && resume) return resumeChat(decodeURIComponent(resume[1]));
  return new Response("not found", { status: 404 });
}

// a Web Response onto node's ServerResponse, chunk by chunk, stopping if the client goes
async function send(response, res) {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) return res.end();
  const reader = response.body.getReader();
  res.on("close", () => reader.cancel().catch(() => {}));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    res.write(value);
  }
  res.end();
}

const server = http.createServer((req, res) => {
  route(req)
    .then((response) => send(response, res))
    .catch((error) => {
      console.error(error);
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(error));
    });
});
server.keepAliveTimeout = 60_000;

await Promise.all([publisher.connect(), subscriber.connect()]);
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  console.log(`aisdk peer on http://127.0.0.1:${server.address().port}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    Promise.allSettled([publisher.quit(), subscriber.quit()]).then(() => process.exit(0));
  });
}
