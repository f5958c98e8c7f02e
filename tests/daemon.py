"""Run `python -m bridge` as a real subprocess for end-to-end and crash tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT


def bridge(config: Path, *args: str, env: dict | None = None, check: bool = True,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one CLI command; returns the completed process (text mode)."""
    p = subprocess.run([sys.executable, "-m", "bridge", *args, "--config", str(config)],
                       capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"bridge {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


class Daemon:
    def __init__(self, config: Path, *, port: int | None = None, env: dict | None = None,
                 log: Path | None = None):
        self.config = config
        self.port = port
        self.env = env or {}
        self.log_path = log or config.parent / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> "Daemon":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(self.config)],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env})
        if wait and self.port:
            wait_port(self.port, proc=self.proc, log=self.log_path)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30) -> int:
        assert self.proc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)


def wait_port(port: int, timeout: float = 20, proc=None, log: Path | None = None) -> None:
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: "
                                 f"{log.read_text() if log else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout} s")


def wait_for(cond, timeout: float = 20, what: str = "condition", step: float = 0.05):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"{what} not met after {timeout} s")
