"""The README's "Try it" runs verbatim after ``make up``: its shell block, against a
``threadline up`` started as ``make up`` starts it (no token configured, the data dir
``./.threadline`` of the directory it runs in), on a free port instead of 8000."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from tests.services.test_up import start_up

README = Path(__file__).parents[2] / "README.md"


def try_it_blocks() -> list[str]:
    section = README.read_text().split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


async def test_the_readme_try_it_runs_verbatim_after_make_up(tmp_path: Path) -> None:
    start, commands = try_it_blocks()
    assert start.strip() == "make up"  # which runs `.venv/bin/threadline up`
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    proc, banner = await start_up(tmp_path / ".threadline", cwd=tmp_path)
    try:
        url = json.loads((tmp_path / ".threadline/runtime.json").read_text())["gateway_url"]
        port = url.rsplit(":", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        shell = await asyncio.create_subprocess_exec(
            "bash", "-c", commands.replace("localhost:8000", f"localhost:{port}"),
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(shell.communicate(), 120)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert shell.returncode == 0 and err.decode() == "", (text, err.decode())
    assert '"turn":' in text  # the message was accepted
    # both watches saw the turn end; the resumed one started after position 5
    assert text.count("event: turn_completed") == 2 and text.count("id: 5\n") == 1
    assert '"text":"Tool threadline__add returned: 5"' in text  # the history
    assert re.search(r"session \w+: OK, \d+ events", text)  # verify
    assert "COMPLETED" in text  # replay
