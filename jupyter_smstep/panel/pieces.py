"""The small pieces every panel fragment uses: escaping, plurals, a section title, the tail of a text."""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    return html.escape(str(value))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def section(title: str) -> str:
    return (
        f"<div style='margin-top:8px;font-weight:600;border-bottom:1px solid var(--jp-border-color2,#d0d7de)'>"
        f"{esc(title)}</div>"
    )


def tail_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:]) if len(lines) > n else text
