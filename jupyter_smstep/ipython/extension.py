"""Which shells have the extension loaded, and with which magics.

The state lives here, not in ``jupyter_smstep/__init__.py``: ``%reload_ext
jupyter_smstep`` re-executes the package's ``__init__`` (IPython reloads the
extension's module), and a registry kept there would be emptied, so that a
headless build's recorder would be replaced by a second, non-headless one.
This module is not reloaded, so a reload keeps the shell's magics.
"""

from __future__ import annotations

import weakref
from typing import Any

#: The magics of each shell that loaded the extension (a kernel's, or a headless build's).
_loaded: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def load(shell: Any) -> None:
    from jupyter_smstep.ipython import comm
    from jupyter_smstep.ipython.magics import StepMagics

    if shell in _loaded:
        return  # %load_ext twice keeps the recorded cells (and a headless build keeps its own magics)
    magics = StepMagics(shell)
    attach(shell, magics)
    ws = magics.workspace
    comm.install(shell, lambda: comm.summary(ws), magics.sync_notebook)


def attach(shell: Any, magics: Any) -> None:
    """Register ``magics`` on ``shell`` as the extension's (the headless build calls this with its own)."""
    shell.register_magics(magics)
    shell.events.register("post_run_cell", magics.record_plain_cell)
    shell.events.register("pre_run_cell", magics.environment_before)
    shell.events.register("post_run_cell", magics.environment_after)
    _loaded[shell] = magics


def unload(shell: Any) -> None:
    from jupyter_smstep.ipython import comm

    magics = _loaded.get(shell)
    if magics is None or magics.headless:
        return  # a headless build's notebook may %reload_ext: its recorder stays
    del _loaded[shell]
    for event, hook in (
        ("post_run_cell", magics.record_plain_cell),
        ("pre_run_cell", magics.environment_before),
        ("post_run_cell", magics.environment_after),
    ):
        try:
            shell.events.unregister(event, hook)
        except ValueError:
            pass
    comm.uninstall(shell)


def workspace(shell: Any = None) -> Any:
    """The workspace of ``shell`` (default: the running kernel's)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    magics = _loaded.get(shell) if shell is not None else None
    if magics is None:
        from jupyter_smstep.errors import SmstepError

        raise SmstepError("jupyter_smstep is not loaded", fix="run %load_ext jupyter_smstep")
    return magics.workspace
