"""The execution monitor against the fake SageMaker (``helpers.fakes``) behind a real HTTP endpoint."""

from __future__ import annotations

import io
import json
import time

import pytest

from jupyter_smstep import text as views
from jupyter_smstep.remote import monitor
from jupyter_smstep.errors import SmstepError
from helpers.fakes import ACCOUNT, LOG_GROUP, REGION, FakeSageMaker, StepPlan, prepare_account


# =========================================================================== fixtures
@pytest.fixture
def fake(fake_sagemaker):
    return fake_sagemaker()


class Recorder:
    """A ``sleep`` that records delays instead of sleeping (the fake's clock ticks per poll)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def three_steps(fail: str = "", log: list[str] | None = None) -> list[StepPlan]:
    return [
        StepPlan("preprocess", [], 2),
        StepPlan("train", ["preprocess"], 3, fail=fail, log=log or []),
        StepPlan("evaluate", ["train"], 1),
    ]


# =========================================================================== tests


def test_poll_reads_status_and_steps_through_aws_endpoint_url(fake):
    arn = fake.add_execution(three_steps())
    mon = monitor.ExecutionMonitor(arn)  # no client given: boto3 honours AWS_ENDPOINT_URL
    snap = mon.poll()  # tick 1: preprocess running
    assert snap.status == "Executing"
    assert list(snap.steps) == ["preprocess"]
    step = snap.steps["preprocess"]
    assert step.status == "Executing" and step.state == "running"
    assert step.job_name.startswith("demo-preprocess-1-")
    assert step.job_arn.endswith("/" + step.job_name)
    assert step.start is not None and step.end is None
    for _ in range(6):
        snap = mon.poll()
    assert snap.succeeded and snap.done
    assert [s.name for s in snap.steps.values()] == ["preprocess", "train", "evaluate"]
    assert all(s.status == "Succeeded" and s.end is not None for s in snap.steps.values())
    assert snap.steps["train"].duration == pytest.approx(3.0)
    assert fake.ops("ListPipelineExecutionSteps")[0]["SortOrder"] == "Ascending"


def test_list_steps_follows_pagination(fake):
    fake.page_size = 2
    plans = [StepPlan(f"s{i}", [], 1) for i in range(5)]
    arn = fake.add_execution(plans)
    mon = monitor.ExecutionMonitor(arn)
    mon.poll()
    snap = mon.poll()
    assert sorted(snap.steps) == [f"s{i}" for i in range(5)]
    assert len(fake.ops("ListPipelineExecutionSteps")) >= 3 * 2


def test_failure_reason_is_on_the_failed_step_and_dependents_never_start(fake):
    arn = fake.add_execution(three_steps(fail="AlgorithmError: ValueError: bad shape"))
    mon = monitor.ExecutionMonitor(arn)
    snaps = list(mon.watch(sleep=Recorder()))
    last = snaps[-1]
    assert last.status == "Failed" and last.done and not last.succeeded
    assert "One or multiple steps failed" in last.failure_reason
    assert [s.name for s in last.failed_steps] == ["train"]
    assert last.steps["train"].failure_reason == "AlgorithmError: ValueError: bad shape"
    assert "evaluate" not in last.steps


def test_watch_backs_off_while_nothing_changes_and_resets_on_change(fake):
    arn = fake.add_execution([StepPlan("long", [], 6), StepPlan("short", ["long"], 1)])
    sleep = Recorder()
    delays = monitor.Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)
    snaps = list(monitor.ExecutionMonitor(arn).watch(delays=delays, sleep=sleep))
    assert snaps[-1].succeeded
    # 'long' runs for 6 ticks with nothing changing: 1, 2, 4, 8, 8 ...; 'short' starting resets to 1.
    assert sleep.delays[:4] == [1.0, 2.0, 4.0, 8.0]
    reset = [i for i, d in enumerate(sleep.delays) if i and d == 1.0]
    assert reset, sleep.delays
    assert all(d <= 8.0 for d in sleep.delays)


def test_throttling_backs_off_and_never_crashes(fake):
    arn = fake.add_execution(three_steps())
    # More throttles than botocore's own retries absorb: the monitor must see some and back off.
    fake.throttle["ListPipelineExecutionSteps"] = 7
    sleep = Recorder()
    delays = monitor.Backoff(initial=1.0, factor=2.0, maximum=30.0, jitter=0.0)
    out = io.StringIO()
    ok = views.follow(arn, stream=out, delays=delays, sleep=sleep)
    assert ok is True
    assert fake.throttle["ListPipelineExecutionSteps"] == 0
    assert "throttling" in out.getvalue()
    assert sleep.delays[0] >= 4.0  # a throttled poll jumps ahead (1 * 2 * 2), not the initial 1s
    assert "✓ evaluate" in out.getvalue()


def test_backoff_sequence_and_jitter():
    b = monitor.Backoff(initial=2.0, factor=1.5, maximum=10.0, jitter=0.0)
    assert [round(b.next(), 2) for _ in range(6)] == [2.0, 3.0, 4.5, 6.75, 10.0, 10.0]
    b.reset()
    assert b.next() == 2.0
    assert b.throttled() == pytest.approx(min(10.0, 3.0 * 1.5 * 2))
    jittered = monitor.Backoff(initial=10.0, jitter=0.2, rand=lambda: 1.0)
    assert jittered.next() == pytest.approx(12.0)
    it = monitor.backoff(initial=1.0, factor=2.0, maximum=4.0, jitter=0.0)
    assert [next(it) for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]


def test_stop_then_retry(fake):
    arn = fake.add_execution(three_steps())
    mon = monitor.ExecutionMonitor(arn)
    mon.poll()
    mon.poll()
    mon.poll()  # tick 3: train running
    assert mon.poll().steps["train"].status == "Executing"
    assert monitor.stop(arn) == arn
    assert fake.ops("StopPipelineExecution")[0]["ClientRequestToken"]
    snaps = list(mon.watch(sleep=Recorder()))
    assert snaps[-1].status == "Stopped"
    assert snaps[-1].steps["train"].status == "Stopped"
    assert "evaluate" not in snaps[-1].steps
    assert print_status_text(arn)[0] is False

    assert monitor.retry(arn) == arn
    snaps = list(mon.watch(sleep=Recorder()))
    last = snaps[-1]
    assert last.succeeded
    assert last.steps["train"].attempt == 2 and last.steps["train"].status == "Succeeded"
    assert last.steps["evaluate"].status == "Succeeded"


def test_retry_of_a_failed_execution_reruns_the_failed_step(fake):
    arn = fake.add_execution(three_steps(fail="ClientError: boom"))
    mon = monitor.ExecutionMonitor(arn)
    assert list(mon.watch(sleep=Recorder()))[-1].status == "Failed"
    mon.retry()
    last = list(mon.watch(sleep=Recorder()))[-1]
    assert last.succeeded and last.steps["train"].attempt == 2
    assert last.steps["train"].failure_reason == ""


def test_watch_settle_keeps_polling_an_ended_status_for_a_while(fake):
    arn = fake.add_execution([StepPlan("only", [], 1, fail="boom")])
    mon = monitor.ExecutionMonitor(arn)
    assert list(mon.watch(sleep=Recorder()))[-1].status == "Failed"
    before = len(fake.ops("DescribePipelineExecution"))
    list(mon.watch(sleep=Recorder(), settle=2))  # e.g. just after a retry the service may still say Failed
    assert len(fake.ops("DescribePipelineExecution")) - before == 3


def test_follow_prints_failure_reason_and_the_log_tail(fake):
    log = [f"line {i}" for i in range(80)] + ["Traceback (most recent call last):", "ValueError: bad shape"]
    arn = fake.add_execution(three_steps(fail="AlgorithmError: ValueError: bad shape", log=log))
    out = io.StringIO()
    ok = views.follow(arn, stream=out, sleep=Recorder(), log_lines=10)
    text = out.getvalue()
    assert ok is False
    assert (
        "https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1#/pipelines/demo/executions/" in text
    )
    assert "step 'train' failed: AlgorithmError: ValueError: bad shape" in text
    assert "| ValueError: bad shape" in text
    assert "| line 72" in text and "| line 71" not in text  # exactly the last 10 lines
    assert "execution Failed" in text


def test_log_tail_merges_streams_and_limits(fake, moto_server):
    import boto3

    logs = boto3.client("logs", region_name=REGION)  # through the fake, forwarded to moto
    try:
        logs.create_log_group(logGroupName=LOG_GROUP)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    job = "demo-train-merge-0001"
    now = int(time.time() * 1000)
    for host, offset in (("algo-1", 0), ("algo-2", 1)):
        stream = f"{job}/{host}-1700000000"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now + 2 * i + offset, "message": f"{host} {i}"} for i in range(10)],
        )
    tail = monitor.log_tail(job, n=4)
    assert tail == ["algo-1 8", "algo-2 8", "algo-1 9", "algo-2 9"]
    assert monitor.log_tail("no-such-job", n=5) == []


def test_log_tail_without_the_log_group_is_empty(moto_server, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    logs = boto3.client("logs", region_name=REGION)
    if any(g["logGroupName"] == LOG_GROUP for g in logs.describe_log_groups().get("logGroups", [])):
        logs.delete_log_group(logGroupName=LOG_GROUP)
    assert monitor.log_tail("demo-train", n=5) == []


def test_print_status_running_and_succeeded(fake):
    arn = fake.add_execution(three_steps())
    ok, text = print_status_text(arn)
    assert ok is True
    assert "Executing" in text and "preprocess" in text
    for _ in range(8):
        monitor.ExecutionMonitor(arn).poll()
    ok, text = print_status_text(arn)
    assert ok is True and ": Succeeded" in text
    assert text.count("✓") == 3


def test_status_and_the_panel_say_where_the_executions_mlflow_run_is_and_how_to_open_it(fake):
    from jupyter_smstep.panel import runs
    from jupyter_smstep.panel.state import PanelState

    arn = fake.add_execution(three_steps())
    server = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
    fake.executions[arn].mlflow = {"MlflowResourceArn": server, "MlflowExperimentName": "churn"}
    _, text = print_status_text(arn)
    line = (
        "MLflow: experiment churn on tracking server team (open it: aws sagemaker "
        "create-presigned-mlflow-tracking-server-url --tracking-server-name team)"
    )
    assert line in text
    state = PanelState()
    state.run_kind, state.snapshot = "remote", monitor.ExecutionMonitor(arn).poll()
    assert line in runs.execution(state, "https://console", arn)
    app = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-1"
    fake.executions[arn].mlflow = {"MlflowResourceArn": app}
    assert (
        f"MLflow: experiment the pipeline's name on {app} (open it: aws sagemaker create-presigned-mlflow-app-url "
        f"--arn {app})"
    ) in print_status_text(arn)[1]
    fake.executions[arn].mlflow = {}
    assert "MLflow" not in print_status_text(arn)[1]


def test_print_status_failed_shows_reason_and_log(fake):
    arn = fake.add_execution(three_steps(fail="AlgorithmError: out of memory", log=["loading", "OOM killed"]))
    list(monitor.ExecutionMonitor(arn).watch(sleep=Recorder()))
    ok, text = print_status_text(arn)
    assert ok is False
    assert "out of memory" in text and "| OOM killed" in text


def test_not_found_and_access_denied_raise_readable_errors(fake):
    with pytest.raises(SmstepError) as err:
        monitor.ExecutionMonitor(f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/x/execution/nope").poll()
    assert "fix:" in str(err.value) and "execution ARN" in str(err.value)
    arn = fake.add_execution(three_steps())
    fake.fail_with["DescribePipelineExecution"] = (400, "AccessDeniedException", "not allowed")
    with pytest.raises(SmstepError) as err:
        monitor.ExecutionMonitor(arn).poll()
    assert "AccessDeniedException" in str(err.value) and "sagemaker:DescribePipelineExecution" in str(err.value)


def test_transient_errors_are_retried_then_reported(fake, monkeypatch):
    import boto3
    from botocore.config import Config

    arn = fake.add_execution(three_steps())
    fake.fail_with["ListPipelineExecutionSteps"] = (500, "InternalFailure", "try later")
    client = boto3.client("sagemaker", region_name=REGION, config=Config(retries={"max_attempts": 1}))
    mon = monitor.ExecutionMonitor(arn, client=client)
    snap = mon.poll()
    assert snap.error and "InternalFailure" in snap.error  # not raised: backed off and retried later
    del fake.fail_with["ListPipelineExecutionSteps"]
    assert not mon.poll().error
    monkeypatch.setattr(monitor, "MAX_TRANSIENT_FAILURES", 2)
    fake.fail_with["DescribePipelineExecution"] = (503, "ServiceUnavailable", "down")
    assert mon.poll().error and mon.poll().error
    with pytest.raises(SmstepError, match="ServiceUnavailable"):
        mon.poll()


def test_cli_status_exit_codes(fake, capsys):
    from jupyter_smstep import cli

    ok_arn = fake.add_execution([StepPlan("only", [], 1)])
    for _ in range(3):
        monitor.ExecutionMonitor(ok_arn).poll()
    assert cli.main(["status", ok_arn]) == 0
    bad_arn = fake.add_execution([StepPlan("only", [], 1, fail="boom")])
    for _ in range(3):
        monitor.ExecutionMonitor(bad_arn).poll()
    assert cli.main(["status", bad_arn]) == 1
    out = capsys.readouterr().out
    assert "boom" in out and "Succeeded" in out


def test_cli_stop_and_retry(fake, capsys):
    from jupyter_smstep import cli

    arn = fake.add_execution(three_steps())
    mon = monitor.ExecutionMonitor(arn)
    for _ in range(3):
        mon.poll()
    assert cli.main(["stop", arn]) == 0
    assert fake.ops("StopPipelineExecution")
    assert list(mon.watch(sleep=Recorder()))[-1].status == "Stopped"
    assert cli.main(["retry", arn]) == 0
    assert fake.ops("RetryPipelineExecution")
    assert list(mon.watch(sleep=Recorder()))[-1].succeeded
    assert "stopping" in capsys.readouterr().err


def test_magic_status_and_follow(fake, shell, monkeypatch):
    arn = fake.add_execution(three_steps(fail="AlgorithmError: nope", log=["the end"]))
    list(monitor.ExecutionMonitor(arn).watch(sleep=Recorder()))
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        shell.run(f"%pipeline status {arn}")
    assert "AlgorithmError: nope" in cap.stdout and "| the end" in cap.stdout


def print_status_text(arn: str) -> tuple[bool, str]:
    out = io.StringIO()
    ok = views.print_status(arn, stream=out)
    return ok, out.getvalue()


def test_smstep_submit_wait_follows_the_execution_from_the_terminal(moto_server, tmp_path):
    """``smstep submit NOTEBOOK --wait``: the real SDK submits to moto, the monitor follows through the fake."""
    import os
    import subprocess
    import sys

    import nbformat

    pytest.importorskip("sagemaker")
    fake = FakeSageMaker(upstream=moto_server, clock="wall", seconds_per_unit=0.3).start()
    fake.auto_plan = lambda name, steps: [
        StepPlan(
            s["Name"],
            list(s.get("DependsOn", [])),
            2,
            fail="AlgorithmError: ZeroDivisionError: division by zero" if s["Name"] == "divide" else "",
            log=["Traceback (most recent call last):", "ZeroDivisionError: division by zero"],
        )
        for s in steps
    ]
    try:
        role = prepare_account(moto_server)
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(src)
            for src in (
                "%load_ext jupyter_smstep",
                f"%pipeline config --name wait-demo --role {role} --instance-type ml.m5.large --image-uri i.dkr.ecr/x:1",
                "%%step make\nx = 1",
                "%%step divide\ny = x / 0",
            )
        ]
        path = tmp_path / "wait.ipynb"
        nbformat.write(nb, str(path))
        empty = tmp_path / "empty.yaml"
        empty.write_text("{}\n")
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": fake.url,
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(empty),
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(empty),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter_smstep.cli", "submit", str(path), "--wait"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        fake.stop()
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "following arn:aws:sagemaker:us-east-1:123456789012:pipeline/wait-demo/execution/" in err
    assert "✓ make" in err and "✗ divide" in err and "execution Failed" in err
    assert "step 'divide' failed: AlgorithmError: ZeroDivisionError: division by zero" in err
    assert "| ZeroDivisionError: division by zero" in err
    assert json.loads(proc.stdout)["execution_arn"] in err


def test_a_fan_outs_gather_is_followed_under_the_cells_name(fake):
    """SDK v3 names the gather '<step>-gather' beside its ForEach '<step>-foreach'; the panel's node (and a
    local run) is '<step>': the monitor names it so, or the node would wait forever."""
    plans = [
        StepPlan("fit-foreach", [], 2),
        StepPlan("fit-0", [], 1),
        StepPlan("fit-gather", ["fit-foreach"], 1),
        StepPlan("report", ["fit-gather"], 1),
        StepPlan("other-gather", [], 1),  # no ForEach beside it: a user's step of that name
    ]
    mon = monitor.ExecutionMonitor(fake.add_execution(plans))
    for _ in range(8):
        snap = mon.poll()
    assert snap.succeeded
    assert set(snap.steps) == {"fit-foreach", "fit-0", "fit", "report", "other-gather"}
    assert snap.steps["fit"].name == "fit" and snap.steps["fit"].job_name.startswith("demo-fit-gather-1-")
