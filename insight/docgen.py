"""Generated blocks in Markdown files: the text between two marker comments is rewritten."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def rewrite(path: str | Path, render: Callable[[str], str]) -> int:
    file = Path(path)
    file.write_text(render(file.read_text()))
    return 0
