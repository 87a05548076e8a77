"""S3's objects, buckets, listings and multipart uploads, as files in a folder (no HTTP here).

An object ``s3://bucket/a/b.pkl`` is the file ``<root>/bucket/a/b.pkl`` as soon as
it is written (atomically: into a ``.smstep-partial`` file, then renamed), so a
run's data persists with no copy at the end and a ranged read is a ``sendfile``.
Multipart uploads stage their parts under ``<root>/.uploads/<id>/``. ETags,
content types and ``x-amz-meta-*`` headers are kept in memory; an object written
before the server started gets a stable ETag derived from its size and mtime.

A key is a path, so the store refuses the keys a file system cannot hold as S3
does (an empty segment, ``.`` or ``..``): :class:`S3Error` ``InvalidArgument``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

UPLOADS = ".uploads"  # multipart staging, beside the buckets (bucket names cannot start with ".")
PARTIAL = ".smstep-partial"  # a file being written; never listed
MD5_LIMIT = 64 * 1024 * 1024  # above this, ETags are not MD5s (S3's multipart ETags are not either)
CHUNK = 1024 * 1024


class S3Error(Exception):
    """An S3 error response: HTTP status, S3 code, message and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)


def no_such_key(key: str, bucket: str | None = None) -> S3Error:
    extra = {"Key": key} | ({"BucketName": bucket} if bucket else {})
    return S3Error(404, "NoSuchKey", "The specified key does not exist.", **extra)


def check_bucket(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", name):
        raise S3Error(400, "InvalidBucketName", "The specified bucket is not valid.", BucketName=name)
    return name


#: S3's smallest part but the last of a multipart upload
MIN_PART_BYTES = 5 * 1024 * 1024
#: S3's own limit on a key (UTF-8 bytes), and the longest key segment the store can make a file of (a file
#: name is at most 255 bytes; the partial file being written adds its suffix)
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 200


def object_path(root: Path, bucket: str, key: str) -> Path:
    """The file of ``bucket/key``; a key a file system cannot hold is an ``InvalidArgument``.

    Refused: empty segments (``a//b``, a leading or trailing ``/``: ``x/`` would be the
    file ``x``), ``.`` and ``..``, NUL, and the suffix this store gives files being written.
    """
    check_bucket(bucket)
    parts = key.split("/")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise S3Error(400, "KeyTooLongError", "Your key is too long", Key=key[:100] + "...")
    if not key or "\0" in key or key.endswith(PARTIAL) or any(p in ("", ".", "..") for p in parts):
        raise S3Error(400, "InvalidArgument", f"the local S3 cannot store the key {key!r}", Key=key)
    if any(len(p.encode()) > MAX_SEGMENT_BYTES for p in parts):
        raise S3Error(
            400,
            "KeyTooLongError",
            f"the local S3 keeps each object as a file, and a key segment over "
            f"{MAX_SEGMENT_BYTES} bytes cannot name one (S3 itself takes keys up to {MAX_KEY_BYTES} bytes)",
            Key=key[:100] + "...",
        )
    return root.joinpath(bucket, *parts)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclass(frozen=True)
class Meta:
    etag: str
    content_type: str = "binary/octet-stream"
    user: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* headers, as sent
    #: the file this ETag is of (inode, mtime, size): a reader holding another version of the file (an
    #: overwrite raced it) gets that version's own ETag (:meth:`Store.consistent`), never another's
    version: tuple[int, int, int] | None = None


def identity(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class Entry:
    """One object of a listing."""

    key: str
    size: int
    mtime: float
    etag: str


@dataclass
class Listing:
    """One page of ListObjects (v1 or v2): objects, common prefixes, and where the next page starts."""

    contents: list[Entry]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or prefix returned: the next page starts after it


def encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect") from None


class Store:
    """The objects under ``root``; thread-safe (the server handles requests in threads)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._meta: dict[tuple[str, str], Meta] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ buckets
    def buckets(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def bucket_dir(self, bucket: str) -> Path:
        """The folder of an existing bucket; ``NoSuchBucket`` otherwise."""
        folder = self.root / check_bucket(bucket)
        if not folder.is_dir():
            raise no_such_bucket(bucket)
        return folder

    def create_bucket(self, bucket: str) -> None:
        folder = self.root / check_bucket(bucket)
        if folder.is_dir():
            raise S3Error(
                409,
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
                BucketName=bucket,
            )
        folder.mkdir(parents=True)

    def delete_bucket(self, bucket: str) -> None:
        folder = self.bucket_dir(bucket)
        if any(folder.iterdir()):
            raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=bucket)
        folder.rmdir()

    # ------------------------------------------------------------------ objects
    def meta(self, bucket: str, key: str, path: Path) -> Meta:
        with self._lock:
            meta = self._meta.get((bucket, key))
        if meta is None:  # written before this server started: derive a stable ETag
            stat = path.stat()
            meta = Meta(f'"{stat.st_size:x}{stat.st_mtime_ns:x}"')
        return meta

    def remember(self, bucket: str, key: str, meta: Meta) -> None:
        with self._lock:
            self._meta[(bucket, key)] = meta

    def put(self, bucket: str, key: str, body: BodyWriter, content_type: str | None, user: dict[str, str]) -> Meta:
        self.bucket_dir(bucket)
        path = object_path(self.root, bucket, key)
        if path.is_dir():
            raise S3Error(
                400,
                "InvalidArgument",
                f"the local S3 stores objects as files and '{key}' is already a folder of keys",
                Key=key,
            )
        parts = key.split("/")
        for n in range(1, len(parts)):
            if object_path(self.root, bucket, "/".join(parts[:n])).is_file():
                prefix = "/".join(parts[:n])
                raise S3Error(
                    400,
                    "InvalidArgument",
                    f"the local S3 stores objects as files and '{prefix}' is "
                    f"already an object, so '{key}' cannot be stored under it (S3 itself takes both)",
                    Key=key,
                )
        _size, etag, version = write_atomically(path, body)
        meta = Meta(etag, content_type or "binary/octet-stream", user, version)
        self.remember(bucket, key, meta)
        return meta

    def consistent(self, meta: Meta, f: Any) -> Meta:
        """``meta`` for the version of the object open as ``f``: when an overwrite replaced the file between the
        metadata and the open, the ETag of the bytes ``f`` holds (their MD5, up to the MD5 limit)."""
        stat = os.fstat(f.fileno())
        if meta.version is None or meta.version == identity(stat):
            return meta
        if stat.st_size > MD5_LIMIT:
            return Meta(f'"{stat.st_size:x}{stat.st_mtime_ns:x}"', meta.content_type, meta.user, identity(stat))
        digest = hashlib.md5()
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
        f.seek(0)
        return Meta(f'"{digest.hexdigest()}"', meta.content_type, meta.user, identity(stat))

    def get(self, bucket: str, key: str) -> tuple[Path, Meta]:
        """The file and metadata of an existing object; ``NoSuchKey`` otherwise."""
        self.bucket_dir(bucket)
        path = object_path(self.root, bucket, key)
        if not path.is_file():
            raise no_such_key(key, bucket)
        return path, self.meta(bucket, key, path)

    def copy(self, source_bucket: str, source_key: str, bucket: str, key: str) -> Meta:
        source, meta = self.get(source_bucket, source_key)
        self.bucket_dir(bucket)
        path = object_path(self.root, bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{uuid.uuid4().hex[:8]}{PARTIAL}")
        shutil.copyfile(source, partial)
        meta = Meta(meta.etag, meta.content_type, meta.user, identity(os.stat(partial)))
        os.replace(partial, path)
        self.remember(bucket, key, meta)
        return meta

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object (a missing one is fine, as in S3), and the folders it leaves empty."""
        try:
            path = object_path(self.root, bucket, key)
        except S3Error:
            return
        path.unlink(missing_ok=True)
        with self._lock:
            self._meta.pop((bucket, key), None)
        base = self.root / bucket
        folder = path.parent
        while folder != base and folder.is_dir():
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    # ------------------------------------------------------------------ listings
    def files(self, bucket: str, prefix: str) -> list[tuple[str, Path]]:
        """(key, path) of every object under ``prefix``, in S3's (UTF-8 binary) order."""
        base = self.bucket_dir(bucket)
        start = base
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if "\0" in prefix or (head and any(p in ("", ".", "..") for p in head.split("/"))):
            return []  # no key this store holds starts so: and never look outside the bucket
        if head:
            candidate = base.joinpath(*head.split("/"))
            if not candidate.is_dir():
                return []
            start = candidate
        found = []
        for folder, dirs, names in os.walk(start):
            dirs[:] = [d for d in dirs if not (folder == str(base) and d.startswith("."))]
            rel = os.path.relpath(folder, base)
            for name in names:
                if name.endswith(PARTIAL):
                    continue
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    found.append((key, Path(folder, name)))
        found.sort(key=lambda item: item[0].encode())
        return found

    def list(
        self, bucket: str, prefix: str = "", delimiter: str = "", after: str = "", max_keys: int = 1000
    ) -> Listing:
        contents: list[Entry] = []
        prefixes: list[str] = []
        truncated = False
        last = ""
        for key, path in self.files(bucket, prefix):
            if after and key.encode() <= after.encode():
                continue
            if delimiter and after.endswith(delimiter) and key.startswith(after):
                continue  # the previous page ended on this common prefix: it is not listed twice
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    if prefixes and prefixes[-1] == common:
                        continue
                    if len(contents) + len(prefixes) >= max_keys:
                        truncated = True
                        break
                    prefixes.append(common)
                    last = common
                    continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            stat = path.stat()
            contents.append(Entry(key, stat.st_size, stat.st_mtime, self.meta(bucket, key, path).etag))
            last = key
        return Listing(contents, prefixes, truncated, last)

    # ------------------------------------------------------------------ multipart uploads
    def upload_dir(self, upload_id: str, *, exists: bool = True) -> Path:
        folder = self.root / UPLOADS / upload_id
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id) or (exists and not folder.is_dir()):
            raise S3Error(404, "NoSuchUpload", "The specified upload does not exist.", UploadId=upload_id)
        return folder

    def create_upload(self, bucket: str, key: str, content_type: str | None) -> str:
        self.bucket_dir(bucket)
        object_path(self.root, bucket, key)  # refuse a key that cannot be stored now, not at the end
        upload_id = uuid.uuid4().hex
        folder = self.upload_dir(upload_id, exists=False)
        folder.mkdir(parents=True)
        (folder / "content-type").write_text(content_type or "binary/octet-stream")
        (folder / "key").write_text(f"{bucket}/{key}")
        return upload_id

    def upload_part(self, upload_id: str, number: int, body: BodyWriter) -> str:
        folder = self.upload_dir(upload_id)
        if not 1 <= number <= 10000:
            raise S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000")
        # boto3 does not check part ETags; skipping the MD5 keeps a core free for the step
        _size, etag, _version = write_atomically(folder / f"{number:05d}", body, want_md5=False)
        (folder / f"{number:05d}.etag").write_text(etag)
        return etag

    def complete_upload(self, bucket: str, key: str, upload_id: str, parts: Sequence[tuple[int, str]]) -> Meta:
        """Join the parts as S3 does, refusing what S3 refuses: another key than the upload's, parts out of
        order, a part not uploaded or with another ETag, a part but the last under 5 MiB."""
        folder = self.upload_dir(upload_id)
        started = folder / "key"
        if started.is_file() and started.read_text() != f"{bucket}/{key}":
            raise S3Error(
                404,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, "
                "or the upload may have been aborted or completed.",
                UploadId=upload_id,
            )
        numbers = [number for number, _ in parts]
        if not numbers or any(a >= b for a, b in zip(numbers, numbers[1:])):
            raise S3Error(
                400,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. The parts list "
                "must be specified in order by part number.",
                UploadId=upload_id,
            )
        for index, (number, etag) in enumerate(parts):
            part = folder / f"{number:05d}"
            stored = folder / f"{number:05d}.etag"
            if not part.is_file() or (stored.is_file() and stored.read_text().strip('"') != etag.strip('"')):
                raise S3Error(
                    400,
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part "
                    "may not have been uploaded, or the specified entity tag may not match the part's "
                    "entity tag.",
                    PartNumber=str(number),
                    ETag=etag,
                )
            if index < len(parts) - 1 and part.stat().st_size < MIN_PART_BYTES:
                raise S3Error(
                    400,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size.",
                    PartNumber=str(number),
                    MinSizeAllowed=str(MIN_PART_BYTES),
                )
        path = object_path(self.root, bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{upload_id[:8]}{PARTIAL}")
        with open(partial, "wb") as out:
            for number in numbers:
                with open(folder / f"{number:05d}", "rb") as src:
                    append_file(src, out)
        version = identity(os.stat(partial))
        os.replace(partial, path)
        content_type = (folder / "content-type").read_text()
        shutil.rmtree(folder, ignore_errors=True)
        meta = Meta(f'"{uuid.uuid4().hex}-{len(numbers)}"', content_type, version=version)
        self.remember(bucket, key, meta)
        return meta

    def abort_upload(self, upload_id: str) -> None:
        shutil.rmtree(self.upload_dir(upload_id, exists=False), ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root / UPLOADS, ignore_errors=True)


# --------------------------------------------------------------------------- writing files
class BodyWriter:
    """How a request body reaches a file: ``length`` bytes read straight into a buffer, or chunks."""

    def __init__(
        self, length: int | None, read_into: Any, chunks: Iterable[bytes], verify: Callable[[], None] | None = None
    ) -> None:
        self.length = length  # None: framed (chunked, aws-chunked), read through ``chunks``
        self.read_into = read_into
        self.chunks = chunks
        self.verify = verify  # raises if the body is not what was signed; called before it is stored


def write_atomically(dest: Path, body: BodyWriter, want_md5: bool = True) -> tuple[int, str, tuple[int, int, int]]:
    """Stream the body into ``dest`` (into a partial file, then renamed). Returns (size, ETag, the file's
    :func:`identity`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + f".{uuid.uuid4().hex[:8]}{PARTIAL}")
    length = body.length
    md5 = hashlib.md5() if want_md5 and (length is None or length <= MD5_LIMIT) else None
    size = 0
    try:
        with open(partial, "wb", buffering=0) as f:
            if length is not None:  # the common case: one copy from the socket, one to the file
                buffer = memoryview(bytearray(min(length, 4 * CHUNK) or 1))
                while size < length:
                    n = body.read_into(buffer[: min(len(buffer), length - size)])
                    if not n:
                        raise ConnectionResetError("request body ended early")
                    f.write(buffer[:n])
                    if md5 is not None:
                        md5.update(buffer[:n])
                    size += n
            else:
                for data in body.chunks:
                    f.write(data)
                    size += len(data)
                    if md5 is not None:
                        if size > MD5_LIMIT:
                            md5 = None
                        else:
                            md5.update(data)
        if body.verify is not None:
            body.verify()
        version = identity(os.stat(partial))  # the same file once renamed: its inode and times stay
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    etag = md5.hexdigest() if md5 is not None else hashlib.md5(f"{dest}:{size}:{time.time()}".encode()).hexdigest()
    return size, f'"{etag}"', version


def append_file(src: BinaryIO, dst: BinaryIO) -> None:
    """Append ``src`` to ``dst`` in the kernel where possible."""
    dst.flush()
    try:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            copied = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
            if copied == 0:
                break
            offset += copied
        if offset == size:
            return
        src.seek(offset)
    except (AttributeError, OSError):
        src.seek(0)
    shutil.copyfileobj(src, dst, CHUNK)


def decode_aws_chunked(source: Iterable[bytes]) -> Iterator[bytes]:
    """Strip aws-chunked framing (``<hex>;chunk-signature=..\\r\\n<data>\\r\\n`` ... trailers)."""
    buffer = b""
    chunks = iter(source)

    def fill(n: int) -> bool:
        nonlocal buffer
        while len(buffer) < n:
            try:
                buffer += next(chunks)
            except StopIteration:
                return False
        return True

    while True:
        while b"\r\n" not in buffer:
            if not fill(len(buffer) + 1):
                return
        line, buffer = buffer.split(b"\r\n", 1)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return  # what follows are trailers (checksums); nothing to store
        fill(size + 2)
        yield buffer[:size]
        buffer = buffer[size + 2 :]
