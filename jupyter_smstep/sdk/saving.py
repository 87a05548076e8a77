"""``--save NAME=S3URI``: what a step runs at its end to write NAME's value to S3.

This file is not imported in the step's container: its source is compiled into each
saving step's globals (the build) and written into the exported module, so the
step ships it by value and the container needs nothing but boto3 (which the SDK
brings) and the libraries the chosen format needs. It must stay self-contained:
the standard library at the top, everything else imported inside the function.

Formats, by the URI's suffix: ``.parquet`` (pandas or polars DataFrame), ``.csv``
(DataFrame; a pandas index that holds data, as a ``groupby``'s keys, is written as
columns), ``.json`` (JSON-serialisable: no NaN or Infinity, which JSON has not, and no
two keys of one dict that JSON would make one, as ``1`` and ``'1'``), ``.npy`` (numpy
array of plain values), ``.joblib`` / ``.pkl`` (anything picklable), ``.txt`` (str).
Without a suffix (``--save NAME`` under ``--save-root``), the value's type picks one and
it is appended. A value the suffix cannot hold is a ``TypeError`` naming ``--save``, the
name, what it is, why and the fix, at the end of the step: nothing is written then.
"""

import io
import json
import os
import pickle
from typing import Any

#: what the step passes for a name it did not assign (core.codegen.UNASSIGNED: the same text)
_UNASSIGNED = "<jupyter_smstep: not assigned>"


def _json_problem(value: Any, path: str = "", depth: int = 0) -> str | None:
    """Why ``value`` is not JSON as written (a NaN or Infinity; two keys JSON would make one), or None."""
    if depth > 100:
        return f"it nests deeper than 100 levels at {path or 'the top'}"
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return f"{path or 'the value'} is {value}, which JSON has not"
    if isinstance(value, dict):
        seen: dict[str, Any] = {}
        for key in value:
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"a key at {path or 'the top'} is a {type(key).__name__}"
            text = json.dumps(key) if not isinstance(key, str) else key
            text = text.strip('"')
            if text in seen:
                return f"the keys {seen[text]!r} and {key!r} at {path or 'the top'} are the same in JSON"
            seen[text] = key
            found = _json_problem(value[key], f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _json_problem(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (str, int, bool)) or value is None or isinstance(value, float):
        return None
    return f"{path or 'the value'} is a {type(value).__name__}"


def _smstep_save(  # noqa: C901 - one dispatch over the formats
    name: str, value: Any, uri: str, suffix: str | None, execution_id: str | None = None
) -> str:
    """Write ``value`` to ``uri`` (``{execution_id}`` filled in) as ``suffix``; returns the URI written."""
    if isinstance(value, str) and value == _UNASSIGNED:
        raise NameError(
            f"--save {name}: the cell did not assign {name!r} on the path it took, so there is nothing "
            f"to save (fix: assign {name} on every path, e.g. {name} = None before the if, or drop "
            f"--save {name})"
        )
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    is_frame = hasattr(value, "to_parquet") or hasattr(value, "write_parquet")
    if suffix is None:
        if is_frame:
            suffix = "parquet"
        elif type(value).__module__ == "numpy" and hasattr(value, "shape"):
            suffix = "npy"
        elif isinstance(value, str):
            suffix = "txt"
        else:
            suffix = "json" if _json_problem(value) is None else "pkl"
        uri = f"{uri}.{suffix}"
    if execution_id is not None:
        uri = uri.replace("{execution_id}", str(execution_id))

    def unfit(needs: str) -> TypeError:
        return TypeError(
            f"--save {name}: {name} is a {kind}, which .{suffix} cannot hold ({needs}); choose another suffix for {uri}"
        )

    buffer = io.BytesIO()
    if suffix == "parquet":
        if hasattr(value, "to_parquet"):
            value.to_parquet(buffer)
        elif hasattr(value, "write_parquet"):
            value.write_parquet(buffer)
        else:
            raise unfit("a pandas or polars DataFrame")
    elif suffix == "csv":
        if hasattr(value, "to_csv"):
            if "pandas" in kind:  # a default 0..n-1 index is row numbers; any other holds data (a groupby's keys)
                index = value.index
                plain = (
                    type(index).__name__ == "RangeIndex" and index.name is None and index.start == 0 and index.step == 1
                )
                buffer.write(value.to_csv(index=not plain).encode())
            else:
                buffer.write(value.to_csv().encode())
        elif hasattr(value, "write_csv"):
            value.write_csv(buffer)
        else:
            raise unfit("a DataFrame")
    elif suffix == "json":
        problem = _json_problem(value)
        if problem is not None:
            raise unfit(f"JSON: numbers, strings, lists, dicts; {problem}")
        buffer.write(json.dumps(value, allow_nan=False).encode())
    elif suffix == "npy":
        if type(value).__module__ != "numpy" or not hasattr(value, "shape"):
            raise unfit("a numpy array")
        import numpy

        try:
            numpy.save(buffer, value, allow_pickle=False)
        except ValueError as exc:  # an object array
            raise unfit(f"an array of plain values, not objects ({exc}); .pkl or .joblib hold any") from None
    elif suffix in ("joblib", "pkl"):
        try:
            if suffix == "joblib":
                import joblib

                joblib.dump(value, buffer)
            else:
                pickle.dump(value, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - a lambda, a lock, an open file: not picklable
            raise unfit(f"something picklable; {type(exc).__name__}: {exc}; save what it is made of") from None
    elif suffix == "txt":
        if not isinstance(value, str):
            raise unfit("a str")
        buffer.write(value.encode())
    else:
        raise TypeError(f"--save {name}: unknown format .{suffix}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    import boto3

    client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return uri
