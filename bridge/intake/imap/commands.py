"""IMAP command pieces every server parses, and the answers' pieces the intake reads.

Pure functions, no I/O:

- UID sets as ranges (``1:1500``) split into batches that fit a conservative command line
  (:func:`uid_batches`);
- mailbox names in modified UTF-7 (RFC 3501 §5.1.3) with IMAPClient's well-kept codec
  (:func:`encode_mailbox`, :func:`mailbox_problem`);
- strings as RFC 3501 quoted strings or literals (:func:`quoted`, :func:`string_args`);
- response codes (RFC 5530) and what they mean for the intake (:func:`response_code`);
- the UIDs of a SEARCH answer and the bodies of a FETCH answer (:func:`parse_search`,
  :func:`parse_fetch`).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from imapclient import imap_utf7

# A batch names at most this many UIDs: a UID MOVE of n UIDs makes the server answer n
# "* k EXPUNGE" lines, and a FETCH of n bodies holds n mails in memory.
MAX_UIDS = 500
# Command lines are kept to this many octets: RFC 7162 §4 asks clients to limit the lines
# they generate to about 8192 octets; servers refuse longer ones (Dovecot's
# imap_max_line_length is 64 k by default, some servers allow 4 k or less for arguments).
MAX_LINE = 8000

# -- UID sets --------------------------------------------------------------------------------------


def uid_ranges(uids: Iterable[int], present: Iterable[int] | None = None) -> list[tuple[int, int]]:
    """Sorted, merged ranges covering exactly ``uids``: ``[1, 2, 3, 7]`` -> ``[(1, 3), (7, 7)]``.

    A range may also span numbers that are not in ``uids`` when ``present`` (every UID the
    folder held at some moment after the highest of ``uids`` was assigned) shows that none
    of them exists: a UID once gone never comes back (RFC 3501 §2.3.1.1), so the range still
    names only ``uids``. Without ``present`` only consecutive numbers are merged.
    """
    ours = sorted(set(uids))
    if not ours:
        return []
    # UIDs present in the folder that are not ours: a range must not span one
    gaps_closed = None if present is None else sorted(set(present) - set(ours))
    out: list[tuple[int, int]] = []
    lo = hi = ours[0]
    j = 0  # index into gaps_closed: first present UID above hi
    for u in ours[1:]:
        mergeable = u == hi + 1
        if not mergeable and gaps_closed is not None:
            while j < len(gaps_closed) and gaps_closed[j] <= hi:
                j += 1
            mergeable = j >= len(gaps_closed) or gaps_closed[j] > u
        if mergeable:
            hi = u
        else:
            out.append((lo, hi))
            lo = hi = u
    out.append((lo, hi))
    return out


def uid_set(ranges: Sequence[tuple[int, int]]) -> str:
    """``[(1, 3), (7, 7)]`` -> ``"1:3,7"`` (RFC 3501 sequence-set syntax)."""
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in ranges)


def uid_batches(uids: Iterable[int], *, overhead: int = 0, max_uids: int = MAX_UIDS,
                max_line: int = MAX_LINE, present: Iterable[int] | None = None,
                ) -> list[tuple[list[int], str]]:
    """``uids`` in ascending batches of at most ``max_uids`` UIDs whose UID set, plus
    ``overhead`` octets for the rest of the command line (tag, command, mailbox), fits
    ``max_line`` octets. Returns ``[(uids_of_batch, uid_set_text), ...]``.

    Raises ValueError when even one UID does not fit (an absurd ``overhead``)."""
    ours = sorted(set(uids))
    known = None if present is None else set(present)
    out: list[tuple[list[int], str]] = []
    todo = [ours[i:i + max_uids] for i in range(0, len(ours), max(1, max_uids))]
    while todo:
        chunk = todo.pop(0)
        text = uid_set(uid_ranges(chunk, known))
        if len(text) + overhead <= max_line:
            out.append((chunk, text))
        elif len(chunk) == 1:
            raise ValueError(f"a command naming UID {chunk[0]} does not fit {max_line} octets")
        else:
            half = len(chunk) // 2
            todo[:0] = [chunk[:half], chunk[half:]]
    return out


# -- strings and mailbox names ---------------------------------------------------------------------

_ATOM_SPECIALS = re.compile(r'[(){ \x00-\x1f\x7f%*"\\\]]')


def quotable(s: str) -> bool:
    """Can ``s`` be sent as an RFC 3501 quoted string (7-bit, no CR, LF or NUL)?"""
    return s.isascii() and not any(c in s for c in "\r\n\0")


def quoted(s: str) -> str:
    """RFC 3501 §9 quoted string: ``kpn storingen`` -> ``"kpn storingen"``, with ``\\`` and
    ``"`` escaped. Raises ValueError for text that needs a literal (see :func:`quotable`)."""
    if not quotable(s):
        raise ValueError("not a quotable string (8-bit, CR, LF or NUL): send it as a literal")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_args(*values: str) -> list[bytes]:
    """Arguments as RFC 3501 strings: quoted where possible, else synchronizing literals
    (UTF-8 octets). Returns the segments to send: the first is the rest of the command line
    (ending in ``{n}`` when a literal follows); each later one is sent after the server's
    ``+`` continuation: a literal's octets, then the rest of the line.

    ``string_args("kpn storingen", "pw")`` -> ``[b'"kpn storingen" "pw"']``;
    ``string_args("jos\u00e9", "pw")`` -> ``[b'{5}', b'jos\xc3\xa9 "pw"']``."""
    segments: list[bytes] = []
    line = b""
    for v in values:
        sep = b" " if line else b""
        if quotable(v):
            line += sep + quoted(v).encode("ascii")
        else:
            raw = v.encode("utf-8")
            segments.append(line + sep + b"{%d}" % len(raw))
            line = raw
    segments.append(line)
    return segments


def encode_mailbox(name: str) -> str:
    """A mailbox name as sent on the wire: modified UTF-7 (RFC 3501 §5.1.3), e.g.
    ``Storingen R&D`` -> ``Storingen R&-D``, ``Storingen café`` -> ``Storingen caf&AOk-``.
    INBOX is case-insensitive and sent as ``INBOX``."""
    if name.upper() == "INBOX":
        return "INBOX"
    return imap_utf7.encode(name).decode("ascii")


def decode_mailbox(raw: str | bytes) -> str:
    """The inverse of :func:`encode_mailbox` (a LIST answer's name)."""
    return imap_utf7.decode(raw.encode("ascii", "replace") if isinstance(raw, str) else raw)


def mailbox_arg(name: str) -> str:
    """The mailbox argument of a command: encoded and quoted (``"Storingen R&-D"``)."""
    return quoted(encode_mailbox(name))


def mailbox_problem(name: str) -> str | None:
    """Why ``name`` cannot be a folder the bridge uses, or None. Any Unicode is fine (it is
    encoded); control characters are not, nor ``*`` and ``%`` (LIST wildcards, refused by
    many servers in names), nor leading or trailing spaces (servers strip or refuse them)."""
    if not name:
        return "must not be empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "must not contain control characters (tab, CR, LF, NUL)"
    if any(c in name for c in "*%"):
        return "must not contain * or % (wildcards in IMAP LIST)"
    if name != name.strip():
        return "must not start or end with a space"
    try:
        if imap_utf7.decode(imap_utf7.encode(name)) != name:
            return "cannot be encoded in modified UTF-7"
    except (UnicodeError, ValueError) as e:
        return f"cannot be encoded in modified UTF-7 ({e})"
    return None


# -- answers ---------------------------------------------------------------------------------------

_CODE_RE = re.compile(r"^\s*\[([A-Za-z0-9-]+)")

# RFC 5530 response codes (and RFC 3501's) by what the intake does about them.
LOGIN_CODES = frozenset({"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED",
                         "PRIVACYREQUIRED", "CONTACTADMIN"})
# The server is busy or short of something for now: retry soon (not the login backoff).
BUSY_CODES = frozenset({"UNAVAILABLE", "LIMIT", "INUSE"})
# Will not change until someone acts: pause (mails stay in the mailbox).
# ([TRYCREATE] is not one: the target folder was deleted; the next session creates it.)
PERMANENT_CODES = frozenset({"OVERQUOTA", "NOPERM", "CANNOT", "NONEXISTENT"})


def response_code(text: str | bytes | None) -> str | None:
    """``"[OVERQUOTA] Quota exceeded"`` -> ``"OVERQUOTA"``; None without a code."""
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    m = _CODE_RE.match(text)
    return m.group(1).upper() if m else None


def parse_search(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a ``UID SEARCH`` answer (``SEARCH 1 2 3`` lines), sorted, no repeats."""
    out: set[int] = set()
    for line in lines[:-1]:
        line = bytes(line).strip()
        if line.upper().startswith(b"SEARCH"):
            line = line[6:]
        if line and all(t.isdigit() for t in line.split()):
            out.update(int(t) for t in line.split())
    return sorted(out)


_FETCH_RE = re.compile(rb"^(?:\* )?\d+ FETCH \(")
_UID_RE = re.compile(rb"\bUID (\d+)")
_SIZE_RE = re.compile(rb"\bRFC822\.SIZE (\d+)")


def parse_fetch(lines: Sequence[bytes | bytearray]) -> dict[int, bytes]:
    """UID -> raw bytes from the lines of a ``UID FETCH (UID BODY.PEEK[])`` answer.

    aioimaplib gives each ``n FETCH (... {size}`` line as bytes and the literal that follows
    as a bytearray; the UID may come before or after the literal. A message answered without
    a body (Dovecot: ``BODY[] NIL`` for a mail another client expunged) is left out.
    """
    out: dict[int, bytes] = {}
    uid: int | None = None
    body: bytes | None = None

    def flush():
        if uid is not None and body is not None:
            out[uid] = body

    for item in lines:
        if isinstance(item, bytearray):
            body = bytes(item)
            continue
        line = bytes(item)
        if _FETCH_RE.match(line):
            flush()
            uid, body = None, None
        m = _UID_RE.search(line)
        if m and (_FETCH_RE.match(line) or uid is None):
            uid = int(m.group(1))
    flush()
    return out


def parse_sizes(lines: Sequence[bytes | bytearray]) -> dict[int, int]:
    """UID -> RFC822.SIZE from a ``UID FETCH (UID RFC822.SIZE)`` answer."""
    out: dict[int, int] = {}
    for item in lines:
        if isinstance(item, bytearray):
            continue
        line = bytes(item)
        u, s = _UID_RE.search(line), _SIZE_RE.search(line)
        if u and s:
            out[int(u.group(1))] = int(s.group(1))
    return out


# aioimaplib hands a LIST answer's lines on without "* LIST " (routed to the LIST command)
_LIST_NAME_RE = re.compile(rb'^(?:\* )?(?:LIST )?\([^)]*\) (?:"(?:[^"\\]|\\.)*"|NIL) (.+)$',
                           re.I)


def parse_list(lines: Sequence[bytes | bytearray]) -> list[str]:
    """Mailbox names (decoded from modified UTF-7) of a LIST answer; a name sent as a
    literal (the bytearray after a ``{n}`` line) is taken too."""
    out: list[str] = []
    pending_literal = False
    for item in lines[:-1]:
        if isinstance(item, bytearray):
            if pending_literal:
                out.append(decode_mailbox(bytes(item)))
            pending_literal = False
            continue
        m = _LIST_NAME_RE.match(bytes(item).strip())
        if not m:
            continue
        raw = m.group(1).strip()
        if re.fullmatch(rb"\{\d+\}", raw):
            pending_literal = True
        elif raw.startswith(b'"') and raw.endswith(b'"'):
            out.append(decode_mailbox(re.sub(rb'\\(.)', rb'\1', raw[1:-1])))
        else:
            out.append(decode_mailbox(raw))
    return out
