"""Phone numbers: normalising to E.164, masking for logs, WhatsApp chat ids.

Pure functions over strings (the ``phonenumbers`` library does the numbering-plan
work). Nothing here does I/O.

* :func:`normalise` turns what people and channels send ("06-12345678",
  "0031 6 12345678", a Cloud API ``wa_id`` "31612345678", a whatsapp-web.js chat id
  "31612345678@c.us") into E.164 ("+31612345678") or raises :class:`PhoneError`.
* :func:`mask` shortens one number or sender id for display: "+316****5678".
* :func:`mask_text` masks every number-looking run in free text; the logging
  formatter runs every line through it, so no log line carries a full number.
"""

from __future__ import annotations

import re

import phonenumbers

__all__ = [
    "PhoneError",
    "normalise",
    "mask",
    "mask_text",
    "chat_id",
    "from_chat_id",
    "national_forms",
]

# Suffixes WhatsApp libraries put behind the digits of a person's chat id.
_CHAT_SUFFIXES = ("@c.us", "@s.whatsapp.net")
_SEPARATORS = re.compile(r"[\s\-./()\u00a0\u2010-\u2015]+")
_MAX_DIGITS = 15  # E.164 maximum


class PhoneError(ValueError):
    """A string is not a usable phone number. The message names the input masked."""


def _country_code_len(digits: str) -> int:
    """Length (1-3) of the country calling code that ``digits`` (no plus) starts with."""
    for n in (1, 2, 3):
        if int(digits[:n] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return n
    return 0


def _fail(raw: str, why: str) -> PhoneError:
    shown = _mask_digits(raw.strip(), 3) if raw.strip() else "''"
    return PhoneError(f"not a valid phone number: {shown!s} ({why})")


def normalise(raw: str, region: str = "NL") -> str:
    """Return ``raw`` as an E.164 string ("+31612345678") or raise :class:`PhoneError`.

    Accepted: national forms for ``region`` ("06-12345678", "06 1234 5678"),
    international forms ("+31 6 12345678", "+31 (0)6 12345678", "0031612345678"),
    digits with a country code but without the plus as WhatsApp sends them
    ("31612345678": taken as international when there are 11 or more digits that start
    with a country code and make a valid number that way) and chat ids
    ("31612345678@c.us", "...@s.whatsapp.net", always international).
    Letters (including vanity numbers such as "0800-FLOWERS") are refused.
    """
    if not isinstance(raw, str):
        raise PhoneError(f"not a valid phone number: expected a string, got {type(raw).__name__}")
    s = raw.strip()
    if not s:
        raise _fail(raw, "empty")
    international = False
    low = s.lower()
    for suffix in _CHAT_SUFFIXES:
        if low.endswith(suffix):
            s = s[: -len(suffix)]
            international = True
            break
    if s.startswith(("+", "00")):
        # "+31 (0)6 ...": the "(0)" is the trunk prefix written for domestic callers
        s = re.sub(r"\(\s*0\s*\)", "", s)
    compact = _SEPARATORS.sub("", s)
    if not compact:
        raise _fail(raw, "no digits")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    body = compact[1:] if compact.startswith("+") else compact
    if not body.isdigit() or not body.isascii():
        raise _fail(raw, "only digits, spaces, '-', '.', '(', ')' and a leading '+' are allowed")
    if len(body) > _MAX_DIGITS:
        raise _fail(raw, f"more than {_MAX_DIGITS} digits")

    candidates: list[tuple[str, str | None]] = []
    if compact.startswith("+") or international:
        candidates.append(("+" + body, None))
    else:
        if len(body) >= 11 and not body.startswith("0") and _country_code_len(body):
            candidates.append(("+" + body, None))
        candidates.append((body, region))
    for text, reg in candidates:
        try:
            num = phonenumbers.parse(text, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    raise _fail(raw, "not a valid number" + ("" if international or compact.startswith("+")
                                             else f" in region {region} or internationally"))


def _mask_digits(s: str, lead: int) -> str:
    """Replace the digits of ``s`` by '*' except the first ``lead`` and the last four.

    Non-digit characters (separators, '+', a chat-id suffix) stay where they are. At
    least a third of the digits (and at least one) are always hidden, so short numbers lose
    their lead first and then part of their tail.
    """
    n = sum(c.isdigit() for c in s)
    tail = 4
    hide_min = max(1, n // 3)
    while n - lead - tail < hide_min and lead > 0:
        lead -= 1
    while n - lead - tail < hide_min and tail > 0:
        tail -= 1
    out = []
    i = 0
    for c in s:
        if c.isdigit():
            out.append(c if i < lead or i >= n - tail else "*")
            i += 1
        else:
            out.append(c)
    return "".join(out)


def _intl_lead(digits: str) -> int:
    """Digits to keep in front of an international number: country code + one digit."""
    return (_country_code_len(digits) or 2) + 1


def mask(e164: str) -> str:
    """A display form of a number or sender id that does not reveal it.

    "+31612345678" -> "+316****5678" (country code and the first digit after it, then
    the last four). Shorter numbers hide at least a third of their digits. A chat id keeps
    its suffix ("316****5678@c.us"); a business-scoped sender "user:<id>" keeps the first
    three characters of the id ("user:abc…"); anything else goes through
    :func:`mask_text` and, when that finds no number, keeps at most its first 3
    characters.
    """
    s = (e164 or "").strip()
    if not s:
        return ""
    if s.startswith("user:"):
        ident = s[5:]
        keep = min(3, len(ident) // 2)
        return "user:" + ident[:keep] + "…"
    if s.startswith("+") and s[1:].isdigit():
        return _mask_digits(s, _intl_lead(s[1:]))
    low = s.lower()
    for suffix in _CHAT_SUFFIXES:
        if low.endswith(suffix) and s[: -len(suffix)].isdigit():
            body = s[: -len(suffix)]
            return _mask_digits(body, _intl_lead(body)) + s[-len(suffix):]
    masked = mask_text(s)
    if masked != s:
        return masked
    if any(c.isdigit() for c in s):
        return _mask_digits(s, 0)
    return s[:3] + "…" if len(s) > 3 else s


# One candidate: an optional "+" or "00", then digits joined by single separators (a
# space, a hyphen, or a "(0)" trunk prefix), optionally a chat-id suffix. It must not be
# glued to a letter or digit on either side (ticket ids such as "INC000012345678" stay)
# nor be the fraction of a decimal. _mask_match then decides, group by group, which part
# of the run has the shape of a phone number; "2026-11-28 09:42:00" has none.
_CANDIDATE = re.compile(
    r"""
    (?<![A-Za-z0-9+])(?<!\d[.,])
    (?P<num>
        (?P<plus>\+|00)?
        \d
        (?:(?:[ \-]|[ ]?\(0\)[ ]?)?\d){6,40}
    )
    (?P<suffix>@(?:c\.us|s\.whatsapp\.net))?
    (?![A-Za-z0-9]|[.,]\d)
    """,
    re.VERBOSE | re.ASCII,
)
_GROUP_SPLIT = re.compile(r"([ \-]|[ ]?\(0\)[ ]?)")


def _shape(prefix: str, groups: list[str], seps: list[str]) -> int | None:
    """How many leading digits to keep when these groups form a phone number, else None."""
    digits = "".join(groups)
    n = len(digits)
    if len(groups) > 6:
        return None
    if prefix == "+":
        return _intl_lead(digits) if 7 <= n <= 15 else None
    if prefix == "00":
        return 2 + _intl_lead(digits) if 7 <= n <= 15 else None
    kinds = {sep.strip() or " " for sep in seps if "(0)" not in sep}
    if len(kinds) > 1:  # "2026-11-28 09": a date next to a time, not a number
        return None
    if not seps:  # a bare run: "0612345678", "31612345678", "612345678"
        if not 9 <= n <= 15:
            return None
        return 2 if digits.startswith("0") else (_intl_lead(digits) if n >= 11 else 1)
    if digits.startswith("0"):  # national: "06-12345678", "06 1234 5678", "020 123 4567"
        return 2 if 9 <= n <= 11 and len(groups) <= 5 else None
    # separated digits without prefix: only long runs led by a country code ("31 6 12345678")
    if 11 <= n <= 15 and len(groups[0]) <= 3 and len(groups) <= 5 and _country_code_len(digits):
        return _intl_lead(digits)
    return None


def _mask_match(m: re.Match) -> str:
    num = m.group("num")
    suffix = m.group("suffix") or ""
    prefix = m.group("plus") or ""
    parts = _GROUP_SPLIT.split(num[len(prefix):])
    groups, seps = parts[0::2], parts[1::2]
    if suffix:  # a chat id is international whatever its shape
        digits = "".join(groups)
        if 7 <= len(digits) <= 15 and not seps and not prefix:
            return _mask_digits(num, _intl_lead(digits)) + suffix
    out: list[str] = []
    i, count = 0, len(groups)
    while i < count:
        pre = prefix if i == 0 else ""
        for j in range(count - 1, i - 1, -1):  # the longest run from group i that fits
            lead = _shape(pre, groups[i : j + 1], seps[i:j])
            if lead is not None:
                text = pre + "".join(g + s for g, s in zip(groups[i : j + 1], seps[i:j] + [""]))
                out.append(_mask_digits(text, lead))
                break
        else:
            j = i
            out.append(pre + groups[i])
        if j + 1 < count:
            out.append(seps[j])
        i = j + 1
    return "".join(out) + suffix


def mask_text(text: str) -> str:
    """Mask every phone-number-looking run in ``text`` (idempotent).

    Masked: E.164 and other "+"/"00" international forms (also with spaces or hyphens),
    bare digit runs of 9-15 digits, national forms starting with 0 that have 9-11 digits
    ("06-12345678", "06 1234 5678", "020 123 4567"), separated runs of 11-15 digits, and
    WhatsApp chat ids ("31612345678@c.us"). Left alone: dates and times
    ("2026-11-28 09:42:00", "28-11-2026"), decimals, numbers glued to letters
    ("INC000123456789"), and short counts.
    """
    if not text or not any(c.isdigit() for c in text):
        return text
    return _CANDIDATE.sub(_mask_match, text)


def chat_id(e164: str) -> str:
    """The whatsapp-web.js chat id of a number: "+31612345678" -> "31612345678@c.us"."""
    return normalise(e164)[1:] + "@c.us"


def from_chat_id(cid: str) -> str:
    """E.164 of a person's chat id: "31612345678@c.us" -> "+31612345678".

    Group ids ("...@g.us") and strings without a person's chat-id suffix raise
    :class:`PhoneError`.
    """
    low = (cid or "").strip().lower()
    if not low.endswith(_CHAT_SUFFIXES):
        raise PhoneError(f"not a WhatsApp chat id of a person: {mask(cid or '')!s}")
    return normalise(cid.strip())


def national_forms(e164: str) -> set[str]:
    """The spellings a number may have been stored or logged in.

    For "+31612345678": {"+31612345678", "31612345678", "0612345678", "06-12345678",
    "06 12345678"} plus the library's national format. Used to check that erasing a
    subscriber leaves none of them behind.
    """
    num = phonenumbers.parse(normalise(e164), None)
    e = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
    national_digits = re.sub(r"\D", "", national)
    forms = {e, e[1:], national_digits, national}
    groups = re.split(r"[\s\-]+", re.sub(r"[()]", "", national).strip())
    if len(groups) > 1:
        head, rest = groups[0], "".join(groups[1:])
        forms |= {f"{head}-{rest}", f"{head} {rest}", "-".join(groups), " ".join(groups)}
    if e.startswith("+31"):
        # Dutch mobile numbers are also written as 06-12345678 / 06 12345678
        nsn = e[3:]
        if nsn.startswith("6"):
            forms |= {"06" + nsn[1:], "06-" + nsn[1:], "06 " + nsn[1:]}
    return {f for f in forms if f}
