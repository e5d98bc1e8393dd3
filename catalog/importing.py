"""Parsing card-code lists pasted or uploaded by staff. Pure functions, no database."""

import csv
import io
import re
from dataclasses import dataclass

from django.utils.translation import gettext as _

MAX_SECRET = 256
MAX_CARD_NUMBER = 128
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
HEADER_WORDS = {"card_number", "cardno", "card", "number", "secret", "password", "code", "卡号", "卡密", "密码", "密钥"}


@dataclass(frozen=True)
class Line:
    number: int
    card_number: str
    secret: str


@dataclass(frozen=True)
class Problem:
    number: int
    problem: str

    def as_dict(self) -> dict:
        return {"line": self.number, "problem": self.problem}


def decode_upload(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030, which Chinese spreadsheet exports use."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError("the file is neither UTF-8 nor GB18030 text")


def _split(text: str) -> list[str]:
    for sep in ("----", "\t", ","):
        if sep in text:
            return [part.strip() for part in text.split(sep)]
    # Spaces (ASCII or full-width) only: str.split() would also treat control characters
    # such as \x1c or \x85 as separators instead of reporting them.
    return [part for part in re.split(r"[ \u3000]+", text) if part]


def _check(number: int, fields: list[str]) -> Line | Problem:
    fields = [f.strip() for f in fields]
    if len(fields) == 1:
        card_number, secret = "", fields[0]
    elif len(fields) == 2:
        card_number, secret = fields
    else:
        return Problem(number, _("expected 'secret' or 'card number, secret', found %(n)d fields") % {"n": len(fields)})
    if not secret:
        return Problem(number, _("the secret is empty"))
    if len(secret) > MAX_SECRET:
        return Problem(number, _("the secret is longer than %(n)d characters") % {"n": MAX_SECRET})
    if len(card_number) > MAX_CARD_NUMBER:
        return Problem(number, _("the card number is longer than %(n)d characters") % {"n": MAX_CARD_NUMBER})
    if any(not ch.isprintable() or ch.isspace() for ch in secret + card_number):
        return Problem(number, _("contains spaces or control characters"))
    return Line(number, card_number, secret)


def split_lines(text: str) -> list[str]:
    """Only CR/LF end a line: str.splitlines() also splits at \\v, \\f, \\x1c-\\x1e, \\x85 and
    U+2028/9, which would cut a code in two instead of reporting its control character."""
    return _LINE_BREAK.split(text.removesuffix("\n").removesuffix("\r"))


def _csv_rows(text: str):
    """CSV rows numbered by the file line they start on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text))
    start = 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1


def parse(text: str, *, csv_format: bool = False) -> tuple[list[Line], list[Problem]]:
    """Split a list into lines to import and problems, keeping 1-based line numbers.

    A line is ``secret`` or ``card number`` and ``secret`` separated by ``----``, a tab, a
    comma or spaces (CSV files: by the CSV rules). Blank lines are skipped; a first line of
    column names is recognised and skipped.
    """
    lines: list[Line] = []
    problems: list[Problem] = []
    if csv_format:
        rows = _csv_rows(text)
    else:
        rows = ((n, _split(raw.strip())) for n, raw in enumerate(split_lines(text), start=1))
    for number, fields in rows:
        if not any(f.strip() for f in fields):
            continue
        if number == 1 and {f.strip().lower() for f in fields} & HEADER_WORDS:
            continue
        result = _check(number, fields)
        (lines if isinstance(result, Line) else problems).append(result)
    return lines, problems
