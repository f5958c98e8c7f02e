"""Phone numbers: normalising to E.164, masking for logs, WhatsApp chat ids.

Pure functions over strings (the ``phonenumbers`` library does the numbering-plan
work). Nothing here does I/O.

* :func:`normalise` turns what people and channels send ("06-12345678",
  "0031 6 12345678", a Cloud API ``wa_id`` "31612345678", a whatsapp-web.js chat id
  "31612345678@c.us") into E.164 ("+31612345678") or raises :class:`PhoneError`.
* :func:`mask` shortens one number or sender id for display: "+316****5678".
* :func:`mask_text` masks every phone number in free text (and no other number); the logging
  formatter runs every line through it, so no log line carries a full number.
* Ids of a person: besides the number, WhatsApp may give a business-scoped user id
  (Cloud API BSUID, written "user:<id>") or a linked id (whatsapp-web.js "<digits>@lid",
  written "lid:<digits>"). :func:`id_kind`, :func:`sender_id` and :func:`chat_id` handle
  all three.
* :func:`whatsapp_capable` says whether a number's type can have WhatsApp at all
  (0800/0900 cannot) for numbers an operator adds or imports.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = [
    "PhoneError",
    "USER_PREFIX",
    "LID_PREFIX",
    "normalise",
    "mask",
    "mask_text",
    "chat_id",
    "from_chat_id",
    "sender_id",
    "id_kind",
    "preferred_address",
    "whatsapp_capable",
    "national_forms",
]

USER_PREFIX = "user:"  # a business-scoped user id (Cloud API BSUID)
LID_PREFIX = "lid:"  # a whatsapp-web.js linked id (chat id "<digits>@lid")

# Suffixes WhatsApp libraries put behind the digits of a person's chat id.
_CHAT_SUFFIXES = ("@c.us", "@s.whatsapp.net")
_LID_SUFFIX = "@lid"
_LID_DIGITS = re.compile(r"[0-9]{5,25}")
_SEPARATORS = re.compile(r"[\s\-./()\u00a0\u2010-\u2015]+")
_MAX_DIGITS = 15  # E.164 maximum


class PhoneError(ValueError):
    """A string is not a usable phone number. The message names the input masked;
    ``why`` says what is wrong without naming it ("not a valid number", "empty")."""

    why: str = "not a valid phone number"


def _country_code_len(digits: str) -> int:
    """Length (1-3) of the country calling code that ``digits`` (no plus) starts with."""
    for n in (1, 2, 3):
        if int(digits[:n] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return n
    return 0


def _fail(raw: str, why: str) -> PhoneError:
    shown = _mask_digits(raw.strip(), 3) if raw.strip() else "''"
    e = PhoneError(f"not a valid phone number: {shown!s} ({why})")
    e.why = why
    return e


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
    its suffix ("316****5678@c.us"); a business-scoped sender "user:<id>" and a linked id
    "lid:<digits>" keep the first three characters of the id ("user:abc…", "lid:140…"),
    an "@lid" chat id likewise ("140…@lid"); anything else goes through
    :func:`mask_text` and, when that finds no number, keeps at most its first 3
    characters.
    """
    s = (e164 or "").strip()
    if not s:
        return ""
    for prefix in (USER_PREFIX, LID_PREFIX):
        if s.startswith(prefix):
            ident = s[len(prefix):]
            keep = min(3, len(ident) // 2)
            return prefix + ident[:keep] + "…"
    if s.lower().endswith(_LID_SUFFIX) and s[: -len(_LID_SUFFIX)].isdigit():
        body = s[: -len(_LID_SUFFIX)]
        return body[: min(3, len(body) // 2)] + "…" + _LID_SUFFIX
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
    (?P<suffix>@(?:c\.us|s\.whatsapp\.net|lid))?
    (?![A-Za-z0-9]|[.,]\d)
    """,
    re.VERBOSE | re.ASCII,
)
_LID_ID = re.compile(r"(?<![A-Za-z0-9])lid:([0-9]{5,25})(?![0-9])")
_GROUP_SPLIT = re.compile(r"([ \-]|[ ]?\(0\)[ ]?)")


@functools.lru_cache(maxsize=4096)
def _is_phone(digits: str) -> bool:
    """Do these digits (no "+") parse as a phone number the way :func:`normalise` reads
    them (national Dutch, or international with a country code)? A UIDVALIDITY, a Unix
    time or a database id does not."""
    try:
        normalise(digits)
    except PhoneError:
        return False
    return True


def _shape(prefix: str, groups: list[str], seps: list[str]) -> int | None:
    """How many leading digits to keep when these groups form a phone number, else None.

    With a "+" or "00" the run only needs the length of one; without, it must also parse
    as a number (:func:`_is_phone`), so other long numbers in log lines stay readable."""
    lead = _shape_lead(prefix, groups, seps)
    if lead is None or prefix:
        return lead
    return lead if _is_phone("".join(groups)) else None


def _shape_lead(prefix: str, groups: list[str], seps: list[str]) -> int | None:
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
    if suffix == _LID_SUFFIX:  # a linked id is no number: keep only its first three digits
        digits = "".join(groups)
        if not seps and not prefix and len(digits) >= 5:
            return digits[:3] + "…" + suffix
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
    and, when they parse as a phone number (Dutch national, or international with a
    country code, as :func:`normalise` reads them): bare digit runs of 9-15 digits
    ("31612345678", "0612345678"), national forms starting with 0 that have 9-11 digits
    ("06-12345678", "06 1234 5678", "020 123 4567"), separated runs of 11-15 digits; and
    WhatsApp chat ids ("31612345678@c.us", "...@s.whatsapp.net"). Left alone: other
    long numbers (an IMAP UIDVALIDITY "1700005773", a Unix time, a database or Meta id),
    dates and times ("2026-11-28 09:42:00", "28-11-2026"), decimals, numbers glued to
    letters ("INC000123456789"), ports and short counts. A linked id ("lid:140000000001101",
    "140000000001101@lid") keeps its first three digits.
    """
    if not text or not any(c.isdigit() for c in text):
        return text
    if LID_PREFIX in text:
        text = _LID_ID.sub(lambda m: LID_PREFIX + m.group(1)[:3] + "…", text)
    return _CANDIDATE.sub(_mask_match, text)


def chat_id(address: str) -> str:
    """The whatsapp-web.js chat id of an address: "+31612345678" -> "31612345678@c.us",
    "lid:140000000001101" -> "140000000001101@lid". Raises :class:`PhoneError` for
    anything else (a "user:" id cannot be addressed through whatsapp-web.js)."""
    if address.startswith(LID_PREFIX):
        digits = address[len(LID_PREFIX):]
        if not _LID_DIGITS.fullmatch(digits):
            raise PhoneError(f"not a linked id: {mask(address)}")
        return digits + _LID_SUFFIX
    return normalise(address)[1:] + "@c.us"


def sender_id(cid: str) -> str:
    """The id of a person's chat id as the bridge writes it: "31612345678@c.us" ->
    "+31612345678", "140000000001101@lid" -> "lid:140000000001101". Raises
    :class:`PhoneError` for group ids, broadcasts and anything that is not a person's."""
    low = (cid or "").strip().lower()
    if low.endswith(_LID_SUFFIX):
        digits = low[: -len(_LID_SUFFIX)]
        if not _LID_DIGITS.fullmatch(digits):
            raise PhoneError(f"not a linked id of a person: {mask(cid or '')!s}")
        return LID_PREFIX + digits
    return from_chat_id(cid)


def id_kind(ident: str) -> str:
    """"bsuid" for "user:<id>", "lid" for "lid:<digits>", else "number"
    (:data:`bridge.core.models.IdKind`)."""
    if ident.startswith(USER_PREFIX):
        return "bsuid"
    if ident.startswith(LID_PREFIX):
        return "lid"
    return "number"


_ADDRESS_ORDER = {"number": 0, "bsuid": 1, "lid": 2}


def preferred_address(ids) -> str | None:
    """Of one person's ids, the one to send to: the number (every channel can reach it),
    else the business-scoped id (Cloud API), else the linked id (the linked phone)."""
    best = sorted((i for i in ids if i), key=lambda i: _ADDRESS_ORDER[id_kind(i)])
    return best[0] if best else None


def from_chat_id(cid: str) -> str:
    """E.164 of a person's chat id: "31612345678@c.us" -> "+31612345678".

    Group ids ("...@g.us") and strings without a person's chat-id suffix raise
    :class:`PhoneError`.
    """
    low = (cid or "").strip().lower()
    if not low.endswith(_CHAT_SUFFIXES):
        raise PhoneError(f"not a WhatsApp chat id of a person: {mask(cid or '')!s}")
    return normalise(cid.strip())


# Number types (phonenumbers.PhoneNumberType) that cannot have a WhatsApp account: they
# cannot receive the SMS or call that registers one.
_REFUSED_TYPES = {
    phonenumbers.PhoneNumberType.TOLL_FREE: "a toll-free number (such as 0800)",
    phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number (such as 0900, 0906, 0909)",
    phonenumbers.PhoneNumberType.SHARED_COST: "a shared-cost number",
    phonenumbers.PhoneNumberType.PAGER: "a pager number",
    phonenumbers.PhoneNumberType.VOICEMAIL: "a voicemail access number",
}
_MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE,
                 phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def whatsapp_capable(e164: str) -> tuple[str, str]:
    """Whether a valid E.164 number can have WhatsApp, by its type in the numbering plan.

    Returns ``("ok", "")`` for mobile numbers; ``("warn", why)`` for fixed-line, VoIP,
    company (UAN, such as Dutch 088) and personal numbers, which can run WhatsApp
    Business, so they are accepted with a warning; ``("refuse", why)`` for toll-free,
    premium-rate, shared-cost, pager and voicemail numbers, which cannot have WhatsApp.
    """
    num = phonenumbers.parse(e164, None)
    kind = phonenumbers.number_type(num)
    if kind in _REFUSED_TYPES:
        return "refuse", f"{_REFUSED_TYPES[kind]} cannot have WhatsApp"
    if kind in _MOBILE_TYPES:
        return "ok", ""
    what = {phonenumbers.PhoneNumberType.FIXED_LINE: "a fixed-line number",
            phonenumbers.PhoneNumberType.VOIP: "a VoIP number",
            phonenumbers.PhoneNumberType.UAN: "a company number",
            phonenumbers.PhoneNumberType.PERSONAL_NUMBER: "a personal number"}.get(
        kind, "a number of unknown type")
    return "warn", f"{what}: it gets the messages only if it has WhatsApp (Business)"


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
