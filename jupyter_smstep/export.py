"""``%pipeline export``: the pipeline as a standalone Python module a user can commit.

The module holds plain ``@step`` functions, the ordinary cells the steps rely
on (helpers, constants, imports; only those, found by following names
backwards), the parameters and the ``Pipeline(...)``. Running it builds the
same graph with the same settings as the notebook: the ``@step`` keywords come from
:mod:`jupyter_smstep.sdk.stepargs`, the import paths from :data:`~jupyter_smstep.sdk.lines.MODULES`.
No sagemaker import.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from jupyter_smstep.core import codegen
from jupyter_smstep.core.model import PipelineGraph, pipeline_role
from jupyter_smstep.core.registry import Registry
from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.sdk import compat, condition_steps, stepargs
from jupyter_smstep.sdk.requirements import requirements_name

#: What a step that reads jupyter_smstep.execution is passed (core.model.EXECUTION_ARGS, in order)
EXECUTION_SOURCE = [
    "ExecutionVariables.PIPELINE_EXECUTION_ID",
    "ExecutionVariables.START_DATETIME",
    "ExecutionVariables.PIPELINE_NAME",
]


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


def module_source(
    registry: Registry, graph: PipelineGraph, sdk_major: int | None = None, origin: str = "a notebook"
) -> str:
    """The module's text, for the installed SDK line unless ``sdk_major`` names one. A ``--dependencies
    auto`` step reads :func:`requirements_name` beside the module (the caller writes it)."""
    table = compat.modules(sdk_major)
    support = support_cells(registry, graph)
    defined: set[str] = set()
    for src in support:
        try:
            for stmt in ast.parse(src).body:
                for t in ast.walk(stmt):
                    if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                        defined.add(t.id)
                    elif isinstance(t, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                        defined.add(t.name)
                    elif isinstance(t, ast.alias):
                        defined.add((t.asname or t.name).split(".")[0])
        except SyntaxError:
            pass
    missing = [
        (node, i)
        for node in graph.steps
        for i in node.captured
        if i.name not in defined and not (i.type_name == "item" and codegen.item_literal(node) is not None)
    ]  # an iteration's item: its default
    if missing:
        problems = [
            Problem(
                f"its --foreach item {i.name!r} has no literal form, so the exported module could not write it",
                step=node.name,
                line=i.line,
                fix="iterate over numbers, strings, or tuples and lists of them",
            )
            if i.type_name == "item"
            else Problem(
                f"captures {i.name!r} ({i.type_name}), which no recorded ordinary cell defines, "
                "so the exported module could not re-create it",
                step=node.name,
                line=i.line,
                fix=f"define {i.name!r} in an ordinary cell (and run it), or make it a parameter",
            )
            for node, i in missing
        ]
        raise SmstepError(problems)

    specs = {node.name: stepargs.step_arguments(node) for node in graph.steps}
    for name, spec in specs.items():
        if spec.get("dependencies") == "auto":
            spec["dependencies"] = stepargs.Source(
                f"os.path.join(os.path.dirname(os.path.abspath(__file__)), {requirements_name(name)!r})"
            )
    out = [
        f'"""SageMaker pipeline {graph.name!r}, exported by jupyter_smstep from {origin}.',
        "",
        "Run `python THIS_FILE.py` to print the pipeline definition, or",
        "`python THIS_FILE.py --submit` to upsert it and start an execution.",
        '"""',
        *(["import os"] if any(isinstance(s.get("dependencies"), stepargs.Source) for s in specs.values()) else []),
        f"from {table['function_step']} import step",
        f"from {table['pipeline']} import Pipeline",
        f"from {table['pipeline_definition_config']} import PipelineDefinitionConfig",
    ]
    kinds = sorted({stepargs.parameter_class(v) for v in graph.parameters.values()})
    if kinds:
        out.append(f"from {table['parameters']} import {', '.join(kinds)}")
    if graph.mlflow:
        if (sdk_major or compat.installed_major()) < 3:
            raise SmstepError(
                "%pipeline config --mlflow-arn: SageMaker Pipelines' MLflow settings are in SDK v3",
                fix="export for SDK v3, or drop --mlflow-arn",
            )
        out.append("from sagemaker.core.shapes import MlflowConfig")
    names = codegen.function_names(graph, reserved=defined | {"cache_step"})
    handles = {node.name: f"{names[node.name]}_out" for node in graph.steps}

    def value(operand: Any) -> Any:
        if operand.kind == "output":
            return stepargs.Source(handles[operand.step] + "".join(f"[{p!r}]" for p in (operand.name,) + operand.path))
        return stepargs.Source(f"{operand.name}_param") if operand.kind == "parameter" else operand.value

    branches = {
        c.name: condition_steps.condition_step(c, value, [stepargs.Source(handles[s]) for s in c.steps])
        for c in graph.conditions
    }
    by_module: dict[str, list[str]] = {}
    homes = {**stepargs.CLASS_MODULES, **condition_steps.CLASS_MODULES}
    for cls in sorted(stepargs.classes_used(list(specs.values()) + list(branches.values()))):
        by_module.setdefault(table[homes[cls]], []).append(cls)
    for module, classes in by_module.items():
        out.append(f"from {module} import {', '.join(classes)}")
    if any(node.needs_execution for node in graph.steps):
        out.append(f"from {table['execution_variables']} import ExecutionVariables")
    cached = {node.name: node.settings["cache"].value for node in graph.steps if "cache" in node.settings}
    if any(node.order_only for node in graph.steps) or cached:
        out.append(f"from {table['step_outputs']} import get_step")
    if cached:
        out.append(f"from {table['steps']} import CacheConfig")
    if support:
        out += ["", "", "# ---- from the notebook's ordinary cells (helpers, constants, imports)"]
        for src in support:
            out += ["", src]
    if graph.parameters:
        out += ["", "", "# ---- pipeline parameters"]
        for name, value in graph.parameters.items():
            out.append(
                f"{name}_param = {stepargs.parameter_class(value)}({name!r}, "
                f"default_value={stepargs.parameter_default(value)!r})"
            )
    if cached:
        out += [
            "",
            "",
            "def cache_step(out, expire_after):",
            '    """@step has no cache option: SageMaker reads the CacheConfig of the step\'s definition."""',
            "    function_step = get_step(out)",
            "    to_request = function_step.to_request",
            "    config = CacheConfig(enable_caching=True, expire_after=expire_after).config",
            "    function_step.to_request = lambda: {**to_request(), **config}",
        ]
    helpers = [
        (codegen.SAVE_FUNCTION, "--save: writes a step's value to S3 at its end")
        if any(node.saves for node in graph.steps)
        else None,
        (codegen.PLAIN_FUNCTION, "a final step returns only data (files, locks and clients stay behind)")
        if any(node.unchecked for node in graph.steps)
        else None,
    ]
    for name, title in filter(None, helpers):
        out += ["", "", f"# ---- {title}", _helper_block(name)]
    out += ["", "", "# ---- steps"]
    for node in graph.steps:
        keywords = [f"{k}={stepargs.to_source(v)}" for k, v in specs[node.name].items()]
        out += [
            "",
            "",
            "@step(" + ",\n      ".join(keywords) + ")",
            codegen.function_source(node, names[node.name]).rstrip(),
        ]
    out += ["", "", "# ---- the pipeline"]
    for node in graph.steps:
        handle = handles[node.name]
        args = ", ".join(
            [f"{handles[i.step]}[{i.produced!r}]" if i.step is not None else f"{i.name}_param" for i in node.links]
            + (EXECUTION_SOURCE if node.needs_execution else [])
        )
        out.append(f"{handle} = {names[node.name]}({args})")
        if node.order_only:  # --after: runs after these steps, with no data from them
            after = ", ".join(f"get_step({handles[d]})" for d in node.order_only)
            out.append(f"get_step({handle}).add_depends_on([{after}])")
        if node.name in cached:
            out.append(f"cache_step({handle}, {cached[node.name]!r})")
    conditional = {}
    for condition in graph.conditions:  # --when: the steps run only in the condition's if branch
        conditional[condition.name] = variable = condition.name.replace("-", "_") + "_step"
        out += ["", f"{variable} = {stepargs.to_source(branches[condition.name])}"]
    top = [handles[n.name] for n in graph.steps if n.guard is None] + list(conditional.values())
    params = ", ".join(f"{n}_param" for n in graph.parameters)
    out += [
        "",
        "pipeline = Pipeline(",
        f"    name={graph.name!r},",
        f"    steps=[{', '.join(top)}],",
        f"    parameters=[{params}],",
        "    pipeline_definition_config=PipelineDefinitionConfig(use_custom_job_prefix=True),",
        *(
            [
                f"    mlflow_config=MlflowConfig(mlflow_resource_arn={graph.mlflow['arn']!r}, "
                f"mlflow_experiment_name={graph.mlflow.get('experiment')!r}),"
            ]
            if graph.mlflow
            else []
        ),
        ")",
        "",
        "",
        'if __name__ == "__main__":',
        "    import sys",
        "",
        '    if "--submit" in sys.argv:',
        f"        pipeline.upsert(role_arn={pipeline_role(graph)!r})",
        "        print(pipeline.start().arn)",
        "    else:",
        "        print(pipeline.definition())",
        "",
    ]
    return "\n".join(out)


def _helper_block(name: str) -> str:
    """A helper's source inside a function of its own, so that its imports and names never meet the
    notebook's (a cell's ``types = [...]`` must stay the cell's)."""
    from jupyter_smstep.sdk.build import helper_source

    body = helper_source(name).split('"""', 2)[2].strip("\n")  # without its module docstring
    indented = "\n".join(("    " + line) if line.strip() else "" for line in body.splitlines())
    return f"def {name}_helper():\n{indented}\n    return {name}\n\n\n{name} = {name}_helper()"
