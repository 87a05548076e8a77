"""``--when`` / ``--else-fail`` compiled by the real SDK (moto as the endpoint), and the export's same definition."""

from __future__ import annotations

import json
import runpy

from jupyter_smstep.core.conditions import definition_steps

NOTEBOOK = [
    "%pipeline param threshold=5.0",
    "%%step evaluate\nevaluation = {'rmse': 3.5}\nlabels = ['cat', 'dog']",
    "%%step register --when \"evaluation['rmse'] < threshold and labels[0] not in ['cow'] and "
    "(threshold != 0 or not evaluation['rmse'] >= 1)\" --else-fail \"rmse {evaluation['rmse']} over {threshold}\"\n"
    "registered = evaluation['rmse']",
    "%%step deploy\nendpoint = registered + 1",
    "%%step report\nsummary = len(labels)",
]


def build(shell):
    shell.notebook("gated", NOTEBOOK)


def shape(definition):
    """Each step's type, branch, dependencies and (for conditions and fails) its arguments."""
    out = {}
    for step, branch in definition_steps(definition):
        entry = {"type": step["Type"], "branch": branch, "depends": sorted(step.get("DependsOn", []))}
        if step["Type"] == "Condition":
            entry["conditions"] = step["Arguments"]["Conditions"]
            entry["description"] = step.get("Description")
        elif step["Type"] == "Fail":
            entry["message"] = step["Arguments"]["ErrorMessage"]
        else:
            entry["output"] = step["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"][1]
            entry["json"] = (
                "--serialize_output_to_json" in step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
            )
        out[step["Name"]] = entry
    return out


def test_the_definition_has_one_condition_step_with_the_branch_and_the_fail_step(shell, session):
    build(shell)
    d = shape(shell.workspace.definition(session))
    assert [name for name, e in d.items() if e["branch"] is None] == ["evaluate", "report", "when-register"]
    assert d["register"]["branch"] == d["deploy"]["branch"] == ("when-register", True)
    assert d["fail-register"]["branch"] == ("when-register", False)
    condition = d["when-register"]
    assert condition["description"].startswith("when evaluation['rmse'] < threshold and labels[0] not in ['cow']")
    first, second, third = condition["conditions"]
    assert first["Type"] == "LessThan" and first["RightValue"] == {"Get": "Parameters.threshold"}
    assert first["LeftValue"]["Std:JsonGet"]["Path"] == "Result['evaluation']['rmse']"
    assert second["Type"] == "Not" and second["Condition"]["Type"] == "In"
    assert second["Condition"]["QueryValue"]["Std:JsonGet"]["Path"] == "Result['labels'][0]"
    assert third["Type"] == "Or" and [c["Type"] for c in third["Conditions"]] == ["Not", "Not"]
    message = d["fail-register"]["message"]["Std:Join"]["Values"]
    assert message[0] == "rmse " and message[2] == " over " and message[3] == {"Get": "Parameters.threshold"}
    # the SDK writes results.json for the step whose outputs the condition reads
    assert d["evaluate"]["json"]


def test_the_export_builds_the_same_conditions(shell, session, tmp_path):
    build(shell)
    notebook = shape(shell.workspace.definition(session))
    path = tmp_path / "gated.py"
    shell.run(f"%pipeline export {path}")
    text = path.read_text()
    assert "when_register_step = ConditionStep(name='when-register'" in text
    assert "FailStep(name='fail-register', error_message=Join(on=''" in text
    module = runpy.run_path(str(path), run_name="exported")
    module["pipeline"].sagemaker_session = session
    exported = shape(json.loads(module["pipeline"].definition()))
    assert exported == notebook


def test_a_changed_condition_changes_the_guarded_steps_keys_and_says_so(shell):
    from jupyter_smstep.core.keys import changes

    build(shell)
    before = shell.workspace.graph(keys=True).keys
    shell.run(NOTEBOOK[2].replace("< threshold and", "< 1.5 and"))
    after = shell.workspace.graph(keys=True).keys
    assert before["evaluate"].key == after["evaluate"].key and before["report"].key == after["report"].key
    assert changes(before["register"].parts, after["register"]) == ["the --when condition around it changed"]
    assert before["deploy"].key != after["deploy"].key
