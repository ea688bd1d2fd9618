"""Install the peers into the cache directory on first use (and again when their pinned
versions change): a stamp file beside each install names what was installed."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
from pathlib import Path

from bench.common import progress
from bench.peers import CACHE

#: the newest LiteLLM whose ``proxy`` extra resolves from the package registry this
#: project uses (1.108.10 and later pin ``litellm-enterprise``/``litellm-proxy-extras``
#: builds it does not carry)
LITELLM = "litellm[proxy]==1.108.7"
#: the AI SDK server's sources and pins (``ai`` 6: ``ai`` 7 needs Node 22, the machines
#: have Node 20)
AISDK_SOURCE = Path(__file__).parent / "aisdk"
AISDK_FILES = ("package.json", "package-lock.json", "server.mjs")


class InstallError(RuntimeError):
    """A peer could not be installed (the report says which and why)."""


async def _run(argv: list[str], cwd: Path, log: Path) -> None:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
        code = await proc.wait()
    if code != 0:
        raise InstallError(f"`{' '.join(argv)}` exited {code}: {_tail(log)}")


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").splitlines()[-5:])


def _stamped(stamp: Path, what: str) -> bool:
    return stamp.exists() and stamp.read_text() == what


async def litellm() -> Path:
    """The ``litellm`` command of LiteLLM's own virtualenv, installed if needed."""
    home = CACHE / "litellm"
    venv, stamp = home / "venv", home / "installed"
    command = venv / "bin" / "litellm"
    if _stamped(stamp, LITELLM) and command.exists():
        return command
    progress(f"installing {LITELLM} into {venv} (first use; takes minutes)")
    home.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    log = home / "install.log"
    await _run([sys.executable, "-m", "venv", "--clear", str(venv)], home, log)
    await _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", LITELLM], home, log)
    stamp.write_text(LITELLM)
    return command


def _digest() -> str:
    return hashlib.sha256(
        b"".join((AISDK_SOURCE / f).read_bytes() for f in AISDK_FILES)
    ).hexdigest()


async def aisdk() -> Path:
    """The AI SDK server's directory (``server.mjs`` and its ``node_modules``), installed
    with ``npm ci`` from the committed lock file if needed."""
    home = CACHE / "aisdk"
    stamp = home / "installed"
    if _stamped(stamp, _digest()) and (home / "node_modules").is_dir():
        return home
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise InstallError("node and npm are needed for the AI SDK peer")
    progress(f"installing the AI SDK peer into {home} (npm ci)")
    home.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    for name in AISDK_FILES:
        shutil.copyfile(AISDK_SOURCE / name, home / name)
    await _run(["npm", "ci", "--no-audit", "--no-fund"], home, home / "install.log")
    stamp.write_text(_digest())
    return home
