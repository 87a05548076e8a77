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

from jupyter_smstep.core import codegen, foreach
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

    major = sdk_major or compat.installed_major()
    fans = _for_each_fans(graph, major)
    iterations = {n.name: (step, index) for step, nodes in fans.items() for index, n in enumerate(nodes)}
    specs = {node.name: stepargs.step_arguments(node) for node in graph.steps}
    for step, nodes in fans.items():  # its body (the cell's name) and its gather (core.foreach)
        fan = nodes[0].fanout
        assert fan is not None
        specs[step] = stepargs.renamed(
            specs[step],
            _gather(graph, step),
            foreach.gather_name(step),
            foreach.descriptions(fan)[foreach.gather_name(step)],
        )
        specs[nodes[0].name] = stepargs.renamed(specs[nodes[0].name], nodes[0], step, foreach.descriptions(fan)[step])
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
    names = codegen.function_names(graph, reserved=defined | {"cache_step", *FOR_EACH_NAMES})
    handles = {node.name: f"{names[node.name]}_out" for node in graph.steps}

    def value(operand: Any) -> Any:
        if operand.kind == "output":
            return stepargs.Source(handles[operand.step] + "".join(f"[{p!r}]" for p in (operand.name,) + operand.path))
        return stepargs.Source(f"{operand.name}_param") if operand.kind == "parameter" else operand.value

    each = {step: foreach.foreach_name(step).replace("-", "_") + "_step" for step in fans}  # the ForEach's variable

    def listed(step: str) -> str:  # what the pipeline (or a branch) lists: an iteration's ForEach
        return each[iterations[step][0]] if step in iterations else handles[step]

    branches = {
        c.name: condition_steps.condition_step(
            c, value, [stepargs.Source(s) for s in dict.fromkeys(listed(s) for s in c.steps)]
        )
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
    if any(node.order_only for node in graph.steps) or cached or fans:
        out.append(f"from {table['step_outputs']} import get_step")
    if fans:
        out.append(f"from {FOR_EACH_MODULE} import ForEachStep")
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
    if fans:
        out += ["", "", FOR_EACH_TITLE, _for_each_block(table)]
    out += ["", "", "# ---- steps"]
    for node in graph.steps:
        keywords = [f"{k}={stepargs.to_source(v)}" for k, v in specs[node.name].items()]
        if node.name not in iterations:
            out += ["", "", "@step(" + ",\n      ".join(keywords) + ")"]
        else:  # one iteration, which the ForEach's body runs for its item
            out += ["", ""]
        out.append(codegen.function_source(node, names[node.name]).rstrip())
        step, index = iterations.get(node.name, ("", 0))
        if node.name in iterations and index == len(fans[step]) - 1:  # the last: then the body
            first = fans[step][0]
            keywords = [f"{k}={stepargs.to_source(v)}" for k, v in specs[first.name].items()]
            link_names = codegen.arguments(first)
            choices = ", ".join(names[n.name] for n in fans[step])
            out += [
                "",
                "",
                "@step(" + ",\n      ".join(keywords) + ")",
                f"def {names[step]}_item({', '.join(['item', *link_names])}):",
                '    """The ForEach body: the iteration the item numbers."""',
                f"    return [{choices}][int(item)]({', '.join(link_names)})",
            ]
    out += ["", "", "# ---- the pipeline"]

    def argument(i: Any) -> str:
        if i.step in iterations:  # one iteration's output: the ForEach's child's
            step, index = iterations[i.step]
            return f"iteration_result({each[step]}, {step!r}, {index}, {i.produced!r})"
        return f"{handles[i.step]}[{i.produced!r}]" if i.step is not None else f"{i.name}_param"

    for node in graph.steps:
        handle = handles[node.name]
        args = ", ".join([argument(i) for i in node.links] + (EXECUTION_SOURCE if node.needs_execution else []))
        if node.name in iterations:
            step, index = iterations[node.name]
            if index == 0 and node.fanout is not None:
                body = handles[step] + "_item"
                made = {
                    **foreach.for_each_arguments(node.fanout),
                    "for_each_body": stepargs.Source(f"[get_step({body})]"),
                }
                after = ", ".join(f"get_step({handles[d]})" for d in foreach.runs_after(fans[step]))
                if after:
                    made["depends_on"] = stepargs.Source(f"[{after}]")
                out += [
                    f"{body} = {names[step]}_item({', '.join(['current_item()', *filter(None, [args])])})",
                    f"results_per_item_of({body})",
                    f"{each[step]} = ForEachStep({', '.join(f'{k}={stepargs.to_source(v)}' for k, v in made.items())})",
                ]
            continue
        out.append(f"{handle} = {names[node.name]}({args})")
        if node.name in fans:
            out.append(f"get_step({handle}).add_depends_on([{each[node.name]}])")
        if node.order_only:  # --after: runs after these steps, with no data from them
            after = ", ".join(f"get_step({handles[d]})" for d in node.order_only)
            out.append(f"get_step({handle}).add_depends_on([{after}])")
        if node.name in cached:
            out.append(f"cache_step({handle}, {cached[node.name]!r})")
    conditional = {}
    for condition in graph.conditions:  # --when: the steps run only in the condition's if branch
        conditional[condition.name] = variable = condition.name.replace("-", "_") + "_step"
        out += ["", f"{variable} = {stepargs.to_source(branches[condition.name])}"]
    top = list(dict.fromkeys(listed(n.name) for n in graph.steps if n.guard is None)) + list(conditional.values())
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


#: SDK v3's ForEach step (3.27+; not in ``sdk.lines.MODULES``, which every build imports)
FOR_EACH_MODULE = "sagemaker.mlops.workflow.for_each_step"
FOR_EACH_TITLE = (
    "# ---- --foreach as SageMaker's ForEach: the body takes the item, and each child writes its results apart\n"
    "# (the @step decorator pickles neither ForEach.CurrentItem nor a ForEach child's results; jupyter_smstep's\n"
    "# sdk/patches.py, copied here, makes both, through the SDK's own private classes)"
)


def _for_each_fans(graph: PipelineGraph, major: int) -> dict[str, list[Any]]:
    """The fan-outs the module builds as a ForEach: as the notebook's build does (``sdk.build``) for the
    installed SDK; for another line, on v3."""
    if major != compat.installed_major():
        return foreach.iterations_of(graph.steps) if major >= 3 and graph.foreach_as == "foreach" else {}
    from jupyter_smstep.sdk.build import for_each_fan_outs

    return for_each_fan_outs(graph)


def _gather(graph: PipelineGraph, step: str) -> Any:
    return next(n for n in graph.steps if n.name == step)


#: What the ForEach block defines (:func:`_for_each_block`), kept clear of the notebook's names
FOR_EACH_NAMES = ("current_item", "iteration_result", "results_per_item_of", "_smstep_for_each_helper")


def _for_each_block(table: dict[str, str]) -> str:
    """``sdk.patches``' ForEach parts, inside a function of their own (as :func:`_helper_block`), and the wrap
    that applies ``results_per_item`` to the body's request when the pipeline is built."""
    import inspect
    import textwrap

    from jupyter_smstep.sdk import patches

    functions = (patches._reference_class, patches.current_item, patches.iteration_result, patches.results_per_item)
    blocks = [
        "import functools\n"
        "from typing import Any\n\n"
        f"from {table['functions']} import Join\n"
        f"from {table['execution_variables']} import ExecutionVariables\n"
        f"from {table['step_outputs']} import get_step",
        *(inspect.getsource(f).rstrip() for f in functions),
        "def results_per_item_of(out):\n"
        '    """A ForEach body\'s children write their results apart (``results_per_item``, when it is built)."""\n'
        "    function_step = get_step(out)\n"
        "    to_request = function_step.to_request\n\n"
        "    def request():\n"
        "        made = to_request()\n"
        '        results_per_item(made["Arguments"], Join, ExecutionVariables.PIPELINE_EXECUTION_ID)\n'
        "        return made\n\n"
        "    function_step.to_request = request",
        "return current_item, iteration_result, results_per_item_of",
    ]
    body = textwrap.indent("\n\n".join(blocks), "    ")
    return f"def _smstep_for_each_helper():\n{body}\n\n\n{', '.join(FOR_EACH_NAMES[:3])} = _smstep_for_each_helper()"


def _helper_block(name: str) -> str:
    """A helper's source inside a function of its own, so that its imports and names never meet the
    notebook's (a cell's ``types = [...]`` must stay the cell's)."""
    from jupyter_smstep.sdk.build import helper_source

    body = helper_source(name).split('"""', 2)[2].strip("\n")  # without its module docstring
    indented = "\n".join(("    " + line) if line.strip() else "" for line in body.splitlines())
    return f"def {name}_helper():\n{indented}\n    return {name}\n\n\n{name} = {name}_helper()"
