"""The notebook's own modules travel with the steps: the SDK's ``IncludeLocalWorkDir``, with a filter.

A step that imports a module whose source is beside the notebook (``churn_models.py``, or a package
folder) would fail in its job with ``ModuleNotFoundError``. So when any step does (in its cell, in an
earlier cell's import it reuses, or in a notebook function it calls), the build ships the notebook
folder's ``.py`` files with every step, as the SDK's ``IncludeLocalWorkDir`` does, through the filter
below. The same filter applies when config.yaml sets ``IncludeLocalWorkDir`` itself (with or without its
``CustomFileFilter``): whatever the user's patterns, a workspace never takes in

- ``.smstep`` (the runs: each run would copy every earlier one, 3 MB → 4 GB in five runs),
- ``.git``, ``.ipynb_checkpoints``, ``__pycache__``, tool caches, ``node_modules``,
- a virtual environment (any folder with a ``pyvenv.cfg``).

:func:`shipped` lists what a workspace holds (``graph`` and the panel say "ships: churn_models.py"); a
workspace over :data:`LARGE` is a warning naming its largest files. The build applies it through the SDK's
own packaging (``sdk.workdir``). Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import ast
import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_smstep.core.code import nested
from jupyter_smstep.core import sdk_config

#: Folder and file names a workspace never holds, whatever config.yaml's patterns say.
NEVER = frozenset(
    {
        ".smstep",
        ".git",
        ".hg",
        ".svn",
        ".ipynb_checkpoints",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "node_modules",
        ".venv",
        ".DS_Store",
    }
)
#: A workspace larger than this is a warning (it is zipped and uploaded for every step of every build).
LARGE = 50 * 2**20


@dataclass(frozen=True)
class Shipping:
    """What the build ships as the steps' workspace: from ``root``, ``.py`` files only unless config.yaml gives
    ``patterns`` (its ``CustomFileFilter.IgnoreNamePatterns``: then everything they do not ignore)."""

    root: Path
    patterns: tuple[str, ...] | None = None
    #: why: the steps and the local modules they import (empty when config.yaml asked for it)
    because: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: when the build chose to ship (config.yaml did not ask): only these files, relative to ``root``
    keep: frozenset[str] | None = None

    def ignore(self, path: str, names: list[str]) -> set[str]:
        """``shutil.copytree``'s ``ignore``: the names under ``path`` the workspace leaves out."""
        out = set()
        here = Path(path).resolve().relative_to(self.root.resolve()).as_posix() if self.keep is not None else ""
        for name in names:
            full = os.path.join(path, name)
            if name in NEVER or (os.path.isdir(full) and os.path.isfile(os.path.join(full, "pyvenv.cfg"))):
                out.add(name)
            elif self.keep is not None:
                relative = name if here in ("", ".") else f"{here}/{name}"
                if relative not in self.keep and not any(k.startswith(relative + "/") for k in self.keep):
                    out.add(name)
            elif self.patterns is not None:
                if any(fnmatch.fnmatch(name, p) for p in self.patterns):
                    out.add(name)
            elif not os.path.isdir(full) and not name.endswith(".py"):
                out.add(name)
        return out


def travels(shipping: Shipping | None, path: Path) -> bool:
    """Whether the file ``path`` is in the workspace ``shipping`` ships (then a job finds it, relative to its
    folder, as the kernel did)."""
    if shipping is None:
        return False
    root = shipping.root.resolve()
    try:
        parts = Path(path).resolve().relative_to(root).parts
    except (ValueError, OSError):
        return False
    folder = root
    for part in parts:
        if part in shipping.ignore(str(folder), [part]):
            return False
        folder = folder / part
    return bool(parts)


def shipped(shipping: Shipping) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file the workspace holds, largest first."""
    found: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(shipping.root):
        ignored = shipping.ignore(folder, dirs + files)
        dirs[:] = sorted(d for d in dirs if d not in ignored)
        for name in files:
            if name in ignored:
                continue
            path = Path(folder, name)
            try:
                found.append((path.relative_to(shipping.root).as_posix(), path.stat().st_size))
            except OSError:
                continue
    return sorted(found, key=lambda f: (-f[1], f[0]))


def local_modules(sources: list[str], root: Path) -> tuple[str, ...]:
    """The top-level modules ``sources`` import (at any depth) whose source is under ``root``."""
    names: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return tuple(sorted(n for n in names if (root / f"{n}.py").is_file() or (root / n / "__init__.py").is_file()))


def plan(
    steps: list[Any], namespace: Mapping[str, Any], root: Path | None, config: Mapping[str, Any] | None
) -> Shipping | None:
    """What the steps' workspace ships, or None when nothing needs one (see the module docstring)."""

    if root is None:
        return None
    include = sdk_config.remote_function_config(config or {}, "IncludeLocalWorkDir")
    asked = include is True or str(include).lower() == "true"
    patterns = sdk_config.remote_function_config(config or {}, "CustomFileFilter")
    ignore = patterns.get("IgnoreNamePatterns") if isinstance(patterns, Mapping) else None
    because: dict[str, tuple[str, ...]] = {}
    for node in steps:
        sources = [node.cell.source] + [i.statement or "" for i in node.imports]
        for inp in node.captured:  # a notebook function that imports one when it runs
            value = namespace.get(inp.name)
            code = getattr(value, "__code__", None)
            if code is not None and getattr(value, "__module__", None) == "__main__":
                sources.append("\n".join(f"import {n}" for n in _imported_names(code)))
        found = local_modules(sources, root)
        if found:
            because[node.name] = found
    if not asked and not because:
        return None
    keep = None if asked else _closure({m for mods in because.values() for m in mods}, Path(root))
    return Shipping(Path(root), tuple(ignore) if isinstance(ignore, list) else None, because, keep)


def _closure(modules: set[str], root: Path) -> frozenset[str]:
    """The files of ``modules`` (a module's ``.py``, every ``.py`` of a package folder) and of the local modules
    they import in turn, relative to ``root``."""
    keep: set[str] = set()
    todo = sorted(modules)
    done: set[str] = set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        files = (
            [root / f"{name}.py"]
            if (root / f"{name}.py").is_file()
            else sorted(p for p in (root / name).rglob("*.py") if not set(p.relative_to(root).parts) & NEVER)
        )
        for file in files:
            keep.add(file.relative_to(root).as_posix())
            try:
                todo += local_modules([file.read_text(encoding="utf-8", errors="replace")], root)
            except OSError:
                continue
    return frozenset(keep)


def _imported_names(code: Any) -> list[str]:
    """The modules a function's code imports (``IMPORT_NAME``), nested functions included."""
    import dis

    names = [
        i.argval
        for c in nested(code)
        for i in dis.get_instructions(c)
        if i.opname == "IMPORT_NAME" and isinstance(i.argval, str)
    ]
    return [n for n in names if n.isidentifier() or all(p.isidentifier() for p in n.split("."))]
