"""``--save NAME[=S3URI]``: which step values are written to S3 at the end of the step, and where.

:func:`resolve` checks one step's ``--save`` values before anything runs: NAME must be a
variable the cell binds, the URI an ``s3://bucket/key`` whose suffix names a format
(:data:`FORMATS`) and whose placeholders are :data:`PLACEHOLDERS`; ``--save NAME``
alone needs ``%pipeline config --save-root`` and means ``<root>/<pipeline>/<step>/NAME``
with the format (and its suffix) picked from the value's type when the step ends.
``{pipeline}`` and ``{step}`` are filled in here; ``{execution_id}`` when the step runs.
The writing itself is ``sdk.saving`` (it runs in the step's container). Pure.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from jupyter_smstep.errors import BadValue

FORMATS = ("parquet", "csv", "json", "npy", "joblib", "pkl", "txt")
PLACEHOLDERS = ("execution_id", "pipeline", "step")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: What S3's bucket naming rules forbid beyond the characters (docs: "General purpose bucket naming rules")
_RESERVED_BUCKETS = (
    (lambda b: bool(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", b)), "formatted as an IP address"),
    (lambda b: b.startswith(("xn--", "sthree-", "amzn-s3-demo-")), "a prefix S3 reserves"),
    (lambda b: b.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")), "a suffix S3 reserves"),
)


class SaveError(BadValue):
    """A --save or --save-root value that cannot be used."""


@dataclass(frozen=True)
class Save:
    name: str
    uri: str  # {pipeline} and {step} filled in; {execution_id} left for the run
    format: str | None  # None: picked from the value's type at the end of the step (and appended)

    @property
    def per_execution(self) -> bool:
        return "{execution_id}" in self.uri

    def for_run(self, execution_id: str) -> str:
        return self.uri.replace("{execution_id}", execution_id)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "uri": self.uri, "format": self.format or "by type"}


def parse(text: str) -> tuple[str, str | None]:
    """``NAME=S3URI`` or ``NAME`` -> (name, uri or None)."""
    name, sep, uri = text.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise SaveError(
            f"--save {text!r}: {name!r} is not a variable name",
            fix="write --save NAME=s3://bucket/key.parquet (or --save NAME with --save-root)",
        )
    return name, (uri.strip() if sep else None)


def check_root(root: str) -> str:
    """``%pipeline config --save-root s3://bucket/prefix``."""
    _check_uri(root.rstrip("/") + "/x", f"--save-root {root!r}", root=True)
    return root.rstrip("/")


def resolve(name: str, uri: str | None, *, pipeline: str, step: str, root: str | None, bound: set[str]) -> Save:
    """One ``--save`` of step ``step``, checked; ``bound``: the variables the cell assigns."""
    if name not in bound:
        raise SaveError(
            f"--save {name}: the cell never assigns {name!r}",
            fix=f"assign {name} in the cell, or save a variable it does assign",
        )
    if uri is None:
        if root is None:
            raise SaveError(
                f"--save {name} has no S3 URI and the notebook has no save root",
                fix=f"write --save {name}=s3://bucket/prefix/{name}.parquet, or set one for every "
                "step: %pipeline config --save-root s3://bucket/prefix",
            )
        return Save(name, f"{root}/{pipeline}/{step}/{name}", None)
    what = f"--save {name}={uri}"
    _check_uri(uri, what)
    fields = [f for _, f, _, _ in string.Formatter().parse(uri) if f is not None]
    unknown = [f for f in fields if f not in PLACEHOLDERS]
    if unknown:
        raise SaveError(
            f"{what}: unknown placeholder {{{unknown[0]}}}", fix="use " + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        )
    suffix = uri.rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in uri.rsplit("/", 1)[-1] else ""
    if suffix not in FORMATS:
        raise SaveError(
            f"{what}: the suffix {('.' + suffix) if suffix else '(none)'} names no format",
            fix="end the URI with " + ", ".join("." + f for f in FORMATS),
        )
    filled = uri.replace("{pipeline}", pipeline).replace("{step}", step)
    return Save(name, filled, suffix)


def _check_uri(uri: str, what: str, root: bool = False) -> None:
    try:
        list(string.Formatter().parse(uri))
    except ValueError as exc:
        raise SaveError(
            f"{what}: {exc}", fix="write {execution_id}, {pipeline} or {step}, and {{ }} for braces"
        ) from None
    if not uri.startswith("s3://"):
        raise SaveError(
            f"{what} is not an s3:// URI", fix="write s3://bucket/prefix" + ("" if root else "/name.parquet")
        )
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not BUCKET.match(bucket) or ".." in bucket:
        raise SaveError(
            f"{what}: {bucket!r} is not an S3 bucket name", fix="use 3-63 lowercase letters, digits, dots and dashes"
        )
    reserved = next((why for test, why in _RESERVED_BUCKETS if test(bucket)), None)
    if reserved:
        raise SaveError(
            f"{what}: {bucket!r} is not an S3 bucket name ({reserved})",
            fix="use another bucket name (lowercase letters, digits, dashes)",
        )
    if any(part in (".", "..") for part in key.split("/")):
        raise SaveError(
            f"{what}: the key has a '.' or '..' segment, which S3 keeps literally (not a folder move)",
            fix="write the key without . and .. segments",
        )
    if not key or key.endswith("/"):
        raise SaveError(
            f"{what} names a folder, not an object", fix="end it with the object's name, e.g. /model.joblib"
        )
