"""Pipeline parameters: ``NAME=VALUE`` parsing, the one coercion, the unknown-name check.

Every place a parameter value arrives as text (``-p NAME=VALUE`` on
``%pipeline run|submit`` and ``smstep run|submit``, the panel's fields, the
local runner reading a definition's ``Parameters``) goes through
:func:`coerce`, so ``-p flag=ture`` is the same error everywhere instead of
``False`` in one place and an exception in another. A parameter's type is the
type of its default (``str``, ``int``, ``float`` or ``bool``), which is also
the SDK class it becomes (``ParameterString`` / ``Integer`` / ``Float`` /
``Boolean``).
"""

from __future__ import annotations

import ast
import difflib
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.errors import Problem, SmstepError

TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")
#: The definition's ``Type`` for each Python type of default.
DEFINITION_TYPES: dict[type, str] = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}
_FROM_DEFINITION = {v: k for k, v in DEFINITION_TYPES.items()}


def parse_assignments(items: list[str], what: str = "parameter") -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a value is a Python literal when it parses as one, else the text."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SmstepError(
                f"{what} {item!r} is not NAME=VALUE", fix="write it like epochs=10 or uri=s3://bucket/key"
            )
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out[name] = value
    return out


def parse_bool(value: Any) -> bool | None:
    """``True``/``False`` for a bool or one of ``true/false/1/0/yes/no`` (any case), else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in TRUE else False if text in FALSE else None


def coerce(name: str, kind: type, value: Any) -> Any:
    """``value`` as a ``kind`` parameter value, strictly; raises :class:`SmstepError` naming the parameter."""

    def refuse(expected: str, example: str) -> SmstepError:
        return SmstepError(f"parameter {name!r} is {expected}; {value!r} is not", fix=f"pass e.g. -p {name}={example}")

    if kind is bool:
        parsed = parse_bool(value)
        if parsed is None:
            raise refuse("a bool (true/false, 1/0 or yes/no, any case)", "true")
        return parsed
    if kind is int:
        if isinstance(value, bool):
            raise refuse("an integer", "3")
        if isinstance(value, float):
            if not value.is_integer():
                raise refuse("an integer", "3")
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise refuse("an integer", "3") from None
    if kind is float:
        if isinstance(value, bool):
            raise refuse("a number", "0.5")
        try:
            return float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
        except ValueError:
            raise refuse("a number", "0.5") from None
    return value if isinstance(value, str) else str(value)


def kind_of(default: Any) -> type:
    """The parameter type a default value declares (a non-plain default counts as ``str``)."""
    return type(default) if type(default) in DEFINITION_TYPES else str


def kind_from_definition(type_name: str) -> type:
    """The Python type for a definition's ``Parameters[].Type``."""
    return _FROM_DEFINITION.get(type_name, str)


def unknown(overrides: Mapping[str, Any], declared: Mapping[str, Any]) -> list[Problem]:
    """A problem for every override that names no declared parameter, with "did you mean"."""
    problems = []
    for name in overrides:
        if name in declared:
            continue
        close = difflib.get_close_matches(name, list(declared), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = ", ".join(declared) or "none"
        problems.append(
            Problem(
                f"unknown parameter {name!r} (the pipeline's parameters: {known})",
                fix=f"{hint}declare it with %pipeline param NAME=VALUE or in a cell tagged 'parameters'",
            )
        )
    return problems


def coerce_overrides(declared: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides checked against the declared parameters (name -> default) and coerced to their types."""
    problems = unknown(overrides, declared)
    out: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in declared:
            continue
        try:
            out[name] = coerce(name, kind_of(declared[name]), value)
        except SmstepError as exc:
            problems += exc.problems
    if problems:
        raise SmstepError(problems)
    return out
