"""``--when "EXPR"`` and ``--else-fail "MESSAGE"``: a step that runs only when a condition holds.

:func:`parse` reads EXPR with Python's own parser and keeps only what a SageMaker
``ConditionStep`` can evaluate: comparisons (``<  <=  >  >=  ==  !=``), membership
(``in [...]``, ``not in [...]``), ``and``, ``or``, ``not``, over names, their items
(``evaluation["rmse"]``, ``scores[0]``) and literals. Anything else (a call, an
attribute, arithmetic, ``is``) is a :class:`ConditionError` saying what to write
instead. :func:`resolve` then says what each name is: an earlier step's output, a
pipeline parameter or a constant from the kernel (inlined), through a lookup the
graph provides. The result is a neutral tree: ``sdk.condition_steps`` renders it to the
SDK's ``Condition*`` objects for the build and to source for the export; the local
runner evaluates the definition the SDK wrote, as the service does.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import ast
import math
import string
from dataclasses import dataclass, replace
from typing import Any, Literal, Union
from collections.abc import Callable, Iterator, Mapping

from jupyter_smstep.errors import BadValue

OperandKind = Literal["name", "output", "parameter", "constant"]
#: Python's comparison operators and the SageMaker condition each becomes ("!=" is Not(Equals)).
COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
SUPPORTED = "<, <=, >, >=, ==, !=, in [...], not in [...], and, or, not"
#: What a constant from the kernel may be to stand in a condition.
CONSTANT_TYPES = (bool, int, float, str)


class ConditionError(BadValue):
    """A --when or --else-fail value that cannot be used."""


@dataclass(frozen=True)
class Operand:
    """One side of a comparison: a name (and a path into it) or a literal."""

    kind: OperandKind
    name: str = ""  # the variable or parameter
    path: tuple[str | int, ...] = ()  # items into an output: evaluation["rmse"] -> ("rmse",)
    value: Any = None  # a constant's value
    step: str | None = None  # the producing step, for an output

    @property
    def text(self) -> str:
        if self.kind == "constant" and not self.name:
            return repr(self.value)
        return self.name + "".join(f"[{p!r}]" for p in self.path)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.name:
            out["name"] = self.name
        if self.path:
            out["path"] = list(self.path)
        if self.kind == "constant":
            out["value"] = self.value
        if self.step:
            out["step"] = self.step
        return out


@dataclass(frozen=True)
class Compare:
    op: str  # one of COMPARISONS' values
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Member:
    value: Operand
    values: tuple[Operand, ...]
    negated: bool = False  # not in


@dataclass(frozen=True)
class BoolOp:
    op: Literal["and", "or"]
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


Cond = Union[Compare, Member, BoolOp, Not]


# ------------------------------------------------------------------------------- parsing
def parse(text: str) -> Cond:
    """EXPR -> a condition tree whose names are unresolved (``Operand.kind == "name"``)."""
    source = text.strip()
    if not source:
        raise ConditionError("--when is empty", fix='write a comparison, e.g. --when "accuracy >= 0.7"')
    deep = ConditionError(
        f"--when nests its expression too deeply ({len(source)} characters)",
        fix="write the condition with fewer nested not/and/or/parentheses",
    )
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(
            f"--when {text!r} is not a Python expression ({exc.msg})",
            fix="quote the whole expression: --when \"evaluation['rmse'] < 5\"",
        ) from None
    except (RecursionError, MemoryError):
        raise deep from None
    try:
        return _condition(tree.body, source)
    except RecursionError:
        raise deep from None


def _condition(node: ast.expr, source: str) -> Cond:
    if isinstance(node, ast.BoolOp):
        joiner: Literal["and", "or"] = "and" if isinstance(node.op, ast.And) else "or"
        return BoolOp(joiner, tuple(_condition(v, source) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_condition(node.operand, source))
    if isinstance(node, ast.Compare):
        parts: list[Cond] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            parts.append(_comparison(op, left, right, source))
            left = right
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))
    what = _segment(source, node)
    if isinstance(node, (ast.Name, ast.Subscript, ast.Constant)):
        raise ConditionError(
            f"--when {what!r} is a value, not a condition: SageMaker conditions compare values",
            fix=f'compare it: --when "{what} == True"',
        )
    raise _unsupported(node, source)


def _comparison(op: ast.cmpop, left: ast.expr, right: ast.expr, source: str) -> Cond:
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not right.elts:
            raise ConditionError(
                f"--when: the right of `in` must be a non-empty list of values, not {_segment(source, right)!r}",
                fix="write the values: --when \"label in ['cat', 'dog']\"",
            )
        return Member(_operand(left, source), tuple(_operand(e, source) for e in right.elts), isinstance(op, ast.NotIn))
    symbol = COMPARISONS.get(type(op))
    if symbol is None:
        name = {ast.Is: "is", ast.IsNot: "is not"}.get(type(op), type(op).__name__)
        raise ConditionError(
            f"--when: `{name}` is not an operator a SageMaker condition has ({SUPPORTED})",
            fix="compare with == or != instead",
        )
    return Compare(symbol, _operand(left, source), _operand(right, source))


def _operand(node: ast.expr, source: str) -> Operand:
    if isinstance(node, ast.Constant) and isinstance(node.value, float) and not math.isfinite(node.value):
        raise ConditionError(
            f"--when {_segment(source, node)!r} is {node.value}, which the definition (JSON) cannot hold",
            fix="compare with a finite number",
        )
    if isinstance(node, ast.Constant) and isinstance(node.value, CONSTANT_TYPES):
        return Operand("constant", value=node.value)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        value = -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
        if isinstance(value, float) and not math.isfinite(value):
            raise ConditionError(
                f"--when {_segment(source, node)!r} is {value}, which the definition (JSON) cannot hold",
                fix="compare with a finite number",
            )
        return Operand("constant", value=value)
    if isinstance(node, ast.Name):
        return Operand("name", node.id)
    if isinstance(node, ast.Subscript):
        base = _operand(node.value, source)
        if base.kind != "name":
            raise _unsupported(node, source)
        index = node.slice
        if (
            isinstance(index, ast.Constant)
            and isinstance(index.value, (int, str))
            and not isinstance(index.value, bool)
        ):
            if isinstance(index.value, str) and ("'" in index.value or "\\" in index.value):
                # the SDK writes the key into a JsonGet path as ['key'], which a quote or a backslash breaks:
                # the condition would fail on SageMaker when it is evaluated, not here
                raise ConditionError(
                    f"--when {_segment(source, node)!r}: the key {index.value!r} holds a quote or a "
                    "backslash, which SageMaker's JsonGet path (['key']) cannot carry",
                    fix=f"rename the key, or have the step return the value under a plain name "
                    f"(e.g. value = {base.name}[{index.value!r}]) and compare that",
                )
            return replace(base, path=base.path + (index.value,))
        if (
            isinstance(index, ast.UnaryOp)
            and isinstance(index.op, ast.USub)
            and isinstance(index.operand, ast.Constant)
            and type(index.operand.value) is int
        ):
            raise ConditionError(
                f"--when {_segment(source, node)!r}: SageMaker reads items by position from the "
                "start; a negative index is not supported",
                fix="use the item's position from the start, or return the value by name",
            )
        raise ConditionError(
            f"--when {_segment(source, node)!r}: an item must be a literal key or position "
            "(evaluation['rmse'], scores[0]), not an expression or a slice",
            fix="return the value you compare from the step as its own variable",
        )
    raise _unsupported(node, source)


def _unsupported(node: ast.expr, source: str) -> ConditionError:
    what = _segment(source, node)
    if isinstance(node, ast.Call):
        return ConditionError(
            f"--when {what!r} calls a function: a SageMaker condition cannot run code",
            fix="compute the value in the step and compare the variable it returns",
        )
    if isinstance(node, ast.Attribute):
        base = _segment(source, node.value)
        return ConditionError(
            f"--when {what!r} reads an attribute: a condition reads a step's outputs as JSON (names and items only)",
            fix=f"return it as a dict item and write {base}[{node.attr!r}], or return it as its own variable",
        )
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return ConditionError(
            f"--when {what!r} computes: a SageMaker condition compares values, it has no arithmetic",
            fix="compute the value in the step (e.g. `gap = a - b`) and compare that",
        )
    return ConditionError(
        f"--when {what!r}: a {type(node).__name__} is not something a SageMaker condition can evaluate ({SUPPORTED})",
        fix='write e.g. --when "accuracy >= 0.7"',
    )


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.unparse(node)


# ------------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class Message:
    """``--else-fail "MESSAGE"``: text with ``{name}`` fields (outputs, parameters, constants)."""

    parts: tuple[str | Operand, ...]

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else "{" + p.text + "}" for p in self.parts)

    def operands(self) -> list[Operand]:
        return [p for p in self.parts if isinstance(p, Operand)]


def parse_message(text: str) -> Message:
    """MESSAGE -> text and ``{name}`` / ``{name[key]}`` fields (``{{`` and ``}}`` are braces)."""
    if not text.strip():
        raise ConditionError(
            "--else-fail is empty", fix='say why the pipeline stops: --else-fail "rmse {rmse} too high"'
        )
    parts: list[str | Operand] = []
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConditionError(
            f"--else-fail {text!r}: {exc}", fix="write {name} for a value, and {{ or }} for a brace"
        ) from None
    for literal, field_name, spec, conversion in fields:
        if literal:
            parts.append(literal)
        if field_name is None:
            continue
        if spec or conversion:
            raise ConditionError(
                f"--else-fail {text!r}: {{{field_name}}} has a format ({conversion or spec}); the "
                "message shows values as SageMaker renders them",
                fix=f"write {{{field_name}}}",
            )
        try:
            operand = _operand(ast.parse(field_name, mode="eval").body, field_name)
        except (SyntaxError, ConditionError):
            raise ConditionError(
                f"--else-fail {text!r}: {{{field_name}}} is not a name",
                fix="write {name} or {name['key']} for an output, a parameter or a constant",
            ) from None
        if operand.kind != "name":
            raise ConditionError(
                f"--else-fail {text!r}: {{{field_name}}} is not a name", fix="write the literal text without braces"
            )
        parts.append(operand)
    return Message(tuple(parts))


# ------------------------------------------------------------------------------- resolving
#: name -> what it is (an Operand of kind output/parameter/constant); raises ConditionError if nothing.
Lookup = Callable[[str], Operand]


def resolve(cond: Cond, lookup: Lookup) -> Cond:
    """Every name replaced by what ``lookup`` says it is; a condition that reads no output or parameter
    (it would always be true or always false) is an error."""
    resolved = _map(cond, lambda o: _resolve_operand(o, lookup))
    if not any(o.kind in ("output", "parameter") for o in operands(resolved)):
        raise ConditionError(
            f"--when {to_text(cond)!r} reads no step output or pipeline parameter: it is always true or always false",
            fix="compare an output of an earlier step or a %pipeline param",
        )
    return resolved


def resolve_message(message: Message, lookup: Lookup) -> Message:
    return Message(tuple(p if isinstance(p, str) else _resolve_operand(p, lookup) for p in message.parts))


def _resolve_operand(op: Operand, lookup: Lookup) -> Operand:
    if op.kind != "name":
        return op
    found = lookup(op.name)
    if found.kind != "output" and op.path:
        raise ConditionError(
            f"--when {op.text!r}: {op.name!r} is a {found.kind}, which has no items", fix=f"compare {op.name} itself"
        )
    return replace(found, path=op.path) if found.kind == "output" else found


def _map(cond: Cond, fn: Callable[[Operand], Operand]) -> Cond:
    if isinstance(cond, Compare):
        return Compare(cond.op, fn(cond.left), fn(cond.right))
    if isinstance(cond, Member):
        return Member(fn(cond.value), tuple(fn(v) for v in cond.values), cond.negated)
    if isinstance(cond, BoolOp):
        return BoolOp(cond.op, tuple(_map(i, fn) for i in cond.items))
    return Not(_map(cond.item, fn))


def operands(cond: Cond) -> Iterator[Operand]:
    if isinstance(cond, Compare):
        yield cond.left
        yield cond.right
    elif isinstance(cond, Member):
        yield cond.value
        yield from cond.values
    elif isinstance(cond, BoolOp):
        for item in cond.items:
            yield from operands(item)
    else:
        yield from operands(cond.item)


def to_text(cond: Cond, top: bool = True) -> str:
    """The canonical text of a condition (one spelling however it was written): what is shown, and
    what steps sharing a condition share."""
    if isinstance(cond, Compare):
        return f"{cond.left.text} {cond.op} {cond.right.text}"
    if isinstance(cond, Member):
        values = ", ".join(v.text for v in cond.values)
        return f"{cond.value.text} {'not in' if cond.negated else 'in'} [{values}]"
    if isinstance(cond, BoolOp):
        text = f" {cond.op} ".join(to_text(i, top=False) for i in cond.items)
        return text if top else f"({text})"
    return f"not {to_text(cond.item, top=False)}"


def to_json(cond: Cond) -> dict[str, Any]:
    if isinstance(cond, Compare):
        return {"op": cond.op, "left": cond.left.to_json(), "right": cond.right.to_json()}
    if isinstance(cond, Member):
        return {
            "op": "not in" if cond.negated else "in",
            "value": cond.value.to_json(),
            "values": [v.to_json() for v in cond.values],
        }
    if isinstance(cond, BoolOp):
        return {"op": cond.op, "items": [to_json(i) for i in cond.items]}
    return {"op": "not", "item": to_json(cond.item)}


def conjuncts(cond: Cond) -> list[Cond]:
    """The top-level ``and``'s items (a ConditionStep's list of conditions must all hold)."""
    if isinstance(cond, BoolOp) and cond.op == "and":
        return [c for item in cond.items for c in conjuncts(item)]
    return [cond]


# ------------------------------------------------------------------------------- the graph's view
@dataclass
class Condition:
    """One ``ConditionStep``: the steps that share a ``--when``, and its else branch."""

    name: str  # the ConditionStep's name
    expression: str  # canonical text
    tree: Cond  # resolved
    steps: list[str]  # the if branch, in notebook order: the --when steps and the steps that depend on them
    else_fail: Message | None = None
    fail_name: str | None = None  # the FailStep's name

    @property
    def inputs(self) -> list[str]:
        """The steps whose outputs it reads (it runs after them)."""
        found = [o.step for o in operands(self.tree) if o.kind == "output" and o.step]
        if self.else_fail is not None:
            found += [o.step for o in self.else_fail.operands() if o.kind == "output" and o.step]
        return list(dict.fromkeys(found))

    @property
    def parameters(self) -> list[str]:
        found = [o.name for o in operands(self.tree) if o.kind == "parameter"]
        if self.else_fail is not None:
            found += [o.name for o in self.else_fail.operands() if o.kind == "parameter"]
        return list(dict.fromkeys(found))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "when": self.expression,
            "condition": to_json(self.tree),
            "steps": list(self.steps),
            "inputs": self.inputs,
            "else_fail": self.else_fail.text if self.else_fail else None,
            "fail_step": self.fail_name,
        }


def definition_steps(definition: Mapping[str, Any]) -> list[tuple[dict, tuple[str, bool] | None]]:
    """Every step of a pipeline definition, with the branch it is in: ``(ConditionStep, True)`` for its
    if branch, ``False`` for its else branch, None at the top (a ConditionStep nests its steps; a ForEach
    step's body steps follow it, in its branch)."""
    found: list[tuple[dict, tuple[str, bool] | None]] = []

    def walk(steps: Any, branch: tuple[str, bool] | None) -> None:
        for raw in steps or []:
            if not isinstance(raw, dict):
                continue
            found.append((raw, branch))
            if raw.get("Type") == "Condition":
                arguments = raw.get("Arguments") or {}
                walk(arguments.get("IfSteps"), (str(raw.get("Name")), True))
                walk(arguments.get("ElseSteps"), (str(raw.get("Name")), False))
            elif raw.get("Type") == "ForEach":  # its body steps, in the ForEach's own branch
                walk((raw.get("Arguments") or {}).get("ForEachBody"), branch)

    walk(definition.get("Steps"), None)
    return found
