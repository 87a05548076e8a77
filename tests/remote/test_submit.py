"""Submitting through boto3 to the fake SageMaker in front of moto: uploads, step caching, selective re-runs."""

from __future__ import annotations

import json

import pytest

from helpers.constants import IMAGE
from helpers.fakes import prepare_account

NOTEBOOK = [
    "%pipeline param epochs=10",
    "WEIGHTS = [1, 2, 3]",
    "%%step preprocess --defer\ndf = list(range(10))",
    "%%step train --defer\nmodel = sum(df) * epochs + sum(WEIGHTS)",
    "%%step evaluate --defer\nscore = model - 1",
]


@pytest.fixture
def fake(fake_sagemaker):
    return fake_sagemaker()


@pytest.fixture
def notebook(shell, moto_server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    role = prepare_account(moto_server)
    shell.run(
        f"%pipeline config --name resubmit-{tmp_path.name[-12:].strip('_').replace('_', '-')} "
        f"--role {role} --image-uri {IMAGE} --instance-type ml.m5.large"
    )
    for source in NOTEBOOK:
        shell.run(source)
    return shell


def s3_puts(fake) -> list[str]:
    return [path for method, path in fake.requests if method == "PUT" and "/sagemaker-us-east-1-" in path]


def test_an_unchanged_resubmit_uploads_nothing_and_one_changed_cell_uploads_one_step(notebook, fake):
    first = notebook.workspace.submit()
    assert first.started and first.uploads[0] == len(s3_puts(fake)) > 0
    fake.requests.clear()
    second = notebook.workspace.submit()
    # (the SDK's upsert builds twice when the pipeline exists: create, then update; both find everything)
    assert s3_puts(fake) == [] and second.uploads[0] == 0 and second.uploads[1] >= first.uploads[0]
    notebook.run("%%step evaluate --defer\nscore = model - 2")
    fake.requests.clear()
    notebook.workspace.submit()
    assert {p.split("/")[3] for p in s3_puts(fake)} == {"evaluate"}


def test_changed_starts_a_selective_execution_of_the_changed_steps_and_those_after(notebook, fake):
    first = notebook.workspace.submit()
    notebook.run("%%step train --defer\nmodel = sum(df) * epochs + sum(WEIGHTS) + 1")
    again = notebook.workspace.submit(changed=True)
    start = fake.ops("StartPipelineExecution")[-1]
    assert start["SelectiveExecutionConfig"] == {
        "SourcePipelineExecutionArn": first.execution_arn,
        "SelectedSteps": [{"StepName": "train"}, {"StepName": "evaluate"}],
    }
    assert again.selection.why == {
        "train": "its code, captured values, settings or files changed",
        "evaluate": "runs after changed step train",
    }


def test_changed_with_nothing_changed_starts_nothing_unless_forced(notebook, fake, capsys):
    notebook.workspace.submit()
    starts = len(fake.ops("StartPipelineExecution"))
    capsys.readouterr()
    notebook.run("%pipeline submit --changed")
    assert "nothing changed since" in capsys.readouterr().out
    assert len(fake.ops("StartPipelineExecution")) == starts
    notebook.run("%pipeline submit --changed --force")
    assert len(fake.ops("StartPipelineExecution")) == starts + 1
    assert "SelectiveExecutionConfig" not in fake.ops("StartPipelineExecution")[-1]
    assert "--force only applies with --changed" in notebook.error("%pipeline submit --force")


def test_changed_without_a_succeeded_execution_runs_everything_and_says_so(notebook, fake):
    submission = notebook.workspace.submit(changed=True)
    assert submission.started and "has no succeeded execution" in submission.selection.note
    assert "SelectiveExecutionConfig" not in fake.ops("StartPipelineExecution")[-1]


def test_cache_reaches_the_service_definition(notebook, fake):
    notebook.run("%pipeline config --cache P7D")
    notebook.workspace.submit()
    body = (fake.ops("CreatePipeline") + fake.ops("UpdatePipeline"))[-1]
    steps = {s["Name"]: s for s in json.loads(body["PipelineDefinition"])["Steps"]}
    assert {s["CacheConfig"]["ExpireAfter"] for s in steps.values()} == {"P7D"}


def test_changed_with_a_condition_runs_everything_and_says_so(notebook, fake):
    """The last succeeded execution may have skipped a conditional step whose outputs a selected step reads."""
    notebook.workspace.submit()
    notebook.run("%%step publish --defer --when 'score > 0'\nurl = 'published'")
    submission = notebook.workspace.submit(changed=True)
    assert submission.started and "--changed is not built for them yet" in submission.selection.note
    assert "SelectiveExecutionConfig" not in fake.ops("StartPipelineExecution")[-1]


def test_changed_with_a_fan_out_built_as_a_for_each_runs_everything_and_says_so(notebook, fake):
    """A selective execution names the steps to run; a ForEach's children are not steps of the definition."""
    from jupyter_smstep.sdk import compat

    notebook.workspace.submit()
    notebook.run("items = [1, 2]")
    notebook.run("%%step sq --defer --foreach n=items\nsq = n * n")
    submission = notebook.workspace.submit(changed=True)
    assert submission.started
    if compat.load().ForEachStep is None:  # expanded: the iterations are steps, selected as any other
        assert {"sq-0", "sq-1", "sq"} <= set(submission.selection.steps)
        return
    assert "(sq), built as SageMaker ForEach steps: --changed is not built" in submission.selection.note
    assert "SelectiveExecutionConfig" not in fake.ops("StartPipelineExecution")[-1]


def test_an_upload_denied_midway_names_the_object_the_permission_and_what_stays(notebook, fake):
    """A bucket policy (or a permission lost mid-way) refuses the third object: the error says which object,
    which permission, and that what was uploaded stays and is reused (content-addressed)."""
    from jupyter_smstep.errors import SmstepError

    fake.s3_puts_allowed = 2
    with pytest.raises(SmstepError) as caught:
        notebook.workspace.submit()
    text = str(caught.value)
    assert "access denied (AccessDenied: Access Denied)" in text, text
    assert "uploading s3://sagemaker-us-east-1-" in text, text
    assert "nothing was created on SageMaker, and the 2 object(s) uploaded before it stay in S3" in text, text
    assert "fix: give your credentials s3:PutObject on arn:aws:s3:::sagemaker-us-east-1-" in text, text
    assert "check credentials, region and AWS_ENDPOINT_URL" not in text
    assert fake.ops("CreatePipeline") == []
    fake.s3_puts_allowed = None
    again = notebook.workspace.submit()  # with the permission back: only what was missing is uploaded
    assert again.started and again.uploads[1] >= 1
