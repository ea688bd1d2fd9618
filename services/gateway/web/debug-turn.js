// The replay debugger's view of one turn: its cost, the model requests of its attempts
// (provider, model, parameters, the context sent), and its events with their times and
// readable summaries. Everything is inserted as text.
import { shorten } from './chat-render.js';
import { el, json, ms } from './debug-player.js';

export { shorten };

export function tokens(usage) {
  if (!usage) return '–';
  const u = { input_tokens: 0, output_tokens: 0, reasoning_tokens: 0, cached_input_tokens: 0, ...usage };
  let text = `${u.input_tokens} in / ${u.output_tokens} out`;
  if (u.reasoning_tokens) text += ` (${u.reasoning_tokens} reasoning)`;
  if (u.cached_input_tokens) text += ` · ${u.cached_input_tokens} cached`;
  return text;
}

// A <dl>'s items: one <div> per name and value, so a grid keeps them together.
export function pairs(rows) {
  return rows.map(([name, value]) => {
    const item = el('div');
    item.append(el('dt', '', name), el('dd', '', value));
    return item;
  });
}

// One line about an event, for people.
export function summary(env) {
  const e = env.event;
  switch (e.kind) {
    case 'user_message': return e.text;
    case 'turn_started': return `attempt ${e.attempt} · ${e.provider}${e.model ? '/' + e.model : ''}${e.worker ? ` · worker ${e.worker}` : ''}`;
    case 'text_delta': case 'reasoning_delta': return json(e.text);
    case 'tool_call': return `${e.tool}(${json(e.arguments || {})})`;
    case 'tool_progress': return `${e.call_id}: ${e.progress}${e.total ? ` of ${e.total}` : ''}${e.message ? ` · ${e.message}` : ''}`;
    case 'tool_result': return `${e.tool || e.call_id} ${e.is_error ? '✗' : '→'} ${shorten(e.content || '', 300)} (${ms(e.duration_ms || 0)})`;
    case 'fallback': return `${e.fallback}${e.from || e.to ? ` ${e.from || ''} → ${e.to || ''}` : ''}: ${e.reason || ''}`;
    case 'assistant_message': return `step ${e.step || 0} · ${e.finish_reason || 'stop'} · ${tokens(e.usage)}${e.tool_calls && e.tool_calls.length ? ` · ${e.tool_calls.length} tool call(s)` : ''}${e.text ? ` · ${shorten(e.text, 200)}` : ''}`;
    case 'context_trimmed': return e.turns
      ? `left out the oldest ${e.turns} turns (${e.messages} messages) through version ${e.through_version || 0} · ~${e.estimated_tokens || 0} of ${e.budget_tokens || 0} tokens (window ${e.context_tokens || 0})${e.refused ? ' · after a "context too long"' : ''}`
      : 'the whole conversation is sent again';
    case 'turn_completed': return `${ms(e.duration_ms || 0)} · TTFT ${ms(e.ttft_ms)} · ${tokens(e.usage)} · ${e.steps || 1} step(s)`;
    case 'turn_failed': return `${e.error}: ${e.message}${e.retryable ? ' (retryable)' : ''}`;
    case 'cancel_requested': return `${e.reason || 'stop asked'}${e.rollback ? ' · rollback: the turn leaves the model\'s context' : ''}`;
    case 'approval_requested': return `${e.call_id} ${e.tool}(${json(e.arguments || {})}) waits for approval`;
    case 'approval_granted': return `${e.call_id} approved by ${env.actor}${e.reason ? `: ${e.reason}` : ''}`;
    case 'approval_denied': return `${e.call_id} denied by ${env.actor}${e.expired ? ' (deadline)' : ''}${e.reason ? `: ${e.reason}` : ''}`;
    case 'turn_cancelled': return `${e.reason || 'cancelled'}${e.partial_text ? ` · ${e.partial_text.length} characters kept` : ''}`;
    default: { // a kind this page does not know yet: its fields
      const { kind, ...fields } = e;
      return shorten(json(fields), 300);
    }
  }
}

export function renderTurnHead(head, turn) {
  const t = turn.detail;
  head.dataset.turn = turn.id;
  if (!turn.n) {
    head.replaceChildren(el('h2', '', 'Session events'), el('p', 'meta', 'What happened to the session outside its turns.'));
    return;
  }
  head.replaceChildren(el('h2', '', `Turn ${turn.n} · ${t.status}`));
  const cost = el('dl', 'totals');
  const rows = [
    ['provider', `${t.provider}${t.model ? '/' + t.model : ''}`],
    ['tokens', tokens(t.usage)],
    ['latency', t.duration_ms !== null && t.duration_ms !== undefined ? ms(t.duration_ms) : '–'],
    ['TTFT', ms(t.ttft_ms)],
    ['attempt', String(t.attempt)],
  ];
  if (t.error) rows.push(['error', t.error]);
  cost.append(...pairs(rows));
  head.append(cost);
}

// What each attempt asked the model: provider, model, parameters, the context it was sent.
export function renderRequests(root, turn, d) {
  root.replaceChildren();
  if (!turn.n) return;
  root.append(el('h3', '', 'Model requests'));
  const params = Object.entries(d.params || {}).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(', ') || 'provider defaults';
  const starts = turn.records.filter((r) => r.env.event.kind === 'turn_started');
  if (!starts.length) root.append(el('p', 'meta', 'No attempt started (the turn never reached an agent).'));
  for (const start of starts) {
    const e = start.env.event;
    const counts = e.attempt === turn.detail.attempt;
    const box = el('div', `attempt${counts ? '' : ' superseded'}`);
    box.append(el('div', 'attempt-head', `attempt ${e.attempt}${counts ? '' : ' (superseded)'} · ${e.provider}${e.model ? '/' + e.model : ''}${e.worker ? ` · worker ${e.worker}` : ''}`));
    box.append(el('div', 'meta', `parameters: ${params} · system prompt: ${d.system_prompt ? `${d.system_prompt.length} characters` : 'none'} · tools: ${d.tool_servers.join(', ') || 'none'}`));
    const mine = turn.records.filter((r) => r.env.attempt === e.attempt);
    const first = mine.find((r) => r.env.event.kind === 'text_delta' || r.env.event.kind === 'reasoning_delta');
    if (first) box.append(el('div', 'meta', `first token ${ms((first.env.at - start.env.at) / 1000)} after the start`));
    const cuts = mine.filter((r) => r.env.event.kind === 'context_trimmed');
    for (const cut of cuts) box.append(el('div', 'context', `context from step ${cut.env.event.step || 0}: ${summary(cut.env)}`));
    if (!cuts.length) {
      const cut = counts ? turn.detail.context : null;
      box.append(el('div', 'context', cut
        ? `context: the oldest ${cut.turns} turns (${cut.messages} messages, through version ${cut.through_version}) left out, a cut made before this turn`
        : 'context: the whole conversation'));
    }
    root.append(box);
  }
}

// Every event of the turn (all attempts, in log order); onPick(index, position) on a click.
export function renderSteps(list, turn, chain, onPick) {
  list.replaceChildren();
  const first = turn.records.length ? turn.records[0].env.at : 0;
  let previous = first;
  turn.records.forEach((rec, i) => {
    const env = rec.env;
    const item = el('li', `ev k-${env.event.kind}`);
    item.dataset.position = String(rec.position);
    item.dataset.index = String(i);
    if (env.attempt && env.attempt < turn.detail.attempt) item.classList.add('superseded');
    if (env.copied_from) item.classList.add('copied');
    if (chain && !chain.ok && chain.problems.some((p) => p.position === rec.position)) item.classList.add('broken');
    const button = el('button', 'ev-button');
    button.type = 'button';
    button.append(
      el('span', 'pos', rec.position),
      el('span', 'offset', `+${((env.at - first) / 1e6).toFixed(3)} s`),
      el('span', 'gap', i ? `Δ ${ms((env.at - previous) / 1000)}` : ''),
      el('span', 'kind', env.event.kind),
      el('span', 'sum', summary(env)),
    );
    previous = env.at;
    button.addEventListener('click', () => onPick(i, rec.position));
    item.append(button);
    list.append(item);
  });
}
