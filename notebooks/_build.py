"""Write the tour notebooks (``notebooks/*.ipynb``) from their sources, the jupytext "percent" files beside them.

    python notebooks/_build.py            # rewrite the three notebooks from quickstart.py, ...
    python notebooks/_build.py --check    # exit 1 if a notebook differs from what its source gives

Edit ``NAME.py`` (plain Python, linted with the package; ``# %%`` starts a code cell, ``# %% [markdown]`` a text
cell), then run this script. The ``.ipynb`` files are the deliverable (opened on Colab, executed by
``tests/test_notebooks.py``), always saved stripped: no outputs, ``execution_count: null``, stable cell ids.
"""

from __future__ import annotations

import pathlib
import sys

import jupytext
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOKS = ("quickstart", "permutation_invariance", "benchmark")
METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "colab": {"provenance": [], "toc_visible": True},
}


def cells(stem: str) -> list[tuple[str, str]]:
    """The (kind, source) cells of a notebook's percent source ``NAME.py``."""
    source = jupytext.read(HERE / f"{stem}.py", fmt="py:percent")
    return [("md" if c.cell_type == "markdown" else "code", c.source) for c in source.cells]


def build(stem: str) -> nbformat.NotebookNode:
    """The stripped notebook of ``NAME.py``, with the Colab metadata and ids ``NAME-00``, ``NAME-01``, ..."""
    nb = new_notebook()
    nb.metadata = METADATA
    for i, (kind, src) in enumerate(cells(stem)):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell.id = f"{stem[:40]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for stem in NOTEBOOKS:
        path = HERE / f"{stem}.ipynb"
        text = nbformat.writes(build(stem)) + "\n"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            tmp.replace(path)  # atomic: a notebook is the old one or the new one
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/_build.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
