"""The local runner: real SDK, real entry point, one process per step.

Step functions are made the way the compiler makes them: compiled from source
in a ``__main__`` namespace, so cloudpickle ships them by value, as it does for
notebook cells. Each pipeline runs through ``run_pipeline`` end to end: build
against the embedded S3, execute the JSON definition, read results back.
Scenarios that fail share one run (a module fixture) to keep the file fast.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import pytest

from jupyter_smstep import local
from jupyter_smstep.local import results as local_results
from jupyter_smstep import sdk
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.core.parameters import coerce
from jupyter_smstep.text import TerminalProgress
from jupyter_smstep.local.definition import Resolver, parse_steps, resolve_parameters
from jupyter_smstep.local.environment import check_pre_execution_script, check_requirements_text
from jupyter_smstep.local.s3.server import LocalS3

from helpers.constants import STEP_KW as KW, cell


pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")


@pytest.fixture(scope="module")
def S():
    return sdk.load()


def run(build, tmp_path, **kwargs) -> local.RunResult:
    events: list[local.StepEvent] = kwargs.pop("events", [])
    return local.run_pipeline(build, runs_dir=tmp_path / "runs", on_event=events.append, **kwargs)


# ======================================================================================
# Values flow: chain, parameters, diamond
# ======================================================================================
CHAIN = cell(
    """
def load(n):
    return {"rows": list(range(n))}

def square(rows):
    return {"squares": [r * r for r in rows]}

def total(squares, scale):
    return {"total": sum(squares) * scale}
""",
    "chain",
)


def chain_build(S, default_n=4):
    def build(session):
        n = S.ParameterInteger(name="N", default_value=default_n)
        scale = S.ParameterFloat(name="Scale", default_value=1.0)
        loaded = S.step(CHAIN["load"], name="load", **KW)(n)
        squared = S.step(CHAIN["square"], name="square", **KW)(loaded["rows"])
        summed = S.step(CHAIN["total"], name="total", **KW)(squared["squares"], scale)
        return S.Pipeline(name="chain", steps=[summed], parameters=[n, scale], sagemaker_session=session)

    return build


@pytest.fixture(scope="module")
def chain_run(S, tmp_path_factory):
    events: list = []
    result = run(chain_build(S), tmp_path_factory.mktemp("chain"), events=events)
    return result, events


def test_chain_passes_values_between_steps(chain_run):
    result, _ = chain_run
    assert result.succeeded, result.to_json()
    assert result.outputs("load") == {"rows": [0, 1, 2, 3]}
    assert result.outputs("square") == {"squares": [0, 1, 4, 9]}
    assert result.outputs("total") == {"total": 14.0}
    assert [s.state for s in result.steps.values()] == ["succeeded"] * 3
    assert all(s.attempts == 1 and s.duration > 0 for s in result.steps.values())


def test_run_folder_keeps_definition_logs_results_and_s3(chain_run):
    result, _ = chain_run
    run_dir = result.run_dir
    assert json.loads((run_dir / "definition.json").read_text())["Steps"]
    assert result.definition["Parameters"][0]["Name"] == "N"
    for name, step in result.steps.items():
        assert (run_dir / "steps" / name / "step.json").is_file()
        log = Path(step.log_path).read_text()
        assert "Invoking the function" in log  # the SDK's own entry point ran
        payload = local_results.local_path(run_dir, step.output_uri) / "payload.pkl"
        assert payload.is_file()
    # the pickled functions the build uploaded are kept too
    assert list((run_dir / "s3").rglob("function/payload.pkl"))


def test_events_and_terminal_progress(chain_run):
    result, events = chain_run
    states = [(e.step, e.state) for e in events if e.kind == "state"]
    for name in ("load", "square", "total"):
        mine = [s for step, s in states if step == name]
        assert mine == ["pending", "running", "succeeded"], mine
    runs = [e for e in events if e.kind == "run"]
    assert [e.state for e in runs] == ["running", "succeeded"]
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    for event in events:
        progress(event)
    text = stream.getvalue()
    assert "total" in text and "succeeded" in text and "run succeeded" in text


def test_to_json_and_load_run(chain_run, tmp_path):
    result, _ = chain_run
    data = result.to_json()
    assert data["succeeded"] is True
    assert data["steps"]["total"]["outputs"] == {"total": "14.0"}
    assert data["steps"]["load"]["state"] == "succeeded"
    json.dumps(data)
    again = local.load_run(result.run_dir)
    assert again.run_id == result.run_id
    assert again.outputs("total") == {"total": 14.0}
    assert {n: s.state for n, s in again.steps.items()} == {n: s.state for n, s in result.steps.items()}
    assert local.latest_run(result.run_dir.parent).run_id == result.run_id
    with pytest.raises(SmstepError, match="no step 'nope'"):
        again.outputs("nope")


def test_parameters_override_and_are_checked(S, tmp_path):
    pipeline = chain_build(S)(None)  # a Pipeline object works too: its session is swapped for the run
    result = run(pipeline, tmp_path, parameters={"N": "3", "Scale": 2})
    assert result.succeeded
    assert result.parameters == {"N": 3, "Scale": 2.0}
    assert result.outputs("total") == {"total": 10.0}
    with pytest.raises(SmstepError, match="unknown parameter 'M'"):
        run(chain_build(S), tmp_path, parameters={"M": 1})
    with pytest.raises(SmstepError, match="parameter 'N' is an integer; 'many' is not"):
        run(chain_build(S), tmp_path, parameters={"N": "many"})


DIAMOND = cell(
    """
import time

def start():
    return {"x": 1}

def left(x):
    began = time.time()
    time.sleep(1.5)
    return {"l": x + 1, "window": (began, time.time())}

def right(x):
    began = time.time()
    time.sleep(1.5)
    return {"r": x + 2, "window": (began, time.time())}

def join(l, r):
    return {"sum": l + r}
""",
    "diamond",
)


def test_diamond_branches_run_in_parallel(S, tmp_path):
    def build(session):
        a = S.step(DIAMOND["start"], name="start", **KW)()
        b = S.step(DIAMOND["left"], name="left", **KW)(a["x"])
        c = S.step(DIAMOND["right"], name="right", **KW)(a["x"])
        d = S.step(DIAMOND["join"], name="join", **KW)(b["l"], c["r"])
        return S.Pipeline(name="diamond", steps=[d], sagemaker_session=session)

    result = run(build, tmp_path, max_workers=2)
    assert result.succeeded, result.to_json()
    assert result.outputs("join") == {"sum": 5}
    (l0, l1), (r0, r1) = result.outputs("left")["window"], result.outputs("right")["window"]
    assert max(l0, r0) < min(l1, r1), "the two branches' functions did not overlap in time"
    left, right, join = result.steps["left"], result.steps["right"], result.steps["join"]
    assert max(left.started, right.started) < min(left.ended, right.ended)
    assert join.started >= max(left.ended, right.ended)


# ======================================================================================
# Failures: one run with several independent broken branches
# ======================================================================================
BROKEN = cell(
    """
import os, subprocess, threading, time

def root():
    return {"v": 41}

def explode(v):
    value = v + 1
    raise ValueError(f"bad value {value}")

def after_explode(x):
    return {"never": x}

def fine(v):
    return {"ok": v * 2}

def open_handle(v, path):
    handle = open(path, "w")
    return {"handle": handle, "plain": v}

def reads_missing(v):
    return {"w": v + not_defined_anywhere}

def uses_local_module(v):
    return {"y": smstep_test_helpers.double(v)}

def sleeps(v, pid_file):
    child = subprocess.Popen(["sleep", "60"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
    return {"slept": v}
""",
    "broken",
)


@pytest.fixture(scope="module")
def broken_run(S, tmp_path_factory):
    import importlib
    import sys

    folder = tmp_path_factory.mktemp("broken")
    pid_file = str(folder / "grandchild.pid")
    # A module importable from the notebook's folder only: cloudpickle ships it by reference.
    (folder / "smstep_test_helpers.py").write_text("def double(v):\n    return 2 * v\n")
    sys.path.insert(0, str(folder))
    BROKEN["smstep_test_helpers"] = importlib.import_module("smstep_test_helpers")

    def build(session):
        r = S.step(BROKEN["root"], name="root", **KW)()
        e = S.step(BROKEN["explode"], name="explode", **KW)(r["v"])
        after = S.step(BROKEN["after_explode"], name="after_explode", **KW)(e)
        ok = S.step(BROKEN["fine"], name="fine", **KW)(r["v"])
        handle = S.step(BROKEN["open_handle"], name="open_handle", **KW)(r["v"], str(folder / "h.txt"))
        missing = S.step(BROKEN["reads_missing"], name="reads_missing", **KW)(r["v"])
        slow = S.step(BROKEN["sleeps"], name="sleeps", max_runtime_in_seconds=2, **KW)(r["v"], pid_file)
        module = S.step(BROKEN["uses_local_module"], name="uses_local_module", **KW)(r["v"])
        return S.Pipeline(name="broken", steps=[after, ok, handle, missing, slow, module], sagemaker_session=session)

    t = time.time()
    try:
        # The step functions handed to the runner: failures point at their files and lines.
        functions = {
            name: BROKEN[name]
            for name in (
                "root",
                "explode",
                "after_explode",
                "fine",
                "open_handle",
                "reads_missing",
                "sleeps",
                "uses_local_module",
            )
        }
        result = run(build, folder, functions=functions)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("smstep_test_helpers", None)
    return result, time.time() - t, pid_file


def test_failure_skips_dependents_and_lets_other_branches_finish(broken_run):
    result, _, _ = broken_run
    assert not result.succeeded
    states = {n: s.state for n, s in result.steps.items()}
    assert states["root"] == "succeeded"
    assert states["explode"] == "failed"
    assert states["after_explode"] == "skipped"
    assert result.steps["after_explode"].skipped_because == "explode"
    assert states["fine"] == "succeeded"
    assert result.outputs("fine") == {"ok": 82}


def test_failure_reports_the_users_exception_and_traceback(broken_run):
    result, _, _ = broken_run
    step = result.steps["explode"]
    assert step.failure_type == "AlgorithmError"
    assert step.summary == "ValueError: bad value 42"
    assert "ValueError: bad value 42" in step.error
    assert "line 8, in explode" in step.error  # the user's own frame ...
    assert 'raise ValueError(f"bad value {value}")' in step.error  # ... with its source line
    assert "invoke_function" not in step.error and "stored_function" not in step.error
    exc = result.exception("explode")  # the exception the SDK pickled to S3
    assert isinstance(exc, ValueError) and str(exc) == "bad value 42"


def test_unpicklable_output_names_the_step_and_output(broken_run):
    result, _, _ = broken_run
    step = result.steps["open_handle"]
    assert step.state == "failed"
    assert "cannot be pickled" in step.summary
    assert "output 'handle'" in step.summary and "'plain'" not in step.summary
    assert "step 'open_handle'" in step.error
    assert "serialization.py" not in step.error


def test_missing_variable_names_the_step_and_variable(broken_run):
    result, _, _ = broken_run
    step = result.steps["reads_missing"]
    assert step.state == "failed"
    assert "not_defined_anywhere" in step.summary
    assert "step 'reads_missing' reads 'not_defined_anywhere'" in step.error


def test_module_only_importable_from_the_notebook_folder_fails_as_on_sagemaker(broken_run):
    result, _, _ = broken_run
    step = result.steps["uses_local_module"]
    assert step.state == "failed"
    assert "could not load its code" in step.summary and "smstep_test_helpers" in step.summary
    assert "fresh process, like a SageMaker container" in step.error


def test_max_runtime_kills_the_step_and_its_children(broken_run):
    result, elapsed, pid_file = broken_run
    step = result.steps["sleeps"]
    assert step.state == "failed"
    assert step.failure_type == "MaxRuntimeExceeded"
    assert "max_runtime_in_seconds=2" in step.summary
    assert step.duration < 2 + local.TERMINATION_GRACE_SECONDS + 3
    assert elapsed < 40  # nobody waited for the 60 s sleep
    grandchild = int(Path(pid_file).read_text())
    for _ in range(50):
        if not _alive(grandchild):
            break
        time.sleep(0.1)
    assert not _alive(grandchild), "the step's own subprocess survived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_failed_run_to_json_carries_errors(broken_run):
    result, _, _ = broken_run
    data = result.to_json()
    assert data["succeeded"] is False
    assert data["steps"]["explode"]["state"] == "failed"
    assert "bad value 42" in data["steps"]["explode"]["error"]
    assert data["steps"]["after_explode"]["skipped_because"] == "explode"


def test_unpicklable_captured_value_is_named_at_build(S, tmp_path):
    ns = cell(
        """
import threading
lock = threading.Lock()

def uses_lock():
    with lock:
        return {"x": 1}
""",
        "lock",
    )

    def build(session):
        s = S.step(ns["uses_lock"], name="uses_lock", **KW)()
        return S.Pipeline(name="locky", steps=[s], sagemaker_session=session)

    with pytest.raises(SmstepError) as info:
        run(build, tmp_path)
    text = str(info.value)
    assert "step 'uses_lock'" in text and "'lock'" in text and "cannot be pickled" in text


# ======================================================================================
# Retries: what SageMaker retries, and what it does not
# ======================================================================================
FLAKY = cell(
    """
import os

def counted(marker):
    with open(marker, "a") as f:
        f.write("ran\\n")
    return {"runs": open(marker).read().count("ran")}

def flaky_user_code(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return {"ok": True}
""",
    "flaky",
)


def test_retry_strategy_and_policies(S, tmp_path):
    internal = S.SageMakerJobStepRetryPolicy(
        failure_reason_types=[_enum(S, "INTERNAL_ERROR")], max_attempts=1, interval_seconds=1, backoff_rate=1.0
    )
    capacity = S.SageMakerJobStepRetryPolicy(
        failure_reason_types=[_enum(S, "CAPACITY_ERROR")], max_attempts=2, interval_seconds=1, backoff_rate=1.0
    )
    service = S.StepRetryPolicy(exception_types=[S.StepExceptionTypeEnum.SERVICE_FAULT], max_attempts=3)

    def build(session):
        steps = [
            # one internal error: the training job's own RetryStrategy (1 retry) absorbs it
            S.step(FLAKY["counted"], name="job_retry", **KW)(str(tmp_path / "m1")),
            # two internal errors: RetryStrategy, then the pipeline's retry policy (a new job)
            S.step(FLAKY["counted"], name="policy_retry", retry_policies=[internal], **KW)(str(tmp_path / "m2")),
            # capacity errors are not the job's to retry; the policy retries them
            S.step(FLAKY["counted"], name="capacity", retry_policies=[capacity], **KW)(str(tmp_path / "m3")),
            S.step(FLAKY["counted"], name="capacity_no_policy", **KW)(str(tmp_path / "m4")),
            # an exception from the user's code: SageMaker never retries it
            S.step(FLAKY["flaky_user_code"], name="user_error", retry_policies=[service, internal], **KW)(
                str(tmp_path / "m5")
            ),
        ]
        return S.Pipeline(name="retries", steps=steps, sagemaker_session=session)

    faults = {
        "job_retry": ["SageMaker.JOB_INTERNAL_ERROR"],
        "policy_retry": ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.JOB_INTERNAL_ERROR"],
        "capacity": ["SageMaker.CAPACITY_ERROR", "SageMaker.CAPACITY_ERROR"],
        "capacity_no_policy": ["SageMaker.CAPACITY_ERROR"],
    }
    events: list = []
    result = run(build, tmp_path, faults=faults, events=events)
    steps = result.steps
    assert steps["job_retry"].state == "succeeded" and steps["job_retry"].attempts == 2
    assert result.outputs("job_retry") == {"runs": 1}  # the failed attempt never ran the function
    assert steps["policy_retry"].state == "succeeded" and steps["policy_retry"].attempts == 3
    assert steps["capacity"].state == "succeeded" and steps["capacity"].attempts == 3
    assert steps["capacity_no_policy"].state == "failed"
    assert steps["capacity_no_policy"].failure_type == "SageMaker.CAPACITY_ERROR"
    user = steps["user_error"]
    assert user.state == "failed" and user.attempts == 1
    assert "first attempt fails" in user.error and "not retried" in user.summary
    retries = [e for e in events if e.kind == "retry"]
    assert {e.step for e in retries} == {"job_retry", "policy_retry", "capacity"}
    gaps = [a["started"] - b["ended"] for a, b in zip(steps["capacity"].attempt_log[1:], steps["capacity"].attempt_log)]
    assert all(g >= 0.9 for g in gaps), gaps  # IntervalSeconds honoured
    with pytest.raises(SmstepError, match="unknown fault"):
        local.run_pipeline(build, runs_dir=tmp_path, faults={"job_retry": ["Oops"]})


def _enum(S, name):
    policy_module = __import__(S.SageMakerJobStepRetryPolicy.__module__, fromlist=["x"])
    return getattr(policy_module.SageMakerJobExceptionTypeEnum, name)


# ======================================================================================
# Environment checks, byte-for-byte payloads
# ======================================================================================
def test_requirements_and_pre_execution_commands_are_checked_not_installed(S, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=1.0\nnumpy>=999\nsurely-not-installed-pkg==1.0\n")
    ns = cell(
        """
def plain():
    return {"ok": 1}
""",
        "deps",
    )

    def build(session):
        s = S.step(
            ns["plain"],
            name="deps",
            dependencies=str(requirements),
            pre_execution_commands=["pip install leftpad==9.9.9", "apt-get install -y graphviz"],
            **KW,
        )()
        return S.Pipeline(name="deps", steps=[s], sagemaker_session=session)

    events: list = []
    result = run(build, tmp_path, events=events)
    assert result.succeeded  # warnings, not failures: the step runs in this environment
    warnings = "\n".join(result.steps["deps"].warnings)
    assert "'numpy>=999' is required but numpy" in warnings
    assert "'surely-not-installed-pkg' is required" in warnings
    assert "'leftpad' is required" in warnings
    assert "apt-get install -y graphviz" in warnings and "not run locally" in warnings
    assert "numpy>=1.0" not in warnings
    assert [e for e in events if e.kind == "warning"]


def test_local_payloads_are_byte_for_byte_what_submit_uploads(S, tmp_path):
    """Build once against the local S3 (and run it), once against a moto "remote" S3:
    the function and argument payloads, and the SDK's recorded sha256, are identical."""
    from moto.server import ThreadedMotoServer

    import boto3

    result = run(chain_build(S), tmp_path)
    assert result.succeeded
    local_hashes = _payload_hashes(result.run_dir / "s3")

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket="remote-bucket")
        session = sdk.make_session(region="us-east-1", bucket="remote-bucket", endpoint_url=url)
        chain_build(S)(session).definition()
        remote_dir = tmp_path / "remote"
        for obj in client.list_objects_v2(Bucket="remote-bucket")["Contents"]:
            dest = remote_dir / "remote-bucket" / obj["Key"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file("remote-bucket", obj["Key"], str(dest))
    finally:
        server.stop()
    remote_hashes = _payload_hashes(remote_dir)
    assert set(local_hashes) == {(s, kind) for s in ("load", "square", "total") for kind in ("function", "arguments")}
    assert local_hashes == remote_hashes


def _payload_hashes(root: Path) -> dict:
    """(step, function|arguments) -> sha256 of payload.pkl, checked against metadata.json's sha256_hash."""
    hashes = {}
    for payload in root.rglob("payload.pkl"):
        kind = payload.parent.name
        if kind not in ("function", "arguments"):
            continue
        step = payload.parent.parent.parent.name  # <pipeline>/<step>/<build time>/<kind>/payload.pkl
        digest = hashlib.sha256(payload.read_bytes()).hexdigest()
        recorded = json.loads((payload.parent / "metadata.json").read_text())["sha256_hash"]
        assert digest == recorded, f"{payload}: sha256 differs from the SDK's metadata"
        hashes[(step, kind)] = digest
    return hashes


# ======================================================================================
# Pure pieces: definition expressions, parameters, requirement parsing, the S3 endpoint
# ======================================================================================
def test_resolver_evaluates_service_expressions():
    r = Resolver({"PipelineExecutionId": "exec1"}, {"X": 3, "Flag": True})
    r.step_properties["A"] = {"OutputDataConfig": {"S3OutputPath": "s3://b/p/A/results"}, "List": [{"k": "v"}]}
    join = {
        "Std:Join": {
            "On": "/",
            "Values": [
                {"Get": "Steps.A.OutputDataConfig.S3OutputPath"},
                {"Get": "Execution.PipelineExecutionId"},
                {"Get": "Parameters.X"},
                {"Get": "Parameters.Flag"},
            ],
        }
    }
    assert r.evaluate(join) == "s3://b/p/A/results/exec1/3/true"
    assert r.evaluate({"Get": "Steps.A.List[0]['k']"}) == "v"
    r.read_s3 = lambda uri: json.dumps({"Result": {"y": [5, 6]}}).encode()
    assert r.evaluate({"Std:JsonGet": {"S3Uri": "s3://b/x.json", "Path": "Result['y'][1]"}}) == 6
    with pytest.raises(SmstepError, match="Steps.B"):
        r.evaluate({"Get": "Steps.B.OutputDataConfig.S3OutputPath"})


def test_parameters_and_step_parsing():
    definition = {
        "Parameters": [
            {"Name": "N", "Type": "Integer", "DefaultValue": 1},
            {"Name": "B", "Type": "Boolean", "DefaultValue": False},
            {"Name": "S", "Type": "String"},
        ]
    }
    assert resolve_parameters(definition, {"S": "x", "B": "true"}) == {"N": 1, "B": True, "S": "x"}
    with pytest.raises(SmstepError, match="no default value"):
        resolve_parameters(definition, {})
    assert coerce("F", float, "2.5") == 2.5
    with pytest.raises(SmstepError, match="'N' is an integer; 2.5 is not"):
        coerce("N", int, 2.5)
    with pytest.raises(SmstepError, match="Processing"):
        parse_steps({"Steps": [{"Name": "P", "Type": "Processing", "Arguments": {}}]})


def test_requirement_checks():
    warnings = check_requirements_text(
        "# comment\nnumpy>=1\nnumpy<1 ; python_version > '3'\n-r other.txt\n"
        "nope-nope-nope\nfoo ; python_version < '3'\n"
    )
    assert len(warnings) == 3
    assert any("numpy<1" in w for w in warnings) and any("-r other.txt" in w for w in warnings)
    assert any("'nope-nope-nope'" in w for w in warnings)
    script = check_pre_execution_script(
        "pip install -q --upgrade 'numpy>=1' nope-nope==1\npython -m pip install -i https://x numpy\necho hi\n"
    )
    assert len(script) == 2 and "'nope-nope'" in script[0] and "'echo hi'" in script[1]


def test_local_s3_endpoint(tmp_path):
    from boto3.s3.transfer import TransferConfig

    with LocalS3(tmp_path / "data") as s3:
        c = s3.client()
        c.put_object(Bucket=s3.bucket, Key="a/b.txt", Body=b"hello", Metadata={"k": "v"})
        got = c.get_object(Bucket=s3.bucket, Key="a/b.txt")
        assert got["Body"].read() == b"hello" and got["Metadata"] == {"k": "v"}
        assert c.get_object(Bucket=s3.bucket, Key="a/b.txt", Range="bytes=1-3")["Body"].read() == b"ell"
        assert c.head_object(Bucket=s3.bucket, Key="a/b.txt")["ContentLength"] == 5
        with pytest.raises(c.exceptions.NoSuchKey):
            c.get_object(Bucket=s3.bucket, Key="missing")
        big = os.urandom(12 * 1024 * 1024)
        source = tmp_path / "big.bin"
        source.write_bytes(big)
        config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        c.upload_file(str(source), s3.bucket, "big/x y.bin", Config=config)
        dest = tmp_path / "back.bin"
        c.download_file(s3.bucket, "big/x y.bin", str(dest), Config=config)
        assert dest.read_bytes() == big
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=s3.bucket)["Contents"]]
        assert keys == ["a/b.txt", "big/x y.bin"]
        page = c.list_objects_v2(Bucket=s3.bucket, MaxKeys=1)
        assert page["IsTruncated"] and page["KeyCount"] == 1
        rest = c.list_objects_v2(Bucket=s3.bucket, ContinuationToken=page["NextContinuationToken"])
        assert [o["Key"] for o in rest["Contents"]] == ["big/x y.bin"]
        folders = c.list_objects_v2(Bucket=s3.bucket, Delimiter="/")["CommonPrefixes"]
        assert [p["Prefix"] for p in folders] == ["a/", "big/"]
        c.delete_objects(Bucket=s3.bucket, Delete={"Objects": [{"Key": "a/b.txt"}]})
        assert s3.keys() == ["big/x y.bin"]
        c.create_bucket(Bucket="other")
        assert "other" in [b["Name"] for b in c.list_buckets()["Buckets"]]
    # the data outlives the endpoint: it was written as files
    assert (tmp_path / "data" / "smstep-local" / "big" / "x y.bin").read_bytes() == big


def test_worker_logs_live_in_the_cache_folder_and_stale_ones_are_removed(tmp_path, monkeypatch):
    from jupyter_smstep.local import worker

    monkeypatch.setenv("SMSTEP_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "workers"
    folder.mkdir(parents=True)
    stale, recent = folder / "smstep-worker-999999999-abcdef.log", folder / "smstep-worker-999999998-abcdef.log"
    mine = folder / f"smstep-worker-{os.getpid()}-abcdef.log"
    for path in (stale, recent, mine):
        path.write_text("import error\n")
    old = time.time() - 2 * worker.STALE_LOG_SECONDS
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    path = worker.worker_log_path()
    assert path.parent == folder and path.name.startswith(f"smstep-worker-{os.getpid()}-")
    assert not stale.exists()  # a day old, its runner gone
    assert recent.exists() and mine.exists()  # too recent to judge; its runner (this process) alive


def test_a_numpy_scalar_result_is_shown_by_its_value_an_array_by_its_shape():
    np = pytest.importorskip("numpy")
    assert local_results._short_repr(np.float64(6.25)) == "6.25"
    assert local_results._short_repr(np.arange(6).reshape(2, 3)) == "<ndarray shape=(2, 3) dtype=int64>"


def test_what_a_step_prints_is_streamed_as_log_events_and_folded_in_the_notebook(shell, tmp_path):
    from jupyter_smstep.panel.progress import Table

    shell.notebook(
        "printing",
        [
            "def say(x):\n    print('helper says', x)",
            "%%step talk --defer\nprint('first')\nsay(2)\nimport sys\nprint('to stderr', file=sys.stderr)\nn = 1",
        ],
    )
    result, events = shell.run_local(tmp_path / "runs")
    assert result.succeeded
    printed = [e.message for e in events if e.kind == "log" and e.step == "talk"]
    assert printed == ["first", "helper says 2", "to stderr"], printed
    table = Table()
    for event in events:
        table.update(event)
    html = table.html()
    assert "<details class='smstep-printed' data-step='talk'>" in html and "helper says 2" in html
    assert "talk printed 3 lines" in html
