"""The config reference of docs/guide.md, generated from pinn_jax/config.py: one row per key, with its type,
default and meaning.

    python docs/config_table.py          # rewrite the table in docs/guide.md
    python docs/config_table.py --check  # exit 1 when the guide's table differs from config.py

A key's meaning is its field's trailing ``#`` comment in config.py, continued by the comment-only lines right
below it (a comment after a blank line belongs to no field). Types and defaults are the dataclasses' own.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import pathlib
import sys
import tempfile
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = ROOT / "pinn_jax" / "config.py"
GUIDE = ROOT / "docs" / "guide.md"
BEGIN, END = "<!-- config-table -->", "<!-- /config-table -->"


def field_comments(source: str) -> dict[str, dict[str, tuple[str, str]]]:
    """``{class name: {field: (annotation, meaning)}}`` for every annotated field of every top-level class."""
    lines = source.splitlines()
    notes = {tok.start[0]: tok.string.lstrip("#").strip()
             for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    classes = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = {}
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            line, text = stmt.end_lineno, []
            if line in notes:  # the trailing comment, then the comment-only lines below it
                text.append(notes[line])
                while line + 1 in notes and lines[line].lstrip().startswith("#"):
                    line += 1
                    text.append(notes[line])
            fields[stmt.target.id] = (ast.unparse(stmt.annotation), " ".join(text))
        classes[node.name] = fields
    return classes


def _type(annotation: str) -> str:
    names = [p.strip() for p in annotation.split("|")]
    return " or ".join("list of int" if n == "tuple[int, ...]" else "null" if n == "None" else n for n in names)


def _default(value: object) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (tuple, list)):
        return f"`[{', '.join(map(str, value))}]`"
    return f"`{value}`"


def table() -> str:
    """The reference as a Markdown table, in the order of :class:`pinn_jax.config.Config`'s fields."""
    sys.path.insert(0, str(ROOT))
    from pinn_jax.config import Config

    docs = field_comments(SOURCE.read_text())
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def add(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory):  # a section
                add(f.default_factory, f"{prefix}{f.name}.")
                continue
            annotation, meaning = docs[cls.__name__][f.name]
            if not meaning:
                raise ValueError(f"pinn_jax/config.py: {cls.__name__}.{f.name} has no '#' comment to say what it means")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append(f"| `{prefix}{f.name}` | {_type(annotation)} | {_default(default)} | "
                        f"{meaning.replace('|', chr(92) + '|')} |")

    add(Config, "")
    return "\n".join(rows)


def updated(guide: str) -> str:
    """``guide`` with the text between its markers replaced by the current table."""
    head, rest = guide.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = GUIDE.read_text()
    new = updated(text)
    if "--check" in argv:
        if new != text:
            print(f"{GUIDE} is out of date with {SOURCE}: run python docs/config_table.py", file=sys.stderr)
            return 1
        return 0
    with tempfile.NamedTemporaryFile("w", dir=GUIDE.parent, suffix=".tmp", delete=False) as f:
        f.write(new)
    os.replace(f.name, GUIDE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
