"""The docs quote the real code: every excerpt must still be in its file.

A fenced ``python`` block whose first line is ``# path/to/file.py`` is an
excerpt of that file. Its lines must appear in the file consecutively, all
indented by the same amount (blank lines match blank lines).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```python\n# ([\w/]+\.py)\n(.*?)```", re.DOTALL)


def excerpts() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for match in BLOCK.finditer(doc.read_text(encoding="utf-8")):
            found.append((doc.name, match.group(1), match.group(2)))
    return found


def contains(text: str, excerpt: str) -> bool:
    lines = text.splitlines()
    wanted = textwrap.dedent(excerpt).rstrip("\n").splitlines()
    for start in range(len(lines) - len(wanted) + 1):
        first = lines[start]
        indent = first[: len(first) - len(first.lstrip())]
        if all(
            (not want and not line.strip()) or line == indent + want
            for want, line in zip(wanted, lines[start : start + len(wanted)])
        ):
            return True
    return False


def test_the_docs_have_excerpts() -> None:
    assert len(excerpts()) >= 8


@pytest.mark.parametrize(
    ("doc", "path", "excerpt"),
    excerpts(),
    ids=[
        f"{doc}:{path}:{excerpt.split('(')[0].strip()}"
        for doc, path, excerpt in excerpts()
    ],
)
def test_excerpt_matches_the_code(doc: str, path: str, excerpt: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    assert contains(source, excerpt), f"{doc} quotes {path}, which has changed"


def test_contains_needs_the_exact_lines() -> None:
    text = "class A:\n    def f(self):\n        return 1\n"
    assert contains(text, "def f(self):\n    return 1\n")
    assert not contains(text, "def f(self):\n    return 2\n")
    assert not contains(text, "def f(self):\n  return 1\n")
