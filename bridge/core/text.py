"""Text helpers for mail bodies (pure): newline and space normalisation, and HTML to the
lines of text the report reader wants (html2text, tuned to read a mail rather than to write
Markdown)."""

from __future__ import annotations

import re

import html2text

__all__ = ["html_to_text", "normalise_text"]


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u2009\u200a"), " ")


def normalise_text(text: str) -> str:
    """Newlines to ``\\n``, non-breaking and odd spaces to spaces, trailing blanks removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_INVISIBLE).translate(_SPACES)
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# A table cell that holds a whole "Label: value" (a colon between digits, as in 09:42, is not
# a label's colon). Bounded: linear on any cell.
_CELL_LABEL = re.compile(r"^\s*[^\W\d_][^:\n]{0,40}(?<!\d):(?!\d)\s*\S")
# Text that would be read as the start of a "Label: value" line (the value may follow in a
# later piece of text, as in "<b>Status:</b> Nieuw").
_LABEL_START = re.compile(r"^\s*[^\W\d_][^:\n]{0,40}(?<!\d):(?!\d)")
# A cell that holds only a label ("Omschrijving", "Getroffen gebied:"): the first cell of a
# "Label | value" row.
_BARE_LABEL = re.compile(r"^\s*[^\W\d_][^:|\n]{0,60}:?\s*$")
_NBSP = "&nbsp_place_holder;"  # how html2text holds &nbsp; until the end


class _MailText(html2text.HTML2Text):
    """html2text, tuned to read a mail as lines of text rather than to write Markdown.

    * No Markdown escapes ("\\-------- Doorgestuurd bericht", "1\\. Herstart").
    * A table starts on a line of its own (html2text runs it on after the text before it).
    * Paragraphs and divs inside a table cell are separate lines (html2text joins them:
      "Status: NieuwGebied: Ede").
    * A row whose cells each hold a whole "Label: value" gives one line per cell; a row of a
      label cell and a value cell stays one ``Label| value`` line, as the report reader wants.
    * Inside such a value cell the text stays one value: paragraphs, divs and ``<br>`` give
      lines (a list of places, one per line, as the report reader continues a value), but a
      piece that would read as a label of its own ("Let op: ...", "Status: monteur onderweg")
      is joined to the line before with a space, and empty paragraphs give no blank line
      (which would end the value).
    """

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[list[list]] = []  # per open row: [separator index, start, label?, bare?]
        self._cells: list[list[bool]] = []  # per open cell: [has text, break pending, value?]

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        if self._cells:
            cell = self._cells[-1]
            blank = not data.replace(_NBSP, " ").strip()
            if cell[2] and blank and (cell[1] or not cell[0]):
                return  # an empty paragraph in a value cell: no blank line
            if not blank:
                if cell[1]:
                    if cell[2] and _LABEL_START.match(data.replace(_NBSP, " ")):
                        data = " " + data.lstrip()  # not a label of its own: same line
                    else:
                        self.soft_br()
                cell[0], cell[1] = True, False
        # entity_char=True: html2text then leaves out its Markdown escapes
        super().handle_data(data, entity_char=True)

    def handle_tag(self, tag: str, attrs, start: bool) -> None:  # type: ignore[override]
        if self.ignore_tables or self.bypass_tables:
            return super().handle_tag(tag, attrs, start)
        if tag == "table" and start:
            self.soft_br()
        elif tag in ("p", "div") and self._cells and not self.astack:
            cell = self._cells[-1]
            cell[1] = cell[1] or cell[0]  # a block after text in the same cell: a new line
        elif tag == "br" and self._cells and self._cells[-1][2]:
            cell = self._cells[-1]
            cell[1] = cell[1] or cell[0]  # decided at the next text, as for a paragraph
            return
        elif tag == "tr":
            if start:
                self._rows.append([])
            elif self._rows:
                row = self._rows.pop()
                if sum(1 for c in row if c[2]) >= 2:
                    for sep, *_ in row:
                        if sep is not None:
                            self.outtextlist[sep] = "\n"
        elif tag in ("td", "th"):
            if start:
                before = len(self.outtextlist)
                super().handle_tag(tag, attrs, start)
                sep = None
                if len(self.outtextlist) > before and self.outtextlist[-1] == "| ":
                    sep = len(self.outtextlist) - 1
                row = self._rows[-1] if self._rows else None
                value = bool(row) and row[0][3]  # after a label-only first cell
                if row is not None:
                    row.append([sep, len(self.outtextlist), False, False])
                self._cells.append([False, False, value])
                return
            if self._cells:
                self._cells.pop()
            if self._rows and self._rows[-1]:
                cell = self._rows[-1][-1]
                text = "".join(self.outtextlist[cell[1]:]).replace(_NBSP, " ")
                cell[2] = bool(_CELL_LABEL.match(text))
                cell[3] = bool(text.strip()) and bool(_BARE_LABEL.match(text))
        super().handle_tag(tag, attrs, start)


def html_to_text(html: str) -> str:
    """HTML -> plain text; table rows come out as ``Label| value`` (html2text's table style),
    paragraphs, line breaks and cells that hold a label each as lines of their own."""
    h = _MailText()
    h.body_width = 0
    h.ignore_links = True
    h.ignore_images = True
    h.ignore_emphasis = True
    h.unicode_snob = True  # keep é, ë as they are
    h.single_line_break = False
    try:
        out = h.handle(html)
    except Exception:  # html2text on broken markup: fall back to stripping tags
        out = re.sub(r"<[^>]+>", " ", html)
    return normalise_text(out)
