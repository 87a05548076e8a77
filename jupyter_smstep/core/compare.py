"""Is the pipeline's value the kernel's? One verdict per value, with where it differs.

Used by ``smstep verify`` (:mod:`jupyter_smstep.verify`). Pure: numpy and pandas are
reached through the values themselves (``sys.modules``), never imported here.

How values compare (floats within ``rtol``/``atol``, as ``numpy.isclose``; NaN equals NaN):

- numbers: ``math.isclose``; strings, booleans, ``None``: ``==``;
- numpy arrays: shape and dtype, then element by element; a difference gives the
  first differing index, both values there, and the largest absolute difference;
- pandas frames and series: shape, columns, index, then column by column as arrays;
  a difference gives the first differing (row, column), both values, and the largest
  absolute difference;
- lists, tuples, dicts, sets: length or keys, then item by item (the path to the first
  difference, e.g. ``['scores'][2]``);
- fitted models (objects with ``get_params``, as scikit-learn's): their parameters,
  then every fitted attribute (a public attribute whose name ends with ``_``), each by
  these rules: two models fitted alike on the same data are equal;
- anything else: ``==`` when it gives a boolean, else the two pickles' bytes; when
  neither can decide, *not comparable*, with why.
"""

from __future__ import annotations

import math
import pickle
import sys
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["equal", "differs", "not comparable"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    detail: str = ""  # where and how it differs, or why it cannot be compared

    def to_json(self) -> dict[str, str]:
        return {"verdict": self.kind, **({"detail": self.detail} if self.detail else {})}


EQUAL = Verdict("equal")


#: The tolerances a float comparison uses unless told: `verify`'s --rtol and --atol, and the panel's Verify.
RTOL, ATOL = 1e-9, 0.0


def compare(
    kernel: Any, pipeline: Any, rtol: float = RTOL, atol: float = ATOL, path: str = "", depth: int = 0
) -> Verdict:
    """The kernel's value against the pipeline's (see the module docstring)."""
    if depth > 50:
        return Verdict("not comparable", f"{path or 'the value'} nests deeper than 50 levels")
    if _is_frame(kernel) or _is_frame(pipeline):
        return _frames(kernel, pipeline, rtol, atol, path)
    if _is_array(kernel) or _is_array(pipeline):
        return _arrays(kernel, pipeline, rtol, atol, path)
    if isinstance(kernel, bool) or isinstance(pipeline, bool) or kernel is None or pipeline is None:
        return EQUAL if kernel is pipeline or kernel == pipeline else _scalar(kernel, pipeline, path)
    if _is_number(kernel) and _is_number(pipeline):
        a, b = complex(kernel), complex(pipeline)
        if (a == b) or _close(a.real, b.real, rtol, atol) and _close(a.imag, b.imag, rtol, atol):
            return EQUAL
        return _scalar(kernel, pipeline, path)
    if type(kernel) is not type(pipeline):
        return Verdict(
            "differs",
            f"{path or 'the value'} is a {type(kernel).__name__} in the kernel and a "
            f"{type(pipeline).__name__} in the pipeline",
        )
    if isinstance(kernel, (str, bytes)):
        return EQUAL if kernel == pipeline else _scalar(kernel, pipeline, path)
    if isinstance(kernel, dict):
        if set(kernel) != set(pipeline):
            only = sorted(map(repr, set(kernel) ^ set(pipeline)))[:5]
            return Verdict("differs", f"{path or 'the dict'} has other keys: {', '.join(only)}")
        for key in kernel:
            verdict = compare(kernel[key], pipeline[key], rtol, atol, f"{path}[{key!r}]", depth + 1)
            if verdict.kind != "equal":
                return verdict
        return EQUAL
    if isinstance(kernel, (list, tuple)):
        if len(kernel) != len(pipeline):
            return Verdict(
                "differs",
                f"{path or 'the sequence'} has {len(kernel)} items in the kernel and {len(pipeline)} in the pipeline",
            )
        for i, (a, b) in enumerate(zip(kernel, pipeline)):
            verdict = compare(a, b, rtol, atol, f"{path}[{i}]", depth + 1)
            if verdict.kind != "equal":
                return verdict
        return EQUAL
    if isinstance(kernel, (set, frozenset)):
        return (
            EQUAL
            if kernel == pipeline
            else Verdict("differs", f"{path or 'the set'}: {len(kernel ^ pipeline)} item(s) differ")
        )
    if callable(getattr(kernel, "get_params", None)):
        return _models(kernel, pipeline, rtol, atol, path, depth)
    return _other(kernel, pipeline, path, depth)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def _is_number(value: Any) -> bool:
    try:
        complex(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes)) and not _is_array(value)


def _scalar(kernel: Any, pipeline: Any, path: str) -> Verdict:
    return Verdict("differs", f"{path + ': ' if path else ''}kernel {_short(kernel)}, pipeline {_short(pipeline)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_array(value: Any) -> bool:
    return (
        type(value).__module__ == "numpy"
        and hasattr(value, "shape")
        and hasattr(value, "dtype")
        or (type(value).__name__ == "ndarray")
    )


def _is_frame(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("pandas") and type(value).__name__ in ("DataFrame", "Series")


def _arrays(kernel: Any, pipeline: Any, rtol: float, atol: float, path: str) -> Verdict:
    where = path or "the array"
    if not (_is_array(kernel) and _is_array(pipeline)):
        return Verdict(
            "differs",
            f"{where} is a {type(kernel).__name__} in the kernel and a {type(pipeline).__name__} in the pipeline",
        )
    if kernel.shape != pipeline.shape:
        return Verdict("differs", f"{where}: shape {kernel.shape} in the kernel, {pipeline.shape} in the pipeline")
    if str(kernel.dtype) != str(pipeline.dtype):
        return Verdict("differs", f"{where}: dtype {kernel.dtype} in the kernel, {pipeline.dtype} in the pipeline")
    np = sys.modules["numpy"]
    if kernel.dtype.kind in "fc":
        same = np.isclose(kernel, pipeline, rtol=rtol, atol=atol, equal_nan=True)
    else:
        same = kernel == pipeline
    same = np.asarray(same)
    if bool(same.all()):
        return EQUAL
    index = tuple(int(i) for i in np.argwhere(~same)[0])
    if not kernel.shape:  # a numpy scalar
        return _scalar(kernel.item(), pipeline.item(), path)
    detail = (
        f"{where}: first differs at {list(index)}: kernel {_short(kernel[index].item())}, "
        f"pipeline {_short(pipeline[index].item())}"
    )
    if kernel.dtype.kind in "iufc":
        largest = float(
            np.nanmax(np.abs(kernel.astype("complex128" if kernel.dtype.kind == "c" else "float64") - pipeline))
        )
        detail += f"; largest absolute difference {largest:.6g}"
    return Verdict("differs", detail)


def _frames(kernel: Any, pipeline: Any, rtol: float, atol: float, path: str) -> Verdict:
    where = path or f"the {type(kernel).__name__}"
    if type(kernel) is not type(pipeline):
        return Verdict(
            "differs",
            f"{where} is a {type(kernel).__name__} in the kernel and a {type(pipeline).__name__} in the pipeline",
        )
    if kernel.shape != pipeline.shape:
        return Verdict("differs", f"{where}: shape {kernel.shape} in the kernel, {pipeline.shape} in the pipeline")
    if not kernel.index.equals(pipeline.index):
        return Verdict("differs", f"{where}: the index differs")
    if type(kernel).__name__ == "Series":
        kernel, pipeline = kernel.to_frame(), pipeline.to_frame()
    if list(kernel.columns) != list(pipeline.columns):
        return Verdict(
            "differs",
            f"{where}: columns {list(kernel.columns)[:10]} in the kernel, "
            f"{list(pipeline.columns)[:10]} in the pipeline",
        )
    for column in kernel.columns:
        a, b = kernel[column], pipeline[column]
        if str(a.dtype) != str(b.dtype):
            return Verdict("differs", f"{where}[{column!r}]: dtype {a.dtype} in the kernel, {b.dtype} in the pipeline")
        verdict = (
            _arrays(a.to_numpy(), b.to_numpy(), rtol, atol, f"{where}[{column!r}]")
            if a.dtype.kind in "iufcb"
            else _objects(a.tolist(), b.tolist(), f"{where}[{column!r}]")
        )
        if verdict.kind != "equal":
            return verdict
    return EQUAL


def _objects(kernel: list, pipeline: list, where: str) -> Verdict:
    for i, (a, b) in enumerate(zip(kernel, pipeline)):
        if not (a == b or (a != a and b != b)):  # NaN in an object column equals NaN
            return Verdict("differs", f"{where}: first differs at row {i}: kernel {_short(a)}, pipeline {_short(b)}")
    return EQUAL


def _models(kernel: Any, pipeline: Any, rtol: float, atol: float, path: str, depth: int) -> Verdict:
    where = path or type(kernel).__name__
    try:
        params = compare(kernel.get_params(), pipeline.get_params(), rtol, atol, f"{where}.get_params()", depth + 1)
    except Exception as exc:  # noqa: BLE001 - a model whose parameters cannot be read
        return Verdict("not comparable", f"{where}.get_params() failed: {type(exc).__name__}")
    if params.kind != "equal":
        return params
    fitted = sorted(k for k in vars(kernel) if k.endswith("_") and not k.startswith("_"))
    if sorted(k for k in vars(pipeline) if k.endswith("_") and not k.startswith("_")) != fitted:
        return Verdict("differs", f"{where}: fitted in one and not the other (its attributes ending in _ differ)")
    for name in fitted:
        verdict = compare(getattr(kernel, name), getattr(pipeline, name), rtol, atol, f"{where}.{name}", depth + 1)
        if verdict.kind != "equal":
            return verdict
    return EQUAL


def _states(kernel: Any, pipeline: Any, where: str, depth: int) -> Verdict | None:
    """The two objects as pickle rebuilds them (their class, arguments and state), compared by these rules;
    None when they cannot be reduced."""
    try:
        a, b = kernel.__reduce_ex__(5), pipeline.__reduce_ex__(5)
    except Exception:  # noqa: BLE001
        return None
    if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) >= 2 and len(b) >= 2):
        return None
    if getattr(a[0], "__qualname__", a[0]) != getattr(b[0], "__qualname__", b[0]):
        return Verdict("differs", f"{where}: rebuilt by {a[0]!r} in the kernel, {b[0]!r} in the pipeline")
    for i, label in ((1, "arguments"), (2, "state")):
        if max(len(a), len(b)) > i:
            verdict = compare(
                a[i] if len(a) > i else None, b[i] if len(b) > i else None, path=f"{where}<{label}>", depth=depth + 1
            )
            if verdict.kind != "equal":
                return verdict
    return EQUAL


def _other(kernel: Any, pipeline: Any, path: str, depth: int = 0) -> Verdict:
    where = path or f"the {type(kernel).__name__}"
    if type(kernel).__eq__ is object.__eq__ and hasattr(kernel, "__dict__"):  # no == of its own: its attributes
        return compare(vars(kernel), vars(pipeline), path=f"{where}.__dict__", depth=depth + 1)
    try:
        same = kernel == pipeline
    except Exception:  # noqa: BLE001 - an == that raises: try the pickles
        same = None
    if same is True:
        return EQUAL
    state = _states(kernel, pipeline, where, depth)  # an extension type (a fitted tree) compares by identity
    if state is not None:
        return state
    if same is False:
        return Verdict("differs", f"{where}: == says they differ ({_short(kernel)} against {_short(pipeline)})")
    try:
        if pickle.dumps(kernel, protocol=5) == pickle.dumps(pipeline, protocol=5):
            return EQUAL
    except Exception:  # noqa: BLE001
        return Verdict(
            "not comparable",
            f"{where}: a {type(kernel).__name__} with no == that gives a boolean, and it cannot be pickled",
        )
    return Verdict(
        "not comparable",
        f"{where}: a {type(kernel).__name__} with no == that gives a boolean, and "
        "its pickles differ (which may be only their layout)",
    )
