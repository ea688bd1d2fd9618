// The replay debugger's fork diff: a fork side by side with its source, from the fork
// point on. A fork's copies keep their source turn ids (services/commands/fork.py), so
// the turns both sessions hold are the shared history; what follows differs: the
// source's later turns on the left, the fork's own on the right, paired in order, with
// the words that changed marked (<del> on the left, <ins> on the right).
import { el } from './debug-player.js';

// Longer texts are compared as a whole (the word table grows with the product).
const MAX_WORDS = 3000;

// Each turn of a session detail (GET /v1/sessions/{id}): its user message and answer.
export function turnsOf(detail) {
  const byId = new Map();
  for (const turn of detail.turns) {
    byId.set(turn.turn_id, { id: turn.turn_id, status: turn.status, provider: turn.provider, model: turn.model, user: '', answer: '', tools: [] });
  }
  for (const m of detail.messages) {
    const turn = m.turn_id && byId.get(m.turn_id);
    if (!turn) continue;
    if (m.role === 'user') turn.user = m.text;
    else if (m.role === 'assistant') {
      turn.answer += m.text;
      for (const call of m.tool_calls || []) turn.tools.push(call.tool);
    }
  }
  for (const turn of detail.turns) {
    if (turn.status === 'running' && turn.partial_text) byId.get(turn.turn_id).answer += turn.partial_text;
  }
  return Array.from(byId.values());
}

// {shared, left, right}: turns in both, the source's after the fork point, the fork's own.
export function compare(source, fork) {
  const sourceTurns = turnsOf(source);
  const forkTurns = turnsOf(fork);
  const inFork = new Set(forkTurns.map((t) => t.id));
  const inSource = new Set(sourceTurns.map((t) => t.id));
  return {
    shared: forkTurns.filter((t) => inSource.has(t.id)),
    left: sourceTurns.filter((t) => !inFork.has(t.id)),
    right: forkTurns.filter((t) => !inSource.has(t.id)),
  };
}

// The word-level difference between two texts: [{op: 'same'|'del'|'ins', text}].
export function wordDiff(a, b) {
  const x = a.split(/(\s+)/).filter((w) => w !== '');
  const y = b.split(/(\s+)/).filter((w) => w !== '');
  if (x.length * y.length > MAX_WORDS * MAX_WORDS / 4 || x.length > MAX_WORDS || y.length > MAX_WORDS) {
    return a === b ? [{ op: 'same', text: a }] : [{ op: 'del', text: a }, { op: 'ins', text: b }];
  }
  // longest common subsequence, table from the end
  const width = y.length + 1;
  const table = new Uint32Array((x.length + 1) * width);
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      table[i * width + j] = x[i] === y[j]
        ? table[(i + 1) * width + j + 1] + 1
        : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
    }
  }
  const out = [];
  const push = (op, text) => {
    const last = out[out.length - 1];
    if (last && last.op === op) last.text += text;
    else out.push({ op, text });
  };
  let i = 0;
  let j = 0;
  while (i < x.length && j < y.length) {
    if (x[i] === y[j]) { push('same', x[i]); i++; j++; }
    else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) push('del', x[i++]);
    else push('ins', y[j++]);
  }
  while (i < x.length) push('del', x[i++]);
  while (j < y.length) push('ins', y[j++]);
  return out;
}

// One side of a pair, from wordDiff(other, mine): the words both have as text, the
// ones only this side has marked with `tag` (del: the source's, ins: the fork's).
function side(parts, tag) {
  const node = el('div', 'diff-text');
  for (const part of parts) {
    if (part.op === 'same') node.append(document.createTextNode(part.text));
    else if (part.op === 'ins') node.append(el(tag, '', part.text));
  }
  return node;
}

function cell(turn, other, mine) {
  const node = el('div', `diff-cell ${mine === 'del' ? 'source' : 'fork'}`);
  if (!turn) {
    node.classList.add('empty');
    node.append(el('div', 'meta', mine === 'del' ? 'no turn here in the source' : 'no turn here in the fork'));
    return node;
  }
  node.dataset.turn = turn.id;
  node.append(el('div', 'meta', `${turn.status} · ${turn.provider}${turn.model ? '/' + turn.model : ''}${turn.tools.length ? ` · tools: ${turn.tools.join(', ')}` : ''}`));
  const user = el('div', 'bubble user');
  user.append(side(wordDiff(other ? other.user : '', turn.user), mine));
  const answer = el('div', 'answer');
  answer.append(side(wordDiff(other ? other.answer : '', turn.answer), mine));
  node.append(user, answer);
  return node;
}

// Renders the comparison into `root`; `origin` is the fork's forked_from.
export function renderDiff(root, source, fork, origin) {
  const { shared, left, right } = compare(source, fork);
  root.replaceChildren();
  const settings = [];
  if (source.provider !== fork.provider || source.model !== fork.model) {
    settings.push(`model: ${source.provider}/${source.model} → ${fork.provider}/${fork.model}`);
  }
  if (source.system_prompt !== fork.system_prompt) settings.push('system prompt changed');
  const head = el('p', 'meta', `Forked from ${origin.session} at version ${origin.version}: ${shared.length} turn(s) shared; `
    + `after the fork point the source has ${left.length} turn(s), the fork ${right.length}.`
    + (settings.length ? ` Settings: ${settings.join('; ')}.` : ' Same settings.'));
  root.append(head);
  if (shared.length) {
    const details = el('details', 'shared');
    details.append(el('summary', '', `${shared.length} shared turn(s) (copied into the fork)`));
    const list = el('ol', 'plain');
    for (const turn of shared) list.append(el('li', '', turn.user));
    details.append(list);
    root.append(details);
  }
  const grid = el('div', 'diff-grid');
  grid.append(el('div', 'diff-col-head', `Source ${source.id}`), el('div', 'diff-col-head', `Fork ${fork.id}`));
  const rows = Math.max(left.length, right.length);
  for (let i = 0; i < rows; i++) {
    const a = left[i];
    const b = right[i];
    const row = el('div', 'diff-row');
    const same = a && b && a.user === b.user && a.answer === b.answer;
    row.classList.add(same ? 'same' : 'changed');
    row.append(cell(a, b, 'del'), cell(b, a, 'ins'));
    grid.append(row);
  }
  if (!rows) grid.append(el('div', 'meta', 'Nothing after the fork point in either session.'));
  root.append(grid);
}
