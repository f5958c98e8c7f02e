"""Golden cases of the whole pure chain, decided and rendered as of a fixed moment.

A case is three files beside its subject (tests/golden/<subject>/):

* ``<case>.eml`` -- the raw mail;
* ``<case>.json`` -- ``{"now": ISO 8601, "previous": <case> or null, "outcome": "notice" |
  "review" | "duplicate" | "outdated", "reason": <a part of the reason>, "report": <the
  report JSON>}``. ``previous`` names another case in the same folder whose report is the
  incident's last notice (for updates);
* ``<case>.txt`` -- for outcome ``notice``: the exact notice the shipped templates make as of
  ``now``.

REGEN=1 rewrites ``report`` and the ``.txt`` files (never ``now``, ``outcome`` or
``reason``); read every changed text before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from bridge.core.incidents import IncidentState, decide
from bridge.core.mail import parse_mail
from bridge.core.models import Organisation, OutageReport
from bridge.core.render import Renderer
from bridge.core.report import extract_report

GOLDEN = Path(__file__).parent / "golden"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
REGEN = os.environ.get("REGEN") == "1"
_RENDERER: list[Renderer] = []


def case_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.eml"))


def renderer() -> Renderer:
    if not _RENDERER:
        _RENDERER.append(Renderer(TEMPLATES, Organisation()))
    return _RENDERER[0]


def report_of(folder: Path, case: str) -> OutageReport:
    return extract_report(parse_mail((folder / f"{case}.eml").read_bytes()))


def check_case(folder: Path, case: str) -> None:
    """Run one case: the report, the decision as of ``now`` and the notice text."""
    spec_path = folder / f"{case}.json"
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    now = datetime.fromisoformat(spec["now"])
    assert now.tzinfo is not None, f"{case}: now needs an offset"
    report = report_of(folder, case)
    previous = report_of(folder, spec["previous"]) if spec.get("previous") else None
    known = IncidentState(1, previous.status, previous) if previous else None  # type: ignore[arg-type]
    decision = decide(report, known, now=now)
    golden_txt = folder / f"{case}.txt"
    text = None
    if decision.action == "notice":
        rendered = renderer().render_notice(decision.report or report, previous=previous,
                                            now=now)
        assert not rendered.fallback, rendered.error
        assert len(rendered.text) <= 700
        text = rendered.text
    if REGEN:
        spec["report"] = report.to_json()
        spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=False)
                             + "\n", encoding="utf-8")
        if text is not None:
            golden_txt.write_text(text + "\n", encoding="utf-8")
    assert report.to_json() == spec["report"], case
    assert OutageReport.from_json(spec["report"]) == report
    assert decision.action == spec["outcome"], (case, decision)
    assert spec["reason"] in decision.reason, (case, decision.reason)
    if text is None:
        assert not golden_txt.exists(), f"{case} is not a notice; it has no .txt"
    else:
        assert text + "\n" == golden_txt.read_text(encoding="utf-8")
