"""The lab extension in a real JupyterLab and chromium, against the real kernel side.

One notebook (``%load_ext jupyter_smstep``, a config cell, a helper cell, a
parameter and three ``%%step`` cells) is opened and run once for the module;
the tests then check the badges, the dependency marker, Python highlighting,
the toolbar menu, the command palette and each command's output view. A second
notebook whose kernel never loads the extension checks the "not loaded" message.

Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.browser

NOT_LOADED = "jupyter_smstep is not loaded in this kernel: run %load_ext jupyter_smstep"
COMMAND_TIMEOUT_MS = 300_000

CELLS = [
    "%load_ext jupyter_smstep",
    "%pipeline config --name smstep-lab-test --role arn:aws:iam::111122223333:role/SmstepTest"
    " --image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep:3.11 --instance-type ml.m5.large",
    "SPLIT = 0.8\n\ndef split(rows, frac):\n    n = int(len(rows) * frac)\n    return rows[:n], rows[n:]",
    "%pipeline param epochs=3",
    "%%step load\nrows = [[i, i * 2.0] for i in range(10)]",
    "%%step preprocess\ntrain, test = split(rows, SPLIT)",
    "%%step train_model\nimport math\nfor _ in range(epochs):\n    model = math.fsum(r[1] for r in train) / len(train)",
]
HELPER_CELL = 2


def badge(lab, step: str):
    return lab.page.locator(f".jp-smstep-badge[data-step='{step}']")


def cell(lab, index: int):
    return lab.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


@pytest.fixture(scope="module")
def pipeline_lab(lab_page_factory):
    """The pipeline notebook, opened and run once for all the tests of this module."""
    lab = lab_page_factory()
    lab.write_notebook("abalone.ipynb", CELLS)
    lab.open("abalone.ipynb")
    lab.screenshot("labext-01-opened")
    lab.run_all()
    try:
        badge(lab, "train_model").locator(".jp-smstep-input").first.wait_for(timeout=60_000)
    except Exception as exc:  # say what the kernel printed, not just "timeout"
        raise AssertionError(f"no analysed badges; cell outputs: {lab.cell_outputs_text()}") from exc
    return lab


def test_step_badges_show_name_inputs_and_outputs(pipeline_lab):
    lab = pipeline_lab
    for step in ("load", "preprocess", "train_model"):
        assert badge(lab, step).count() == 1, f"no badge for step {step}"
        assert badge(lab, step).locator(".jp-smstep-name").inner_text() == step

    inputs = {
        step: sorted(badge(lab, step).locator(".jp-smstep-input").all_inner_texts())
        for step in ("load", "preprocess", "train_model")
    }
    assert inputs["load"] == []
    assert "rows \u2190 load" in inputs["preprocess"]
    assert "split \u2190 captured" in inputs["preprocess"]
    assert "SPLIT \u2190 captured" in inputs["preprocess"]
    assert "train \u2190 preprocess" in inputs["train_model"]
    assert "epochs \u2190 parameter" in inputs["train_model"]

    assert "rows" in badge(lab, "load").locator(".jp-smstep-outputs").inner_text()
    assert "train" in badge(lab, "preprocess").locator(".jp-smstep-outputs").inner_text()

    # the border: step cells carry the class that draws it
    for index in (4, 5, 6):
        assert "jp-smstep-step" in (cell(lab, index).get_attribute("class") or "")
    style = cell(lab, 5).evaluate(
        "n => getComputedStyle(n).borderLeftStyle + ' ' + getComputedStyle(n).borderLeftWidth"
    )
    assert style.startswith("solid"), style
    lab.screenshot("labext-02-badges")


def test_helper_cell_is_marked_as_dependency(pipeline_lab):
    lab = pipeline_lab
    helper = cell(lab, HELPER_CELL)
    assert "jp-smstep-dependency" in (helper.get_attribute("class") or "")
    assert "used by preprocess" in helper.locator(".jp-smstep-badge-dependency").inner_text()
    assert helper.evaluate("n => getComputedStyle(n).borderLeftStyle") == "dashed"
    # ordinary cells that no step reads are left alone
    for index in (0, 1, 3):
        assert cell(lab, index).locator(".jp-smstep-badge").count() == 0
    lab.screenshot("labext-03-dependency", helper)


def test_step_cells_keep_python_highlighting(pipeline_lab):
    """A keyword in a %%step cell is coloured like the same kind of keyword in a plain Python cell."""
    colour_of = """(node, word) => {
        for (const span of node.querySelectorAll('.cm-line span')) {
            if (span.textContent === word) { return getComputedStyle(span).color; }
        }
        return null;
    }"""
    lab = pipeline_lab
    keyword_in_step = cell(lab, 6).locator(".cm-content").evaluate(colour_of, "import")
    keyword_in_python = cell(lab, HELPER_CELL).locator(".cm-content").evaluate(colour_of, "def")
    plain = cell(lab, 6).locator(".cm-line").nth(1).evaluate("n => getComputedStyle(n).color")
    assert keyword_in_step is not None, "the %%step cell has no highlighted tokens"
    assert keyword_in_step == keyword_in_python
    assert keyword_in_step != plain


def test_badge_follows_edits_and_new_state(pipeline_lab):
    """A new %%step cell shows its name as typed, then its inputs once it has run."""
    lab = pipeline_lab
    lab.page.evaluate(
        """(name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            panel.content.model.sharedModel.insertCell(panel.content.widgets.length,
                {cell_type: 'code', source: '%%step evaluate\\nscore = model * 2'});
            panel.content.activeCellIndex = panel.content.widgets.length - 1;
        }""",
        lab.name,
    )
    pending = badge(lab, "evaluate")
    pending.wait_for()
    assert "run the cell" in pending.inner_text()
    lab.screenshot("labext-04-typed-step", cell(lab, len(CELLS)))
    lab.execute("notebook:run-cell")
    pending.locator(".jp-smstep-input").first.wait_for()
    assert pending.locator(".jp-smstep-input").all_inner_texts() == ["model \u2190 train_model"]
    # train_model now also returns model
    lab.page.wait_for_function(
        "() => (document.querySelector(\".jp-smstep-badge[data-step='train_model'] .jp-smstep-outputs\") || {}).textContent?.includes('model')"
    )
    lab.screenshot("labext-05-new-step-analysed", cell(lab, len(CELLS)))


def test_toolbar_button_opens_pipeline_menu(pipeline_lab):
    lab = pipeline_lab
    lab.page.locator(".jp-NotebookPanel-toolbar .jp-smstep-toolbar-button").click()
    menu = lab.page.locator(".jp-smstep-menu")
    menu.wait_for()
    labels = menu.locator(".lm-Menu-itemLabel").all_inner_texts()
    assert labels == ["Preview pipeline", "Run locally", "Submit", "Export as Python script"]
    lab.screenshot("labext-06-toolbar-menu")
    lab.page.keyboard.press("Escape")
    menu.wait_for(state="detached")


def test_commands_are_in_the_palette(pipeline_lab):
    lab = pipeline_lab
    lab.execute("apputils:activate-command-palette")
    search = lab.page.locator(".lm-CommandPalette-input")
    search.fill("SageMaker pipeline")
    items = lab.page.locator(".lm-CommandPalette-item .lm-CommandPalette-itemLabel")
    items.first.wait_for()
    labels = set(items.all_inner_texts())
    assert {"Preview pipeline", "Run locally", "Submit", "Export as Python script"} <= labels
    headers = lab.page.locator(".lm-CommandPalette-header").all_inner_texts()
    assert any("SageMaker pipeline" in h for h in headers), headers
    lab.screenshot("labext-07-palette")
    lab.page.keyboard.press("Escape")


def run_command(lab, command: str, shot: str) -> tuple[dict, str]:
    """Run a pipeline command on the notebook; return its result and the output view's text."""
    lab.page.evaluate(
        """(name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            window.jupyterapp.shell.activateById(panel.id);
        }""",
        lab.name,
    )
    result = lab.page.evaluate(
        "([id, timeout]) => Promise.race([window.jupyterapp.commands.execute(id, {}),"
        " new Promise(r => setTimeout(() => r({status: 'timeout'}), timeout))])",
        [command, COMMAND_TIMEOUT_MS],
    )
    view = lab.page.locator(f"[id^='jupyter-smstep-{command.split(':')[1]}-']")
    view.wait_for()
    header = view.locator(".jp-smstep-OutputView-header")
    assert header.get_attribute("data-status") in ("done", "failed"), header.inner_text()
    lab.page.wait_for_timeout(300)  # let widgets finish rendering for the screenshot
    lab.screenshot(shot)
    return result, view.locator(".jp-smstep-OutputView-output").inner_text()


def test_preview_command_shows_the_pipeline(pipeline_lab):
    lab = pipeline_lab
    result, text = run_command(lab, "jupyter-smstep:preview", "labext-08-preview")
    assert result["status"] == "ok", (result, text)
    view = lab.page.locator("[id^='jupyter-smstep-preview-']")
    outputs = view.locator(".jp-OutputArea-output")
    assert outputs.count() >= 1
    # the panel (a widget) or the text summary: either names the steps
    shown = text + view.inner_text()
    assert "train_model" in shown or view.locator(".jupyter-widgets, .widget-box").count() > 0, shown


def test_export_command_writes_the_script(pipeline_lab):
    lab = pipeline_lab
    result, text = run_command(lab, "jupyter-smstep:export", "labext-09-export")
    assert result["status"] == "ok", (result, text)
    script = lab.server.root_dir / "abalone_pipeline.py"
    assert script.exists(), text
    assert "abalone_pipeline.py" in text
    assert "train_model" in script.read_text()


def test_run_command_runs_the_pipeline_locally(pipeline_lab):
    result, text = run_command(pipeline_lab, "jupyter-smstep:run-locally", "labext-10-run-locally")
    assert result["status"] == "ok", (result, text)
    assert re.search(r"run \S+: succeeded", text), text


def test_submit_command_says_why_it_cannot_reach_aws(pipeline_lab):
    """There is no AWS here: the submit must fail with the cause and a fix, not hang or go silent."""
    result, text = run_command(pipeline_lab, "jupyter-smstep:submit", "labext-11-submit")
    assert result["status"] == "error", (result, text)
    assert re.search(r"cannot reach AWS|no AWS credentials|no AWS region is configured|access denied", text), text
    assert "fix:" in text and "Traceback" not in text, text


def test_badges_follow_a_kernel_restart(pipeline_lab):
    """A restarted kernel has forgotten %load_ext: the marks go, and come back when it is loaded again."""
    lab = pipeline_lab
    lab.page.evaluate(
        """async (name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            window.jupyterapp.shell.activateById(panel.id);
            await panel.sessionContext.session.kernel.restart();
        }""",
        lab.name,
    )
    lab.page.wait_for_function("() => document.querySelectorAll('.jp-smstep-badge').length === 0")
    assert lab.page.locator(".jp-smstep-step, .jp-smstep-dependency").count() == 0
    lab.wait_for_kernel_idle()
    lab.run_all()
    badge(lab, "train_model").locator(".jp-smstep-input").first.wait_for()
    assert badge(lab, "preprocess").locator(".jp-smstep-input").count() == 3


def test_output_view_renders_ipywidgets(lab, notebook_name):
    """The output view uses the notebook's rendermime, so widgets (the panel) are live views.

    The kernel side is reduced to the bridge and a %pipeline magic that returns a
    widget, so this holds whatever the real panel looks like today.
    """
    lab.write_notebook(
        notebook_name,
        [
            "import ipywidgets\n"
            "from IPython.core.magic import register_line_magic\n"
            "from jupyter_smstep.ipython import comm as frontend\n"
            "frontend.install(get_ipython(), lambda: {'pipeline': 'w', 'cells': [], 'problems': []})\n"
            "slider = ipywidgets.IntSlider(value=3, description='epochs')\n"
            "@register_line_magic\n"
            "def pipeline(line):\n"
            "    return ipywidgets.VBox([ipywidgets.HTML('<b>widget panel</b> ' + line), slider])",
        ],
    )
    lab.open(notebook_name)
    lab.run_all()
    result, text = run_command(lab, "jupyter-smstep:preview", "labext-13-widget-output")
    assert result["status"] == "ok", result
    view = lab.page.locator("[id^='jupyter-smstep-preview-']")
    view.locator(".widget-slider").wait_for()
    assert "widget panel show" in view.inner_text()
    # a live view: the kernel's value reaches it
    lab.page.evaluate(
        """(name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            panel.sessionContext.session.kernel.requestExecute({code: 'slider.value = 7'});
        }""",
        lab.name,
    )
    lab.page.wait_for_function(
        "() => [...document.querySelectorAll(\"[id^='jupyter-smstep-preview-'] .widget-readout\")]"
        ".some(n => (n.textContent || n.value || '').trim() === '7')"
    )


def test_commands_say_when_the_extension_is_not_loaded(lab, notebook_name):
    lab.write_notebook(notebook_name, ["x = 1", "%%step lonely\ny = x + 1"])
    lab.open(notebook_name)
    lab.execute("notebook:run-cell")  # the first cell only: this kernel never loads jupyter_smstep
    lab.wait_for_kernel_idle()
    result = lab.execute("jupyter-smstep:preview")
    assert result == {"ok": False, "status": "not-loaded", "message": NOT_LOADED}
    dialog = lab.page.locator(".jp-Dialog")
    dialog.wait_for()
    assert NOT_LOADED in dialog.inner_text()
    assert lab.page.locator(".jp-smstep-badge").count() == 0
    # the %%step cell, and only it, says how to load the extension (IPython's "magic not found" does not)
    hints = lab.page.locator(".jp-smstep-hint")
    hints.first.wait_for()
    assert hints.count() == 1 and "%load_ext jupyter_smstep" in hints.first.inner_text()
    # and it is seen: a line of its own above the cell's code, not under it (the cell header is zero-height)
    shown, code = hints.first.bounding_box(), cell(lab, 1).locator(".jp-InputArea").bounding_box()
    assert shown["height"] >= 10 and shown["y"] + shown["height"] <= code["y"] + 1, (shown, code)
    assert lab.page.locator("[id^='jupyter-smstep-preview-']").count() == 0
    lab.screenshot("labext-12-not-loaded")
    dialog.locator(".jp-mod-accept").click()
    lab.screenshot("labext-12-hint", cell(lab, 1))  # the %%step cell with its hint, the dialog closed
    for command in ("jupyter-smstep:run-locally", "jupyter-smstep:submit", "jupyter-smstep:export"):
        assert lab.execute(command)["status"] == "not-loaded"
        lab.page.locator(".jp-Dialog .jp-mod-accept").click()
    # the hint followed as written: a first cell loading the extension, then the notebook run again
    lab.page.evaluate(
        """(name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            panel.content.model.sharedModel.insertCell(0, {cell_type: 'code', source: '%load_ext jupyter_smstep'});
        }""",
        lab.name,
    )
    lab.run_all()
    inputs = badge(lab, "lonely").locator(".jp-smstep-input")
    inputs.first.wait_for(timeout=60_000)
    assert inputs.all_inner_texts() == ["x \u2190 captured"], inputs.all_inner_texts()
    assert lab.page.locator(".jp-smstep-hint").count() == 0  # the badge replaced the hint
    lab.screenshot("labext-13-hint-followed", badge(lab, "lonely"))


def test_deleting_a_producer_cell_shows_the_error_on_its_consumer(lab, notebook_name):
    """The frontend tells the kernel the notebook's cells: a deleted step is forgotten at once."""
    lab.write_notebook(
        notebook_name,
        [
            "%load_ext jupyter_smstep",
            "%pipeline config --name sync-test --role arn:aws:iam::111122223333:role/SmstepTest"
            " --image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep:3.11 --instance-type ml.m5.large",
            "%%step produce\nx = 41",
            "%%step consume\ny = x + 1",
        ],
    )
    lab.open(notebook_name)
    lab.run_all()
    consumer = badge(lab, "consume")
    consumer.locator(".jp-smstep-input").first.wait_for(timeout=60_000)
    assert "produce" in consumer.inner_text()
    cell(lab, 2).click(position={"x": 5, "y": 5})  # select the producer's cell, then delete it
    lab.execute("notebook:delete-cell")
    problem = consumer.locator(".jp-smstep-problem-error")
    problem.first.wait_for(timeout=30_000)
    assert "'x'" in problem.first.inner_text() and "step 'produce' computed" in problem.first.inner_text()
    lab.screenshot("labext-14-deleted-producer", consumer)


def test_a_condition_is_on_the_badges_and_drawn_in_the_panel(lab, notebook_name):
    """--when: the guarded steps' badges say when they run; the panel draws the condition as its own node, and a
    local run shows what it decided."""
    lab.write_notebook(
        notebook_name,
        [
            "%load_ext jupyter_smstep",
            "%pipeline config --name gated-lab --role arn:aws:iam::111122223333:role/SmstepTest"
            " --image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep:3.11 --instance-type ml.m5.large",
            "%pipeline param threshold=0.7",
            "%%step evaluate\naccuracy = 0.9",
            "%%step register --when 'accuracy >= threshold' --else-fail 'accuracy {accuracy} below {threshold}'\n"
            "registered = accuracy",
            "%%step deploy\nendpoint = registered",
            "%%step notify --after register\nsent = True",
            "%pipeline show",
        ],
    )
    lab.open(notebook_name)
    lab.run_all()
    when = badge(lab, "register").locator(".jp-smstep-when")
    when.wait_for(timeout=60_000)
    assert when.inner_text() == "when accuracy >= threshold"
    assert badge(lab, "deploy").locator(".jp-smstep-when").inner_text() == "when accuracy >= threshold"
    assert badge(lab, "evaluate").locator(".jp-smstep-when").count() == 0
    assert badge(lab, "notify").locator(".jp-smstep-after").inner_text() == "after register"
    assert badge(lab, "notify").locator(".jp-smstep-when").inner_text() == "when accuracy >= threshold"
    panel = lab.page.locator(".smstep-panel")
    panel.wait_for(timeout=60_000)
    graph = panel.locator("svg.smstep-dag")
    shapes = dict(graph.locator("g.smstep-node").evaluate_all("gs => gs.map(g => [g.dataset.step, g.dataset.shape])"))
    assert shapes == {
        "evaluate": "step",
        "register": "step",
        "deploy": "step",
        "notify": "step",
        "when-register": "condition",
        "fail-register": "fail",
    }
    edges = {
        tuple(e)
        for e in graph.locator("g.smstep-edge").evaluate_all("gs => gs.map(g => [g.dataset.source, g.dataset.target])")
    }
    assert {
        ("evaluate", "when-register"),
        ("when-register", "register"),
        ("when-register", "fail-register"),
        ("register", "deploy"),
        ("register", "notify"),
    } <= edges
    assert "when accuracy >= threshold" in graph.locator("g.smstep-node[data-step='when-register']").text_content()
    lab.screenshot("labext-15-condition", panel)
    panel.locator("button.jupyter-button", has_text="Run locally").first.click()
    lab.page.wait_for_function(
        "() => { const state = s => document.querySelector(`.smstep-panel g.smstep-node[data-step='${s}']`)"
        "?.dataset.state; return state('deploy') === 'succeeded' && state('fail-register') === 'skipped'; }",
        timeout=COMMAND_TIMEOUT_MS,
    )
    node = graph.locator("g.smstep-node[data-step='when-register']")
    assert node.get_attribute("data-state") == "succeeded" and "true" in node.text_content()
    lab.screenshot("labext-16-condition-run", panel)


def test_a_cell_tagged_parameters_reaches_the_kernel_and_untagging_it_too(lab, notebook_name):
    """The kernel never sees cell tags: the extension tells it which cells are tagged `parameters`, at once
    and whenever a tag changes, so the kernel builds the pipeline `smstep` builds from the saved notebook."""
    show = "print('PARAMS', sorted(get_ipython().magics_manager.registry['StepMagics'].workspace.graph().parameters))"
    lab.write_notebook(
        notebook_name,
        [
            "%load_ext jupyter_smstep",
            "%pipeline config --name tags-lab --role arn:aws:iam::111122223333:role/SmstepTest"
            " --image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep:3.11 --instance-type ml.m5.large",
            ("epochs = 3\nrate = 0.5", ["parameters"]),
            "%%step train\nscore = epochs * rate",
            show,
        ],
    )
    lab.open(notebook_name)
    lab.run_all()

    def shown(expected: str) -> None:
        last = cell(lab, 4)
        deadline = time.monotonic() + 60
        while True:
            text = last.locator(".jp-OutputArea-output").all_inner_texts()
            if any(expected in t for t in text):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{expected!r} not shown; the cell shows {text}")
            last.click(position={"x": 5, "y": 5})
            lab.execute("notebook:run-cell")
            time.sleep(1)

    shown("PARAMS ['epochs', 'rate']")
    lab.page.evaluate(
        """(name) => {
            const panel = [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === name);
            panel.content.widgets[2].model.deleteMetadata('tags');
        }""",
        lab.name,
    )
    shown("PARAMS []")
