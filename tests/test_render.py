"""Tests for bridge.core.render: filters, templates (golden texts), sandbox and limits.

Golden notice texts live in tests/golden/notices/<name>.txt; run with REGEN=1 to rewrite them
(and then read the diff).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.core import render
from bridge.core.mail import parse_mail
from bridge.core.models import Organisation, OutageReport
from bridge.core.render import (
    Rendered,
    RenderError,
    Renderer,
    dag,
    datum,
    default_notice_text,
    diensten,
    duur,
    fallback_from_subject,
    kort,
    lijst,
    moment,
    normalise,
    shorten,
    tijd,
    wa,
)
from bridge.core.report import extract_report
from helpers import TEMPLATES, raw_mail, utc

GOLDEN = Path(__file__).parent / "golden" / "notices"
REGEN = os.environ.get("REGEN") == "1"

ORG = Organisation()


# Hand-built reports matching the sample mails (times in the mails are Dutch local time,
# CET = UTC+1 in November/December).
R01 = OutageReport(
    ticket="INC000012345678",
    kind="storing",
    status="nieuw",
    subject="Storingsmelding KPN: Internet en VoIP - Amersfoort (INC000012345678) - Nieuw",
    services=("internet", "voip"),
    places=("Amersfoort", "Leusden"),
    postcodes=("3811", "3812", "3831"),
    start=utc(2026, 11, 28, 8, 42),
    end=utc(2026, 11, 28, 13, 0),
    end_expected=True,
    description="Door graafwerkzaamheden is een glasvezelkabel beschadigd. Monteurs zijn onderweg.",
    sent_at=utc(2026, 11, 28, 8, 45),
)
R02 = dataclasses.replace(
    R01,
    status="update",
    subject=R01.subject.replace("Nieuw", "Update"),
    end=utc(2026, 11, 28, 16, 30),
    description="De kabel wordt vervangen. Het herstel duurt langer dan verwacht.",
    sent_at=utc(2026, 11, 28, 11, 5),
)
R03 = dataclasses.replace(
    R01,
    status="opgelost",
    subject=R01.subject.replace("Nieuw", "Opgelost"),
    postcodes=(),
    end=utc(2026, 11, 28, 15, 51),
    end_expected=False,
    description="De storing is verholpen. Mogelijk moet het modem opnieuw worden opgestart.",
    sent_at=utc(2026, 11, 28, 15, 58),
)
R04 = OutageReport(
    ticket="INC000012399001",
    kind="storing",
    status="nieuw",
    subject="Storingsmelding KPN: VoIP - Landelijk (INC000012399001) - Nieuw",
    services=("voip",),
    places=("Landelijk",),
    start=utc(2026, 11, 28, 9, 15),
    end_unknown=True,
    description="Uitgaand bellen naar 0800- en 0900-nummers is niet mogelijk.",
    sent_at=utc(2026, 11, 28, 8, 45),
)
R05 = OutageReport(
    ticket="CT00012345678",
    kind="onderhoud",
    status="aangekondigd",
    subject="Onderhoudsmelding KPN: Internet - Zwolle-Stadshagen (CT00012345678) - Aangekondigd",
    services=("internet",),
    places=("Zwolle-Stadshagen",),
    postcodes=("8043", "8044"),
    start=utc(2026, 12, 2, 23, 0),
    end=utc(2026, 12, 3, 5, 0),
    downtime_minutes=240,
    description="Vervanging van apparatuur in de wijkcentrale.",
    sent_at=utc(2026, 11, 26, 13, 0),
)
R05_UPDATE = dataclasses.replace(
    R05,
    status="update",
    start=utc(2026, 12, 9, 23, 0),
    end=utc(2026, 12, 10, 5, 0),
    description="Het onderhoud is een week verschoven.",
    sent_at=utc(2026, 12, 1, 9, 0),
)
R05_DONE = dataclasses.replace(
    R05,
    status="opgelost",
    end=utc(2026, 12, 3, 4, 10),
    description="Het onderhoud is afgerond. Herstart zo nodig het modem.",
    sent_at=utc(2026, 12, 3, 4, 20),
)
R05_CANCEL = dataclasses.replace(R05, status="geannuleerd", sent_at=utc(2026, 12, 1, 9, 0))
R01_CANCEL = dataclasses.replace(R01, status="geannuleerd", sent_at=utc(2026, 11, 28, 9, 10))
R_NO_STATUS = dataclasses.replace(R01, status=None)

SAMPLES = [R01, R02, R03, R04, R05]

# name -> (report, previous, expected template)
GOLDEN_CASES: dict[str, tuple[OutageReport, OutageReport | None, str]] = {
    "storing_nieuw": (R01, None, "notices/storing_nieuw.j2"),
    "storing_nieuw_eind_onbekend": (R04, None, "notices/storing_nieuw.j2"),
    "storing_update": (R02, R01, "notices/storing_update.j2"),
    "storing_update_zonder_vorige": (R02, None, "notices/storing_update.j2"),
    "storing_update_eind_onbekend": (
        dataclasses.replace(R02, end=None, end_unknown=True),
        R01,
        "notices/storing_update.j2",
    ),
    "storing_opgelost": (R03, R02, "notices/storing_opgelost.j2"),
    "storing_geannuleerd": (R01_CANCEL, R01, "notices/storing_geannuleerd.j2"),
    "onderhoud_aangekondigd": (R05, None, "notices/onderhoud_aangekondigd.j2"),
    "onderhoud_update": (R05_UPDATE, R05, "notices/onderhoud_update.j2"),
    "onderhoud_opgelost": (R05_DONE, R05, "notices/onderhoud_opgelost.j2"),
    "onderhoud_geannuleerd": (R05_CANCEL, R05, "notices/onderhoud_geannuleerd.j2"),
    "fallback": (R_NO_STATUS, None, "notices/fallback.j2"),
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        return
    assert path.exists(), f"missing golden file {path}; run with REGEN=1 and review it"
    assert text == path.read_text(encoding="utf-8").removesuffix("\n")


@pytest.fixture
def tmp_templates(tmp_path: Path) -> Path:
    """A private copy of the real templates, for tests that break or edit them."""
    dst = tmp_path / "templates"
    shutil.copytree(TEMPLATES, dst)
    return dst


def write_template(path: Path, source: str) -> None:
    """Write a template and move its mtime forward so auto_reload sees the change."""
    old = path.stat().st_mtime if path.exists() else time.time()
    path.write_text(source, encoding="utf-8")
    new = max(old, time.time()) + 2
    os.utime(path, (new, new))


# --------------------------------------------------------------------------------------
# Golden texts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden_notice(renderer: Renderer, name: str) -> None:
    report, previous, template = GOLDEN_CASES[name]
    # written as of a fixed moment: five minutes after the mail was sent
    out = renderer.render_notice(report, previous=previous,
                                 now=report.sent_at + timedelta(minutes=5))
    assert out.text == renderer.render_notice(report, previous=previous).text  # None: as sent
    assert out.error is None
    assert not out.fallback
    assert not out.truncated
    assert out.template == template
    assert len(out.text) <= 500
    check_golden(name, out.text)


@pytest.mark.parametrize("name", ["storing_nieuw", "storing_opgelost", "onderhoud_aangekondigd"])
def test_golden_builtin_default(renderer: Renderer, name: str) -> None:
    report, previous, _ = GOLDEN_CASES[name]
    check_golden(f"ingebouwd_{name}", renderer.fallback_text(report, previous=previous))


def test_example_from_brief(renderer: Renderer) -> None:
    """The notice of sample mail 01 has the shape the project started from: a bold headline
    with the services, the places, since when, the expected repair; then the organisation and
    the ticket as reference."""
    text = renderer.render_notice(R01).text
    # issue 11 item 7: the postcodes named in the mail are in the notice
    assert text.startswith(
        "*Storing internet en bellen* in Amersfoort en Leusden sinds za 28 nov 09:42.\n"
        "Postcodes: 3811, 3812 en 3831.\n"
        "Verwacht herstel: 14:00.\n"
    )
    assert text.endswith("\n\n— CBG Connect (ref. INC000012345678)")


def test_key_facts_in_notices(renderer: Renderer) -> None:
    assert "onbekend" in renderer.render_notice(R04).text
    assert "landelijk" in renderer.render_notice(R04).text
    upd = renderer.render_notice(R02, previous=R01).text
    assert "17:30" in upd and "was 14:00" in upd
    done = renderer.render_notice(R03).text
    assert "16:51" in done and "modem" in done
    no_modem = renderer.render_notice(dataclasses.replace(R03, description="Verholpen.")).text
    assert "modem" not in no_modem
    mnt = renderer.render_notice(R05).text
    # issue 11 item 7: a night window names both days
    assert "nacht van wo 2 op do 3 dec, 00:00\u201306:00" in mnt and "4 uur" in mnt
    assert "geannuleerd" in renderer.render_notice(R05_CANCEL).text
    assert "geannuleerd" in renderer.render_notice(R01_CANCEL).text


def test_onderhoud_nieuw_uses_announcement_text(renderer: Renderer) -> None:
    out = renderer.render_notice(dataclasses.replace(R05, status="nieuw"))
    assert out.template == "notices/onderhoud_nieuw.j2"
    assert out.text == renderer.render_notice(R05).text


def test_sparse_report_renders_everywhere(renderer: Renderer) -> None:
    """Templates cope with a report that has hardly any facts."""
    for kind in ("storing", "onderhoud"):
        for status in ("nieuw", "update", "opgelost", "geannuleerd", "aangekondigd", None):
            bare = OutageReport(ticket=None, kind=kind, status=status, subject="")  # type: ignore[arg-type]
            out = renderer.render_notice(bare, previous=bare)
            assert out.error is None, (kind, status, out.error)
            assert out.text and "ref." not in out.text


# --------------------------------------------------------------------------------------
# Resolved notices: only an actual end is the repair time
# --------------------------------------------------------------------------------------

# A resolved notice says when the outage ended ("om 16:51") only when the mail gives an
# actual end; an expected end, an end after the mail was sent or the planned end of a
# maintenance window is never presented as the time of the repair.

RESOLVED = OutageReport(
    ticket="INC000012345678",
    kind="storing",
    status="opgelost",
    subject="Storingsmelding KPN: Internet - Amersfoort (INC000012345678) - Opgelost",
    services=("internet",),
    places=("Amersfoort",),
    start=utc(2026, 11, 28, 8, 42),
    end=utc(2026, 11, 28, 15, 51),
    end_expected=False,
    description="De storing is verholpen.",
    sent_at=utc(2026, 11, 28, 15, 58),
)
EXPECTED_ONLY = dataclasses.replace(RESOLVED, end=utc(2026, 11, 28, 13, 0), end_expected=True)
END_AFTER_MAIL = dataclasses.replace(RESOLVED, end=utc(2026, 11, 28, 17, 0))
MAINTENANCE_DONE = OutageReport(
    ticket="CT00012345678",
    kind="onderhoud",
    status="opgelost",
    subject="Onderhoudsmelding KPN: Internet - Zwolle (CT00012345678) - Afgerond",
    services=("internet",),
    places=("Zwolle",),
    start=utc(2026, 12, 2, 23, 0),
    end=utc(2026, 12, 3, 5, 0),  # "Eindtijd": the end of the planned window
    sent_at=utc(2026, 12, 3, 5, 20),
)


def test_resolved_outage_with_an_actual_end_states_it(renderer):
    for text in (renderer.render_notice(RESOLVED).text, default_notice_text(RESOLVED, ORG)):
        assert "om 16:51" in text


@pytest.mark.parametrize("report", [EXPECTED_ONLY, END_AFTER_MAIL], ids=["expected", "after-mail"])
def test_resolved_outage_never_presents_an_expected_end_as_the_repair_time(renderer, report):
    out = renderer.render_notice(report)
    assert out.template == "notices/storing_opgelost.j2" and not out.fallback
    local = "14:00" if report is EXPECTED_ONLY else "18:00"
    for text in (out.text, default_notice_text(report, ORG)):
        assert local not in text
        assert " om " not in text
        assert "opgelost" in text


def test_resolved_outage_fallback_template_does_not_call_an_expected_end_the_end(renderer, tmp_path):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "notices" / "storing_opgelost.j2").unlink()
    out = Renderer(templates, ORG).render_notice(EXPECTED_ONLY)
    assert out.template == "notices/fallback.j2" and not out.fallback
    assert "14:00" not in out.text and "Einde" not in out.text


def test_finished_maintenance_does_not_present_the_planned_end_as_the_finish_time(renderer):
    out = renderer.render_notice(MAINTENANCE_DONE)
    assert out.template == "notices/onderhoud_opgelost.j2" and not out.fallback
    for text in (out.text, default_notice_text(MAINTENANCE_DONE, ORG)):
        assert "06:00" not in text and " om " not in text
        assert "klaar" in text or "voorbij" in text


def test_resolved_mail_with_only_an_expected_end_gives_no_repair_time(renderer):
    body = ("Beste partner,\r\n\r\nTicketnummer: INC000012345678\r\nStatus: Opgelost\r\n"
            "Starttijd: 28-11-2026 09:42\r\nVerwachte eindtijd: 28-11-2026 14:00\r\n\r\n"
            "Met vriendelijke groet,\r\nKPN\r\n")
    report = extract_report(parse_mail(raw_mail(body, subject="Storing opgelost")))
    assert report.status == "opgelost" and report.end_expected
    text = renderer.render_notice(report).text
    assert "14:00" not in text and "verholpen" in text


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


def test_datum_winter_and_summer() -> None:
    assert datum(utc(2026, 11, 28, 8, 42)) == "za 28 nov 09:42"  # CET, +1
    assert datum(utc(2026, 7, 15, 8, 42)) == "wo 15 jul 10:42"  # CEST, +2
    assert tijd(utc(2026, 7, 15, 8, 42)) == "10:42"
    assert dag(utc(2026, 7, 15, 22, 30)) == "do 16 jul"  # after midnight local time
    # DST change night 2026-03-29: 00:59Z is 01:59 CET, 01:00Z is 03:00 CEST
    assert tijd(utc(2026, 3, 29, 0, 59)) == "01:59"
    assert tijd(utc(2026, 3, 29, 1, 0)) == "03:00"


def test_datum_details() -> None:
    assert datum(None) == "onbekend"
    assert tijd(None) == "onbekend"
    assert datum(datetime(2026, 11, 28, 8, 42)) == "za 28 nov 09:42"  # naive = UTC
    assert datum("2026-11-28T08:42:00+00:00") == "za 28 nov 09:42"
    assert datum(utc(2026, 11, 28, 8, 42), tz="UTC") == "za 28 nov 08:42"
    # no dots, whatever abbreviations the installed Babel/CLDR has
    for month in range(1, 13):
        for day in range(1, 8):
            text = datum(utc(2026, month, day, 12, 0))
            assert "." not in text, text


def test_moment() -> None:
    start = utc(2026, 11, 28, 8, 42)
    assert moment(utc(2026, 11, 28, 13, 0), start) == "14:00"
    assert moment(utc(2026, 11, 29, 13, 0), start) == "zo 29 nov 14:00"
    assert moment(utc(2026, 11, 28, 13, 0)) == "za 28 nov 14:00"
    assert moment(None, start) == "onbekend"
    # 23:30Z is already the next day in Amsterdam
    assert moment(utc(2026, 11, 28, 23, 30), start) == "zo 29 nov 00:30"


def test_lijst() -> None:
    assert lijst(["Amersfoort", "Leusden", "Hoogland"]) == "Amersfoort, Leusden en Hoogland"
    assert lijst(["A", "B"]) == "A en B"
    assert lijst(["A"]) == "A"
    assert lijst([]) == ""
    assert lijst(None) == ""
    assert lijst(("A", "", "  ", "B")) == "A en B"
    assert lijst(["A", "B", "C"], "of") == "A, B of C"


def test_diensten() -> None:
    assert diensten(("internet", "voip")) == ["internet", "bellen"]
    assert diensten(["tv"]) == ["tv"]
    assert diensten(["voip", "VoIP", "internet"]) == ["bellen", "internet"]
    assert diensten("voip") == ["bellen"]
    assert diensten(["zakelijk_ethernet"]) == [wa("zakelijk_ethernet")]
    assert lijst(diensten(("internet", "voip", "tv"))) == "internet, bellen en tv"


def test_wa_escaping() -> None:
    raw = "*vet* _schuin_ ~door~ `code` ```blok```"
    out = wa(raw)
    for marker in "*_~`":
        assert marker not in out
    assert len(out) == len(raw)  # one look-alike per marker, nothing else changed
    assert wa(out) == out  # idempotent
    assert wa("Amersfoort-Centrum (AMF01)") == "Amersfoort-Centrum (AMF01)"
    assert wa(None) == ""
    assert wa(42) == "42"


def test_kort_and_duur() -> None:
    assert kort("een twee drie vier", 100) == "een twee drie vier"
    assert kort("een twee drie vier", 12) == "een twee…"
    assert duur(240) == "4 uur"
    assert duur(30) == "30 minuten"
    assert duur(1) == "1 minuut"
    assert duur(90) == "1 uur en 30 minuten"
    assert duur(None) == ""


def test_normalise() -> None:
    assert normalise("  a  \n\n\n\nb \t\n\n") == "a\n\nb"
    assert normalise("a\r\nb") == "a\nb"


def test_shorten() -> None:
    text = "*Storing internet* in een heel erg lange lijst van plaatsen"
    out, cut = shorten(text, 30)
    assert cut and len(out) <= 30 and out.endswith("…")
    assert text.startswith(out[:-1].rstrip("*"))
    out, cut = shorten("*Storing internet en bellen in Amersfoort*", 20)
    assert cut and out.count("*") % 2 == 0 and len(out) <= 20
    assert shorten("kort", 30) == ("kort", False)


# --------------------------------------------------------------------------------------
# Escaping of mail values in notices
# --------------------------------------------------------------------------------------


def test_mail_values_are_escaped(renderer: Renderer) -> None:
    nasty = dataclasses.replace(
        R01,
        ticket="INC_*1*",
        places=("*Gratis*", "_Leusden_"),
        description="Bel ~nu~ `0800`: *actie*",
    )
    for report in (nasty, dataclasses.replace(nasty, status=None)):
        out = renderer.render_notice(report)
        assert not out.fallback
        assert out.text.count("*") == 2  # only the template's own bold headline
        assert "_" not in out.text and "~" not in out.text and "`" not in out.text
        assert "∗Gratis∗" in out.text
    builtin = renderer.fallback_text(nasty)
    assert builtin.count("*") == 2 and "_" not in builtin


# --------------------------------------------------------------------------------------
# Failures, sandbox and limits
# --------------------------------------------------------------------------------------


def test_strict_undefined_falls_back(tmp_templates: Path) -> None:
    write_template(tmp_templates / "notices/storing_nieuw.j2", "regel 1\n{{ r.bestaat_niet }}\n")
    r = Renderer(tmp_templates, ORG)
    out = r.render_notice(R01)
    assert out.fallback
    assert out.template == "notices/storing_nieuw.j2"
    assert out.error and "UndefinedError" in out.error and "storing_nieuw.j2:2" in out.error
    assert out.text == r.fallback_text(R01)
    assert "Amersfoort en Leusden" in out.text and "INC000012345678" in out.text


def test_syntax_error_falls_back(tmp_templates: Path) -> None:
    write_template(tmp_templates / "notices/storing_nieuw.j2", "{% if %}\n")
    out = Renderer(tmp_templates, ORG).render_notice(R01)
    assert out.fallback and "TemplateSyntaxError" in (out.error or "")


def test_sandbox_blocks_internals(tmp_templates: Path) -> None:
    for source in (
        "{{ ''.__class__.__mro__ }}",
        "{{ r.__class__.__init__.__globals__ }}",
        "{{ r.to_json.__func__ }}",
    ):
        write_template(tmp_templates / "notices/storing_nieuw.j2", source)
        out = Renderer(tmp_templates, ORG).render_notice(R01)
        assert out.fallback, source
        assert "SecurityError" in (out.error or ""), out.error
        assert "<class" not in out.text


def test_builtin_mutation_blocked(tmp_templates: Path) -> None:
    write_template(tmp_templates / "notices/storing_nieuw.j2", "{% set l = [] %}{{ l.append(1) }}x")
    out = Renderer(tmp_templates, ORG).render_notice(R01)
    assert out.fallback and "SecurityError" in (out.error or "")


# The limits below are in CPU time (Renderer.time_limit is CPU seconds), and so are the
# bounds the tests put on how long a stopped render took: on a busy machine the wall time
# of the same work is several times longer.


def test_cpu_bomb_is_stopped(tmp_templates: Path) -> None:
    write_template(
        tmp_templates / "notices/storing_nieuw.j2",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    )
    r = Renderer(tmp_templates, ORG, time_limit=0.3)
    started = time.process_time()
    out = r.render_notice(R01)
    elapsed = time.process_time() - started
    assert out.fallback
    assert "RenderLimitError" in (out.error or "") and "longer than 0.3" in (out.error or "")
    assert elapsed < 2.0
    assert out.text == r.fallback_text(R01)


def test_previous_tracer_is_restored(tmp_templates: Path) -> None:
    write_template(
        tmp_templates / "notices/storing_nieuw.j2",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    )
    r = Renderer(tmp_templates, ORG, time_limit=0.1)

    def tracer(frame, event, arg):  # noqa: ANN001, ANN202
        return None

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        r.render_notice(R01)  # stopped by the deadline
        assert sys.gettrace() is tracer
        Renderer(TEMPLATES, ORG).render_notice(R01)  # normal render
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(before)


def test_python_level_loop_in_filter_is_stopped(tmp_templates: Path) -> None:
    # the time goes into Jinja's batch filter and C-level sum(), not into template lines
    write_template(
        tmp_templates / "notices/storing_nieuw.j2", "{{ range(100000)|batch(1)|sum(start=[]) }}"
    )
    started = time.process_time()
    out = Renderer(tmp_templates, ORG, time_limit=0.3).render_notice(R01)
    assert out.fallback and "RenderLimitError" in (out.error or "")
    assert time.process_time() - started < 3.0


def test_output_bomb_is_stopped(tmp_templates: Path) -> None:
    write_template(
        tmp_templates / "notices/storing_nieuw.j2",
        "{% for a in range(100000) %}{% for b in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
    )
    r = Renderer(tmp_templates, ORG, max_output=10000)
    started = time.process_time()
    out = r.render_notice(R01)
    assert out.fallback
    assert "output exceeds 10000" in (out.error or "")
    assert time.process_time() - started < 1.0


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 1000000000 }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'|indent(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ '{:>{w}}'.format(1, w=1000000000) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%1000000000d'|format(1) }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ ('x' * 60000)|replace('', 'y' * 60000) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s|length }}{% endmacro %}{{ d('x', 40) }}",
    ],
)
def test_allocation_bombs_are_refused(tmp_templates: Path, source: str) -> None:
    write_template(tmp_templates / "notices/storing_nieuw.j2", source)
    started = time.process_time()
    out = Renderer(tmp_templates, ORG).render_notice(R01)
    assert out.fallback, source
    assert "SecurityError" in (out.error or "") or "RenderLimitError" in (out.error or "")
    assert time.process_time() - started < 2.0


def test_missing_templates(tmp_templates: Path) -> None:
    r = Renderer(tmp_templates, ORG)
    (tmp_templates / "notices/storing_update.j2").unlink()
    out = r.render_notice(R02, previous=R01)
    assert out.template == "notices/fallback.j2" and not out.fallback
    (tmp_templates / "notices/fallback.j2").unlink()
    out = r.render_notice(R02, previous=R01)
    assert out.fallback and "not found" in (out.error or "")
    assert "17:30" in out.text
    # odd kind/status values never reach the file system
    weird = dataclasses.replace(R01, status="../../etc/passwd")  # type: ignore[arg-type]
    assert r.notice_template_name(weird) == "notices/fallback.j2"


def test_auto_reload(tmp_templates: Path) -> None:
    r = Renderer(tmp_templates, ORG)
    path = tmp_templates / "notices/storing_nieuw.j2"
    first = r.render_notice(R01)
    assert "Verwacht herstel" in first.text
    write_template(path, path.read_text(encoding="utf-8").replace("Verwacht herstel", "Klaar rond"))
    second = r.render_notice(R01)
    assert not second.fallback
    assert "Klaar rond: 14:00." in second.text and "Verwacht herstel" not in second.text


def test_truncation(tmp_templates: Path) -> None:
    r = Renderer(TEMPLATES, ORG, max_length=120)
    long = dataclasses.replace(R01, description="Heel lange omschrijving " * 30)
    out = r.render_notice(long)
    assert out.truncated and not out.fallback
    assert len(out.text) <= 120 and out.text.endswith("…")
    assert out.text.count("*") % 2 == 0
    # the cut is at a word boundary: the text minus "…" is a prefix ending in a whole word
    full = Renderer(TEMPLATES, ORG, max_length=10000).render_notice(long).text
    body = out.text[:-1]
    assert full.startswith(body) and full[len(body)] in " \n"
    # the built-in fallback text obeys max_length too
    assert len(r.fallback_text(long)) <= 120


# --------------------------------------------------------------------------------------
# check()
# --------------------------------------------------------------------------------------


def test_check_real_templates_clean(renderer: Renderer) -> None:
    assert renderer.check(SAMPLES) == []
    assert renderer.check([]) == []  # built-in example report


def test_check_reports_syntax_error_line(tmp_templates: Path) -> None:
    path = tmp_templates / "notices/storing_nieuw.j2"
    write_template(path, "regel 1\nregel 2\n{% if r.start %}\nzonder einde\n")
    write_template(tmp_templates / "replies/help.j2", "Hallo\n{{ org.name }\n")
    problems = Renderer(tmp_templates, ORG).check(SAMPLES)
    assert any(p.startswith(f"{path}:") and "syntax error" in p for p in problems), problems
    syntax = [p for p in problems if p.startswith(f"{path}:")][0]
    assert int(syntax.split(":")[1]) in (3, 4, 5)
    help_path = tmp_templates / "replies/help.j2"
    assert any(p.startswith(f"{help_path}:2: syntax error") for p in problems), problems


def test_check_reports_runtime_error_line(tmp_templates: Path) -> None:
    path = tmp_templates / "notices/storing_update.j2"
    write_template(path, "a\nb\n{{ r.nope }}\n")
    problems = Renderer(tmp_templates, ORG).check(SAMPLES)
    assert problems and all(p.startswith(f"{path}:3: ") for p in problems), problems
    assert "UndefinedError" in problems[0]


def test_check_reports_limits_and_length(tmp_templates: Path) -> None:
    bomb = tmp_templates / "notices/storing_opgelost.j2"
    write_template(bomb, "x\n{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
    out = tmp_templates / "notices/storing_geannuleerd.j2"
    write_template(out, "x\n\n{% for a in range(100000) %}yyyyyyyyyy{% endfor %}")
    problems = Renderer(tmp_templates, ORG, time_limit=0.1, max_output=5000).check(SAMPLES)
    assert any(p.startswith(f"{bomb}:2: ") and "longer than" in p for p in problems), problems
    assert any(p.startswith(f"{out}:3: ") and "output exceeds" in p for p in problems), problems
    warnings = Renderer(TEMPLATES, ORG, max_length=50).check(SAMPLES)
    assert warnings and all("warning" in w and "max_length 50" in w for w in warnings)


# --------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------

SENTENCE = "Aanmelden storingsberichten"


def test_replies(renderer: Renderer) -> None:
    def reply(name: str) -> str:
        out = renderer.render_reply(name, subscribe_sentence=SENTENCE)
        assert not out.fallback and out.error is None, (name, out.error)
        assert out.template == f"replies/{name}.j2"
        return out.text

    assert "Stuur STOP om je af te melden" in reply("subscribed")
    assert "al aangemeld" in reply("already_subscribed")
    unsub = reply("unsubscribed")
    assert "verwijderd" in unsub and f'"{SENTENCE}"' in unsub
    assert "niet aangemeld" in reply("not_subscribed")
    help_text = reply("help")
    assert ORG.support_email in help_text and "STOP" in help_text and SENTENCE in help_text
    assert (
        "Via WhatsApp kunnen we geen storingen aannemen; mail support@cbgconnect.nl, "
        "dan maken we direct een ticket voor je aan."
    ) in reply("support")
    # subscribe_sentence is optional
    assert not renderer.render_reply("unsubscribed").fallback


def test_reply_fallbacks(tmp_templates: Path) -> None:
    r = Renderer(tmp_templates, ORG)
    for name in ("subscribed", "already_subscribed", "unsubscribed", "not_subscribed", "help", "support"):
        (tmp_templates / f"replies/{name}.j2").unlink()
        out = r.render_reply(name, subscribe_sentence=SENTENCE)
        assert out.fallback and "not found" in (out.error or ""), name
        assert out.text
    assert "Stuur STOP" in r.render_reply("subscribed").text
    assert SENTENCE in r.render_reply("unsubscribed", subscribe_sentence=SENTENCE).text
    assert ORG.support_email in r.render_reply("support").text
    unknown = r.render_reply("bestaat_niet")
    assert unknown.fallback and "help" in (unknown.error or "")
    assert r.render_reply("../notices/storing_nieuw").fallback
    write_template(tmp_templates / "replies/help.j2", "{{ ''.__class__ }}")
    assert r.render_reply("help").fallback


# --------------------------------------------------------------------------------------
# Punctuation: no double full stops in replies and notices
# --------------------------------------------------------------------------------------
# The subscribe sentence ends in a full stop; quoting it must not add another.


def test_no_reply_or_notice_template_renders_a_double_full_stop(app):
    from bridge.checks import sample_reports

    renderer, sentence = app.renderer, app.inbound.subscribe_sentence
    assert sentence.endswith(".")
    texts = {}
    for path in sorted((TEMPLATES / "replies").glob("*.j2")):
        for ctx in ({"subscribe_sentence": sentence}, {}):
            out = renderer.render_reply(path.stem, **ctx)
            assert not out.fallback, (path.name, out.error)
            texts[f"{path.name} {sorted(ctx)}"] = out.text
    reports = sample_reports()
    for path in sorted((TEMPLATES / "notices").glob("*.j2")):
        for i, report in enumerate(reports):
            if path.stem != "fallback" and path.stem != f"{report.kind}_{report.status}":
                continue
            out = renderer.render_notice(report, previous=reports[i - 1] if i else None)
            assert not out.fallback, (path.name, out.error)
            texts[f"{path.name} sample {i}"] = out.text
    # and the built-in texts that stand in when a reply template fails
    from bridge.core.render import _REPLY_DEFAULTS, default_reply_text

    for name in _REPLY_DEFAULTS:
        for ctx in ({"subscribe_sentence": sentence}, {}):
            texts[f"built-in {name} {sorted(ctx)}"] = default_reply_text(
                name, renderer.org, **ctx)
    assert any(sentence in t for t in texts.values())
    for name, text in texts.items():
        assert '.".' not in text and ".." not in text, (name, text)


# --------------------------------------------------------------------------------------
# Organisation from config, no hard-coded name
# --------------------------------------------------------------------------------------


def test_org_from_config() -> None:
    org = Organisation(name="Dorpsnet", support_email="hulp@dorpsnet.example", whatsapp_number="0")
    r = Renderer(TEMPLATES, org)
    for report, previous, _ in GOLDEN_CASES.values():
        text = r.render_notice(report, previous=previous).text
        assert "— Dorpsnet" in text and "CBG" not in text
        assert "— Dorpsnet" in r.fallback_text(report)
    assert "hulp@dorpsnet.example" in r.render_reply("support").text
    assert "Dorpsnet" in r.render_reply("subscribed").text
    assert "Dorpsnet" in fallback_from_subject("Onderwerp", "Regel", org)


def test_no_hard_coded_org_name() -> None:
    assert "CBG" not in Path(render.__file__).read_text(encoding="utf-8")
    for path in TEMPLATES.rglob("*.j2"):
        assert "CBG" not in path.read_text(encoding="utf-8"), path


def test_core_stays_pure() -> None:
    source = Path(render.__file__).read_text(encoding="utf-8")
    for forbidden in ("asyncio", "bridge.store", "bridge.intake", "bridge.channels", "bridge.app"):
        assert forbidden not in source


# --------------------------------------------------------------------------------------
# render_string, fallback helpers
# --------------------------------------------------------------------------------------


def test_render_string(renderer: Renderer) -> None:
    ctx = renderer.notice_context(R01)
    assert renderer.render_string("r.places|lijst", ctx) == "Amersfoort en Leusden"
    assert renderer.render_string("r.start|datum", ctx) == "za 28 nov 09:42"
    assert renderer.render_string("'vast'", ctx) == "vast"
    assert renderer.render_string("{{ org.name }}: {{ diensten }}", ctx) == "CBG Connect: internet en bellen"
    assert renderer.render_string("{{ x|wa }}", {"x": "*a*"}) == "∗a∗"
    with pytest.raises(RenderError):
        renderer.render_string("onbekend_ding", ctx)
    with pytest.raises(RenderError):
        renderer.render_string("''.__class__.__mro__", ctx)
    with pytest.raises(RenderError):
        renderer.render_string("{{ x", ctx)


def test_render_string_limits() -> None:
    r = Renderer(TEMPLATES, ORG, time_limit=0.2, max_output=1000)
    started = time.process_time()
    with pytest.raises(RenderError, match="longer than"):
        r.render_string(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", {}
        )
    with pytest.raises(RenderError, match="longer than"):
        r.render_string("range(100000)|batch(1)|sum(start=[])", {})
    with pytest.raises(RenderError, match="output exceeds"):
        r.render_string("{% for a in range(100000) %}xxxxxxxxxx{% endfor %}", {})
    with pytest.raises(RenderError):
        r.render_string("'x' * 100000", {})
    assert time.process_time() - started < 3.0


def test_fallback_from_subject() -> None:
    text = fallback_from_subject(
        "Storingsmelding KPN: *Internet* - Amersfoort",
        "Beste partner,\n\nEr is een _storing_ vastgesteld.\n" + "bla " * 200,
        ORG,
    )
    assert text.count("*") == 2  # only "*Melding over je verbinding*"
    assert "∗Internet∗" in text and "_" not in text
    assert ORG.support_email in text and ORG.name in text
    assert len(text) < 600


def test_default_notice_text_never_raises() -> None:
    broken = OutageReport(
        ticket=None, kind="storing", status="nieuw", subject="Onderwerp *x*", start="geen datum"  # type: ignore[arg-type]
    )
    text = default_notice_text(broken, ORG)
    assert text and ORG.name in text


def test_rendered_is_frozen(renderer: Renderer) -> None:
    out = renderer.render_notice(R01)
    assert isinstance(out, Rendered)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.text = "x"  # type: ignore[misc]


def test_summer_notice_shows_local_time(renderer: Renderer) -> None:
    summer = dataclasses.replace(
        R01,
        start=utc(2026, 7, 15, 8, 42),
        end=utc(2026, 7, 15, 12, 0),
        sent_at=utc(2026, 7, 15, 8, 50),
    )
    text = renderer.render_notice(summer).text
    assert "sinds wo 15 jul 10:42" in text and "Verwacht herstel: 14:00." in text


def test_wijzigingen_context(renderer: Renderer) -> None:
    assert renderer.notice_context(R02)["wijzigingen"] == ()
    changes = renderer.notice_context(R02, R01)["wijzigingen"]
    assert "status" in changes and "eind" in changes and "omschrijving" in changes
    assert "start" not in changes
    assert renderer.notice_context(R03)["modem_tip"] is True
    assert renderer.notice_context(R04)["waar"] == "landelijk"
    no_places = dataclasses.replace(R01, places=())
    assert renderer.notice_context(no_places)["waar"] == "in postcodegebied 3811, 3812 en 3831"


# --- the editable layer over the shipped templates (bridge.templates) --------------------------


def test_an_edited_copy_wins_from_the_next_render_and_going_back_too(tmp_path):
    import shutil
    import time

    from bridge.core.models import Organisation
    from bridge.core.render import Renderer
    from bridge.templates import template_loader

    shipped = tmp_path / "templates"
    shutil.copytree(TEMPLATES, shipped)
    edited = tmp_path / "var" / "templates"
    r = Renderer(shipped, Organisation(), loader=template_loader(shipped, edited))
    report = OutageReport(ticket="T1", kind="storing", status="nieuw", subject="s",
                          places=("Baarn",))
    assert "Baarn" in r.render_notice(report).text
    (edited / "notices").mkdir(parents=True)
    (edited / "notices" / "storing_nieuw.j2").write_text("bewerkt: {{ plaatsen }}")
    assert r.render_notice(report).text == "bewerkt: Baarn"  # no restart, no cache clearing
    time.sleep(0.01)
    (edited / "notices" / "storing_nieuw.j2").unlink()
    assert r.render_notice(report).text != "bewerkt: Baarn"
    # other templates still come from the shipped folder; check names the edited file
    (edited / "notices" / "storing_update.j2").write_text("{{ nope }}")
    problems = r.check([report])
    assert any(p.startswith(str(edited / "notices" / "storing_update.j2") + ":1:")
               for p in problems), problems
