"""Schedules through the SDK's PipelineSchedule and put_triggers, with moto's EventBridge Scheduler behind the
fake SageMaker endpoint (moto accepts any expression: the checks are ours and happen before any call)."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest

from helpers.constants import IMAGE
from helpers.fakes import DUMMY, prepare_account

NOTEBOOK = [
    "%pipeline param epochs=10 mode=full",
    "%%step train --defer\nmodel = epochs * 2",
]


@pytest.fixture
def notebook(shell, moto_server, fake_sagemaker, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    fake = fake_sagemaker()
    role = prepare_account(moto_server)
    name = f"sched-{tmp_path.name[-12:].strip('_').replace('_', '-')}"
    shell.run(f"%pipeline config --name {name} --role {role} --image-uri {IMAGE} --instance-type ml.m5.large")
    for source in NOTEBOOK:
        shell.run(source)
    scheduler_role = prepare_account(moto_server, "SchedulerRole", "scheduler.amazonaws.com")  # the schedule's
    shell.role, shell.fake = scheduler_role, fake
    shell.scheduler = boto3.client("scheduler", endpoint_url=moto_server, **DUMMY)
    return shell


def test_schedule_creates_the_pipeline_then_the_schedule_with_its_parameters(notebook, capsys):
    capsys.readouterr()
    notebook.run(
        f"%pipeline schedule nightly --cron 'cron(0 6 * * ? *)' --role {notebook.role} -p epochs=3 --end 2099-01-01"
    )
    out = capsys.readouterr().out
    assert "scheduled nightly: cron(0 6 * * ? *), enabled (the pipeline: created or updated)" in out
    assert "next: " in out and " 06:00 UTC" in out
    stored = notebook.scheduler.get_schedule(Name="nightly")
    assert stored["ScheduleExpression"] == "cron(0 6 * * ? *)" and stored["State"] == "ENABLED"
    assert stored["Target"]["RoleArn"] == notebook.role
    assert stored["Target"]["Arn"].endswith(f":pipeline/{notebook.graph().name}")
    assert stored["Target"]["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": "epochs", "Value": "3"}
    ]
    assert stored["EndDate"].year == 2099
    # again, unchanged: the pipeline is left alone and the schedule updated
    notebook.run(f"%pipeline schedule nightly --rate 'rate(12 hours)' --role {notebook.role} --disabled")
    out = capsys.readouterr().out
    assert "rate(12 hours), disabled (the pipeline: unchanged)" in out
    assert notebook.scheduler.get_schedule(Name="nightly")["State"] == "DISABLED"


def test_schedules_lists_each_with_its_next_three_runs_and_unschedule_deletes(notebook, capsys):
    notebook.run(f"%pipeline schedule daily --cron '0 6 * * ? *' --role {notebook.role}")
    notebook.run(f"%pipeline schedule once --at 'at(2098-01-01T06:00:00)' --role {notebook.role}")
    capsys.readouterr()
    notebook.run("%pipeline schedules --json")
    doc = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in doc] == ["daily", "once"]
    daily, once = doc
    assert len(daily["next"]) == 3 and all(t.endswith("T06:00:00Z") for t in daily["next"])
    days = [dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in daily["next"]]
    assert days[1] - days[0] == dt.timedelta(days=1)
    assert once["next"] == ["2098-01-01T06:00:00Z"]
    notebook.run("%pipeline unschedule daily")
    assert "deleted schedule daily" in capsys.readouterr().out
    notebook.run("%pipeline schedules")
    out = capsys.readouterr().out
    assert "daily" not in out and "once" in out
    error = notebook.error("%pipeline unschedule dialy")
    assert "has no schedule 'dialy'" in error and "did you mean once?" not in error


@pytest.mark.parametrize(
    "line, message",
    [
        ("%pipeline schedule nightly --cron '0 6 * * *'", "has 5 fields"),
        ("%pipeline schedule nightly --rate 'rate(1 days)'", "singular for 1"),
        ("%pipeline schedule nightly --at 'at(2027-01-01T06:00:00+01:00)'", "has a time zone"),
        ("%pipeline schedule nightly --at 'at(2020-01-01T06:00:00)' --role ROLE", "never fires after now"),
        ("%pipeline schedule 'every night' --rate 'rate(1 day)' --role ROLE", "schedule name 'every night' is invalid"),
        ("%pipeline schedule nightly --rate 'rate(1 day)'", "needs a role for EventBridge Scheduler"),
        ("%pipeline schedule nightly --rate 'rate(1 day)' --role admin", "--role 'admin': RoleArn must match arn:aws"),
        ("%pipeline schedule nightly --rate 'rate(1 day)' --role ROLE -p epoch=3", "epoch"),
        ("%pipeline schedule nightly --rate 'rate(1 day)' --role ROLE -p epochs=many", "epochs"),
        (
            "%pipeline schedule nightly --rate 'rate(1 day)' --role ROLE --start 2030-01-02 --end 2030-01-01",
            "--end is not after --start",
        ),
        ("%pipeline schedule nightly --rate 'rate(1 day)' --cron '0 6 * * ? *' --role ROLE", "not allowed with"),
        ("%pipeline schedule nightly --role ROLE", "one of the arguments --cron --rate --at is required"),
    ],
)
def test_bad_schedules_are_refused_before_any_call(notebook, line, message):
    before = len(notebook.fake.requests)
    error = notebook.error(line.replace("ROLE", notebook.role))
    assert message in error and "fix" in error
    assert len(notebook.fake.requests) == before  # nothing reached AWS
    pipeline = f":pipeline/{notebook.graph().name}"
    assert not [s for s in notebook.scheduler.list_schedules()["Schedules"] if s["Target"]["Arn"].endswith(pipeline)]
