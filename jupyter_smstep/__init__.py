"""jupyter_smstep: notebook cells become a SageMaker Pipeline.

``%load_ext jupyter_smstep`` registers ``%%step`` and ``%pipeline``. It must
stay fast: the SageMaker SDK (seconds to import) is loaded only when a
pipeline is first compiled.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_smstep``: registers ``%%step`` and ``%pipeline`` (imports no sagemaker)."""
    from jupyter_smstep.ipython import extension

    extension.load(shell)


def unload_ipython_extension(shell: Any) -> None:
    from jupyter_smstep.ipython import extension

    extension.unload(shell)


def get_workspace(shell: Any = None) -> Any:
    """The :class:`~jupyter_smstep.workspace.Workspace` of ``shell`` (default: the running kernel's)."""
    from jupyter_smstep.ipython import extension

    return extension.workspace(shell)


def show_panel() -> Any:
    """The pipeline panel for this kernel's notebook (ipywidgets); same as ``%pipeline show``."""
    from jupyter_smstep.panel import show

    return show(get_workspace())


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-smstep"}]
