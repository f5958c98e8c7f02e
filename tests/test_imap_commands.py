"""IMAP commands every server parses: UID sets as ranges in batches, folder names in modified
UTF-7, quoted LOGIN arguments or AUTHENTICATE PLAIN, an answer parser without recursion, and
the ``[imap]`` config that describes them. Pure functions first, then against a private
Dovecot set up to be strict (short command lines, odd user names and passwords).
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from imap_helpers import (ROOT, Bridge, Dovecot, bridge, imap_config, outbox, status,  # noqa: F401
                          storing, subscribed, wait_for)


def _parse(table: dict):
    from bridge.config import Section
    from bridge.intake.imap import parse_config

    return parse_config(Section(table, "imap"), Path("/etc/storingsbridge"))


# -- config -------------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    from bridge.config import ConfigError

    s = _parse({"host": "imap.example.nl", "user": "noc", "password_env": "IMAP_PW"})
    assert (s.tls, s.port, s.folder, s.mode) == ("imaps", 993, "INBOX", "idle")
    assert s.processed_folder and s.rejected_folder
    assert s.idle_renew < 29 * 60
    with pytest.raises(ConfigError, match=r"imap\.tls: STARTTLS is not supported: aioimaplib"):
        _parse({"host": "imap.example.nl", "user": "noc", "password_env": "X", "tls": "starttls"})
    with pytest.raises(ConfigError, match=r"imap\.tls: plain IMAP .* loopback"):
        _parse({"host": "imap.example.nl", "user": "noc", "password_env": "X", "tls": "none"})
    assert _parse({"host": "::1", "user": "u", "password_env": "X", "tls": "none"}).port == 143
    with pytest.raises(ConfigError, match=r"imap\.idle_renew"):
        _parse({"host": "h", "user": "u", "password_env": "X", "idle_renew": 1800})
    with pytest.raises(ConfigError, match=r"imap\.processed_folder: must differ"):
        _parse({"host": "h", "user": "u", "password_env": "X", "processed_folder": "inbox"})
    with pytest.raises(ConfigError, match=r"imap\.passwd: unknown key"):
        _parse({"host": "h", "user": "u", "password_env": "X", "passwd": "x"})


def test_config_defaults_come_from_the_dataclass():
    from bridge.intake.imap import ImapSettings

    s = _parse({"host": "h", "user": "u", "password_env": "X"})
    assert s == ImapSettings(host="h", user="u", password_env="X")
    assert (s.auth_mechanism, s.lock_folder, s.pause_retry) == ("auto", "storingsbridge-lock", 300)


def test_folder_names_any_unicode_but_no_wildcards_or_controls():
    from bridge.config import ConfigError

    base = {"host": "h", "user": "kpn storingen", "password_env": "X"}
    s = _parse({**base, "processed_folder": "Storingen R&D", "rejected_folder": "Geweigerd café"})
    assert (s.processed_folder, s.rejected_folder) == ("Storingen R&D", "Geweigerd café")
    assert s.user == "kpn storingen"
    for bad, why in (("Storingen*", r"\* or %"), ("a%b", r"\* or %"), ("a\tb", "control"),
                     (" Processed", "space"), ("", "must not be empty")):
        with pytest.raises(ConfigError, match=rf"imap\.folder: .*{why}"):
            _parse({**base, "folder": bad})
    with pytest.raises(ConfigError, match=r"imap\.auth_mechanism"):
        _parse({**base, "auth_mechanism": "cram-md5"})


def test_bridge_check_refuses_starttls(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [store]
        path = "{tmp_path / 'b.db'}"
        [render]
        templates_dir = "{ROOT / 'templates'}"
        [imap]
        host = "imap.example.nl"
        user = "noc"
        password_env = "IMAP_PW"
        tls = "starttls"
        """))
    p = bridge(cfg, "check", check=False)
    assert p.returncode != 0
    assert "aioimaplib has no STARTTLS" in p.stdout + p.stderr


def test_bridge_check_validates_folder_names(tmp_path):
    def check(folder: str):
        cfg = tmp_path / "c.toml"
        cfg.write_text(textwrap.dedent(f"""\
            [store]
            path = "{tmp_path / 'b.db'}"
            [render]
            templates_dir = "{ROOT / 'templates'}"
            [imap]
            host = "imap.example.nl"
            user = "kpn storingen"
            password_env = "IMAP_PW"
            processed_folder = "{folder}"
            """), encoding="utf-8")
        return bridge(cfg, "check", check=False, env={"IMAP_PW": "x"})

    bad = check("Storingen*")
    assert bad.returncode != 0
    assert "imap.processed_folder: must not contain * or %" in bad.stdout + bad.stderr
    good = check("Storingen R&D café")
    assert "imap." not in good.stdout + good.stderr, good.stdout + good.stderr


# -- UID sets ---------------------------------------------------------------------------------------
def test_uid_sets_are_ranges_in_batches_of_at_most_500():
    from bridge.intake.imap.commands import uid_batches, uid_ranges, uid_set

    assert uid_set(uid_ranges([1, 2, 3, 7, 9, 10])) == "1:3,7,9:10"
    assert uid_set(uid_ranges(range(1, 1501))) == "1:1500"
    batches = uid_batches(range(1, 1743))
    assert [t for _, t in batches] == ["1:500", "501:1000", "1001:1500", "1501:1742"]
    assert sum(len(b) for b, _ in batches) == 1742
    # 1,500 scattered UIDs of 7 digits: each batch fits 8,000 octets and 500 UIDs
    scattered = list(range(1_000_000, 1_006_000, 4))
    batches = uid_batches(scattered, overhead=40)
    assert [u for b, _ in batches for u in b] == scattered
    assert all(len(b) <= 500 and len(t) + 40 <= 8000 for b, t in batches)
    # a shorter line limit splits further
    small = uid_batches(scattered, max_line=1000)
    assert all(len(t) <= 1000 for _, t in small) and len(small) > len(batches)


def test_uid_ranges_span_gaps_only_where_no_other_mail_is():
    from bridge.intake.imap.commands import uid_ranges

    ours = [1, 2, 3, 7, 9, 10]
    # 5 is someone else's mail still in the folder: no range may cover it; 4, 6 and 8 are gone
    assert uid_ranges(ours, present=[1, 2, 3, 5, 7, 9, 10]) == [(1, 3), (7, 10)]
    assert uid_ranges(ours, present=ours) == [(1, 10)]


# -- strings and folder names -----------------------------------------------------------------------
def test_folder_names_in_modified_utf7():
    from bridge.intake.imap.commands import decode_mailbox, encode_mailbox, mailbox_arg

    assert encode_mailbox("Storingen R&D") == "Storingen R&-D"
    assert encode_mailbox("Storingen café") == "Storingen caf&AOk-"
    assert encode_mailbox("Geweigerd – 日本") == "Geweigerd &IBM- &ZeVnLA-"
    assert encode_mailbox("inbox") == "INBOX"
    for name in ("Storingen R&D", "Storingen café", "A&B&C", "Geweigerd – 日本"):
        assert decode_mailbox(encode_mailbox(name)) == name
    assert mailbox_arg('Team "KPN" \\ R&D') == '"Team \\"KPN\\" \\\\ R&-D"'


def test_login_arguments_quoted_or_literal():
    from bridge.intake.imap.commands import quoted, string_args

    assert quoted("kpn storingen") == '"kpn storingen"'
    assert quoted('a"b\\c') == '"a\\"b\\\\c"'
    assert string_args("audun(ughf)@example.com", "pw") == [b'"audun(ughf)@example.com" "pw"']
    # 8-bit text goes as a literal: the line ends in {n}, the octets follow the continuation
    assert string_args("kpn storingen", "sé") == [b'"kpn storingen" {3}', "sé".encode()]
    assert string_args("josé", "pw") == [b"{5}", b'jos\xc3\xa9 "pw"']
    with pytest.raises(ValueError):
        quoted("a\r\nb")


def test_response_codes_decide_the_kind_of_failure():
    from bridge.intake.imap.failures import Failure, Failures, refused

    assert refused("LOGIN", "NO", "[LIMIT] Too many connections", login=True).kind == "busy"
    assert refused("LOGIN", "NO", "[UNAVAILABLE] Try later", login=True).kind == "busy"
    assert refused("SELECT INBOX", "NO", "[INUSE] Mailbox in use").kind == "busy"
    assert refused("LOGIN", "NO", "[AUTHENTICATIONFAILED] Bad", login=True).kind == "login"
    assert refused("LOGIN", "NO", "Login failed", login=True).kind == "login"
    assert refused("UID COPY Processed", "NO", "[OVERQUOTA] Quota exceeded").kind == "permanent"
    assert refused("CREATE x", "NO", "[CANNOT] Invalid name").kind == "permanent"
    assert refused("UID MOVE Processed", "BAD", "Too long argument").kind == "failed"

    # the memory: per command, not reset by another command's success
    f = Failures(backoff_max=60)
    move = Failure("UID MOVE Processed", "BAD Too long argument (0.001 + 0.000 secs).")
    assert [f.failed(move) for _ in range(3)] == [1, 2, 3]
    f.succeeded("SELECT INBOX")
    assert f.count("UID MOVE Processed") == 3
    assert f.delay(move, 3) == 4.0
    assert f.succeeded("UID MOVE Processed") == 3 and f.count("UID MOVE Processed") == 0
    busy = refused("LOGIN", "NO", "[LIMIT] x", login=True)
    assert f.delay(busy, 1) == 5.0 and Failures(2).delay(busy, 1) == 2.0


# -- answers --------------------------------------------------------------------------------------------
def test_parse_fetch_uid_before_and_after_literal():
    from bridge.intake.imap import parse_fetch

    lines = [b"1 FETCH (UID 7 BODY[] {3}", bytearray(b"abc"), b")",
             b"* 2 FETCH (BODY[] {2}", bytearray(b"de"), b" UID 9)",
             b"3 FETCH (FLAGS (\\Seen) UID 4)", b"Fetch completed."]
    assert parse_fetch(lines) == {7: b"abc", 9: b"de"}


def test_parse_fetch_leaves_out_a_mail_answered_without_body():
    from bridge.intake.imap.commands import parse_fetch, parse_list, parse_sizes

    lines = [b"1 FETCH (UID 1 BODY[] NIL)", b"2 FETCH (UID 2 BODY[] {2}", bytearray(b"ok"),
             b")", b"Fetch completed."]
    assert parse_fetch(lines) == {2: b"ok"}
    assert parse_sizes([b"1 FETCH (UID 5 RFC822.SIZE 1234)", b"2 FETCH (RFC822.SIZE 9 UID 6)",
                        b"done"]) == {5: 1234, 6: 9}
    assert parse_list([b'(\\HasNoChildren) "." "Storingen R&-D"', b'LIST () "/" INBOX',
                       b'LIST () "/" {11}', bytearray(b"Caf&AOk- R&-D"), b"done"]) == \
        ["Storingen R&D", "INBOX", "Café R&D"]


async def test_answer_of_5000_lines_is_parsed_without_recursion():
    """A MOVE answered by thousands of "* n EXPUNGE" lines in one read: aioimaplib 2.0.3's
    parser recursed per line (RecursionError in data_received); ours loops."""
    from aioimaplib import SELECTED
    from aioimaplib.aioimaplib import Command

    from bridge.intake.imap.client import _Protocol

    class Transport:
        def __init__(self):
            self.sent = b""

        def write(self, data):
            self.sent += data

    p = _Protocol(asyncio.get_running_loop(), None, lambda d: None)
    p.transport, p.state = Transport(), SELECTED
    cmd = Command("MOVE", p.new_tag(), "1:5000", '"Processed"', prefix="UID",
                  loop=asyncio.get_running_loop())
    task = asyncio.ensure_future(p.execute(cmd))
    await asyncio.sleep(0)
    assert b"UID MOVE 1:5000" in p.transport.sent
    answer = b"".join(b"* %d EXPUNGE\r\n" % 1 for _ in range(5000)) + \
        cmd.tag.encode() + b" OK Move completed.\r\n"
    p.data_received(answer[:30_000])  # two reads, the first ending mid-line
    p.data_received(answer[30_000:])
    resp = await asyncio.wait_for(task, 2)
    assert resp.result == "OK" and len(resp.lines) == 5001


# -- against a strict Dovecot ---------------------------------------------------------------------------
def _append_many(dc: Dovecot, mails: list[bytes]) -> None:
    c = dc.client()
    try:
        for m in mails:
            dc.append(m, client=c)
    finally:
        c.logout()


def test_short_command_lines_and_scattered_uids(tmp_path, subscribed):
    """A server allowing only 1,024-octet command lines, 300 mails with scattered UIDs (every
    other one expunged): the first batch is refused as too long, smaller batches follow, and
    every mail is handled once with a single login."""
    dc = Dovecot(tmp_path / "dovecot", max_line_length=1024).start()
    try:
        _append_many(dc, [storing(n) for n in range(600)])
        c = dc.client()
        try:
            c.select("INBOX")
            for lo in range(1, 601, 100):  # the test's own lines must fit too
                odd = ",".join(str(u) for u in range(lo, lo + 100, 2))
                assert c.uid("STORE", odd, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
            c.expunge()
        finally:
            c.logout()
        assert len(dc.uids("INBOX")) == 300
        cfg = imap_config(tmp_path, dc, timeout=10)
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            wait_for(lambda: len(dc.uids("Processed")) == 300, timeout=120, what="300 moved")
            wait_for(lambda: len(outbox(tmp_path)) == 300, timeout=60, what="300 notices")
        finally:
            assert d.stop() == 0, d.log()
        log = d.log()
        assert "using batches of at most" in log
        assert dc.uids("INBOX") == []
        assert log.count("imap: logged in to") == 1
        assert "reconnecting" not in log and "paused" not in log
        assert status(cfg)["mails"] == {"queued": 300}
    finally:
        dc.cleanup()


def test_folder_names_with_ampersand_and_accents_are_created_and_used(tmp_path, subscribed):
    from imap_helpers import DATA

    dc = Dovecot(tmp_path / "dovecot").start()
    try:
        cfg = imap_config(tmp_path, dc, processed_folder="Storingen R&D",
                          rejected_folder="Geweigerd café")
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            d.wait_connected()
            dc.append(storing(1))
            dc.append((DATA / "07-geen-storing.eml").read_bytes())
            wait_for(lambda: dc.uids("Storingen R&-D") == [1] and
                     dc.uids("Geweigerd caf&AOk-") == [1], timeout=15, what="both moved")
        finally:
            assert d.stop() == 0, d.log()
        c = dc.client()
        try:
            typ, names = c.list()
        finally:
            c.logout()
        listed = b"\n".join(names)
        assert b'"Storingen R&-D"' in listed and b'"Geweigerd caf&AOk-"' in listed
        assert dc.uids("INBOX") == [] and len(outbox(tmp_path)) == 1
    finally:
        dc.cleanup()


@pytest.mark.parametrize("user,mechanism", [
    ("kpn storingen", "auto"),  # AUTHENTICATE PLAIN (offered by Dovecot)
    ("audun(ughf)@example.com", "login"),  # LOGIN: quoted user name, password as a literal
])
def test_odd_user_names_and_passwords_log_in(tmp_path, subscribed, user, mechanism):
    """A user name with a space or parentheses and a password with a quote, a backslash
    and an accent: AUTHENTICATE PLAIN where offered, LOGIN with a quoted user name and the
    password as a literal when asked."""
    dc = Dovecot(tmp_path / "dovecot", user=user, password='sé"cr\\et').start()
    try:
        cfg = imap_config(tmp_path, dc, auth_mechanism=mechanism)
        subscribed(cfg)
        d = Bridge(cfg, dc).start(wait=False)
        try:
            d.wait_connected()
            dc.append(storing(1))
            wait_for(lambda: outbox(tmp_path), timeout=15, what="the notice")
            wait_for(lambda: dc.uids("Processed") == [1], what="moved")
        finally:
            assert d.stop() == 0, d.log()
        assert "failed" not in d.log()
        how = "AUTHENTICATE PLAIN" if mechanism == "auto" else "LOGIN"
        assert f"imap: logged in to 127.0.0.1:{dc.port} as {user!r} ({how})" in d.log()
        assert f"Login: user=<{user}>" in dc.log()
    finally:
        dc.cleanup()
