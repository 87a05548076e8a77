"""Captured values: can they travel, how big are they, and what failed when the SDK could not pickle.

A value a step reads from the kernel (a constant, a helper, a fitted model) is
shipped by value inside the step's code upload, pickled with the SDK's own
``cloudpickle``. This module is the one place that checks it:

- :class:`Captures` pickles each captured value once (cached by identity and
  type, so a panel refresh or a second ``smstep graph`` costs nothing) and
  reports, per step, what cannot be pickled (an error: the build would fail
  inside the SDK) and what is large (a warning: it is uploaded with the code
  on every build);
- :func:`explain_serialization_error` turns the SDK's ``SerializationError``,
  raised deep inside ``@step``, into the step and the names that cannot be
  pickled.

The cache keys on ``id(value)``: a value mutated in place keeps its measured
size until the next :meth:`Captures.clear` (the panel's Validate button).
``cloudpickle`` is imported on first use; it comes with the SDK, and importing
it does not import sagemaker.
"""

from __future__ import annotations

import io
import re
import types
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.code import by_value, global_names
from jupyter_smstep.core.model import values_at

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.core.plain import CREDENTIAL_TYPES, match_type
from jupyter_smstep.core.secrets import SECRET_NAME
from jupyter_smstep.errors import Problem, SmstepError

#: A captured value over this many pickled bytes gets a warning.
LARGE_CAPTURE_BYTES = 10 * 1024 * 1024


def pickled_size(value: Any) -> tuple[int | None, str]:
    """``(bytes, "")``, or ``(None, why)`` when the value cannot be pickled."""
    size, why, _ = _pickle(value)
    return size, why


_SECRET_BYTES = re.compile(
    rb"\b(AKIA|ASIA)[A-Z0-9]{16}\b|AWS_SECRET_ACCESS_KEY|aws_secret_access_key|"
    rb"AWS_SESSION_TOKEN|\b[Bb]earer [A-Za-z0-9\-._~+/]{16,}=*"
)


def _is_text(value: Any) -> bool:
    """A value a secret could be: non-empty text (a number, a flag, a tokenizer object is not)."""
    return isinstance(value, (str, bytes)) and len(value.strip()) > 0


def carried_secrets(value: Any, limit: int = 2000) -> list[str]:
    """Where pickling ``value`` would carry text under a secret-looking name, as paths from the value: a
    function's global (``headers → API_TOKEN``), a closure's variable (``login → password (closed over)``), a
    dict's key (``['GITHUB_TOKEN']``) or an attribute (``.api_key``). Names only: never the secret itself."""
    found: list[str] = []
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if id(obj) in seen or depth > 6 or len(seen) > limit:
            return
        seen.add(id(obj))
        named: list[tuple[str, str, Any]] = []  # (name, how it is reached, value)
        if isinstance(obj, types.FunctionType):
            if not by_value(obj):
                return
            named += [
                (n, f" → {n}", obj.__globals__[n]) for n in sorted(global_names(obj.__code__)) if n in obj.__globals__
            ]
            for n, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
                try:
                    named.append((n, f" → {n} (closed over)", cell.cell_contents))
                except ValueError:  # an empty cell
                    continue
        elif isinstance(obj, Mapping):
            named += [(k, f"[{k!r}]", v) for k, v in list(obj.items())[:limit] if isinstance(k, str)]
        elif isinstance(obj, (list, tuple)):
            named += [("", f"[{i}]", v) for i, v in enumerate(obj[:limit])]
        elif isinstance(getattr(obj, "__dict__", None), dict) and not isinstance(obj, (type, types.ModuleType)):
            named += [(k, f".{k}", v) for k, v in list(vars(obj).items())[:limit]]
        for name, step, item in named:
            if name and SECRET_NAME.search(name) and (_is_text(item) or carried_secrets(item)):
                found.append(path + step)
            elif isinstance(item, (types.FunctionType, Mapping, list, tuple)) or (
                hasattr(item, "__dict__") and type(item).__module__ == "__main__"
            ):
                visit(item, path + step, depth + 1)

    visit(value, "", 0)
    return found


def never_captured(value: Any) -> str | None:
    """Why ``value`` must not be captured into a step (credentials, a client, an open file), or None."""
    if isinstance(value, io.IOBase):  # cloudpickle ships a file opened for reading with its content
        return "an open file (it would be shipped with its content)"
    found = match_type(value, CREDENTIAL_TYPES)
    return found[1] if found else None


def _pickle(value: Any) -> tuple[int | None, str, bool]:
    """(pickled bytes, why not, whether the bytes look like they hold an AWS secret)."""
    import cloudpickle

    try:
        data = cloudpickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
        return None, f"{type(exc).__name__}: {exc}", False
    return len(data), "", bool(_SECRET_BYTES.search(data))


def unpicklable_problem(step: str, name: str, type_name: str, why: str, line: int | None) -> Problem:
    return Problem(
        f"captures {name!r} ({type_name}) from the kernel, but it cannot be pickled ({why})",
        fix=f"create {name!r} inside the step (open files, clients, locks and sockets do not "
        "travel), or pass what it is made from",
        step=step,
        line=line,
    )


def large_problem(step: str, name: str, size: int, line: int | None) -> Problem:
    return Problem(
        f"captures {name!r}, {size / 2**20:.1f} MiB pickled, into the step's code upload",
        fix=f"load {name!r} from S3 inside the step, or make it a step output",
        step=step,
        line=line,
        severity="warning",
    )


class Captures:
    """Pickled sizes of a graph's captured values, measured once per value."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, type], tuple[int | None, str, bool]] = {}
        self._carried: dict[tuple[int, type], list[str]] = {}  # carried_secrets, once per value too

    def clear(self) -> None:
        self._cache.clear()
        self._carried.clear()

    def _measured(self, value: Any) -> tuple[int | None, str, bool]:
        key = (id(value), type(value))
        if key not in self._cache:
            self._cache[key] = _pickle(value)
        return self._cache[key]

    def measure(self, value: Any) -> tuple[int | None, str]:
        size, why, _ = self._measured(value)
        return size, why

    def sizes(self, graph: PipelineGraph, namespace: Mapping[str, Any]) -> dict[str, dict[str, int | None]]:
        """step -> captured name -> pickled bytes (None: cannot be pickled)."""
        out: dict[str, dict[str, int | None]] = {}
        for node in graph.steps:
            values = values_at(node.cell, namespace)
            for inp in node.captured:
                if inp.name in values:
                    out.setdefault(node.name, {})[inp.name] = self.measure(values[inp.name])[0]
        return out

    def problems(self, graph: PipelineGraph, namespace: Mapping[str, Any]) -> list[Problem]:
        """An error for every value that cannot be pickled, a warning for every large one."""
        found: list[Problem] = []
        for node in graph.steps:
            values = values_at(node.cell, namespace)
            for inp in node.captured:
                if inp.name not in values:
                    continue
                value = values[inp.name]
                refused = never_captured(value)
                if refused is not None:
                    fix = (
                        "open the file inside the step (pass its path, or make the data a step output)"
                        if isinstance(value, io.IOBase)
                        else f"create {inp.name!r} inside the step: the job gets its own credentials from its "
                        "role (and reads secrets from Secrets Manager or SSM there)"
                    )
                    found.append(
                        Problem(
                            f"captures {inp.name!r}, {refused}, from the kernel into the step's code "
                            "upload, which is stored in S3",
                            fix=fix,
                            step=node.name,
                            line=inp.line + 1,
                        )
                    )
                    continue
                size, why, secret = self._measured(value)
                problem = self._secret(node.name, inp.name, inp.line + 1, value, secret)
                if problem is not None:
                    found.append(problem)
                if size is None:
                    found.append(unpicklable_problem(node.name, inp.name, inp.type_name or "object", why, inp.line + 1))
                elif size > LARGE_CAPTURE_BYTES:
                    found.append(large_problem(node.name, inp.name, size, inp.line + 1))
        return found

    def _secret(self, step: str, name: str, line: int, value: Any, secret_bytes: bool) -> Problem | None:
        """A warning when captured ``value`` holds, or carries with it, what looks like a secret."""
        key = (id(value), type(value))
        if key not in self._carried:
            self._carried[key] = carried_secrets(value)  # [] for text itself: its name is what says
        carried = self._carried[key]
        if not (secret_bytes or carried or SECRET_NAME.search(name) and _is_text(value)):
            return None
        shown = ", ".join(f"{name}{path}" for path in carried[:3]) + (" …" if len(carried) > 3 else "")
        what = (
            f"captures {name!r}, which carries what looks like a secret ({shown}),"
            if carried
            else f"captures {name!r}, which looks like it holds a secret,"
        )
        source = carried[0].split(" → ")[-1].split(" ")[0].strip("[]'.") if carried else name
        return Problem(
            f"{what} into the step's code upload (stored in S3 and readable by whoever can read the bucket)",
            step=step,
            line=line,
            severity="warning",
            fix=f"keep {source!r} out of the notebook's values: read it inside the step, where the "
            "job's role can, e.g. boto3.client('secretsmanager').get_secret_value(SecretId=NAME)"
            "['SecretString'] or boto3.client('ssm').get_parameter(Name=NAME, WithDecryption=True)",
        )


# --------------------------------------------------------------------------- SerializationError forensics
def explain_serialization_error(exc: BaseException, serialization_error: type | None) -> SmstepError | None:
    """A ``SerializationError`` raised while the SDK built a step, as the step and what cannot be pickled."""
    if serialization_error is None or not isinstance(exc, serialization_error):
        return None
    frame_locals = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and type(frame.f_locals.get("self")).__name__ == "_FunctionStep":
            frame_locals = frame.f_locals
        tb = tb.tb_next
    if frame_locals is None:
        return SmstepError(Problem(f"a step cannot be pickled: {exc}"))
    step = frame_locals.get("name")
    func = frame_locals.get("func")
    culprits = unpicklable_inputs(func, frame_locals.get("func_args") or (), frame_locals.get("func_kwargs") or {})
    if culprits:
        what = "; ".join(f"'{name}' ({kind}: {reason})" for name, kind, reason in culprits)
        message = f"cannot be sent to SageMaker: it uses {what}, which cannot be pickled"
    else:
        message = f"cannot be sent to SageMaker: {exc}"
    return SmstepError(
        Problem(
            message,
            fix="create such objects (open files, clients, locks, connections) inside the step instead of "
            "capturing them from the notebook, or pass the data they hold (a path, a name)",
            step=step,
        )
    )


def unpicklable_inputs(func: Any, args: tuple, kwargs: dict) -> list[tuple[str, str, str]]:
    """Names (globals, closure variables, arguments) whose values cannot be pickled: (name, type, why)."""
    candidates: list[tuple[str, Any]] = []
    code = getattr(func, "__code__", None)
    if code is not None:
        names = global_names(code)
        globals_ = getattr(func, "__globals__", {})
        candidates += [(n, globals_[n]) for n in sorted(names) if n in globals_]
        for n, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                candidates.append((n, cell.cell_contents))
            except ValueError:  # an empty cell
                pass
        params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        for i, value in enumerate(args):
            candidates.append((params[i] if i < len(params) else f"argument {i + 1}", value))
    candidates += list(kwargs.items())
    bad = []
    for name, value in candidates:
        if isinstance(value, types.ModuleType):
            continue
        size, why = pickled_size(value)
        if size is None:
            bad.append((name, type(value).__name__, why))
    return bad
