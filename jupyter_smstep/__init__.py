"""jupyter_smstep: notebook cells become a SageMaker Pipeline.

``%load_ext jupyter_smstep`` registers ``%%step`` and ``%pipeline``. It must
stay fast: the SageMaker SDK (seconds to import) is loaded only when a
pipeline is first compiled.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_magics: Any = None


def load_ipython_extension(shell: Any) -> None:
    global _magics
    from jupyter_smstep.ipython import comm
    from jupyter_smstep.ipython.magics import StepMagics

    if _magics is not None and _magics.shell is shell:
        return  # %load_ext twice keeps the recorded cells
    _magics = StepMagics(shell)
    shell.register_magics(_magics)
    shell.events.register("post_run_cell", _magics.record_plain_cell)
    workspace = _magics.workspace
    comm.install(shell, lambda: comm.summary(workspace), _magics.registry.sync_cells)


def unload_ipython_extension(shell: Any) -> None:
    global _magics
    if _magics is not None:
        from jupyter_smstep.ipython import comm

        try:
            shell.events.unregister("post_run_cell", _magics.record_plain_cell)
        except ValueError:
            pass
        comm.uninstall(shell)
    _magics = None


def get_workspace() -> Any:
    """The current kernel's :class:`~jupyter_smstep.workspace.Workspace`."""
    if _magics is None:
        from jupyter_smstep.errors import SmstepError

        raise SmstepError("jupyter_smstep is not loaded", fix="run %load_ext jupyter_smstep")
    return _magics.workspace


def show_panel() -> Any:
    """The pipeline panel for this kernel's notebook (ipywidgets); same as ``%pipeline show``."""
    from jupyter_smstep.panel import show

    return show(get_workspace())


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-smstep"}]
