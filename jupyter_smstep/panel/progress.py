"""Live per-step progress of a local run in a notebook (``%pipeline run``).

It consumes the runner's events (one per state change of a step) and redraws
one display area: state, duration and attempt of every step. The terminal's
view is :class:`jupyter_smstep.text.TerminalProgress`.
"""

from __future__ import annotations

import contextlib
import html
import sys
from typing import Any
from collections.abc import Callable, Iterator

from jupyter_smstep.core.states import GLYPHS
from jupyter_smstep.local.results import StepEvent

#: The lines of a step's output the notebook keeps (the whole output is in the step's log.txt)
PRINTED_LINES = 200
COLOURS = {"pending": "#888", "running": "#1a73e8", "succeeded": "#188038", "failed": "#d93025", "skipped": "#b06000"}


class Table:
    """Each step's latest state, duration and attempt, as the run's events report them."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.printed: dict[str, list[str]] = {}  # step -> the lines its code printed (the last PRINTED_LINES)

    def update(self, event: StepEvent) -> None:
        if event.step is not None and event.kind == "log":
            lines = self.printed.setdefault(event.step, [])
            lines.append(event.message or "")
            del lines[:-PRINTED_LINES]
            return
        if event.step is None or event.kind not in ("state", "retry"):
            return  # run-level events and warnings are reported elsewhere
        row = self.rows.setdefault(event.step, {"state": "pending", "duration": None, "attempt": 1})
        row["state"] = event.state
        row["label"] = (
            f"cached (run {event.info['cached_from']})"
            if "cached_from" in event.info
            else f"taken ({event.info['taken_from']})"
            if "taken_from" in event.info
            else event.state
        )
        row["duration"] = event.duration
        row["attempt"] = event.attempt or row["attempt"]

    def html(self) -> str:
        cells = "".join(
            f"<tr><td style='color:{COLOURS.get(r['state'], '#000')}'>{GLYPHS.get(r['state'], '?')}</td>"
            f"<td><code>{html.escape(n)}</code></td><td>{html.escape(r.get('label', r['state']))}</td>"
            f"<td>{_seconds(r['duration'])}</td></tr>"
            for n, r in self.rows.items()
        )
        printed = "".join(
            f"<details class='smstep-printed' data-step='{html.escape(n)}'><summary>{html.escape(n)} printed "
            f"{len(lines)} line{'s' if len(lines) != 1 else ''}</summary><pre style='max-height:240px;overflow:auto'>"
            + html.escape("\n".join(lines))
            + "</pre></details>"
            for n, lines in self.printed.items()
        )
        return f"<table class='smstep-progress'>{cells}</table>{printed}"


def _seconds(duration: float | None) -> str:
    return "" if duration is None else f"{duration:.1f}s"


@contextlib.contextmanager
def notebook_progress() -> Iterator[Callable[[StepEvent], None]]:
    """An ``on_event`` callback that redraws one display area in place."""
    from IPython.display import HTML, display

    table = Table()
    handle = display(HTML("<i>starting local run…</i>"), display_id=True)

    def on_event(event: StepEvent) -> None:
        if event.kind == "warning":
            print(f"jupyter_smstep: {event.step or 'run'}: {event.message}", file=sys.stderr)
        table.update(event)
        if handle is not None:
            handle.update(HTML(table.html()))

    yield on_event
