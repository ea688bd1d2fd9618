"""The chat loop: prompt, send, stream the answer, Ctrl-C stops the turn, ``/retry``
asks the latest turn's question again (the way past a failed turn).

One task follows the session's events for the whole chat (so answers, other clients'
messages and turns show up as they happen) and records which turns have ended. The
main loop reads a line, posts it, and waits for that turn's terminal event. Ctrl-C
while a turn runs asks the gateway to cancel it (a second Ctrl-C stops waiting); at
the prompt Ctrl-C, like Ctrl-D, ends the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid

from threadline.events import schema as ev
from threadline.services.chatclient.client import ChatError, GatewayClient
from threadline.services.chatclient.render import Renderer
from threadline.services.chatclient.terminal import LineReader
from threadline.services.gateway.models import SessionDetail

QUIT_COMMANDS = frozenset({"/quit", "/exit"})
RETRY_COMMAND = "/retry"


class Chat:
    def __init__(
        self, client: GatewayClient, session: str, out: Renderer, lines: LineReader
    ) -> None:
        self.client = client
        self.session = session
        self.out = out
        self.lines = lines
        self.ended: set[str] = set()
        self._changed = asyncio.Event()
        self._mine: set[str] = set()  # client_message_ids sent from here
        self._waiting_for: str | None = None
        self._cancel_sent = False
        self._stop_waiting = False
        self._follow_error: ChatError | None = None
        self._prompting = False
        self._sending = False
        self._early_interrupt = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: tool calls waiting for a decision, to ask about at the next chance
        self._asked: dict[str, ev.ApprovalRequested] = {}
        #: input from a pipe or file is not echoed by a terminal: show it
        self._echo = not os.isatty(lines.fd)

    async def run(self, detail: SessionDetail) -> int:
        """Show the history, then chat until Ctrl-D, Ctrl-C at the prompt or ``/quit``."""
        self.out.header(detail)
        self.out.history(detail)
        self.ended |= {t.turn_id for t in detail.turns if t.status not in ("pending", "running")}
        unfinished = [t.turn_id for t in detail.turns if t.turn_id not in self.ended]
        self._asked |= {  # calls that waited for a decision when we joined
            a.call_id: ev.ApprovalRequested(call_id=a.call_id, tool=a.tool, arguments=a.arguments)
            for t in detail.turns
            for a in t.approvals
            if a.status == "waiting"
        }
        loop = asyncio.get_running_loop()
        follower = asyncio.create_task(self._follow(detail.position))
        loop.add_signal_handler(signal.SIGINT, self._on_interrupt)
        self.lines.start()
        try:
            for turn in unfinished:  # a turn running when we joined: watch it end
                await self._wait(turn)
            self.out.note(
                "Type a message; Ctrl-C stops a running answer; /retry asks the last "
                "question again; Ctrl-D quits."
            )
            while self._follow_error is None:
                self.out.prompt()
                line = await self._read()
                if line is None:
                    self.out.end_line()
                    if self.out.at_prompt:
                        self.out.write("\n")
                    break
                self.out.input_done()
                text = line.strip()
                if text in QUIT_COMMANDS:
                    break
                if text == RETRY_COMMAND:
                    await self._turn(None)
                elif text:
                    await self._turn(line)
            if self._follow_error is not None:
                self.out.error(str(self._follow_error))
                return 1
            return 0
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            self.lines.close()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _turn(self, text: str | None) -> None:
        """Send ``text`` (None: retry the latest turn) and wait for its answer."""
        message_id = uuid.uuid4().hex
        self._mine.add(message_id)
        self._sending, self._early_interrupt = True, False
        try:
            if text is None:
                self.out.line("  ↻ asking the last question again", "33")
                accepted = await self.client.retry(self.session)
            else:
                accepted = await self.client.send(self.session, text, message_id)
        except ChatError as exc:
            self.out.error(str(exc))
            return
        finally:
            self._sending = False
        await self._wait(accepted.turn_id, cancel=self._early_interrupt)

    async def _wait(self, turn: str, *, cancel: bool = False) -> None:
        """Until ``turn`` ends (or a second Ctrl-C, or the stream fails)."""
        self._waiting_for, self._cancel_sent, self._stop_waiting = turn, False, False
        if cancel:  # Ctrl-C came while the message was being sent
            self._start_cancel(turn)
        try:
            while turn not in self.ended and not self._stop_waiting:
                if self._follow_error is not None:
                    return
                if self._asked:
                    await self._ask(self._asked.pop(next(iter(self._asked))))
                    continue
                self._changed.clear()
                await self._changed.wait()
        finally:
            self._waiting_for = None
        self.out.end_line()

    async def _read(self) -> str | None:
        """A line typed at the prompt (echoed when it came from a pipe or file); None at
        the end of input or on Ctrl-C."""
        self._prompting = True
        line = await self.lines.readline()
        self._prompting = False
        if not isinstance(line, str):
            return None
        if self._echo:
            self.out.write(line + "\n")
        return line

    async def _ask(self, asked: ev.ApprovalRequested) -> None:
        """Ask at the prompt whether the call may run: ``y``, else denied (the rest of the
        line is the reason given); another client may have decided first."""
        args = json.dumps(asked.arguments, ensure_ascii=False)
        self.out.end_line()
        self.out.write(f"  ? run {asked.tool} {args}? [y/N, or n and a reason] ")
        line = await self._read()
        if line is None:  # Ctrl-C or end of input: leave it waiting
            self.out.write("\n")
            return
        answer = line.strip()
        approved = answer.lower() in ("y", "yes")
        reason = "" if approved else answer.partition(" ")[2].strip()
        try:
            await self.client.decide(self.session, asked.call_id, approved, reason)
        except ChatError as exc:
            self.out.note(f"  ({exc})")

    def _on_interrupt(self) -> None:
        turn = self._waiting_for
        if self._sending:
            self._early_interrupt = True  # cancel as soon as the turn has an id
            self.lines.discard_pending()
            return
        if turn is None:
            self.lines.interrupt()  # at the prompt: quit
            return
        self.lines.discard_pending()
        if not self._cancel_sent:
            self._start_cancel(turn)
        else:
            self.out.line("  no longer waiting; the turn may still finish", "33")
            self._stop_waiting = True
            self._changed.set()

    def _start_cancel(self, turn: str) -> None:
        self._cancel_sent = True
        self.out.line("  stopping the answer… (Ctrl-C again to stop waiting)", "33")
        task = asyncio.create_task(self._cancel(turn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, turn: str) -> None:
        try:
            await self.client.cancel(self.session, turn, reason="stopped from threadline chat")
        except ChatError as exc:
            self.out.error(f"could not stop the turn: {exc}")

    async def _follow(self, after: int) -> None:
        try:
            async for _, env in self.client.follow(self.session, after):
                mine = isinstance(env.event, ev.UserMessage) and (
                    env.event.client_message_id in self._mine
                )
                self.out.event(env, mine=mine)
                if isinstance(env.event, ev.ApprovalRequested):
                    self._asked[env.event.call_id] = env.event
                elif isinstance(env.event, ev.ApprovalGranted | ev.ApprovalDenied):
                    self._asked.pop(env.event.call_id, None)  # decided (maybe elsewhere)
                if ev.kind_of(env.event) in ev.TERMINAL_KINDS and env.turn is not None:
                    self.ended.add(env.turn)
                    if self._prompting and not self.out.at_prompt:
                        self.out.prompt()  # another client's turn ended while we waited
                self._changed.set()
        except ChatError as exc:
            self._follow_error = exc
        except Exception as exc:  # never leave the prompt waiting on a dead stream
            self._follow_error = ChatError(f"the event stream failed: {exc!r}")
        self._changed.set()
        self.lines.interrupt()
