"""``--when`` and ``--else-fail`` through a real shell and the local runner, compared with what the kernel computed.

The local runner executes the ConditionStep and FailStep the SDK wrote, as the service does: the condition
on the upstream step's results.json, the branch not taken skipped, a FailStep failing the run.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

WHEN = "--when \"evaluation['rmse'] < threshold\" --else-fail \"rmse {evaluation['rmse']} is over {threshold}\""
NOTEBOOK = [
    "%pipeline param threshold=5.0",
    "%%step evaluate\nevaluation = {'rmse': 3.5, 'n': 10}\nlabels = ['cat', 'dog']",
    f"%%step register {WHEN}\nregistered = f\"model rmse={{evaluation['rmse']}}\"",
    "%%step deploy\nendpoint = registered.upper()",
    "%%step notify --after register\nnotified = True",
    "%%step report\nsummary = evaluation['n'] * 2",
]


@pytest.fixture
def notebook(shell):
    return shell.notebook("gated", NOTEBOOK)


def run(shell, tmp_path, **kwargs):
    return shell.run_local(tmp_path / "runs", **kwargs)


def test_the_graph_puts_the_step_and_its_dependents_under_one_condition(notebook):
    graph = notebook.graph()
    assert not graph.report.errors, graph.report.problems
    (condition,) = graph.conditions
    assert condition.name == "when-register" and condition.steps == ["register", "deploy", "notify"]
    assert condition.expression == "evaluation['rmse'] < threshold" and condition.inputs == ["evaluate"]
    assert condition.fail_name == "fail-register"
    steps = {s["name"]: s for s in graph.to_json()["steps"]}
    assert steps["register"]["when"] == steps["deploy"]["when"] == "evaluation['rmse'] < threshold"
    assert steps["register"]["else_fail"] == "rmse {evaluation['rmse']} is over {threshold}"
    assert "else_fail" not in steps["deploy"] and "when" not in steps["report"]
    assert "evaluation" in graph.step("evaluate").outputs  # the condition reads it from the step's results


def test_the_condition_holds_every_step_runs_with_the_kernels_values(notebook, tmp_path):
    result, events = run(notebook, tmp_path)
    assert result.succeeded, result.to_json()
    ns = notebook.ip.user_ns
    assert result.outputs("register") == {"registered": ns["registered"]}
    assert result.outputs("deploy") == {"endpoint": ns["endpoint"]}
    assert result.outputs("report") == {"summary": ns["summary"]}
    assert result.steps["when-register"].condition == {"outcome": True, "when": "evaluation['rmse'] < threshold"}
    assert result.steps["fail-register"].state == "skipped"
    assert result.steps["fail-register"].skipped_because == "when-register"
    doc = result.to_json()
    assert doc["steps"]["when-register"]["condition"]["outcome"] is True
    messages = [e.message for e in events if e.step == "when-register" and e.state == "succeeded"]
    assert messages == ["evaluation['rmse'] < threshold is true"]


def test_an_override_that_flips_the_condition_skips_the_branch_and_fails_with_the_message(notebook, tmp_path):
    result, _ = run(notebook, tmp_path, parameters={"threshold": "2.0"})
    assert not result.succeeded
    states = {name: step.state for name, step in result.steps.items()}
    assert states == {
        "evaluate": "succeeded",
        "when-register": "succeeded",
        "register": "skipped",
        "deploy": "skipped",
        "notify": "skipped",
        "fail-register": "failed",
        "report": "succeeded",
    }
    assert result.steps["when-register"].condition["outcome"] is False
    assert "is false" in result.steps["register"].summary
    failed = result.steps["fail-register"]
    assert failed.failure_type == "Fail" and failed.error == "rmse 3.5 is over 2.0"
    # what the run left: a skipped step has nothing to pull, and says why
    notebook.run(f"%pipeline pull --run {result.run_dir}")
    assert result.outputs("register") == {}


def test_without_else_fail_the_run_succeeds_with_the_branch_skipped(shell, tmp_path):
    shell.configure(name="optional")
    shell.run("%pipeline param deploy_it=False")
    shell.run("%%step train\nmodel = 3")
    shell.run("%%step deploy --when 'deploy_it == True'\nendpoint = model + 1")
    result, events = run(shell, tmp_path)
    assert result.succeeded and result.steps["deploy"].state == "skipped"
    assert [e.info.get("outcome") for e in events if e.step == "deploy" and e.state == "skipped"] == [False]
    flipped, _ = run(shell, tmp_path, parameters={"deploy_it": "true"})
    assert flipped.succeeded and flipped.outputs("deploy") == {"endpoint": 4}


def test_a_parameter_on_the_left_and_a_constant_from_the_kernel_on_the_right(shell, tmp_path):
    shell.configure(name="limits")
    shell.run("%pipeline param min_rows=5")
    shell.run("LABELS = 'cat'")
    shell.run("%%step load\nrows = 8\nlabel = 'cat'")
    shell.run("%%step fit --when 'min_rows <= rows and label in [LABELS, \"dog\"]'\nfitted = rows * 2")
    graph = shell.graph()
    assert graph.conditions[0].expression == "min_rows <= rows and label in [LABELS, 'dog']"
    result, _ = run(shell, tmp_path)
    assert result.succeeded and result.outputs("fit") == {"fitted": 16}
    again, _ = run(shell, tmp_path, parameters={"min_rows": "9"})
    assert again.succeeded and again.steps["fit"].state == "skipped"


def test_an_output_that_is_not_json_is_refused_before_anything_runs(shell):
    shell.configure(name="numpy-metric")
    shell.run("import numpy as np")
    shell.run("%%step evaluate\ncorrect = np.int64(7)\nscores = {'n': 1}")
    shell.run("%%step register --when 'scores[\"n\"] > 0'\nok = True")
    errors = [p for p in shell.graph().report.errors if p.step == "evaluate"]
    assert len(errors) == 1 and "'correct' (a numpy.int64), which is not JSON" in errors[0].message
    assert "int(correct) or float(correct)" in errors[0].fix and errors[0].line == 2


@pytest.mark.parametrize(
    "cells, message, fix",
    [
        (["%%step b --when 'nowhere > 1'\ny = 1"], "names 'nowhere', which is no earlier step's output", "param"),
        (
            ["%%step b --when 'x > 1'\ny = 1", "%%step c\nx = 2"],
            "which step 'c' produces, but that step comes later",
            "move step 'b' below step 'c'",
        ),
        (["%%step b --when 'y > 1'\ny = 1"], "which this step computes", "compute it in an earlier step"),
        (["%%step b --when 'LIMIT > 1'\ny = 1"], "reads no step output or pipeline parameter", "compare an output"),
        (["%%step b --when 'a_list == 1'\ny = 1"], "a list from the kernel", "%pipeline param"),
        (["%%step b --when 'nmae > 1'\ny = 1"], "no earlier step's output", "did you mean name?"),
        (["%%step b --when 'name > 1' --else-fail 'bad {missing}'\ny = 1"], "names 'missing'", "param"),
        (
            ["%%step b --when 'name > 1'\ny = 1", "%%step c --when 'name > 2'\nz = y"],
            "is under two conditions",
            "one shared --when",
        ),
        (
            [
                "%%step b --when 'name > 1' --else-fail 'one'\ny = 1",
                "%%step c --when 'name > 1' --else-fail 'two'\nz = 1",
            ],
            "--else-fail differs",
            "give the same --else-fail",
        ),
        (
            ["%%step b --when 'name > 1'\ny = 1", "%%step c --when 'y > 1'\nz = 1"],
            "is under two conditions",
            "one shared --when",
        ),
        (
            ["derived = name + 1", "%%step b --when 'derived > 1'\ny = 1"],
            "an ordinary cell computed from 'name'",
            "make that ordinary cell a %%step cell",
        ),
        (
            ["%%step b\ndel name", "%%step c --when 'name > 1'\ny = 1"],
            "names 'name', which step 'b' deletes",
            "keep 'name'",
        ),
    ],
)
def test_bad_conditions_are_errors_on_the_step_line_before_anything_is_built(shell, cells, message, fix):
    shell.configure(name="bad-when")
    shell.run("LIMIT = 3\na_list = [1]")
    shell.run("%%step a\nname = 1")
    for source in cells:
        shell.run(source)
    errors = shell.graph().report.errors
    assert any(message in p.message and fix in p.fix and p.line == 1 for p in errors), errors
    assert "bad-when" not in shell.error("%pipeline definition")  # refused before any upload


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%step b --when 'len(x) > 1'", "calls a function"),
        ("%%step b --else-fail 'no'", "--else-fail needs --when"),
        ("%%step b --when 'x >'", "is not a Python expression"),
        ("%%step b --when 'x > 1' --else-fail '{x:.2f}'", "has a format"),
    ],
)
def test_a_condition_that_does_not_parse_fails_the_cell(shell, line, message):
    shell.configure(name="syntax")
    assert message in shell.error(f"{line}\ny = 1")


def test_a_saved_notebook_builds_the_same_conditions_headless(tmp_path, monkeypatch, capsys):
    """IPython expands {name} in magic lines; %%step opts out, so the kernel and `smstep` read the same line."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(source)
        for source in [
            "%load_ext jupyter_smstep\n%pipeline config --name gated --role arn:aws:iam::111122223333:role/R "
            "--image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/i:1 --instance-type ml.m5.large",
            *NOTEBOOK,
        ]
    ]
    path = tmp_path / "gated.ipynb"
    nbformat.write(nb, path)
    from jupyter_smstep import cli

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    capsys.readouterr()
    assert cli.main(["graph", str(path), "--json"]) == 0, capsys.readouterr().err
    doc = json.loads(capsys.readouterr().out)
    (condition,) = doc["conditions"]
    assert condition["else_fail"] == "rmse {evaluation['rmse']} is over {threshold}"
    assert condition["steps"] == ["register", "deploy", "notify"]
    code = cli.main(["run", str(path), "-p", "threshold=1", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "rmse 3.5 is over 1.0" in err and "is false" in err
