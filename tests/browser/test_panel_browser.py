"""The pipeline panel in a real JupyterLab, driven by Debian's chromium through Playwright.

One notebook, run top to bottom, then: the SVG has the right nodes and
labelled edges, the transparent buttons sit on the nodes and clicking a node
shows its settings, a parameter is edited, Run locally runs every step with the
local runner, Submit goes to moto (through :class:`FakeSageMaker`, which adds
the execution-steps, stop and retry calls moto lacks) and the execution is
followed to the end; a second submission fails a step, shows its failure
reason and log tail, and Retry finishes it. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import textwrap
import time

import pytest

from helpers.fakes import FakeSageMaker, StepPlan, prepare_account, start_moto_server

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect, PlaywrightTimeout = playwright_api.expect, playwright_api.TimeoutError

IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep-test:1"
STEPS = ["load", "features", "stats", "train", "report", "rest"]
EDGES = {
    ("load", "features"): "rows",
    ("load", "stats"): "rows",
    ("features", "train"): "feats",
    ("stats", "train"): "mean",
    ("train", "report"): "model",
}


@pytest.fixture(scope="module")
def aws():
    """moto server + the fake in front of it, in this process; the kernel reaches them over HTTP."""
    server, url = start_moto_server()
    fake = FakeSageMaker(upstream=url, clock="wall", seconds_per_unit=1.0).start()
    role = prepare_account(url)
    yield fake, role
    fake.stop()
    server.stop()


def cells(fake_url: str, role: str) -> list:
    env = {
        "AWS_ENDPOINT_URL": fake_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    setup = textwrap.dedent(f"""\
        # AWS is the fake + moto endpoint; no stray SageMaker config from this machine
        import os
        os.environ.update({json.dumps(env)})
        with open("empty-sagemaker-config.yaml", "w") as f:
            f.write("{{}}\\n")
        for var in ("SAGEMAKER_USER_CONFIG_OVERRIDE", "SAGEMAKER_ADMIN_CONFIG_OVERRIDE"):
            os.environ[var] = os.path.abspath("empty-sagemaker-config.yaml")""")
    return [
        setup,
        "%load_ext jupyter_smstep",
        f"%pipeline config --name panel-demo --role {role} --instance-type ml.m5.large --image-uri {IMAGE}",
        "%pipeline param epochs=3 nap=0",
        "SCALE = 2.0\ndef normalise(xs):\n    top = max(xs)\n    return [x / top for x in xs]",
        "%%step load\nrows = [float(i) for i in range(20)]",
        "%%step features --instance-type ml.c5.xlarge\nfeats = normalise(rows)",
        "%%step stats\nmean = sum(rows) / len(rows)",
        "%%step train --instance-type ml.m5.2xlarge\nmodel = [f * SCALE * epochs - mean for f in feats]",
        "%%step report\nsummary = {'n': len(model), 'max': max(model)}",
        "%%step rest\nimport time\ntime.sleep(nap)  # long only when the test wants a run to stop\nrested = nap",
        "%pipeline show",
    ]


def wait_states(page, state: str, timeout: float) -> None:
    page.wait_for_function(
        """([state, n]) => {
            const nodes = [...document.querySelectorAll('.smstep-panel svg.smstep-dag g.smstep-node')];
            return nodes.length === n && nodes.every(g => g.dataset.state === state);
        }""",
        arg=[state, len(STEPS)],
        timeout=timeout,
    )


def button(panel, text: str):
    return panel.locator("button.jupyter-button", has_text=text).first


def node_colours(page) -> tuple[str, str]:
    """The computed fill of the first node's box and of its name."""
    return tuple(
        page.evaluate(
            "() => { const g = document.querySelector('.smstep-panel g.smstep-node');"
            " return [getComputedStyle(g.querySelector('rect.box')).fill, getComputedStyle(g.querySelector('text')).fill]; }"
        )
    )


def luminance(css: str) -> float:
    """Relative lightness (0 black, 1 white) of a computed colour: ``rgb(r, g, b)`` or ``color(srgb r g b)``."""
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)[:3]]
    if css.startswith("rgb"):
        numbers = [n / 255 for n in numbers]
    r, g, b = numbers
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_panel_in_jupyterlab(lab, notebook_name, aws):
    fake, role = aws
    page = lab.page
    lab.write_notebook(notebook_name, cells(fake.url, role))
    lab.open(notebook_name)
    lab.run_all()
    panel = page.locator(".smstep-panel")
    try:
        panel.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        pytest.fail("no panel after %pipeline show; cell outputs:\n" + "\n---\n".join(lab.cell_outputs_text()))
    panel.scroll_into_view_if_needed()

    # ---- the DAG: nodes, labelled edges, state colours
    graph = panel.locator("svg.smstep-dag")
    assert sorted(graph.locator("g.smstep-node").evaluate_all("gs => gs.map(g => g.dataset.step)")) == sorted(STEPS)
    edges = graph.locator("g.smstep-edge").evaluate_all(
        "gs => gs.map(g => [g.dataset.source, g.dataset.target, g.dataset.vars])"
    )
    assert {(s, t): v for s, t, v in edges} == EDGES
    labels = graph.locator("g.smstep-label text").evaluate_all("ts => ts.map(t => t.textContent)")
    assert sorted(labels) == sorted(EDGES.values())
    assert "ml.c5.xlarge" in graph.locator("g.smstep-node[data-step='features']").text_content()

    # ---- every node has its transparent button exactly on top of it
    for step in STEPS:
        rect = graph.locator(f"g.smstep-node[data-step='{step}'] rect.box").bounding_box()
        hit = panel.locator(f"button.jupyter-button[title*='step {step}:']").bounding_box()
        assert hit is not None and rect is not None
        # same centre; sizes equal up to the rect's stroke (thicker on the selected node)
        for pos, size in (("x", "width"), ("y", "height")):
            assert abs((hit[pos] + hit[size] / 2) - (rect[pos] + rect[size] / 2)) <= 2, (step, pos, hit, rect)
            assert abs(hit[size] - rect[size]) <= 5, (step, size, hit, rect)

    # ---- click a node (on the drawing itself): its settings, inputs, outputs and source
    box = graph.locator("g.smstep-node[data-step='train'] rect.box").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    details = panel.locator(".smstep-step[data-step='train']")
    details.wait_for(timeout=15_000)
    row = details.locator("tr[data-setting='instance_type']")
    assert "ml.m5.2xlarge" in row.inner_text() and row.locator(".smstep-source").inner_text() == "cell"
    assert details.locator("tr[data-setting='role'] .smstep-source").inner_text() == "notebook"
    assert "output of step features" in details.locator("tr[data-input='feats']").inner_text()
    assert "pipeline parameter" in details.locator("tr[data-input='epochs']").inner_text()
    assert "captured value" in details.locator("tr[data-input='SCALE']").inner_text()
    assert "read by report" in details.locator("tr[data-output='model']").inner_text()
    assert "%%step train --instance-type ml.m5.2xlarge" in details.locator(".smstep-source-cell").inner_text()
    assert panel.locator(".smstep-problems").inner_text().startswith("✓ no problems")
    lab.screenshot("panel-overview", panel)

    # ---- edit a parameter, then run locally: every step succeeds, live
    epochs = panel.locator(".smstep-param-epochs input")
    epochs.fill("5")
    epochs.press("Tab")
    button(panel, "Run locally").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.smstep-panel g.smstep-node')].some(g => g.dataset.state !== 'pending')",
        timeout=300_000,
    )
    wait_states(page, "succeeded", timeout=420_000)
    expect(panel.locator(".smstep-status")).to_contain_text("local run succeeded", timeout=60_000)
    lab.screenshot("panel-local-run", panel)

    # ---- the theme: a succeeded node is a light tint with dark text in the light theme, a dark tint with light
    # text in the dark one (JupyterLab's own colour variables), so its name stays legible in both
    fill, text = node_colours(page)
    assert luminance(fill) > 0.7 and luminance(text) < 0.3, (fill, text)
    lab.execute("apputils:change-theme", {"theme": "JupyterLab Dark"})
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    page.wait_for_function(
        "(light) => { const g = document.querySelector('.smstep-panel g.smstep-node rect.box');"
        " return getComputedStyle(g).fill !== light; }",
        arg=fill,
        timeout=30_000,
    )
    dark_fill, dark_text = node_colours(page)
    assert luminance(dark_fill) < 0.3 and luminance(dark_text) > 0.6, (dark_fill, dark_text)
    page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=30_000)
    lab.screenshot("panel-dark-theme", panel)

    # ---- submit to "SageMaker" (moto + fake): the execution is followed to the end
    button(panel, "Submit").click()
    panel.locator(".smstep-remote").wait_for(timeout=240_000)
    panel.locator(".smstep-remote[data-status='Succeeded']").wait_for(timeout=240_000)
    wait_states(page, "succeeded", timeout=30_000)
    link = panel.locator(".smstep-remote a")
    assert "console.aws.amazon.com/sagemaker" in link.get_attribute("href")
    assert "#/pipelines/panel-demo/executions/" in link.get_attribute("href")
    start = fake.ops("StartPipelineExecution")[-1]
    assert {"Name": "epochs", "Value": "5"} in start["PipelineParameters"]
    assert panel.locator(".smstep-remote-steps tr").count() == len(STEPS)
    lab.screenshot("panel-submitted", panel)
    lab.screenshot("panel-submitted-execution", panel.locator(".smstep-remote"))

    # ---- a failing execution: failure reason and log tail on the failed step, then Retry
    fake.auto_plan = lambda name, steps: [
        StepPlan(
            s["Name"],
            list(s.get("DependsOn", [])),
            2,
            fail="AlgorithmError: ValueError: model diverged" if s["Name"] == "train" else "",
            log=[
                "epoch 1 loss=0.9",
                "epoch 2 loss=inf",
                "Traceback (most recent call last):",
                '  File "train.py", line 3, in <module>',
                "ValueError: model diverged",
            ],
        )
        for s in steps
    ]
    button(panel, "Submit").click()
    panel.locator(".smstep-remote[data-status='Failed']").wait_for(timeout=240_000)
    panel.locator(".smstep-step[data-step='train'] .smstep-log").wait_for(timeout=30_000)
    assert "model diverged" in panel.locator(".smstep-step[data-step='train'] .smstep-failure").inner_text()
    assert "ValueError: model diverged" in panel.locator(".smstep-step[data-step='train'] .smstep-log").inner_text()
    assert graph.locator("g.smstep-node[data-step='train']").get_attribute("data-state") == "failed"
    assert graph.locator("g.smstep-node[data-step='report']").get_attribute("data-state") == "skipped"
    retry = button(panel, "Retry")
    assert retry.is_enabled()
    lab.screenshot("panel-failed", panel)
    lab.screenshot("panel-failed-execution", panel.locator(".smstep-remote"))
    retry.click()
    panel.locator(".smstep-remote[data-status='Succeeded']").wait_for(timeout=240_000)
    wait_states(page, "succeeded", timeout=30_000)
    assert fake.ops("RetryPipelineExecution")
    lab.screenshot("panel-retried", panel)

    # ---- History: the pipeline's executions (two submits; the retry is the second one again)
    button(panel, "History").click()
    expect(panel.locator(".smstep-history tr[data-execution]")).to_have_count(2, timeout=60_000)
    assert "assumed-role/DataScientist/alice" in panel.locator(".smstep-history").inner_text()

    # ---- Stop a local run while a step runs: it stops within seconds, the step marked stopped
    nap = panel.locator(".smstep-param-nap input")
    nap.fill("120")
    nap.press("Tab")
    button(panel, "Run locally").click()
    page.wait_for_function(
        "() => document.querySelector(\".smstep-panel g.smstep-node[data-step='rest']\")?.dataset.state === 'running'",
        timeout=240_000,
    )
    stop = button(panel, "Stop")
    assert stop.is_enabled()
    clicked = time.monotonic()
    stop.click()
    expect(panel.locator(".smstep-status")).to_contain_text("local run stopped", timeout=30_000)
    assert time.monotonic() - clicked < 30  # not the step's 120 s
    assert graph.locator("g.smstep-node[data-step='rest']").get_attribute("data-state") == "stopped"
    lab.screenshot("panel-stopped", panel)
    errors = [m for m in page.console_messages if m.startswith("pageerror")]
    assert not errors, errors
