"""Current, not stale (issue 11, item 7).

* a mail dated more than ``review.max_mail_age_hours`` before it is processed, and a
  maintenance announcement whose window is over, go to review with that reason;
* a notice is written as of the moment it is made: an expected end that has passed is "nog
  onbekend (eerder: 12:00)", a time not on today's date carries the day, a night window names
  both days, postcodes named in the mail are in the notice;
* "now" is a parameter of the core, passed by the shell: ``bridge ingest --now`` and ``bridge
  preview --now`` decide as of another moment; the daemon uses the real clock.

Golden mails in tests/golden/staleness/ (see goldencases.py).
"""

from __future__ import annotations

import ast
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.core.confidence import ReviewRules, doubt
from bridge.core.incidents import decide
from bridge.core.models import Organisation, OutageReport
from bridge.core.render import Renderer, default_notice_text, moment
from bridge.core.render.filters import venster
from daemon import bridge
from goldencases import GOLDEN, case_names, check_case
from helpers import MAILS, ROOT, TEMPLATES, dated_now, mail_date, sample, sample_now, write_config

UTC = timezone.utc
T0 = datetime(2026, 11, 28, 8, 45, tzinfo=UTC)  # 09:45 in Amsterdam


@pytest.mark.parametrize("case", case_names(GOLDEN / "staleness"))
def test_golden_staleness_mails(case):
    check_case(GOLDEN / "staleness", case)


def outage(**kw) -> OutageReport:
    base = dict(ticket="INC1", kind="storing", status="nieuw", subject="s", places=("Ede",),
                start=T0 - timedelta(minutes=3), end=T0 + timedelta(hours=4), end_expected=True,
                sent_at=T0)
    return OutageReport(**{**base, **kw})


# -- the age of a mail ------------------------------------------------------------------------

def test_a_mail_older_than_the_limit_goes_to_review():
    r = outage()
    assert decide(r, None, now=T0 + timedelta(hours=6)).action == "notice"  # at the limit
    d = decide(r, None, now=T0 + timedelta(hours=6, minutes=1))
    assert d.action == "review"
    assert d.reason.startswith("stale mail: dated 2026-11-28 09:45 (Europe/Amsterdam), "
                               "6 h 01 min before it was processed")
    assert "review.max_mail_age_hours (6 h)" in d.reason


def test_the_limit_comes_from_the_rules():
    r = outage()
    strict = ReviewRules(max_mail_age_hours=0.5)
    assert decide(r, None, now=T0 + timedelta(minutes=31), rules=strict).action == "review"
    lax = ReviewRules(max_mail_age_hours=48)
    assert decide(r, None, now=T0 + timedelta(hours=30), rules=lax).action == "notice"


def test_without_now_or_date_the_age_is_not_judged():
    assert decide(outage(), None).action == "notice"
    assert decide(outage(sent_at=None), None, now=T0 + timedelta(days=3)).action == "notice"


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        doubt(outage(), None, datetime(2026, 11, 28, 10, 0))


def test_age_is_reported_in_days_when_long():
    d = decide(outage(), None, now=T0 + timedelta(days=3))
    assert "3 days before it was processed" in d.reason


# -- maintenance window -----------------------------------------------------------------------

def maintenance(**kw) -> OutageReport:
    base = dict(ticket="CT1", kind="onderhoud", status="aangekondigd", subject="s",
                places=("Zwolle",), start=T0 + timedelta(hours=14), end=T0 + timedelta(hours=20),
                sent_at=T0)
    return OutageReport(**{**base, **kw})


def test_a_window_that_ended_goes_to_review_one_under_way_does_not():
    under_way = maintenance(sent_at=T0 + timedelta(hours=14, minutes=30))
    assert decide(under_way, None, now=T0 + timedelta(hours=15)).action == "notice"
    d = decide(maintenance(sent_at=T0 + timedelta(hours=19)), None,
               now=T0 + timedelta(hours=20))
    assert d.action == "review" and "maintenance window already over" in d.reason
    for status in ("opgelost", "geannuleerd"):  # a finished or cancelled window is news
        done = maintenance(status=status, sent_at=T0 + timedelta(hours=20))
        assert decide(done, None, now=T0 + timedelta(hours=21)).action == "notice"


# -- texts as of now --------------------------------------------------------------------------

ORG = Organisation()


@pytest.fixture(scope="module")
def renderer():
    return Renderer(TEMPLATES, ORG)


def test_a_passed_expected_end_is_never_stated_as_expected(renderer):
    r = outage(end=datetime(2026, 11, 28, 11, 0, tzinfo=UTC))  # 12:00 local
    at_1210 = datetime(2026, 11, 28, 11, 10, tzinfo=UTC)
    text = renderer.render_notice(r, now=at_1210).text
    assert "Verwacht herstel: nog onbekend (eerder: 12:00)." in text
    assert "Verwacht herstel: 12:00" not in text
    builtin = default_notice_text(r, ORG, now=at_1210)
    assert "Verwacht herstel: nog onbekend (eerder: 12:00)." in builtin
    update = renderer.render_notice(outage(status="update", end=r.end), previous=r,
                                    now=at_1210).text
    assert "Verwacht herstel: nog onbekend (eerder: 12:00)." in update
    fallback = renderer.render_notice(outage(status=None, end=r.end), now=at_1210).text
    assert "Verwacht einde: nog onbekend (eerder: 12:00)." in fallback
    # before 12:00 the same report states it
    assert "Verwacht herstel: 12:00." in renderer.render_notice(
        r, now=at_1210 - timedelta(minutes=20)).text


def test_a_time_not_on_todays_date_carries_the_day(renderer):
    r = outage(end=datetime(2026, 11, 30, 13, 0, tzinfo=UTC))  # ma 30 nov 14:00
    assert "Verwacht herstel: ma 30 nov 14:00." in renderer.render_notice(r, now=T0).text
    on_monday = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert "Verwacht herstel: 14:00." in renderer.render_notice(r, now=on_monday).text
    # relative to when the notice is made, not to the mail's date
    assert moment(r.end, on_monday) == "14:00"
    assert moment(r.end, T0) == "ma 30 nov 14:00"


@pytest.mark.parametrize("start,end,want", [
    ((2026, 12, 2, 23, 0), (2026, 12, 3, 5, 0), "nacht van wo 2 op do 3 dec, 00:00\u201306:00"),
    ((2026, 11, 30, 21, 0), (2026, 12, 1, 3, 0),
     "nacht van ma 30 nov op di 1 dec, 22:00\u201304:00"),
    ((2026, 12, 3, 0, 30), (2026, 12, 3, 4, 0), "nacht van wo 2 op do 3 dec, 01:30\u201305:00"),
    ((2026, 12, 3, 8, 0), (2026, 12, 3, 11, 0), "do 3 dec 09:00\u201312:00"),
    ((2026, 12, 3, 8, 0), (2026, 12, 5, 11, 0), "do 3 dec 09:00 tot za 5 dec 12:00"),
    ((2026, 12, 2, 23, 0), (2026, 12, 3, 23, 0), "do 3 dec 00:00 tot vr 4 dec 00:00"),
    ((2026, 12, 3, 8, 0), None, "vanaf do 3 dec 09:00"),
    ((2026, 7, 15, 21, 0), (2026, 7, 16, 2, 0), "nacht van wo 15 op do 16 jul, 23:00\u201304:00"),
])
def test_windows_read_unambiguously(start, end, want):
    s = datetime(*start, tzinfo=UTC)
    e = datetime(*end, tzinfo=UTC) if end else None
    assert venster(s, e) == want


def test_postcodes_are_in_every_notice_that_names_places(renderer):
    r = outage(postcodes=("3811", "3812 AB"))
    for kind, status in (("storing", "nieuw"), ("storing", "update"), ("storing", "opgelost"),
                         ("storing", "geannuleerd"), ("onderhoud", "aangekondigd"),
                         ("onderhoud", "update"), ("onderhoud", "opgelost"),
                         ("onderhoud", "geannuleerd"), ("storing", None)):
        rep = OutageReport(**{**r.__dict__, "kind": kind, "status": status})
        text = renderer.render_notice(rep, now=T0).text
        assert "Postcodes: 3811 en 3812 AB." in text, (kind, status, text)
    assert "Postcode: 3811." in renderer.render_notice(outage(postcodes=("3811",)), now=T0).text
    # without places the postcodes are the place ("in postcodegebied ..."), not repeated
    only = renderer.render_notice(outage(places=(), postcodes=("3811",)), now=T0).text
    assert "in postcodegebied 3811" in only and "Postcode:" not in only
    many = renderer.render_notice(outage(postcodes=tuple(str(3800 + i) for i in range(25))),
                                  now=T0).text
    assert "3819 en nog 5." in many


# -- the core reads no clock ------------------------------------------------------------------

def test_the_core_reads_no_clock():
    """"now" is a parameter; only the render deadline reads a (CPU) clock."""
    core = ROOT / "bridge" / "core"
    bad = []
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "now", "utcnow", "today", "time", "monotonic", "perf_counter"):
                if isinstance(node.value, ast.Name) and node.value.id in (
                        "datetime", "date", "time"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}."
                               f"{node.attr}")
    assert bad == []


# -- the shell: --now, the daemon's clock, the demo mail -------------------------------------

def test_ingest_and_preview_take_now(tmp_path):
    cfg = write_config(tmp_path)
    mail = str(MAILS / "01-storing-nieuw.eml")
    p = bridge(cfg, "preview", mail, "--now", "2026-11-28T16:00", check=False)
    assert p.returncode == 1 and "would go to review: stale mail" in p.stdout
    p = bridge(cfg, "preview", mail, "--now", "2026-11-28T14:10")
    assert "Verwacht herstel: nog onbekend (eerder: 14:00)." in p.stdout
    p = bridge(cfg, "preview", mail, "--now", "2026-11-28T09:00:00+00:00")  # 10:00 local
    assert "Verwacht herstel: 14:00." in p.stdout
    p = bridge(cfg, "ingest", "--json", mail, "--now", "2026-11-28T16:00")
    assert json.loads(p.stdout)["outcome"] == "review"
    p = bridge(cfg, "ingest", "--json", str(MAILS / "02-storing-update.eml"),
               "--now", "2026-11-28T12:10")
    assert json.loads(p.stdout)["outcome"] == "queued"
    p = bridge(cfg, "preview", mail, "--now", "morgen", check=False)
    assert p.returncode == 1 and "--now: not an ISO 8601 date and time" in p.stderr


def test_ingest_uses_the_clock_without_now(tmp_path):
    cfg = write_config(tmp_path)
    old = bridge(cfg, "ingest", "--json", str(MAILS / "01-storing-nieuw.eml"))
    doc = json.loads(old.stdout)
    # the shipped samples are dated 2026-11-28; the clock decides whether that is stale
    age = datetime.now(UTC) - mail_date(sample("01"))
    assert doc["outcome"] == ("review" if age > timedelta(hours=6) else "queued")
    f = tmp_path / "now.eml"
    f.write_bytes(sample_now("01"))
    assert json.loads(bridge(cfg, "ingest", "--json", str(f)).stdout)["outcome"] in (
        "queued", "duplicate")


def test_dated_now_moves_every_date_by_one_amount():
    now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    moved = dated_now(sample("01"), now).decode()
    assert "Date: Mon, 01 Mar 2027 13:00:00 +0100" in moved
    assert "Starttijd:          01-03-2027 12:57" in moved  # 3 minutes before, as in the sample
    assert "Verwachte eindtijd: 01-03-2027 17:15" in moved


def demo_bytes(cfg: Path) -> bytes:
    """`bridge demo-mail` output as bytes (CRLF line ends, as SMTP wants them)."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "bridge", "demo-mail", "--config", str(cfg)],
                       capture_output=True, cwd=ROOT, timeout=60, check=True)
    return p.stdout


def test_demo_mail_is_dated_now_and_queued(tmp_path):
    cfg = write_config(tmp_path)
    bridge(cfg, "subscribers", "add", "0612345678")
    f = tmp_path / "demo.eml"
    f.write_bytes(demo_bytes(cfg))
    assert b"\r\n" in f.read_bytes() and b"\n" not in f.read_bytes().replace(b"\r\n", b"")
    age = datetime.now(UTC) - mail_date(f.read_bytes())
    assert timedelta(0) <= age < timedelta(minutes=5)
    assert "Verwacht herstel" in bridge(cfg, "preview", str(f)).stdout
    out = json.loads(bridge(cfg, "ingest", "--json", str(f)).stdout)
    assert out["outcome"] == "queued" and out["queued"] == 1, out
    # preview decides as ingest does (issue 11 item 8): now it is a repeat
    p = bridge(cfg, "preview", str(f), check=False)
    assert p.returncode == 1 and p.stdout.startswith("would be a duplicate: "), p.stdout


def test_readme_try_it_uses_a_mail_dated_now():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    try_it = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    assert "bridge demo-mail" in try_it
    assert ".eml" not in try_it  # no fixed-date sample
    assert Path(ROOT / "bridge" / "demo.py").exists()


def test_readme_try_it_works_on_any_day(tmp_path):
    """The README's "Try it": the daemon (real clock) gets `bridge demo-mail` over SMTP and
    queues its notice."""
    import smtplib

    from daemon import Daemon, wait_for
    from helpers import free_port, read_outbox

    port = free_port()
    cfg = write_config(tmp_path, smtp=True, smtp_port=port)
    bridge(cfg, "subscribers", "add", "06-12345678")
    d = Daemon(cfg, port=port).start()
    try:
        mail = demo_bytes(cfg)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("storingsmeldingen@wholesale.kpn.example", ["noc@localhost"], mail)
        lines = wait_for(lambda: read_outbox(tmp_path), what="the demo notice")
        assert "Storing internet en bellen" in lines[0]["text"]
        assert "Postcodes: 3811, 3812 en 3831." in lines[0]["text"]
    finally:
        assert d.stop() == 0, d.log()


def test_max_mail_age_comes_from_config(tmp_path):
    from bridge.config import ConfigError, load

    cfg = write_config(tmp_path, extra="[review]\nmax_mail_age_hours = 1.5\n")
    assert load(cfg).review == ReviewRules(max_mail_age_hours=1.5, timezone="Europe/Amsterdam")
    mail = str(MAILS / "01-storing-nieuw.eml")  # dated 2026-11-28 09:45
    assert bridge(cfg, "preview", mail, "--now", "2026-11-28T11:10").returncode == 0
    p = bridge(cfg, "preview", mail, "--now", "2026-11-28T11:20", check=False)
    assert "more than review.max_mail_age_hours (1.5 h)" in p.stdout
    for bad in ("0", '"6"', "-1"):
        cfg.write_text(cfg.read_text().replace("max_mail_age_hours = 1.5",
                                               f"max_mail_age_hours = {bad}"))
        with pytest.raises(ConfigError, match="review.max_mail_age_hours"):
            load(cfg)
        cfg.write_text(cfg.read_text().replace(f"max_mail_age_hours = {bad}",
                                               "max_mail_age_hours = 1.5"))
    cfg.write_text(cfg.read_text() + "max_age = 3\n")
    with pytest.raises(ConfigError, match="review.max_age: unknown key"):
        load(cfg)
    defaults = tmp_path / "defaults"
    defaults.mkdir()
    assert load(write_config(defaults)).review.max_mail_age_hours == 6.0
