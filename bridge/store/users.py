"""Console accounts, their sessions, and failed sign-ins (for throttling).

Only hashes are stored: the password as an argon2id PHC string (made by
:mod:`bridge.accounts`), a session as the SHA-256 of its random token (the token itself
lives only in the browser's cookie, so a copy of the store signs nobody in). Failed
sign-ins are kept per scope ("user:<name>", "addr:<address>") for the throttle window and
purged after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.store.db import Database, now


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str
    created_at: float
    password_changed_at: float
    last_login_at: float | None


@dataclass(frozen=True)
class Session:
    """A signed-in browser: ``token_hash`` is the SHA-256 (hex) of the cookie's token."""

    token_hash: str
    user_id: int
    user: str
    created_at: float
    last_seen_at: float
    expires_at: float
    address: str | None


class Users:
    def __init__(self, db: Database):
        self.db = db

    # -- accounts ---------------------------------------------------------------------------
    def add(self, name: str, password_hash: str) -> User:
        """A new account; raises ValueError when the name is taken."""
        t = now()
        with self.db.tx(durable=True):
            if self.get(name) is not None:
                raise ValueError(f"user {name} exists already")
            self.db.execute(
                "INSERT INTO users (name, password_hash, created_at, password_changed_at)"
                " VALUES (?,?,?,?)", (name, password_hash, t, t))
        return self.get(name)  # type: ignore[return-value]

    def get(self, name: str) -> User | None:
        row = self.db.one("SELECT * FROM users WHERE name=?", (name,))
        return User(**dict(row)) if row else None

    def by_id(self, user_id: int) -> User | None:
        row = self.db.one("SELECT * FROM users WHERE id=?", (user_id,))
        return User(**dict(row)) if row else None

    def list(self) -> list[User]:
        return [User(**dict(r)) for r in self.db.execute("SELECT * FROM users ORDER BY name")]

    def count(self) -> int:
        return self.db.scalar("SELECT count(*) FROM users") or 0

    def remove(self, name: str) -> bool:
        """Delete the account and sign out its sessions; False when there is none."""
        with self.db.tx(durable=True):
            user = self.get(name)
            if user is None:
                return False
            self.db.execute("DELETE FROM sessions WHERE user_id=?", (user.id,))
            self.db.execute("DELETE FROM users WHERE id=?", (user.id,))
        return True

    def set_password(self, name: str, password_hash: str) -> bool:
        """Replace the password hash and sign out every session of the account."""
        with self.db.tx(durable=True):
            user = self.get(name)
            if user is None:
                return False
            self.db.execute("UPDATE users SET password_hash=?, password_changed_at=? WHERE id=?",
                            (password_hash, now(), user.id))
            self.db.execute("DELETE FROM sessions WHERE user_id=?", (user.id,))
        return True

    def rehash(self, user_id: int, password_hash: str) -> None:
        """Store a stronger hash of the same password (argon2 parameters raised)."""
        with self.db.tx():
            self.db.execute("UPDATE users SET password_hash=? WHERE id=?", (password_hash, user_id))

    # -- sessions ---------------------------------------------------------------------------
    def open_session(self, user_id: int, token_hash: str, expires_at: float,
                     address: str | None) -> None:
        t = now()
        with self.db.tx():
            self.db.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_seen_at,"
                " expires_at, address) VALUES (?,?,?,?,?,?)",
                (token_hash, user_id, t, t, expires_at, address))
            self.db.execute("UPDATE users SET last_login_at=? WHERE id=?", (t, user_id))

    def session(self, token_hash: str) -> Session | None:
        """The session with this token hash while it has not expired, else None."""
        row = self.db.one(
            "SELECT s.*, u.name AS user FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash=? AND s.expires_at > ?", (token_hash, now()))
        return Session(**dict(row)) if row else None

    def touch_session(self, token_hash: str, expires_at: float) -> None:
        """The session was used now; it now ends at ``expires_at``."""
        with self.db.tx():
            self.db.execute("UPDATE sessions SET last_seen_at=?, expires_at=? WHERE token_hash=?",
                            (now(), expires_at, token_hash))

    def close_session(self, token_hash: str) -> None:
        with self.db.tx():
            self.db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    def sessions_of(self, user_id: int) -> int:
        return self.db.scalar("SELECT count(*) FROM sessions WHERE user_id=? AND expires_at > ?",
                              (user_id, now())) or 0

    # -- failed sign-ins --------------------------------------------------------------------
    def add_failure(self, scopes: list[str]) -> None:
        t = now()
        with self.db.tx():
            self.db.conn.executemany("INSERT INTO login_failures (scope, at) VALUES (?, ?)",
                                     [(s, t) for s in scopes])

    def failures(self, scope: str, since: float) -> tuple[int, float | None]:
        """(failed sign-ins of ``scope`` since ``since``, the time of the oldest of them)."""
        row = self.db.one("SELECT count(*), min(at) FROM login_failures WHERE scope=? AND at > ?",
                          (scope, since))
        return (row[0] or 0, row[1]) if row else (0, None)

    def clear_failures(self, scope: str) -> None:
        with self.db.tx():
            self.db.execute("DELETE FROM login_failures WHERE scope=?", (scope,))

    def purge(self, failures_before: float) -> int:
        """Delete expired sessions and failures older than ``failures_before``."""
        with self.db.tx():
            n = self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now(),)).rowcount
            n += self.db.execute("DELETE FROM login_failures WHERE at < ?",
                                 (failures_before,)).rowcount
        return n
