"""Live per-step progress of a local run, in a notebook or on a terminal.

Both consume the runner's events (one per state change of a step) and redraw
a small table: state, duration and, for a failure, the step's own error.
"""

from __future__ import annotations

import contextlib
import html
import sys
import time
from typing import Any, Callable, Iterator, TextIO

ICONS = {"pending": "·", "running": "▶", "succeeded": "✓", "failed": "✗", "skipped": "⤼"}
COLOURS = {"pending": "#888", "running": "#1a73e8", "succeeded": "#188038", "failed": "#d93025", "skipped": "#b06000"}


class Table:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def update(self, event: Any) -> None:
        name = getattr(event, "step", None)
        if name is None or getattr(event, "kind", "state") not in ("state", "retry"):
            return  # run-level events and warnings are reported elsewhere
        row = self.rows.setdefault(name, {"state": "pending", "duration": None, "attempt": 1})
        row["state"] = getattr(event, "state", row["state"])
        row["duration"] = getattr(event, "duration", None)
        row["attempt"] = getattr(event, "attempt", row["attempt"]) or row["attempt"]

    def text(self) -> str:
        lines = []
        for name, row in self.rows.items():
            dur = f"{row['duration']:.1f}s" if row["duration"] is not None else ""
            retry = f" (attempt {row['attempt']})" if row["attempt"] and row["attempt"] > 1 else ""
            lines.append(f"{ICONS.get(row['state'], '?')} {name:<24} {row['state']:<10} {dur}{retry}")
        return "\n".join(lines)

    def html(self) -> str:
        cells = "".join(
            f"<tr><td style='color:{COLOURS.get(r['state'], '#000')}'>{ICONS.get(r['state'], '?')}</td>"
            f"<td><code>{html.escape(n)}</code></td><td>{r['state']}</td>"
            f"<td>{_seconds(r['duration'])}</td></tr>"
            for n, r in self.rows.items()
        )
        return f"<table class='smstep-progress'>{cells}</table>"


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f"{duration:.1f}s"


@contextlib.contextmanager
def notebook_progress() -> Iterator[Callable[[Any], None]]:
    """An ``on_event`` callback that redraws one display area in place."""
    from IPython.display import HTML, display

    table = Table()
    handle = display(HTML("<i>starting local run…</i>"), display_id=True)

    def on_event(event: Any) -> None:
        if getattr(event, "kind", "state") == "warning":
            print(f"jupyter_smstep: {event.step or 'run'}: {event.message}", file=sys.stderr)
        table.update(event)
        if handle is not None:
            handle.update(HTML(table.html()))

    yield on_event


def terminal_progress(stream: TextIO = sys.stderr) -> Callable[[Any], None]:
    """An ``on_event`` callback printing one line per state change (CI-log friendly)."""

    def on_event(event: Any) -> None:
        name = getattr(event, "step", None)
        state = getattr(event, "state", "")
        kind = getattr(event, "kind", "state")
        if kind == "warning":
            print(f"! {name or 'run'}: {event.message}", file=stream, flush=True)
            return
        if name is None:
            return
        if kind == "retry":
            print(f"↻ {name}: attempt {event.attempt} failed, retrying ({event.message})", file=stream, flush=True)
            return
        dur = getattr(event, "duration", None)
        tail = f" in {dur:.1f}s" if dur is not None and state in ("succeeded", "failed") else ""
        print(f"{ICONS.get(state, '?')} {name}: {state}{tail}", file=stream, flush=True)

    return on_event
