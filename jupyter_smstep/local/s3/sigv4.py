"""Checking AWS Signature Version 4 on the local endpoint: only the run's own steps get in.

The endpoint listens on 127.0.0.1, where any local user can connect. Each run makes
its own random credentials (:func:`new_credentials`) and hands them only to its steps
(in their environment, which only the same user can read); every request must carry a
signature made with them, as AWS checks it: the ``Authorization`` header (or, for a
presigned URL, the ``X-Amz-*`` query) names the access key, date, region, service and
signed headers; the canonical request is rebuilt from what arrived and signed with the
secret, and must give the same signature. The signed ``x-amz-date`` must be within 15
minutes of now. A hex ``x-amz-content-sha256`` is signed too, and the body must hash to
it (:class:`PayloadCheck`); ``UNSIGNED-PAYLOAD`` and the ``STREAMING-*`` forms are taken
as S3 takes them over TLS (the connection is loopback, which no other user can alter).

The canonical request follows https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html.
Clients differ in how they escape a path or a query before signing (botocore signs the
URL it sends as it is; the specification escapes each part once more), so both readings
are tried: a signature needs the secret either way.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from jupyter_smstep.local.s3.store import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = 15 * 60  # seconds, as AWS allows

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})\s*"
)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def as_boto(self) -> dict[str, str]:
        """The keyword arguments of ``boto3.session.Session``."""
        return {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}


def new_credentials() -> Credentials:
    """Random credentials for one run: an access key id in AWS's shape and a 40-character secret."""
    return Credentials("ASMSTEP" + secrets.token_hex(7).upper()[:13], secrets.token_urlsafe(30)[:40])


def denied(code: str, message: str) -> S3Error:
    return S3Error(403, code, message)


@dataclass(frozen=True)
class Signed:
    """What a verified request signed: its service, and the payload hash it declared."""

    service: str
    payload_hash: str
    access_key: str = ""  # the run's, or one it made for a step (``<run's>-<n>``): who asked


def verify(
    method: str,
    raw_path: str,
    headers: Callable[[str], list[str]],
    credentials: Credentials,
    body_hash: Callable[[], str],
    *,
    now: float | None = None,
) -> Signed:
    """Check one request's signature; ``S3Error`` 403 (with S3's codes) when it is not the run's.

    ``raw_path`` is the request target as it arrived (path and query, still escaped);
    ``headers(name)`` gives every value of a header; ``body_hash()`` hashes the body when
    the request does not declare one in ``x-amz-content-sha256`` (STS sends a form).
    """
    now = time.time() if now is None else now
    path, _, query = raw_path.partition("?")
    pairs = [pair.partition("=")[::2] for pair in query.split("&")] if query else []
    fields = {unquote(k): unquote(v.replace("+", " ")) for k, v in pairs}
    presigned = "X-Amz-Signature" in fields
    if presigned:
        credential, signed_names = fields.get("X-Amz-Credential", ""), fields.get("X-Amz-SignedHeaders", "")
        signature, stamp = fields["X-Amz-Signature"], fields.get("X-Amz-Date", "")
        if fields.get("X-Amz-Algorithm") != ALGORITHM:
            raise denied("AuthorizationQueryParametersError", f"X-Amz-Algorithm must be {ALGORITHM}")
        pairs = [(k, v) for k, v in pairs if unquote(k) != "X-Amz-Signature"]
    else:
        authorization = " ".join(headers("authorization"))
        if "AWSAccessKeyId" in fields or authorization.startswith("AWS "):
            raise denied(
                "AccessDenied",
                "Access Denied: Signature Version 2 is not accepted (S3 refuses it for "
                "buckets made since 2020); sign with Signature Version 4, e.g. boto3 "
                "with Config(signature_version='s3v4')",
            )
        if not authorization:
            raise denied(
                "AccessDenied",
                "Access Denied: the local runner's endpoint only answers requests "
                "signed with the run's credentials (its steps have them)",
            )
        match = _AUTHORIZATION.fullmatch(authorization)
        if match is None:
            raise denied("AccessDenied", "Access Denied: only AWS Signature Version 4 (AWS4-HMAC-SHA256) is accepted")
        credential, signed_names, signature = match["credential"], match["signed"], match["signature"]
        stamp = " ".join(headers("x-amz-date"))
    access_key, _, scope = credential.partition("/")
    date, region, service, terminator = (scope.split("/") + ["", "", "", ""])[:4]
    base, dash, _caller = access_key.partition("-")  # a step's own key: the run's with a suffix, same secret
    if not hmac.compare_digest(base, credentials.access_key) or (dash and not _caller.isalnum()):
        raise denied("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
    if terminator != "aws4_request" or not re.fullmatch(r"\d{8}T\d{6}Z", stamp) or stamp[:8] != date:
        raise denied("AccessDenied", "Access Denied: the credential scope or the request date is malformed")
    signed_at = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    if presigned:
        try:
            expires = int(fields.get("X-Amz-Expires", ""))
        except ValueError:
            raise denied("AuthorizationQueryParametersError", "X-Amz-Expires must be a number") from None
        if now > signed_at + expires:
            raise denied("AccessDenied", "Request has expired")
    if abs(now - signed_at) > MAX_SKEW and not presigned:
        raise denied(
            "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."
        )
    names = signed_names.split(";")
    if "host" not in names:
        raise denied("AccessDenied", "Access Denied: the signature must cover the host header")
    declared = " ".join(headers("x-amz-content-sha256"))
    payload = "UNSIGNED-PAYLOAD" if presigned else declared or body_hash()
    canonical_headers = "".join(f"{name}:{','.join(' '.join(v.split()) for v in headers(name))}\n" for name in names)
    key = _signing_key(credentials.secret_key, date, region, service)
    for canonical_path, canonical_query in _readings(path, pairs):
        canonical = "\n".join([method, canonical_path, canonical_query, canonical_headers, signed_names, payload])
        to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return Signed(service, payload, access_key)
    raise denied(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method.",
    )


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _readings(path: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The canonical (path, query) pairs a client may have signed: as sent, and as the spec escapes them."""
    as_sent = (path or "/", "&".join(f"{k}={v}" for k, v in sorted(pairs)))
    escaped = sorted((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")) for k, v in pairs)
    spec = (quote(unquote(path or "/"), safe="/~"), "&".join(f"{k}={v}" for k, v in escaped))
    return [as_sent] if spec == as_sent else [as_sent, spec]


class PayloadCheck:
    """Hashes a body as it is read; :meth:`check` refuses one that is not what was signed."""

    def __init__(self, declared: str) -> None:
        self.declared = declared if re.fullmatch(r"[0-9a-f]{64}", declared) else None
        self._hash = hashlib.sha256() if self.declared else None

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)

    def check(self) -> None:
        if self._hash is not None and not hmac.compare_digest(self._hash.hexdigest(), self.declared or ""):
            raise S3Error(
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
