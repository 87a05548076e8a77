"""The saved notebook is the pipeline: build a :class:`Workspace` from an .ipynb headless.

Ordinary cells run, in order, in a real IPython shell (so helpers, constants
and imports exist to be captured); ``%%step`` cells are registered without
running; a cell tagged ``parameters`` (papermill's convention) runs and each
name it assigns becomes a pipeline parameter. Cell output goes nowhere, so
``smstep graph --json`` prints clean JSON.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.ipython.magics import cells_set_environment, tagged_parameters
from jupyter_smstep.workspace import Workspace, pipeline_name_from_path


class _Node(dict):
    """A notebook or cell dict with attribute access, as nbformat's ``NotebookNode``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read_notebook(path: Path) -> Any:
    """The notebook as an nbformat v4 ``NotebookNode``.

    A v4 file (every notebook since 2015) is read as JSON: importing nbformat costs ~3 s (its
    validator builds JSON-schema format checkers), more than the rest of a headless build. Older
    files go through nbformat, which converts them.
    """
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SmstepError(f"{path} is not a readable notebook: {exc}") from None
    if isinstance(data, dict) and data.get("nbformat") == 4 and isinstance(data.get("cells"), list):
        cells = []
        for index, cell in enumerate(data["cells"], start=1):
            if not isinstance(cell, dict) or "cell_type" not in cell:
                raise SmstepError(f"{path} is not a readable notebook: a cell has no cell_type")
            if cell["cell_type"] == "code" and not isinstance(cell.get("source"), (str, list)):
                raise SmstepError(
                    f"{path} is not a readable notebook: code cell #{index} has no source "
                    "(nbformat requires one; a tool that wrote the file dropped it)",
                    fix="open and save the notebook in Jupyter, or restore the cell's source",
                )
            source = cell.get("source", "")
            cells.append(_Node(cell, source="".join(source) if isinstance(source, list) else str(source)))
        return _Node(data, cells=cells)
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
        raise SmstepError(f"{path} is not a readable notebook: {exc}") from None


def load_workspace(path: str | Path) -> Workspace:
    from IPython.utils.capture import capture_output

    from jupyter_smstep.core.registry import analyse_source
    from jupyter_smstep.ipython import extension
    from jupyter_smstep.ipython.magics import StepMagics, looks_like_step

    path = Path(path)
    if not path.is_file():
        raise SmstepError(f"no notebook at {path}", fix="pass the path of an .ipynb file")
    nb = read_notebook(path)
    _check_python_kernel(nb, path)
    shell = _fresh_shell()
    shell.user_ns["__session__"] = str(path)
    magics = StepMagics(shell, headless=True)
    magics.workspace.default_name = pipeline_name_from_path(str(path))
    magics.workspace.origin = path.name
    folder = path.parent.resolve()  # once: the loop below changes the working directory
    magics.workspace.root = folder
    magics.workspace.live = False
    # The extension is "loaded" in this shell with the headless magics: the notebook's own
    # %load_ext / %reload_ext jupyter_smstep lines keep them instead of registering a second recorder.
    extension.attach(shell, magics)
    shell.extension_manager.loaded.add("jupyter_smstep")
    cwd = os.getcwd()
    environment = dict(os.environ)  # the cells' os.environ changes stay theirs: jobs start without them
    os.chdir(folder)  # relative paths in cells resolve as they do in Jupyter
    expected: dict[int, str] = {}  # the %%step cells: their index -> their cell id
    ids: dict[str, int] = {}  # cell id -> the first cell that has it
    sys.path.insert(0, str(folder))  # as in a kernel started beside the notebook
    try:
        for index, cell in enumerate(nb.cells, start=1):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            source = cell.source
            # A notebook saved without cell ids (nbformat < 4.5) still has distinct cells: two unnamed
            # step cells with the same first variable must not replace each other.
            cell_id = _unique_id(cell.get("id") or f"index-{index}", index, ids, magics)
            if looks_like_step(source):
                expected[index] = cell_id
            magics.recorded_in_cell = None
            with capture_output() as captured:
                shell.parent_header = {"metadata": {"cellId": cell_id}}  # the magics read the cell id here
                result = shell.run_cell(source, store_history=False)
            is_step = magics.recorded_in_cell is not None
            if is_step or looks_like_step(source):
                if not result.success:  # e.g. an unknown option: never drop a step silently
                    raise SmstepError(_cell_failure(index, result, magics, captured.stdout))
                continue
            python = shell.transform_cell(source)
            analysis, _ = analyse_source(python)
            if not result.success:
                if _uses_step_output(result, magics):
                    # An inspection cell (print(score), assert ...): it has no place in the
                    # pipeline. Recorded, so the graph warns, or errors if a step needs it.
                    magics.registry.record_plain(python, cell_id=cell_id, analysis=analysis)
                    continue
                raise SmstepError(_cell_failure(index, result, magics, captured.stdout))
            magics.registry.record_plain(python, cell_id=cell_id, analysis=analysis)
            if "parameters" in cell.get("metadata", {}).get("tags", []) and analysis is not None:
                values, problems = tagged_parameters(analysis, shell.user_ns, f"cell #{index}")
                for name, value in values.items():
                    magics.registry.set_parameter(name, value)
                for problem in problems:
                    magics.registry.note(problem)
    finally:
        os.chdir(cwd)
        if str(folder) in sys.path:  # a cell may have edited sys.path itself
            sys.path.remove(str(folder))
        _restore_environment(environment, magics)
    _check_every_step_registered(expected, magics)
    return magics.workspace


def _restore_environment(before: dict[str, str], magics: Any) -> None:
    """Undo what the notebook's cells did to ``os.environ``, and say it: a job never sees a kernel's changes."""
    changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
    if not changed:
        return
    os.environ.clear()
    os.environ.update(before)
    magics.registry.note(cells_set_environment(changed))


def _unique_id(cell_id: str, index: int, ids: dict[str, int], magics: Any) -> str:
    """A cell id no earlier cell has: two cells sharing one (merged notebooks) stay two cells, with a word."""
    if cell_id not in ids:
        ids[cell_id] = index
        return cell_id
    magics.registry.note(
        Problem(
            f"cells #{ids[cell_id]} and #{index} share the cell id {cell_id!r} (a merged or hand-edited notebook?): "
            "both are kept, in their order",
            fix="open and save the notebook in JupyterLab, which gives each cell an id of its own",
            severity="warning",
        )
    )
    unique = f"{cell_id}#{index}"
    ids[unique] = index
    return unique


def _check_every_step_registered(expected: dict[int, str], magics: Any) -> None:
    """A notebook whose %%step cells did not all become steps is an error, never a smaller pipeline."""
    recorded = {c.cell_id for c in magics.registry.steps}
    missing = [index for index, cell_id in expected.items() if cell_id not in recorded]
    if missing:
        cells = ", ".join(f"#{i}" for i in missing)
        raise SmstepError(
            f"the notebook has {len(expected)} %%step cell(s) but the headless build registered "
            f"{len(expected) - len(missing)}: cell(s) {cells} did not become steps",
            fix="check those cells' %%step lines (a cell magic above %%step must pass the cell "
            "on to it), or run the notebook in a kernel to see what they do",
        )


def _check_python_kernel(nb: Any, path: Path) -> None:
    """A notebook for another language would fail on its first cell with a Python error: say what it is."""
    meta = nb.get("metadata", {})
    language = meta.get("kernelspec", {}).get("language") or meta.get("language_info", {}).get("name") or "python"
    if str(language).lower() != "python":
        kernel = meta.get("kernelspec", {}).get("name") or language
        raise SmstepError(
            f"{path.name} is a {language} notebook (kernel {kernel!r}): jupyter_smstep builds "
            "pipelines from Python notebooks",
            fix="use a notebook whose kernel is Python 3",
        )


def _fresh_shell() -> Any:
    """A new IPython shell for one notebook: nothing leaks from a notebook loaded before it.

    Not ``InteractiveShell.instance()``: that singleton keeps every name a previous
    notebook defined, so a step reading a name this notebook never defines would
    silently capture the other notebook's value. History is off (nothing to keep,
    and no SQLite file to lock).
    """
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class HeadlessShell(InteractiveShell):
        """A shell with no screen: ``%matplotlib`` (any backend word) and ``%gui`` are accepted and plots go to
        matplotlib's non-GUI Agg backend, as papermill's and nbclient's kernels draw them."""

        def enable_gui(self, gui: Any = None) -> None:
            return None

        def enable_matplotlib(self, gui: Any = None) -> tuple[str, str]:
            import matplotlib

            matplotlib.use("agg", force=True)
            return "agg", "agg"

    config = Config()
    config.HistoryManager.enabled = False
    return HeadlessShell(config=config)


def _uses_step_output(result: Any, magics: Any) -> bool:
    exc = result.error_in_exec
    name = getattr(exc, "name", None) if isinstance(exc, NameError) else None
    return bool(name) and any(c.analysis is not None and name in c.analysis.outputs for c in magics.registry.steps)


def _cell_failure(index: int, result: Any, magics: Any, stdout: str) -> Problem:
    from jupyter_smstep.ipython.magics import looks_like_step

    exc = result.error_in_exec or result.error_before_exec
    if type(exc).__name__ == "UsageError":  # a %%step / %pipeline line the magics refused
        detail = str(exc)
    elif exc is not None:
        detail = f"{type(exc).__name__}: {exc}"
    else:
        detail = "it failed"
    kind = "step cell" if looks_like_step(result.info.raw_cell) else "ordinary cell"
    return Problem(
        f"{kind} #{index} failed while building the pipeline: {detail}",
        fix="fix the cell so the notebook runs top to bottom",
    )
