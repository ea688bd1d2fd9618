"""``make screenshots``: the web pages' screenshots in docs/screenshots/, regenerated.

Starts what the browser test starts (a nats-server in a temporary folder, the dev model,
an agent with the bundled MCP server, a gateway) and runs ``tests/web/screenshots.mjs``
in headless Chromium against it. The chat's shots are ``chat-*.png``, the replay
debugger's ``debugger-*.png`` (light, dark, phone). ``python -m tests.web.screenshots
[OUT_DIR]``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tests.support.stack import running_stack
from tests.web.browser import HERE, ensure_chromium, ensure_node_modules
from threadline.services.devmodel import DevModelSettings
from threadline.services.runtime.natsserver import EmbeddedNats

OUT = HERE.parent.parent / "docs" / "screenshots"


async def main(out: Path) -> int:
    chromium = ensure_chromium()
    ensure_node_modules()
    node = shutil.which("node")
    if node is None:
        print("node is missing: the screenshots need Node.js 18+", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="threadline-shots-") as tmp:
        nats = EmbeddedNats(Path(tmp) / "nats")
        await nats.start()
        try:
            model = DevModelSettings(ttft_ms=0, tokens_per_second=0)
            async with running_stack(nats.url, Path(tmp) / "data", devmodel=model) as stack:
                env = {
                    **os.environ,
                    "GATEWAY_URL": stack.url,
                    "TOKEN": stack.token,
                    "CHROMIUM": str(chromium),
                    "OUT": str(out),
                }
                proc = await asyncio.create_subprocess_exec(
                    node, str(HERE / "screenshots.mjs"), cwd=HERE, env=env
                )
                code = await proc.wait()
        finally:
            await nats.stop()
    if code == 0:
        print(f"screenshots in {out}")
    return code


if __name__ == "__main__":
    where = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    where.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(where)))
