"""Options whose value is a pipeline parameter (``--instance-type TrainingInstanceType``): the definition reads the
parameter, the export does the same, validation checks its default and each ``-p`` value as it checks a literal."""

from __future__ import annotations

import json
import os
import runpy

import pytest

from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.core.settings import ParameterRef
from jupyter_smstep.errors import SmstepError

NOTEBOOK = [
    "%pipeline param TrainingInstanceType=ml.m5.xlarge TrainingInstanceCount=2 MaxSeconds=3600 epochs=3",
    "%%step train --instance-type TrainingInstanceType --instance-count TrainingInstanceCount "
    "--max-runtime-in-seconds MaxSeconds\nmodel = epochs * 2",
    "%%step report\nsummary = model + 1",
]


@pytest.fixture
def notebook(shell):
    return shell.notebook("param-options", NOTEBOOK)


def test_the_graph_binds_the_options_to_the_parameters_and_shows_their_values(notebook):
    graph = notebook.graph()
    assert not graph.report.errors, graph.report.problems
    settings = graph.step("train").settings
    assert settings["instance_type"].value == ParameterRef("TrainingInstanceType", "ml.m5.xlarge")
    assert settings["instance_count"].value == ParameterRef("TrainingInstanceCount", 2)
    doc = {s["name"]: s for s in graph.to_json()["steps"]}
    assert doc["train"]["settings"]["instance_type"] == {
        "value": "ml.m5.xlarge",
        "source": "cell",
        "parameter": "TrainingInstanceType",
    }
    assert doc["report"]["settings"]["instance_type"]["value"] == "ml.m5.large"  # the notebook's, a literal


def test_the_definition_and_the_export_read_the_parameter(notebook, session, tmp_path):
    definition = notebook.workspace.definition(session)
    train = next(s for s, _ in definition_steps(definition) if s["Name"] == "train")["Arguments"]
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert train["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == {"Get": "Parameters.MaxSeconds"}
    path = tmp_path / "exported.py"
    notebook.run(f"%pipeline export {path}")
    assert "instance_type=TrainingInstanceType_param" in path.read_text()
    module = runpy.run_path(str(path), run_name="exported")
    module["pipeline"].sagemaker_session = session
    exported = json.loads(module["pipeline"].definition())
    again = next(s for s, _ in definition_steps(exported) if s["Name"] == "train")["Arguments"]
    assert again["ResourceConfig"] == train["ResourceConfig"]
    assert again["StoppingCondition"] == train["StoppingCondition"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")
def test_a_local_run_resolves_the_parameter_and_a_bad_override_is_refused_before_it_runs(notebook, tmp_path):
    result = notebook.workspace.run_local(
        runs_dir=tmp_path / "runs", parameters={"TrainingInstanceType": "ml.c5.2xlarge"}
    )
    assert result.succeeded and result.outputs("report") == {"summary": notebook.ip.user_ns["summary"]}
    assert result.instance_types()["train"] == "ml.c5.2xlarge"
    with pytest.raises(SmstepError) as info:
        notebook.workspace.run_local(runs_dir=tmp_path / "runs", parameters={"TrainingInstanceType": "xlarge"})
    assert "--instance-type 'xlarge' (from cell, parameter TrainingInstanceType): InstanceType must be one of" in str(
        info.value
    )
    with pytest.raises(SmstepError, match="instance_count must be at least 1"):
        notebook.workspace.run_local(runs_dir=tmp_path / "runs", parameters={"TrainingInstanceCount": "0"})
    assert not list((tmp_path / "runs").glob("*/steps/train/2"))  # nothing ran for the refused ones


@pytest.mark.parametrize(
    "line, message, fix",
    [
        (
            "--instance-count TrainingInstanceType",
            "parameter 'TrainingInstanceType' is a str ('ml.m5.xlarge'); --instance-count takes an int parameter",
            "with an int default",
        ),
        (
            "--instance-type epochs",
            "parameter 'epochs' is a int (3); --instance-type takes a str parameter",
            "with a str default",
        ),
        (
            "--max-runtime-in-seconds Huge",
            "max_runtime_in_seconds 99999999 (from cell, parameter Huge) is above",
            "at most",
        ),
        (
            "--use-spot-instances Flag",
            "parameter 'Flag' is a str ('yes'); --use-spot-instances takes a bool parameter",
            "with a bool default",
        ),
    ],
)
def test_a_bad_parameter_option_is_an_error_before_anything_is_built(notebook, line, message, fix):
    notebook.run("%pipeline param Huge=99999999 Flag=yes")
    notebook.run(f"%%step tune {line}\ntuned = model * 3")
    errors = [p for p in notebook.graph().report.errors if p.step == "tune"]
    assert any(message in p.message and fix in p.fix for p in errors), errors


@pytest.mark.parametrize(
    "line, message, fix",
    [
        (
            "--instance-count TrainingInstanceCont",
            "--instance-count 'TrainingInstanceCont' is not an integer or a declared pipeline parameter",
            "did you mean TrainingInstanceCount?",
        ),
        ("--volume-size Nowhere", "is not an integer or a declared pipeline parameter", "%pipeline param Nowhere=3"),
        ("--use-spot-instances Spot", "is not true or false or a declared pipeline parameter", "--use-spot-instances"),
    ],
)
def test_a_name_no_parameter_has_fails_the_cell_at_once(notebook, line, message, fix):
    error = notebook.error(f"%%step tune {line}\ntuned = model * 3")
    assert message in error and fix in error


def test_a_parameter_gone_later_is_an_error_on_the_steps_that_use_it(notebook):
    """(a re-run parameters cell that no longer declares it)"""
    notebook.workspace.registry.parameters.pop("TrainingInstanceCount")
    errors = [p for p in notebook.graph().report.errors if p.step == "train"]
    assert any(
        "--instance-count 'TrainingInstanceCount' (from cell) is neither an integer nor a declared pipeline "
        "parameter" in p.message
        for p in errors
    ), errors
