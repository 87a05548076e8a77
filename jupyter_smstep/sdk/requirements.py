"""``--dependencies auto``: a requirements.txt pinning, from the kernel, every package a step needs.

A step needs the distributions of: the modules it imports; the modules its
captured functions and classes come from, and those their code uses (a helper
defined in the notebook that calls ``np.mean`` is pickled by value, and
unpickling it imports numpy); and the modules of its captured values' types (a
fitted scikit-learn estimator needs scikit-learn, a DataFrame pandas). Each
top-level module is mapped to its distributions with
``importlib.metadata.packages_distributions()`` and pinned to the version
installed in the kernel. The standard library is left out, and so is
``sagemaker`` (the SDK adds its own requirement). A module no distribution
provides (a ``helpers.py`` beside the notebook) cannot be pinned: it is
reported with the fix.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import secrets
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from jupyter_smstep.core.graph import StepNode, values_at

#: Left to the SDK (it adds its own, compatible requirement) or to the image.
NOT_PINNED = {"sagemaker", "jupyter_smstep", "__main__", "builtins", "IPython", "ipykernel"}


@dataclass
class Pins:
    lines: list[str] = field(default_factory=list)  # "numpy==2.1.3", sorted
    unresolved: list[str] = field(default_factory=list)  # top-level modules no distribution provides

    @property
    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def module_of(value: Any) -> str | None:
    """The module a value comes from: itself, its definition's, or its type's."""
    if isinstance(value, types.ModuleType):
        return value.__name__
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return getattr(value, "__module__", None)
    return type(value).__module__


def _modules_used(value: Any, seen: set[int]) -> set[str]:
    """Modules a captured value needs where it is unpickled (following notebook-defined code)."""
    if id(value) in seen:
        return set()
    seen.add(id(value))
    found = {m for m in [module_of(value)] if m}
    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        names: set[str] = set()
        stack = [value.__code__]
        while stack:
            code = stack.pop()
            names.update(code.co_names)
            stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for name in names & set(value.__globals__):
            found |= _modules_used(value.__globals__[name], seen)
        for cell in value.__closure__ or ():
            try:
                found |= _modules_used(cell.cell_contents, seen)
            except ValueError:
                pass
    elif isinstance(value, type) and value.__module__ == "__main__":
        for member in vars(value).values():
            found |= _modules_used(member, seen)
        for base in value.__bases__:
            found |= _modules_used(base, seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value)[:20]:
            found |= _modules_used(item, seen)
    elif isinstance(value, dict):
        for item in list(value.values())[:20]:
            found |= _modules_used(item, seen)
    return found


def step_pins(node: StepNode, namespace: Mapping[str, Any]) -> Pins:
    """The pins for one step, from the kernel's installed distributions."""
    modules: set[str] = set()
    seen: set[int] = set()
    values = values_at(node.cell, namespace)
    for inp in list(node.imports) + list(node.captured):
        if inp.name in values:
            modules |= _modules_used(values[inp.name], seen)
    return pins_for(modules)


def pins_for(modules: Iterable[str]) -> Pins:
    pins = Pins()
    dists: set[str] = set()
    for top in sorted({m.split(".")[0] for m in modules}):
        if top in NOT_PINNED or top in sys.stdlib_module_names or top.startswith("_"):
            continue
        provided = _distributions().get(top)
        if not provided:
            if top in sys.modules and getattr(sys.modules[top], "__file__", None):
                pins.unresolved.append(top)
            continue
        dists.update(d for d in provided if d.lower() not in ("sagemaker",))
    for dist in sorted(dists, key=str.lower):
        try:
            pins.lines.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def requirements_name(step: str) -> str:
    """The file name of a ``--dependencies auto`` step's pins (the definition names it; the export too)."""
    return f"requirements-{step}.txt"


def write(pins: Pins, name: str) -> Path:
    """The pins as the file ``name`` in a folder named by its content."""
    from jupyter_smstep.sdk.content import data_dir

    text = pins.text
    path = data_dir() / "requirements" / ("auto-" + hashlib.sha256(text.encode()).hexdigest()[:16]) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{name}.{secrets.token_hex(4)}")
        partial.write_text(text)
        os.replace(partial, path)
    return path


def auto_steps(nodes: Iterable[StepNode]) -> list[StepNode]:
    """The steps whose ``dependencies`` setting is ``auto``."""
    return [n for n in nodes if "dependencies" in n.settings and n.settings["dependencies"].value == AUTO]


AUTO = "auto"


def auto_files(nodes: Iterable[StepNode], namespace: Mapping[str, Any]) -> dict[str, str]:
    """step -> the written requirements.txt, for every ``--dependencies auto`` step."""
    return {n.name: str(write(step_pins(n, namespace), requirements_name(n.name))) for n in auto_steps(nodes)}
