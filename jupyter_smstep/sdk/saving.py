"""``--save NAME=S3URI``: what a step runs at its end to write NAME's value to S3.

This file is not imported in the step's container: its source is compiled into each
saving step's globals (the build) and written into the exported module, so the
step ships it by value and the container needs nothing but boto3 (which the SDK
brings) and the libraries the chosen format needs. It must stay self-contained:
the standard library at the top, everything else imported inside the function.

Formats, by the URI's suffix: ``.parquet`` (pandas or polars DataFrame), ``.csv``
(DataFrame), ``.json`` (JSON-serialisable), ``.npy`` (numpy array), ``.joblib`` /
``.pkl`` (anything picklable), ``.txt`` (str). Without a suffix (``--save NAME`` under
``--save-root``), the value's type picks one and it is appended. A suffix the value
does not fit is a ``TypeError`` naming both, at the end of the step.
"""

import io
import json
import os
import pickle


def _smstep_save(name, value, uri, suffix, execution_id=None):  # noqa: C901 - one dispatch over the formats
    """Write ``value`` to ``uri`` (``{execution_id}`` filled in) as ``suffix``; returns the URI written."""
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
            try:
                json.dumps(value)
                suffix = "json"
            except (TypeError, ValueError):
                suffix = "pkl"
        uri = f"{uri}.{suffix}"
    if execution_id is not None:
        uri = uri.replace("{execution_id}", str(execution_id))

    def unfit(needs):
        return TypeError(f"--save {name}: {name} is a {kind}, which .{suffix} cannot hold ({needs}); "
                         f"choose another suffix for {uri}")

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
            buffer.write(value.to_csv(index=False).encode() if "pandas" in kind else value.to_csv().encode())
        elif hasattr(value, "write_csv"):
            value.write_csv(buffer)
        else:
            raise unfit("a DataFrame")
    elif suffix == "json":
        try:
            buffer.write(json.dumps(value).encode())
        except (TypeError, ValueError) as exc:
            raise unfit(f"JSON: numbers, strings, lists, dicts; {exc}") from None
    elif suffix == "npy":
        if type(value).__module__ != "numpy" or not hasattr(value, "shape"):
            raise unfit("a numpy array")
        import numpy

        numpy.save(buffer, value, allow_pickle=False)
    elif suffix == "joblib":
        import joblib

        joblib.dump(value, buffer)
    elif suffix == "pkl":
        pickle.dump(value, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    elif suffix == "txt":
        if not isinstance(value, str):
            raise unfit("a str")
        buffer.write(value.encode())
    else:
        raise TypeError(f"--save {name}: unknown format .{suffix}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    import boto3

    client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return uri
