"""The local runner's S3 endpoint, one test per operation, each run against moto too.

Every test takes ``s3``: a boto3 client on the embedded endpoint and, in a second
run, on moto's server. What boto3 sees must be the same; where the local store
differs on purpose (it holds keys as file paths), the test says so and checks
the local endpoint only.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import uuid
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from jupyter_smstep.local.s3 import LocalS3

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def local_endpoint(tmp_path_factory):
    with LocalS3(tmp_path_factory.mktemp("s3"), region="us-east-1") as s3:
        yield s3


@pytest.fixture(params=["local", "moto"])
def s3(request, local_endpoint, moto_server):
    url = local_endpoint.endpoint_url if request.param == "local" else moto_server
    client = boto3.session.Session(region_name="us-east-1", **local_endpoint.credentials.as_boto()).client(
        "s3", endpoint_url=url, config=Config(retries={"max_attempts": 1})
    )
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    client.kind = request.param  # type: ignore[attr-defined]
    client.bucket = bucket  # type: ignore[attr-defined]
    return client


def code(info: pytest.ExceptionInfo) -> str:
    return info.value.response["Error"]["Code"]


def put(s3, key: str, body: bytes = b"x", **kw):
    return s3.put_object(Bucket=s3.bucket, Key=key, Body=body, **kw)


def signed_headers(
    local: LocalS3, method: str, path: str, body: bytes = b"", secret: str | None = None, **headers: str
) -> dict[str, str]:
    """The headers of a request to ``path`` signed as botocore signs for S3 (with the endpoint's keys)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=local.endpoint_url + path, data=body, headers=headers)
    keys = Credentials(local.credentials.access_key, secret or local.credentials.secret_key)
    S3SigV4Auth(keys, "s3", local.region).add_auth(request)
    return {"Host": local.endpoint_url.split("//", 1)[1], **dict(request.headers)}


def test_put_then_get_returns_the_bytes_etag_type_and_metadata(s3):
    body = bytes(range(256)) * 100
    etag = put(s3, "a/b.bin", body, ContentType="application/x-test", Metadata={"owner": "me"})["ETag"]
    got = s3.get_object(Bucket=s3.bucket, Key="a/b.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == etag == '"' + __import__("hashlib").md5(body).hexdigest() + '"'
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"owner": "me"}
    assert got["ContentLength"] == len(body)


def test_ranged_gets(s3):
    body = b"0123456789" * 1000
    put(s3, "r", body)
    assert s3.get_object(Bucket=s3.bucket, Key="r", Range="bytes=10-19")["Body"].read() == body[10:20]
    assert s3.get_object(Bucket=s3.bucket, Key="r", Range="bytes=9990-")["Body"].read() == body[9990:]
    assert s3.get_object(Bucket=s3.bucket, Key="r", Range="bytes=-5")["Body"].read() == body[-5:]
    part = s3.get_object(Bucket=s3.bucket, Key="r", Range="bytes=0-99999")
    assert part["Body"].read() == body and part["ContentRange"] == f"bytes 0-{len(body) - 1}/{len(body)}"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=s3.bucket, Key="r", Range="bytes=20000-")
    assert code(info) == "InvalidRange"


def test_large_object_and_transfer_manager_roundtrip(s3, tmp_path):
    body = bytes(range(256)) * (12 * MiB // 256 + 7)  # multipart upload and ranged download by boto3
    s3.upload_fileobj(io.BytesIO(body), s3.bucket, "big")
    out = io.BytesIO()
    s3.download_fileobj(s3.bucket, "big", out)
    assert out.getvalue() == body


def test_head_object_and_missing_keys(s3):
    put(s3, "h", b"hello")
    head = s3.head_object(Bucket=s3.bucket, Key="h")
    assert head["ContentLength"] == 5 and head["ETag"]
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=s3.bucket, Key="nope")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=s3.bucket, Key="nope")
    assert code(info) == "NoSuchKey"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert code(info) == "NoSuchBucket"


def test_multipart_upload_complete_and_abort(s3):
    upload = s3.create_multipart_upload(Bucket=s3.bucket, Key="m", ContentType="text/plain")["UploadId"]
    parts = []
    for n, chunk in enumerate([b"a" * (5 * MiB), b"b" * 10], start=1):
        etag = s3.upload_part(Bucket=s3.bucket, Key="m", UploadId=upload, PartNumber=n, Body=chunk)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    done = s3.complete_multipart_upload(Bucket=s3.bucket, Key="m", UploadId=upload, MultipartUpload={"Parts": parts})
    assert done["ETag"].endswith('-2"')
    got = s3.get_object(Bucket=s3.bucket, Key="m")
    assert got["Body"].read() == b"a" * (5 * MiB) + b"b" * 10 and got["ContentType"] == "text/plain"

    aborted = s3.create_multipart_upload(Bucket=s3.bucket, Key="n")["UploadId"]
    s3.upload_part(Bucket=s3.bucket, Key="n", UploadId=aborted, PartNumber=1, Body=b"zz")
    s3.abort_multipart_upload(Bucket=s3.bucket, Key="n", UploadId=aborted)
    with pytest.raises(ClientError) as info:
        s3.upload_part(Bucket=s3.bucket, Key="n", UploadId=aborted, PartNumber=2, Body=b"zz")
    # S3 answers NoSuchUpload; moto 5.2 fails with a 500 there, so only the local endpoint is held to it.
    assert code(info) == ("NoSuchUpload" if s3.kind == "local" else "500")
    assert "n" not in [o["Key"] for o in s3.list_objects_v2(Bucket=s3.bucket).get("Contents", [])]


def refused_completion(s3, case: str) -> str:
    """Start an upload of two parts, complete it the way ``case`` says S3 refuses; the error code."""
    upload = s3.create_multipart_upload(Bucket=s3.bucket, Key="m")["UploadId"]
    first = b"a" * (10 if case == "small" else 5 * MiB)
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(Bucket=s3.bucket, Key="m", UploadId=upload, PartNumber=n, Body=body)["ETag"],
        }
        for n, body in ((1, first), (2, b"b" * 10))
    ]
    if case == "etag":
        parts[1]["ETag"] = '"0123456789abcdef0123456789abcdef"'
    if case == "order":
        parts.reverse()
    with pytest.raises(ClientError) as info:
        s3.complete_multipart_upload(
            Bucket=s3.bucket, Key="other" if case == "key" else "m", UploadId=upload, MultipartUpload={"Parts": parts}
        )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=s3.bucket).get("Contents", [])] == []  # nothing stored
    return code(info)


@pytest.mark.parametrize("case, expected", [("small", "EntityTooSmall"), ("etag", "InvalidPart")])
def test_a_multipart_upload_s3_would_refuse_is_refused(s3, case, expected):
    """As S3 and moto refuse them: a part but the last under 5 MiB, a part's wrong ETag."""
    assert refused_completion(s3, case) == expected


@pytest.mark.parametrize("case, expected", [("order", "InvalidPartOrder"), ("key", "NoSuchUpload")])
def test_parts_out_of_order_or_another_key_are_refused_as_s3_documents(local, case, expected):
    """S3's documented answers (moto 5.2 accepts both, so only the local endpoint is held to them)."""
    assert refused_completion(local, case) == expected


KEYS = ["a/1", "a/2", "a/b/3", "b/1", "c", "d e/ü+x", "z/1", "z/2"]


def fill(s3) -> None:
    for key in KEYS:
        put(s3, key)


def test_list_v2_pages_with_continuation_and_url_encoding(s3):
    fill(s3)
    raw, token = [], None
    for _ in range(10):
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=s3.bucket, MaxKeys=3, EncodingType="url", **kw)
        raw += [o["Key"] for o in page.get("Contents", [])]  # url-encoded, as asked
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert "d%20e/%C3%BC%2Bx" in raw
    assert [unquote(k) for k in raw] == sorted(KEYS, key=str.encode)
    paginator = s3.get_paginator("list_objects_v2")
    keys = [
        o["Key"]
        for p in paginator.paginate(Bucket=s3.bucket, Prefix="a/", PaginationConfig={"PageSize": 1})
        for o in p.get("Contents", [])
    ]
    assert keys == ["a/1", "a/2", "a/b/3"]


def test_list_v1_with_markers(s3):
    fill(s3)
    first = s3.list_objects(Bucket=s3.bucket, MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["a/1", "a/2"] and first["IsTruncated"]
    rest = s3.list_objects(Bucket=s3.bucket, Marker="a/2")
    assert [o["Key"] for o in rest["Contents"]] == sorted(KEYS, key=str.encode)[2:]


def test_list_with_a_delimiter_pages_each_common_prefix_once(s3):
    fill(s3)
    paginator = s3.get_paginator("list_objects_v2")
    prefixes, keys = [], []
    for page in paginator.paginate(Bucket=s3.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert prefixes == ["a/", "b/", "d e/", "z/"] and keys == ["c"]
    nested = s3.list_objects_v2(Bucket=s3.bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in nested["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/b/"]


def test_copy_keeps_or_replaces_metadata(s3):
    put(s3, "src", b"data", ContentType="text/csv", Metadata={"v": "1"})
    s3.copy_object(Bucket=s3.bucket, Key="dst", CopySource={"Bucket": s3.bucket, "Key": "src"})
    kept = s3.head_object(Bucket=s3.bucket, Key="dst")
    assert kept["Metadata"] == {"v": "1"} and kept["ContentType"] == "text/csv"
    s3.copy_object(
        Bucket=s3.bucket,
        Key="dst2",
        CopySource={"Bucket": s3.bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"v": "2"},
        ContentType="text/plain",
    )
    replaced = s3.head_object(Bucket=s3.bucket, Key="dst2")
    assert replaced["Metadata"] == {"v": "2"} and replaced["ContentType"] == "text/plain"
    assert s3.get_object(Bucket=s3.bucket, Key="dst2")["Body"].read() == b"data"


def test_delete_one_and_many(s3):
    fill(s3)
    s3.delete_object(Bucket=s3.bucket, Key="c")
    s3.delete_object(Bucket=s3.bucket, Key="never-there")  # S3 says 204 for a missing key too
    out = s3.delete_objects(Bucket=s3.bucket, Delete={"Objects": [{"Key": "a/1"}, {"Key": "a/b/3"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a/1", "a/b/3"]
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert left == [k for k in sorted(KEYS, key=str.encode) if k not in ("c", "a/1", "a/b/3")]


def test_buckets(s3):
    assert s3.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=s3.bucket)
    if s3.kind == "local":  # moto 5.2 creates a bucket of any name
        with pytest.raises(ClientError) as info:
            s3.create_bucket(Bucket="Bad_Name")
        assert code(info) == "InvalidBucketName"
    put(s3, "x")
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=s3.bucket)
    assert code(info) == "BucketNotEmpty"
    s3.delete_object(Bucket=s3.bucket, Key="x")
    s3.delete_bucket(Bucket=s3.bucket)
    with pytest.raises(ClientError) as info:
        s3.head_bucket(Bucket=s3.bucket)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# --------------------------------------------------------------------------- the local store only
@pytest.fixture
def local(local_endpoint):
    client = local_endpoint.client()
    client.bucket = f"l-{uuid.uuid4().hex[:12]}"  # type: ignore[attr-defined]
    client.create_bucket(Bucket=client.bucket)
    return client


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "a//b", "./a", "a/.", "/abs"])
def test_keys_a_file_system_cannot_hold_are_refused(local, key):
    with pytest.raises(ClientError) as info:
        put(local, key)
    assert code(info) == "InvalidArgument" and "cannot store the key" in info.value.response["Error"]["Message"]


def test_error_bodies_are_s3_xml_with_code_message_and_fields(local_endpoint):
    import urllib.request

    path = f"/{local_endpoint.bucket}/nope"
    request = urllib.request.Request(
        local_endpoint.endpoint_url + path, headers=signed_headers(local_endpoint, "GET", path)
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    body = info.value.read().decode()
    assert info.value.code == 404
    assert "<Code>NoSuchKey</Code>" in body and "<Message>The specified key does not exist.</Message>" in body
    assert "<Key>nope</Key>" in body


def test_other_services_are_refused_not_faked(local_endpoint):
    keys = local_endpoint.credentials.as_boto()
    sqs = boto3.session.Session(region_name="us-east-1", **keys).client("sqs", endpoint_url=local_endpoint.endpoint_url)
    with pytest.raises(ClientError) as info:
        sqs.list_queues()
    assert "serves S3 only" in str(info.value)
    sts = boto3.session.Session(region_name="us-east-1", **keys).client("sts", endpoint_url=local_endpoint.endpoint_url)
    assert sts.get_caller_identity()["Account"] == "123456789012"
    with pytest.raises(ClientError):
        sts.get_session_token()


def test_a_refused_request_with_a_body_leaves_the_connection_usable(local_endpoint):
    """A PUT refused before its body is read (bad key) must not leave the body to be parsed as a request."""
    host, port = local_endpoint.endpoint_url.rsplit("//", 1)[1].split(":")
    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 4
    put_path, head_path = f"/{local_endpoint.bucket}/a//b", f"/{local_endpoint.bucket}"

    def request(method: str, path: str, data: bytes = b"") -> bytes:
        headers = signed_headers(local_endpoint, method, path, data) | {"Content-Length": str(len(data))}
        return (
            f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        ).encode() + data

    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request("PUT", put_path, body))
        conn.sendall(request("HEAD", head_path))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"400", b"200"], data  # the refusal, then the HEAD: nothing smuggled in between


def test_a_listing_never_leaves_the_bucket(s3):
    put(s3, "a/1")
    for prefix in ("../../../../../etc/pass", "a/../../", "../", "a/./", "//etc"):
        page = s3.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
        assert page.get("Contents", []) == [] and page.get("CommonPrefixes", []) == [], prefix


def test_a_key_and_the_same_key_with_a_slash_are_not_one_file(local):
    put(local, "alias", b"the object")
    with pytest.raises(ClientError) as info:
        put(local, "alias/", b"")  # S3 holds both; a file system cannot: refused, never overwritten
    assert code(info) == "InvalidArgument"
    assert local.get_object(Bucket=local.bucket, Key="alias")["Body"].read() == b"the object"


def test_a_key_under_an_object_is_refused_with_s3s_kind_of_answer_not_a_500(local):
    put(local, "x", b"the object")
    with pytest.raises(ClientError) as info:
        put(local, "x/y", b"under it")
    message = info.value.response["Error"]["Message"]
    assert code(info) == "InvalidArgument" and info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "'x' is already an object, so 'x/y' cannot be stored under it" in message and "/tmp" not in message
    assert local.get_object(Bucket=local.bucket, Key="x")["Body"].read() == b"the object"


@pytest.mark.parametrize(
    "key, says", [("a/" + "k" * 300, "a key segment over 200 bytes"), ("k/" * 520, "Your key is too long")]
)
def test_a_key_too_long_is_s3s_key_too_long_error_without_the_machines_path(local, key, says):
    with pytest.raises(ClientError) as info:
        put(local, key)
    assert code(info) == "KeyTooLongError" and info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert says in info.value.response["Error"]["Message"] and "/tmp" not in str(info.value.response)


def test_under_concurrent_overwrites_every_get_has_the_etag_of_its_own_bytes(local):
    import hashlib
    import threading

    bodies = [bytes([n]) * (1000 + n) for n in range(8)]
    put(local, "hot", bodies[0])
    stop = threading.Event()

    def overwrite():
        n = 0
        while not stop.is_set():
            put(local, "hot", bodies[n % len(bodies)])
            n += 1

    writers = [threading.Thread(target=overwrite) for _ in range(3)]
    for writer in writers:
        writer.start()
    try:
        wrong = 0
        for _ in range(150):
            got = local.get_object(Bucket=local.bucket, Key="hot")
            wrong += got["ETag"].strip('"') != hashlib.md5(got["Body"].read()).hexdigest()
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert wrong == 0


def test_keys_that_look_like_a_file_being_written_are_refused(local):
    with pytest.raises(ClientError) as info:
        put(local, "x.1234abcd.smstep-partial")
    assert code(info) == "InvalidArgument"


# ======================================================================================
# Only the run's own signed requests get in (the endpoint listens where any local user can connect)
# ======================================================================================
def _status(request) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_an_unsigned_request_is_refused_and_reveals_nothing(local):
    import urllib.request

    put(local, "secret.txt", b"the token")
    base = f"{local.meta.endpoint_url}/{local.bucket}"
    for request in (
        urllib.request.Request(f"{base}/secret.txt"),
        urllib.request.Request(f"{base}?list-type=2"),
        urllib.request.Request(f"{base}/planted.pkl", data=b"cos\nsystem\n", method="PUT"),
    ):
        status, body = _status(request)
        assert status == 403 and "<Code>AccessDenied</Code>" in body and "the token" not in body
        assert "signed with the run's credentials" in body
    keys = [o["Key"] for o in local.list_objects_v2(Bucket=local.bucket)["Contents"]]
    assert "planted.pkl" not in keys


def test_a_read_is_recorded_before_it_is_answered(local_endpoint, monkeypatch):
    """What a step read decides whether its cached result may be reused: a read recorded after the answer
    could be missed when the step ends right after it (and this suite's own check of the records raced)."""
    from jupyter_smstep.local.s3 import http

    recorded_when_answered = []
    answer = http.Handler.send_response

    def send_response(self, code, message=None):
        if self.command == "GET":
            recorded_when_answered.append(list(self.server.reads))
        return answer(self, code, message)

    monkeypatch.setattr(http.Handler, "send_response", send_response)
    caller = local_endpoint.caller("9")
    step = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id=caller, aws_secret_access_key=local_endpoint.credentials.secret_key
    ).client("s3", endpoint_url=local_endpoint.endpoint_url)
    step.put_object(Bucket=local_endpoint.bucket, Key="read-me.txt", Body=b"x")
    step.get_object(Bucket=local_endpoint.bucket, Key="read-me.txt")
    assert recorded_when_answered and recorded_when_answered[-1][-1] == (caller, local_endpoint.bucket, "read-me.txt")


def test_a_wrong_secret_an_unknown_key_and_an_old_signature_are_refused(local_endpoint, monkeypatch):
    import datetime

    import botocore.auth

    def client(**keys):
        return boto3.session.Session(region_name="us-east-1", **keys).client(
            "s3", endpoint_url=local_endpoint.endpoint_url, config=Config(retries={"max_attempts": 1})
        )

    right = local_endpoint.credentials
    cases = [
        ({"aws_access_key_id": right.access_key, "aws_secret_access_key": "x" * 40}, "SignatureDoesNotMatch"),
        ({"aws_access_key_id": "smstep-local", "aws_secret_access_key": "smstep-local"}, "InvalidAccessKeyId"),
        (
            {"aws_access_key_id": right.access_key + "-a.b", "aws_secret_access_key": right.secret_key},
            "InvalidAccessKeyId",
        ),  # a step's key is the run's with a plain suffix
        (
            {"aws_access_key_id": right.access_key[:-1] + "-1", "aws_secret_access_key": right.secret_key},
            "InvalidAccessKeyId",
        ),
        ({"aws_access_key_id": local_endpoint.caller("1"), "aws_secret_access_key": "x" * 40}, "SignatureDoesNotMatch"),
    ]
    step = client(aws_access_key_id=local_endpoint.caller("7"), aws_secret_access_key=right.secret_key)
    step.put_object(Bucket=local_endpoint.bucket, Key="mine.txt", Body=b"x")  # a step's own key is served
    step.get_object(Bucket=local_endpoint.bucket, Key="mine.txt")
    assert local_endpoint.reads_by(local_endpoint.caller("7")) == [(local_endpoint.bucket, "mine.txt")]
    assert local_endpoint.reads_by(local_endpoint.caller("8")) == []
    for keys, expected in cases:
        with pytest.raises(ClientError) as info:
            client(**keys).list_objects_v2(Bucket=local_endpoint.bucket)
        assert code(info) == expected
    # A signature made 20 minutes ago (a replayed request) is too old, as on AWS.
    real_now = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real_now() - datetime.timedelta(minutes=20))
    with pytest.raises(ClientError) as info:
        client(**right.as_boto()).list_objects_v2(Bucket=local_endpoint.bucket)
    assert code(info) == "RequestTimeTooSkewed"


def test_a_body_that_is_not_what_was_signed_is_not_stored(local, local_endpoint):
    import http.client

    put(local, "model.pkl", b"the real model")
    endpoint = local.meta.endpoint_url
    path = f"/{local.bucket}/model.pkl"
    headers = signed_headers(local_endpoint, "PUT", path, b"the real model")
    assert headers["X-Amz-Content-SHA256"] == hashlib.sha256(b"the real model").hexdigest()  # signed, so checked
    connection = http.client.HTTPConnection(endpoint.split("//", 1)[1], timeout=10)
    connection.request("PUT", path, body=b"a planted one", headers=headers)  # signed for another body
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in body
    assert local.get_object(Bucket=local.bucket, Key="model.pkl")["Body"].read() == b"the real model"


def test_presigned_urls_work_until_they_expire_and_signature_v2_is_explained(local, local_endpoint):
    import urllib.request

    put(local, "shared.txt", b"shared")
    v4 = boto3.session.Session(region_name="us-east-1", **local_endpoint.credentials.as_boto()).client(
        "s3", endpoint_url=local.meta.endpoint_url, config=Config(signature_version="s3v4")
    )
    url = v4.generate_presigned_url("get_object", Params={"Bucket": local.bucket, "Key": "shared.txt"})
    assert _status(urllib.request.Request(url)) == (200, "shared")
    expired = v4.generate_presigned_url(
        "get_object", Params={"Bucket": local.bucket, "Key": "shared.txt"}, ExpiresIn=-1
    )
    status, body = _status(urllib.request.Request(expired))
    assert status == 403 and "Request has expired" in body
    v2 = boto3.session.Session(region_name="us-east-1", **local_endpoint.credentials.as_boto()).client(
        "s3", endpoint_url=local.meta.endpoint_url, config=Config(signature_version="s3")
    )
    status, body = _status(
        urllib.request.Request(
            v2.generate_presigned_url("get_object", Params={"Bucket": local.bucket, "Key": "shared.txt"})
        )
    )
    assert status == 403 and "Signature Version 2 is not accepted" in body and "s3v4" in body
