"""The send journal: results of sends the store could not record, kept on a full disk.

When the store cannot be written (a full disk), a send the channel accepted cannot be
marked sent; the dispatcher holds its result in memory until the store takes writes again.
A stop (SIGTERM) or a crash before then would lose it: the delivery stays "under way" and
the next start sends it again. The journal keeps such results on disk instead:

- a file beside the store, ``<store>.sendjournal`` (:func:`path_for`), of :data:`SIZE`
  bytes (128 KiB), written with real zero bytes and fsynced when the dispatcher starts
  (:meth:`SendJournal.open`), so writing a record later reuses blocks the file already has
  and needs no free space (on ext4, XFS and other file systems that overwrite in place; a
  copy-on-write file system such as btrfs or ZFS may still refuse it, and the dispatcher
  falls back to memory);
- :data:`SLOTS` - 1 slots of :data:`SLOT` bytes after a header slot; a record
  (:class:`SendRecord`) is written into a free slot in place and fsynced
  (:meth:`SendJournal.write`); one that is recorded in the store, and on its disk (the
  caller fsyncs the store's WAL first), is zeroed in place (:meth:`SendJournal.clear`). The file never changes size;
- a record ends in a CRC-32 of the slot: a record torn by a crash mid-write is ignored
  (its send counts as under way, as without a journal: sent at most once more);
- at the next start, before the sends under way are put back in the queue, the records
  found are recorded in the store as if their results had just come back
  (:func:`replay`), then zeroed.

Slot layout (little-endian): ``magic 'SJR1' | kind u8 (1 sent, 2 failed, 3 retry) | flags
u8 | reserved u16 | seq u64 | delivery id i64 | due_at f64 | text length u16 | text
(UTF-8) | ... | crc32 u32`` (the last four bytes of the slot, over the rest of it).
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # only for the annotations of replay()
    from bridge.store.deliveries import Deliveries
    from bridge.store.subscribers import Subscribers

SLOT = 256  # bytes per slot
SLOTS = 512  # slots in the file, the header's included: 511 records at most
SIZE = SLOT * SLOTS  # bytes: 128 KiB
SUFFIX = ".sendjournal"
HEADER = b"storingsbridge send journal\n"
VERSION = 1

_MAGIC = b"SJR1"
_HEAD = struct.Struct("<4sBBHQqdH")  # magic, kind, flags, reserved, seq, id, due_at, text len
_CRC = struct.Struct("<I")
TEXT_MAX = SLOT - _HEAD.size - _CRC.size  # bytes of text a record can hold
_KINDS = {"sent": 1, "failed": 2, "retry": 3}
_STATUS = {v: k for k, v in _KINDS.items()}
_F_FLAG, _F_COUNT, _F_NO_TEXT = 1, 2, 4
_HEADER_SLOT = HEADER + struct.pack("<HHH", VERSION, SLOT, SLOTS)


def path_for(store_path: str | Path) -> Path:
    """The journal file beside the store: ``<store>.sendjournal``."""
    return Path(str(store_path) + SUFFIX)


@dataclass(frozen=True)
class SendRecord:
    """The result of one send, as the store would record it.

    ``status``: ``sent``, ``failed`` or ``retry``. ``text``: for ``sent`` the channel's
    message id (None: it gave none), for the others the error (cut to :data:`TEXT_MAX`
    bytes in the file). ``due_at``: for ``retry``, epoch seconds it is due again.
    ``count_attempt``: for ``retry``, whether it used one of the delivery's attempts.
    ``flag``: for ``sent``, the subscriber counts as reachable again (a channel without
    receipts); for ``failed``, the channel reported the subscriber unreachable. ``seq``
    orders the records of one journal (set by :meth:`SendJournal.write`)."""

    delivery_id: int
    status: str
    text: str | None = None
    due_at: float = 0.0
    count_attempt: bool = True
    flag: bool = False
    seq: int = 0

    def encode(self) -> bytes | None:
        """The record as one slot of :data:`SLOT` bytes, or None when it cannot be kept
        so (a message id longer than :data:`TEXT_MAX` bytes: cutting it would record a
        wrong one)."""
        text = (self.text or "").encode("utf-8")
        if len(text) > TEXT_MAX:
            if self.status == "sent":
                return None
            text = text[:TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")
        flags = ((_F_FLAG if self.flag else 0) | (_F_COUNT if self.count_attempt else 0)
                 | (_F_NO_TEXT if self.text is None else 0))
        body = _HEAD.pack(_MAGIC, _KINDS[self.status], flags, 0, self.seq, self.delivery_id,
                          self.due_at, len(text)) + text
        body = body.ljust(SLOT - _CRC.size, b"\0")
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def decode(cls, slot: bytes) -> "SendRecord | None":
        """The record in ``slot``, or None when the slot is empty, torn or not a record."""
        if len(slot) != SLOT or slot[:4] != _MAGIC:
            return None
        body, (crc,) = slot[:-_CRC.size], _CRC.unpack(slot[-_CRC.size:])
        if zlib.crc32(body) != crc:
            return None
        _, kind, flags, _, seq, delivery_id, due_at, n = _HEAD.unpack_from(body)
        if kind not in _STATUS or n > TEXT_MAX:
            return None
        raw = body[_HEAD.size:_HEAD.size + n]
        return cls(delivery_id=delivery_id, status=_STATUS[kind],
                   text=None if flags & _F_NO_TEXT else raw.decode("utf-8", "replace"),
                   due_at=due_at, count_attempt=bool(flags & _F_COUNT),
                   flag=bool(flags & _F_FLAG), seq=seq)


class JournalUnusable(OSError):
    """The file at the journal's path is no send journal this bridge can use (another
    version's, or another file): left as it is."""


class SendJournal:
    """An open send journal (one per store; only the dispatcher that holds the store's
    dispatcher lock opens it). Not thread-safe: used from the event loop's thread."""

    def __init__(self, path: Path, fd: int, found: dict[int, SendRecord]):
        self.path = path
        self._fd: int | None = fd
        self._found = found  # slot -> record, from before this open, not yet cleared
        self._used: set[int] = set(found)  # slots holding a record
        self._seq = max((r.seq for r in found.values()), default=0)

    @classmethod
    def open(cls, store_path: str | Path) -> "SendJournal":
        """Open the journal beside the store at ``store_path``, creating it (:data:`SIZE`
        zero bytes, fsynced, the folder too) when it is missing or was cut short by a crash
        while being created. The records found in it are :meth:`found`. Raises OSError
        when it cannot be created (e.g. ENOSPC: the disk is already full; the partly
        written file is removed) or read, :class:`JournalUnusable` when the file is no
        journal of this version."""
        path = path_for(store_path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            data = _read_all(fd)
            if len(data) == SIZE and data.startswith(HEADER):
                if data[:len(_HEADER_SLOT)] != _HEADER_SLOT:
                    raise JournalUnusable(f"{path}: a send journal of another version or "
                                          f"layout; not used")
                found = {}
                for i in range(1, SLOTS):
                    rec = SendRecord.decode(data[i * SLOT:(i + 1) * SLOT])
                    if rec is not None:
                        found[i] = rec
                return cls(path, fd, found)
            if data.strip(b"\0") and not data.startswith(HEADER):
                raise JournalUnusable(f"{path}: not a send journal; not used")
            # missing, empty, or a creation a crash cut short (no record is ever written
            # before the file is complete and fsynced): make it anew
            _create(fd, path)
            return cls(path, fd, {})
        except BaseException:
            os.close(fd)
            raise

    # -- records ------------------------------------------------------------------------------
    def found(self) -> list[tuple[int, SendRecord]]:
        """The records from before this open (the last run's) not cleared yet, as (slot,
        record), oldest first."""
        return sorted(self._found.items(), key=lambda item: item[1].seq)

    @property
    def free(self) -> int:
        """Slots free for records now."""
        return SLOTS - 1 - len(self._used)

    def write(self, records: Iterable[SendRecord]) -> list[int | None]:
        """Write ``records`` into free slots in place, then fsync once. Returns each
        record's slot, None for one that found no free slot (the journal is full) or
        cannot be kept (:meth:`SendRecord.encode`). Raises OSError when the write or the
        fsync fails (what it wrote may be torn: ignored when read)."""
        fd = self._require()
        slots: list[int | None] = []
        wrote = False
        free = (i for i in range(1, SLOTS) if i not in self._used)
        for rec in records:
            self._seq += 1
            data = replace(rec, seq=self._seq).encode()
            slot = next(free, None) if data is not None else None
            if slot is not None:
                os.pwrite(fd, data, slot * SLOT)
                self._used.add(slot)
                wrote = True
            slots.append(slot)
        if wrote:
            os.fdatasync(fd)
        return slots

    def clear(self, slots: Iterable[int]) -> None:
        """Zero ``slots`` in place (their results are in the store now), then fsync once.
        Raises OSError when that fails: the records stay in the file (and their slots in
        use; replaying one whose delivery is no longer under way does nothing), but no
        longer count as :meth:`found`."""
        fd = self._require()
        todo = [s for s in slots if s in self._used]
        try:
            for slot in todo:
                os.pwrite(fd, bytes(SLOT), slot * SLOT)
            if todo:
                os.fdatasync(fd)
        finally:
            for slot in todo:
                self._found.pop(slot, None)
        self._used.difference_update(todo)

    def close(self) -> None:
        """Close the file (its records stay for the next open)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _require(self) -> int:
        if self._fd is None:
            raise OSError(f"{self.path}: the send journal is closed")
        return self._fd


@dataclass
class Replayed:
    """What :func:`replay` recorded: results by status, deliveries no longer under way
    (nothing to do), the subscribers reported unreachable as (id, count in a row), and
    the notices of the deliveries it finished (sent or failed: perhaps the last of their
    fan-out, which then no dispatcher sees end)."""

    sent: int = 0
    failed: int = 0
    retry: int = 0
    done_before: int = 0
    unreachable: list[tuple[int, int]] = field(default_factory=list)
    notices: set[int] = field(default_factory=set)
    clear_error: str | None = None  # why the records could not be zeroed (they stay)

    @property
    def total(self) -> int:
        """Results recorded in the store (sent, failed and retry together)."""
        return self.sent + self.failed + self.retry


def replay(journal: SendJournal, deliveries: "Deliveries",
           subscribers: "Subscribers") -> Replayed:
    """Record the journal's records from the last run in the store, in one transaction,
    as if their results had just come back: ``sent`` marks the delivery sent with its
    message id, ``failed`` failed, ``retry`` pending again at its ``due_at``. Only the
    newest record of a delivery counts, and only while the delivery is still under way
    ('sending'); the others were recorded before (their slots were not zeroed yet). Then,
    once the store has them on disk (``Database.sync``), zeroes those slots (when that
    fails, :attr:`Replayed.clear_error` says why: the next start finds them recorded). Call before the sends under way are put back in the queue.

    Raises what the store raises (:class:`bridge.store.StoreFull` on a full disk: the
    records stay for the next try)."""
    found = journal.found()
    out = Replayed()
    if not found:
        return out
    newest: dict[int, SendRecord] = {}
    for _, rec in found:  # oldest first: a later record of a delivery replaces an earlier
        newest[rec.delivery_id] = rec
    db = deliveries.db
    with db.tx():
        states = deliveries.states(list(newest))
        sent: list[tuple[str | None, int]] = []
        reached: list[int] = []
        for rec in newest.values():
            state, subscriber_id, notice_id = states.get(rec.delivery_id, (None, None, None))
            if state != "sending":
                out.done_before += 1
                continue
            if notice_id is not None and rec.status != "retry":
                out.notices.add(notice_id)
            if rec.status == "sent":
                sent.append((rec.text, rec.delivery_id))
                if rec.flag and subscriber_id is not None:
                    reached.append(subscriber_id)
                out.sent += 1
            elif rec.status == "failed":
                deliveries.mark_failed(rec.delivery_id, rec.text or "failed")
                if rec.flag and subscriber_id is not None:
                    out.unreachable.append(
                        (subscriber_id, subscribers.unreachable(subscriber_id)))
                out.failed += 1
            else:
                deliveries.mark_retry(rec.delivery_id, rec.due_at, rec.text or "transient error",
                                      count_attempt=rec.count_attempt)
                out.retry += 1
        if sent:
            deliveries.mark_sent_many(sent, reached)
    try:
        # the store's copy on disk first (a commit waits in the WAL for a checkpoint):
        # zeroed before, a power cut could lose both and the sends would go out again
        db.sync()
        journal.clear(slot for slot, _ in found)
    except OSError as e:
        out.clear_error = e.strerror or str(e)
    return out


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    if size > SIZE:  # not ours: read enough to tell
        size = SIZE + 1
    chunks, pos = [], 0
    while pos < size:
        chunk = os.pread(fd, size - pos, pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _create(fd: int, path: Path) -> None:
    """Write the whole file with real bytes (no holes, no unwritten extents: a later
    write must not need a block) and fsync it and its folder; on failure remove it."""
    try:
        os.ftruncate(fd, 0)
        data = _HEADER_SLOT.ljust(SLOT, b"\0") + bytes(SIZE - SLOT)
        view, pos = memoryview(data), 0
        while pos < SIZE:
            pos += os.pwrite(fd, view[pos:], pos)
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    with contextlib.suppress(OSError):  # the new file's name survives a power cut
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
