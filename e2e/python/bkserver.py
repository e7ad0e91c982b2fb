"""Starts the real Bridgekeeper binary on an ephemeral loopback port with a
fresh data directory, and stops it again (the Python twin of e2e/ts/lib/server.mjs)."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 200


def server_binary() -> Path:
    """$BK_BIN, else target/debug/bridgekeeper in the repository."""
    return Path(os.environ.get("BK_BIN") or REPO_ROOT / "target" / "debug" / "bridgekeeper").resolve()


@dataclass
class Server:
    issuer: str
    addr: str
    data_dir: str
    process: subprocess.Popen
    _lines: collections.deque = field(repr=False)
    _threads: list = field(repr=False)

    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def stop(self) -> None:
        stuck = False
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stuck = True
                self.process.kill()
                self.process.wait()
        for t in self._threads:
            t.join(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if stuck:
            raise RuntimeError(f"server did not stop within 10 s of SIGTERM and was killed; log:\n{self.log_tail()}")


def start_server(extra_env: dict[str, str] | None = None) -> Server:
    """Spawns `bridgekeeper serve --listen 127.0.0.1:0 --data-dir <tmp>` and waits for
    its JSON "listening" log line; stdout and stderr keep being drained in threads."""
    binary = server_binary()
    if not binary.is_file():
        raise RuntimeError(f"server binary not found at {binary} (cargo build, or set BK_BIN)")
    data_dir = tempfile.mkdtemp(prefix="bk-e2e-py-")
    env = {**os.environ, "BRIDGEKEEPER_LOG_FORMAT": "json", **(extra_env or {})}
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    listening: dict[str, str] = {}
    ready = threading.Event()

    def drain_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if ready.is_set():
                continue
            try:
                fields = json.loads(line).get("fields") or {}
            except (ValueError, AttributeError):
                continue
            if fields.get("message") == "listening" and isinstance(fields.get("issuer"), str):
                listening.update(issuer=fields["issuer"], addr=str(fields.get("addr")))
                ready.set()
        ready.set()  # EOF: the process is gone; the waiter checks why

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(f"[stderr] {line.rstrip()}")

    threads = [threading.Thread(target=f, daemon=True) for f in (drain_stdout, drain_stderr)]
    for t in threads:
        t.start()

    if not ready.wait(STARTUP_TIMEOUT_S) or not listening:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
        tail = "\n".join(lines)
        raise RuntimeError(
            f"server did not log \"listening\" within {STARTUP_TIMEOUT_S:.0f} s (exit code {proc.returncode}); output:\n{tail}"
        )
    return Server(listening["issuer"], listening["addr"], data_dir, proc, lines, threads)
