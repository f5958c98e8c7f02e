"""A private Mosquitto broker for tests: free loopback port, config and data in a temp dir.

Never touches a system broker (port 1883): the broker listens only on the port it was
given, on 127.0.0.1. Persistence is on, saved after every change, so a broker killed with
SIGKILL and started again keeps the persistent sessions and their queued messages.
``queue_qos0_messages true`` as docs/mqtt.md asks of a production broker: the default
gateway (whatsapp-web-to-mqtt) publishes and subscribes at QoS 0, and without it Mosquitto
drops QoS 0 messages for a persistent session that is offline.

    broker = Mosquitto(tmp_path / "broker").start()
    ...
    broker.kill(); broker.start()   # same port, same data
    broker.stop()
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from helpers import free_port

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


def mosquitto_binary(install: bool = True) -> str:
    """The mosquitto executable; installs Debian's ``mosquitto`` when missing (as root)."""
    found = shutil.which("mosquitto") or next((c for c in _CANDIDATES if os.path.exists(c)), None)
    if found or not install:
        if not found:
            raise FileNotFoundError("mosquitto is not installed")
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"],
                   check=True, capture_output=True, env=env, timeout=600)
    return mosquitto_binary(install=False)


def make_certs(d: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost (openssl CLI)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert, ext = (d / n for n in (
        "ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "san.cnf"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key),
        "-out", str(csr))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return {"cafile": ca, "certfile": cert, "keyfile": key}


class Mosquitto:
    """``tls``: {"cafile", "certfile", "keyfile"} (see :func:`make_certs`) for a TLS
    listener; ``users``: {name: password} to refuse anonymous clients; ``persistence``
    False: a broker that forgets sessions when it restarts (what docs/mqtt.md warns of)."""

    def __init__(self, workdir: Path, port: int | None = None, *,
                 tls: dict[str, Path] | None = None, users: dict[str, str] | None = None,
                 persistence: bool = True):
        self.persistence = persistence
        self.tls = tls
        self.users = users
        self.dir = Path(workdir)
        self.port = port or free_port()
        if self.port == 1883:
            raise ValueError("tests never use port 1883 (the system broker's)")
        self.host = "127.0.0.1"
        self.data = self.dir / "data"
        self.conf = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        self.binary = mosquitto_binary()

    def _write_config(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data}/",
            "autosave_interval 1",
            "autosave_on_changes true",
            "max_queued_messages 10000",
            "queue_qos0_messages true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.tls:
            lines += [f"{k} {v}" for k, v in self.tls.items()]
        if self.users:
            pw = self.dir / "passwords"
            pw.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True, timeout=30)
            lines.append(f"password_file {pw}")
        if os.geteuid() == 0:
            # Started as root, mosquitto would switch to user "mosquitto", which cannot
            # write to the test's temp dir.
            lines.append(f"user {getpass.getuser()}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10) -> "Mosquitto":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._write_config()
        self._out = open(self.dir / "mosquitto.stdout", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log()}")
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto not listening on {self.port} after {timeout} s")

    def _end(self, sig: signal.Signals, timeout: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._out.close()

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, no final save."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean stop (saves the persistence file)."""
        self._end(signal.SIGTERM)

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        out = self.dir / "mosquitto.stdout"
        if out.exists():
            text += out.read_text(errors="replace")
        return text
