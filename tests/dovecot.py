"""A private Dovecot for the IMAP tests and benchmark: own config, port, passwd-file and maildir.

    dc = Dovecot(tmp_path / "dovecot").start()
    dc.append(raw_bytes)             # APPEND to INBOX (stdlib imaplib, plain, loopback)
    dc.uids("Processed")             # UIDs in a folder
    dc.restart(); dc.stop()

Installs Debian's ``dovecot-imapd`` when ``dovecot`` is missing (``apt-get update`` first) and
raises with apt's output when that fails: nothing is skipped silently. Dovecot refuses to run
its login processes as root, so they run as ``dovenull`` and mail access as ``dovecot``.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "kpnmail"
PASSWORD = "s3cret-imap"
# Dovecot's default auth_username_chars
DEFAULT_USERNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"


class DovecotError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dovecot_binary() -> str:
    """Path of the dovecot binary, installing dovecot-imapd with apt-get when missing."""
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise DovecotError("dovecot is not installed and there is no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "-q", "dovecot-imapd"]):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if p.returncode != 0:
            raise DovecotError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    found = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if not found:
        raise DovecotError("dovecot-imapd was installed but there is no dovecot binary")
    return found


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost made with openssl; returns (cert, key)."""
    cert, key = dir / "cert.pem", dir / "key.pem"
    if not cert.exists():
        p = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
        if p.returncode != 0:
            raise DovecotError(f"openssl failed: {p.stderr}")
    return cert, key


class Dovecot:
    """One private Dovecot. Options shape it like servers people reported problems with:

    - ``capability``: ``imap_capability`` after login (e.g. ``"IMAP4rev1 LITERAL+"`` hides
      IDLE, MOVE and UIDPLUS);
    - ``max_line_length``: ``imap_max_line_length`` in bytes (Dovecot's default is 64 k);
    - ``quota``: a storage limit such as ``"200K"`` (quota plugin, maildir quota, IMAP QUOTA);
    - ``user``, ``password``: the login (e.g. a name with a space, ``"kpn storingen"``);
    - ``auth_mechanisms``: Dovecot's ``auth_mechanisms`` (``"plain login"``: AUTH=PLAIN offered);
    - ``max_user_connections``: ``mail_max_userip_connections`` (more gets refused);
    - ``extra``: more config lines, verbatim.
    """

    def __init__(self, link: Path | None = None, *, port: int | None = None, imaps: bool = False,
                 capability: str | None = None, max_line_length: int | None = None,
                 quota: str | None = None, user: str = USER, password: str = PASSWORD,
                 auth_mechanisms: str = "plain login", max_user_connections: int | None = None,
                 extra: str = ""):
        # Dovecot's own users (dovecot, dovenull) must reach these files, and pytest's tmp dirs
        # are private to root (0700): the instance lives in its own world-traversable dir under
        # /tmp; ``link`` (e.g. tmp_path / "dovecot") points to it for post-mortems.
        self.root = Path(tempfile.mkdtemp(prefix="bridge-dovecot-"))
        os.chmod(self.root, 0o755)
        if link is not None:
            Path(link).symlink_to(self.root, target_is_directory=True)
        self.port = port or free_port()
        self.imaps = imaps  # the listener speaks implicit TLS
        self.capability = capability  # e.g. "IMAP4rev1 UIDPLUS" to hide IDLE and MOVE
        self.max_line_length = max_line_length
        self.quota = quota
        self.auth_mechanisms = auth_mechanisms
        self.max_user_connections = max_user_connections
        self.extra = extra
        self.user, self.password = user, password
        self.binary = dovecot_binary()
        self.cert: Path | None = None

    # -- files ------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    def _write(self) -> None:
        r = self.root
        for d in ("run", "state", "mail", "home"):
            (r / d).mkdir(parents=True, exist_ok=True)
        mail_uid = pwd.getpwnam("dovecot").pw_uid
        mail_gid = grp.getgrnam("dovecot").gr_gid
        for d in ("mail", "home"):
            os.chown(r / d, mail_uid, mail_gid)
        os.chmod(r, 0o755)
        (r / "passwd").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{mail_uid}:{mail_gid}::{r / 'home' / self.user}::\n",
            encoding="utf-8")
        ssl_lines = "ssl = no\n"
        imap_port, imaps_port = self.port, 0
        if self.imaps:
            self.cert, key = self_signed(r)
            ssl_lines = f"ssl = required\nssl_cert = <{self.cert}\nssl_key = <{key}\n"
            imap_port, imaps_port = 0, self.port
        cap = f"imap_capability = {self.capability}\n" if self.capability else ""
        if self.max_line_length:
            cap += f"imap_max_line_length = {self.max_line_length}\n"
        if self.quota:
            cap += ("mail_plugins = $mail_plugins quota\n"
                    "protocol imap {\n  mail_plugins = $mail_plugins imap_quota\n}\n"
                    "plugin {\n  quota = maildir:User quota\n"
                    f"  quota_rule = *:storage={self.quota}\n}}\n")
        if self.max_user_connections:
            cap += f"mail_max_userip_connections = {self.max_user_connections}\n"
        if set(self.user) - set(DEFAULT_USERNAME_CHARS):
            cap += "auth_username_chars =\n"  # empty: any character (a space, parentheses)
        cap += self.extra + ("\n" if self.extra and not self.extra.endswith("\n") else "")
        self.config_path.write_text(f"""\
base_dir = {r / 'run'}
state_dir = {r / 'state'}
instance_name = bridge-test-{self.port}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = 127.0.0.1
{ssl_lines}disable_plaintext_auth = no
auth_mechanisms = {self.auth_mechanisms}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {mail_uid}
last_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{r / 'mail'}/%u
mailbox_list_index = no
{cap}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r / 'passwd'}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r / 'passwd'}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")

    # -- process ----------------------------------------------------------------------------------
    def pid(self) -> int | None:
        p = self.root / "run" / "master.pid"
        try:
            return int(p.read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 20) -> "Dovecot":
        self._write()
        # dovecot forks into the background: its output goes to a file, not a pipe we wait on.
        out = self.root / "dovecot.out"
        with open(out, "wb") as f:
            p = subprocess.run([self.binary, "-c", str(self.config_path)], stdout=f,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
        if p.returncode != 0:
            raise DovecotError(f"dovecot did not start ({p.returncode}): "
                               f"{out.read_text(errors='replace')}{self.log()}")
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise DovecotError(f"dovecot not listening on {self.port} after {timeout} s: {self.log()}")

    def _descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
        out, todo = [], [pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out

    def stop(self, timeout: float = 10) -> None:
        """Stop this instance and every process it started (like systemctl stop: an imap
        process serving a client does not outlive its master)."""
        pid = self.pid()
        if pid is None:
            return
        procs = [pid] + self._descendants(pid)
        for p in procs:
            with contextlib_suppress():
                os.kill(p, signal.SIGTERM)
        t = time.monotonic()
        while time.monotonic() - t < timeout and any(_alive(p) for p in procs):
            time.sleep(0.05)
        for p in procs:
            if _alive(p):
                with contextlib_suppress():
                    os.kill(p, signal.SIGKILL)
        # wait for the port to be free for a restart
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.05)
        with contextlib_suppress():
            (self.root / "run" / "master.pid").unlink()

    def cleanup(self) -> None:
        """Stop and remove the instance's files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- a test-side client -----------------------------------------------------------------------
    def client(self) -> imaplib.IMAP4:
        if self.imaps:
            import ssl

            ctx = ssl.create_default_context(cafile=str(self.cert))
            c = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=ctx, timeout=10)
        else:
            c = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        # imaplib's LOGIN sends the user name as it is and only ASCII: AUTHENTICATE PLAIN
        # takes any user name and password (UTF-8, RFC 4616).
        token = f"\0{self.user}\0{self.password}".encode("utf-8")
        c.authenticate("PLAIN", lambda _challenge: token)
        return c

    def logins(self) -> int:
        """Successful logins of ``user`` so far (from Dovecot's log)."""
        return self.log().count(f"Login: user=<{self.user}>")

    def append(self, data: bytes, folder: str = "INBOX", client: imaplib.IMAP4 | None = None) -> None:
        c = client or self.client()
        try:
            typ, resp = c.append(folder, None, None, data)
            if typ != "OK":
                raise DovecotError(f"APPEND failed: {resp}")
        finally:
            if client is None:
                c.logout()

    def deliver(self, mails: list[bytes]) -> None:
        """Put mails straight into INBOX's maildir (``new/``), as a delivery agent does: much
        faster than APPEND for a backlog of thousands. Dovecot gives them UIDs when the
        folder is next opened, in file-name order."""
        c = self.client()  # the first login creates the maildir
        try:
            c.select("INBOX")
        finally:
            c.logout()
        new = self.root / "mail" / self.user / "new"
        uid, gid = pwd.getpwnam("dovecot").pw_uid, grp.getgrnam("dovecot").gr_gid
        stamp = int(time.time())
        for i, data in enumerate(mails):
            tmp = new.parent / "tmp" / f"{stamp}.M{i:07d}.bridge-test"
            tmp.write_bytes(data)
            os.chown(tmp, uid, gid)
            tmp.rename(new / tmp.name)

    def uids(self, folder: str = "INBOX") -> list[int]:
        """UIDs in a folder; [] when the folder does not exist."""
        c = self.client()
        try:
            typ, _ = c.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = c.uid("SEARCH", None, "ALL")
            return [int(x) for x in (data[0] or b"").split()]
        finally:
            c.logout()

    def flags(self, folder: str = "INBOX") -> dict[int, str]:
        c = self.client()
        try:
            c.select(f'"{folder}"', readonly=True)
            typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
            out = {}
            for line in data:
                if not line:
                    continue
                text = line.decode() if isinstance(line, bytes) else line[0].decode()
                import re

                m = re.search(r"UID (\d+)", text)
                f = re.search(r"FLAGS \(([^)]*)\)", text)
                if m:
                    out[int(m.group(1))] = f.group(1) if f else ""
            return out
        finally:
            c.logout()

    def message_ids(self, folder: str) -> list[str]:
        c = self.client()
        try:
            typ, _ = c.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    v = item[1].decode(errors="replace").split(":", 1)[-1].strip()
                    if v:
                        out.append(v)
            return out
        finally:
            c.logout()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class contextlib_suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True
