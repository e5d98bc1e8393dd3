"""Django's ``{# … #}`` comment ends at the line's end: one spread over lines is printed on the
page as text. Multi-line comments must be ``{% comment %}``."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNCLOSED = re.compile(r"\{#(?:(?!#\}).)*$", re.M)


def test_no_template_comment_spans_lines():
    found = []
    for path in sorted(ROOT.glob("**/templates/**/*")):
        if ".venv" in path.parts or not path.is_file() or path.suffix not in {".html", ".txt", ".xml"}:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if UNCLOSED.search(line):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()[:80]}")
    assert found == [], "{# … #} must close on its line (use {% comment %}):\n" + "\n".join(found)
