"""A notebook's pipeline, ready to show, build, export, run or submit.

:class:`Workspace` joins the registry (the recorded cells) with the namespace
the captured values live in (the kernel's, or the one the ``smstep`` command
filled by running the ordinary cells). Magics, CLI and panel all go through it,
so they agree on every result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, MutableMapping

from . import settings as settings_mod, studio
from .errors import SmstepError
from .graph import PipelineGraph, build_graph
from .registry import Registry


class Workspace:
    def __init__(self, registry: Registry, namespace: MutableMapping[str, Any], origin: str = "a notebook",
                 default_name: str | None = None) -> None:
        self.registry = registry
        self.namespace = namespace
        self.origin = origin
        self.default_name = default_name
        self.last_run: Any = None  # local.RunResult of the latest %pipeline run
        self.last_execution: Any = None  # remote execution of the latest submit

    # ---------------------------------------------------------------- analysis
    def graph(self) -> PipelineGraph:
        image = studio.kernel_image()
        return build_graph(
            self.registry,
            self.namespace,
            config=settings_mod.load_sdk_config(),
            kernel_image=image.uri,
            kernel_image_note=image.note,
            in_studio=studio.in_studio(),
            default_name=self.default_name,
        )

    def summary(self) -> dict[str, Any]:
        """The graph plus per-cell roles, for the lab extension."""
        graph = self.graph()
        doc = graph.to_json()
        by_step = {s["name"]: s for s in doc["steps"]}
        cells: list[dict[str, Any]] = []
        users: dict[str, set[str]] = {}
        for node in graph.steps:
            for inp in node.captured:
                users.setdefault(inp.name, set()).add(node.name)
        for cell in self.registry.cells:
            if cell.is_step:
                s = by_step.get(cell.step.name)  # type: ignore[union-attr]
                cells.append({"cell_id": cell.cell_id, "role": "step", "step": cell.step.name,  # type: ignore[union-attr]
                              "inputs": s["inputs"] if s else {}, "outputs": s["outputs"] if s else []})
            elif cell.analysis is not None:
                provides = sorted(v for v in cell.analysis.outputs if v in users)
                if provides:
                    used_by = sorted(set().union(*(users[v] for v in provides)))
                    cells.append({"cell_id": cell.cell_id, "role": "dependency", "provides": provides,
                                  "used_by": used_by})
        return {"pipeline": graph.name, "cells": cells, "problems": doc["problems"]}

    # ---------------------------------------------------------------- build
    def compile(self, session: Any = None):
        from .compile import build_pipeline

        return build_pipeline(self.graph(), self.namespace, session)

    def definition(self, session: Any = None) -> dict[str, Any]:
        """The definition JSON (uploads the step code to the session's S3)."""
        from . import compile as compile_mod, sdk

        graph = self.graph()
        compile_mod.check_graph(graph)
        if session is None:
            session = sdk.make_session()
        compiled = compile_mod.build_pipeline(graph, self.namespace, session)
        return json.loads(compile_mod.definition(compiled))

    def export(self, path: str | Path | None = None) -> str:
        from . import export, sdk

        graph = self.graph()
        from .compile import check_graph

        check_graph(graph)
        major = int((sdk.installed_version() or "3").split(".")[0])
        text = export.module_source(self.registry, graph, major, self.origin)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---------------------------------------------------------------- run
    def run_local(self, parameters: Mapping[str, Any] | None = None, on_event: Callable | None = None,
                  runs_dir: str | Path | None = None):
        from . import compile as compile_mod, local

        graph = self.graph()
        compile_mod.check_graph(graph)
        check_parameters(graph, parameters or {})

        def build(session: Any) -> Any:
            return compile_mod.build_pipeline(graph, self.namespace, session).pipeline

        kwargs: dict[str, Any] = {"parameters": dict(parameters or {}), "on_event": on_event}
        if runs_dir is not None:
            kwargs["runs_dir"] = runs_dir
        self.last_run = local.run_pipeline(build, **kwargs)
        return self.last_run

    def submit(self, parameters: Mapping[str, Any] | None = None, session: Any = None):
        from . import compile as compile_mod, remote

        graph = self.graph()
        compile_mod.check_graph(graph)
        check_parameters(graph, parameters or {})
        self.last_execution = remote.submit(graph, self.namespace, parameters or {}, session=session)
        return self.last_execution


def check_parameters(graph: PipelineGraph, overrides: Mapping[str, Any]) -> None:
    unknown = [k for k in overrides if k not in graph.parameters]
    if unknown:
        known = ", ".join(graph.parameters) or "none"
        raise SmstepError(f"unknown parameter(s) {', '.join(unknown)} (the pipeline's parameters: {known})",
                          fix="declare it with %pipeline param NAME=VALUE or in a cell tagged 'parameters'")


def parse_assignments(items: list[str], what: str = "parameter") -> dict[str, Any]:
    """NAME=VALUE pairs; values are Python literals when they parse as one, else strings."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SmstepError(f"{what} {item!r} is not NAME=VALUE", fix=f"write it like epochs=10 or uri=s3://bucket/key")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[name] = value
    return out


def coerce_overrides(graph: PipelineGraph, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Give each override the type of the parameter's default (so `-p epochs=5` is an int)."""
    out = {}
    for name, value in overrides.items():
        default = graph.parameters.get(name)
        if isinstance(default, bool) and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes")
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, str):
            try:
                value = type(default)(value)
            except ValueError:
                raise SmstepError(f"parameter {name!r} expects {type(default).__name__}, got {value!r}") from None
        elif isinstance(default, str) and not isinstance(value, str):
            value = str(value)
        out[name] = value
    return out


def pipeline_name_from_path(path: str | None) -> str | None:
    if not path:
        return None
    stem = Path(path).stem
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", stem).strip("-")
    return cleaned[:256] or None
