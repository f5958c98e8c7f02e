"""Typo-tolerant word matching for short chat messages: normalising, comparison, phrases.

Pure helpers shared by :mod:`bridge.core.inbound` (keywords, the opt-in sentence) and
:mod:`bridge.core.optout` (an opt-out in the person's own words). Tokens are the words of
:func:`fold` (lower case, no accents, no punctuation or emoji).

Typo tolerance comes in four strengths, from strict to loose:

* :func:`short_eq` for short command words ("stop"): equal, or two neighbouring letters
  swapped ("stpo", "sotp"), or one letter typed twice ("sttop", "stopp");
* :func:`strict_eq` for single command words: one edit, only in words of 7+ letters;
* :func:`word_eq` for the words of a phrase: one edit in words of 4-9 letters, two in
  longer ones;
* :func:`loose_eq` for nouns whose meaning does not flip with a letter ("berigten"):
  one edit up to 7 letters, two from 8.

All but :func:`short_eq` want the first two letters right: they tell opposites apart
("aanmelden" / "afmelden", "inschrijven" / "uitschrijven") and are rarely mistyped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

__all__ = [
    "normalise_text",
    "fold",
    "distance",
    "word_eq",
    "strict_eq",
    "short_eq",
    "loose_eq",
    "find",
    "skip",
    "starts_with",
    "FILLER",
    "ORG_SLOT",
]

Eq = Callable[[str, str], bool]

# Optional in a subscribe phrase, and not counted as "other words" between its words.
FILLER = frozenset(
    "ja jawel yes yep i ik de het een a an the to van of from alle all me mij u je jullie "
    "ook wel voortaan".split())
ORG_SLOT = frozenset(("van", "from", "bij", "via"))  # the organisation's name follows

_RUNS = re.compile(r"([^\W\d_])\1{2,}")  # three or more of the same letter: "stoppp", "heeeelp"


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


def fold(text: str) -> str:
    """:func:`normalise_text`, accents removed ("coöperatie" -> "cooperatie") and runs of
    three or more of one letter shortened to one ("Stoppp" -> "stop", no Dutch or English
    word has three in a row)."""
    text = normalise_text(text)
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _RUNS.sub(r"\1", text)


def distance(a: str, b: str, limit: int) -> int:
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


def word_eq(token: str, word: str) -> bool:
    """A message token equals a phrase word, allowing typos in longer words."""
    if token == word:
        return True
    allowed = _allowed_edits(word)
    if allowed == 0 or len(token) < 3 or token[:2] != word[:2]:
        return False
    return distance(token, word, allowed) <= allowed


def strict_eq(token: str, word: str) -> bool:
    """Stricter typo tolerance for single command words: one edit, words of 7+ letters."""
    if token == word:
        return True
    return len(word) >= 7 and token[:2] == word[:2] and distance(token, word, 1) <= 1


def short_eq(token: str, word: str) -> bool:
    """Equal, two neighbouring letters swapped, or one letter doubled (not other edits:
    "top" and "stap" are words of their own, "stpo" and "sttop" are not)."""
    if token == word:
        return True
    if len(token) == len(word):
        diff = [i for i in range(len(word)) if token[i] != word[i]]
        return (len(diff) == 2 and diff[1] == diff[0] + 1
                and token[diff[0]] == word[diff[1]] and token[diff[1]] == word[diff[0]])
    if len(token) == len(word) + 1:
        for i in range(1, len(token)):
            if token[i] == token[i - 1] and token[:i] + token[i + 1:] == word:
                return True
    return False


def loose_eq(token: str, word: str) -> bool:
    """Typo tolerance for nouns: one edit up to 7 letters, two from 8 (first two letters
    right, or swapped)."""
    if token == word:
        return True
    if len(word) < 4 or len(token) < 3:
        return False
    if token[:2] != word[:2] and token[:2] != word[1::-1]:
        return False
    allowed = 1 if len(word) < 8 else 2
    return distance(token, word, allowed) <= allowed


def find(tokens: list[str], pattern: tuple[tuple[str, ...], ...], optional: tuple[bool, ...],
         max_gap: int, eq: Eq) -> tuple[int, int] | None:
    """Find ``pattern`` in ``tokens`` in order; return the (start, end) token span.

    Each pattern position lists its alternatives. Optional pattern words may be missing.
    Between two matched words at most ``max_gap`` non-filler tokens may stand (six more
    when the gap holds "van"/"from": the organisation's name). A pattern word may also
    match two adjacent tokens written together ("storings berichten"). The earliest, then
    tightest, match wins.
    """
    n = len(tokens)
    if all(optional):
        return None

    def gap_ok(a: int, b: int) -> bool:  # tokens[a:b] lie between two matched words
        between = tokens[a:b]
        extra = sum(1 for t in between if t not in FILLER)
        limit = max_gap + (6 if any(t in ORG_SLOT for t in between) else 0)
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


def skip(tokens: list[str], words: frozenset[str]) -> list[str]:
    """Tokens without the leading ones that are in ``words``."""
    i = 0
    while i < len(tokens) and tokens[i] in words:
        i += 1
    return tokens[i:]


def starts_with(tokens: list[str], seq: tuple[str, ...], eq: Eq) -> bool:
    """The first tokens equal ``seq`` word by word under ``eq``."""
    return len(tokens) >= len(seq) and all(eq(t, w) for t, w in zip(tokens, seq))
