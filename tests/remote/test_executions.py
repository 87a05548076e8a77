"""Back from SageMaker: ``pull --execution``, ``run --from STEP --upstream`` and ``verify --execution``, against
the fake SageMaker whose executions run their ``@step`` jobs for real (the SDK's entry point, moto's S3).

One execution (about 25 s: each job is a fresh interpreter importing the SDK) is submitted once for the module
from a notebook file, and every test reads it from a kernel (a real IPython shell) that ran the same cells.
"""

from __future__ import annotations

import json
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
]
#: what one kernel computes top to bottom
KERNEL = {"df": [x * 2 for x in range(10)], "n": 10, "model": {"w": 906, "n": 10}, "score": 90.6}


def config_cell(role: str) -> str:
    return f"%pipeline config --name {PIPELINE} --role {role} --image-uri {IMAGE} --instance-type ml.m5.large"


@pytest.fixture(scope="module")
def executed(moto_server, tmp_path_factory):
    """(the fake, the execution's ARN, the notebook file, the role): one submitted execution, run to the end."""
    from jupyter_smstep import cli

    fake = FakeSageMaker(upstream=moto_server).start()
    fake.run_pipelines = True
    folder = tmp_path_factory.mktemp("executed")
    role = prepare_account(moto_server)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in ["%load_ext jupyter_smstep", config_cell(role), *CELLS]]
    path = folder / "pulled.ipynb"
    nbformat.write(nb, path)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**DUMMY_ENV, "AWS_ENDPOINT_URL": fake.url,
                           "SMSTEP_DATA_DIR": str(tmp_path_factory.getbasetemp() / "smstep-data"),
                           "AWS_ENDPOINT_URL_PRICING": "http://127.0.0.1:9"}.items():
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
    yield fake, arn, path, role
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
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, f"{prefix}/{name}"


def test_pull_latest_puts_what_the_kernel_computed_back_and_says_where_each_name_came_from(kernel, executed,
                                                                                            capsys):
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

