"""Built-in texts of the replies added for issue 12, and the rule that every reply says
how to stop.

Pure. The texts people get come from ``templates/replies/<name>.j2``; these built-in ones
are used only when such a template is missing or fails (the renderer then falls back).
"""

from __future__ import annotations

from typing import Callable, Mapping

from bridge.core.models import Organisation

__all__ = ["STOP_HINT", "with_stop_hint", "builtin_reply", "QUESTION_OF"]

STOP_HINT = "Geen storingsberichten meer? Stuur STOP."

# Which question a reply asks, for a bare "ja" that answers it within 24 hours.
QUESTION_OF: dict[str, str] = {
    "confirm_stop": "confirm_stop",  # "Wil je geen storingsberichten meer?" -> unsubscribe
    "help": "subscribe",  # "Aanmelden? Antwoord ja ..." -> subscribe
}


def with_stop_hint(text: str) -> str:
    """``text`` with :data:`STOP_HINT` added on a line of its own, unless it already
    tells how to stop (mentions STOP)."""
    if "STOP" in text:
        return text
    return f"{text.rstrip()}\n{STOP_HINT}"


def _sentence(ctx: Mapping[str, object]) -> str:
    s = str(ctx.get("subscribe_sentence") or "")
    return f'\nWil je de berichten juist wel ontvangen? Stuur dan: "{s}"' if s else ""


_BUILTIN: dict[str, Callable[[Organisation, Mapping[str, object]], str]] = {
    "confirm_stop": lambda org, ctx: (
        "Wil je geen storingsberichten meer? Stuur STOP.\n"
        f"Een storing melden of een vraag? Mail {org.support_email}."),
    "not_subscribed": lambda org, ctx: (
        "We konden geen aanmelding vinden voor dit WhatsApp-account, dus je bent niet "
        f"aangemeld voor storingsberichten van {org.name}.\nHeb je je met een ander nummer "
        "aangemeld? Stuur dan STOP vanaf het nummer waarmee je je hebt aangemeld, of mail "
        f"{org.support_email}." + _sentence(ctx)),
    "welcome": lambda org, ctx: (
        f"Hallo! Vanaf nu stuurt {org.name} storingsberichten via dit WhatsApp-nummer: bij "
        "een storing of gepland onderhoud krijg je hier een kort bericht.\nGeen berichten "
        "meer? Stuur STOP, dan melden we je af en verwijderen we je nummer.\n"
        f"Een storing melden? Mail {org.support_email}."),
}


def builtin_reply(name: str, org: Organisation, **ctx: object) -> str | None:
    """The built-in text of reply ``name`` (confirm_stop, not_subscribed, welcome), or
    None when it has none here (the renderer's own defaults cover the others)."""
    make = _BUILTIN.get(name)
    return make(org, ctx) if make else None
