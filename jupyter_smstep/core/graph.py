"""From recorded cells to a pipeline graph: who feeds whom, and what is wrong.

Each name a step reads resolves, in this order, to

1. the latest earlier cell that wrote it: a step gives a ``DelayedReturn``
   link, an ordinary cell a value captured from the kernel;
2. a pipeline parameter;
3. a kernel value: a module or an importable function/class is imported inside
   the step, anything else (constants, helpers, classes defined in the
   notebook) is captured by value;
4. a builtin (ignored);
5. nothing: an error naming the step, the line and the name.

A step returns only the names later steps read (plus exported names), as a dict.
Validation collects every problem in a :class:`Report` before anything is
uploaded. Pure: no IPython, no sagemaker.

This module walks the cells and resolves each step (:func:`build_graph`); it delegates

- the model it builds and the bindings it keeps while walking to :mod:`.model`;
- ``--when`` / ``--else-fail`` to :mod:`.guards`;
- ordinary cells that compute from a step's output to :mod:`.taint`;
- what a step's code names on this machine or in S3 that a job would not find or would race for, to
  :mod:`.checks`;
- ``--foreach`` expansion to :mod:`.foreach`, ``--save`` to :mod:`.saves`, each cell's syntax to
  :mod:`.analysis`, settings to :mod:`.settings`.
"""

from __future__ import annotations

import ast
import dataclasses
import builtins
import re
import difflib
import functools
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from jupyter_smstep.core import checks, settings as settings_mod
from jupyter_smstep.core.code import global_names
from jupyter_smstep.core.analysis import CallSite, FunctionInfo, analyze, mutated_through_calls
from jupyter_smstep.core.plain import match_type, not_data
from jupyter_smstep.errors import Report
from jupyter_smstep.core.model import (BUILTINS, DEFAULT_PIPELINE_NAME, EXECUTION_MODULE, IPYTHON_NAMES,
                                       MISPLACED_FIX, RANDOM_STATES, Bindings, Input, PipelineGraph, StepNode,
                                       candidate_outputs, values_at)
from jupyter_smstep.core.guards import check_json_outputs, condition_operands, condition_steps, step_condition
from jupyter_smstep.core.registry import Cell, Registry
from jupyter_smstep.core.taint import track_plain_cell

if TYPE_CHECKING:  # imported where used: %load_ext builds no graph, and should not pay for these
    from jupyter_smstep.core import conditions as cond_mod, foreach as foreach_mod


# ---------------------------------------------------------------------------- build
def build_graph(
    registry: Registry,
    namespace: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    kernel_image: str | None = None,
    kernel_image_note: str = "",
    in_studio: bool = False,
    default_name: str | None = None,
    root: Path | None = None,
) -> PipelineGraph:
    """The graph of ``registry``'s cells; ``root`` is the notebook's folder (relative paths start there).

    Its phases, in order: the names; the walk (each step's inputs, in notebook order, and what it changes
    unseen); the conditions; the outputs (what later steps read); the settings; the ``--save`` targets; the
    local paths and files a job would not find; the fan-outs' iterations; the checks on the whole.
    """
    report = Report(list(registry.notices))
    name = registry.name or default_name or DEFAULT_PIPELINE_NAME
    _check_names(name, registry, report)
    nodes, own = _walk(registry, namespace, root, report)
    conditions = condition_steps(nodes, own, report)
    _choose_outputs(nodes, conditions, registry, namespace, report)
    no_image = _resolve_settings(nodes, name, registry, config, kernel_image, in_studio, root, report)
    _check_saves(nodes, name, registry, report)
    from jupyter_smstep.core import workdir

    shipping = workdir.plan(nodes, namespace, root, config)  # what IncludeLocalWorkDir takes: a job finds it
    checks.local_paths(nodes, namespace, root, shipping, report)
    checks.passed_files(nodes, namespace, report)
    checks.read_saves(nodes, namespace, report)
    if any(n.fanout is not None for n in nodes):
        nodes, no_image = _expand(nodes, conditions, no_image, registry, config, kernel_image, report)
        if shipping is not None:  # an iteration imports what its cell imports
            because = dict(shipping.because)
            because.update({n.name: because[n.fanout.step] for n in nodes if n.fanout is not None
                            and n.fanout.index is not None and n.fanout.step in because})
            shipping = dataclasses.replace(shipping, because=because)
    _warn_reseeded(registry, report)
    check_json_outputs(nodes, conditions, namespace, report)
    _dedupe(report)
    return PipelineGraph(name, nodes, dict(registry.parameters), report, kernel_image_note, conditions=conditions,
                         no_image=no_image, mlflow=dict(registry.mlflow), shipping=shipping)


def _check_names(name: str, registry: Registry, report: Report) -> None:
    """The pipeline's name, the steps' names and the parameters' names, as SageMaker takes them."""
    if not settings_mod.PIPELINE_NAME.match(name):
        report.error(
            f"pipeline name {name!r} is invalid: SageMaker allows letters, digits and single dashes "
            "(no underscores or spaces), up to 256 characters",
            fix=f"%pipeline config --name {_suggest_pipeline_name(name)}",
        )
    _check_step_names(registry, report)
    _check_parameters(registry, report)


def _walk(registry: Registry, namespace: Mapping[str, Any], root: Path | None, report: Report,
          ) -> tuple[list[StepNode], dict[str, tuple[cond_mod.Cond, cond_mod.Message | None] | None]]:
    """The cells in notebook order: each step's inputs (who wrote each name it reads, as of its cell), what it
    changes without its code showing it, its fan-out and its own ``--when``."""
    bindings = Bindings()
    functions: dict[str, FunctionInfo] = {}  # the latest definition of each notebook function so far
    methods: dict[str, FunctionInfo] = {}
    warned_plain: set[str] = set()
    nodes: list[StepNode] = []
    later_writers = _later_step_writers(registry)
    own: dict[str, tuple[cond_mod.Cond, cond_mod.Message | None] | None] = {}  # step -> its resolved --when
    for index, cell in enumerate(registry.cells):
        if cell.analysis is None:
            if cell.is_step and cell.problem:
                report.problems.append(cell.problem)
            continue
        functions.update(cell.analysis.functions)
        methods.update(cell.analysis.methods)
        if not cell.is_step:
            track_plain_cell(cell, bindings, warned_plain, report)
            continue
        values = values_at(cell, namespace)
        node = _resolve_step(cell, index, registry, values, bindings, later_writers, report)
        node.hidden_changes = _hidden_changes(cell, node, values, functions, methods, registry, namespace, root,
                                              report)
        if cell.step is not None and cell.step.foreach is not None:
            node.fanout = _fan_out(cell, node, values, bindings, registry, report)
        nodes.append(node)
        if cell.step is not None and cell.step.when is not None:
            own[node.name] = step_condition(cell, index, registry, values, bindings, later_writers, report)
        bindings.after_step(cell, node)
    return nodes, own


def _hidden_changes(cell: Cell, node: StepNode, values: Mapping[str, Any], functions: dict[str, FunctionInfo],
                    methods: dict[str, FunctionInfo], registry: Registry, namespace: Mapping[str, Any],
                    root: Path | None, report: Report) -> dict[str, int]:
    """The inputs ``node`` changes without its code showing it (through calls, aliases, a generator it draws
    from, ``%pipeline outputs``, or as seen in the kernel): each is an output too. name -> line."""
    assert cell.analysis is not None
    calls, known = _beside(cell, node, values, functions, root)
    changed = mutated_through_calls(calls, known, methods)
    aliases = cell.analysis.aliases
    for var, line in list(changed.items()):  # `fill(s)` inside `for s in (a, b)` changes a and b
        for other in aliases.get(var, ()):
            changed.setdefault(other, line)
    hidden = {v: line for v, line in changed.items() if v in node.inputs and node.inputs[v].kind != "import"}
    for inp in node.captured:  # drawing from a generator advances it: the next step draws on from there
        if inp.name in values and match_type(values[inp.name], RANDOM_STATES):
            hidden.setdefault(inp.name, inp.line)
    for inp in node.inputs.values():
        if inp.kind == "step" and inp.name in namespace and match_type(namespace[inp.name], RANDOM_STATES):
            hidden.setdefault(inp.name, inp.line)
    for var in sorted(registry.exports & set(node.inputs)):
        if node.inputs[var].kind != "import":  # declared: every step that reads it returns it too
            hidden.setdefault(var, node.inputs[var].line)
    for var in cell.changed_in_kernel:
        if var in node.inputs and var not in hidden:
            hidden[var] = node.inputs[var].line
            report.warn(f"changed {var!r} in place when it ran in the kernel (its code does not show it): "
                        "an output now; a headless build (smstep) cannot see this",
                        fix=f"add a cell `%pipeline outputs {var}` so every build returns it",
                        step=node.name, line=node.inputs[var].line + 1)
    return hidden


def _choose_outputs(nodes: list[StepNode], conditions: list[cond_mod.Condition], registry: Registry,
                    namespace: Mapping[str, Any], report: Report) -> None:
    """Each step's outputs: what later steps and conditions read (plus exports), unless ``--outputs`` says;
    a step nothing reads returns its variables, so a run's results can be pulled."""
    consumed: dict[str, set[str]] = {n.name: set() for n in nodes}
    for node in nodes:
        for inp in node.inputs.values():
            if inp.kind == "step" and inp.step in consumed:
                consumed[inp.step].add(inp.produced)
    for condition in conditions:  # a condition reads its outputs from the producing step's results.json
        for operand in condition_operands(condition):
            if operand.kind == "output" and operand.step in consumed:
                consumed[operand.step].add(operand.name)
    for node in nodes:
        spec = node.cell.step
        assert spec is not None
        candidates = candidate_outputs(node.cell, node)
        if spec.outputs is not None:
            node.outputs = list(spec.outputs)
            assigned = set(node.cell.analysis.outputs) | set(node.hidden_changes) if node.cell.analysis else set()
            for var in spec.outputs:
                if var not in assigned and var not in node.inputs:  # an input it changes unseen is returned
                    report.error(f"--outputs names {var!r}, which the cell neither assigns nor reads: the step "
                                 "would fail with NameError when it returns it",
                                 fix="check the spelling, or assign it in the cell", step=node.name,
                                 line=1)
        else:
            wanted = consumed[node.name] | (registry.exports & candidates)
            node.outputs = [v for v in _ordered(node.cell, node) if v in wanted]
        if spec.outputs is None and _is_sink(node, nodes):
            # Nothing downstream reads this step: return its variables (not its imports,
            # function/class definitions or _throwaway names) so a run's results can be pulled.
            analysis = node.cell.analysis
            assert analysis is not None  # a step node is made from an analysed cell only
            keep = {v for v in candidates - set(analysis.imports) - set(analysis.defines) if not v.startswith("_")}
            returned = [v for v in _ordered(node.cell, node) if v in keep]
            node.outputs = [v for v in returned if not _left_out(node, v, namespace, report)]
            node.unchecked = [v for v in node.outputs if v not in namespace]
            node.sink_outputs = [v for v in returned if not (v in node.inputs and node.inputs[v].kind == "import")]
        node.outputs = [v for v in node.outputs
                        if not (v in node.inputs and node.inputs[v].kind == "import") or v in (spec.outputs or ())]


def _resolve_settings(nodes: list[StepNode], name: str, registry: Registry, config: Mapping[str, Any] | None,
                      kernel_image: str | None, in_studio: bool, root: Path | None, report: Report) -> list[str]:
    """Each step's settings, cell > ``%pipeline config`` > config.yaml > kernel image > default, checked; the
    steps with no image (said once, where an image is needed)."""
    for node in nodes:
        spec = node.cell.step
        assert spec is not None
        resolved = settings_mod.resolve(spec.options, registry.defaults, config or {}, kernel_image)
        if "job_name_prefix" not in resolved:
            resolved["job_name_prefix"] = settings_mod.Resolved(
                settings_mod.job_name_prefix(name, node.name), settings_mod.DEFAULT
            )
        settings_mod.bind_parameters(node.name, resolved, registry.parameters, report)
        node.settings = resolved
        settings_mod.validate(node.name, settings_mod.with_parameter_values(resolved, registry.parameters), report,
                              in_studio=in_studio, root=root)
    resolved_steps = {n.name: settings_mod.with_parameter_values(n.settings, registry.parameters) for n in nodes}
    settings_mod.validate_pipeline(resolved_steps, report, in_studio=in_studio)
    return settings_mod.missing_image(resolved_steps, in_studio=in_studio)


def _check_saves(nodes: list[StepNode], name: str, registry: Registry, report: Report) -> None:
    """Each step's ``--save`` targets, resolved; one object has one writer."""
    written: dict[str, tuple[str, str]] = {}  # --save URI -> (step, name): one object, one writer
    for node in nodes:
        _resolve_saves(node, name, registry.save_root, report)
        _warn_unexpanded(node, report)
        for save in node.saves:
            if save.uri in written:
                other, what = written[save.uri]
                report.error(f"--save {save.name} writes {save.uri}, which step '{other}' writes too (--save {what}): "
                             "the step that ends last would overwrite the other's object without a word",
                             fix="give each its own URI (or use {step} in the URI)", step=node.name, line=1)
            written.setdefault(save.uri, (node.name, save.name))


def _fan_out(cell: Cell, node: StepNode, values: Mapping[str, Any], bindings: Bindings, registry: Registry,
             report: Report) -> foreach_mod.FanOut | None:
    """A ``--foreach`` step's items, as its cell saw them (checked: ``core.foreach.check``)."""
    from jupyter_smstep.core import foreach as foreach_mod

    spec = cell.step
    assert spec is not None and spec.foreach is not None
    var, source = spec.foreach
    writer = bindings.writer.get(source)
    fan, why = None, ""
    if writer is not None and writer.step is not None:
        why = (f"the items come from step '{writer.step.name}', so they are known only when it runs; a step's "
               "iterations are built one job per item before the pipeline runs (SageMaker's ForEachStep cannot "
               "carry @step results per iteration)")
    elif source in registry.parameters:
        why = (f"{source!r} is a pipeline parameter, known only when an execution starts; the iterations are built "
               "one job per item before that")
    elif source not in values:
        why = f"{source!r} is defined nowhere (no earlier cell binds it)"
    else:
        items, why = foreach_mod.items_of(values[source])
        if items is not None:
            fan = foreach_mod.FanOut(node.name, var, source, items, spec.max_concurrency, spec.select)
    foreach_mod.check(node, fan, f"{source!r} {why}" if fan is None and source in values else why, report)
    return fan


def _expand(nodes: list[StepNode], conditions: list[cond_mod.Condition], no_image: list[str], registry: Registry,
            config: Mapping[str, Any] | None, kernel_image: str | None, report: Report,
            ) -> tuple[list[StepNode], list[str]]:
    """The fan-out steps as their iterations and gathers (``core.foreach.expand``). A gather runs on the
    pipeline's default instance, not the cell's: it only makes lists."""
    from jupyter_smstep.core import foreach as foreach_mod

    gathers: dict[str, dict[str, settings_mod.Resolved]] = {}
    for node in nodes:
        if node.fanout is not None and node.cell.step is not None:
            options = {k: v for k, v in node.cell.step.options.items() if k not in ("instance_type", "instance_count")}
            resolved = settings_mod.resolve(options, registry.defaults, config or {}, kernel_image)
            resolved.setdefault("job_name_prefix", node.settings["job_name_prefix"])
            settings_mod.bind_parameters(node.name, resolved, registry.parameters, Report())
            gathers[node.name] = resolved
    expanded = foreach_mod.expand(nodes, conditions, gathers, report)
    missing = set(no_image)
    no_image = [n.name for n in expanded if n.name in missing or (n.fanout is not None and n.fanout.step in missing)]
    return expanded, no_image


def _resolve_step(
    cell: Cell,
    index: int,
    registry: Registry,
    namespace: Mapping[str, Any],
    bindings: Bindings,
    later_writers: dict[str, list[tuple[int, str]]],
    report: Report,
) -> StepNode:
    """One step cell as a node: what its code may not do in a job, each name it reads as an input (or an error
    saying why it cannot be one), the helpers that read step outputs, and the steps it runs after."""
    spec = cell.step
    analysis = cell.analysis
    assert spec is not None and analysis is not None
    name = spec.name
    _check_step_code(name, analysis, report)
    reads = dict(analysis.reads)
    if spec.inputs is not None:
        for var in spec.inputs:
            reads.setdefault(var, 0)
    inputs: dict[str, Input] = {}
    if spec.foreach is not None:  # the item: each iteration captures its own (core.foreach)
        item, items = spec.foreach
        if item in reads:
            inputs[item] = Input(item, "value", reads.pop(item), type_name="item", via=f"--foreach {item}={items}")
    for var, line in sorted(reads.items(), key=lambda kv: (kv[1], kv[0])):
        if var.startswith("__") and var.endswith("__"):
            continue
        found = _resolve_input(var, line, cell, index, registry, namespace, bindings, later_writers, report)
        if found is not None:
            inputs[var] = found
    helpers = _helper_links(inputs, namespace, bindings, name, report)
    for helper, needs in helpers.items():  # a global the cell rebinds: the function still sees the input's value
        for var in needs:
            if var in analysis.writes:
                report.warn(f"calls {helper}(), which reads {var!r} when it runs; this step also assigns {var!r}, "
                            f"but inside the step {helper}() sees the value from before the step (a step's names "
                            "are its own), while the kernel's cell changed the global",
                            fix=f"pass {var} to {helper}() as an argument", step=name,
                            line=analysis.writes[var] + 1)
    depends = _depends_on(inputs, spec.after, name, index, registry, report)
    return StepNode(name, cell, inputs, [], depends, {}, helper_globals=helpers)


def _check_step_code(name: str, analysis: Any, report: Report) -> None:
    """What a step's code may not do, since it runs as a function in a job: ``import *``, import
    jupyter_smstep, ``return`` / ``yield`` / ``global`` at its top level."""
    for line in analysis.star_imports:
        report.error("`from ... import *` in a step: the names it brings in cannot be known",
                     fix="import the names you use explicitly", step=name, line=line + 1)
    for var, written in analysis.imports.items():
        if "jupyter_smstep" in written:
            report.error(f"`{written}` in a step: the step's container has no jupyter_smstep",
                         fix=f"import it in an ordinary cell above (`{written}`); a step that reads "
                             f"`{var}` gets the execution's values as arguments", step=name,
                         line=(analysis.writes.get(var) or 0) + 1)
    for line, keyword in analysis.misplaced:
        report.error(f"`{keyword}` at the top level of a %%step cell: the cell is the step function's body, "
                     "and the step returns the variables later steps read",
                     fix=MISPLACED_FIX[keyword], step=name, line=line + 1)


def _resolve_input(var: str, line: int, cell: Cell, index: int, registry: Registry, namespace: Mapping[str, Any],
                   bindings: Bindings, later_writers: dict[str, list[tuple[int, str]]], report: Report,
                   ) -> Input | None:
    """What the name ``var`` that a step reads (at ``line`` of its body) is, as of the step's cell: an import, a
    step's output, a parameter, the execution, a captured value; None for a builtin, a name ``--inputs`` leaves
    out, or one it cannot be (an error says why, with the fix)."""
    spec = cell.step
    assert spec is not None
    name = spec.name
    linkable = spec.inputs is None or var in spec.inputs
    source = bindings.writer.get(var)
    if var in IPYTHON_NAMES:
        fix = ("print() it, or display it in an ordinary cell below the step" if var == "display"
               else "use an ordinary variable instead")
        report.error(f"uses IPython's `{var}`, which does not exist when the step runs as a job",
                     fix=fix, step=name, line=line + 1)
        return None
    if linkable and var in bindings.deleted:
        who, del_line = bindings.deleted[var]
        report.error(f"reads {var!r}, which {who} deletes (its line {del_line}): run top to bottom, "
                     "the notebook raises NameError here",
                     fix=f"keep {var!r} (drop the del), or compute it again before step '{name}'",
                     step=name, line=line + 1)
        return None
    if linkable and var in bindings.imported:
        return Input(var, "import", line, statement=bindings.imported[var])
    if linkable and source is not None and source.is_step:
        assert source.step is not None
        return Input(var, "step", line, step=source.step.name)
    if linkable and var in registry.parameters:
        return Input(var, "parameter", line)
    if var in registry.retired and (source is None or source.is_step):
        gone = registry.retired[var]
        report.error(f"reads {var!r}, which step '{gone}' computed, but that step is gone (deleted or removed); "
                     "the kernel still holds its last value, which the pipeline cannot use",
                     fix=f"restore step '{gone}', or compute {var!r} in a step or an ordinary cell above",
                     step=name, line=line + 1)
        return None
    if var in bindings.derived:
        src_var, src_step = bindings.derived[var]
        who = source.label if source is not None and source.label else "an ordinary cell"
        report.error(
            f"reads {var!r}, which {who} computed from {src_var!r}, an output of step "
            f"'{src_step}': the pipeline cannot use the kernel's copy",
            fix=f"make {who} a %%step cell, or move its code into step '{name}'",
            step=name, line=line + 1)
        return None
    if var in cell.unbound and var not in BUILTINS and (unbound := _unbound(var, cell, index, registry)):
        later = [s for i, s in later_writers.get(var, []) if i > index]
        if later:
            report.error(f"reads {var!r}, which step '{later[0]}' produces, but that step comes later",
                         fix=f"move step '{name}' below step '{later[0]}'", step=name, line=line + 1)
        else:
            report.error(*unbound, step=name, line=line + 1)
        return None
    if var in namespace and var in BUILTINS and _is_builtin(var, namespace[var]):
        return None  # Python's own (IPython's `open`, `exit`, `quit` wrappers are the builtins in a job)
    if var in namespace and isinstance(namespace[var], types.ModuleType) and \
            namespace[var].__name__ == EXECUTION_MODULE:
        return Input(var, "execution", line)
    if var in namespace:
        value = namespace[var]
        cell_import = source.analysis.imports.get(var) if source is not None and source.analysis else None
        statement = import_statement(var, value, cell_import)
        if statement:
            return Input(var, "import", line, statement=statement)
        via = source.label if source is not None else None
        return Input(var, "value", line, type_name=type(value).__name__, via=via)
    if var in BUILTINS or (source is not None and source.is_step and not linkable):
        return None  # Python's own, or a step output --inputs excluded on purpose
    later = [s for i, s in later_writers.get(var, []) if i > index]
    if later:
        report.error(f"reads {var!r}, which step '{later[0]}' produces, but that step comes later",
                     fix=f"move step '{name}' below step '{later[0]}'", step=name, line=line + 1)
    else:
        report.error(f"reads {var!r}, which is defined nowhere (no earlier step, parameter or "
                     "kernel variable); was the cell that defined it deleted or not run?",
                     fix=f"define {var!r} in an earlier cell and run it, or declare it with %pipeline param",
                     step=name, line=line + 1)
    return None


def _depends_on(inputs: dict[str, Input], after: Sequence[str], name: str, index: int, registry: Registry,
                report: Report) -> list[str]:
    """The steps a step runs after: those whose outputs it reads, in the order it reads them, then ``--after``
    (each checked: an earlier step, not itself)."""
    depends: list[str] = []
    for inp in sorted(inputs.values(), key=lambda i: i.line):
        if inp.kind == "step" and inp.step not in depends:
            depends.append(inp.step)  # type: ignore[arg-type]
    earlier = [c.step.name for c in registry.cells[:index] if c.step is not None]
    for other in after:
        if other == name:
            report.error(f"--after {other}: a step cannot run after itself", fix="name another step", step=name)
        elif other in earlier:
            if other not in depends:
                depends.append(other)
        elif any(c.step is not None and c.step.name == other for c in registry.cells[index:]):
            report.error(f"--after {other}: step '{other}' comes later in the notebook", step=name,
                         fix=f"move step '{name}' below step '{other}'")
        else:
            close = difflib.get_close_matches(other, earlier, n=1)
            report.error(f"--after {other}: there is no step '{other}' above this one", step=name,
                         fix=f"did you mean {close[0]}?" if close else f"steps above: {', '.join(earlier) or 'none'}")
    return depends


def _helper_links(inputs: dict[str, Input], namespace: Mapping[str, Any], bindings: Bindings, step: str,
                  report: Report) -> dict[str, tuple[str, ...]]:
    """A notebook function the step calls that reads a step's output when it runs (``def predict(x): return
    model.predict(x)``): that output becomes the step's input, and the function reads it (``StepNode.
    helper_globals``) instead of the kernel's copy. One an ordinary cell computed from a step output is an
    error, as when the step reads it itself."""
    found: dict[str, tuple[str, ...]] = {}
    for inp in [i for i in inputs.values() if i.kind == "value"]:
        value = namespace.get(inp.name)
        if not isinstance(value, types.FunctionType) or value.__module__ != "__main__":
            continue
        needs = []
        for var in sorted(_reachable_globals(value)):
            src = bindings.writer.get(var)
            if src is not None and src.step is not None:
                needs.append(var)
                if var not in inputs:
                    inputs[var] = Input(var, "step", inp.line, step=src.step.name)
            elif var in bindings.derived:
                src_var, src_step = bindings.derived[var]
                report.error(f"calls {inp.name}(), which reads {var!r} when it runs; an ordinary cell computed "
                             f"{var!r} from {src_var!r}, an output of step '{src_step}': the pipeline cannot use "
                             "the kernel's copy", fix=f"make that ordinary cell a %%step cell, or move its code into "
                             f"step '{step}'", step=step, line=inp.line + 1)
        if needs:
            found[inp.name] = tuple(needs)
    return found


def _reachable_globals(function: types.FunctionType) -> set[str]:
    """The global names a notebook function may read when it runs, through the notebook functions it calls too
    (their globals are one dict once pickled together, so the calling step sets them once)."""
    names: set[str] = set()
    todo, seen = [function], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found = global_names(current.__code__)
        names |= found
        todo += [v for n in found if isinstance(v := current.__globals__.get(n), types.FunctionType)
                 and v.__module__ == "__main__"]
    return names


def _beside(cell: Cell, node: StepNode, values: Mapping[str, Any], functions: dict[str, FunctionInfo],
            root: Path | None) -> tuple[tuple[CallSite, ...], dict[str, FunctionInfo]]:
    """The step's calls and the functions they may reach, with those of modules beside the notebook
    (``from prep import clean; clean(df)``, ``import prep; prep.clean(df)``): their source is read, so a
    function there that changes its argument in place makes that argument an output, as a notebook
    function does."""
    assert cell.analysis is not None
    calls = cell.analysis.calls
    if root is None:
        return calls, functions
    known = dict(functions)
    extra: list[CallSite] = []
    for inp in node.imports:
        value = values.get(inp.name)
        if isinstance(value, types.ModuleType):
            found = _module_functions(value, root)
            if found:
                for call in calls:
                    if call.receiver == inp.name and call.method in found:
                        name = f"{inp.name}.{call.method}"
                        known[name] = found[call.method]
                        extra.append(CallSite(name, None, None, call.args, call.kwargs, call.line))
                known.update({n: f for n, f in found.items() if n not in known})
        elif isinstance(value, types.FunctionType):
            found = _module_functions(sys.modules.get(value.__module__), root)
            if found and value.__name__ in found:
                known.update({n: f for n, f in found.items() if n not in functions})
                known[inp.name] = found[value.__name__]
    return calls + tuple(extra), known


def _module_functions(module: Any, root: Path) -> dict[str, FunctionInfo] | None:
    """What the functions of ``module`` do to their parameters, when its source is a file under ``root``."""
    file = getattr(module, "__file__", None)
    if not file or not str(file).endswith(".py"):
        return None
    path = Path(file).resolve()
    try:
        path.relative_to(root.resolve())
        stat = path.stat()
    except (ValueError, OSError):
        return None
    if "site-packages" in path.parts or any(part.startswith(".") for part in path.parts[len(root.parts):]):
        return None
    return _functions_of(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=128)
def _functions_of(path: str, mtime_ns: int, size: int) -> dict[str, FunctionInfo] | None:
    try:
        analysis = analyze(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    return dict(analysis.functions)


def _unbound(var: str, cell: Cell, index: int, registry: Registry) -> tuple[str, str] | None:
    """(message, fix) for a name the step read before another cell bound it; None when no cell binds it."""
    assert cell.step is not None
    name = cell.step.name
    writers = [(i, c) for i, c in enumerate(registry.cells)
               if c is not cell and c.analysis is not None and var in c.analysis.outputs]
    if not writers:
        return None
    below = [c for i, c in writers if i > index]
    above = [c for i, c in writers if i < index]
    if above and not below:  # a kernel: the step cell ran before the cell above it was run
        return (f"reads {var!r}, which was not defined yet when this step's cell ran ({above[-1].label} above "
                "defines it, but ran after it)",
                f"run step '{name}' again, or Restart & Run All")
    return (f"reads {var!r}, which is not defined yet where this step stands ({below[0].label}, below this step, "
            "defines it): run top to bottom, the notebook raises NameError at this cell",
            f"define {var!r} in a cell above step '{name}' (move {below[0].label} up)")


def import_statement(var: str, value: Any, written: str | None = None) -> str | None:
    """How to re-create ``value`` by import inside the step, or None to capture it by value.

    ``written`` is the import the notebook's cell wrote for ``var``: kept when it gives this very
    object (``from sklearn.ensemble import RandomForestClassifier``, not the private module the class
    says it lives in, which another version of the library may not have)."""
    if written and _imports_this(written, var, value):
        return written
    if isinstance(value, types.ModuleType):
        name = value.__name__
        if name == var:
            return f"import {name}"
        if "." in name and name.split(".")[0] == var:
            return f"import {name}"
        return f"import {name} as {var}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        if not module or module == "__main__" or module == "builtins" or "." in qualname or "<" in qualname:
            return None
        mod = sys.modules.get(module)
        if mod is None or getattr(mod, qualname, None) is not value:
            return None
        return f"from {module} import {qualname}" + ("" if qualname == var else f" as {var}")
    return None


def _imports_this(statement: str, var: str, value: Any) -> bool:
    """Whether the one-name import ``statement`` binds ``var`` to ``value`` in this process (no import runs)."""
    try:
        (node,) = ast.parse(statement).body
    except (SyntaxError, ValueError):
        return False
    if not isinstance(node, (ast.Import, ast.ImportFrom)) or len(node.names) != 1:
        return False
    alias = node.names[0]
    if (alias.asname or alias.name.split(".")[0]) != var:
        return False
    if isinstance(node, ast.Import):
        found = sys.modules.get(alias.name if alias.asname else alias.name.split(".")[0])
    elif node.level or not node.module:
        return False
    else:
        found = getattr(sys.modules.get(node.module), alias.name, None)
    return found is value


def _is_sink(node: StepNode, nodes: list[StepNode]) -> bool:
    return not any(node.name in other.depends_on for other in nodes)


def _ordered(cell: Cell, node: StepNode | None = None) -> list[str]:
    """Candidate outputs in the order the cell first writes them."""
    assert cell.analysis is not None
    lines = {**(node.hidden_changes if node is not None else {}), **cell.analysis.mutates, **cell.analysis.writes}
    return sorted(candidate_outputs(cell, node), key=lambda v: (lines.get(v, 0), v))


def _left_out(node: StepNode, var: str, namespace: Mapping[str, Any], report: Report) -> bool:
    """A final step returns plain data only: leave out (and say so) a value that cannot be data.

    Known only when the cell ran in the kernel (its values are in the namespace);
    an explicit ``--outputs`` still insists.
    """
    if var not in namespace:
        return False
    why = not_data(namespace[var])
    if why is None:
        return False
    line = (node.cell.analysis.writes.get(var) if node.cell.analysis else None) or 0
    report.warn(f"the final step leaves {var!r} ({why}) out of its outputs: it is not data another process "
                "can use, so the step returns its other variables", step=node.name, line=line + 1,
                fix=f"return what {var!r} holds instead (a path, a name, the data), or insist with --outputs")
    return True


def _is_builtin(var: str, value: Any) -> bool:
    """Whether the namespace's ``var`` is Python's builtin itself, or IPython's wrapper of it.

    IPython's ``open`` (``_modified_open``) is made with ``functools.wraps(io.open)``: its
    ``__module__`` says ``io``, its ``__wrapped__`` is the builtin."""
    builtin = getattr(builtins, var, None)
    if value is builtin or (builtin is not None and getattr(value, "__wrapped__", None) is builtin):
        return True
    module = getattr(value, "__module__", None) or type(value).__module__
    return isinstance(module, str) and module.split(".")[0] == "IPython"


def _later_step_writers(registry: Registry) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for i, cell in enumerate(registry.cells):
        if cell.is_step and cell.analysis is not None:
            for var in candidate_outputs(cell):
                found.setdefault(var, []).append((i, cell.step.name))  # type: ignore[union-attr]
    return found


def _warn_reseeded(registry: Registry, report: Report) -> None:
    """A step that draws from a global random state an earlier cell seeded, without seeding it first
    itself: in the kernel it continues the seeded sequence, in its job it starts unseeded."""
    from jupyter_smstep.core import randomness

    names: dict[str, str] = {}
    seeded: dict[str, tuple[Cell, randomness.Use]] = {}
    for cell in registry.cells:
        if cell.analysis is None:
            continue
        names.update(randomness.aliases(cell.analysis.imports.values()))
        seeds, draws = randomness.uses(cell.source, names)
        if cell.step is not None:
            own: dict[str, int] = {}
            for seed in seeds:
                own.setdefault(seed.library, seed.line)
            warned: set[str] = set()
            for draw in draws:
                seeded_first = own.get(draw.library, draw.line + 1) < draw.line
                if draw.library in seeded and draw.library not in warned and not seeded_first:
                    warned.add(draw.library)
                    where, seed = seeded[draw.library]
                    seed_line = seed.line + (1 if where.step is not None else 0)  # a step's body starts on line 2
                    report.warn(
                        f"draws from {draw.library}'s global random state ({draw.call}), which {where.label} seeds "
                        f"({seed.call}, line {seed_line}): in the kernel it continues that seeded sequence, in its "
                        "job it starts unseeded, so its numbers (and what is computed from them) differ from the "
                        "kernel's", step=cell.step.name, line=draw.line + 1,
                        fix=f"seed it at the top of this step too ({seed.call}(...)), or draw from a generator made "
                            "in the step from a seed parameter (rng = np.random.default_rng(seed))")
        for seed in seeds:
            seeded[seed.library] = (cell, seed)


def _check_step_names(registry: Registry, report: Report) -> None:
    seen: dict[str, int] = {}
    for cell in registry.steps:
        name = cell.step.name  # type: ignore[union-attr]
        if not settings_mod.STEP_NAME.match(name):
            report.error(f"step name {name!r} is invalid: SageMaker allows 1-64 letters, digits, '-' and '_'",
                         fix=f"rename it, e.g. %%step {_suggest_step_name(name)}", step=name)
        elif name.startswith("-"):
            # The job runs `invoke_function ... --pipeline_step_name -load-`, and argparse reads the
            # name as an option: the job fails as it starts (the local runner runs the same command).
            report.error(f"step name {name!r} starts with '-': SageMaker accepts it, but the @step job passes it "
                         "to the SDK's entry point as `--pipeline_step_name " + name + "`, which reads it as an "
                         "option and fails as the job starts",
                         fix=f"rename it, e.g. %%step {name.lstrip('-') or 'step'}", step=name)
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            report.error(f"{count} cells are named step '{name}'",
                         fix="give each %%step cell its own name (or remove the duplicate with %pipeline remove)",
                         step=name)


def _check_parameters(registry: Registry, report: Report) -> None:
    for pname, value in registry.parameters.items():
        if not isinstance(value, (str, int, float, bool)):
            report.error(f"parameter {pname!r} has a {type(value).__name__} value; pipeline parameters "
                         "are str, int, float or bool", fix=f"give {pname!r} a plain value")


def _dedupe(report: Report) -> None:
    seen = set()
    unique = []
    for p in report.problems:
        key = (p.message, p.step, p.line, p.severity)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    report.problems[:] = unique


def _suggest_pipeline_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")
    return cleaned[:256] or DEFAULT_PIPELINE_NAME


def _suggest_step_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:64] or "step"


# ---------------------------------------------------------------------------- --when


def check_parameter_settings(graph: PipelineGraph, values: Mapping[str, Any]) -> None:
    """A run's ``-p`` values of the parameters settings are bound to (``--instance-type TrainingInstanceType``),
    checked as a literal is; raises :class:`SmstepError` before anything runs or is uploaded."""
    merged = {**graph.parameters, **values}
    report = Report()
    for node in graph.steps:
        bound = {r.value.name for r in node.settings.values()
                 if isinstance(r.value, settings_mod.ParameterRef) and r.value.name in values}
        if bound:
            found = Report()
            settings_mod.validate(node.name, settings_mod.with_parameter_values(node.settings, merged), found,
                                  in_studio=True)
            report.problems += [p for p in found.errors if any(f"parameter {name})" in p.message for name in bound)]
    report.raise_if_errors()


def _resolve_saves(node: StepNode, pipeline: str, root: str | None, report: Report) -> None:
    """The step's ``--save`` values, each checked (an error on the %%step line, before anything runs)."""
    from jupyter_smstep.core import saves as saves_mod

    spec = node.cell.step
    assert spec is not None
    bound = candidate_outputs(node.cell, node)
    seen: dict[str, str] = {}
    for name, uri in spec.saves:
        try:
            save = saves_mod.resolve(name, uri, pipeline=pipeline, step=node.name, root=root, bound=bound)
        except saves_mod.SaveError as exc:
            report.error(exc.message, fix=exc.fix, step=node.name, line=1)
            continue
        if save.uri in seen:
            report.error(f"--save {name} and --save {seen[save.uri]} write the same object {save.uri}",
                         fix="give each its own URI", step=node.name, line=1)
            continue
        seen[save.uri] = name
        node.saves.append(save)
    if "cache" in node.settings and any(s.per_execution for s in node.saves):
        report.warn("--cache with a --save URI that has {execution_id}: when SageMaker reuses the step's earlier "
                    "result it runs nothing, so this execution's object is never written",
                    fix="drop {execution_id} from the URI, or --cache from the step", step=node.name, line=1)


#: What IPython would expand in another magic's line (``$name``, ``$$`` aside)
_DOLLAR = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _warn_unexpanded(node: StepNode, report: Report) -> None:
    """``$name`` on a %%step line stays as written (a headless build has no kernel values to expand it
    with): say so, once, unless it is in a shell command the job runs (``--pre-execution-commands``)."""
    import shlex

    spec = node.cell.step
    assert spec is not None
    try:
        words = shlex.split(spec.header)
    except ValueError:
        return
    previous = ""
    for word in words:
        match = _DOLLAR.search(word)
        if match and previous not in ("--pre-execution-commands",):
            report.warn(f"the %%step line has ${match.group(1)} ({word!r}): %%step reads its line as written, so the "
                        "value is that text, not the kernel variable (a headless build could not expand it)",
                        fix="write the value itself (or, for an option that takes one, a pipeline parameter's "
                            "name: --instance-type TrainingInstanceType)", step=node.name, line=1)
            return
        previous = word if word.startswith("--") else previous
