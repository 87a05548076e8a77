"""Live per-step progress of a local run in a notebook (``%pipeline run``).

It consumes the runner's events (one per state change of a step) and redraws
one display area: state, duration and attempt of every step. The terminal's
view is :class:`jupyter_smstep.text.TerminalProgress`.
"""

from __future__ import annotations

import contextlib
import html
import sys
import time
from typing import Any
from collections.abc import Callable, Iterator

from jupyter_smstep.core.states import GLYPHS

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

    def html(self) -> str:
        cells = "".join(
            f"<tr><td style='color:{COLOURS.get(r['state'], '#000')}'>{GLYPHS.get(r['state'], '?')}</td>"
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
