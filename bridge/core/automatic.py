"""Automatic mail: out-of-office replies, read receipts, bounces and other mail that software
sent by itself. Such a mail is never a report, whoever sent it (pure).

Recognised by every signal mail software uses, each list in :class:`AutomaticRules` (config
``[automatic]``):

* RFC 3834 ``Auto-Submitted`` with any value but ``no`` (``auto-replied``: an auto-reply;
  ``auto-generated``, ``auto-notified``: other automatic mail);
* ``multipart/report`` (RFC 6522) by its report-type: ``delivery-status`` is a bounce (DSN,
  RFC 3464), ``disposition-notification`` a read receipt (MDN, RFC 8098);
* ``Precedence: auto_reply`` (an auto-reply), ``bulk``, ``junk``;
* headers of auto-responders and mail servers (``X-Autoreply``, ``X-Autorespond``,
  ``X-Failed-Recipients``, Microsoft's ``X-MS-Exchange-Message-Is-Ndr``), and Microsoft's
  ``X-Auto-Response-Suppress`` on a reply (Exchange's out-of-office answers carry it; a
  sender that only asks not to be answered does not count);
* a null ``Return-Path: <>`` (RFC 5321 4.5.5: bounces and auto-replies are sent with it) and
  senders ``MAILER-DAEMON@`` and ``postmaster@``;
* Dutch and English subject prefixes of auto-replies ("Automatisch antwoord:", "Out of
  Office:"), read receipts ("Gelezen:", "Read:") and bounces ("Onbestelbaar:",
  "Undeliverable:", "Delivery Status Notification").

Each level of the mail is looked at: the mail as received and a forwarded original (an
attached one with all its headers; an inline one by its subject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from bridge.core.mail import clean_subject
from bridge.core.models import Envelope, ParsedMail

__all__ = ["AutomaticMail", "AutomaticRules", "DEFAULT_RULES", "KINDS", "detect",
           "rules_from_config"]

# What a signal says the mail is, from most to least specific: the first kind found in this
# order names the mail.
KINDS = {
    "bounce": "delivery-status bounce",
    "read-receipt": "read receipt",
    "out-of-office": "out-of-office reply",
    "automatic": "automatic mail",
}


@dataclass(frozen=True)
class AutomaticRules:
    """The signals of automatic mail. Header names and values are compared case-insensitively;
    a subject phrase matches at the start of the subject (after Re:/Fw: prefixes) as whole
    words."""

    # RFC 3834: every Auto-Submitted value but "no" marks automatic mail; values listed here
    # do not count (add "auto-generated" if your KPN sender marks its reports with it)
    auto_submitted_except: tuple[str, ...] = ("no",)
    # Precedence values (RFC 3834 5.1 asks responders to skip these); auto_reply is an
    # auto-reply, the others automatic mail
    precedence: tuple[str, ...] = ("auto_reply", "bulk", "junk")
    # header present (any value) -> kind (a key of KINDS)
    headers: tuple[tuple[str, str], ...] = (
        ("X-Autoreply", "out-of-office"),
        ("X-Autorespond", "out-of-office"),
        ("X-Autoresponder", "out-of-office"),
        ("X-Autoreply-From", "out-of-office"),
        ("X-Mail-Autoreply", "out-of-office"),
        ("X-Failed-Recipients", "bounce"),
        ("X-MS-Exchange-Message-Is-Ndr", "bounce"),
    )
    # X-Auto-Response-Suppress on a reply (In-Reply-To, a reply subject, or Exchange's
    # X-MS-Exchange-Inbox-Rules-Loop) is an auto-reply
    auto_response_suppress_on_replies: bool = True
    # Return-Path: <> (the null reverse-path) marks automatic mail
    null_return_path: bool = True
    # local parts of bounce senders
    bounce_senders: tuple[str, ...] = ("mailer-daemon", "postmaster")
    out_of_office_subjects: tuple[str, ...] = (
        "Automatisch antwoord:", "Automatisch bericht:", "Afwezig:", "Afwezigheid:",
        "Afwezigheidsbericht:", "Niet aanwezig:", "Out of Office:", "Out of Office Reply:",
        "Out of the office:", "Automatic reply:", "Auto reply:", "Autoreply:", "Auto-reply:",
        "Auto response:", "Autoresponse:", "Vacation reply:", "Automatische Antwort:",
    )
    read_receipt_subjects: tuple[str, ...] = (
        "Gelezen:", "Niet gelezen:", "Leesbevestiging:", "Read:", "Not read:",
        "Read receipt:", "Read-Receipt:", "Return receipt:", "Gelesen:",
    )
    bounce_subjects: tuple[str, ...] = (
        "Onbestelbaar:", "Niet bezorgd:", "Kan niet worden bezorgd:", "Bezorging mislukt",
        "Bezorgingsstatusmelding", "Undeliverable:", "Undelivered:",
        "Undelivered Mail Returned to Sender", "Delivery Status Notification",
        "Delivery Failure", "Delivery has failed", "Mail delivery failed",
        "Mail Delivery Failure", "Returned mail:", "Failure notice",
        "Nicht zustellbar:", "Unzustellbar:",
    )


DEFAULT_RULES = AutomaticRules()


@dataclass(frozen=True)
class AutomaticMail:
    """What :func:`detect` found: the kind (a key of :data:`KINDS`), the signals that say so,
    and whether they were on a forwarded original rather than the mail itself."""

    kind: str
    signals: tuple[str, ...]
    forwarded: bool = False

    @property
    def reason(self) -> str:
        """E.g. ``out-of-office reply (Auto-Submitted: auto-replied; subject 'Afwezig:')``:
        what the mail is, and the signals that say so."""
        what = KINDS[self.kind]
        if self.forwarded:
            what = f"a forwarded {what}"
        return f"{what} ({'; '.join(self.signals)})"


_REPLY_PREFIX = re.compile(r"^\s*(?:re|antw|aw|sv)\s*(?:\[\d+\])?\s*:", re.IGNORECASE)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _subject_phrase(subject: str, phrases: tuple[str, ...]) -> str | None:
    s = _norm(clean_subject(subject))
    for phrase in phrases:
        p = _norm(phrase)
        if p and s.startswith(p) and (len(s) == len(p) or not p[-1].isalnum()
                                      or not s[len(p)].isalnum()):
            return phrase
    return None


def _first_word(value: str) -> str:
    return _norm(value.split(";", 1)[0])


def _signals(env: Envelope, rules: AutomaticRules, inline: bool) -> list[tuple[str, str]]:
    """(kind, signal text) found on one level of the mail."""
    found: list[tuple[str, str]] = []
    if env.report_type:
        kind = {"delivery-status": "bounce",
                "disposition-notification": "read-receipt"}.get(env.report_type, "automatic")
        found.append((kind, f"multipart/report; report-type={env.report_type}"))
    if not inline:
        value = env.header("auto-submitted")
        if value is not None and _first_word(value) not in {_norm(v) for v in
                                                              rules.auto_submitted_except}:
            word = _first_word(value) or "(empty)"
            kind = "out-of-office" if word == "auto-replied" else "automatic"
            found.append((kind, f"Auto-Submitted: {word}"))
        value = env.header("precedence")
        if value is not None and _first_word(value) in {_norm(v) for v in rules.precedence}:
            word = _first_word(value)
            found.append(("out-of-office" if word == "auto_reply" else "automatic",
                          f"Precedence: {word}"))
        for name, kind in rules.headers:
            if env.header(name) is not None:
                found.append((kind, f"header {name}"))
        if rules.auto_response_suppress_on_replies and env.header("x-auto-response-suppress"):
            reply = (env.header("in-reply-to") is not None
                     or env.header("x-ms-exchange-inbox-rules-loop") is not None
                     or bool(_REPLY_PREFIX.match(env.subject)))
            if reply:
                found.append(("out-of-office", "X-Auto-Response-Suppress on a reply"))
        value = env.header("return-path")
        if rules.null_return_path and value is not None and value.replace(" ", "") == "<>":
            found.append(("automatic", "Return-Path <> (null sender)"))
    local = env.from_addr.rsplit("@", 1)[0] if "@" in env.from_addr else ""
    if local and local in {_norm(v) for v in rules.bounce_senders}:
        found.append(("bounce", f"sender {env.from_addr}"))
    for kind, phrases in (("out-of-office", rules.out_of_office_subjects),
                          ("read-receipt", rules.read_receipt_subjects),
                          ("bounce", rules.bounce_subjects)):
        phrase = _subject_phrase(env.subject, phrases)
        if phrase:
            found.append((kind, f"subject '{phrase}'"))
    return found


def detect(mail: ParsedMail, rules: AutomaticRules = DEFAULT_RULES) -> AutomaticMail | None:
    """The automatic mail ``mail`` is, or None for a mail a person (or KPN's report system)
    sent.

    The mail as received is looked at first; then a forwarded original (attached: every
    signal; inline: its subject and sender), which makes it "a forwarded" one. The kind is
    the most specific one found (bounce, read receipt, out-of-office reply, automatic mail);
    ``signals`` lists every signal of that level, for the reason.
    """
    levels = [(mail.outer, False, False)]
    if mail.original is not None:
        levels.append((mail.original, mail.forward == "inline", True))
    for env, inline, forwarded in levels:
        found = _signals(env, rules, inline)
        if found:
            kind = next(k for k in KINDS if any(f[0] == k for f in found))
            signals = tuple(dict.fromkeys(text for _, text in found))
            return AutomaticMail(kind, signals, forwarded)
    return None


# ---------------------------------------------------------------------------------------------
# Config


def rules_from_config(d: dict | None) -> AutomaticRules:
    """The ``[automatic]`` table -> :class:`AutomaticRules`. A list replaces the default;
    ``[automatic.headers]`` maps a header name to a kind (out-of-office, read-receipt,
    bounce, automatic) and replaces the default table. Raises ValueError naming the key."""
    d = d or {}
    if not isinstance(d, dict):
        raise ValueError("automatic: must be a table")
    known = {f.name for f in fields(AutomaticRules)}
    for key in d:
        if key not in known:
            raise ValueError(f"automatic.{key}: unknown key (a typo?)")
    kw: dict = {}
    for f in fields(AutomaticRules):
        if f.name not in d:
            continue
        value = d[f.name]
        where = f"automatic.{f.name}"
        if f.name == "headers":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: must be a table of header name = kind")
            items = []
            for name, kind in value.items():
                if kind not in KINDS:
                    raise ValueError(f"{where}.{name}: kind must be one of"
                                     f" {', '.join(KINDS)}, got {kind!r}")
                if not name.strip() or any(c.isspace() or c == ":" for c in name.strip()):
                    raise ValueError(f"{where}: not a header name: {name!r}")
                items.append((name.strip(), kind))
            kw[f.name] = tuple(items)
        elif isinstance(f.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: must be true or false, got {value!r}")
            kw[f.name] = value
        else:
            if not isinstance(value, list) or not all(isinstance(x, str) and x.strip()
                                                      for x in value):
                raise ValueError(f"{where}: must be a list of non-empty strings, got {value!r}")
            kw[f.name] = tuple(x.strip() for x in value)
    return AutomaticRules(**kw)
