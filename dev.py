#!/usr/bin/env python3
"""Patron's task runner: every daily verb, each doing its own set-up first.

    python3 dev.py demo     start Patron on SQLite with demo data (prints URL, login, write key)
    python3 dev.py test     run the whole test suite (CI runs exactly this with CI=true)
    python3 dev.py serve    start Patron without loading demo data
    python3 dev.py lint     ruff check and ruff format --check
    python3 dev.py types    mypy --strict on src/
    python3 dev.py bench    run the benchmarks in bench/

Needs only Python 3.11+: it makes `.venv`, installs the locked dependencies into it
with uv, and, for the browser tests, Debian's chromium when it is missing and we are root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
UV_VERSION = "0.13.9"
CHROMIUM = Path("/usr/bin/chromium")


def run(*args: str | Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)
    if check and result.returncode != 0:
        raise SystemExit(result.returncode)
    return result.returncode


def setup() -> None:
    """Create the virtualenv and sync it with uv.lock (skipped when nothing changed)."""
    if sys.version_info < (3, 11):
        raise SystemExit(f"Patron needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (BIN / "uv").exists():
        run(BIN / "python", "-m", "pip", "install", "-q", f"uv=={UV_VERSION}")
    stamp = VENV / ".patron-lock"
    digest = hashlib.sha256(
        (ROOT / "uv.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing locked dependencies ...", flush=True)
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
        run(BIN / "uv", "sync", "--frozen", "--inexact", "--quiet", env=env)
        stamp.write_text(digest)


def ensure_chromium() -> None:
    """The browser tests drive Debian's chromium; install it when we can."""
    if CHROMIUM.exists() or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print("installing Debian's chromium for the browser tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env, check=False)
    run("apt-get", "install", "-y", "-qq", "chromium", env=env, check=False)


def main(argv: list[str]) -> int:
    verb, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if verb in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    setup()
    patron, python = BIN / "patron", BIN / "python"
    if verb == "demo":
        return run(patron, "demo", "--serve", *rest, check=False)
    if verb == "serve":
        return run(patron, "serve", *rest, check=False)
    if verb == "test":
        ensure_chromium()
        return run(python, "-m", "pytest", *rest, check=False)
    if verb == "lint":
        return run(BIN / "ruff", "check", ".", check=False) or run(
            BIN / "ruff", "format", "--check", ".", check=False
        )
    if verb == "types":
        return run(BIN / "mypy", "--strict", "src", check=False)
    if verb == "bench":
        return run(python, "bench/run.py", *rest, check=False)
    print(f"unknown verb {verb!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
