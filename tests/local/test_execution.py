"""``from jupyter_smstep import execution``: the interactive values in the kernel, the run's in a local run, the
SDK's ExecutionVariables in the definition and the export; such a step is never reused from the cache."""

from __future__ import annotations

import json
import os
import runpy

import pytest

from jupyter_smstep.core.conditions import definition_steps

NOTEBOOK = [
    "from jupyter_smstep import execution as run_info",
    "%%step stamp\nstamp = f'{run_info.id}@{run_info.start_time}'\nwho = run_info.pipeline_name",
    "%%step report\nreport = f'{stamp} by {who}'.upper()",
]


@pytest.fixture
def notebook(shell):
    return shell.notebook("stamped", NOTEBOOK)


def test_in_the_kernel_it_reads_interactive(notebook):
    ns = notebook.ip.user_ns
    assert ns["stamp"].startswith("interactive@") and ns["who"] == "interactive"
    inputs = notebook.graph().step("stamp").inputs
    assert inputs["run_info"].kind == "execution"
    doc = notebook.graph().to_json()["steps"][0]["inputs"]
    assert "execution" in doc["run_info"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")
def test_a_local_run_gets_the_runs_id_and_start_and_never_reuses_the_step(notebook, tmp_path):
    first, _ = notebook.run_local(tmp_path / "runs")
    assert first.succeeded, first.to_json()
    stamp = first.outputs("stamp")
    assert stamp["who"] == "stamped"
    assert stamp["stamp"].startswith(f"{first.run_id}@20")
    assert first.outputs("report") == {"report": f"{stamp['stamp']} by stamped".upper()}
    second, _ = notebook.run_local(tmp_path / "runs")
    assert second.steps["stamp"].cached_from is None and second.steps["report"].cached_from is None
    assert second.outputs("stamp")["stamp"].startswith(f"{second.run_id}@")


def test_the_definition_and_the_export_pass_the_execution_variables(notebook, session, tmp_path):
    definition = notebook.workspace.definition(session)
    args = next(s for s, _ in definition_steps(definition) if s["Name"] == "stamp")["Arguments"]
    refs = json.dumps(args["AlgorithmSpecification"]["ContainerArguments"])
    for variable in ("Execution.PipelineExecutionId", "Execution.StartDateTime", "Execution.PipelineName"):
        assert variable in refs
    path = tmp_path / "stamped.py"
    notebook.run(f"%pipeline export {path}")
    text = path.read_text()
    assert "import jupyter_smstep" not in text and "from jupyter_smstep" not in text  # it needs no jupyter_smstep
    assert "ExecutionVariables.PIPELINE_EXECUTION_ID" in text
    module = runpy.run_path(str(path), run_name="exported")
    module["pipeline"].sagemaker_session = session
    exported = json.loads(module["pipeline"].definition())
    again = next(s for s, _ in definition_steps(exported) if s["Name"] == "stamp")["Arguments"]
    assert json.dumps(again["AlgorithmSpecification"]["ContainerArguments"]).count("Execution.") == refs.count(
        "Execution."
    )


def test_importing_it_inside_a_step_is_an_error_with_the_fix(shell):
    shell.configure(name="inside")
    shell.run("%%step --defer a\nfrom jupyter_smstep import execution\nx = execution.id")
    (error,) = [p for p in shell.graph().report.errors if p.step == "a"]
    assert "the step's container has no jupyter_smstep" in error.message and error.line == 2
    assert "import it in an ordinary cell above" in error.fix
