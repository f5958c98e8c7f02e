"""The send journal (bridge/store/sendjournal.py): results the store could not record on a
full disk survive a stop or a crash, so the next start does not send them again."""

from __future__ import annotations

import errno
import os

import pytest

from bridge.store import StoreFull
from bridge.store.sendjournal import (SIZE, SLOT, SLOTS, TEXT_MAX, JournalUnusable, SendJournal,
                                      SendRecord, path_for)
from helpers import fan_out_notice

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


def test_a_replay_the_store_refuses_keeps_the_records(store, monkeypatch):
    subscribers(store, 1)
    fan_out_notice(store, None, "melding")
    (a,) = claim_all(store).values()
    j = store.open_send_journal()
    j.write([SendRecord(a.id, "sent", "id-a")])
    j.close()
    j = store.open_send_journal()

    def full(*args, **kw):
        raise StoreFull(FULL, FULL)

    monkeypatch.setattr(store.deliveries, "mark_sent_many", full)
    with pytest.raises(StoreFull):
        store.replay_sends(j)
    assert len(j.found()) == 1 and store.deliveries.counts() == {"sending": 1}
    monkeypatch.undo()
    assert store.replay_sends(j).sent == 1 and store.deliveries.counts() == {"sent": 1}
