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
- the lints (names as SageMaker takes them, what a step's code may not do, a seeded global random state,
  ``$name`` on a ``%%step`` line) to :mod:`.lints`;
- what the notebook's functions bring into a step (changes through calls, also in modules beside the notebook;
  step outputs they read when they run) to :mod:`.helpers`;
- whether a kernel value is re-created by an import inside the step to :mod:`.importing`;
- ``--foreach`` expansion to :mod:`.foreach`, ``--save`` to :mod:`.saves`, each cell's syntax to
  :mod:`.analysis`, settings to :mod:`.settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

from jupyter_smstep.core import checks, helpers, importing, lints, setting_rules, settings as settings_mod
from jupyter_smstep.core.analysis import FunctionInfo
from jupyter_smstep.core.plain import not_data
from jupyter_smstep.errors import Report
from jupyter_smstep.core.model import (
    BUILTINS,
    DEFAULT_PIPELINE_NAME,
    EXECUTION_MODULE,
    IPYTHON_NAMES,
    Bindings,
    Input,
    PipelineGraph,
    StepNode,
    candidate_outputs,
    values_at,
)
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
    lints.check_names(name, registry, report)
    nodes, own = _walk(registry, namespace, root, report)
    conditions = condition_steps(nodes, own, report)
    _choose_outputs(nodes, conditions, registry, namespace, report)
    no_image = _resolve_settings(nodes, name, registry, config, kernel_image, in_studio, root, report)
    checks.saves(nodes, name, registry.save_root, report)
    from jupyter_smstep.core import workdir

    shipping = workdir.plan(nodes, namespace, root, config)  # what IncludeLocalWorkDir takes: a job finds it
    checks.local_paths(nodes, namespace, root, shipping, report)
    checks.passed_files(nodes, namespace, report)
    checks.read_saves(nodes, namespace, report)
    if any(n.fanout is not None for n in nodes):
        nodes, no_image = _expand(nodes, conditions, no_image, registry, config, kernel_image, report)
        if shipping is not None:  # an iteration imports what its cell imports
            because = dict(shipping.because)
            because.update(
                {
                    n.name: because[n.fanout.step]
                    for n in nodes
                    if n.fanout is not None and n.fanout.index is not None and n.fanout.step in because
                }
            )
            shipping = dataclasses.replace(shipping, because=because)
    lints.warn_reseeded(registry, report)
    check_json_outputs(nodes, conditions, namespace, report)
    lints.dedupe(report)
    return PipelineGraph(
        name,
        nodes,
        dict(registry.parameters),
        report,
        kernel_image_note,
        conditions=conditions,
        no_image=no_image,
        mlflow=dict(registry.mlflow),
        shipping=shipping,
        foreach_as=registry.foreach_as,
    )


def _walk(
    registry: Registry,
    namespace: Mapping[str, Any],
    root: Path | None,
    report: Report,
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
        node.hidden_changes = helpers.hidden_changes(
            cell, node, values, functions, methods, registry, namespace, root, report
        )
        if cell.step is not None and cell.step.foreach is not None:
            node.fanout = _fan_out(cell, node, values, bindings, registry, report)
        nodes.append(node)
        if cell.step is not None and cell.step.when is not None:
            own[node.name] = step_condition(cell, index, registry, values, bindings, later_writers, report)
        bindings.after_step(cell, node)
    return nodes, own


def _choose_outputs(
    nodes: list[StepNode],
    conditions: list[cond_mod.Condition],
    registry: Registry,
    namespace: Mapping[str, Any],
    report: Report,
) -> None:
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
                    report.error(
                        f"--outputs names {var!r}, which the cell neither assigns nor reads: the step "
                        "would fail with NameError when it returns it",
                        fix="check the spelling, or assign it in the cell",
                        step=node.name,
                        line=1,
                    )
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
        node.outputs = [
            v
            for v in node.outputs
            if not (v in node.inputs and node.inputs[v].kind == "import") or v in (spec.outputs or ())
        ]


def _resolve_settings(
    nodes: list[StepNode],
    name: str,
    registry: Registry,
    config: Mapping[str, Any] | None,
    kernel_image: str | None,
    in_studio: bool,
    root: Path | None,
    report: Report,
) -> list[str]:
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
        setting_rules.validate(
            node.name,
            settings_mod.with_parameter_values(resolved, registry.parameters),
            report,
            in_studio=in_studio,
            root=root,
        )
    resolved_steps = {n.name: settings_mod.with_parameter_values(n.settings, registry.parameters) for n in nodes}
    setting_rules.validate_pipeline(resolved_steps, report, in_studio=in_studio)
    return setting_rules.missing_image(resolved_steps, in_studio=in_studio)


def _fan_out(
    cell: Cell, node: StepNode, values: Mapping[str, Any], bindings: Bindings, registry: Registry, report: Report
) -> foreach_mod.FanOut | None:
    """A ``--foreach`` step's items, as its cell saw them (checked: ``core.foreach.check``)."""
    from jupyter_smstep.core import foreach as foreach_mod

    spec = cell.step
    assert spec is not None and spec.foreach is not None
    var, source = spec.foreach
    writer = bindings.writer.get(source)
    fan, why = None, ""
    if writer is not None and writer.step is not None:
        why = (
            f"the items come from step '{writer.step.name}', so they are known only when it runs; the iterations "
            "(one job per item, the children of SageMaker's ForEach under SDK v3) are made when the pipeline is "
            "built, from the items known then"
        )
    elif source in registry.parameters:
        why = (
            f"{source!r} is a pipeline parameter, known only when an execution starts; the iterations are built "
            "one job per item before that"
        )
    elif source not in values:
        why = f"{source!r} is defined nowhere (no earlier cell binds it)"
    else:
        items, why = foreach_mod.items_of(values[source])
        if items is not None:
            fan = foreach_mod.FanOut(node.name, var, source, items, spec.max_concurrency, spec.select)
        why = f"{source!r} {why}"
    foreach_mod.check(node, fan, why, report)
    return fan


def _expand(
    nodes: list[StepNode],
    conditions: list[cond_mod.Condition],
    no_image: list[str],
    registry: Registry,
    config: Mapping[str, Any] | None,
    kernel_image: str | None,
    report: Report,
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
    lints.check_step_code(name, analysis, report)
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
    links = helpers.helper_links(inputs, namespace, bindings, name, report)
    for helper, needs in links.items():  # a global the cell rebinds: the function still sees the input's value
        for var in needs:
            if var in analysis.writes:
                report.warn(
                    f"calls {helper}(), which reads {var!r} when it runs; this step also assigns {var!r}, "
                    f"but inside the step {helper}() sees the value from before the step (a step's names "
                    "are its own), while the kernel's cell changed the global",
                    fix=f"pass {var} to {helper}() as an argument",
                    step=name,
                    line=analysis.writes[var] + 1,
                )
    depends = _depends_on(inputs, spec.after, name, index, registry, report)
    return StepNode(name, cell, inputs, [], depends, {}, helper_globals=links)


def _resolve_input(
    var: str,
    line: int,
    cell: Cell,
    index: int,
    registry: Registry,
    namespace: Mapping[str, Any],
    bindings: Bindings,
    later_writers: dict[str, list[tuple[int, str]]],
    report: Report,
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
        fix = (
            "print() it, or display it in an ordinary cell below the step"
            if var == "display"
            else "use an ordinary variable instead"
        )
        report.error(
            f"uses IPython's `{var}`, which does not exist when the step runs as a job",
            fix=fix,
            step=name,
            line=line + 1,
        )
        return None
    if linkable and var in bindings.deleted:
        who, del_line = bindings.deleted[var]
        report.error(
            f"reads {var!r}, which {who} deletes (its line {del_line}): run top to bottom, "
            "the notebook raises NameError here",
            fix=f"keep {var!r} (drop the del), or compute it again before step '{name}'",
            step=name,
            line=line + 1,
        )
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
        report.error(
            f"reads {var!r}, which step '{gone}' computed, but that step is gone (deleted or removed); "
            "the kernel still holds its last value, which the pipeline cannot use",
            fix=f"restore step '{gone}', or compute {var!r} in a step or an ordinary cell above",
            step=name,
            line=line + 1,
        )
        return None
    if var in bindings.derived:
        src_var, src_step = bindings.derived[var]
        who = source.label if source is not None and source.label else "an ordinary cell"
        report.error(
            f"reads {var!r}, which {who} computed from {src_var!r}, an output of step "
            f"'{src_step}': the pipeline cannot use the kernel's copy",
            fix=f"make {who} a %%step cell, or move its code into step '{name}'",
            step=name,
            line=line + 1,
        )
        return None
    if var in cell.unbound and var not in BUILTINS and (unbound := _unbound(var, cell, index, registry)):
        if not _produced_later(var, index, later_writers, name, line, report):
            report.error(*unbound, step=name, line=line + 1)
        return None
    if var in namespace and var in BUILTINS and importing.is_builtin(var, namespace[var]):
        return None  # Python's own (IPython's `open`, `exit`, `quit` wrappers are the builtins in a job)
    if (
        var in namespace
        and isinstance(namespace[var], types.ModuleType)
        and namespace[var].__name__ == EXECUTION_MODULE
    ):
        return Input(var, "execution", line)
    if var in namespace:
        value = namespace[var]
        cell_import = source.analysis.imports.get(var) if source is not None and source.analysis else None
        statement = importing.import_statement(var, value, cell_import)
        if statement:
            return Input(var, "import", line, statement=statement)
        via = source.label if source is not None else None
        return Input(var, "value", line, type_name=type(value).__name__, via=via)
    if var in BUILTINS or (source is not None and source.is_step and not linkable):
        return None  # Python's own, or a step output --inputs excluded on purpose
    if not _produced_later(var, index, later_writers, name, line, report):
        report.error(
            f"reads {var!r}, which is defined nowhere (no earlier step, parameter or "
            "kernel variable); was the cell that defined it deleted or not run?",
            fix=f"define {var!r} in an earlier cell and run it, or declare it with %pipeline param",
            step=name,
            line=line + 1,
        )
    return None


def _produced_later(
    var: str, index: int, later_writers: dict[str, list[tuple[int, str]]], name: str, line: int, report: Report
) -> bool:
    """Whether a step below cell ``index`` produces ``var``; if so, said on the reading line with the move that fixes
    it."""
    later = [s for i, s in later_writers.get(var, []) if i > index]
    if later:
        report.error(
            f"reads {var!r}, which step '{later[0]}' produces, but that step comes later",
            fix=f"move step '{name}' below step '{later[0]}'",
            step=name,
            line=line + 1,
        )
    return bool(later)


def _depends_on(
    inputs: dict[str, Input], after: Sequence[str], name: str, index: int, registry: Registry, report: Report
) -> list[str]:
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
            report.error(
                f"--after {other}: step '{other}' comes later in the notebook",
                step=name,
                fix=f"move step '{name}' below step '{other}'",
            )
        else:
            close = difflib.get_close_matches(other, earlier, n=1)
            report.error(
                f"--after {other}: there is no step '{other}' above this one",
                step=name,
                fix=f"did you mean {close[0]}?" if close else f"steps above: {', '.join(earlier) or 'none'}",
            )
    return depends


def _unbound(var: str, cell: Cell, index: int, registry: Registry) -> tuple[str, str] | None:
    """(message, fix) for a name the step read before another cell bound it; None when no cell binds it."""
    assert cell.step is not None
    name = cell.step.name
    writers = [
        (i, c)
        for i, c in enumerate(registry.cells)
        if c is not cell and c.analysis is not None and var in c.analysis.outputs
    ]
    if not writers:
        return None
    below = [c for i, c in writers if i > index]
    above = [c for i, c in writers if i < index]
    if above and not below:  # a kernel: the step cell ran before the cell above it was run
        return (
            f"reads {var!r}, which was not defined yet when this step's cell ran ({above[-1].label} above "
            "defines it, but ran after it)",
            f"run step '{name}' again, or Restart & Run All",
        )
    return (
        f"reads {var!r}, which is not defined yet where this step stands ({below[0].label}, below this step, "
        "defines it): run top to bottom, the notebook raises NameError at this cell",
        f"define {var!r} in a cell above step '{name}' (move {below[0].label} up)",
    )


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
    report.warn(
        f"the final step leaves {var!r} ({why}) out of its outputs: it is not data another process "
        "can use, so the step returns its other variables",
        step=node.name,
        line=line + 1,
        fix=f"return what {var!r} holds instead (a path, a name, the data), or insist with --outputs",
    )
    return True


def _later_step_writers(registry: Registry) -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {}
    for i, cell in enumerate(registry.cells):
        if cell.is_step and cell.analysis is not None:
            for var in candidate_outputs(cell):
                found.setdefault(var, []).append((i, cell.step.name))  # type: ignore[union-attr]
    return found


# ---------------------------------------------------------------------------- --when
