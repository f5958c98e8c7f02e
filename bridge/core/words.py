"""Word and phrase lists -> regular expressions (shared by the date reader and the labels).

Pure: no I/O. Lists come from :class:`bridge.core.labels.ReportRules` (config ``[parser]``)
and from the date defaults in :mod:`bridge.core.dates`.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["phrase_regex", "word_list_body"]


def word_list_body(words: Iterable[str]) -> str | None:
    """Regex alternatives for words/phrases (lower-cased, longest first, any blanks between
    the words of a phrase), or None when there are none."""
    alts = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    if not alts:
        return None
    return "|".join(r"\s+".join(re.escape(w) for w in a.split()) for a in alts)


def phrase_regex(phrases: Iterable[str]) -> re.Pattern | None:
    """One regex matching any phrase as a whole word/phrase, longest first, case-insensitive;
    None when there are no phrases."""
    body = word_list_body(phrases)
    if body is None:
        return None
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)
