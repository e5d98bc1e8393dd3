"""Texts drawn in Python through ``marketplace.templatetags.i18n_kept.texts`` (``texts()["..."]``,
``t = texts()`` then ``t["..."]``, ``t = texts().__getitem__`` then ``t("...")``) are looked up by
``gettext`` at run time, but ``makemessages`` (xgettext) only extracts the literals passed to the
gettext family, and not inside the fields of an f-string (xgettext 0.21 reads an f-string as one
literal). Each such literal is therefore marked ``gettext_noop("...")`` outside any f-string in the
same module: where it is used, or in the module's ``_TEXTS`` tuple. An unmarked literal would be
marked obsolete by the next ``makemessages`` run and the Chinese page would show English.

The sources are parsed (no import): every subscript or call of a texts table must take a string
literal (or a ``gettext_noop`` of one) that the module marks where xgettext sees it, and every such
literal must have a zh-hans translation. Where xgettext is installed, it is asked too."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "var", "tests", "node_modules", "staticfiles", "migrations", "bench"}


def _sources() -> list[Path]:
    found = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts[:-1]):
            continue
        text = path.read_text(encoding="utf-8")
        if "texts" in text and "i18n_kept" in text:
            found.append(path)
    return found


def _is_texts_call(node: ast.AST) -> bool:
    """``texts()``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "texts"


def _table_names(tree: ast.AST) -> set[str]:
    """Names bound to a texts table or its ``__getitem__``: ``t = texts()``, ``t =
    texts().__getitem__``, and parameters annotated ``Texts``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Attribute) and value.attr == "__getitem__":
                value = value.value
            if _is_texts_call(value):
                names.add(node.targets[0].id)
        elif isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "Texts":
            names.add(node.arg)
    return names


def _is_table(node: ast.AST, names: set[str]) -> bool:
    return _is_texts_call(node) or (isinstance(node, ast.Name) and node.id in names)


def _lookups(path: Path) -> list[tuple[int, ast.AST]]:
    """(line, message expression) of every look-up in a texts table in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = _table_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_table(node.value, names):
            found.append((node.lineno, node.slice))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names and node.args:
            found.append((node.lineno, node.args[0]))
    return found


def _noop_literal(node: ast.AST) -> str | None:
    """The literal of ``gettext_noop("literal")``, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "gettext_noop"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _marked(path: Path) -> set[str]:
    """The literals of ``gettext_noop("...")`` in ``path`` outside any f-string: what xgettext
    extracts with Django's ``--keyword=gettext_noop``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    return {lit for n in ast.walk(tree) if id(n) not in inside and (lit := _noop_literal(n)) is not None}


def _literal(expr: ast.AST) -> str | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    return _noop_literal(expr)


def _messages() -> tuple[dict[str, list[str]], list[str]]:
    """Every message looked up in a texts table, with where; and the look-ups xgettext would miss."""
    messages: dict[str, list[str]] = {}
    missed = []
    for path in _sources():
        marked = _marked(path)
        for line, expr in _lookups(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            literal = _literal(expr)
            if literal is None or literal not in marked:
                missed.append(f"{where}: {ast.unparse(expr)}")
            if literal is not None:
                messages.setdefault(literal, []).append(where)
    return messages, missed


MESSAGES, MISSED = _messages()


def test_the_sources_are_found():
    """The scan sees the modules that draw with texts (else the checks below check nothing)."""
    names = {str(p.relative_to(ROOT)) for p in _sources()}
    assert "orders/templatetags/order_page.py" in names
    assert "aftersales/templatetags/aftersales_order.py" in names
    assert "Order details" in MESSAGES and "Reveal" in MESSAGES


def test_every_texts_literal_is_marked_for_makemessages():
    assert not MISSED, f"texts() look-ups makemessages would not extract (mark them with gettext_noop): {MISSED}"


def test_the_check_catches_an_unmarked_literal(tmp_path):
    """Each shape of look-up is found, and a literal marked only inside an f-string is not marked."""
    source = (
        "from marketplace.templatetags.i18n_kept import Texts, texts\n"
        "from django.utils.translation import gettext_noop\n"
        "_TEXTS = (gettext_noop('A'),)\n"
        "a = texts()['A']\n"
        "t = texts()\n"
        "b = f\"{t[gettext_noop('B')]}\"\n"
        "g = texts().__getitem__\n"
        "c = g('C')\n"
        "def f(x: Texts):\n"
        "    return x[gettext_noop('D')]\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    assert sorted((line, _literal(expr)) for line, expr in _lookups(path)) == [
        (4, "A"),
        (6, "B"),
        (8, "C"),
        (10, "D"),
    ]
    assert _marked(path) == {"A", "D"}


@pytest.mark.skipif(not shutil.which("xgettext"), reason="gettext's xgettext is not installed")
def test_xgettext_extracts_every_texts_literal():
    """What makemessages runs (xgettext with Django's keywords) finds every message looked up."""
    files = sorted({where.split(":")[0] for places in MESSAGES.values() for where in places})
    out = subprocess.run(
        ["xgettext", "--language=Python", "--keyword=gettext_noop", "--from-code=UTF-8", "-o", "-", *files],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    extracted = set()
    parts: list[str] | None = None
    for line in [*out.splitlines(), ""]:
        if parts is not None and line.startswith('"'):
            parts.append(ast.literal_eval(line))
            continue
        if parts is not None:
            extracted.add("".join(parts))
        parts = [ast.literal_eval(line.removeprefix("msgid "))] if line.startswith("msgid ") else None
    assert set(MESSAGES) - extracted == set()


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_every_texts_literal_has_a_chinese_translation(message):
    with translation.override("zh-hans"):
        chinese = translation.gettext(message)
    assert chinese != message, f"no zh-hans translation for {message!r} (used at {MESSAGES[message]})"
