"""What a person's WhatsApp message asks for: subscribe, unsubscribe, help or other.

Pure: text in, :data:`~bridge.core.models.InboundClass` out. The words come from
:class:`Keywords` (defaults below, replaceable per list by ``[inbound.keywords]``).

Guiding principle: **opting out is honoured generously, opting in needs clear
consent.** A message that plausibly asks to stop gets "unsubscribe" (the reply confirms
it and says how to come back); a message only becomes "subscribe" when it clearly asks
for the outage messages. Outage reports ("mijn internet doet het niet", "internet stopt
steeds", "ik krijg geen storingsberichten meer") are "other", so a person can report a
problem without changing their subscription.

Precedence: unsubscribe (including a negated subscribe sentence) > subscribe > help >
other. See :func:`classify` for the exact rules.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, fields
from functools import lru_cache

from bridge.core.models import InboundClass

__all__ = [
    "Keywords",
    "DEFAULT_KEYWORDS",
    "MAX_WORDS",
    "keywords_from_config",
    "normalise_text",
    "classify",
]

# Messages longer than this (in words) only count as subscribe when a subscribe phrase
# matches tightly; subscribe/help *words* never count in them.
MAX_WORDS = 25


@dataclass(frozen=True)
class Keywords:
    """The words and phrases :func:`classify` looks for. Matching ignores case, accents,
    punctuation and emoji (see :func:`normalise_text`).

    * ``subscribe_phrases``: sentences matched loosely: their content words must occur
      in this order, each with small typos allowed (one edit in words of 4-9 letters, two
      in longer words; two written-apart words may make one: "storings berichten"),
      with a few other words between them (more after "van"/"from", where the
      organisation's name goes). Filler words ("ja", "ik", "de", "van", "me", ...) in a
      phrase are optional. ``a|b`` in a phrase means either word.
    * ``subscribe_words``: count when they are the whole message, give or take
      greetings, politeness ("graag", "aub") and topic words ("voor storingsberichten").
    * ``unsubscribe_words``: count when they are the whole message or its first word(s)
      (after a greeting): "STOP", "stop met bellen", "Afmelden aub".
    * ``unsubscribe_phrases``: all their words must occur in order, at most two other
      words in between; anywhere in the message. Phrases with a negation ("geen
      berichten meer") do not count in a complaint about not receiving ("ik krijg geen
      berichten meer") unless a want stands right before them ("ik wil geen ...").
    * ``help_words``: count when the message consists of them plus filler ("meer
      info", "hulp nodig"). A word without letters or digits ("?") counts when the
      message is only that punctuation.
    """

    subscribe_phrases: tuple[str, ...] = (
        # the seed sentence, with the organisation's name left out: any name (or none)
        # may stand after "van"
        "ja ik wil storingsberichten|storingsmeldingen|storingsinformatie|storingsupdates"
        "|storingsberichtjes|berichten|meldingen|updates|notificaties ontvangen|krijgen",
        "ik wil graag storingsberichten|storingsmeldingen",
        "graag storingsberichten|storingsmeldingen ontvangen|krijgen",
        "meld mij|me aan",
        "ik wil me|mij aanmelden|inschrijven|abonneren",
        "kan ik me|mij aanmelden|inschrijven|abonneren",
        "graag aanmelden|inschrijven",
        "aanmelden|inschrijven|abonneren voor|op storingsberichten|storingsmeldingen|berichten",
        "zet mij|me op de lijst",
        "i want|like to receive|get outage messages|notifications|alerts|updates",
        "i want|like outage messages|notifications|alerts|updates",
        "sign me up",
        "subscribe me",
    )
    subscribe_words: tuple[str, ...] = (
        "aanmelden",
        "aanmelding",
        "start",
        "inschrijven",
        "abonneren",
        "subscribe",
        "ja graag",
        "ja aanmelden",
        "ja ik wil storingsberichten ontvangen",
        "opt in",
        "sign up",
    )
    unsubscribe_words: tuple[str, ...] = (
        "stop",
        "stoppen",
        "afmelden",
        "afmelding",
        "uitschrijven",
        "unsubscribe",
        "opzeggen",
        "stop alle berichten",
        "opt out",
        "optout",
    )
    unsubscribe_phrases: tuple[str, ...] = (
        "ik wil me afmelden",
        "wil afmelden",
        "me afmelden",
        "mij afmelden",
        "me uitschrijven",
        "mij uitschrijven",
        "wil uitschrijven",
        "graag afmelden",
        "graag uitschrijven",
        "meld mij af",
        "meld me af",
        "schrijf mij uit",
        "schrijf me uit",
        "geen berichten meer",
        "geen storingsberichten meer",
        "geen meldingen meer",
        "geen storingsmeldingen meer",
        "geen whatsapp meer",
        "geen whatsapps meer",
        "niet meer ontvangen",
        "wil niet meer ontvangen",
        "hoef geen berichten",
        "hoef geen storingsberichten",
        "stoppen met sturen",
        "stop met sturen",
        "stop de berichten",
        "stop met berichten",
        "haal mij van de lijst",
        "haal me van de lijst",
        "unsubscribe me",
        "want to unsubscribe",
        "wil stoppen met",
        "dont send",
        "don t send",
        "no more messages",
        "stop sending",
        "remove me from",
    )
    help_words: tuple[str, ...] = (
        "help",
        "hulp",
        "info",
        "informatie",
        "?",
        "uitleg",
        "menu",
    )


DEFAULT_KEYWORDS = Keywords()

_FIELDS = tuple(f.name for f in fields(Keywords))


def keywords_from_config(d: dict) -> Keywords:
    """Build :class:`Keywords` from the ``[inbound.keywords]`` TOML table.

    Each key names one field of :class:`Keywords`; its list replaces that field's
    default, keys left out keep theirs. Raises ``ValueError("inbound.keywords.<key>:
    <what is wrong>")`` for an unknown key, a value that is not a list of strings, an
    empty or blank entry, an entry without letters or digits (other than in
    ``help_words``), and an empty ``unsubscribe_words`` list (people must always be able
    to stop the messages).
    """
    if d is None:
        return DEFAULT_KEYWORDS
    if not isinstance(d, dict):
        raise ValueError(f"inbound.keywords: expected a table, got {type(d).__name__}")
    values: dict[str, tuple[str, ...]] = {}
    for key, value in d.items():
        where = f"inbound.keywords.{key}"
        if key not in _FIELDS:
            raise ValueError(f"{where}: unknown key (known keys: {', '.join(_FIELDS)})")
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
        items: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(
                    f"{where}: item {i + 1} is {type(item).__name__}, expected a string")
            if not item.strip():
                raise ValueError(f"{where}: item {i + 1} is empty")
            if key != "help_words" and not normalise_text(item.replace("|", " ")):
                raise ValueError(f"{where}: item {i + 1} ({item!r}) has no letters or digits")
            items.append(item.strip())
        if key == "unsubscribe_words" and not items:
            raise ValueError(f"{where}: must not be empty (people must be able to stop)")
        values[key] = tuple(items)
    return Keywords(**values)


def normalise_text(text: str) -> str:
    """NFKC, casefold, every character that is not a letter, digit or combining mark
    becomes a space (punctuation, emoji, symbols), whitespace collapsed, stripped.

    >>> normalise_text("  Ja, ik wil STORINGSBERICHTEN ontvangen!! 👍 ")
    'ja ik wil storingsberichten ontvangen'
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).casefold()
    out = [c if unicodedata.category(c)[0] in "LNM" else " " for c in text]
    return " ".join("".join(out).split())


# --- the grammar around the keywords (not configurable) -----------------------------

# Optional in a subscribe phrase, and not counted as "other words" between its words.
_FILLER = frozenset(
    "ja jawel yes yep i ik de het een a an the to van of from alle all me mij u je jullie "
    "ook wel voortaan".split())
# Leading words skipped before the first-word rule and the whole-message rules.
_GREETINGS = frozenset(
    "hoi hallo hai hey hee hi hello hoihoi goedemorgen goedemiddag goedenavond goeiemorgen "
    "goeiemiddag goedendag morgen middag avond dag beste yo".split())
# Words that may surround a command word without changing what it means.
_POLITE = frozenset(
    "graag aub ajb svp alsjeblieft alstublieft please pls plz a u b dank bedankt danku "
    "dankjewel dankuwel thanks thx groet groeten groetjes mvg gr ok oke okay ja yes hoor "
    "prima".split())
_TOPIC = frozenset(
    "voor op van de het mij me mijn ik wil ook nu even maar meer nodig over deze dit "
    "storingsberichten storingsmeldingen berichten bericht meldingen "
    "melding updates notificaties whatsapp service dienst".split())
_NEGATIONS = frozenset("geen niet nooit niets niks nee no not dont don never nimmer".split())
# Words that make a sentence a question about receiving rather than a request.
_QUESTIONS = frozenset(
    "waarom wanneer hoe hoezo wat welke welk weten vraag why when how what which".split())
# Words of a complaint about not receiving something ("ik krijg geen berichten meer",
# "ik kan de zenders niet meer ontvangen").
_COMPLAINT = frozenset(
    "ontvang ontvangt ontving ontvingen krijg krijgt kreeg kregen gekregen binnen kan kun "
    "kunnen lukt heb hebben had sinds zie gezien receive received get getting "
    "internet tv televisie zenders zender wifi mail email signaal telefoon netflix "
    "decoder modem router".split())
# Words that say the person wants what follows.
_WANT = frozenset("wil wilt willen hoef hoeft hoeven liever want wish".split())

# Only the first this many words are looked at (bounds the work for huge messages).
_MAX_TOKENS = 300

# In a long message, one of these must stand in or just before a subscribe phrase.
_CONSENT = _WANT | frozenset("ja yes graag please aub".split())

_ORG_SLOT = frozenset(("van", "from", "bij", "via"))  # the organisation's name follows


def _fold(text: str) -> str:
    """:func:`normalise_text` plus accents removed ("coöperatie" -> "cooperatie")."""
    text = normalise_text(text)
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (adjacent swaps cost 1), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _allowed_edits(word: str) -> int:
    return 0 if len(word) < 4 else 1 if len(word) < 10 else 2


def _word_eq(token: str, word: str) -> bool:
    """A message token equals a keyword, allowing typos in longer words.

    The first two letters must be right: they tell opposites apart ("aanmelden" /
    "afmelden", "inschrijven" / "uitschrijven") and are rarely mistyped.
    """
    if token == word:
        return True
    allowed = _allowed_edits(word)
    if allowed == 0 or len(token) < 3 or token[:2] != word[:2]:
        return False
    return _distance(token, word, allowed) <= allowed


def _strict_eq(token: str, word: str) -> bool:
    """Stricter typo tolerance for single command words: one edit, words of 7+ letters."""
    if token == word:
        return True
    return len(word) >= 7 and token[:2] == word[:2] and _distance(token, word, 1) <= 1


# A compiled phrase: per position, the alternatives, and whether the position is filler.
_Phrase = tuple[tuple[tuple[str, ...], bool], ...]


def _compile_phrase(phrase: str) -> _Phrase:
    out = []
    for part in phrase.split():
        alts = tuple(a for a in (_fold(x).replace(" ", "") for x in part.split("|")) if a)
        if alts:
            out.append((alts, all(a in _FILLER for a in alts)))
    return tuple(out)


def _compile_seq(entry: str) -> tuple[str, ...]:
    return tuple(_fold(entry).split())


@dataclass(frozen=True)
class _Compiled:
    subscribe_phrases: tuple[_Phrase, ...]
    subscribe_words: tuple[tuple[str, ...], ...]
    unsubscribe_words: tuple[tuple[str, ...], ...]
    unsubscribe_phrases: tuple[tuple[tuple[str, ...], ...], ...]
    unsubscribe_negated: tuple[bool, ...]
    help_words: frozenset[str]
    help_marks: tuple[str, ...]  # help entries without letters/digits, e.g. "?"


@lru_cache(maxsize=16)
def _compile(kw: Keywords) -> _Compiled:
    unsub = tuple(tuple(((w,), False) for w in _compile_seq(p)) for p in kw.unsubscribe_phrases)
    return _Compiled(
        subscribe_phrases=tuple(p for p in map(_compile_phrase, kw.subscribe_phrases) if p),
        subscribe_words=tuple(s for s in map(_compile_seq, kw.subscribe_words) if s),
        unsubscribe_words=tuple(s for s in map(_compile_seq, kw.unsubscribe_words) if s),
        unsubscribe_phrases=tuple(tuple(alts for alts, _ in p) for p in unsub if p),
        unsubscribe_negated=tuple(
            any(w in _NEGATIONS for (w,), _ in p) for p in unsub if p),
        help_words=frozenset(w for h in kw.help_words for w in _compile_seq(h)),
        help_marks=tuple(h.strip() for h in kw.help_words if not _fold(h)),
    )


def _find(tokens: list[str], pattern: tuple[tuple[str, ...], ...], optional: tuple[bool, ...],
          max_gap: int, eq) -> tuple[int, int] | None:
    """Find ``pattern`` in ``tokens`` in order; return the (start, end) token span.

    Optional pattern words may be missing. Between two matched words at most ``max_gap``
    non-filler tokens may stand (six more when the gap holds "van"/"from": the
    organisation's name). A pattern word may also match two adjacent tokens written
    together ("storings berichten"). The earliest, then tightest, match wins.
    """
    n = len(tokens)
    if all(optional):
        return None

    def gap_ok(a: int, b: int) -> bool:  # tokens[a:b] lie between two matched words
        between = tokens[a:b]
        extra = sum(1 for t in between if t not in _FILLER)
        limit = max_gap + (6 if any(t in _ORG_SLOT for t in between) else 0)
        return extra <= limit

    def match_at(pi: int, ti: int) -> int | None:
        """Width (1 or 2 tokens) with which pattern word pi matches at token ti."""
        alts = pattern[pi]
        if any(eq(tokens[ti], a) for a in alts):
            return 1
        if ti + 1 < n and any(eq(tokens[ti] + tokens[ti + 1], a) for a in alts
                              if len(a) >= 6):
            return 2
        return None

    best: tuple[int, int] | None = None

    def search(pi: int, ti: int, start: int | None, last_end: int | None) -> None:
        nonlocal best
        if best is not None:
            return
        if pi == len(pattern):
            if start is not None:
                best = (start, last_end)
            return
        if optional[pi]:
            # optional words only match right where the sentence continues
            if ti < n and last_end is not None and (w := match_at(pi, ti)):
                search(pi + 1, ti + w, start, ti + w)
                if best:
                    return
            search(pi + 1, ti, start, last_end)
            return
        for tj in range(ti, n):
            if last_end is not None and not gap_ok(last_end, tj):
                break
            w = match_at(pi, tj)
            if w:
                search(pi + 1, tj + w, tj if start is None else start, tj + w)
                if best is not None:
                    return

    search(0, 0, None, None)
    return best


def _skip(tokens: list[str], words: frozenset[str]) -> list[str]:
    """Tokens without the leading ones that are in ``words``."""
    i = 0
    while i < len(tokens) and tokens[i] in words:
        i += 1
    return tokens[i:]


_LEADING = _GREETINGS | _POLITE | frozenset(("nee", "no"))


def _starts_with(tokens: list[str], seq: tuple[str, ...], eq) -> bool:
    return len(tokens) >= len(seq) and all(eq(t, w) for t, w in zip(tokens, seq))


def _is_unsubscribe(tokens: list[str], core: list[str], c: _Compiled) -> bool:
    # 1. an unsubscribe word is the message or its first word(s): "STOP", "stop met bellen"
    if len(tokens) <= MAX_WORDS and any(_starts_with(core, w, _strict_eq)
                                        for w in c.unsubscribe_words):
        return True
    # 2. an unsubscribe phrase anywhere (negated ones not in a complaint about receiving)
    complaint = bool(set(tokens) & _COMPLAINT)
    for phrase, negated in zip(c.unsubscribe_phrases, c.unsubscribe_negated):
        span = _find(tokens, phrase, (False,) * len(phrase), 2, _word_eq)
        if span is None:
            continue
        if negated and complaint:
            # "ik krijg geen berichten meer" is a complaint; it is a request only with a
            # want right before it ("ik wil/hoef geen ...") or "nodig" right after it
            start, end = span
            if not (set(tokens[max(0, start - 3):start]) & _WANT
                    or "nodig" in tokens[end:end + 2]):
                continue
        return True
    return False


def _subscribe_match(tokens: list[str], c: _Compiled) -> tuple[str, int, int] | None:
    """The best subscribe-phrase match: ("plain" | "negated" | "question", start, end)."""
    long = len(tokens) > MAX_WORDS
    max_gap = 1 if long else 3
    found: tuple[str, int, int] | None = None
    for phrase in c.subscribe_phrases:
        pattern = tuple(alts for alts, _ in phrase)
        optional = tuple(opt for _, opt in phrase)
        span = _find(tokens, pattern, optional, max_gap, _word_eq)
        if span is None:
            continue
        start, end = span
        if long and not set(tokens[max(0, start - 3):end]) & _CONSENT:
            continue  # in a long message only an explicit "ja/ik wil ..." counts
        near = tokens[max(0, start - 2):end]
        if set(near) & _NEGATIONS:
            kind = "negated"
        elif set(tokens[max(0, start - 3):end]) & _QUESTIONS:
            kind = "question"
        else:
            return ("plain", start, end)
        found = found or (kind, start, end)
    return found


def classify(text: str, kw: Keywords = DEFAULT_KEYWORDS) -> InboundClass:
    """Classify one inbound message as "subscribe", "unsubscribe", "help" or "other".

    Precedence: **unsubscribe (negation) > subscribe > help > other**.

    1. *unsubscribe* when
       a. the message (after a greeting) is, or starts with, an unsubscribe word. This
          is deliberately blunt, so "stop met bellen" is an unsubscribe too; "stopt"
          (another word) is not: "internet stopt steeds" stays other;
       b. an unsubscribe phrase occurs ("ik wil me afmelden", "geen berichten meer"),
          except that negated phrases do not count in a complaint about not receiving
          ("ik krijg geen berichten meer") unless a want stands right before them ("ik
          wil/hoef geen berichten meer") or "nodig" right after;
       c. a subscribe phrase matches but is negated ("ik wil geen storingsberichten
          meer ontvangen", "ik wil niet langer berichten krijgen"): negation beats
          subscribe.
    2. *subscribe* when a subscribe phrase matches (not negated, not a question such as
       "ik wil weten hoe ik storingsberichten kan ontvangen") or the message is a
       subscribe word plus filler ("Aanmelden graag", "start"). In messages longer than
       :data:`MAX_WORDS` words only a tight phrase match with an explicit yes or want
       ("ja", "ik wil", "graag") counts, so a long outage report that mentions
       "aanmelden voor storingsberichten" in passing stays other.
    3. *help* when the message is made of help words and filler ("info?", "meer info",
       "hulp nodig"), is only "?" (or another punctuation-only help entry), or is a
       question about subscribing ("hoe kan ik me aanmelden?").
    4. *other*: everything else, including outage reports, thanks, greetings, emoji and
       empty messages.
    """
    if not text or not text.strip():
        return "other"
    c = _compile(kw)
    tokens = _fold(text).split()[:_MAX_TOKENS]
    if not tokens:
        raw = "".join(text.split())
        if any(raw and set(raw) <= set(mark) for mark in c.help_marks):
            return "help"
        return "other"
    core = _skip(tokens, _LEADING)  # "Hoi, ok, stop" -> ["stop"]
    greeted = _skip(tokens, _GREETINGS)  # "Hoi, ja graag" -> ["ja", "graag"]

    if _is_unsubscribe(tokens, core, c):
        return "unsubscribe"
    sub = _subscribe_match(tokens, c)
    if sub and sub[0] == "negated":
        return "unsubscribe"
    if sub and sub[0] == "plain":
        return "subscribe"
    if len(tokens) <= MAX_WORDS:
        for word in c.subscribe_words:
            for rest in (core, greeted):
                if _starts_with(rest, word, _strict_eq) and all(
                        t in _TOPIC or t in _POLITE for t in rest[len(word):]):
                    return "subscribe"
    if sub and sub[0] == "question":
        return "help"
    if core and len(core) <= 6 and any(t in c.help_words for t in core) and all(
            t in c.help_words or t in _TOPIC or t in _POLITE or t in _QUESTIONS
            for t in core):
        return "help"
    return "other"
