"""``%pipeline export``: the pipeline as a standalone Python module a user can commit.

The module holds plain ``@step`` functions, the ordinary cells the steps rely
on (helpers, constants, imports; only those, found by following names
backwards), the parameters and the ``Pipeline(...)``. Running it builds the
same graph with the same settings as the notebook. Pure: no sagemaker import.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from . import codegen
from .errors import Problem, SmstepError
from .graph import PipelineGraph
from .registry import Registry

_IMPORTS = {
    2: ("sagemaker.workflow.function_step", "sagemaker.workflow.pipeline", "sagemaker.workflow.parameters",
        "sagemaker.workflow.pipeline_definition_config", "sagemaker.workflow.retry"),
    3: ("sagemaker.mlops.workflow.function_step", "sagemaker.mlops.workflow.pipeline",
        "sagemaker.core.workflow.parameters", "sagemaker.core.workflow.pipeline_definition_config",
        "sagemaker.mlops.workflow.retry"),
}
_PARAM_CLASS = {bool: "ParameterBoolean", int: "ParameterInteger", float: "ParameterFloat", str: "ParameterString"}


def support_cells(registry: Registry, graph: PipelineGraph) -> list[str]:
    """Source of the ordinary cells the steps' captured values come from, in notebook order."""
    needed = {i.name for node in graph.steps for i in node.captured}
    chosen: list[str] = []
    for cell in reversed(registry.cells):
        if cell.is_step or cell.analysis is None:
            continue
        if needed & set(cell.analysis.outputs):
            chosen.append(_python_only(cell.source))
            needed -= set(cell.analysis.outputs)
            needed |= set(cell.analysis.reads)
    return [c for c in reversed(chosen) if c.strip()]


def _python_only(source: str) -> str:
    """Drop IPython-only lines (magics, shell escapes) from an ordinary cell."""
    kept = [ln for ln in source.splitlines() if not re.match(r"\s*(%|!)", ln) and "get_ipython()" not in ln]
    return "\n".join(kept).strip("\n")


def module_source(registry: Registry, graph: PipelineGraph, sdk_major: int, origin: str = "a notebook") -> str:
    support = support_cells(registry, graph)
    defined: set[str] = set()
    for src in support:
        try:
            for node in ast.parse(src).body:
                for t in ast.walk(node):
                    if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                        defined.add(t.id)
                    elif isinstance(t, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                        defined.add(t.name)
                    elif isinstance(t, ast.alias):
                        defined.add((t.asname or t.name).split(".")[0])
        except SyntaxError:
            pass
    missing = [(node.name, i) for node in graph.steps for i in node.captured if i.name not in defined]
    if missing:
        problems = [Problem(f"captures {i.name!r} ({i.type_name}), which no recorded ordinary cell defines, "
                            "so the exported module could not re-create it", step=step, line=i.line,
                            fix=f"define {i.name!r} in an ordinary cell (and run it), or make it a parameter")
                    for step, i in missing]
        raise SmstepError(problems)

    fstep, fpipe, fparams, fdef, fretry = _IMPORTS[3 if sdk_major >= 3 else 2]
    out = [f'"""SageMaker pipeline {graph.name!r}, exported by jupyter_smstep from {origin}.',
           "", "Run `python THIS_FILE.py` to print the pipeline definition, or",
           "`python THIS_FILE.py --submit` to upsert it and start an execution.", '"""',
           f"from {fstep} import step", f"from {fpipe} import Pipeline",
           f"from {fdef} import PipelineDefinitionConfig"]
    kinds = sorted({_PARAM_CLASS.get(type(v), "ParameterString") for v in graph.parameters.values()})
    if kinds:
        out.append(f"from {fparams} import {', '.join(kinds)}")
    if any("retry_policies" in n.settings for n in graph.steps):
        out.append(f"from {fretry} import StepRetryPolicy, SageMakerJobStepRetryPolicy, "
                   "StepExceptionTypeEnum, SageMakerJobExceptionTypeEnum")
    if any("spark_config" in n.settings for n in graph.steps):
        out.append("from sagemaker.core.remote_function.spark_config import SparkConfig" if sdk_major >= 3
                   else "from sagemaker.remote_function.spark_config import SparkConfig")
    if support:
        out += ["", "", "# ---- from the notebook's ordinary cells (helpers, constants, imports)"]
        for src in support:
            out += ["", src]
    if graph.parameters:
        out += ["", "", "# ---- pipeline parameters"]
        for name, value in graph.parameters.items():
            cls = _PARAM_CLASS.get(type(value), "ParameterString")
            out.append(f"{name}_param = {cls}({name!r}, default_value={value!r})")
    names = codegen.function_names(graph, reserved=defined)
    out += ["", "", "# ---- steps"]
    for node in graph.steps:
        out += ["", "", "@step(" + ",\n      ".join(_kwargs(node)) + ")",
                codegen.function_source(node, names[node.name]).rstrip()]
    out += ["", "", "# ---- the pipeline"]
    handles = {}
    for node in graph.steps:
        handle = f"{names[node.name]}_out"
        handles[node.name] = handle
        args = ", ".join(f"{handles[i.step]}[{i.name!r}]" if i.kind == "step" else f"{i.name}_param"
                         for i in node.links)
        out.append(f"{handle} = {names[node.name]}({args})")
    params = ", ".join(f"{n}_param" for n in graph.parameters)
    out += ["",
            "pipeline = Pipeline(",
            f"    name={graph.name!r},",
            f"    steps=[{', '.join(handles.values())}],",
            f"    parameters=[{params}],",
            "    pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=True),",
            ")", "", "",
            'if __name__ == "__main__":',
            "    import sys",
            "",
            '    if "--submit" in sys.argv:',
            f"        pipeline.upsert(role_arn={_pipeline_role(graph)!r})",
            "        print(pipeline.start().arn)",
            "    else:",
            "        print(pipeline.definition())", ""]
    return "\n".join(out)


def _kwargs(node) -> list[str]:
    """The @step keywords: every setting that differs from the SDK's default."""
    parts = [f"name={node.name!r}"]
    for key, resolved in node.settings.items():
        value = resolved.value
        if resolved.source == "default" and key != "job_name_prefix":
            continue
        if key == "tags":
            value = [{"Key": k, "Value": v} for k, v in dict(value).items()]
            parts.append(f"tags={value!r}")
        elif key == "spark_config":
            parts.append(f"spark_config=SparkConfig(**{value!r})")
        elif key == "retry_policies":
            parts.append(f"retry_policies=[{', '.join(_retry_source(p) for p in value)}]")
        else:
            parts.append(f"{key}={value!r}")
    if "display_name" not in node.settings:
        parts.append(f"display_name={node.name!r}")
    if "description" not in node.settings:
        parts.append(f"description={'jupyter_smstep step ' + repr(node.name)!r}")
    return list(dict.fromkeys(parts))


def _pipeline_role(graph: PipelineGraph) -> str | None:
    from .remote import pipeline_role

    return pipeline_role(graph)


def _retry_source(spec: dict[str, Any]) -> str:
    types = list(spec["exception_types"])
    extra = "".join(f", {k}={spec[k]!r}" for k in ("max_attempts", "interval_seconds", "backoff_rate")
                    if spec.get(k) is not None)
    if all(t.startswith("Step.") for t in types):
        enums = ", ".join(f"StepExceptionTypeEnum.{t.split('.', 1)[1]}" for t in types)
        return f"StepRetryPolicy(exception_types=[{enums}]{extra})"
    enums = ", ".join(f"SageMakerJobExceptionTypeEnum.{t.split('.', 1)[1].replace('JOB_INTERNAL_ERROR', 'INTERNAL_ERROR')}"
                      for t in types)
    return f"SageMakerJobStepRetryPolicy(exception_types=[{enums}]{extra})"
