"""A local run is its user's alone: another local user can neither read it, nor talk to its S3, nor
slip it a pickle; and a result is unpickled only if it is what the run's step wrote.

The second user is real: ``nobody``, in a process started with ``setuid`` (so these tests need
root, as CI has; elsewhere they are reported as skipped, never as passed). It runs Debian's own
``/usr/bin/python3`` with the standard library only, as an attacker with no access to our
virtual environment would, while the run's step waits for it to finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from jupyter_smstep import local, sdk
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.local import results as local_results

from helpers.constants import STEP_KW as KW, cell

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks"),
]
needs_second_user = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="acting as a second local user (nobody) needs root and /usr/bin/python3",
)

WAITING = cell(
    """
import os, time

def produce(ready, go):
    with open(ready, "w") as f:
        f.write(os.environ["AWS_ENDPOINT_URL"])
    deadline = time.time() + 120
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.05)
    return {"answer": 42}

def consume(answer):
    return {"double": answer * 2}
""",
    "isolation",
)

# The attacker: another local user who knows the endpoint's address (any port scan finds it) and the
# run folder's path. Standard library only; prints what each attempt got.
ATTACKER = r"""
import datetime, hashlib, hmac, json, os, sys, urllib.error, urllib.request

endpoint, run_dir, bucket = sys.argv[1:4]
report = {}

def attempt(name, fn):
    try:
        report[name] = ["allowed", fn()]
    except urllib.error.HTTPError as e:
        report[name] = ["http", e.code, e.read().decode(errors="replace")]
    except OSError as e:
        report[name] = ["os", type(e).__name__]

def read(path):
    with open(path, "rb") as f:
        return f.read(100).decode(errors="replace")

def request(method, path, body=b"", sign_with=None):
    headers = {}
    if sign_with:  # SigV4 as botocore makes it, with keys the attacker guesses
        key_id, secret = sign_with
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = endpoint.split("//", 1)[1]
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        names = ";".join(sorted(headers))
        canonical = "\n".join([method, path.split("?")[0], path.partition("?")[2], "".join(
            f"{k}:{headers[k]}\n" for k in sorted(headers)), names, payload])
        scope = f"{date}/us-east-1/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + secret).encode()
        for part in (date, "us-east-1", "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={names}, "
                                    f"Signature={signature}")
        del headers["host"]
    with urllib.request.urlopen(urllib.request.Request(endpoint + path, data=body or None, method=method,
                                                       headers=headers), timeout=10) as response:
        return response.read(300).decode(errors="replace")

attempt("read run.json", lambda: read(os.path.join(run_dir, "run.json")))
attempt("list the run folder", lambda: os.listdir(run_dir))
attempt("list the bucket", lambda: request("GET", f"/{bucket}?list-type=2"))
attempt("put a pickle", lambda: request("PUT", f"/{bucket}/planted/payload.pkl", b"cos\nsystem\n"))
attempt("list with the old fixed keys", lambda: request("GET", f"/{bucket}?list-type=2",
                                                         sign_with=("smstep-local", "smstep-local")))
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"AWS_SECRET_ACCESS_KEY" in f.read():
                    report.setdefault("read a step's credentials", ["allowed", pid])
        except OSError:
            pass
print(json.dumps(report))
"""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def _pipeline(S, ready: Path, go: Path):
    def build(session):
        produced = S.step(WAITING["produce"], name="produce", **KW)(str(ready), str(go))
        consumed = S.step(WAITING["consume"], name="consume", **KW)(produced["answer"])
        return S.Pipeline(name="isolation", steps=[consumed], sagemaker_session=session)

    return build


@pytest.fixture(scope="module")
def shared_folder():
    """A folder any user may traverse, as a home or project folder often is: only the run's own
    permissions may keep the second user out."""
    folder = Path(tempfile.mkdtemp(prefix="smstep-isolation-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_second_user
def test_another_local_user_can_neither_read_the_run_nor_use_its_s3(shared_folder):
    S = sdk.load()
    ready, go = shared_folder / "ready", shared_folder / "go"
    runs = shared_folder / "runs"
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = local.run_pipeline(_pipeline(S, ready, go), runs_dir=runs)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for(ready)
        endpoint = ready.read_text()
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
        attacker = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", ATTACKER, endpoint, str(run_dir), "smstep-local"],
            preexec_fn=_as_nobody,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    finally:
        go.touch()
        thread.join(timeout=120)
    assert attacker.returncode == 0, attacker.stderr
    report = json.loads(attacker.stdout)

    assert report["read run.json"] == ["os", "PermissionError"]
    assert report["list the run folder"] == ["os", "PermissionError"]
    for name, code in (
        ("list the bucket", "AccessDenied"),
        ("put a pickle", "AccessDenied"),
        ("list with the old fixed keys", "InvalidAccessKeyId"),
    ):
        kind, status, body = report[name]
        assert (kind, status) == ("http", 403) and f"<Code>{code}</Code>" in body, (name, report[name])
    assert "read a step's credentials" not in report

    result = outcome.get("result")
    assert result is not None, outcome.get("error")
    assert result.succeeded and result.outputs("consume") == {"double": 84}
    assert not (run_dir / "s3" / "smstep-local" / "planted").exists()
    assert (run_dir.stat().st_mode & 0o777) == 0o700


SIMPLE = cell(
    """
def first():
    return {"value": 1}
""",
    "isolation-simple",
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    S = sdk.load()

    def build(session):
        step = S.step(SIMPLE["first"], name="first", **KW)()
        return S.Pipeline(name="tamper", steps=[step], sagemaker_session=session)

    result = local.run_pipeline(build, runs_dir=tmp_path_factory.mktemp("tamper") / "runs")
    assert result.succeeded
    return result


def test_a_result_replaced_after_the_run_is_never_unpickled(finished_run, tmp_path):
    """Replacing ``payload.pkl`` and the SDK's hash beside it (what a second user did before the run
    folder was the user's alone) is caught by the hash the runner recorded when the step ended."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run.run_dir, copy)
    step = json.loads((copy / "steps" / "first" / "step.json").read_text())
    folder = local_results.local_path(copy, step["output_uri"])
    marker = tmp_path / "the pickle ran"
    planted = b"cos\nsystem\n(V touch " + str(marker).encode() + b"\ntR."
    (folder / "payload.pkl").write_bytes(planted)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256_hash"] = hashlib.sha256(planted).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))

    reopened = local.load_run(copy)
    with pytest.raises(SmstepError) as info:
        reopened.outputs("first")
    assert "changed after the step wrote it" in str(info.value) and "run the step again" in str(info.value)
    assert not marker.exists()


def test_a_result_no_run_recorded_is_never_unpickled(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run.run_dir, copy)
    step_json = copy / "steps" / "first" / "step.json"
    step = json.loads(step_json.read_text())
    assert len(step["payload_sha256"]) == 64
    step["payload_sha256"] = None  # as a run by an older jupyter_smstep left it
    step_json.write_text(json.dumps(step))
    with pytest.raises(SmstepError, match="did not record its hash"):
        local.load_run(copy).outputs("first")
    assert finished_run.outputs("first") == {"value": 1}  # the untouched run loads as before


def test_each_endpoint_has_its_own_credentials():
    import boto3
    from botocore.exceptions import ClientError

    from jupyter_smstep.local.s3 import LocalS3

    with LocalS3(region="us-east-1") as one, LocalS3(region="us-east-1") as other:
        assert one.credentials != other.credentials
        stranger = boto3.session.Session(region_name="us-east-1", **one.credentials.as_boto()).client(
            "s3", endpoint_url=other.endpoint_url
        )
        with pytest.raises(ClientError) as info:
            stranger.list_objects_v2(Bucket=other.bucket)
        assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        assert other.client().list_objects_v2(Bucket=other.bucket)["KeyCount"] == 0
