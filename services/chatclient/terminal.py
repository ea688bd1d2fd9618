"""Lines from stdin without blocking the event loop.

On a terminal or a pipe the loop watches the file descriptor (``loop.add_reader``) and
reads only what is there; stdin redirected from a regular file (which ``epoll`` cannot
watch) is read in a worker thread instead. Either way :meth:`LineReader.readline` is a
coroutine, and :meth:`LineReader.interrupt` wakes it (Ctrl-C at the prompt).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
from typing import Final


class _Interrupted:
    def __repr__(self) -> str:
        return "INTERRUPTED"


#: what :meth:`LineReader.readline` returns after :meth:`LineReader.interrupt`
INTERRUPTED: Final = _Interrupted()
_CHUNK = 65536


class LineReader:
    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self._lines: asyncio.Queue[str | None | _Interrupted] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._watching = False
        self._thread_task: asyncio.Task[None] | None = None
        self.eof = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(self.fd, self._readable)
            self._watching = True
        except (PermissionError, ValueError, OSError):  # a regular file: epoll refuses it
            self._thread_task = asyncio.create_task(self._read_in_thread())

    def close(self) -> None:
        if self._watching:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.fd)
            self._watching = False
        if self._thread_task is not None:
            self._thread_task.cancel()  # a read already under way ends with the process

    async def readline(self) -> str | None | _Interrupted:
        """The next line without its newline; None at end of input; or INTERRUPTED."""
        if self.eof and self._lines.empty():
            return None
        return await self._lines.get()

    def interrupt(self) -> None:
        self._lines.put_nowait(INTERRUPTED)

    def discard_pending(self) -> None:
        """Forget lines typed ahead (after Ctrl-C, as the terminal itself does)."""
        while not self._lines.empty():
            item = self._lines.get_nowait()
            if item is None:
                self._lines.put_nowait(None)
                return

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._feed(data)

    async def _read_in_thread(self) -> None:
        while not self.eof:
            self._feed(await asyncio.to_thread(os.read, self.fd, _CHUNK))

    def _feed(self, data: bytes) -> None:
        if not data:
            self._finish()
            return
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._lines.put_nowait(line.removesuffix("\r"))

    def _finish(self) -> None:
        if self.eof:
            return
        self.eof = True
        if self._watching:
            self.close()
        rest = self._partial + self._decoder.decode(b"", final=True)
        if rest:
            self._lines.put_nowait(rest)
        self._lines.put_nowait(None)
