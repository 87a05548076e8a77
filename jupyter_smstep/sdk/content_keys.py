"""Each step's content key, from what it is made of: its code, its settings, the digests of its captured values
(:func:`digest`: their cloudpickle bytes, with code objects reduced to what they compute, so a helper re-run in
another kernel keeps its digest; sets in a canonical order; classes defined in the notebook by their members), the
notebook's own modules beside it, and the runtime.
"""

from __future__ import annotations


import hashlib
import io
import os
import secrets
import sys
import types
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import keys as keys_mod
from jupyter_smstep.core.model import values_at
from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.core import sdk_config


# ---------------------------------------------------------------------------- digests
def _reduced_code(*_: Any) -> None:
    """Stands for a code object in a digest pickle (never unpickled)."""


def _pickler_class() -> type:
    import cloudpickle
    from cloudpickle import cloudpickle as cp

    class _DigestPickler(cloudpickle.Pickler):
        def __init__(self, file: io.BytesIO, seen: set[int]) -> None:
            super().__init__(file, protocol=5)
            self._seen = seen

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, types.CodeType):
                return _reduced_code, (
                    obj.co_name,
                    obj.co_code,
                    obj.co_consts,
                    obj.co_names,
                    obj.co_varnames,
                    obj.co_freevars,
                    obj.co_cellvars,
                    obj.co_argcount,
                    obj.co_posonlyargcount,
                    obj.co_kwonlyargcount,
                    obj.co_flags,
                )
            return super().reducer_override(obj)

        def persistent_id(self, obj: Any) -> Any:  # called for every object, sets included
            if type(obj) in (set, frozenset):
                return (type(obj).__name__, tuple(sorted(_digest(x, self._seen) for x in obj)))
            if isinstance(obj, type) and not cp._should_pickle_by_reference(obj):
                if id(obj) in self._seen:  # a method that names its own class
                    return ("class-ref", obj.__qualname__)
                self._seen.add(id(obj))
                try:
                    members = tuple(
                        sorted(
                            (k, _digest(v, self._seen))
                            for k, v in vars(obj).items()
                            if k not in ("__dict__", "__weakref__")
                        )
                    )
                    return (
                        "class",
                        obj.__module__,
                        obj.__qualname__,
                        tuple(_digest(b, self._seen) for b in obj.__bases__),
                        members,
                    )
                finally:
                    self._seen.discard(id(obj))
            return None

    return _DigestPickler


_PICKLER: list[type] = []


def _digest(value: Any, seen: set[int]) -> str:
    if not _PICKLER:
        _PICKLER.append(_pickler_class())
    buffer = io.BytesIO()
    _PICKLER[0](buffer, seen).dump(value)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def digest(value: Any) -> str:
    """A stable SHA-256 of ``value`` (see the module docstring); ``unpicklable:<why>`` when it cannot be pickled."""
    try:
        return _digest(value, set())
    except Exception as exc:  # noqa: BLE001 - the build reports unpicklable captures on its own
        return f"unpicklable:{type(exc).__name__}"


def capture_digests(graph: PipelineGraph, namespace: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """step -> captured name -> digest of the value its cell saw, computed now (never cached: a value mutated
    in place must change its key; one object read by several steps is hashed once)."""
    done: dict[int, tuple[Any, str]] = {}  # id -> (the object, kept alive so the id stays its own; digest)
    out: dict[str, dict[str, str]] = {}
    for node in graph.steps:
        values = values_at(node.cell, namespace)
        for inp in node.captured:
            if inp.name in values:
                value = values[inp.name]
                if id(value) not in done:
                    done[id(value)] = (value, digest(value))
                out.setdefault(node.name, {})[inp.name] = done[id(value)][1]
    return out


def runtime() -> dict[str, str]:
    from jupyter_smstep.sdk import compat

    return {"python": sys.version.split()[0], "sdk": compat.installed_version() or ""}


def step_keys(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    root: Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    run: str | None = None,
) -> dict[str, keys_mod.StepKey]:
    """Every step's content key, its captured values hashed now.

    A step that imports a module from the notebook's folder (``helpers.py`` beside it), or every step
    when the SageMaker config sets ``IncludeLocalWorkDir``, also has the part ``local-sources``: the
    ``.py`` files under the folder (a change in a module the step's module imports counts too).
    """
    from jupyter_smstep.sdk import requirements

    include_workdir = sdk_config.remote_function_config(sdk_config.load_sdk_config(), "IncludeLocalWorkDir")
    include_workdir = include_workdir is True or str(include_workdir).lower() == "true"
    # the steps that import the notebook's own modules (core.workdir, decided with the graph)
    imports_local = set(graph.shipping.because) if graph.shipping is not None else set()
    local: dict[str, dict[str, str]] = {}
    sources: str | None = None
    for node in graph.steps:
        extra = local.setdefault(node.name, {})
        versions = {
            i.name: requirements.pins_for([requirements.module_of(namespace.get(i.name)) or ""]).lines
            for i in node.imports
        }
        if versions:  # a local run uses the kernel's packages: upgrading one runs the step again
            extra["imports"] = keys_mod.digest_json(versions)
        if node.name in graph.dependencies:  # --dependencies auto: the pins reach the job
            extra["dependencies"] = keys_mod.digest_json(graph.dependencies[node.name])
        if root is not None and (
            include_workdir
            or node.name in imports_local
            or any(_is_local(namespace.get(i.name), root) for i in node.imports)
        ):
            sources = sources or local_sources_digest(root)
            extra["local-sources"] = sources
    return keys_mod.step_keys(
        graph,
        capture_digests(graph, namespace),
        parameters=parameters,
        runtime=runtime(),
        root=root,
        extra=local,
        run=run,
    )


def _is_local(value: Any, root: Path) -> bool:
    """Whether ``value`` (a module, or a function or class imported from one) comes from a file under ``root``."""
    from jupyter_smstep.sdk.requirements import module_of

    file = getattr(sys.modules.get(module_of(value) or ""), "__file__", None)
    if not file:
        return False
    try:
        relative = Path(file).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return not any(part in _NOT_SOURCES or part.startswith(".") for part in relative.parts[:-1])


_NOT_SOURCES = {"__pycache__", "node_modules", "site-packages", "venv", "env"}


#: Beyond this many files the folder is not a project: the key gets a part that never matches.
MAX_LOCAL_SOURCES = 5000


def local_sources_digest(root: Path) -> str:
    """SHA-256 over every ``.py`` file under ``root`` (relative path and content), hidden folders,
    virtual environments and caches left out."""
    digest = hashlib.sha256()
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in _NOT_SOURCES and not (Path(folder, d) / "pyvenv.cfg").exists()
        )
        for name in sorted(f for f in files if f.endswith(".py")):
            count += 1
            if count > MAX_LOCAL_SOURCES:
                return f"too-many-files:{secrets.token_hex(8)}"  # never reused: it cannot be hashed here
            path = Path(folder, name)
            try:
                data = path.read_bytes()
            except OSError:
                data = b"unreadable"
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()
