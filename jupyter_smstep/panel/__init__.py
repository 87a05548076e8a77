"""The pipeline panel (ipywidgets): DAG, settings with their sources, problems, run, submit, follow.

``widget`` (the ipywidgets tree and its actions) renders what ``state`` holds
(view state and reducers, no widgets), with ``html`` (the header, the DAG's
views, a step's details, the problems), ``runs`` (a local run, a SageMaker
execution, the history), ``highlight`` (a cell's source, coloured), ``pieces``
(escaping and the like), ``svg`` + ``layout`` (the DAG) and ``progress`` (a
local run's table in a notebook). Importing this package does not import ipywidgets:
:func:`show` does.
"""

from __future__ import annotations

from typing import Any


def show(workspace: Any) -> Any:
    """The panel for ``workspace``; what ``%pipeline show`` and ``jupyter_smstep.show_panel()`` return."""
    from jupyter_smstep.panel.widget import show as _show

    return _show(workspace)
