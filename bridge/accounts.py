"""Console accounts: names, password hashing (argon2id), sign-in with throttling, sessions.

- Passwords are hashed with argon2id (RFC 9106) by argon2-cffi's :class:`PasswordHasher`
  with its default parameters (the RFC's second recommended option: 64 MiB, 3 passes,
  4 lanes); the PHC string keeps salt and parameters, so raising them later rehashes at
  the next sign-in (:meth:`Accounts.sign_in`). Verifying takes about 50 ms of CPU: call it
  in a worker thread from the event loop.
- Sign-in attempts are throttled per account and per address: after
  :data:`MAX_FAILURES_USER` failed attempts for a name, or :data:`MAX_FAILURES_ADDRESS`
  from one address, within :data:`WINDOW` seconds, further attempts are refused without
  looking at the password until the oldest failure leaves the window. An unknown name
  costs the same hashing time as a known one.
- A session is a random 256-bit token in a cookie; the store keeps its SHA-256 only.
  It ends :attr:`session_hours` after sign-in, or after :attr:`idle_minutes` without use.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bridge.store import Store
from bridge.store.users import Session, User

MIN_PASSWORD = 10  # characters
MAX_PASSWORD = 1024
NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
MAX_FAILURES_USER = 5
MAX_FAILURES_ADDRESS = 20
WINDOW = 15 * 60.0  # seconds

_hasher = PasswordHasher()
# Verified when the name is unknown, so that answering takes as long as for a known name.
_DUMMY = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A name or password that cannot be used (the message says why, in English)."""


def _verify(user: User | None, password: str) -> bool:
    """argon2 verify (slow, pure): against a dummy hash when there is no such user, so an
    unknown name takes as long as a wrong password."""
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok) and user is not None


def check_name(name: str) -> str:
    name = name.strip().lower()
    if not NAME.fullmatch(name):
        raise AccountError("a user name is 1 to 64 characters: lower-case letters, digits,"
                           " '.', '_', '-' or '@', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters")
    if password.strip() != password:
        raise AccountError("the password must not start or end with a space")
    return password


def hash_password(password: str) -> str:
    """argon2id PHC string of ``password`` (checked with :func:`check_password`)."""
    return _hasher.hash(check_password(password))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of a session (or of a sign-in form's cookie): an HMAC of its secret
    token, so it is never stored and differs per session."""
    return hmac.new(token.encode(), b"bridge-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(token: str | None, given: str | None) -> bool:
    if not token or not given:
        return False
    return hmac.compare_digest(csrf_token(token), given)


@dataclass(frozen=True)
class SignIn:
    """What :meth:`Accounts.sign_in` decided: ``token`` (the cookie's value) when signed in,
    else ``throttled`` (seconds to wait) or a plain failure."""

    user: User | None = None
    token: str | None = None
    throttled: float = 0.0


class Accounts:
    """Accounts and sessions over the store (``store.users``)."""

    def __init__(self, store: Store, session_hours: float = 12.0, idle_minutes: float = 60.0):
        self.store = store
        self.session_hours = session_hours
        self.idle_minutes = idle_minutes

    def add(self, name: str, password: str) -> User:
        name = check_name(name)
        return self.store.users.add(name, hash_password(password))

    def set_password(self, name: str, password: str) -> bool:
        return self.store.users.set_password(check_name(name), hash_password(password))

    def throttled(self, name: str, address: str | None) -> float:
        """Seconds until a sign-in for ``name`` from ``address`` is tried again (0: now)."""
        t = time.time()
        wait = 0.0
        for scope, limit in ((f"user:{name}", MAX_FAILURES_USER),
                             (f"addr:{address}", MAX_FAILURES_ADDRESS)):
            if scope == "addr:None":
                continue
            n, oldest = self.store.users.failures(scope, t - WINDOW)
            if n >= limit and oldest is not None:
                wait = max(wait, oldest + WINDOW - t)
        return wait

    def sign_in(self, name: str, password: str, address: str | None) -> SignIn:
        """Check a name and password (slow: argon2). A failure is recorded for the name and
        the address; a success clears the name's failures and opens a session. In the event
        loop use :meth:`sign_in_async`."""
        name, user, wait = self._begin(name, address)
        if wait > 0:
            return SignIn(throttled=wait)
        return self._finish(name, user, _verify(user, password), password, address)

    async def sign_in_async(self, name: str, password: str, address: str | None) -> SignIn:
        """:meth:`sign_in` with only the hashing in a worker thread: the store is used from
        the event loop's thread alone (its connection and transactions are not shared)."""
        import asyncio

        name, user, wait = self._begin(name, address)
        if wait > 0:
            return SignIn(throttled=wait)
        ok = await asyncio.to_thread(_verify, user, password)
        return self._finish(name, user, ok, password, address)

    def _begin(self, name: str, address: str | None) -> tuple[str, User | None, float]:
        name = name.strip().lower()[:64]
        wait = self.throttled(name, address)
        user = self.store.users.get(name) if wait <= 0 and NAME.fullmatch(name) else None
        return name, user, wait

    def _finish(self, name: str, user: User | None, ok: bool, password: str,
                address: str | None) -> SignIn:
        if not ok or user is None:
            self.store.users.add_failure([f"user:{name}"]
                                         + ([f"addr:{address}"] if address else []))
            return SignIn()
        if _hasher.check_needs_rehash(user.password_hash):
            self.store.users.rehash(user.id, _hasher.hash(password))
        self.store.users.clear_failures(f"user:{name}")
        token = secrets.token_urlsafe(32)
        self.store.users.open_session(user.id, token_hash(token), self._expiry(time.time()),
                                      address)
        return SignIn(user=user, token=token)

    def _expiry(self, created: float) -> float:
        return min(created + self.session_hours * 3600, time.time() + self.idle_minutes * 60)

    def session(self, token: str | None) -> Session | None:
        """The live session of a cookie's token (its idle time restarts), else None."""
        if not token or len(token) > 100:
            return None
        h = token_hash(token)
        s = self.store.users.session(h)
        if s is None:
            return None
        if time.time() - s.last_seen_at > 30:  # one write per half minute, not per request
            self.store.users.touch_session(h, self._expiry(s.created_at))
        return s

    def sign_out(self, token: str | None) -> None:
        if token:
            self.store.users.close_session(token_hash(token))
