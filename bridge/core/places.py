"""Places and postcodes in a report's value: the pieces of a places list and the postcodes in
it.

Pure: no I/O. The separators and the postcode shape come from the compiled
:class:`bridge.core.labels.ReportRules` (``place_separators``, ``postcode_pattern``).
Places on separate lines (or ``<br>`` in an HTML cell) are separate places; a wrapped list is
joined and split at the separators.
"""

from __future__ import annotations

import re

from bridge.core.labels import CompiledRules

__all__ = ["read_postcodes", "split_places"]

_PLACE_LINE_MAX = 40  # a line longer than this is part of a wrapped list, not one place
_BULLET = re.compile(r"^[-*\u2022]\s")


def _ends_with_separator(line: str, c: CompiledRules) -> bool:
    """Whether ``line`` ends with a place separator (",", "en", "and", ...)."""
    probe = line.rstrip() + " X"
    return any(m.end() == len(probe) - 1 for m in c.place_sep.finditer(probe))


def _place_items(lines: list[str], c: CompiledRules) -> list[str]:
    """The pieces of a places value to split at ``place_separators``: each line, when the
    places come one per line (bulleted lines, or short lines, most without a separator, as in
    an HTML cell with <br>); else the lines of a wrapped list joined with spaces. Two lines are
    always joined when the first ends with a separator ("Barneveld en") or the second starts
    with a lower-case letter ("Capelle aan / den IJssel")."""
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) < 2:
        return lines
    if all(_BULLET.match(line) for line in lines):
        return lines
    with_sep = sum(1 for line in lines if c.place_sep.search(line))
    one_per_line = (all(len(line) <= _PLACE_LINE_MAX for line in lines)
                    and 2 * with_sep <= len(lines))
    if not one_per_line:
        return [" ".join(lines)]
    groups = [[lines[0]]]
    for prev, line in zip(lines, lines[1:]):
        if _ends_with_separator(prev, c) or line[:1].islower():
            groups[-1].append(line)
        else:
            groups.append([line])
    return [" ".join(group) for group in groups]


def split_places(lines: list[str], c: CompiledRules) -> list[str]:
    """Places in a value (see :func:`_place_items`), each piece split at
    ``place_separators``; bullets and duplicates (case-insensitive) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for item in _place_items(lines, c):
        for part in c.place_sep.split(item):
            part = part.strip(" \t.-()*\u2022")
            part = re.sub(r"\s+", " ", part)
            if part and part.casefold() not in seen:
                seen.add(part.casefold())
                out.append(part)
    return out


def read_postcodes(value: str, c: CompiledRules) -> tuple[list[str], str]:
    """Postcodes found in ``value`` (normalised) and ``value`` with them removed."""
    out: list[str] = []
    seen: set[str] = set()
    for m in c.postcode.finditer(value):
        pc = re.sub(r"(\d{4})\s*([A-Z]{2})(?![A-Za-z])", r"\1 \2", m.group(0))
        pc = re.sub(r"\s*[-\u2013]\s*", "-", pc.strip())
        if pc not in seen:
            seen.add(pc)
            out.append(pc)
    return out, c.postcode.sub(" ", value)
