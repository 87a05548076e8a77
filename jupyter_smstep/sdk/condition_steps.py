"""A ``--when`` condition as the SDK's ``ConditionStep`` (and ``FailStep``), decided once and rendered twice.

:func:`condition_step` turns a :class:`~jupyter_smstep.core.conditions.Condition` into
:class:`~.stepargs.Call` specs: the build renders them to SDK objects
(:func:`.stepargs.to_sdk`), the export to source (:func:`.stepargs.to_source`), so both
write the same definition. ``value`` says what an operand is on each side: the build
passes the ``DelayedReturn`` item or the ``Parameter*`` object, the export a
:class:`~.stepargs.Source` naming them.

SageMaker conditions have no ``and`` inside an ``or`` or a ``not`` and no ``!=``: the
ConditionStep's list is an ``and`` of its items, ``a != b`` is ``Not(Equals)``, and an
inner ``a and b`` is ``Not(Or(Not a, Not b))``.

No sagemaker import.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from jupyter_smstep.core import conditions as c
from jupyter_smstep.sdk.stepargs import Call

#: Python's comparison -> the SDK's condition class
CLASSES = {
    "<": "ConditionLessThan",
    "<=": "ConditionLessThanOrEqualTo",
    ">": "ConditionGreaterThan",
    ">=": "ConditionGreaterThanOrEqualTo",
    "==": "ConditionEquals",
    "!=": "ConditionEquals",
}
#: Each class's SDK module (a :data:`~.compat.MODULES` key), for the export's imports.
CLASS_MODULES = {
    **{cls: "conditions" for cls in CLASSES.values()},
    "ConditionIn": "conditions",
    "ConditionNot": "conditions",
    "ConditionOr": "conditions",
    "ConditionStep": "condition_step",
    "FailStep": "fail_step",
    "Join": "functions",
}

Value = Callable[[c.Operand], Any]


def condition_step(condition: c.Condition, value: Value, if_steps: list[Any]) -> Call:
    """The ``ConditionStep`` (its else branch the ``FailStep`` of ``--else-fail``)."""
    else_steps = []
    if condition.else_fail is not None:
        else_steps.append(
            Call("FailStep", {"name": condition.fail_name, "error_message": message(condition.else_fail, value)})
        )
    return Call(
        "ConditionStep",
        {
            "name": condition.name,
            "conditions": [_call(item, value) for item in c.conjuncts(condition.tree)],
            "if_steps": if_steps,
            "else_steps": else_steps,
            "description": f"when {condition.expression}",
        },
    )


def message(msg: c.Message, value: Value) -> Any:
    """A plain string, or ``Join`` of its text and values."""
    if not msg.operands():
        return "".join(p for p in msg.parts if isinstance(p, str))
    return Call("Join", {"on": "", "values": [p if isinstance(p, str) else value(p) for p in msg.parts]})


def _call(cond: c.Cond, value: Value) -> Call:
    if isinstance(cond, c.Compare):
        call = Call(CLASSES[cond.op], {"left": value(cond.left), "right": value(cond.right)})
        return Call("ConditionNot", {"expression": call}) if cond.op == "!=" else call
    if isinstance(cond, c.Member):
        call = Call("ConditionIn", {"value": value(cond.value), "in_values": [value(v) for v in cond.values]})
        return Call("ConditionNot", {"expression": call}) if cond.negated else call
    if isinstance(cond, c.Not):
        return Call("ConditionNot", {"expression": _call(cond.item, value)})
    if cond.op == "or":
        return Call("ConditionOr", {"conditions": [_call(i, value) for i in cond.items]})
    # an `and` below the top: not(any(not item))
    negated = [Call("ConditionNot", {"expression": _call(i, value)}) for i in cond.items]
    return Call("ConditionNot", {"expression": Call("ConditionOr", {"conditions": negated})})


def item(base: Any, path: tuple[str | int, ...]) -> Any:
    """``base[p0][p1]...``: a DelayedReturn's item reference (the SDK reads it with ``Std:JsonGet``)."""
    for key in path:
        base = base[key]
    return base
