"""Reading a list of numbers an operator brings in (``bridge subscribers import``).

Pure: the file's text in, one :class:`ImportLine` per line that holds a number out. A
file is either one number per line, or a CSV (comma, semicolon, tab or bar) whose header
row names the number column (:data:`NUMBER_COLUMNS`, or ``column``). Blank lines and lines
starting with "#" are skipped; a first line that is only a column name is a header.

Each number is checked as ``bridge subscribers add`` checks it (:func:`check_number`):
valid for WhatsApp in its numbering plan (national forms read for ``region``), and of a
type that can have WhatsApp: toll-free, premium-rate and shared-cost numbers (0800, 0900)
are refused, fixed-line numbers accepted with a warning.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from bridge.core.phone import PhoneError, normalise, whatsapp_capable

__all__ = ["ImportLine", "NumberListError", "NUMBER_COLUMNS", "check_number", "read_numbers"]

# Header names of a number column (compared in lower case, without spaces, "-" and "_").
NUMBER_COLUMNS = ("number", "nummer", "telefoon", "telefoonnummer", "tel", "telnr", "mobiel",
                  "mobielnummer", "mobile", "gsm", "phone", "phonenumber", "whatsapp",
                  "whatsappnummer", "msisdn", "06nummer")
_DELIMITERS = ",;\t|"
_EXCEL_FLOAT = re.compile(r"^\s*\d+(?:[.,]\d+)?[eE]\+?\d+\s*$")


class NumberListError(ValueError):
    """The file as a whole cannot be read as a list of numbers (no number column)."""


@dataclass(frozen=True)
class ImportLine:
    """One line of the file that holds a number, and what it is."""

    line: int  # 1-based line number in the file
    raw: str  # the input as written (shown on the operator's own terminal only)
    number: str | None  # E.164, None when invalid
    problem: str | None = None  # why it is invalid (never repeats the input)
    warning: str | None = None  # accepted, but e.g. a fixed-line number


def check_number(raw: str, region: str = "NL") -> tuple[str | None, str | None, str | None]:
    """(E.164, problem, warning) for one number as an operator typed it: either the
    number and maybe a warning, or None and why it is refused. The problem never repeats
    the input (it may be shown or logged where the input may not)."""
    text = raw.strip()
    if _EXCEL_FLOAT.match(text):
        return None, ("a number written in scientific notation (as Excel does): its last "
                      "digits are lost; export the column as text"), None
    try:
        number = normalise(text, region)
    except PhoneError as e:
        return None, e.why, None
    verdict, why = whatsapp_capable(number)
    if verdict == "refuse":
        return None, why, None
    return number, None, why or None


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.strip().strip('"').lower())


def read_numbers(text: str, *, column: str | None = None,
                 region: str = "NL") -> tuple[list[ImportLine], int]:
    """The numbers in ``text`` line by line, and how many lines were skipped (blank,
    comment, header). Raises :class:`NumberListError` for a CSV without a number column
    (or without ``column``)."""
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")),
                 None)
    if first is None:
        return [], len(lines)
    head = lines[first]
    delimiter = next((d for d in _DELIMITERS if d in head), None)
    if column is not None and delimiter is None:
        delimiter = ","
    out: list[ImportLine] = []
    skipped = 0
    if delimiter is None:  # one number per line
        for i, ln in enumerate(lines, 1):
            if not ln.strip() or ln.lstrip().startswith("#") or (
                    i == first + 1 and _key(ln) in NUMBER_COLUMNS):
                skipped += 1
                continue
            number, problem, warning = check_number(ln, region)
            out.append(ImportLine(i, ln.strip(), number, problem, warning))
        return out, skipped
    rows = csv.reader(io.StringIO("\n".join(lines[first:])), delimiter=delimiter)
    header = next(rows)
    names = [_key(h) for h in header]
    wanted = [_key(column)] if column else list(NUMBER_COLUMNS)
    index = next((names.index(w) for w in wanted if w in names), None)
    if index is None:
        shown = ", ".join(repr(h.strip()) for h in header[:8])
        if column:
            raise NumberListError(f"no column {column!r} in the header row (line {first + 1}: "
                               f"{shown})")
        raise NumberListError(f"a CSV file needs a header row that names the number column "
                           f"(one of {', '.join(NUMBER_COLUMNS[:6])}, ...); line {first + 1} "
                           f"has {shown}; or name it with --column")
    skipped = first + 1  # the lines before the header and the header itself
    for row in rows:
        i = first + rows.line_num
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            skipped += 1
            continue
        raw = row[index].strip() if index < len(row) else ""
        if not raw:
            out.append(ImportLine(i, raw, None, "the number column is empty"))
            continue
        number, problem, warning = check_number(raw, region)
        out.append(ImportLine(i, raw, number, problem, warning))
    return out, skipped
