"""Nothing uploaded twice: while a build plan is set, every ``PutObject`` of the session's S3 clients carries the
SHA-256 of its body as object metadata, and is skipped when the object is already there with the same hash and
length (a ``HEAD``). An object without the hash is uploaded again, never trusted. A dry plan answers every write
here and sends nothing.
"""

from __future__ import annotations


import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from jupyter_smstep.sdk.content import BuildPlan


#: Object metadata holding the SHA-256 of the body (S3 stores it as ``x-amz-meta-smstep-sha256``).
HASH_METADATA = "smstep-sha256"


@dataclass
class UploadCount:
    """What the build sent to S3 while a plan was set."""

    uploaded: int = 0
    skipped: int = 0


def s3_clients(session: Any) -> list[Any]:
    found: list[Any] = []
    for client in (
        getattr(session, "s3_client", None),
        getattr(getattr(getattr(session, "s3_resource", None), "meta", None), "client", None),
    ):
        if client is not None and all(client is not c for c in found):
            found.append(client)
    return found


_HANDLER_ID = "jupyter_smstep.dedupe"


def register(client: Any, plan: BuildPlan) -> None:
    events = client.meta.events
    count = plan.uploads

    def before_build(params: dict, context: dict, **_: Any) -> None:
        if plan.dry:
            context["smstep_skip"] = "dry"
            return
        step = plan.compiling
        if step in plan.reuse and f"/{step}/{plan.folder(step)}/" in "/" + str(params.get("Key", "")):
            context["smstep_skip"] = True  # a payload of a step whose cached result is reused
            return
        data = _body_bytes(params.get("Body"))
        if data is None:
            return
        sha = hashlib.sha256(data).hexdigest()
        params["Metadata"] = {**(params.get("Metadata") or {}), HASH_METADATA: sha}
        context["smstep_skip"] = _stored(client, params.get("Bucket"), params.get("Key"), sha, len(data))

    def before_call(context: dict, **_: Any) -> Any:
        if not context.get("smstep_skip"):
            return None
        if context["smstep_skip"] != "dry":
            count.skipped += 1
        return _answered()

    def after_call(context: dict, http_response: Any, **_: Any) -> None:  # counted once S3 has it
        if not context.get("smstep_skip") and getattr(http_response, "status_code", 0) == 200:
            count.uploaded += 1

    def dry_call(**_: Any) -> Any:  # a multipart upload of a large workspace file, in a dry build
        return _answered() if plan.dry else None

    events.register("before-parameter-build.s3.PutObject", before_build, unique_id=_HANDLER_ID + ".build")
    events.register("before-call.s3.PutObject", before_call, unique_id=_HANDLER_ID + ".call")
    events.register("after-call.s3.PutObject", after_call, unique_id=_HANDLER_ID + ".after")
    for operation in _MULTIPART:
        events.register(f"before-call.s3.{operation}", dry_call, unique_id=f"{_HANDLER_ID}.dry.{operation}")


#: The calls of a multipart upload: answered here in a dry build.
_MULTIPART = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload")


def _answered() -> Any:
    """A successful answer to an S3 write that is not sent."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    return (
        AWSResponse("", 200, HTTPHeaders(), None),
        {
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0},
            "UploadId": "jupyter-smstep-dry",
            "ETag": '"jupyter-smstep-dry"',
        },
    )


def unregister(client: Any) -> None:
    events = client.meta.events
    events.unregister("before-parameter-build.s3.PutObject", unique_id=_HANDLER_ID + ".build")
    events.unregister("before-call.s3.PutObject", unique_id=_HANDLER_ID + ".call")
    events.unregister("after-call.s3.PutObject", unique_id=_HANDLER_ID + ".after")
    for operation in _MULTIPART:
        events.unregister(f"before-call.s3.{operation}", unique_id=f"{_HANDLER_ID}.dry.{operation}")


def _body_bytes(body: Any) -> bytes | None:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if body is None or not hasattr(body, "read") or not hasattr(body, "seek"):
        return None
    try:
        start = body.tell()
        data = body.read()
        body.seek(start)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, bytes) else None


def _stored(client: Any, bucket: str | None, key: str | None, sha: str, size: int) -> bool:
    """Whether ``bucket/key`` already holds exactly these bytes (by the hash recorded when they were put)."""
    if not bucket or not key:
        return False
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - missing, forbidden, unreachable: upload (the PUT reports its own error)
        return False
    return head.get("ContentLength") == size and (head.get("Metadata") or {}).get(HASH_METADATA) == sha
