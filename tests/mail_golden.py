"""Golden mails beside their subject: raw mail -> outcome (with its reason and decoding
notes) and report JSON, as the pipeline decides them.

``tests/golden/<subject>/<case>.eml`` -> ``<case>.json``. The verdict is the pipeline's
pure part (``analysis.read_mail``, ``core.admission.admit``, ``analysis.read_report``,
``core.incidents.decide`` for the first report of its incident), without the store and
without the clock: it does not depend on today's date. ``REGEN=1`` rewrites the JSON; read
every changed file before committing it.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path

from bridge.config import Config, parse
from bridge.core import incidents as core_incidents
from bridge.core.admission import admit
from bridge.core.mail import MailError
from bridge.analysis import decoding_note, read_mail, read_report
from helpers import dated_now  # noqa: F401  (the golden tests take it from here)

GOLDEN = Path(__file__).parent / "golden"

# The senders of the shipped samples (and the field cases): KPN at kpn.example, support
# forwarding from support@cbgconnect.example.
CONFIG: Config = parse({"senders": {"kpn": ["kpn.com", "kpn.example"],
                                    "forwarders": ["support@cbgconnect.example"]}},
                       Path(__file__).parent / "config.toml")


def cases(subject: str) -> list[str]:
    return sorted(p.stem for p in (GOLDEN / subject).glob("*.eml"))


def judge(raw: bytes, cfg: Config = CONFIG) -> dict:
    """What processing decides for ``raw`` as the first mail of its incident."""
    try:
        mail = read_mail(raw, cfg)
    except MailError as e:
        return {"outcome": "rejected", "reason": f"not a readable mail: {e}", "report": None}
    out: dict = {"forward": mail.forward, "notes": list(mail.notes)}
    admission = admit(mail, cfg.senders, cfg.automatic)
    if admission.outcome != "accept":
        return {"outcome": admission.outcome, "reason": admission.reason + decoding_note(mail),
                **out, "report": None}
    report = read_report(mail, cfg)
    decision = core_incidents.decide(report, None)
    if decision.action == "notice":
        return {"outcome": "queued", **out, "report": report.to_json()}
    return {"outcome": "review", "reason": decision.reason + decoding_note(mail), **out,
            "report": report.to_json()}


def check(subject: str, case: str) -> dict:
    """Judge ``tests/golden/<subject>/<case>.eml`` and compare with its ``.json``."""
    got = judge((GOLDEN / subject / f"{case}.eml").read_bytes())
    text = json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path = GOLDEN / subject / f"{case}.json"
    if os.environ.get("REGEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing; run with REGEN=1 and check it by hand"
    assert text == path.read_text(encoding="utf-8"), f"{subject}/{case}"
    return got


def golden_mail(subject: str, case: str) -> bytes:
    return (GOLDEN / subject / f"{case}.eml").read_bytes()
