"""Content keys: one hash per step of everything that determines its result.

A step's key is the SHA-256 of its *parts*, each a named digest:

- ``code``: the step function's source (the cell, its re-done imports, its arguments and return);
- ``capture:NAME``: each value captured from the kernel, as :mod:`jupyter_smstep.sdk.content`
  hashes it (pickled bytes, code objects without file names and line numbers);
- ``setting:NAME``: each resolved setting that reaches the job (image, instance type, role,
  environment...), and ``file:NAME`` the content of the local files they name (requirements,
  pre-execution script);
- ``data:LITERAL``: the content of each local file the step's code names in a string literal
  (``pd.read_csv("data.csv")``; relative to the notebook's folder);
- ``parameter:NAME``: the value of each pipeline parameter the step reads, in this run;
- ``upstream:STEP``: the key of each step it depends on, data or order (``--after``);
- ``runtime``: the Python and SDK versions that build and run it;
- ``imports``: the installed version of each package the step imports;
- ``local-sources``: the ``.py`` files beside the notebook, for a step that imports one of them
  (or every step, with ``IncludeLocalWorkDir``);
- ``when``: the condition whose if branch holds the step (``--when``, its own or an upstream step's)
  and its ``--else-fail``: they do not change what the step computes, but they are the definition
  around it, so a changed condition is never a reused one.

The parts are kept with the key, so a later build can say *which* changed
(:func:`changes`). What a step reads by itself at run time (an S3 object, a file
opened by path, a database) is not part of the key: callers say so wherever a
cached result is reused. Pure: no SDK, no pickling (the digests come in).
"""

from __future__ import annotations

import hashlib
import json
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import codegen
from jupyter_smstep.core import settings as settings_mod
from jupyter_smstep.core.model import PipelineGraph, StepNode, local_file_reads

#: Hex digits of a key used in names (S3 folders, run records): 80 bits, collision-free in practice.
SHORT = 20


@dataclass(frozen=True)
class StepKey:
    key: str  # hex SHA-256 of the parts
    parts: dict[str, str]  # part name -> digest

    @property
    def short(self) -> str:
        return self.key[:SHORT]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "parts": dict(self.parts)}


def shared(keys: list[StepKey], names: list[str]) -> StepKey:
    """The key of one payload several steps run (a ForEach body, whose children are a fan-out's iterations):
    it changes when any of theirs does."""
    return StepKey(digest_json([k.key for k in keys]), dict(zip(names, (k.key for k in keys), strict=True)))


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_json(value: Any) -> str:
    return digest_bytes(json.dumps(value, sort_keys=True, default=repr).encode())


def _as_built_anywhere(node: StepNode) -> StepNode:
    """A final step as a build that could not see its values writes it: its return checks every value in the
    job. That returns what the kernel-checked return does (the same test, ``core.plain``), so the step keeps
    one key whether or not the kernel ran its cell (``smstep`` builds headless)."""
    if node.sink_outputs is None:
        return node
    return dataclasses.replace(node, outputs=list(node.sink_outputs), unchecked=list(node.sink_outputs))


def step_keys(
    graph: PipelineGraph,
    captures: Mapping[str, Mapping[str, str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    runtime: Mapping[str, str] | None = None,
    root: Path | None = None,
    extra: Mapping[str, Mapping[str, str]] | None = None,
    run: str | None = None,
) -> dict[str, StepKey]:
    """Every step's key, in graph order (an upstream step's key is known before its readers').

    ``captures`` maps each step's captured names to the digests of the values its cell saw;
    ``parameters`` overrides the declared defaults (a run's ``-p`` values); ``root`` is the notebook's
    folder (relative file options);
    ``extra`` adds parts per step (``local-sources``: the modules beside the notebook); ``run`` names
    the run a step that reads ``jupyter_smstep.execution`` is keyed for (its result is that run's: a
    local run passes a fresh one, so such a step and those after it are never reused).
    """
    values = {**graph.parameters, **(parameters or {})}
    runtime_part = digest_json(dict(runtime or {}))
    names = codegen.function_names(graph)
    keys: dict[str, StepKey] = {}
    for node in graph.steps:
        parts = {"code": digest_bytes(codegen.function_source(_as_built_anywhere(node), names[node.name]).encode())}
        for inp in node.captured:
            parts[f"capture:{inp.name}"] = captures.get(node.name, {}).get(inp.name, "missing")
        for name, resolved in sorted(node.settings.items()):
            if name in settings_mod.OPTIONS_BY_KEY and not settings_mod.OPTIONS_BY_KEY[name].step_kwarg:
                continue  # --cache: how long SageMaker may reuse the result, not what the result is
            value = resolved.value
            if isinstance(value, settings_mod.ParameterRef):  # what this run's jobs get
                value = {"parameter": value.name, "value": values.get(value.name, value.default)}
            parts[f"setting:{name}"] = digest_json(value)
            path = settings_mod.local_file(resolved.value, root) if name in settings_mod.FILE_OPTIONS else None
            if path is not None:
                parts[f"file:{name}"] = _file_digest(path)
        for literal, _, path in local_file_reads(node, root):
            parts[f"data:{literal}"] = _file_digest(path)
        for inp in node.links:
            if inp.kind == "parameter":
                parts[f"parameter:{inp.name}"] = digest_json(values.get(inp.name))
        for upstream in node.depends_on:
            parts[f"upstream:{upstream}"] = keys[upstream].key if upstream in keys else "missing"
        if node.needs_execution:  # it reads the execution, or saves under {execution_id}: what it does is this run's
            parts["execution"] = run or "each execution"
        if node.saves:
            parts["saves"] = digest_json([s.to_json() for s in node.saves])
        if node.guard is not None:
            parts["when"] = digest_json(graph.condition(node.guard).to_json())
        parts["runtime"] = runtime_part
        parts.update((extra or {}).get(node.name, {}))
        keys[node.name] = StepKey(digest_json(parts), parts)
    return keys


def pipeline_key(graph: PipelineGraph, keys: Mapping[str, StepKey], config: Any = None, sdk: str = "") -> str:
    """What determines the whole definition: the name, the declared parameters, every step's key, in
    order, the SageMaker config (its S3 root is in every path), and the SDK that builds it (its version, and
    for a fan-out whether it is built as a ForEach)."""
    return digest_json(
        {
            "name": graph.name,
            "parameters": graph.parameters,
            "config": config,
            "steps": [[node.name, keys[node.name].key] for node in graph.steps],
            "conditions": [c.to_json() for c in graph.conditions],
            "sdk": sdk,
            **({"foreach_as": graph.foreach_as} if any(n.fanout for n in graph.steps) else {}),
        }
    )


#: A file larger than this is known by its size and modification time, not its content.
HASHED_FILE_BYTES = 256 * 2**20


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in chunks; raises OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    try:
        stat = path.stat()
        if stat.st_size > HASHED_FILE_BYTES:
            return f"stat:{stat.st_size}:{stat.st_mtime_ns}"
        return file_sha256(path)
    except OSError:
        return "unreadable"


def changes(before: Mapping[str, str] | None, after: StepKey) -> list[str]:
    """Why ``after`` differs from the parts recorded ``before``, in words; ``[]`` when it does not."""
    if before is None:
        return ["not run before"]
    reasons = []
    for part in sorted(set(before) | set(after.parts)):
        old, new = before.get(part), after.parts.get(part)
        if old == new:
            continue
        kind, _, name = part.partition(":")
        what = {
            "code": "the cell's code",
            "runtime": "the Python or SDK version",
            "local-sources": "the .py files beside the notebook",
            "imports": "the version of an imported package",
            "dependencies": "the pinned packages (--dependencies auto)",
            "when": "the --when condition around it",
            "execution": "the run (it reads the execution or writes to S3: it runs each time)",
            "saves": "its --save values",
            "capture": f"captured value {name!r}",
            "setting": f"setting {name}",
            "file": f"the file of {name}",
            "parameter": f"parameter {name}",
            "upstream": f"upstream step {name}",
            "data": f"the local file {name}",
        }.get(kind, part)
        if old is None:
            reasons.append(f"{what} is new")
        elif new is None:
            reasons.append(f"{what} is gone")
        else:
            reasons.append(f"{what} changed")
    return reasons
