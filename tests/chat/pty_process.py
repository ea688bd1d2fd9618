"""A child process on a pseudo-terminal, driven like a user at a keyboard.

The child is a session leader with the pty as its controlling terminal, so typing
Ctrl-C (``\\x03``) makes the terminal send it SIGINT and Ctrl-D (``\\x04``) on an empty
line reads as end of input, as in a real terminal. Output is read without blocking the
event loop (``loop.add_reader`` on the master side).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import sys
import time

# makes the pty the controlling terminal of the new session, then runs the command
_LAUNCH = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


class PtyProcess:
    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc = proc
        self.master = master
        self.output = ""
        self.cursor = 0  # expect() searches from here
        #: (time, text) of each read, to see output arrive piece by piece
        self.chunks: list[tuple[float, str]] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._changed = asyncio.Event()
        self.closed = False
        asyncio.get_running_loop().add_reader(master, self._readable)

    @classmethod
    async def spawn(cls, argv: list[str], *, env: dict[str, str], cwd: str) -> PtyProcess:
        master, slave = os.openpty()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _LAUNCH, *argv,
                stdin=slave, stdout=slave, stderr=slave,
                env=env, cwd=cwd, start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(slave)
        return cls(proc, master)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            self.closed = True
        else:
            text = self._decoder.decode(data)
            self.output += text
            self.chunks.append((time.monotonic(), text))
        self._changed.set()

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, pattern: str, wait_s: float = 20) -> re.Match[str]:
        """The first match of ``pattern`` after the previous match; waits for it."""
        regex = re.compile(pattern)
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    found = regex.search(self.output, self.cursor)
                    if found:
                        self.cursor = found.end()
                        return found
                    if self.closed:
                        break
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        raise AssertionError(
            f"{pattern!r} not seen; output after the last match:\n{self.output[self.cursor :]}"
        )

    async def wait(self, wait_s: float = 20) -> int:
        return await asyncio.wait_for(self.proc.wait(), wait_s)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if not self.closed:
            asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
