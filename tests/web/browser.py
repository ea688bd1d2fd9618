"""What the browser test needs, installed on first use: Debian's Chromium and playwright-core.

CI runs as root on a fresh machine, so a missing ``/usr/bin/chromium`` is installed with
apt-get; ``playwright-core`` comes from ``npm ci`` against the committed lock file (no
browser download: it drives the system Chromium). Anything that cannot be installed is
a test failure with the reason, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("THREADLINE_CHROMIUM", "/usr/bin/chromium"))
#: Chromium plus fonts, so pages render text (and screenshots are readable)
APT_PACKAGES = ("chromium", "fonts-liberation", "fonts-dejavu-core")


def _run(cmd: list[str], *, cwd: Path | None = None, timeout: float = 900) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        pytest.fail(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{tail}", pytrace=False)


def ensure_chromium() -> Path:
    """The Chromium binary, installed with apt-get (as root) when it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(
            f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
            f"run `apt-get install {' '.join(APT_PACKAGES)}`",
            pytrace=False,
        )
    _run([apt, "update"])
    _run([apt, "install", "-y", "--no-install-recommends", *APT_PACKAGES])
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing", pytrace=False)
    return CHROMIUM


def ensure_node_modules() -> Path:
    """``tests/web/node_modules`` with playwright-core at the locked version."""
    marker = HERE / "node_modules" / "playwright-core" / "package.json"
    if not marker.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: the browser test needs Node.js 18+ and npm", pytrace=False)
        _run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, timeout=600)
    if not marker.exists():
        pytest.fail("npm ci did not install playwright-core", pytrace=False)
    return HERE / "node_modules"
