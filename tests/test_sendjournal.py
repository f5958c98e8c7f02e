"""The send journal (bridge/store/sendjournal.py) and the dispatcher's use of it
(bridge/heldresults.py): results the store could not record on a full disk survive a stop
or a crash, so the next start does not send them again.

The real daemon stopped (SIGTERM) and killed (SIGKILL) while the store is full is
tests/test_supervisor.py's test_a_stop_while_the_store_is_full_sends_nothing_twice."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections import Counter

import pytest

from bridge.channels.base import SendResult
from bridge.outbox import Dispatcher
from bridge.store import StoreFull
from bridge.store.sendjournal import (SIZE, SLOT, SLOTS, TEXT_MAX, JournalUnusable, SendJournal,
                                      SendRecord, path_for)
from helpers import DISPATCH, Scripted, fan_out_notice, wait_until

FULL = "database or disk is full"


def subscribers(store, n):
    nums = [f"+3161234{i:04d}" for i in range(n)]
    for number in nums:
        store.subscribers.add(number, "console", "cli:test")
    return nums


def claim_all(store):
    """Every pending delivery claimed ('sending'), as a dispatcher does before the send."""
    return {d.to_addr: d for d in store.deliveries.claim(1000)}


# --- the file ---------------------------------------------------------------------------------


def test_the_journal_is_allocated_with_real_bytes_and_keeps_records_over_a_reopen(tmp_path):
    j = SendJournal.open(tmp_path / "b.db")
    path = path_for(tmp_path / "b.db")
    assert path.name == "b.db.sendjournal" and path.stat().st_size == SIZE
    assert path.stat().st_blocks * 512 >= SIZE  # no holes: a later write needs no block
    assert os.stat(path).st_mode & 0o777 == 0o600
    recs = [SendRecord(7, "sent", "wamid.HBgLMzE2MTIzNDU2NzgVAgARGBI5", flag=True),
            SendRecord(8, "sent", None),
            SendRecord(9, "failed", "131026 niet bereikbaar", flag=True),
            SendRecord(10, "retry", "130429 rate", due_at=1234.5, count_attempt=False)]
    assert j.write(recs) == [1, 2, 3, 4] and j.free == SLOTS - 1 - 4
    j.close()
    again = SendJournal.open(tmp_path / "b.db")
    found = again.found()
    assert [slot for slot, _ in found] == [1, 2, 3, 4]
    assert [(r.delivery_id, r.status, r.text, r.due_at, r.count_attempt, r.flag)
            for _, r in found] == [(r.delivery_id, r.status, r.text, r.due_at,
                                    r.count_attempt, r.flag) for r in recs]
    again.clear([1, 3])
    assert path.stat().st_size == SIZE  # zeroed in place, never truncated
    assert path.read_bytes()[SLOT:2 * SLOT] == bytes(SLOT)
    again.close()
    assert [r.delivery_id for _, r in SendJournal.open(tmp_path / "b.db").found()] == [8, 10]


def test_a_torn_record_is_ignored_and_the_others_are_kept(tmp_path):
    """A crash in the middle of writing a slot leaves part of a record: its checksum fails
    and it is skipped (its send counts as under way, as without a journal)."""
    j = SendJournal.open(tmp_path / "b.db")
    j.write([SendRecord(1, "sent", "id-1"), SendRecord(2, "sent", "id-2"),
             SendRecord(3, "sent", "id-3")])
    j.close()
    path = path_for(tmp_path / "b.db")
    data = bytearray(path.read_bytes())
    data[2 * SLOT + 40:3 * SLOT] = bytes(SLOT - 40)  # slot 2 written only up to byte 40
    data[3 * SLOT + 30] ^= 0xFF  # slot 3: a flipped bit in the text
    path.write_bytes(bytes(data))
    assert [r.delivery_id for _, r in SendJournal.open(tmp_path / "b.db").found()] == [1]


def test_a_full_journal_takes_no_more_records(tmp_path):
    j = SendJournal.open(tmp_path / "b.db")
    slots = j.write(SendRecord(i, "sent", f"id-{i}") for i in range(SLOTS + 5))
    assert slots[:SLOTS - 1] == list(range(1, SLOTS)) and slots[SLOTS - 1:] == [None] * 6
    assert j.free == 0
    j.clear([5])
    assert j.write([SendRecord(10_099, "sent", "id-99")]) == [5]
    # an error text is cut to fit; a message id is never cut (it would be a wrong one)
    assert j.write([SendRecord(10_100, "sent", "x" * (TEXT_MAX + 1))]) == [None]
    j.clear([7])
    assert j.write([SendRecord(10_101, "failed", "é" * TEXT_MAX)]) == [7]
    j.close()
    got = {r.delivery_id: r for _, r in SendJournal.open(tmp_path / "b.db").found()}
    assert len(got) == SLOTS - 1 and got[10_101].text == "é" * (TEXT_MAX // 2)


def test_a_journal_that_cannot_be_created_leaves_no_file_and_another_file_is_kept(
        tmp_path, monkeypatch):
    """ENOSPC while allocating (the disk already full at start): OSError, the partly
    written file removed (the next start makes it anew). A file that is no send journal
    of this version is neither read nor overwritten."""
    real_pwrite = os.pwrite

    def no_space(fd, data, offset):
        if offset + len(data) > SIZE // 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", no_space)
    with pytest.raises(OSError) as e:
        SendJournal.open(tmp_path / "b.db")
    assert e.value.errno == errno.ENOSPC and not path_for(tmp_path / "b.db").exists()
    monkeypatch.undo()
    # cut short by a crash while being created: made anew
    path_for(tmp_path / "b.db").write_bytes(b"storingsbridge send journal\n")
    assert SendJournal.open(tmp_path / "b.db").found() == []
    assert path_for(tmp_path / "b.db").stat().st_size == SIZE
    other = tmp_path / "c.db.sendjournal"
    other.write_bytes(b"something else entirely")
    with pytest.raises(JournalUnusable):
        SendJournal.open(tmp_path / "c.db")
    assert other.read_bytes() == b"something else entirely"


# --- replay into the store --------------------------------------------------------------------


def test_replay_records_each_result_as_if_it_had_just_come_back(store):
    """sent -> sent with its message id (and reachable again), failed -> failed (and
    unreachable counted), retry -> pending at its time without an attempt used; a
    delivery no longer under way is left alone; only a delivery's newest record counts;
    then the records are zeroed."""
    nums = subscribers(store, 5)
    fan_out_notice(store, None, "melding")
    claimed = claim_all(store)
    a, b, c, d, e = (claimed[n] for n in nums)
    store.db.execute("UPDATE subscribers SET unreachable=2")
    store.deliveries.mark_sent(e.id, "id-e")  # recorded before (its slot not zeroed yet)
    j = store.open_send_journal()
    j.write([SendRecord(a.id, "retry", "130429 rate", due_at=10.0, count_attempt=False),
             SendRecord(a.id, "sent", "wamid.A", flag=True),  # the newer record wins
             SendRecord(b.id, "failed", "131026 unreachable", flag=True),
             SendRecord(c.id, "retry", "130429 rate", due_at=4e9, count_attempt=False),
             SendRecord(e.id, "sent", "id-e")])
    j.close()  # the run stops; the next start opens the journal and finds them
    j = store.open_send_journal()
    done = store.replay_sends(j)
    assert (done.sent, done.failed, done.retry, done.done_before) == (1, 1, 1, 1)
    assert done.unreachable == [(b.subscriber_id, 3)]
    row = {r["id"]: dict(r) for r in store.db.execute("SELECT * FROM deliveries")}
    assert (row[a.id]["state"], row[a.id]["provider_id"], row[a.id]["to_addr"]) == (
        "sent", "wamid.A", None)
    assert (row[b.id]["state"], row[b.id]["error"]) == ("failed", "131026 unreachable")
    assert (row[c.id]["state"], row[c.id]["due_at"], row[c.id]["attempts"]) == (
        "pending", 4e9, 0)
    assert row[d.id]["state"] == "sending"  # no record: reset as under way afterwards
    assert row[e.id]["state"] == "sent"
    unreachable = dict(store.db.execute("SELECT id, unreachable FROM subscribers").fetchall())
    assert unreachable[a.subscriber_id] == 0 and unreachable[b.subscriber_id] == 3
    assert j.found() == [] and j.free == SLOTS - 1
    assert path_for(store.db.path).read_bytes()[SLOT:] == bytes(SIZE - SLOT)
    j.close()


def one_send_journaled(store, provider_id: str) -> SendJournal:
    """One subscriber's notice claimed and its send journaled as "sent" by a run that
    stopped: the journal as the next start opens it."""
    subscribers(store, 1)
    fan_out_notice(store, None, "melding")
    (d,) = claim_all(store).values()
    j = store.open_send_journal()
    j.write([SendRecord(d.id, "sent", provider_id)])
    j.close()
    return store.open_send_journal()


def test_a_replay_the_store_refuses_keeps_the_records(store, monkeypatch):
    j = one_send_journaled(store, "id-a")

    def full(*args, **kw):
        raise StoreFull(FULL, FULL)

    monkeypatch.setattr(store.deliveries, "mark_sent_many", full)
    with pytest.raises(StoreFull):
        store.replay_sends(j)
    assert len(j.found()) == 1 and store.deliveries.counts() == {"sending": 1}
    monkeypatch.undo()
    assert store.replay_sends(j).sent == 1 and store.deliveries.counts() == {"sent": 1}


# --- the dispatcher: a stop while the store is full -------------------------------------------


class FullStore:
    """The store refuses every write the dispatcher makes while ``on`` (a full disk, where
    even marking a delivery sent fails); reads go on."""

    METHODS = ("claim", "mark_sent_many", "mark_retry", "mark_failed", "release", "defer",
               "reset_inflight", "expire", "recheck")

    def __init__(self, store, monkeypatch):
        self.on = False
        self.refused = 0
        for name in self.METHODS:
            monkeypatch.setattr(store.deliveries, name, self._wrap(getattr(store.deliveries,
                                                                           name)))

    def _wrap(self, real):
        def method(*args, **kw):
            if self.on:
                self.refused += 1
                raise StoreFull(f"cannot start a transaction: {FULL}", FULL)
            return real(*args, **kw)
        return method


async def fan_out_then_stop_while_full(store, monkeypatch, nums, ch, *, stop_after: int):
    """A dispatcher sends a fan-out; after the first claim the store is full; once
    ``stop_after`` sends went out it is stopped (what SIGTERM does) while still full; it
    lets go of the store as the daemon does. Returns the FullStore switch (still on)."""
    full = FullStore(store, monkeypatch)
    fan_out_notice(store, None, "melding")
    d = Dispatcher(DISPATCH, store, ch)
    d.acquire()
    real_claim = store.deliveries.claim
    claims = []

    def claim_once_then_full(limit):
        claims.append(1)
        if len(claims) == 1:
            got = real_claim(limit)
            full.on = True  # the disk fills while these are sent
            return got
        return real_claim(limit)

    monkeypatch.setattr(store.deliveries, "claim", claim_once_then_full)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    assert await wait_until(lambda: len(ch.calls) >= stop_after, timeout=5)
    await asyncio.sleep(0.05)
    stop.set()
    with contextlib.suppress(StoreFull):  # the supervisor's pause: the store refused
        await task
    d.release()
    return full


async def start_again(store) -> Scripted:
    """The next start after the stop: a new dispatcher on the store sends what is due
    (after recording the journal) until nothing is; returns its channel."""
    ch = Scripted()
    d = Dispatcher(DISPATCH, store, ch)
    d.acquire()
    try:
        await d.drain()
    finally:
        d.release()
    return ch


async def test_a_stop_while_the_store_is_full_sends_nothing_twice(store, monkeypatch, caplog):
    """All 12 sends of a claim go out while the store is full, with answers of each kind
    (sent, a permanent failure, a rate limit): the store refuses every result, the
    dispatcher stops. Space returns, a new one starts: the journal's results are recorded
    first (sent stays sent, the failure failed, the rate limit waits), the rest is sent,
    and every subscriber has the notice exactly once. (Before the journal: the 10 sent
    went out again.)"""
    nums = subscribers(store, 12)
    ch = Scripted({nums[0]: [SendResult("failed", error="131026 unreachable",
                                        unreachable=True)],
                   nums[1]: [SendResult("retry", error="130429 rate", rate_limit="global",
                                        retry_after=0.2)]}, latency=0.01)
    full = await fan_out_then_stop_while_full(store, monkeypatch, nums, ch, stop_after=12)
    assert full.refused and store.deliveries.counts() == {"sending": 12}
    assert len(SendJournal.open(store.db.path).found()) == 12
    full.on = False  # space returns
    caplog.set_level(logging.INFO, "bridge")
    ch2 = await start_again(store)
    assert ("recorded 12 send results kept in the send journal at the last stop (sent 10,"
            " not sent again; failed 1; to retry 1; 0 recorded before)") in caplog.text
    assert "under way at the last stop" not in caplog.text
    copies = Counter(m.to for m in ch.calls + ch2.calls if m.to != nums[1])
    twice = sum(n - 1 for n in copies.values())
    assert twice == 0 and len(copies) == 11, copies
    assert [m.to for m in ch2.calls] == [nums[1]]  # the rate-limited one, once more
    assert store.deliveries.counts() == {"sent": 11, "failed": 1}
    assert store.open_send_journal().found() == []


async def test_the_sends_not_yet_made_at_the_stop_go_out_after_the_restart(store, monkeypatch):
    """Stopped in the middle of a claim: those sent are in the journal, those not sent
    yet stay under way and go out after the restart: nobody twice, nobody left out."""
    nums = subscribers(store, 12)
    ch = Scripted(latency=0.2)  # 8 at a time (DISPATCH.concurrency): 8 sent, 4 not yet
    await fan_out_then_stop_while_full(store, monkeypatch, nums, ch, stop_after=3)
    monkeypatch.undo()
    sent_first = len(ch.calls)
    assert sent_first == DISPATCH.concurrency == 8
    ch2 = await start_again(store)
    copies = Counter(m.to for m in ch.calls + ch2.calls)
    assert sorted(copies) == sorted(nums) and set(copies.values()) == {1}, copies
    assert len(ch2.calls) == 12 - sent_first


async def test_the_journal_is_cleared_once_the_store_records_the_results(store, monkeypatch):
    """Space returns while the dispatcher runs: the held results are recorded by the next
    group commit and by _record_again, and their records zeroed (nothing replays later)."""
    nums = subscribers(store, 6)
    ch = Scripted({nums[0]: [SendResult("retry", error="1 x")]}, latency=0.01)
    full = FullStore(store, monkeypatch)
    fan_out_notice(store, None, "melding")
    d = Dispatcher(DISPATCH, store, ch)
    d.acquire()
    real_claim = store.deliveries.claim

    def claim(limit):
        got = real_claim(limit)
        if got:
            full.on = True
        return got

    monkeypatch.setattr(store.deliveries, "claim", claim)
    with contextlib.suppress(StoreFull):
        await d.run(asyncio.Event())  # the second claim fails: the loop stops (paused)
    assert d.held.holding == 6 and len(d._unrecorded) == 1
    full.on = False
    monkeypatch.setattr(store.deliveries, "claim", real_claim)
    try:
        await d.drain()
        assert d.held.holding == 0
    finally:
        d.release()
    assert store.open_send_journal().found() == []
    assert store.deliveries.counts() == {"sent": 6}
    assert Counter(m.to for m in ch.calls)[nums[0]] == 2  # the retry, then sent


async def test_a_full_journal_falls_back_to_memory_with_one_warning(store, monkeypatch, caplog):
    """A journal with room for 2 results and 6 sends the store refuses: 2 are journaled,
    4 held in memory only (one WARNING); after a stop those 4 go out again, the 2 not."""
    import bridge.store.sendjournal as sendjournal

    monkeypatch.setattr(sendjournal, "SLOTS", 3)  # the header and 2 records
    nums = subscribers(store, 6)
    caplog.set_level(logging.INFO, "bridge")
    ch = Scripted(latency=0.01)
    await fan_out_then_stop_while_full(store, monkeypatch, nums, ch, stop_after=6)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "send journal" in r.getMessage()]
    assert len(warnings) == 1 and "is full (2 results)" in warnings[0], warnings
    monkeypatch.undo()
    monkeypatch.setattr(sendjournal, "SLOTS", 3)
    ch2 = await start_again(store)
    assert len(ch2.calls) == 4 and store.deliveries.counts() == {"sent": 6}


async def test_a_journal_that_cannot_be_created_is_one_warning_and_sending_goes_on(
        store, monkeypatch, caplog):
    """The disk is full at start: no journal (one WARNING), the dispatcher still starts
    and sends; a store that refuses the recovery at start leaves it to the first run,
    which raises (a pause) until the store takes writes."""
    nums = subscribers(store, 3)
    fan_out_notice(store, None, "melding")

    def no_space():
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "open_send_journal", no_space)
    full = FullStore(store, monkeypatch)
    full.on = True
    caplog.set_level(logging.INFO, "bridge")
    ch = Scripted()
    d = Dispatcher(DISPATCH, store, ch)
    d.acquire()  # does not raise on a full store
    try:
        with pytest.raises(StoreFull):
            await d.drain()
        full.on = False
        await d.drain()
    finally:
        d.release()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        "dispatch: cannot use the send journal "), warnings
    assert "No space left on device" in warnings[0]
    assert sorted(m.to for m in ch.calls) == nums


# --- the store's copy is durable before the journal's copy is zeroed --------------------------


class Syncs:
    """Every fsync and fdatasync this process makes, as (call, file name), in order."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, str]] = []
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._spy(name, getattr(os, name)))

    def _spy(self, name, real):
        def call(fd):
            with contextlib.suppress(OSError):
                self.calls.append((name, os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
            return real(fd)
        return call

    def store_synced_before_the_journal(self, store) -> bool:
        """The journal's file was synced (its slots zeroed) only after the store's WAL."""
        wal = store.db.path.name + "-wal"
        journal = path_for(store.db.path).name
        names = [n for _, n in self.calls]
        assert journal in names, self.calls
        return wal in names and names.index(wal) < names.index(journal)


def test_a_replay_zeroes_the_records_only_once_the_store_has_them_on_disk(store, monkeypatch):
    """The store commits with synchronous=NORMAL (not on disk before a checkpoint): a power
    cut after the journal's records were zeroed (fsynced) but before the WAL reached the
    disk would lose both copies of a result, and the send would go out again. The store's
    WAL is synced first."""
    j = one_send_journaled(store, "wamid.A")
    syncs = Syncs(monkeypatch)
    assert store.replay_sends(j).sent == 1
    assert j.found() == [] and path_for(store.db.path).read_bytes()[SLOT:] == bytes(SIZE - SLOT)
    assert syncs.store_synced_before_the_journal(store), syncs.calls
    j.close()


async def test_held_results_are_zeroed_only_once_the_store_has_them_on_disk(store, monkeypatch):
    """The same for the results the dispatcher held while the store refused them: the
    group commit that records the sent ones, and _record_again for a retry."""
    nums = subscribers(store, 2)
    fan_out_notice(store, None, "melding")
    d = Dispatcher(DISPATCH, store, Scripted())
    d.acquire()
    try:
        claimed = claim_all(store)
        a, b = claimed[nums[0]], claimed[nums[1]]
        d._sent.append(("wamid.A", a.id))
        d.held.hold_sent(d._sent)  # the group commit failed: journaled
        retry = SendResult("retry", error="1 x")
        d.held.hold(b, retry)
        d._unrecorded.append((b, retry, 0.01))
        assert d.held.holding == 2
        syncs = Syncs(monkeypatch)
        d.flush()
        assert d.held.holding == 1 and syncs.store_synced_before_the_journal(store), syncs.calls
        syncs.calls.clear()
        d._record_again()
        assert d.held.holding == 0 and syncs.store_synced_before_the_journal(store), syncs.calls
    finally:
        d.release()
    assert store.open_send_journal().found() == []
    assert store.deliveries.counts() == {"sent": 1, "pending": 1}


async def test_a_fan_out_the_replay_finishes_is_published_as_ended(store, monkeypatch):
    """The whole fan-out (one claim) went out while the store was full, one subscriber
    unreachable; stopped. The next start finishes it by the replay alone (nothing is
    claimed again), and its end is still published (mail back mails the failure), as
    when the dispatcher finishes a fan-out itself."""
    from bridge.events import EventBus, FanOutEnded

    nums = subscribers(store, 6)
    ch = Scripted({nums[0]: [SendResult("failed", error="131026 unreachable",
                                        unreachable=True)]}, latency=0.01)
    await fan_out_then_stop_while_full(store, monkeypatch, nums, ch, stop_after=6)
    monkeypatch.undo()
    events, ended = EventBus(), []
    events.subscribe(FanOutEnded, ended.append)
    ch2 = Scripted()
    d = Dispatcher(DISPATCH, store, ch2, events=events)
    d.acquire()
    try:
        await d.drain()
    finally:
        d.release()
    assert ch2.calls == [] and store.deliveries.counts() == {"sent": 5, "failed": 1}
    assert [(e.recipients, e.failed, e.failures) for e in ended] == [
        (6, 1, (("131026 unreachable", 1),))], ended


async def test_the_message_id_of_a_reply_to_a_non_subscriber_is_not_journaled(
        store, monkeypatch):
    """The store never keeps the channel's message id of a reply to someone who is not a
    subscriber (the Cloud API's wamid encodes the number; mark_sent_many drops it), and
    the dispatcher scrubs the WAL once it is sent: the journal must not keep that id on
    disk either (it would stay there from a stop until the next start). A notice's id is
    journaled (it is recorded)."""
    nums = subscribers(store, 2)
    stranger = "+31699999999"
    store.deliveries.add_reply(to_addr=stranger, channel="console", text="Stuur START",
                               name="help", subscriber_id=None)
    ch = Scripted({stranger: [SendResult.ok("wamid.HBgLMzE2OTk5OTk5OTkVAgARGBI5")]},
                  latency=0.01)
    await fan_out_then_stop_while_full(store, monkeypatch, nums, ch, stop_after=3)
    recs = {r.delivery_id: r for _, r in SendJournal.open(store.db.path).found()}
    reply_id = next(m.delivery_id for m in ch.calls if m.to == stranger)
    assert len(recs) == 3 and recs[reply_id].status == "sent", recs
    assert recs[reply_id].text is None, recs[reply_id]
    assert b"wamid.HBgLMzE2OTk5" not in path_for(store.db.path).read_bytes()
    assert all(r.text == f"id-{i}" for i, r in recs.items() if i != reply_id), recs
    monkeypatch.undo()
    d = Dispatcher(DISPATCH, store, Scripted())
    d.acquire()
    # the replayed reply's number left the store: the WAL is scrubbed soon, as after a send
    assert d._scrub_due
    d.release()
    assert store.deliveries.counts() == {"sent": 3}
