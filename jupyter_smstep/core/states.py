"""The kinds the package passes around, typed: problem severities, input kinds, step states,
setting sources, run events, and the one table of state glyphs every view draws with.

They are ``Literal`` strings, not enums: they travel as they are into JSON
(``smstep graph --json``, ``run.json``, the lab extension's payload) and back.
"""

from __future__ import annotations

from typing import Literal, get_args

Severity = Literal["error", "warning"]

#: Where one input of a step comes from.
InputKind = Literal["step", "parameter", "value", "import", "execution"]

#: A step's state, locally and on SageMaker (``remote.monitor`` maps the service's statuses onto these).
StepState = Literal["pending", "running", "succeeded", "failed", "skipped", "stopped"]
STEP_STATES: tuple[StepState, ...] = get_args(StepState)

#: What a local run's event reports: a step's state changed, an attempt is retried, a warning, the run itself.
EventKind = Literal["state", "retry", "warning", "run", "log"]  # log: a line the step's own code printed

#: Which level of the precedence gave a setting its value, highest first.
SettingSource = Literal["cell", "notebook", "config.yaml", "kernel image", "default"]
SETTING_SOURCES: tuple[SettingSource, ...] = get_args(SettingSource)

#: One glyph per state (and for a retry or a warning), shared by the terminal, the notebook and the panel.
GLYPHS: dict[str, str] = {
    "pending": "·",
    "running": "▶",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "⤼",
    "stopped": "■",
    "retry": "↻",
    "warning": "⚠",
}
#: The same for a stream that cannot show them (CI logs with an ASCII locale, pipes).
ASCII_GLYPHS: dict[str, str] = {
    "pending": ".",
    "running": ">",
    "succeeded": "+",
    "failed": "x",
    "skipped": "-",
    "stopped": "#",
    "retry": "~",
    "warning": "!",
}
