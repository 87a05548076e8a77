"""Has a value changed? Size-capped content fingerprints.

The static rules (:mod:`jupyter_smstep.core.analysis`) see mutation in the cell's
syntax and through the notebook's own functions; a library call they do not know
(``some_lib.normalize_(arr)``) is invisible to them. When a ``%%step`` cell runs
in the kernel, each input it reads is fingerprinted before and after: an input
whose fingerprint changed was changed in place, and becomes an output.

What is hashed, so that a fingerprint costs milliseconds and never a copy of the data:

- numpy arrays (anything with ``tobytes``, ``shape`` and ``dtype``): shape, dtype
  and the bytes of the whole buffer up to :data:`CAP` bytes; a larger array
  hashes the first, middle and last ``CAP / 3`` bytes (a change elsewhere in it
  is missed: said in the docs, and ``--outputs`` covers it);
- pandas DataFrames and Series: shape, columns, dtypes and
  ``pandas.util.hash_pandas_object`` of the rows, all of them up to
  :data:`MAX_ROWS`, else the first, middle and last ``MAX_ROWS / 3``;
- anything else that pickles into at most :data:`CAP` bytes: those bytes;
- what cannot be pickled, or is larger: no fingerprint (not compared).

Modules, functions and classes are never inputs that change this way, and are skipped.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

CAP = 64 * 1024 * 1024  # bytes hashed per value at most
MAX_ROWS = 1_000_000  # frame rows hashed at most


def fingerprint(value: Any) -> str | None:
    """A content hash of ``value`` (bounded work), or None when it cannot be taken."""
    if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
        return None
    digest = hashlib.blake2b(digest_size=16)
    try:
        if _is_frame(value):
            _hash_frame(value, digest)
        elif hasattr(value, "tobytes") and hasattr(value, "shape") and hasattr(value, "dtype"):
            _hash_array(value, digest)
        else:
            data = pickle.dumps(value, protocol=5)
            if len(data) > CAP:
                return None
            digest.update(data)
    except Exception:  # noqa: BLE001 - what cannot be fingerprinted is simply not compared
        return None
    return digest.hexdigest()


def fingerprints(names: Iterable[str], namespace: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name in names:
        if name in namespace:
            fp = fingerprint(namespace[name])
            if fp is not None:
                out[name] = fp
    return out


def changed(before: Mapping[str, str], namespace: Mapping[str, Any]) -> list[str]:
    """The names whose value changed in place since ``before`` (a re-bound name counts too)."""
    return [name for name, fp in before.items() if name in namespace and fingerprint(namespace[name]) != fp]


def _is_frame(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("pandas") and type(value).__name__ in ("DataFrame", "Series")


def _hash_frame(frame: Any, digest: Any) -> None:
    # pandas is loaded: ``frame`` is one of its objects (taken from sys.modules, so core imports no pandas)
    hash_pandas_object = sys.modules["pandas"].util.hash_pandas_object
    digest.update(repr((frame.shape, getattr(frame, "columns", None), getattr(frame, "dtypes", None))).encode())
    rows = len(frame)
    if rows > MAX_ROWS:
        third = MAX_ROWS // 3
        parts = [frame.iloc[:third], frame.iloc[rows // 2 - third // 2 : rows // 2 + third // 2], frame.iloc[-third:]]
    else:
        parts = [frame]
    for part in parts:
        digest.update(hash_pandas_object(part, index=True).values.tobytes())


def _hash_array(array: Any, digest: Any) -> None:
    digest.update(repr((array.shape, str(array.dtype))).encode())
    size = int(getattr(array, "nbytes", 0) or 0)
    if size <= CAP:
        digest.update(array.tobytes())
        return
    flat = array.reshape(-1) if getattr(array, "flags", None) is not None and array.flags.c_contiguous else None
    if flat is None:
        digest.update(array.tobytes()[:CAP])  # a non-contiguous view: copy once, hash the cap
        return
    per = max(1, (CAP // 3) // max(1, array.itemsize))
    n = flat.shape[0]
    for start in (0, n // 2 - per // 2, n - per):
        digest.update(flat[max(0, start) : max(0, start) + per].tobytes())
