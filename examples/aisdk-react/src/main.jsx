// A useChat front end for a Threadline gateway on another origin (see README.md).
//
// Settings come from the page's hash: #gateway=<url>&token=<bearer token>&chat=<id>
// (a new chat id is made when none is given, and kept in the hash so a reload
// resumes the same chat).
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, generateId } from 'ai';
import { useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';

const settings = new URLSearchParams(location.hash.slice(1));
const GATEWAY = settings.get('gateway') ?? 'http://127.0.0.1:8000';
const TOKEN = settings.get('token') ?? '';
if (!settings.get('chat')) {
  settings.set('chat', generateId());
  history.replaceState(null, '', `#${settings}`);
}
const CHAT_ID = settings.get('chat');
const API = `${GATEWAY}/api/chat`;

// A function, so a refreshed token is used by the next request.
const authorization = () => ({ Authorization: `Bearer ${TOKEN}` });

// useChat's stop() only closes the connection; the gateway's cancel ends the turn
// itself (202; 409 when it has ended; 404 for a chat that has not started). An answer's
// message id is its turn's id.
async function cancelTurn(chatId, turnId) {
  const response = await fetch(`${API}/${encodeURIComponent(chatId)}/cancel`, {
    method: 'POST',
    headers: { ...authorization(), 'Content-Type': 'application/json' },
    body: JSON.stringify({ turn_id: turnId }),
  });
  return response.status;
}

function Chat() {
  const transport = useMemo(
    () =>
      new DefaultChatTransport({
        api: API, // resume: GET `${API}/${id}/stream`
        headers: authorization,
        // the gateway keeps the conversation: send only the new message
        prepareSendMessagesRequest: ({ id, messages, trigger, messageId, body }) => ({
          body: { ...body, id, trigger, messageId, messages: messages.slice(-1) },
        }),
      }),
    [],
  );
  const { messages, sendMessage, stop, status, error } = useChat({
    id: CHAT_ID,
    transport,
    resume: true, // a new chat answers 204: nothing to resume
  });
  const [input, setInput] = useState('');
  const [cancelled, setCancelled] = useState('');
  const running = status === 'submitted' || status === 'streaming';
  // The answer's message appears with the stream's first chunk, which the gateway sends
  // once it has stored the question: from then on the cancel finds the turn.
  const answering = running && messages.at(-1)?.role === 'assistant';

  async function stopForGood() {
    const turn = messages.at(-1).id; // the answer on screen
    stop(); // the stream, at once
    setCancelled(String(await cancelTurn(CHAT_ID, turn))); // the turn, for good
  }

  function send(event) {
    event.preventDefault();
    if (!input.trim() || running) return;
    sendMessage({ text: input });
    setInput('');
  }

  return (
    <main data-status={status} data-cancel={cancelled}>
      <h1>Threadline × useChat</h1>
      <ol id="messages">
        {messages.map((message) => (
          <li key={message.id} data-role={message.role} data-id={message.id}>
            <b>{message.role === 'user' ? 'You' : 'Assistant'}: </b>
            <span className="text">
              {message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('')}
            </span>
          </li>
        ))}
      </ol>
      {error && <p id="error">{error.message}</p>}
      <form onSubmit={send}>
        <textarea id="input" value={input} onChange={(e) => setInput(e.target.value)} />
        {running ? (
          <button id="stop" type="button" onClick={stopForGood} disabled={!answering}>
            Stop
          </button>
        ) : (
          <button id="send" type="submit">
            Send
          </button>
        )}
      </form>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<Chat />);
