"""`bridge check`: config (already validated on load), templates and channel settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bridge.config import Config, channel_module
from bridge.core.models import OutageReport


def sample_reports() -> list[OutageReport]:
    """One realistic report for every (kind, status), to render each template against."""
    start = datetime(2026, 11, 28, 8, 42, tzinfo=timezone.utc)
    out = []
    for kind, statuses in (("storing", ("nieuw", "update", "opgelost", "geannuleerd")),
                           ("onderhoud", ("aangekondigd", "update", "opgelost", "geannuleerd"))):
        for i, status in enumerate(statuses):
            end_unknown = kind == "storing" and status == "update"
            out.append(OutageReport(
                ticket="INC000012345678" if kind == "storing" else "CT00012345678",
                kind=kind, status=status,  # type: ignore[arg-type]
                subject=f"Storingsmelding KPN: Internet en VoIP - Amersfoort - {status}",
                services=("internet", "voip"), places=("Amersfoort", "Leusden", "Hoogland"),
                postcodes=("3811", "3812"), start=start,
                end=None if end_unknown else start + timedelta(hours=5 + i),
                end_expected=status not in ("opgelost",), end_unknown=end_unknown,
                downtime_minutes=240 if kind == "onderhoud" else None,
                description="Door graafwerkzaamheden is een *glasvezelkabel* beschadigd.",
                sent_at=start + timedelta(minutes=3 + i)))
    # the fallback template, with as little as a report can have
    out.append(OutageReport(ticket="X1", kind="storing", status="update", subject="Storing"))
    return out


def check_all(cfg: Config) -> list[str]:
    from bridge.pipeline import make_renderer

    problems: list[str] = []
    if not cfg.render.templates_dir.is_dir():
        return [f"{cfg.render.templates_dir}:0: templates folder not found"]
    renderer = make_renderer(cfg)
    problems += renderer.check(sample_reports())
    mod = channel_module(cfg.channel.type)
    check = getattr(mod, "check", None)
    if check:
        problems += check(cfg.channel.settings, renderer, sample_reports())
    return problems
