"""The S3 REST protocol over :mod:`.store`: routing, request bodies, XML responses, ranges.

One :class:`Handler` per connection (``ThreadingHTTPServer``), HTTP/1.1 with
keep-alive. A request's body is always read to its end before the response,
also when the request fails part-way, so the next request on the connection is
parsed from where it starts. Bodies come plain, ``chunked``, or ``aws-chunked``
(boto3's streaming uploads, with trailers). Every request must be signed with the
run's credentials (:mod:`.sigv4`), else 403. Requests for another service are
refused with ``NotImplemented``, except STS ``GetCallerIdentity`` (:mod:`.sts`),
which the SDK calls to find the account.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from jupyter_smstep.local.s3 import sigv4, sts
from jupyter_smstep.local.s3.store import (
    CHUNK,
    BodyWriter,
    Listing,
    S3Error,
    Store,
    decode_aws_chunked,
    decode_token,
    encode_token,
    iso,
    no_such_key,
)

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
ACCOUNT = sts.ACCOUNT

_log = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Any, *, root: Path, region: str, credentials: sigv4.Credentials) -> None:
        super().__init__(address, Handler)
        self.store = Store(root)
        self.region = region
        self.credentials = credentials  # every request must be signed with them (:mod:`.sigv4`)
        #: every object read (GET or HEAD that found it): (the access key that asked, bucket, key); a step signs
        #: with its own key, so a run knows what each step read of its S3
        self.reads: list[tuple[str, str, str]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm
        # and the client's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ------------------------------------------------------------------ routing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        self._left = 0 if self._framed() else int(self.headers.get("Content-Length", 0) or 0)
        self._chunks: Iterator[bytes] | None = None
        self._buffered: bytes | None = None
        self._payload = sigv4.PayloadCheck("")
        try:
            split = urlsplit(self.path)
            self.query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
            signed = sigv4.verify(
                method,
                self.path,
                lambda name: self.headers.get_all(name) or [],
                self.server.credentials,
                self._body_hash,
            )
            self._payload = sigv4.PayloadCheck(signed.payload_hash if self._buffered is None else "")
            self.caller = signed.access_key
            service = signed.service
            if service == "sts":
                return self._xml(200, sts.respond(self._form()))
            if service != "s3":
                raise S3Error(
                    501, "NotImplemented", f"the local runner's endpoint serves S3 only; a {service} call reached it"
                )
            bucket, _, key = unquote(split.path).lstrip("/").partition("/")
            if not bucket:
                if method == "GET":
                    return self._list_buckets()
                raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed")
            if not key:
                return self._bucket_operation(method, bucket)
            return self._object_operation(method, bucket, key)
        except S3Error as exc:
            self._error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            _log.debug("local S3 failed on %s %s", method, self.path, exc_info=True)
            self.close_connection = True  # where the request's body stopped is not known
            # the cause by kind only: an OSError's text names this machine's folders
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            self._error(S3Error(500, "InternalError", f"the local S3 could not serve the request ({why})"))

    def _bucket_operation(self, method: str, bucket: str) -> None:
        store, q = self.server.store, self.query
        if method == "PUT" and not q:
            store.create_bucket(bucket)
            return self._send(200, headers={"Location": f"/{bucket}", "Content-Length": "0"})
        store.bucket_dir(bucket)
        if method == "HEAD":
            return self._send(200, headers={"x-amz-bucket-region": self.server.region, "Content-Length": "0"})
        if method == "GET" and "location" in q:
            region = "" if self.server.region == "us-east-1" else self.server.region
            return self._xml(200, f'<LocationConstraint xmlns="{NS}">{region}</LocationConstraint>')
        unsupported = {"acl", "policy", "versioning", "tagging", "cors", "lifecycle", "uploads"}
        if method == "GET" and not (unsupported & set(q)):
            return self._list_objects(bucket)
        if method == "POST" and "delete" in q:
            return self._delete_objects(bucket)
        if method == "DELETE" and not q:
            store.delete_bucket(bucket)
            return self._send(204, headers={"Content-Length": "0"})
        raise S3Error(501, "NotImplemented", f"the local S3 does not implement {method} on a bucket with {sorted(q)}")

    def _object_operation(self, method: str, bucket: str, key: str) -> None:
        store, q = self.server.store, self.query
        store.bucket_dir(bucket)
        if method == "POST" and "uploads" in q:
            upload_id = store.create_upload(bucket, key, self.headers.get("Content-Type"))
            return self._xml(
                200,
                f'<InitiateMultipartUploadResult xmlns="{NS}"><Bucket>{escape(bucket)}</Bucket>'
                f"<Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>",
            )
        if "uploadId" in q:
            return self._multipart(method, bucket, key, q["uploadId"])
        if method == "PUT" and not q:
            if "x-amz-copy-source" in self.headers:
                return self._copy(bucket, key)
            meta = store.put(bucket, key, self._body_writer(), self.headers.get("Content-Type"), self._user_meta())
            return self._send(200, headers={"ETag": meta.etag, "Content-Length": "0"})
        if method in ("GET", "HEAD") and not ({"acl", "tagging", "attributes", "legal-hold", "retention"} & set(q)):
            self._get(bucket, key, head=method == "HEAD")
            return None
        if method == "DELETE" and not q:
            store.remove(bucket, key)
            return self._send(204, headers={"Content-Length": "0"})
        raise S3Error(501, "NotImplemented", f"the local S3 does not implement {method} on an object with {sorted(q)}")

    # ------------------------------------------------------------------ operations
    def _list_buckets(self) -> None:
        items = "".join(
            f"<Bucket><Name>{escape(p.name)}</Name><CreationDate>{iso(p.stat().st_mtime)}</CreationDate></Bucket>"
            for p in self.server.store.buckets()
        )
        self._xml(
            200,
            f'<ListAllMyBucketsResult xmlns="{NS}"><Owner><ID>{ACCOUNT}</ID></Owner>'
            f"<Buckets>{items}</Buckets></ListAllMyBucketsResult>",
        )

    def _list_objects(self, bucket: str) -> None:
        q = self.query
        v2 = q.get("list-type") == "2"
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        try:
            max_keys = int(q.get("max-keys", "1000") or 1000)
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-keys must be an integer") from None
        url_encode = q.get("encoding-type") == "url"
        if v2:
            token = q.get("continuation-token")
            after = decode_token(token) if token else q.get("start-after", "")
        else:
            after = q.get("marker", "")
        page = self.server.store.list(bucket, prefix, delimiter, after, max_keys)
        self._xml(
            200,
            _listing_xml(bucket, page, prefix, delimiter, max_keys, url_encode, v2, after, q.get("continuation-token")),
        )

    def _delete_objects(self, bucket: str) -> None:
        document = _parse_xml(self._body())
        quiet = False
        deleted = []
        for element in document.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "Quiet":
                quiet = (element.text or "").strip().lower() == "true"
            elif tag == "Object":
                key = next((c.text or "" for c in element if c.tag.rsplit("}", 1)[-1] == "Key"), "")
                self.server.store.remove(bucket, key)
                deleted.append(key)
        body = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in deleted)
        self._xml(200, f'<DeleteResult xmlns="{NS}">{body}</DeleteResult>')

    def _copy(self, bucket: str, key: str) -> None:
        source = unquote(self.headers["x-amz-copy-source"]).lstrip("/")
        source_bucket, _, source_key = source.partition("/")
        meta = self.server.store.copy(source_bucket, source_key.split("?versionId=")[0], bucket, key)
        if self.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE":
            meta = type(meta)(meta.etag, self.headers.get("Content-Type") or "binary/octet-stream", self._user_meta())
            self.server.store.remember(bucket, key, meta)
        self._xml(
            200,
            f"<CopyObjectResult><LastModified>{iso(time.time())}</LastModified>"
            f"<ETag>{escape(meta.etag)}</ETag></CopyObjectResult>",
        )

    def _multipart(self, method: str, bucket: str, key: str, upload_id: str) -> None:
        store = self.server.store
        if method == "PUT":
            try:
                number = int(self.query.get("partNumber", "0"))
            except ValueError:
                number = 0
            etag = store.upload_part(upload_id, number, self._body_writer())
            return self._send(200, headers={"ETag": etag, "Content-Length": "0"})
        if method == "POST":
            document = _parse_xml(self._body())
            parts = []
            for part in (e for e in document.iter() if e.tag.rsplit("}", 1)[-1] == "Part"):
                fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in part}
                try:
                    parts.append((int(fields.get("PartNumber", "0")), fields.get("ETag", "")))
                except ValueError:
                    raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed") from None
            meta = store.complete_upload(bucket, key, upload_id, parts)
            return self._xml(
                200,
                f'<CompleteMultipartUploadResult xmlns="{NS}"><Location>/{escape(bucket)}/'
                f"{escape(key)}</Location><Bucket>{escape(bucket)}</Bucket><Key>{escape(key)}</Key>"
                f"<ETag>{escape(meta.etag)}</ETag></CompleteMultipartUploadResult>",
            )
        if method == "DELETE":
            store.abort_upload(upload_id)
            return self._send(204, headers={"Content-Length": "0"})
        raise S3Error(405, "MethodNotAllowed", "The specified method is not allowed against this resource")

    def _get(self, bucket: str, key: str, head: bool) -> None:
        store = self.server.store
        path, meta = store.get(bucket, key)
        try:
            f = open(path, "rb")  # one version of the object, whatever overwrites come: its ETag and its bytes
        except (FileNotFoundError, IsADirectoryError):
            raise no_such_key(key, bucket) from None
        with f:
            meta = store.consistent(meta, f)
            stat = os.fstat(f.fileno())
            size = stat.st_size
            headers = {
                "ETag": meta.etag,
                "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
                "Content-Type": meta.content_type,
                "Accept-Ranges": "bytes",
                **meta.user,
            }
            start, end, status = 0, size - 1, 200
            requested = self.headers.get("Range")
            if requested and not head:
                start, end = _byte_range(requested, size)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            length = end - start + 1 if size else 0
            headers["Content-Length"] = str(length)
            self._drain_body()
            # What the step read, recorded before it is answered: once the caller has the object, the record is
            # there (a step's last read, just before it ends, is never missed by its reads: local.reads)
            self.server.reads.append((self.caller, bucket, key))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if head or length == 0:
                self.end_headers()
                return
            if length <= CHUNK:  # one write for headers and body: small objects are most requests
                f.seek(start)
                data = f.read(length)
                self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
                self.flush_headers()
                return
            self.end_headers()
            try:
                self.connection.sendfile(f, start, length)
            except (AttributeError, OSError):  # no sendfile: copy in chunks
                f.seek(start)
                remaining = length
                while remaining:
                    data = f.read(min(CHUNK, remaining))
                    self.wfile.write(data)
                    remaining -= len(data)

    # ------------------------------------------------------------------ responses
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/xml",
    ) -> None:
        self._drain_body()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body or "Content-Length" not in (headers or {}):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _xml(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode(), headers)

    def _error(self, exc: S3Error) -> None:
        extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in exc.extra.items())
        body = (
            b""
            if self.command == "HEAD"
            else (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{exc.code}</Code>'
                f"<Message>{escape(exc.message)}</Message>{extra}<RequestId>local</RequestId></Error>"
            ).encode()
        )
        try:
            self._send(exc.status, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ request bodies
    # A plain body is read as it is, ``_left`` bytes still to come; a framed one through one
    # generator. Whatever an operation did not read is drained before the response, so a
    # request refused before (or while) its body was read leaves the connection where the
    # next request starts; if even that fails, the connection is closed.
    def _user_meta(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}

    def _framed(self) -> bool:
        """Whether the body comes in chunks (chunked or aws-chunked) rather than as it is."""
        return (
            self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            or "aws-chunked" in self.headers.get("Content-Encoding", "")
            or self.headers.get("x-amz-content-sha256", "").startswith("STREAMING-")
        )

    def _body_writer(self) -> BodyWriter:
        if self._buffered is not None:
            return BodyWriter(None, None, (self._buffered,))
        if self._framed():
            return BodyWriter(None, None, self._chunk_stream(), self._payload.check)
        return BodyWriter(self._left, self._read_into, (), self._payload.check)

    def _read_into(self, buffer: memoryview) -> int:
        n = self.rfile.readinto(buffer[: self._left]) or 0
        self._left -= n
        self._payload.update(buffer[:n])
        return n

    def _chunk_stream(self) -> Iterator[bytes]:
        if self._chunks is None:
            self._chunks = self._hashed(self._body_chunks())
        return self._chunks

    def _hashed(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for data in chunks:
            self._payload.update(data)
            yield data

    def _drain_body(self) -> None:
        try:
            if self._framed():
                for _ in self._chunk_stream():
                    pass
            while self._left > 0:
                data = self.rfile.read(min(CHUNK, self._left))
                if not data:
                    raise ConnectionResetError("request body ended early")
                self._left -= len(data)
        except (OSError, ValueError):  # a broken body: the stream position is unknown now
            self.close_connection = True

    def _body_chunks(self) -> Iterator[bytes]:
        """The framed request body, decoded (chunked, or aws-chunked with trailers)."""
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if not chunked:  # aws-chunked framing inside a Content-Length body
            yield from decode_aws_chunked(self._read_length(int(self.headers.get("Content-Length", 0) or 0)))
        elif "aws-chunked" in self.headers.get("Content-Encoding", "") or self.headers.get(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING-"):
            yield from decode_aws_chunked(self._read_chunked())
        else:
            yield from self._read_chunked()

    def _read_length(self, remaining: int) -> Iterator[bytes]:
        while remaining > 0:
            data = self.rfile.read(min(CHUNK, remaining))
            if not data:
                raise ConnectionResetError("request body ended early")
            remaining -= len(data)
            yield data

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield from self._read_length(size)
            self.rfile.readline(65537)

    def _body(self) -> bytes:
        """The whole (small) request body, checked against the hash it was signed with."""
        if self._buffered is not None:
            return self._buffered
        if self._framed():
            data = b"".join(self._chunk_stream())
        else:
            data = self.rfile.read(self._left) if self._left else b""
            self._left -= len(data)
            self._payload.update(data)
        self._payload.check()
        return data

    def _body_hash(self) -> str:
        """For a request that declares no payload hash (STS's form): read the body, hash it."""
        self._buffered = self._body()
        return hashlib.sha256(self._buffered).hexdigest()

    def _form(self) -> dict[str, str]:
        form = {k: v[0] for k, v in parse_qs(self._body().decode(), keep_blank_values=True).items()}
        return {**self.query, **form}


# --------------------------------------------------------------------------- helpers
def _parse_xml(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed") from None


def _byte_range(requested: str, size: int) -> tuple[int, int]:
    """``bytes=START-END`` / ``START-`` / ``-SUFFIX`` -> (first, last) byte; ``InvalidRange`` otherwise."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", requested.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:
        start, end = max(0, size - int(match.group(2))), size - 1
    if start >= size or start > end:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
    return start, end


def _listing_xml(
    bucket: str,
    page: Listing,
    prefix: str,
    delimiter: str,
    max_keys: int,
    url_encode: bool,
    v2: bool,
    after: str,
    token: str | None,
) -> str:
    def enc(text: str) -> str:
        return escape(quote(text, safe="/~") if url_encode else text)

    parts = [f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>"]
    if delimiter:
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if url_encode:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if v2:
        parts.append(f"<KeyCount>{len(page.contents) + len(page.prefixes)}</KeyCount>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if page.truncated:
            parts.append(f"<NextContinuationToken>{encode_token(page.last)}</NextContinuationToken>")
    else:
        parts.append(f"<Marker>{enc(after)}</Marker>")
        if page.truncated:
            parts.append(f"<NextMarker>{enc(page.last)}</NextMarker>")
    contents = [
        f"<Contents><Key>{enc(e.key)}</Key><LastModified>{iso(e.mtime)}</LastModified>"
        f"<ETag>{escape(e.etag)}</ETag><Size>{e.size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for e in page.contents
    ]
    prefixes = [f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in page.prefixes]
    return f'<ListBucketResult xmlns="{NS}">{"".join(parts + contents + prefixes)}</ListBucketResult>'
