"""The steps' workspace (``core.workdir``) applied while the SDK compiles them: its own packaging, wrapped."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jupyter_smstep.core.workdir import Shipping

_active: list[Shipping] = []


@contextlib.contextmanager
def shipping(ship: Shipping | None) -> Iterator[None]:
    """While the SDK compiles the steps: each step's workspace is ``ship`` (none when None), through the SDK's own
    packaging (``sdk.patches.wrap_prepare_workspace``)."""
    from jupyter_smstep.sdk import compat, patches

    patches.wrap_prepare_workspace(compat.modules()["remote_function"], _around)
    _active.append(ship or _NONE)
    try:
        yield
    finally:
        _active.pop()


_NONE = Shipping(Path("."))  # a marker: ship no workspace (config.yaml's IncludeLocalWorkDir is followed by plan)


def _around(original: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if not _active:
        return original(**kwargs)
    ship = _active[-1]
    if ship is _NONE:
        return original(**{**kwargs, "include_local_workdir": False})
    return original(**{**kwargs, "include_local_workdir": True, "custom_file_filter": ship.ignore})
