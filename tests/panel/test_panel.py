"""The pipeline panel: real IPython shell, real ipywidgets, the SVG read back as XML.

Remote monitoring goes through :class:`helpers.fakes.FakeSageMaker` (a real
HTTP endpoint in front of a moto server), the way the product code talks to
SageMaker: boto3 with ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import html as html_mod
import re
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import ipywidgets as widgets
import pytest

import jupyter_smstep.panel.widget as panel_mod
from jupyter_smstep.core.setting_rules import image_python
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.local.results import RunResult, StepEvent, StepResult
from jupyter_smstep.sdk import capture
from jupyter_smstep.panel import layout as dag_layout
from helpers.fakes import StepPlan, prepare_account

ROLE = "arn:aws:iam::111122223333:role/SMRole"
SVG = "{http://www.w3.org/2000/svg}"


def notebook(shell, image: str = "111122223333.dkr.ecr.us-east-1.amazonaws.com/img:1", role: str = ROLE) -> None:
    shell.run(f"%pipeline config --name demo --role {role} --instance-type ml.m5.xlarge --image-uri {image}")
    shell.run("%pipeline param input_uri=s3://bucket/data.csv epochs=10 rate=0.5 shuffle=True")
    shell.run(
        "import math\ndef load(uri):\n    return list(range(10))\ndef split(df, frac):\n"
        "    n = int(len(df) * frac)\n    return df[:n], df[n:]"
    )
    shell.run("%%step preprocess --instance-type ml.m5.2xlarge\ndf = load(input_uri)\ntrain, test = split(df, 0.8)")
    shell.run("%%step train\nmodel = sum(train) * epochs * rate + math.sqrt(4)")
    shell.run("%%step evaluate\nscore = model - sum(test)")


def svg_tree(panel) -> ET.Element:
    return ET.fromstring(panel.svg.value)


def nodes(panel) -> dict[str, dict]:
    root = svg_tree(panel)
    return {
        g.get("data-step"): dict(g.attrib) for g in root.iter(f"{SVG}g") if g.get("class", "").startswith("smstep-node")
    }


def edges(panel) -> dict[tuple[str, str], str]:
    root = svg_tree(panel)
    return {
        (g.get("data-source"), g.get("data-target")): g.get("data-vars")
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "smstep-edge"
    }


def label_texts(panel) -> list[str]:
    root = svg_tree(panel)
    return [t.text for g in root.iter(f"{SVG}g") if g.get("class") == "smstep-label" for t in g.iter(f"{SVG}text")]


@pytest.fixture
def panel(shell):
    notebook(shell)
    p = panel_mod.show(shell.workspace)
    yield p
    p.close()


# --------------------------------------------------------------------------- building
def test_panel_builds_for_a_small_notebook(panel):
    assert isinstance(panel, widgets.VBox) and isinstance(panel, panel_mod.PipelinePanel)
    assert "<b>demo</b>" in panel.header.value and "3 steps" in panel.header.value and "✓ valid" in panel.header.value
    assert panel.selector.options == ("preprocess", "train", "evaluate")
    assert [
        b.description
        for b in (panel.validate_button, panel.run_button, panel.submit_button, panel.stop_button, panel.retry_button)
    ] == ["Validate", "Run locally", "Submit", "Stop", "Retry"]
    assert panel.stop_button.disabled and panel.retry_button.disabled


def test_svg_has_the_steps_and_labelled_edges(panel):
    found = nodes(panel)
    assert set(found) == {"preprocess", "train", "evaluate"}
    assert all(n["data-state"] == "pending" for n in found.values())
    assert edges(panel) == {
        ("preprocess", "train"): "train",
        ("preprocess", "evaluate"): "test",
        ("train", "evaluate"): "model",
    }
    assert sorted(label_texts(panel)) == ["model", "test", "train"]
    svg = panel.svg.value
    assert "ml.m5.2xlarge" in svg and "ml.m5.xlarge" in svg  # instance type under each name
    # layered top to bottom: preprocess above train above evaluate
    y = {name: box.y for name, box in panel._layout.boxes.items()}
    assert y["preprocess"] < y["train"] < y["evaluate"]


def test_selecting_a_step_shows_settings_with_sources_inputs_outputs_and_source(panel):
    panel.selector.value = "preprocess"
    html = panel.details.value
    assert "data-setting='instance_type'" in html
    row = html.split("data-setting='instance_type'")[1].split("</tr>")[0]
    assert "ml.m5.2xlarge" in row and "data-source='cell'" in row
    role_row = html.split("data-setting='role'")[1].split("</tr>")[0]
    assert ROLE in role_row and "data-source='notebook'" in role_row
    count_row = html.split("data-setting='instance_count'")[1].split("</tr>")[0]
    assert "data-source='default'" in count_row
    # inputs and where they come from
    assert "data-input='input_uri' data-kind='parameter'" in html and "pipeline parameter (now" in html
    load_row = html.split("data-input='load'")[1].split("</tr>")[0]
    assert "captured value" in load_row and "function" in load_row and "pickled" in load_row
    assert "ordinary cell" in load_row
    # outputs and who reads them
    assert "data-output='train'" in html and "read by <b>train</b>" in html
    assert "read by <b>evaluate</b>" in html.split("data-output='test'")[1]
    # the source cell, with the %%step line as line 1
    source = html.split("smstep-source-cell")[1]
    text = html_mod.unescape(re.sub(r"<[^>]+>", "", source))
    assert "  1 %%step preprocess --instance-type ml.m5.2xlarge\n  2 df = load(input_uri)" in text
    panel.selector.value = "train"
    html = panel.details.value
    assert "output of step <b>preprocess</b>" in html
    assert "imported in the step: <code>import math</code>" in html
    assert "line 2" in html.split("data-input='train'")[1].split("</tr>")[0]


def test_settings_from_config_yaml_and_kernel_image(shell, monkeypatch, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "SageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n        VolumeKmsKeyId: kms-key-1\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_INTERNAL_IMAGE_URI", "123.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution")
    monkeypatch.setenv("IMAGE_VERSION", "2.1")
    shell.run(f"%pipeline config --name demo --role {ROLE} --instance-type ml.m5.xlarge")
    shell.run("%%step only\nx = 1")
    p = panel_mod.show(shell.workspace)
    try:
        html = p.details.value
        assert "kms-key-1" in html.split("data-setting='volume_kms_key'")[1].split("</tr>")[0]
        assert "data-source='config.yaml'" in html.split("data-setting='volume_kms_key'")[1].split("</tr>")[0]
        image_row = html.split("data-setting='image_uri'")[1].split("</tr>")[0]
        assert "sagemaker-distribution:2.1" in image_row and "data-source='kernel image'" in image_row
        assert "IMAGE_VERSION=2.1" in p.header.value  # how the kernel image was found
    finally:
        p.close()


def test_clicking_a_node_selects_the_step(panel):
    names = list(panel.hits.options)
    assert names == ["preprocess", "train", "evaluate"]
    assert panel.hits in panel.dag_box.children and panel.hits.options == tuple(names)
    assert f"{panel.uid}-hits" in panel.hits._dom_classes
    panel.hits.value = "evaluate"  # what a click on the node's (transparent) button does
    assert panel.selector.value == "evaluate"
    assert 'data-step="evaluate"' in panel.select_style.value
    assert "data-step='evaluate'" in panel.details.value
    panel.selector.value = "train"  # and the other way round
    assert panel.hits.value == "train"
    # each transparent button sits exactly on its node
    box = panel._layout.boxes["evaluate"]
    i = names.index("evaluate")
    assert (
        f'button[value="{i}"]{{left:{box.left:.0f}px;top:{box.y:.0f}px;width:{box.width:.0f}px!important;'
        f"height:{box.height:.0f}px!important}}"
    ) in panel.dag_style.value


# --------------------------------------------------------------------------- problems
def test_problems_are_listed_with_step_line_and_fix(shell):
    notebook(shell, image="111122223333.dkr.ecr.us-east-1.amazonaws.com/img:2.0-cpu-py39")
    shell.run("%%step broken\nresult = score + undefined_name", ok=False)
    shell.run("print(score)")  # an ordinary cell using a step output
    p = panel_mod.show(shell.workspace)
    try:
        html = p.problems.value
        assert "found before anything is uploaded" in html
        err = [part for part in html.split("class='smstep-problem'")[1:] if "data-severity='error'" in part]
        assert err and "undefined_name" in err[0] and "step <b>broken</b>" in err[0] and "line 2" in err[0]
        assert "fix:" in err[0]
        assert "is for Python 3.9 but the kernel runs Python" in html and "for every step" in html
        assert "an output of step &#x27;evaluate&#x27;" in html
        assert "✗ 1 error" in p.header.value
        assert nodes(p)["broken"] and 'class="badge"' in p.svg.value
        p.selector.value = "broken"
        assert "undefined_name" in p.details.value  # the step's own problems on its details
        with pytest.raises(SmstepError, match="undefined_name"):
            p._check_ready("run")
        p.run_button.click()  # refused, and said so, nothing started
        assert "error" in p.status.value and "undefined_name" in p.status.value
        assert p.state.run_kind == ""
    finally:
        p.close()


def test_large_captured_value_and_unpicklable_value(shell, monkeypatch):
    monkeypatch.setattr(capture, "LARGE_CAPTURE_BYTES", 1000)
    notebook(shell)
    shell.run("BIG = list(range(5000))\nimport threading\nLOCK = threading.Lock()")
    shell.run("%%step use_big\ntotal = sum(BIG) + score")
    shell.run("%%step use_lock\nwith LOCK:\n    z = total")
    p = panel_mod.show(shell.workspace)
    try:
        html = p.problems.value
        big = [x for x in html.split("class='smstep-problem'") if "BIG" in x][0]
        assert "data-severity='warning'" in big and "MiB pickled" in big and "step <b>use_big</b>" in big
        lock = [x for x in html.split("class='smstep-problem'") if "LOCK" in x][0]
        assert "data-severity='error'" in lock and "cannot be pickled" in lock
        p.selector.value = "use_big"
        assert "⚠ large" in p.details.value
    finally:
        p.close()


def test_missing_role_in_studio_is_a_warning(shell, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_INTERNAL_IMAGE_URI", "123.dkr.ecr.us-east-1.amazonaws.com/img:1")
    shell.run("%pipeline config --name demo --instance-type ml.m5.xlarge")
    shell.run("%%step only\nx = 1")
    p = panel_mod.show(shell.workspace)
    try:
        assert "no IAM role set: submitting uses the Studio execution role" in p.problems.value
    finally:
        p.close()


def test_image_python_parsing():
    assert (
        image_python(
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-cpu-py310-ubuntu20.04-sagemaker"
        )
        == "3.10"
    )
    assert image_python("x.dkr.ecr/r:python3.11") == "3.11"
    assert image_python("x.dkr.ecr/sagemaker-base-python-310:1.0") == "3.10"
    assert image_python("x.dkr.ecr/img:1.9-cpu") is None
    assert image_python("x.dkr.ecr/copy:latest") is None


def test_validate_button_reports_ready(panel):
    panel.validate_button.click()
    assert "✓ valid" in panel.status.value and "ready to run or submit" in panel.status.value


# --------------------------------------------------------------------------- parameters
def test_parameters_get_widgets_by_type_and_edits_reach_run_and_submit(panel, monkeypatch):
    w = panel.param_widgets
    assert isinstance(w["input_uri"], widgets.Text) and w["input_uri"].value == "s3://bucket/data.csv"
    assert isinstance(w["epochs"], widgets.IntText) and w["epochs"].value == 10
    assert isinstance(w["rate"], widgets.FloatText) and w["rate"].value == 0.5
    assert isinstance(w["shuffle"], widgets.Checkbox) and w["shuffle"].value is True
    w["epochs"].value = 3
    w["shuffle"].value = False
    seen = {}

    def fake_run(parameters=None, on_event=None, runs_dir=None, stop=None):
        seen["run"] = dict(parameters)
        return RunResult("r1", Path("/tmp/r1"), {}, succeeded=True, definition={})

    def fake_submit(parameters=None, session=None, changed=False):
        seen["submit"] = dict(parameters)
        raise SmstepError("no network in this test")

    monkeypatch.setattr(panel.workspace, "run_local", fake_run)
    monkeypatch.setattr(panel.workspace, "submit", fake_submit)
    panel.run_locally(wait=True)
    assert seen["run"] == {"input_uri": "s3://bucket/data.csv", "epochs": 3, "rate": 0.5, "shuffle": False}
    panel.submit(wait=True)
    assert seen["submit"]["epochs"] == 3
    assert "submit failed" in panel.status.value and "no network in this test" in panel.status.value
    # the edit survives a refresh
    panel.refresh(force=True)
    assert panel.param_widgets["epochs"].value == 3


# --------------------------------------------------------------------------- following the notebook
def test_panel_refreshes_when_step_cells_are_rerun(shell, panel):
    assert set(nodes(panel)) == {"preprocess", "train", "evaluate"}
    shell.run("%%step report --instance-type ml.c5.xlarge\nsummary = f'{score:.2f}'")
    assert set(nodes(panel)) == {"preprocess", "train", "evaluate", "report"}
    assert ("evaluate", "report") in edges(panel)
    assert "report" in panel.selector.options
    shell.run("%%step report --instance-type ml.c5.2xlarge\nsummary = f'{score:.2f}'")  # re-run: replaced
    assert list(panel.selector.options).count("report") == 1
    assert "ml.c5.2xlarge" in panel.svg.value
    shell.run("%pipeline param extra=1")
    assert isinstance(panel.param_widgets["extra"], widgets.IntText)
    panel.close()
    shell.run("%%step later\nz = 1")
    assert "later" not in panel.selector.options  # a closed panel no longer follows


def test_pipeline_show_returns_the_panel_once(shell):
    notebook(shell)
    result = shell.run("%pipeline show")
    p = result.result
    try:
        assert isinstance(p, panel_mod.PipelinePanel)
        assert p._displayed_in is None  # displayed by show(), then the cell's value was not shown again
    finally:
        p.close()


def test_rerunning_show_replaces_the_cells_panel_and_few_panels_follow(shell, monkeypatch):
    notebook(shell)
    cell = {"id": "cell-A"}
    monkeypatch.setattr(panel_mod, "_cell_id", lambda sh: cell["id"])
    first = panel_mod.show(shell.workspace)
    second = panel_mod.show(shell.workspace)  # the same cell re-run: its old output is gone
    assert first not in panel_mod._live and first.comm is None
    assert second in panel_mod._live and second.following
    others = []
    for i in range(panel_mod.MAX_FOLLOWING + 1):
        cell["id"] = f"cell-{i}"
        others.append(panel_mod.show(shell.workspace))
    following = [p for p in panel_mod._live if p.workspace is shell.workspace and p.following]
    assert len(following) == panel_mod.MAX_FOLLOWING and second not in following
    shell.run("%%step extra\nq = 1")
    assert "extra" in others[-1].selector.options
    assert "extra" not in second.selector.options  # not following any more...
    second.validate_button.click()
    assert "extra" in second.selector.options  # ...but a click refreshes it
    for p in [second, *others]:
        p.close()


def test_pipeline_show_in_a_fresh_process(tmp_path):
    """``%pipeline show`` and ``jupyter_smstep.show_panel()`` in a kernel that never imported the panel module."""
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_cell("%load_ext jupyter_smstep")
        ip.run_cell("%pipeline config --name demo --role {ROLE} --instance-type ml.m5.xlarge --image-uri i:1")
        ip.run_cell("%%step a\\nx = 1")
        r = ip.run_cell("%pipeline show")
        print("SHOW", type(r.result).__name__)
        r = ip.run_cell("import jupyter_smstep; p = jupyter_smstep.show_panel()")
        print("CALL", r.success, type(ip.user_ns.get("p")).__name__)
        r = ip.run_cell("p2 = jupyter_smstep.show_panel()")
        print("AGAIN", r.success, type(ip.user_ns.get("p2")).__name__)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout
    assert "SHOW PipelinePanel" in out, out + proc.stderr
    assert "CALL True PipelinePanel" in out, out + proc.stderr
    assert "AGAIN True PipelinePanel" in out, out + proc.stderr


# --------------------------------------------------------------------------- local run progress
def test_local_run_events_colour_the_dag(panel, monkeypatch):
    ev = lambda step, state, kind="state", **kw: StepEvent("r2", step, state, kind=kind, **kw)  # noqa: E731
    snapshots = []

    def fake_run(parameters=None, on_event=None, runs_dir=None, stop=None):
        on_event(ev(None, "running", kind="run"))
        for s in ("preprocess", "train", "evaluate"):
            on_event(ev(s, "pending"))
        on_event(ev("preprocess", "running"))
        time.sleep(panel.render_interval * 2)  # redraws are coalesced
        snapshots.append({k: v["data-state"] for k, v in nodes(panel).items()})
        on_event(ev("preprocess", "succeeded", duration=1.25))
        on_event(ev("train", "running"))
        on_event(
            ev(
                "train",
                "failed",
                duration=0.5,
                error="Traceback ...\nZeroDivisionError: division by zero",
                message="ZeroDivisionError: division by zero",
            )
        )
        on_event(ev("evaluate", "skipped", message="skipped: step 'train' failed"))
        time.sleep(panel.render_interval * 2)
        snapshots.append({k: v["data-state"] for k, v in nodes(panel).items()})
        steps = {
            "preprocess": StepResult("preprocess", "succeeded", duration=1.25),
            "train": StepResult(
                "train",
                "failed",
                duration=0.5,
                error="Traceback ...\nZeroDivisionError: division by zero",
                summary="ZeroDivisionError: division by zero",
            ),
            "evaluate": StepResult("evaluate", "skipped", summary="skipped: step 'train' failed"),
        }
        return RunResult("r2", Path("/tmp/r2"), steps, succeeded=False, definition={})

    monkeypatch.setattr(panel.workspace, "run_local", fake_run)
    panel.run_button.click()
    panel.wait(30)
    assert snapshots[0] == {"preprocess": "running", "train": "pending", "evaluate": "pending"}
    assert snapshots[1] == {"preprocess": "succeeded", "train": "failed", "evaluate": "skipped"}
    assert nodes(panel)["preprocess"]["data-state"] == "succeeded"
    assert "1.2s" in panel.svg.value or "1.3s" in panel.svg.value
    assert "✗ local run failed (train)" in panel.status.value
    assert panel.selector.value == "train"  # the failure is selected
    assert "ZeroDivisionError: division by zero" in panel.details.value and "smstep-error" in panel.details.value
    assert "data-state='skipped'" in panel.execution.value
    assert not panel.run_button.disabled


def test_run_locally_with_the_real_runner(shell, tmp_path, monkeypatch):
    pytest.importorskip("jupyter_smstep.local.runner")
    monkeypatch.chdir(tmp_path)
    notebook(shell)
    p = panel_mod.show(shell.workspace)
    try:
        p.param_widgets["epochs"].value = 2
        p.run_locally(wait=True)
        assert "✓ local run succeeded" in p.status.value, p.status.value + p.execution.value
        assert {n["data-state"] for n in nodes(p).values()} == {"succeeded"}
        outputs = shell.workspace.last_run.outputs("train")
        assert outputs["model"] == pytest.approx(sum(range(8)) * 2 * 0.5 + 2.0)
        # what a submit would cost, from this run's measurements: offline here, so instance-hours only
        assert "estimated: at least" in p.execution.value and "could not be asked" in p.execution.value
        p.run_locally(wait=True)  # the same again: every step from the first run's cache, said once
        p.selector.value = "train"
        assert p.details.value.count("cached: the result of run") == 1, p.details.value
    finally:
        p.close()


def test_stop_stops_a_local_run_within_seconds_and_its_steps_process(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shell.configure(name="long")
    pid_file = tmp_path / "pid"
    shell.run(
        f"%%step slow --defer\nimport os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\ndone = True"
    )
    shell.run("%%step after --defer\nflag = done")
    p = panel_mod.show(shell.workspace)
    try:
        assert p.stop_button.disabled  # nothing to stop yet
        thread = p.run_locally()
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60, what="the step to start")
        assert not p.stop_button.disabled, "Stop is the way out of a local run"
        started = time.monotonic()
        p.stop_button.click()
        thread.join(timeout=30)
        assert not thread.is_alive() and time.monotonic() - started < 10
        pid = int(pid_file.read_text())
        wait_for(
            lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
            timeout=10,
            what="the step's process to end",
        )
        assert "local run stopped" in p.status.value, p.status.value
        assert "■ stopped" in p.execution.value and "failed" not in p.execution.value, p.execution.value
        states = {n: d["data-state"] for n, d in nodes(p).items()}
        assert states == {"slow": "stopped", "after": "skipped"}, states
        assert p.stop_button.disabled and not p.run_button.disabled
        run = shell.workspace.last_run
        assert run.steps["slow"].state == "stopped" and not run.succeeded
    finally:
        p.close()


def node_text(panel, name):
    root = svg_tree(panel)
    group = next(g for g in root.iter(f"{SVG}g") if g.get("data-step") == name)
    return " ".join("".join(t.itertext()) for t in group.iter(f"{SVG}text"))


def test_verify_marks_each_step_equal_or_not_to_the_kernel(shell, tmp_path, monkeypatch):
    """The Verify button runs locally and marks each step = kernel or ≠ kernel, with the cause; a
    %pipeline verify in a cell marks them too, and a new run clears the marks until it is compared."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOTEBOOK_MODE", raising=False)
    shell.configure(name="marks")
    shell.run("%%step make\nvalue = 21")
    shell.run("import os\nos.environ['NOTEBOOK_MODE'] = 'kernel'")  # only the kernel has it
    shell.run("%%step use\nimport os\nmode = os.environ.get('NOTEBOOK_MODE')\nanswer = value * 2")
    p = panel_mod.show(shell.workspace)
    try:
        p.verify_button.click()
        p.jobs.wait(120)
        assert "≠ kernel" not in node_text(p, "make") and "= kernel" in node_text(p, "make")
        assert "≠ kernel" in node_text(p, "use")
        assert "verify: 2 equal, 1 differs" in p.status.value, p.status.value
        p.selector.value = "use"
        assert "data-mark='≠ kernel'" in p.details.value
        assert "mode differ(s) from the kernel&#x27;s" in p.details.value, p.details.value
        assert "NOTEBOOK_MODE" in p.details.value  # the likely cause: the variable only the kernel has
        p.run_locally(wait=True)
        p.jobs.wait(60)
        assert "kernel" not in node_text(p, "use")  # a new run is not compared yet
        shell.run("unrelated = 1")  # nor after the next cell: the marks were the older run's
        assert "kernel" not in node_text(p, "use")
        shell.run("%pipeline verify")  # the magic, in a cell: the panel marks the steps after it
        assert "≠ kernel" in node_text(p, "use") and "= kernel" in node_text(p, "make")
    finally:
        p.close()


def test_kernel_interrupt_stops_a_local_run_the_panel_started(tmp_path):
    """In a real ipykernel, idle while the panel's run goes on in its thread: Kernel → Interrupt (SIGINT, as
    JupyterLab sends it) stops the run within seconds, as Stop does, and the kernel stays usable."""
    from helpers.kernel import Kernel

    pid_file = tmp_path / "pid"
    kernel = Kernel()
    try:
        kernel.execute(f"import os\nos.chdir({str(tmp_path)!r})\n%load_ext jupyter_smstep")
        kernel.execute(f"%pipeline config --name interrupt --role {ROLE} --instance-type ml.m5.large")
        kernel.execute(
            f"%%step slow --defer\nimport os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))"
            "\ntime.sleep(120)\ndone = True"
        )
        kernel.execute(
            "import jupyter_smstep.panel.widget as panel_mod\n"
            "magics = get_ipython().magics_manager.registry['StepMagics']\n"
            "panel = panel_mod.show(magics.workspace)\nthread = panel.run_locally()"
        )
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=60, what="the step to start")
        started = time.monotonic()
        kernel.km.interrupt_kernel()  # the kernel is idle: only the run can take it
        pid = int(pid_file.read_text())
        wait_for(
            lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
            timeout=20,
            what="the step's process to end",
        )  # before the next cell, which SIGINT would hit
        assert time.monotonic() - started < 20
        kernel.execute(
            "thread.join(timeout=30)\nassert not thread.is_alive()\n"
            "assert 'local run stopped' in panel.status.value, panel.status.value\n"
            "assert magics.workspace.last_run.steps['slow'].state == 'stopped'"
        )
        kernel.execute("x = 1 + 1\nassert x == 2")  # the interrupt did not break the kernel
    finally:
        kernel.stop()


# --------------------------------------------------------------------------- remote monitoring
@pytest.fixture
def fake(fake_sagemaker):
    return fake_sagemaker(clock="wall", seconds_per_unit=0.2)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_follow_shows_failure_reason_log_tail_and_retry(panel, fake_sagemaker):
    fake = fake_sagemaker()  # its clock ticks per poll: the panel sees the execution run, however busy the machine
    panel.poll_initial, panel.poll_max = 0.1, 0.5
    arn = fake.add_execution(
        [
            StepPlan("preprocess", [], 10),
            StepPlan(
                "train",
                ["preprocess"],
                2,
                fail="AlgorithmError: ValueError: bad rows",
                log=["epoch 1", "Traceback (most recent call last):", "ValueError: bad rows"],
            ),
            StepPlan("evaluate", ["preprocess", "train"], 1),
        ],
        pipeline="demo",
    )
    seen = []  # every snapshot the panel rendered, with the Stop button's state right after
    on_snapshot = panel.on_snapshot

    def recording(snap):
        on_snapshot(snap)
        seen.append((snap.status, panel.stop_button.disabled))

    panel.on_snapshot = recording
    panel.follow(arn)
    panel.wait(30)
    # (recorded rather than sampled: the fake's clock ticks per poll, so a busy machine
    # could let the whole execution pass between two samples)
    assert ("Executing", False) in seen, seen
    assert panel.state.snapshot.status == "Failed"
    assert {k: v["data-state"] for k, v in nodes(panel).items()} == {
        "preprocess": "succeeded",
        "train": "failed",
        "evaluate": "skipped",
    }
    ex = panel.execution.value
    assert "data-status='Failed'" in ex and "open in the SageMaker console" in ex
    assert "#/pipelines/demo/executions/" in ex
    assert "AlgorithmError: ValueError: bad rows" in ex and "ValueError: bad rows</pre>" in ex
    assert panel.selector.value == "train"
    details = panel.details.value
    assert "smstep-failure" in details and "bad rows" in details and "smstep-log" in details
    assert panel.stop_button.disabled and not panel.retry_button.disabled

    panel.retry_button.click()
    assert fake.ops("RetryPipelineExecution")
    panel.wait(30)
    assert panel.state.snapshot.status == "Succeeded", panel.status.value
    assert {v["data-state"] for v in nodes(panel).values()} == {"succeeded"}
    assert "#2" in panel.svg.value  # the retried step shows its attempt
    assert panel.retry_button.disabled


def test_stop_button_stops_the_execution(panel, fake):
    panel.poll_initial, panel.poll_max = 0.1, 0.3
    arn = fake.add_execution(
        [StepPlan("preprocess", [], 50), StepPlan("train", ["preprocess"], 1), StepPlan("evaluate", ["train"], 1)],
        pipeline="demo",
    )
    panel.follow(arn)
    wait_for(lambda: nodes(panel)["preprocess"]["data-state"] == "running", what="running")
    panel.stop_button.click()
    assert fake.ops("StopPipelineExecution")
    panel.wait(30)
    assert panel.state.snapshot.status == "Stopped"
    assert nodes(panel)["preprocess"]["data-state"] == "stopped"
    assert not panel.retry_button.disabled


def test_throttled_polls_are_shown_not_fatal(panel, fake):
    panel.poll_initial, panel.poll_max = 0.05, 0.2
    arn = fake.add_execution(
        [StepPlan("preprocess", [], 1), StepPlan("train", ["preprocess"], 1), StepPlan("evaluate", ["train"], 1)],
        pipeline="demo",
    )
    fake.throttle["DescribePipelineExecution"] = 9
    panel.follow(arn)
    panel.wait(60)
    assert panel.state.snapshot.status == "Succeeded"
    assert fake.throttle["DescribePipelineExecution"] == 0


def test_submit_against_moto_then_follow(shell, fake, moto_server, monkeypatch, tmp_path):
    pytest.importorskip("sagemaker")
    monkeypatch.chdir(tmp_path)
    role = prepare_account(moto_server)
    notebook(shell, role=role)
    p = panel_mod.show(shell.workspace)
    p.poll_initial, p.poll_max = 0.1, 0.5
    try:
        p.param_widgets["epochs"].value = 4
        p.submit(wait=True)
        p.wait(60)
        assert p.state.snapshot is not None and p.state.snapshot.status == "Succeeded", p.status.value
        start = fake.ops("StartPipelineExecution")[-1]
        assert {"Name": "epochs", "Value": "4"} in start["PipelineParameters"]
        assert {v["data-state"] for v in nodes(p).values()} == {"succeeded"}
        assert shell.workspace.last_execution.execution_arn in p.execution.value
    finally:
        p.close()


def test_submit_changed_reruns_only_the_edited_step_and_says_so(shell, fake, moto_server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    notebook(shell, role=prepare_account(moto_server))
    shell.run("%pipeline config --name demo-changed")
    p = panel_mod.show(shell.workspace)
    p.poll_initial, p.poll_max = 0.1, 0.5
    try:
        p.submit(wait=True)
        p.wait(60)
        first = shell.workspace.last_execution.execution_arn
        shell.run("%%step evaluate\nscore = model - sum(test) - 1")
        p.changed_button.click()
        p.wait(60)
        start = fake.ops("StartPipelineExecution")[-1]
        assert start["SelectiveExecutionConfig"] == {
            "SourcePipelineExecutionArn": first,
            "SelectedSteps": [{"StepName": "evaluate"}],
        }
        assert "1 of 3 step(s) changed" in p.status.value and "evaluate" in p.status.value
    finally:
        p.close()


# --------------------------------------------------------------------------- scale
def fifty_step_notebook(shell, n: int = 50) -> None:
    shell.run(f"%pipeline config --name big --role {ROLE} --instance-type ml.m5.xlarge --image-uri i.dkr.ecr/x:1")
    shell.run("%pipeline param seed=1")
    for i in range(n):
        reads = [f"v{j}" for j in (i - 1, i - 3, i - 7) if j >= 0]
        expr = " + ".join(reads) if reads else "seed"
        shell.run(f"%%step s{i:02d} --defer\nv{i} = {expr} + 1")


def test_fifty_step_dag_builds_and_reads(shell):
    fifty_step_notebook(shell)
    t0 = time.perf_counter()
    p = panel_mod.show(shell.workspace)
    elapsed = time.perf_counter() - t0
    try:
        assert len(nodes(p)) == 50 and len(edges(p)) > 100
        assert len(p.hits.options) == 50
        boxes = list(p._layout.boxes.values())
        for a in boxes:  # no two nodes overlap
            for b in boxes:
                if a is not b and a.layer == b.layer:
                    assert abs(a.x - b.x) >= (a.width + b.width) / 2
        assert elapsed < 5.0  # generous here; bench/bench_panel.py measures it properly
        shell.run("%%step s10 --defer --instance-type ml.c5.xlarge\nv10 = v9 + v7 + v3 + 1")
        assert "ml.c5.xlarge" in p.svg.value
    finally:
        p.close()


def test_layout_orders_a_diamond_without_crossings():
    lay = dag_layout.layered_layout(
        ["a", "b", "c", "d", "e"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "e"), ("d", "e")]
    )
    assert lay.crossings == 0
    layers = {n: b.layer for n, b in lay.boxes.items()}
    assert layers == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    route = next(r for r in lay.routes if (r.source, r.target) == ("a", "e"))
    assert len(route.points) == 2 + 2 * 2  # passes two dummy lanes
    # a parent sits over its children (b, c and the lane down to e), not off to one side
    below = [lay.boxes["b"].x, lay.boxes["c"].x, route.points[1][0]]
    assert min(below) < lay.boxes["a"].x < max(below)


def test_layout_reduces_crossings():
    # Notebook order that would cross: a->y, b->x with x before y.
    lay = dag_layout.layered_layout(["a", "b", "x", "y"], [("a", "y"), ("b", "x")])
    assert lay.crossings == 0
    assert (lay.boxes["a"].x < lay.boxes["b"].x) == (lay.boxes["y"].x < lay.boxes["x"].x)


def test_layout_leaves_no_crossing_where_none_is_needed():
    # A DAG where barycenter sweeps from the notebook's order stall at 3 crossings; 0 is possible.
    edges = [
        ("n0", "n2"),
        ("n0", "n4"),
        ("n0", "n5"),
        ("n1", "n4"),
        ("n2", "n3"),
        ("n2", "n4"),
        ("n3", "n4"),
        ("n3", "n5"),
        ("n3", "n6"),
        ("n4", "n6"),
        ("n5", "n6"),
    ]
    lay = dag_layout.layered_layout([f"n{i}" for i in range(7)], edges)
    assert lay.crossings == 0
    assert lay.crossings == _counted_crossings(lay)


def test_layout_of_three_models_reading_the_data_and_a_middle_step_has_the_one_unavoidable_crossing():
    # Kale's dog-breed example as data flow: every model reads load_data's and detect_dogs' values.
    models = ["cnn_from_scratch", "cnn_vgg16", "cnn_resnet50"]
    edges = [("load_data", "detect_dogs")] + [(src, m) for m in models for src in ("load_data", "detect_dogs")]
    lay = dag_layout.layered_layout(["load_data", "detect_dogs", *models], edges)
    assert lay.crossings == 1 == _counted_crossings(lay)


def _counted_crossings(lay) -> int:
    """Crossing segments counted from the drawn routes, not from the layout's own count."""
    segments = []
    for route in lay.routes:
        segments += list(zip(route.points, route.points[1:]))
    count = 0
    for i, (a, b) in enumerate(segments):
        for c, d in segments[i + 1 :]:
            if {a, b} & {c, d}:
                continue  # segments that meet at a port or a lane do not cross
            if abs(a[1] - c[1]) < 1e-6 and abs(b[1] - d[1]) < 1e-6 and (a[0] - c[0]) * (b[0] - d[0]) < 0:
                count += 1
    return count


def test_a_fan_out_is_one_stack_marked_with_its_count_and_its_iterations_progress(shell):
    shell.run(
        f"%pipeline config --name fan --role {ROLE} --instance-type ml.m5.xlarge "
        "--image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/img:1"
    )
    shell.run("rates = [0.1, 0.2, 0.3]")
    shell.run("%%step data\nxs = list(range(5))")
    shell.run("%%step fit --foreach r=rates --instance-type ml.c5.xlarge\nw = [x * r for x in xs]")
    shell.run("%%step report\nn = len(w)")
    p = panel_mod.show(shell.workspace)
    try:
        found = nodes(p)
        assert set(found) == {"data", "fit", "report"}  # the iterations fold into their stack
        assert found["fit"]["data-shape"] == "stack" and found["data"]["data-shape"] == "step"
        assert "3 × ml.c5.xlarge" in p.svg.value
        assert edges(p) == {("data", "fit"): "xs", ("fit", "report"): "w"}
        state = p.state
        state.start_local()
        for name, st in (("fit-0", "succeeded"), ("fit-1", "running"), ("fit-2", "pending"), ("fit", "pending")):
            state.on_local_event(StepEvent("r1", name, st))
        views = panel_mod.html.node_views(state)
        assert (views["fit"].state, views["fit"].status) == ("running", "1/3")
        state.on_local_event(StepEvent("r1", "fit-1", "failed", error="ValueError"))
        assert panel_mod.html.node_views(state)["fit"].state == "failed"
    finally:
        p.close()
