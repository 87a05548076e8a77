"""``--dependencies auto``: a requirements.txt pinning, from the kernel, every package a step needs.

A step needs the distributions of: the modules it imports (its inputs, and the
``import`` statements of its own cell, functions in it included); the modules its
captured functions and classes come from, and those their code uses or imports in
its body (a helper defined in the notebook that calls ``np.mean`` is pickled by
value, and unpickling it imports numpy); the modules of its captured values' types
(a fitted scikit-learn estimator needs scikit-learn, a DataFrame pandas); and what
its producers need, since it unpickles their values (a consumer of a fitted model
needs scikit-learn too). Each
top-level module is mapped to its distributions with
``importlib.metadata.packages_distributions()`` and pinned to the version
installed in the kernel. The standard library is left out, and so is
``sagemaker`` (the SDK adds its own requirement). A module no distribution
provides (a ``helpers.py`` beside the notebook) cannot be pinned: it is
reported with the fix. Nor is a distribution installed from a folder (editable, or
``pip install ./pkg``: its ``direct_url.json`` says so): pinned by name, pip in the
job would fetch whatever PyPI has under that name. A module the step imports that the
kernel cannot import at all is an error naming it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from jupyter_smstep.core.code import global_names, nested
from jupyter_smstep.core.model import values_at

from jupyter_smstep.core.model import StepNode
from jupyter_smstep.folders import data_dir, write_whole

#: Left to the SDK (it adds its own, compatible requirement) or to the image.
NOT_PINNED = {"sagemaker", "jupyter_smstep", "__main__", "builtins", "IPython", "ipykernel"}


@dataclass
class Pins:
    lines: list[str] = field(default_factory=list)  # "numpy==2.1.3", sorted
    unresolved: list[str] = field(default_factory=list)  # top-level modules no distribution provides
    local: list[str] = field(default_factory=list)  # distributions installed from a folder: never pinned by name
    missing: list[str] = field(default_factory=list)  # modules the kernel cannot import

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
        import dis

        for code in nested(value.__code__):  # `import` in a body, nested functions included
            found |= {i.argval for i in dis.get_instructions(code) if i.opname == "IMPORT_NAME"}
        for name in global_names(value.__code__) & set(value.__globals__):
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


def step_pins(node: StepNode, namespace: Mapping[str, Any], steps: Iterable[StepNode] = ()) -> Pins:
    """The pins for one step, from the kernel's installed distributions; ``steps``: the graph's steps, whose
    producers' needs are the step's too."""
    by_name = {n.name: n for n in steps}
    modules: set[str] = set()
    done: set[str] = set()
    todo = [node]
    while todo:
        current = todo.pop()
        if current.name in done:
            continue
        done.add(current.name)
        modules |= _step_modules(current, namespace)
        todo.extend(by_name[d] for d in current.depends_on if d in by_name)
    return pins_for(modules)


def _step_modules(node: StepNode, namespace: Mapping[str, Any]) -> set[str]:
    """The modules one step's own code and captured values need."""
    modules = set(_imported(node.cell.source))
    seen: set[int] = set()
    values = values_at(node.cell, namespace)
    for inp in list(node.imports) + list(node.captured):
        if inp.name in values:
            modules |= _modules_used(values[inp.name], seen)
    for inp in node.inputs.values():  # in a kernel, an upstream value is there to look at
        if inp.kind == "step" and inp.produced in namespace:
            modules |= _modules_used(namespace[inp.produced], seen)
    return modules


def _imported(source: str) -> list[str]:
    """The absolute modules ``import`` statements in ``source`` name, at any depth."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append(node.module)
    return found


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
            elif top not in sys.modules and not _importable(top):
                pins.missing.append(top)
            elif top not in sys.modules:
                pins.unresolved.append(top)
            continue
        dists.update(d for d in provided if d.lower() not in ("sagemaker",))
    for dist in sorted(dists, key=str.lower):
        try:
            if _from_a_folder(dist):
                pins.local.append(dist)
                continue
            pins.lines.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def _importable(top: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _from_a_folder(dist: str) -> bool:
    """Whether ``dist`` was installed from a local folder or file (editable or not), per its direct_url.json."""
    import json

    try:
        text = importlib.metadata.distribution(dist).read_text("direct_url.json")
        data = json.loads(text) if text else None
    except (importlib.metadata.PackageNotFoundError, ValueError, OSError):
        return False
    return isinstance(data, dict) and (
        bool((data.get("dir_info") or {}).get("editable")) or str(data.get("url", "")).startswith("file:")
    )


def requirements_name(step: str) -> str:
    """The file name of a ``--dependencies auto`` step's pins (the definition names it; the export too)."""
    return f"requirements-{step}.txt"


def write(pins: Pins, name: str) -> Path:
    """The pins as the file ``name`` in a folder named by its content."""
    text = pins.text
    path = data_dir() / "requirements" / ("auto-" + hashlib.sha256(text.encode()).hexdigest()[:16]) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, text)
    return path


def auto_steps(nodes: Iterable[StepNode]) -> list[StepNode]:
    """The steps whose ``dependencies`` setting is ``auto``."""
    return [n for n in nodes if "dependencies" in n.settings and n.settings["dependencies"].value == AUTO]


AUTO = "auto"


def auto_files(nodes: Iterable[StepNode], namespace: Mapping[str, Any]) -> dict[str, str]:
    """step -> the written requirements.txt, for every ``--dependencies auto`` step."""
    nodes = list(nodes)
    return {n.name: str(write(step_pins(n, namespace, nodes), requirements_name(n.name))) for n in auto_steps(nodes)}
