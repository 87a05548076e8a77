"""A ``@step`` job's return value, read back by the SDK's own deserialisation (v2 and v3 alike): the
``metadata.json`` beside the pickle holds its SHA-256, which the SDK checks before unpickling."""

from __future__ import annotations

import importlib
from typing import Any

from jupyter_smstep.sdk.compat import load as load_sdk


def load(session: Any, uri: str) -> Any:
    """The object the SDK serialised under ``uri`` (a results folder: ``payload.pkl`` and ``metadata.json``)."""
    serialization = importlib.import_module(f"{load_sdk().remote_function.__name__}.core.serialization")
    return serialization.deserialize_obj_from_s3(sagemaker_session=session, s3_uri=uri.rstrip("/"))
