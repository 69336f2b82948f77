"""A real uvicorn process serving the app, for tests that need real HTTP (raw sockets, several workers, a browser)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def uvicorn_server(root: Path, *, workers: int = 1, args: Sequence[str] = (), timeout: float = 90.0,
                   **env: str) -> Iterator[LiveServer]:
    """The service on a free port with its own version and assessment stores under `root`, until the block ends.

    The caller's MZL_* variables are not inherited: the server sees only the stores under `root` and `env`.
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MZL_")}
    environ.update(MZL_VERSIONS_DIR=str(root / "versions"), MZL_STORE_PATH=str(root / "assessments.sqlite3"),
                   PYTHONUNBUFFERED="1", **env)
    log = root / "server.log"
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    with open(log, "wb") as out:
        proc = subprocess.Popen([*command, *args], cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT)
    server = LiveServer(proc, port, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(server.base + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /healthz within {timeout:g} s:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
