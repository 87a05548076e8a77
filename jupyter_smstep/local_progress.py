"""A run's progress on a terminal: one line per change, for ``smstep run`` and scripts."""

from __future__ import annotations

import sys
from typing import Any

from .local_results import StepEvent


# ======================================================================================
# Terminal progress
# ======================================================================================
class TerminalProgress:
    """Prints a run's progress, one line per change, e.g. ``TerminalProgress(sys.stderr)``.

    Use it as ``on_event``. Colours and symbols when the stream is a terminal
    that can show them; plain ASCII otherwise (CI logs, pipes).
    """

    _COLORS = {"running": "36", "succeeded": "32", "failed": "31", "skipped": "33", "warning": "33", "retry": "35"}

    def __init__(self, stream: Any = None, *, color: bool | None = None, show_pending: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.color = isatty if color is None else color
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.unicode = "utf" in encoding
        self.show_pending = show_pending
        self.width = 12

    def _symbol(self, key: str) -> str:
        fancy = {"running": "▶", "succeeded": "✔", "failed": "✘", "skipped": "↷", "warning": "⚠",
                 "retry": "↻", "pending": "·"}
        plain = {"running": ">", "succeeded": "+", "failed": "x", "skipped": "-", "warning": "!",
                 "retry": "~", "pending": "."}
        return (fancy if self.unicode else plain).get(key, "?")

    def _paint(self, key: str, text: str) -> str:
        code = self._COLORS.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def __call__(self, event: StepEvent) -> None:
        line = self.format(event)
        if line is not None:
            print(line, file=self.stream, flush=True)

    def format(self, event: StepEvent) -> str | None:
        if event.kind == "run":
            if event.state == "running":
                steps = event.info.get("steps", [])
                self.width = max([self.width] + [len(s) for s in steps])
                return f"run {event.run_id}: {len(steps)} step(s), local  ({event.info.get('run_dir', '')})"
            took = f" in {event.duration:.1f}s" if event.duration is not None else ""
            verdict = self._paint(event.state, f"run {event.state}{took}")
            return f"{verdict}: {event.message or ''}".rstrip(": ")
        name = (event.step or "").ljust(self.width)
        key = event.kind if event.kind in ("warning", "retry") else event.state
        if event.state == "pending" and event.kind == "state" and not self.show_pending:
            return None
        symbol = self._paint(key, self._symbol(key))
        if event.kind == "warning":
            return f"  {symbol} {name}  warning: {event.message}"
        if event.kind == "retry":
            return f"  {symbol} {name}  {event.message}"
        if event.state == "running":
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return f"  {symbol} {name}  running{again}"
        took = f"{event.duration:6.2f}s" if event.duration is not None else "       "
        label = self._paint(key, event.state.ljust(9))
        text = f"  {symbol} {name}  {label} {took}"
        if event.state == "failed":
            text += f"  {event.message or ''}"
            if event.error:
                text += "\n" + "\n".join("      " + l for l in event.error.rstrip().splitlines())
        elif event.state == "skipped" and event.message:
            text = f"  {symbol} {name}  {label}          {event.message}"
        return text
