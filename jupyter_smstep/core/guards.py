"""``--when`` and ``--else-fail``: each step's condition resolved where the step stands in the notebook, one
ConditionStep per distinct condition, and the checks SageMaker's condition evaluation needs (JSON results).
Called by :func:`jupyter_smstep.core.graph.build_graph`; the expressions themselves are
:mod:`jupyter_smstep.core.conditions`'. Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from jupyter_smstep.core.model import Bindings, StepNode, candidate_outputs
from jupyter_smstep.core.secrets import SECRET_NAME
from jupyter_smstep.core.registry import Cell, Registry
from jupyter_smstep.errors import Report

if TYPE_CHECKING:
    from jupyter_smstep.core import conditions as cond_mod


def condition_operands(condition: cond_mod.Condition) -> list[cond_mod.Operand]:
    from jupyter_smstep.core import conditions as cond_mod

    found = list(cond_mod.operands(condition.tree))
    return found + (condition.else_fail.operands() if condition.else_fail is not None else [])


def step_condition(
    cell: Cell,
    index: int,
    registry: Registry,
    namespace: Mapping[str, Any],
    bindings: Bindings,
    later_writers: dict[str, list[tuple[int, str]]],
    report: Report,
) -> tuple[cond_mod.Cond, cond_mod.Message | None] | None:
    """The step's ``--when`` (and ``--else-fail``) with every name resolved where the step stands; None
    (and an error on the %%step line) when it cannot be."""
    from jupyter_smstep.core import conditions as cond_mod

    spec = cell.step
    assert spec is not None and spec.when is not None
    own_outputs = candidate_outputs(cell)

    def lookup(var: str) -> cond_mod.Operand:
        source = bindings.writer.get(var)
        if var in bindings.deleted:
            who, line = bindings.deleted[var]
            raise cond_mod.ConditionError(
                f"names {var!r}, which {who} deletes (its line {line})", fix=f"keep {var!r}, or compare another value"
            )
        if source is not None and source.step is not None:
            return cond_mod.Operand("output", var, step=source.step.name)
        if var in registry.parameters:
            return cond_mod.Operand("parameter", var)
        if var in bindings.derived:
            src_var, src_step = bindings.derived[var]
            raise cond_mod.ConditionError(
                f"names {var!r}, which an ordinary cell computed from {src_var!r} (step '{src_step}'): the "
                "pipeline cannot use the kernel's copy",
                fix="make that ordinary cell a %%step cell, or compare an output of a step",
            )
        if source is None:  # the kernel may hold it, but from this step or a later one
            later = [s for i, s in later_writers.get(var, []) if i > index]
            if later:
                raise cond_mod.ConditionError(
                    f"names {var!r}, which step '{later[0]}' produces, but that step comes later",
                    fix=f"move step '{spec.name}' below step '{later[0]}'",
                )
            if var in own_outputs:
                raise cond_mod.ConditionError(
                    f"names {var!r}, which this step computes: the condition is checked before the step runs",
                    fix=f"put the --when on the step that uses {var!r}, or compute it in an earlier step",
                )
        if var in namespace and type(namespace[var]) in cond_mod.CONSTANT_TYPES:
            return cond_mod.Operand("constant", var, value=namespace[var])
        if var in namespace:
            raise cond_mod.ConditionError(
                f"names {var!r}, a {type(namespace[var]).__name__} from the kernel: a condition compares step "
                "outputs, parameters and str/int/float/bool constants",
                fix=f"compare an output of an earlier step, or declare {var!r} with %pipeline param",
            )
        known = [n for n, c in bindings.writer.items() if c.step is not None] + list(registry.parameters)
        close = difflib.get_close_matches(var, known, n=1)
        raise cond_mod.ConditionError(
            f"names {var!r}, which is no earlier step's output, pipeline parameter or kernel constant",
            fix=f"did you mean {close[0]}?"
            if close
            else f"compare an output of a step above, or declare {var!r} with %pipeline param",
        )

    try:
        tree = cond_mod.resolve(cond_mod.parse(spec.when), lookup)
        message = None
        if spec.else_fail is not None:
            message = cond_mod.resolve_message(cond_mod.parse_message(spec.else_fail), lookup)
            secrets = sorted(
                {o.name for o in message.operands() if o.kind == "constant" and SECRET_NAME.search(o.name)}
            )
            if secrets:
                report.warn(
                    f"--else-fail writes the value of {', '.join(map(repr, secrets))} into the pipeline "
                    "definition (its failure message), which anyone who can describe the pipeline can read",
                    fix="leave secrets out of the message",
                    step=spec.name,
                    line=1,
                )
    except cond_mod.ConditionError as exc:
        report.error(
            f"--when {spec.when!r}: {exc.message}" if not exc.message.startswith("--") else exc.message,
            fix=exc.fix,
            step=spec.name,
            line=1,
        )
        return None
    return tree, message


def condition_steps(
    nodes: list[StepNode], own: Mapping[str, tuple[cond_mod.Cond, cond_mod.Message | None] | None], report: Report
) -> list[cond_mod.Condition]:
    """One ConditionStep per distinct condition; each step's guard is its own --when or an upstream step's.

    A step that depends (data or ``--after``) on a guarded step runs only when that step ran: it joins the
    same if branch. A step under two different conditions is refused: nesting ConditionSteps is not built.
    """
    from jupyter_smstep.core import conditions as cond_mod

    by_identity: dict[str, cond_mod.Condition] = {}
    guards: dict[str, str | None] = {}
    taken = {n.name for n in nodes}
    for node in nodes:
        found: dict[str, str] = {}  # condition name -> why (own, or the upstream step)
        if node.name in own:
            resolved = own[node.name]
            if resolved is None:
                guards[node.name] = None
                continue
            tree, message = resolved
            identity = repr(cond_mod.to_json(tree))
            condition = by_identity.get(identity)
            if condition is None:
                condition = cond_mod.Condition(free_name(f"when-{node.name}", taken), cond_mod.to_text(tree), tree, [])
                by_identity[identity] = condition
            if message is not None:
                if condition.else_fail is not None and condition.else_fail != message:
                    report.error(
                        f"--else-fail differs from that of another step with --when "
                        f"{condition.expression!r} (they share one condition, so one else branch)",
                        fix="give the same --else-fail, or keep it on one of them",
                        step=node.name,
                        line=1,
                    )
                elif condition.else_fail is None:
                    condition.else_fail = message
                    condition.fail_name = free_name(f"fail-{node.name}", taken)
            found[condition.name] = "its --when"
            for operand in cond_mod.operands(tree):  # the condition runs after the steps it reads
                if operand.kind == "output" and guards.get(operand.step or "") not in (None, condition.name):
                    found.setdefault(guards[operand.step or ""] or "", f"step '{operand.step}', which it reads")
        for dep in node.depends_on:
            guard = guards.get(dep)
            if guard is not None:
                found.setdefault(guard, f"step '{dep}'")
        if len(found) > 1:
            shown = "; ".join(f"{name} (from {why})" for name, why in found.items())
            report.error(
                f"is under two conditions ({shown}): nested conditions are not supported yet",
                fix="give the steps one shared --when (write the conditions joined with `and`)",
                step=node.name,
                line=1,
            )
            guards[node.name] = None
            continue
        guard = next(iter(found), None)
        guards[node.name] = guard
        node.guard = guard
        if guard is not None:
            next(c for c in by_identity.values() if c.name == guard).steps.append(node.name)
    conditions = list(by_identity.values())
    for condition in conditions:
        for operand in condition_operands(condition):
            if operand.kind == "output" and operand.step in condition.steps:
                report.error(
                    f"--when {condition.expression!r} reads {operand.name!r} from step '{operand.step}', "
                    "which runs only when the condition holds",
                    step=condition.steps[0],
                    line=1,
                    fix="compare an output of a step that always runs",
                )
    return conditions


def free_name(wanted: str, taken: set[str]) -> str:
    """A step name like ``wanted`` (at most 64 characters) that no other step has."""
    base = wanted[:64]
    name, n = base, 2
    while name in taken:
        suffix = f"-{n}"
        name, n = base[: 64 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def check_json_outputs(
    nodes: list[StepNode], conditions: list[cond_mod.Condition], namespace: Mapping[str, Any], report: Report
) -> None:
    """A condition reads its step's results.json, which the SDK writes empty (``"Result": null``) when any
    output of that step is not JSON: refuse that before anything is paid for, where the kernel holds the values."""
    import json

    readers: dict[str, str] = {}
    for condition in conditions:
        for operand in condition_operands(condition):
            if operand.kind == "output" and operand.step:
                readers.setdefault(operand.step, condition.expression)
    for node in nodes:
        if node.name not in readers:
            continue
        for var in node.outputs:
            if var not in namespace:
                continue
            try:
                json.dumps(namespace[var])
            except (TypeError, ValueError):
                value = namespace[var]
                scalar = getattr(value, "shape", None) == ()  # a numpy scalar: int64, float32
                hint = f"int({var}) or float({var})" if scalar else f"return {var!r} from another step"
                report.error(
                    f"returns {var!r} (a {type(value).__module__}.{type(value).__name__}), which is not "
                    f"JSON, and --when {readers[node.name]!r} reads this step's results: SageMaker then "
                    "finds no results to compare and the condition fails",
                    fix=f"make every output of this step JSON (numbers, strings, lists, dicts): {hint}, "
                    "or compute the compared value in a step of its own",
                    step=node.name,
                    line=(node.cell.analysis.writes.get(var, 0) if node.cell.analysis else 0) + 1,
                )
                break
