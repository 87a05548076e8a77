"""Back from SageMaker: ``pull --execution``, ``run --from STEP --upstream`` and ``verify --execution``, against
the fake SageMaker whose executions run their ``@step`` jobs for real (the SDK's entry point, moto's S3).

One execution (about 25 s: each job is a fresh interpreter importing the SDK) is submitted once for the module
from a notebook file, and every test reads it from a kernel (a real IPython shell) that ran the same cells.
"""

from __future__ import annotations

import contextlib
import json
import re
import time

import boto3
import nbformat
import pytest

from helpers.constants import IMAGE
from helpers.fakes import DUMMY, DUMMY_ENV, FakeSageMaker, prepare_account

PIPELINE = "pulled"
CELLS = [
    "%pipeline param epochs=10",
    "WEIGHTS = [1, 2, 3]",
    "%%step preprocess\ndf = [x * 2 for x in range(10)]\nn = len(df)",
    "%%step train\nmodel = {'w': sum(df) * epochs + sum(WEIGHTS), 'n': n}",
    "%%step evaluate\nscore = model['w'] / model['n']",
    "%%step report\nsummary = f'{n} rows'",  # a side branch: evaluate does not need it
]
#: what one kernel computes top to bottom
KERNEL = {"df": [x * 2 for x in range(10)], "n": 10, "model": {"w": 906, "n": 10}, "score": 90.6, "summary": "10 rows"}


def config_cell(role: str) -> str:
    return f"%pipeline config --name {PIPELINE} --role {role} --image-uri {IMAGE} --instance-type ml.m5.large"


@pytest.fixture(scope="module")
def executed(moto_server, tmp_path_factory):
    """(the fake, the execution's ARN, the notebook file, the role): one submitted execution, run to the end."""
    with executed_notebook(moto_server, tmp_path_factory, PIPELINE, CELLS) as done:
        yield done


@contextlib.contextmanager
def executed_notebook(moto_server, tmp_path_factory, pipeline: str, cells: list[str]):
    """A notebook of ``cells`` submitted with ``smstep submit`` to a fake SageMaker whose execution runs its jobs
    for real, run to the end: (the fake, the execution's ARN, the notebook file, the role)."""
    from jupyter_smstep import cli

    fake = FakeSageMaker(upstream=moto_server).start()
    fake.run_pipelines = True
    folder = tmp_path_factory.mktemp("executed")
    role = prepare_account(moto_server)
    nb = nbformat.v4.new_notebook()
    config = config_cell(role).replace(f"--name {PIPELINE} ", f"--name {pipeline} ")
    nb.cells = [nbformat.v4.new_code_cell(s) for s in ["%load_ext jupyter_smstep", config, *cells]]
    path = folder / f"{pipeline}.ipynb"
    nbformat.write(nb, path)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            **DUMMY_ENV,
            "AWS_ENDPOINT_URL": fake.url,
            "SMSTEP_DATA_DIR": str(tmp_path_factory.getbasetemp() / "smstep-data"),
            "AWS_ENDPOINT_URL_PRICING": "http://127.0.0.1:9",
        }.items():
            mp.setenv(key, value)
        for kind in ("USER", "ADMIN"):
            (folder / f"{kind}.yaml").write_text("")
            mp.setenv(f"SAGEMAKER_{kind}_CONFIG_OVERRIDE", str(folder / f"{kind}.yaml"))
        mp.chdir(folder)
        assert cli.main(["submit", str(path)]) == 0
    arn = next(iter(fake.executions))
    deadline = time.monotonic() + 240
    while fake.executions[arn].status()[0] == "Executing" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fake.executions[arn].status()[0] == "Succeeded", fake.training_jobs
    try:
        yield fake, arn, path, role
    finally:
        fake.stop()


@pytest.fixture
def kernel(shell, executed, monkeypatch):
    """A shell that ran the notebook's cells, pointed at the fake."""
    fake, _, _, role = executed
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    shell.run(config_cell(role))
    for source in CELLS:
        shell.run(source)
    return shell


def s3_object(fake, arn: str, step: str, name: str) -> tuple[str, str]:
    job = fake.training_jobs[fake.executions[arn].job_name(step, 1)]
    uri = job["request"]["OutputDataConfig"]["S3OutputPath"]
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, f"{prefix}/{name}"


def test_pull_latest_puts_what_the_kernel_computed_back_and_says_where_each_name_came_from(kernel, executed, capsys):
    _, arn, _, _ = executed
    for name in KERNEL:
        del kernel.ip.user_ns[name]
    kernel.run("%pipeline pull --execution latest")
    assert {name: kernel.ip.user_ns[name] for name in KERNEL} == KERNEL
    out = capsys.readouterr().out
    exec_id = arn.rsplit("/", 1)[-1]
    assert f"from step preprocess of execution {exec_id}: df, n" in out
    assert f"from step evaluate of execution {exec_id}: score" in out


def test_pull_one_step_by_arn(kernel, executed):
    _, arn, _, _ = executed
    del kernel.ip.user_ns["model"], kernel.ip.user_ns["score"]
    kernel.run(f"%pipeline pull train --execution {arn}")
    assert kernel.ip.user_ns["model"] == KERNEL["model"] and "score" not in kernel.ip.user_ns


def test_an_execution_of_another_pipeline_is_refused_with_the_fix(kernel, executed):
    _, arn, _, _ = executed
    other = arn.replace(f"pipeline/{PIPELINE}/", "pipeline/someone-else/")
    error = kernel.error(f"%pipeline pull --execution {other}")
    assert "is of pipeline 'someone-else', not of this notebook's pipeline 'pulled'" in error
    assert "--execution latest" in error
    assert "not a pipeline execution ARN" in kernel.error("%pipeline pull --execution arn:aws:s3:::bucket")


def test_a_step_the_notebook_now_builds_differently_is_refused_unless_changed_ok(kernel, executed):
    kernel.run("%%step train\nmodel = {'w': sum(df) * epochs, 'n': n}")
    error = kernel.error("%pipeline pull train --execution latest")
    assert "step train of execution" in error and "is not what this notebook builds now" in error
    assert "submit again" in error and "--changed-ok" in error
    assert kernel.ip.user_ns["model"] == {"w": 900, "n": 10}  # the kernel's own, untouched
    kernel.run("%pipeline pull train --execution latest --changed-ok")
    assert kernel.ip.user_ns["model"] == KERNEL["model"]


def test_results_outside_the_pipelines_own_root_are_not_read(kernel, executed):
    fake, arn, _, _ = executed
    job = fake.training_jobs[fake.executions[arn].job_name("train", 1)]
    original = job["request"]["OutputDataConfig"]["S3OutputPath"]
    job["request"]["OutputDataConfig"]["S3OutputPath"] = "s3://someone-elses-bucket/pulled/train/x/results"
    try:
        error = kernel.error("%pipeline pull train --execution latest")
    finally:
        job["request"]["OutputDataConfig"]["S3OutputPath"] = original
    assert "outside this pipeline's own S3 root s3://sagemaker-us-east-1-" in error and "not read" in error


def test_a_result_changed_after_the_job_wrote_it_is_not_unpickled(kernel, executed, moto_server):
    fake, arn, _, _ = executed
    s3 = boto3.client("s3", endpoint_url=moto_server, **DUMMY)
    bucket, key = s3_object(fake, arn, "evaluate", "payload.pkl")
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    import cloudpickle

    s3.put_object(Bucket=bucket, Key=key, Body=cloudpickle.dumps({"score": -1}))
    try:
        error = kernel.error("%pipeline pull evaluate --execution latest")
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)
    assert "could not read the results of step evaluate of execution" in error
    assert kernel.ip.user_ns["score"] == KERNEL["score"]


def test_smstep_pull_prints_the_outputs(executed, monkeypatch, capsys):
    from jupyter_smstep import cli

    fake, _, path, _ = executed
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    assert cli.main(["pull", str(path), "evaluate", "train", "--execution", "latest", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"train": {"model": KERNEL["model"]}, "evaluate": {"score": KERNEL["score"]}}
    assert "from step train of execution" in captured.err
    assert cli.main(["pull", str(path), "--changed-ok"]) == 2
    assert "--changed-ok applies to --execution only" in capsys.readouterr().err


def test_run_from_a_step_on_an_executions_upstream_results(kernel, executed, tmp_path):
    from jupyter_smstep.panel.progress import Table

    _, arn, _, _ = executed
    kernel.run("%%step evaluate\nscore = model['w'] / model['n'] + 1")  # the step being debugged
    events: list = []
    run = kernel.workspace.run_local(
        from_step="evaluate", upstream=arn, runs_dir=tmp_path / "runs", on_event=events.append
    )
    exec_id = arn.rsplit("/", 1)[-1]
    assert run.succeeded and run.outputs("evaluate") == {"score": KERNEL["score"] + 1}
    assert {n: s.taken_from for n, s in run.steps.items()} == {
        "preprocess": f"step preprocess of execution {exec_id}",
        "train": f"step train of execution {exec_id}",
        "evaluate": None,
        "report": f"step report of execution {exec_id}",
    }
    assert run.steps["train"].attempts == 0 and run.steps["evaluate"].attempts == 1
    assert run.outputs("train") == {"model": KERNEL["model"]}
    table = Table()
    for event in events:
        table.update(event)
    assert f"taken (step train of execution {exec_id})" in table.html()  # the notebook's progress


def test_smstep_run_upstream_says_where_each_result_came_from(executed, monkeypatch, tmp_path, capsys):
    from jupyter_smstep import cli

    fake, arn, path, _ = executed
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    assert (
        cli.main(["run", str(path), "--from", "train", "--upstream", "latest", "--runs-dir", str(tmp_path / "runs")])
        == 0
    )
    captured = capsys.readouterr()
    exec_id = arn.rsplit("/", 1)[-1]
    assert re.search(rf"✓ preprocess +taken +from step preprocess of execution {exec_id}\n", captured.err)
    table = {line.split()[0]: line for line in captured.out.splitlines() if line.split()}
    assert "taken" in table["preprocess"] and f"(from step preprocess of execution {exec_id})" in table["preprocess"]
    assert "succeeded" in table["train"] and "succeeded" in table["evaluate"]
    assert "2 taken from SageMaker, 2 succeeded" in captured.err


def test_run_upstream_refuses_upstream_steps_the_notebook_now_builds_differently(kernel, executed, tmp_path):
    kernel.run("%%step train\nmodel = {'w': 1, 'n': n}")
    runs = tmp_path / "runs"
    error = kernel.error(f"%pipeline run --from evaluate --upstream latest --runs-dir {runs}")
    assert "step train of execution" in error and "is not what this notebook builds now" in error
    kernel.run(f"%pipeline run --from evaluate --upstream latest --changed-ok --runs-dir {runs}")
    assert kernel.workspace.last_run.outputs("evaluate") == {"score": KERNEL["score"]}  # on the execution's model
    assert "--upstream needs --from STEP" in kernel.error("%pipeline run --upstream latest")
    assert "--changed-ok applies to --upstream only" in kernel.error("%pipeline run --from train --changed-ok")


def test_run_upstream_runs_a_changed_step_it_does_not_need_here_instead_of_refusing(kernel, executed, tmp_path):
    kernel.run("%%step report\nsummary = f'{n} rows, {len(df)} values'")  # not upstream of evaluate
    run = kernel.workspace.run_local(from_step="evaluate", upstream="latest", runs_dir=tmp_path / "runs")
    assert run.succeeded and run.steps["report"].taken_from is None and run.steps["report"].attempts == 1
    assert run.outputs("report") == {"summary": "10 rows, 10 values"} and run.steps["train"].taken_from


def test_run_upstream_refuses_an_execution_whose_needed_step_did_not_succeed(kernel, executed, tmp_path):
    fake, arn, _, _ = executed
    attempt = fake.executions[arn].attempts["train"][-1]
    attempt.status = "Failed"
    try:
        error = kernel.error(f"%pipeline run --from evaluate --upstream {arn} --runs-dir {tmp_path / 'runs'}")
        assert "nothing to pull" in "\n".join(kernel.workspace.pull_execution(arn, ["train"]).notes)
    finally:
        attempt.status = "Succeeded"
    assert "step train of execution" in error and "is Failed: --from evaluate needs its results" in error
    assert "run from it (--from train)" in error


def test_verify_execution_says_the_service_computed_what_the_kernel_did(kernel, executed, capsys):
    _, arn, _, _ = executed
    capsys.readouterr()
    kernel.run("%pipeline verify --execution latest")
    out = capsys.readouterr().out
    assert f"pipeline: SageMaker execution {arn.rsplit('/', 1)[-1]}" in out
    assert "  = score" in out and "  = model" in out and "5 equal, 0 differ, 0 not comparable" in out


def test_verify_execution_shows_a_value_the_service_computed_differently(kernel, executed, moto_server, capsys):
    import hashlib

    import cloudpickle

    fake, arn, _, _ = executed
    s3 = boto3.client("s3", endpoint_url=moto_server, **DUMMY)
    bucket, payload = s3_object(fake, arn, "evaluate", "payload.pkl")
    _, metadata = s3_object(fake, arn, "evaluate", "metadata.json")
    originals = {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in (payload, metadata)}
    body = cloudpickle.dumps({"score": 90.7})  # as if the job had computed another score, and said so honestly
    meta = dict(json.loads(originals[metadata]), sha256_hash=hashlib.sha256(body).hexdigest())
    s3.put_object(Bucket=bucket, Key=payload, Body=body)
    s3.put_object(Bucket=bucket, Key=metadata, Body=json.dumps(meta).encode())
    try:
        capsys.readouterr()
        kernel.run("%pipeline verify --execution latest --json")
    finally:
        for key, original in originals.items():
            s3.put_object(Bucket=bucket, Key=key, Body=original)
    report = json.loads(capsys.readouterr().out)
    assert report["pipeline"] == "SageMaker execution" and report["differs"] == 1 and report["equal"] == 4
    assert report["steps"]["evaluate"]["score"]["verdict"] == "differs"
    assert "90.6" in json.dumps(report["steps"]["evaluate"]["score"])
    assert "-p does not apply with --execution" in kernel.error("%pipeline verify --execution latest -p epochs=3")


def test_smstep_verify_execution_runs_the_notebook_in_a_fresh_kernel(executed, monkeypatch, capsys):
    from jupyter_smstep import cli

    fake, arn, path, _ = executed
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    assert cli.main(["verify", str(path), "--execution", arn]) == 0
    out = capsys.readouterr().out
    assert "with the execution's parameters" in out and "5 equal, 0 differ, 0 not comparable" in out


def test_pull_in_a_real_kernel(executed, monkeypatch, tmp_path):
    """What JupyterLab does: execute_request for each cell, then for the pull."""
    from helpers.kernel import Kernel

    fake, arn, _, role = executed
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    kernel = Kernel()
    try:
        kernel.execute(f"import os\nos.chdir({str(tmp_path)!r})\n%load_ext jupyter_smstep\n{config_cell(role)}")
        for source in CELLS:
            kernel.execute(source)
        kernel.execute("del df, model, score")
        seen = kernel.execute("%pipeline pull --execution latest\nprint(repr((df, model, score)))")
        text = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        assert repr((KERNEL["df"], KERNEL["model"], KERNEL["score"])) in text
        assert f"from step train of execution {arn.rsplit('/', 1)[-1]}: model" in text
    finally:
        kernel.stop()


def test_history_lists_the_executions_with_who_started_them_and_each_steps_billed_seconds(
    kernel, executed, tmp_path, capsys
):
    _, arn, _, _ = executed
    kernel.run(f"%pipeline run --runs-dir {tmp_path / 'runs'}")  # the estimate comes from a local run
    capsys.readouterr()
    kernel.run("%pipeline history --json")
    (row,) = json.loads(capsys.readouterr().out)
    assert row["execution_arn"] == arn and row["status"] == "Succeeded"
    assert row["started_by"] == "assumed-role/DataScientist/alice" and row["duration_s"] >= 0
    steps = row["steps"]
    assert list(steps) == ["preprocess", "train", "evaluate", "report"]
    assert all(s["billable_s"] >= 1 and s["instance_type"] == "ml.m5.large" for s in steps.values())
    assert row["billable_s"] == sum(s["billable_s"] for s in steps.values())
    assert all(60 < s["estimated_billable_s"] < 120 for s in steps.values())  # measured + 60 s start-up
    kernel.run("%pipeline history")
    text = capsys.readouterr().out
    assert f"{arn.rsplit('/', 1)[-1]}  Succeeded" in text and "by assumed-role/DataScientist/alice" in text
    assert re.search(r"    train: Succeeded, billed \d+ s \(local estimate ≥ \d+ s\)", text)
    assert "--last 0: between 1 and 100" in kernel.error("%pipeline history --last 0")


def test_the_panels_history_button_lists_the_executions(kernel, executed):
    from jupyter_smstep.panel.widget import PipelinePanel

    _, arn, _, _ = executed
    panel = PipelinePanel(kernel.workspace)
    try:
        panel.history_button.click()
        panel.wait(60)
        shown = panel.history.value
        assert f"data-execution='{arn.rsplit('/', 1)[-1]}' data-status='Succeeded'" in shown
        assert "assumed-role/DataScientist/alice" in shown and re.search(r"train \d+ s", shown)
        assert "1 execution(s) of the pipeline" in panel.status.value
    finally:
        panel.close()


# ---------------------------------------------------------------------------- a fan-out, back from SageMaker
FANNED = [
    "items = [2, 3, 4]",
    "%%step sq --foreach n=items --max-concurrency 2\nsq = n * n",
    "%%step total\nt = sum(sq)",
]


@pytest.fixture(scope="module")
def fanned(moto_server, tmp_path_factory):
    """A fan-out's execution: under SDK v3 a ForEach step whose children the fake runs with their item."""
    with executed_notebook(moto_server, tmp_path_factory, "fanned", FANNED) as done:
        yield done


def test_a_fan_out_comes_back_from_sagemaker_each_iteration_with_its_own_result(shell, fanned, monkeypatch, capsys):
    from jupyter_smstep.sdk import compat

    fake, arn, _, role = fanned
    types = {s["Name"]: s["Type"] for s in fake.executions[arn].steps}  # the definition it ran
    if compat.load().ForEachStep is not None:  # the service ran one ForEach, and listed its children
        assert types == {"sq-foreach": "ForEach", "sq-gather": "Training", "total": "Training"}
        assert {"sq-0", "sq-1", "sq-2"} <= set(fake.executions[arn].attempts)
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    shell.run(config_cell(role).replace(f"--name {PIPELINE} ", "--name fanned "))
    for source in FANNED:
        shell.run(source)
    del shell.ip.user_ns["sq"], shell.ip.user_ns["t"]
    capsys.readouterr()
    shell.run("%pipeline pull --execution latest")
    assert shell.ip.user_ns["sq"] == [4, 9, 16] and shell.ip.user_ns["t"] == 29
    shell.run("%pipeline pull sq-1 --execution latest")  # one child: its own folder, not another item's
    assert shell.ip.user_ns["sq"] == 9
    capsys.readouterr()
    shell.run("%pipeline verify --execution latest --json")
    report = json.loads(capsys.readouterr().out)
    assert report["differs"] == 0 and report["not comparable"] == 0, json.dumps(report, indent=1)
    assert {"sq-0", "sq-1", "sq-2", "sq", "total"} <= set(report["steps"])
    shell.run("%pipeline history --json")  # the gather under the cell's name there too
    (row,) = json.loads(capsys.readouterr().out)
    assert {"sq-0", "sq-1", "sq-2", "sq", "total"} <= set(row["steps"]) and "sq-gather" not in row["steps"]
    # a changed item: refused, by name, until submitted again; under v3 every child, whose ForEach runs other
    # items now; under v2 the iteration whose item changed
    shell.run("items = [2, 3, 5]")
    shell.run(FANNED[1])  # (the rebinding alone does not change the step: its cell saw [2, 3, 4])
    child = "sq-0" if compat.load().ForEachStep is not None else "sq-2"
    error = shell.error(f"%pipeline pull {child} --execution latest")
    assert f"step {child} of execution" in error and "changed since the execution's submit" in error
