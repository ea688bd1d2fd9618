// The chat of one session: a fold of its events (replayed from the start, then live), so
// every tab on a session shows the same thing. Answers render as markdown as they stream.
//
// Following the answer: whether the view follows is decided by the reader's scrolling
// (scrolled up: stop; back at the bottom: follow again), never measured after content
// was added, so a tall new block cannot break it. While not following, new content
// shows the "jump to latest" control.
'use strict';

import { decisionText, el, failureText, fallbackText, renderMarkdown, seconds, shorten } from './chat-render.js';

const ENDED = ['completed', 'failed', 'cancelled'];

export class ChatView {
  // actions: { retry(turnId, button), edit(turn, text), jump(visible),
  //   decide(callId, approved, reason): '' when recorded, a quiet note when someone else
  //   decided first, null after an error the page showed }
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.turns = new Map();
    this.dirty = new Set(); // steps whose markdown is due
    this.frame = 0;
    this.follow = true;
    this.lastTop = 0;
    this.branches = []; // sessions forked from this one: {id, title, forked_version}
    this.onScroll = () => this.scrolled();
    root.addEventListener('scroll', this.onScroll, { passive: true });
  }

  close() {
    this.root.removeEventListener('scroll', this.onScroll);
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  busy() {
    for (const turn of this.turns.values()) if (!ENDED.includes(turn.status)) return true;
    return false;
  }

  // ---------------------------------------------------------------- following

  scrolled() {
    const root = this.root;
    const gap = root.scrollHeight - root.scrollTop - root.clientHeight;
    if (gap <= 24) this.follow = true;
    else if (root.scrollTop < this.lastTop - 1) this.follow = false; // the reader went up
    this.lastTop = root.scrollTop;
    if (this.follow) this.actions.jump(false);
  }

  // Follow the answer again from here (a message sent, "jump to latest").
  toBottom() {
    this.follow = true;
    this.actions.jump(false);
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const step of this.dirty) renderMarkdown(step.text, step.raw);
      this.dirty.clear();
      if (this.follow) {
        this.root.scrollTop = this.root.scrollHeight;
        this.lastTop = this.root.scrollTop;
      } else {
        this.actions.jump(true);
      }
    });
  }

  // ---------------------------------------------------------------- turns

  turn(id) {
    let turn = this.turns.get(id);
    if (turn) return turn;
    const node = el('article', 'turn');
    node.dataset.turn = id;
    const ask = el('div', 'ask');
    const user = el('div', 'bubble user');
    const tools = el('div', 'ask-tools');
    const edit = el('button', 'edit link', 'Edit');
    edit.type = 'button';
    edit.title = 'Edit and send again, as a new branch of this chat';
    edit.addEventListener('click', () => this.startEdit(turn));
    tools.append(edit);
    ask.append(user, tools);
    const answer = el('div', 'assistant');
    const status = el('div', 'status');
    node.append(ask, answer, status);
    this.root.append(node);
    turn = { id, node, ask, user, tools, answer, statusNode: status, attempt: 0, steps: new Map(), calls: new Map(), notes: new Map(), status: '', text: '', version: 0 };
    this.turns.set(id, turn);
    this.setStatus(turn, 'pending', 'Waiting for the model…');
    return turn;
  }

  setStatus(turn, status, text) {
    turn.status = status;
    turn.node.dataset.status = status;
    turn.statusNode.replaceChildren(el('span', 'status-text', text));
  }

  step(turn, n) {
    let step = turn.steps.get(n);
    if (!step) {
      const node = el('div', 'step');
      node.dataset.step = String(n);
      const text = el('div', 'answer markdown');
      node.append(text);
      turn.answer.append(node);
      step = { node, text, raw: '', reasoning: null };
      turn.steps.set(n, step);
    }
    return step;
  }

  write(step, raw) {
    step.raw = raw;
    this.dirty.add(step);
  }

  // One note per kind per turn, its words updated (a retry is told once, counted).
  note(turn, key, className, text) {
    let note = turn.notes.get(key);
    if (!note) {
      note = el('div', `note ${className}`);
      turn.notes.set(key, note);
      turn.answer.prepend(note);
    }
    note.textContent = text;
    note.count = (note.count || 0) + 1;
    return note;
  }

  newAttempt(turn) {
    turn.answer.replaceChildren(...turn.notes.values());
    turn.steps.clear();
    turn.calls.clear();
  }

  apply(env) {
    const e = env.event;
    if (!env.turn) return;
    const turn = this.turn(env.turn);
    if (env.attempt && env.attempt < turn.attempt) return; // a superseded attempt
    this.applyToTurn(turn, env, e);
    this.schedule();
  }

  applyToTurn(turn, env, e) {
    switch (e.kind) {
      case 'user_message':
        turn.user.textContent = e.text;
        turn.text = e.text;
        turn.version = env.version;
        this.showBranches(turn);
        break;
      case 'turn_started':
        if (turn.attempt > 0 && e.attempt > turn.attempt) this.newAttempt(turn);
        turn.attempt = e.attempt;
        this.setStatus(turn, 'running', 'Answering…');
        break;
      case 'text_delta': {
        const step = this.step(turn, e.step);
        this.write(step, step.raw + e.text);
        break;
      }
      case 'reasoning_delta': this.reasoning(turn, e); break;
      case 'tool_call': this.toolCall(turn, e); break;
      case 'tool_result': this.toolResult(turn, e); break;
      case 'approval_requested': this.approvalRequested(turn, e); break;
      case 'approval_granted': case 'approval_denied': this.approvalDecided(turn, env, e); break;
      case 'assistant_message':
        if (e.text) this.write(this.step(turn, e.step), e.text);
        break;
      case 'fallback': {
        const note = turn.notes.get(e.fallback);
        this.note(turn, e.fallback, 'fallback', fallbackText(e, (note ? note.count : 0) + 1));
        break;
      }
      case 'cancel_requested':
        if (!ENDED.includes(turn.status)) this.setStatus(turn, turn.status, 'Stopping…');
        break;
      case 'context_trimmed':
        if (e.turns) this.note(turn, 'context', 'context', `The oldest ${e.turns} turns were left out of what the model saw (the conversation is long).`);
        break;
      case 'turn_completed': this.completed(turn, e); break;
      case 'turn_failed': this.failed(turn, e); break;
      case 'turn_cancelled':
        this.closeApprovals(turn);
        this.setStatus(turn, 'cancelled', e.reason ? `Stopped (${e.reason}).` : 'Stopped.');
        break;
      default:
        break;
    }
  }

  reasoning(turn, e) {
    const step = this.step(turn, e.step);
    if (!step.reasoning) {
      const details = el('details', 'reasoning');
      details.append(el('summary', '', 'Thinking'));
      step.reasoning = el('div', 'reasoning-text');
      details.append(step.reasoning);
      step.node.prepend(details);
    }
    step.reasoning.append(e.text);
  }

  toolCall(turn, e) {
    const card = el('details', 'tool-call');
    const head = el('summary', 'tool-head');
    head.append(el('span', 'tool-name', e.tool), el('span', 'tool-state', 'running…'));
    card.append(head, el('code', 'tool-args', JSON.stringify(e.arguments)));
    const result = el('div', 'tool-result pending', 'running…');
    card.append(result);
    this.step(turn, e.step).node.append(card);
    turn.calls.set(e.call_id, { card, result, state: head.lastChild });
  }

  toolResult(turn, e) {
    let call = turn.calls.get(e.call_id);
    if (!call) {
      const result = el('div', 'tool-result');
      this.step(turn, e.step).node.append(result);
      call = { card: null, result, state: null };
    }
    call.result.className = e.is_error ? 'tool-result error' : 'tool-result';
    call.result.textContent = shorten(e.content, 4000);
    if (call.state) call.state.textContent = `${call.denied ? 'denied' : e.is_error ? 'failed' : 'done'}${e.duration_ms ? ` · ${seconds(e.duration_ms)}` : ''}`;
    if (call.card) call.card.classList.toggle('error', e.is_error);
  }

  // ---------------------------------------------------------------- approvals

  // A call that waits for a person: Approve / Deny on its card, in every tab on the
  // session (the events come to each over its stream); the decision event removes them.
  approvalRequested(turn, e) {
    if (!turn.calls.has(e.call_id)) this.toolCall(turn, e);
    const call = turn.calls.get(e.call_id);
    if (call.decided || call.approval) return;
    call.card.open = true;
    call.card.classList.add('waiting');
    call.state.textContent = 'waits for approval';
    call.result.textContent = 'waiting for approval…';
    const box = el('div', 'approval');
    const approve = el('button', 'approve', 'Approve');
    const deny = el('button', 'deny secondary', 'Deny');
    approve.type = 'button';
    deny.type = 'button';
    approve.addEventListener('click', () => this.decide(call, e.call_id, true, '', [approve, deny]));
    deny.addEventListener('click', () => this.askReason(call, e.call_id, box));
    box.append(approve, deny);
    call.card.append(box);
    call.approval = box;
    if (turn.status === 'running') this.setStatus(turn, 'running', 'Waiting for approval…');
  }

  // Deny asks for an optional reason, told to the model with the denial.
  askReason(call, callId, box) {
    const form = el('form', 'deny-form');
    const reason = el('input', 'deny-reason');
    reason.placeholder = 'Why not? (optional, the model is told)';
    reason.maxLength = 2000;
    const send = el('button', 'deny-send', 'Deny');
    send.type = 'submit';
    const cancel = el('button', 'secondary', 'Cancel');
    cancel.type = 'button';
    form.append(reason, send, cancel);
    const buttons = Array.from(box.children);
    for (const b of buttons) b.hidden = true;
    box.append(form);
    cancel.addEventListener('click', () => { form.remove(); for (const b of buttons) b.hidden = false; });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.decide(call, callId, false, reason.value.trim(), [send, cancel, reason]);
    });
    reason.focus();
  }

  async decide(call, callId, approved, reason, controls) {
    for (const c of controls) c.disabled = true;
    const note = await this.actions.decide(callId, approved, reason);
    if (note === null) for (const c of controls) c.disabled = false;
    if (note && !call.decided) call.card.append(el('div', 'approval-note', note));
  }

  approvalDecided(turn, env, e) {
    const call = turn.calls.get(e.call_id);
    if (!call || call.decided) return;
    call.decided = true;
    call.denied = e.kind === 'approval_denied';
    if (call.approval) call.approval.remove();
    call.approval = null;
    for (const note of call.card.querySelectorAll('.approval-note')) note.remove();
    call.card.classList.remove('waiting');
    call.card.append(el('div', `approval-decision ${call.denied ? 'denied' : 'granted'}`, decisionText(e, env.actor)));
    call.state.textContent = call.denied ? 'denied' : 'approved · running…';
    call.result.textContent = call.denied ? 'not run' : 'running…';
    if (turn.status === 'running') this.setStatus(turn, 'running', 'Answering…');
  }

  // A turn stopped while a call waited: nothing is left to decide.
  closeApprovals(turn) {
    for (const call of turn.calls.values()) {
      if (!call.approval) continue;
      call.approval.remove();
      call.approval = null;
      call.card.classList.remove('waiting');
      call.state.textContent = 'not run';
      call.result.textContent = 'not run: the turn was stopped';
    }
  }

  completed(turn, e) {
    const u = e.usage || {};
    const parts = [seconds(e.duration_ms)];
    if (e.ttft_ms !== null && e.ttft_ms !== undefined) parts.push(`first word after ${seconds(e.ttft_ms)}`);
    parts.push(`${(u.input_tokens || 0) + (u.output_tokens || 0)} tokens`);
    this.setStatus(turn, 'completed', parts.join(' · '));
    turn.statusNode.title = `${u.input_tokens || 0} in / ${u.output_tokens || 0} out tokens`;
  }

  failed(turn, e) {
    this.setStatus(turn, 'failed', failureText(e.error));
    const retry = el('button', 'retry', 'Retry');
    retry.type = 'button';
    retry.addEventListener('click', () => this.actions.retry(turn.id, retry));
    const details = el('details', 'error-details');
    details.append(el('summary', '', 'Details'), el('div', 'error-message', `${e.error}: ${e.message}`));
    turn.statusNode.append(retry, details);
  }

  // ---------------------------------------------------------------- edit and branches

  startEdit(turn) {
    if (turn.node.querySelector('.edit-form')) return;
    const form = el('form', 'edit-form');
    const box = el('textarea', 'edit-text');
    box.value = turn.text;
    box.rows = Math.min(8, turn.text.split('\n').length + 1);
    const send = el('button', '', 'Send as a new branch');
    send.type = 'submit';
    const cancel = el('button', 'secondary', 'Cancel');
    cancel.type = 'button';
    const buttons = el('div', 'edit-buttons');
    buttons.append(cancel, send);
    form.append(box, buttons);
    turn.ask.after(form);
    turn.ask.hidden = true;
    const close = () => { form.remove(); turn.ask.hidden = false; };
    cancel.addEventListener('click', close);
    box.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') { event.stopPropagation(); close(); }
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!box.value.trim()) return;
      send.disabled = true;
      if (!(await this.actions.edit(turn, box.value))) send.disabled = false;
    });
    box.focus();
  }

  // The sessions forked from this one just before a turn's message: its edits.
  setBranches(branches) {
    this.branches = branches;
    for (const turn of this.turns.values()) this.showBranches(turn);
  }

  showBranches(turn) {
    for (const old of turn.tools.querySelectorAll('.branch')) old.remove();
    for (const branch of this.branches) {
      if (!turn.version || branch.forked_version !== turn.version - 1) continue;
      const link = el('a', 'branch', `Edited in “${branch.title}”`);
      link.href = `#session=${encodeURIComponent(branch.id)}`;
      turn.tools.prepend(link);
    }
  }
}
