"""The ``%%step`` / ``%pipeline config`` options, built from :data:`core.settings.OPTIONS`.

:func:`add_option_arguments` puts every ``@step`` option on an argparse parser
(see :mod:`.commands`); :func:`convert` turns the raw strings into the SDK's
types with errors that say which option was wrong and how to write it.
No sagemaker import.
"""

from __future__ import annotations

import argparse
import difflib
import json
from typing import Any
from collections.abc import Collection

from jupyter_smstep.core.parameters import parse_bool
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.core.settings import (
    ALIASES,
    DURATION,
    OPTIONS,
    PARAMETER_OPTIONS,
    RETRY_TYPES,
    Option,
    ParameterRef,
)


def add_option_arguments(parser: argparse.ArgumentParser, per_step: bool) -> None:
    """An argument for every SDK option (plus the short aliases) on ``parser``."""
    aliases = {v: k for k, v in ALIASES.items()}
    for opt in OPTIONS:
        if opt.per_step and not per_step:
            continue
        # the short alias first (--env, --tag, --retry): it is what the usage line shows
        alias = [f"--{aliases[opt.key]}"] if opt.key in aliases else []
        flags = alias + [opt.flag] if aliases.get(opt.key) in ("env", "tag", "retry") else [opt.flag] + alias
        kw: dict[str, Any]
        if opt.kind == "bool":
            kw = dict(nargs="?", const="true", metavar="true|false")
        elif opt.kind in ("list", "kv", "retry"):
            kw = dict(action="append", metavar={"kv": "KEY=VALUE", "retry": "POLICY"}.get(opt.kind, "VALUE"))
        elif opt.kind == "duration":
            kw = dict(metavar="DURATION")
        else:
            kw = dict(metavar=opt.kind.upper() if opt.kind != "str" else "VALUE")
        parser.add_argument(*flags, dest=opt.key, default=None, help=opt.help, **kw)


def convert(args: Any, where: str, parameters: Collection[str] = ()) -> dict[str, Any]:
    """Parsed namespace -> SDK keyword values (only the options given). A number or flag option may name
    one of the declared ``parameters`` instead (the graph binds it)."""
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.key, None)
        if raw is None:
            continue
        out[opt.key] = _convert_one(opt, raw, where, parameters)
    return out


def _convert_one(opt: Option, raw: Any, where: str, parameters: Collection[str] = ()) -> Any:
    if opt.key in PARAMETER_OPTIONS and opt.kind in ("int", "bool") and raw in parameters:
        return ParameterRef(raw)  # a pipeline parameter's name: the graph binds it and checks its type

    def bad(expected: str, fix: str) -> SmstepError:
        return SmstepError(f"{where}: {opt.flag} {raw!r} is not {expected}", fix=fix)

    if opt.kind == "int":
        try:
            return int(raw)
        except ValueError:
            named = " or a declared pipeline parameter" if opt.key in PARAMETER_OPTIONS else ""
            close = difflib.get_close_matches(str(raw), list(parameters), n=1) if named else []
            raise bad(
                f"an integer{named}",
                f"did you mean {close[0]}?"
                if close
                else f"write e.g. {opt.flag} 3"
                + (
                    f", or declare {raw} first with %pipeline param {raw}=3"
                    if named and str(raw).isidentifier()
                    else ""
                ),
            ) from None
    if opt.kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise bad("a number", f"write e.g. {opt.flag} 0.5") from None
    if opt.kind == "bool":
        value = parse_bool(raw)
        if value is None:
            named = " or a declared pipeline parameter" if opt.key in PARAMETER_OPTIONS else ""
            raise bad(f"true or false{named}", f"write {opt.flag} or {opt.flag} false")
        return value
    if opt.kind == "list":
        split = opt.key in ("subnets", "security_group_ids")  # --subnet a,b or --subnet a --subnet b
        return [item for chunk in raw for item in (chunk.split(",") if split else [chunk])]
    if opt.kind == "kv":
        pairs = {}
        for item in raw:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SmstepError(f"{where}: {opt.flag} {item!r} is not KEY=VALUE", fix=f"write {opt.flag} KEY=VALUE")
            pairs[key] = value
        return pairs
    if opt.kind == "json":
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise bad("JSON", f'write {opt.flag} \'{{"submit_py_files": ["s3://..."]}}\' ({exc})') from None
        if not isinstance(value, dict):
            raise bad("a JSON object", f"write {opt.flag} '{{...}}'")
        return value
    if opt.kind == "retry":
        return [parse_retry(item, where) for item in raw]
    if opt.kind == "duration":
        if not DURATION.match(raw.strip().upper()):
            raise bad(
                "an ISO 8601 duration",
                f"write e.g. {opt.flag} P30D (30 days), {opt.flag} PT12H (12 hours) or {opt.flag} P1DT6H",
            )
        return raw.strip().upper()
    return raw


def parse_retry(text: str, where: str) -> dict[str, Any]:
    """``EXC[,EXC]:MAX_ATTEMPTS[:INTERVAL[:BACKOFF]]`` -> a retry policy spec."""
    parts = text.split(":")
    types = [t.strip() for t in parts[0].split(",") if t.strip()]
    fix = "write --retry SageMaker.CAPACITY_ERROR:3 or --retry Step.THROTTLING,Step.SERVICE_FAULT:5:2:2.0"
    unknown = [t for t in types if t not in RETRY_TYPES]
    if not types or unknown:
        choices = ", ".join(sorted(RETRY_TYPES))
        raise SmstepError(
            f"{where}: --retry {text!r}: unknown exception type {', '.join(unknown) or '(none)'}; known: {choices}",
            fix=fix,
        )
    if {t.split(".")[0] for t in types} == {"Step", "SageMaker"}:
        raise SmstepError(
            f"{where}: --retry {text!r} mixes Step.* and SageMaker.* types", fix="use one --retry for each family"
        )
    if len(parts) > 4:
        raise SmstepError(
            f"{where}: --retry {text!r} has {len(parts) - 1} fields after the types; it takes "
            "MAX_ATTEMPTS[:INTERVAL_S[:BACKOFF]]",
            fix=fix,
        )
    spec: dict[str, Any] = {"exception_types": types}
    fields = (
        ("max_attempts", int, 1, "a whole number of attempts, at least 1"),
        ("interval_seconds", int, 1, "a whole number of seconds, at least 1"),
        ("backoff_rate", float, 1.0, "a number, at least 1.0"),
    )
    for (key, cast, least, what), raw in zip(fields, parts[1:4]):
        try:
            number = float(raw)
        except ValueError:
            raise SmstepError(f"{where}: --retry {text!r}: {key} {raw!r} is not {what}", fix=fix) from None
        if (cast is int and not number.is_integer()) or number < least:
            raise SmstepError(f"{where}: --retry {text!r}: {key} {raw!r} is not {what}", fix=fix)
        spec[key] = cast(number)
    return spec
