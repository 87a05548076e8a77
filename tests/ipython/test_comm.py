"""The kernel side of the lab extension (jupyter_smstep/ipython/comm.py), without a browser.

The protocol tests talk to a real ipykernel in a subprocess the way JupyterLab
does: ``comm_open`` to target ``jupyter_smstep`` with ``{"type": "request_state"}``,
``execute_request`` with the cell id in the metadata, state pushed as ``comm_msg``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_smstep.ipython import comm as frontend

from helpers.constants import IMAGE, ROLE
from helpers.kernel import Kernel

REPO = Path(__file__).resolve().parents[1]


class RecordingComm:
    """Stands in for an ipykernel comm: records what the bridge sends."""

    def __init__(self, comm_id: str = "c1") -> None:
        self.comm_id = comm_id
        self.sent: list[dict] = []
        self.closed = False
        self.msg_callback = None
        self.close_callback = None

    def on_msg(self, callback) -> None:
        self.msg_callback = callback

    def on_close(self, callback) -> None:
        self.close_callback = callback

    def send(self, data) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    # what the frontend does
    def frontend_sends(self, data: dict) -> None:
        self.msg_callback({"content": {"comm_id": self.comm_id, "data": data}})

    def frontend_closes(self) -> None:
        self.close_callback({"content": {"comm_id": self.comm_id}})


def open_comm(bridge: frontend.Bridge, comm_id: str = "c1") -> RecordingComm:
    comm = RecordingComm(comm_id)
    bridge.open(
        comm, {"content": {"comm_id": comm_id, "target_name": "jupyter_smstep", "data": {"type": "request_state"}}}
    )
    return comm


@pytest.fixture
def shell():
    """A bare shell of its own (not the InteractiveShell singleton, which other tests' shells would clash with)."""
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell(config=config)


def test_install_is_a_no_op_without_a_kernel(shell):
    assert not hasattr(shell, "kernel")
    before = list(shell.events.callbacks["post_run_cell"])
    assert frontend.install(shell, lambda: {"pipeline": "p", "cells": [], "problems": []}) is None
    assert shell.events.callbacks["post_run_cell"] == before
    frontend.uninstall(shell)  # and undoing nothing is fine too


def test_frontend_module_does_not_import_sagemaker():
    import subprocess
    import sys

    code = "import sys, jupyter_smstep.ipython.comm; print('sagemaker' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "False"


def test_request_state_answers_with_the_summary():
    summary = {
        "pipeline": "abalone",
        "cells": [{"cell_id": "a", "role": "step", "step": "load", "inputs": {}, "outputs": ["df"]}],
        "problems": [],
    }
    bridge = frontend.Bridge(lambda: summary)
    comm = open_comm(bridge)
    assert comm.sent == [{"type": "state", **summary}]
    comm.frontend_sends({"type": "request_state"})
    assert len(comm.sent) == 2 and comm.sent[1] == comm.sent[0]
    comm.frontend_sends({"type": "something else"})
    assert len(comm.sent) == 2


def test_summary_is_pushed_after_a_cell_only_when_it_changed(shell):
    state = {"pipeline": "p", "cells": [], "problems": []}
    bridge = frontend.Bridge(lambda: state)
    first, second = open_comm(bridge, "c1"), open_comm(bridge, "c2")
    shell.events.register("post_run_cell", bridge.post_run_cell)
    try:
        shell.run_cell("x = 1")
        assert len(first.sent) == 1 and len(second.sent) == 1  # the answers to request_state only

        state["cells"] = [{"cell_id": None, "role": "step", "step": "s", "inputs": {}, "outputs": []}]
        shell.run_cell("x = 2")
        assert first.sent[-1]["cells"][0]["step"] == "s" and len(first.sent) == 2
        assert second.sent[-1] == first.sent[-1]

        shell.run_cell("x = 3")
        assert len(first.sent) == 2  # unchanged: nothing sent

        first.frontend_closes()
        state["pipeline"] = "q"
        shell.run_cell("x = 4")
        assert len(first.sent) == 2 and second.sent[-1]["pipeline"] == "q"
        assert bridge.comms == [second]
    finally:
        shell.events.unregister("post_run_cell", bridge.post_run_cell)


def test_no_comm_means_no_summary_work(shell):
    calls = []
    bridge = frontend.Bridge(lambda: calls.append(1) or {})
    bridge.post_run_cell(None)
    assert calls == []


def test_a_failing_or_odd_summary_still_gives_a_state():
    def broken():
        raise RuntimeError("boom")

    comm = open_comm(frontend.Bridge(broken))
    state = comm.sent[0]
    assert state["type"] == "state" and state["cells"] == []
    assert "boom" in state["problems"][0]["message"]

    comm = open_comm(frontend.Bridge(lambda: {"pipeline": Path("x"), "cells": [], "problems": [], "type": "x"}))
    assert comm.sent[0] == {"type": "state", "pipeline": "x", "cells": [], "problems": []}


def test_close_tells_the_frontend():
    bridge = frontend.Bridge(dict)
    comm = open_comm(bridge)
    bridge.close()
    assert comm.closed and bridge.comms == []


# --------------------------------------------------------------------------- a real kernel


def comm_data(messages: list[dict], comm_id: str | None = None) -> list[dict]:
    return [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] == "comm_msg" and (comm_id is None or m["content"]["comm_id"] == comm_id)
    ]


def comm_closed(messages: list[dict], comm_id: str) -> bool:
    return any(m["msg_type"] == "comm_close" and m["content"]["comm_id"] == comm_id for m in messages)


@pytest.fixture
def kernel():
    k = Kernel()
    yield k
    k.stop()


def test_kernel_protocol_with_a_hand_made_summary(kernel):
    # Not loaded: ipykernel closes the comm at once, which is how the frontend knows.
    comm_id, seen = kernel.open_comm()
    assert comm_closed(seen, comm_id) and not comm_data(seen)

    kernel.execute(
        "from jupyter_smstep.ipython import comm as frontend\n"
        "STATE = {'pipeline': 'p', 'cells': [], 'problems': []}\n"
        "frontend.install(get_ipython(), lambda: STATE)"
    )
    comm_id, seen = kernel.open_comm()
    assert not comm_closed(seen, comm_id)
    assert comm_data(seen, comm_id) == [{"type": "state", "pipeline": "p", "cells": [], "problems": []}]

    assert comm_data(kernel.execute("x = 1"), comm_id) == []
    pushed = comm_data(kernel.execute("STATE['pipeline'] = 'q'"), comm_id)
    assert [d["pipeline"] for d in pushed] == ["q"]

    # %reload_ext: the new bridge replaces the old one, whose comms are closed
    seen = kernel.execute("frontend.install(get_ipython(), lambda: STATE)")
    assert comm_closed(seen, comm_id)
    assert comm_data(kernel.execute("STATE['pipeline'] = 'r'")) == []  # nobody listening
    comm_id, seen = kernel.open_comm()
    assert comm_data(seen, comm_id)[0]["pipeline"] == "r"

    seen = kernel.execute("frontend.uninstall(get_ipython())")
    assert comm_closed(seen, comm_id)
    comm_id, seen = kernel.open_comm()
    assert comm_closed(seen, comm_id)


def test_kernel_protocol_with_load_ext_and_step_cells(kernel):
    """The real %load_ext and %%step: the state names the cells by the ids JupyterLab sent."""
    kernel.execute("%load_ext jupyter_smstep", cell_id="cell-load")
    comm_id, seen = kernel.open_comm()
    assert comm_data(seen, comm_id), "no state: %load_ext jupyter_smstep did not install the bridge"
    kernel.execute("def double(v):\n    return [2 * x for x in v]", cell_id="cell-helper")
    kernel.execute("%%step load\nrows = [1, 2, 3]", cell_id="cell-a")
    pushed = comm_data(kernel.execute("%%step twice\nbig = double(rows)", cell_id="cell-b"), comm_id)
    assert pushed, "no state pushed after a %%step cell"
    state = pushed[-1]
    cells = {c["cell_id"]: c for c in state["cells"]}
    assert cells["cell-a"]["role"] == "step" and cells["cell-a"]["step"] == "load"
    assert "rows" in cells["cell-a"]["outputs"]
    assert cells["cell-b"]["inputs"]["rows"] == {"step": "load"}
    assert "value" in cells["cell-b"]["inputs"]["double"]
    assert cells["cell-helper"]["role"] == "dependency"
    assert cells["cell-helper"]["used_by"] == ["twice"]
    assert comm_data(kernel.execute("y = 1", cell_id="cell-c"), comm_id) == []


def test_cell_ids_from_the_frontend_sync_the_registry():
    """The frontend's `cell_ids` reach Registry.sync_cells; a deletion is pushed as a new state."""
    from jupyter_smstep.ipython.comm import Bridge
    from jupyter_smstep.core.registry import Registry, StepSpec

    registry = Registry()
    registry.record_step(StepSpec("a"), "x = 1", cell_id="c1")
    registry.record_step(StepSpec("b"), "y = 2", cell_id="c2")
    sent = []

    class Comm:  # stands in for ipykernel's Comm: records what the bridge sends
        comm_id = "comm-1"

        def send(self, data):
            sent.append(data)

        def on_msg(self, callback):
            pass

        def on_close(self, callback):
            pass

    tagged = []
    bridge = Bridge(
        lambda: {"steps": [c.step.name for c in registry.steps]},
        lambda ids, parameter_cells: tagged.append(parameter_cells) or registry.sync_cells(ids),
    )
    bridge.open(Comm(), {"content": {"data": {"type": "request_state", "cell_ids": ["c1", "c2"]}}})
    assert sent[-1]["steps"] == ["a", "b"]
    bridge._on_msg({"content": {"comm_id": "comm-1", "data": {"type": "notebook_cells", "cell_ids": ["c2"]}}})
    assert [c.step.name for c in registry.steps] == ["b"]
    assert sent[-1]["steps"] == ["b"] and len(sent) == 2
    bridge._on_msg(
        {
            "content": {
                "comm_id": "comm-1",
                "data": {"type": "notebook_cells", "cell_ids": ["c2"], "parameter_cells": ["c2"]},
            }
        }
    )
    assert tagged == [None, None, ["c2"]]  # an older frontend sends no tags: left as they are


# --------------------------------------------------------------------------- the payload, Python and TypeScript
LABEXT = Path(__file__).resolve().parents[2] / "labextension" / "src"


def ts_interface(name: str) -> set[str]:
    text = (LABEXT / "summary.ts").read_text()
    body = re.search(rf"export interface {name} \{{(.*?)\n\}}", text, re.S)
    assert body, name
    return set(re.findall(r"^\s+(\w+)\??:", body.group(1), re.M))


def ts_sources() -> str:
    return "\n".join(p.read_text() for p in LABEXT.glob("*.ts"))


def test_the_typescript_side_declares_and_reads_every_field_of_the_payload():
    import dataclasses

    from jupyter_smstep.ipython.comm import DependencyCell, PipelineState, ProblemInfo, StepCell

    pairs = {"IPipelineState": [PipelineState], "ICellSummary": [StepCell, DependencyCell], "IProblem": [ProblemInfo]}
    sources = ts_sources()
    for interface, classes in pairs.items():
        declared = ts_interface(interface)
        for cls in classes:
            for f in dataclasses.fields(cls):
                assert f.name in declared, f"{cls.__name__}.{f.name} is not declared in {interface}"
                assert re.search(rf"\.{f.name}\b|'{f.name}'", sources), f"the extension never reads {f.name}"
    # an input's origin: the keys Input.to_json can send
    from jupyter_smstep.core.model import Input

    kinds = {
        next(iter(Input("x", kind, 0, step="s", type_name="int").to_json())) for kind in ("step", "parameter", "value")
    }
    assert kinds <= ts_interface("IInputSource")


def test_the_typescript_step_name_parser_knows_which_options_take_no_value():
    from jupyter_smstep.ipython.cmd.cells import step_parser

    text = (LABEXT / "summary.ts").read_text()

    def ts_list(name):
        return set(re.findall(r"'(-[-\w]+)'", re.search(rf"{name} = \[(.*?)\]", text, re.S).group(1)))

    parser = step_parser()
    no_value, optional = set(), set()
    for action in parser._actions:
        if action.nargs == 0:
            no_value |= set(action.option_strings)
        elif action.nargs == "?":
            optional |= set(action.option_strings)
    assert ts_list("FLAGS_WITHOUT_VALUE") == no_value
    assert ts_list("FLAGS_WITH_OPTIONAL_BOOL") == optional


def test_a_cell_tagged_parameters_gives_the_kernel_the_pipeline_smstep_builds(kernel, tmp_path):
    """The kernel never sees cell tags; the lab extension sends which cells are tagged `parameters`. The
    kernel then builds the pipeline `smstep` builds from the saved notebook: the same parameters, so the
    same keys, so a kernel run reuses what a CLI run computed (and a DataFrame in the tagged cell stays a
    captured value, with the same warning)."""
    import nbformat

    from jupyter_smstep.ipython.notebook import load_workspace

    sources = {
        "c-load": "%load_ext jupyter_smstep",
        "c-config": f"%pipeline config --name tagged --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
        "c-params": "import pandas as pd\nepochs = 3\nrate = 0.5\nlabel = 'x'\nframe = pd.DataFrame({'a': [1]})",
        "c-train": "%%step train\nscore = epochs * rate + len(frame)",
    }
    nb = nbformat.v4.new_notebook()
    for cell_id, source in sources.items():
        cell = nbformat.v4.new_code_cell(source)
        cell["id"] = cell_id
        nb.cells.append(cell)
    nb.cells[2]["metadata"]["tags"] = ["parameters"]
    path = tmp_path / "tagged.ipynb"
    nbformat.write(nb, path)
    os.chdir(tmp_path)
    headless = load_workspace(path)
    cli_run = headless.run_local()
    assert cli_run.succeeded
    expected = dict(headless.graph().parameters)
    assert expected == {"epochs": 3, "rate": 0.5, "label": "x"}

    kernel.execute(f"import os\nos.chdir({str(tmp_path)!r})")
    kernel.execute(sources["c-load"], cell_id="c-load")
    kernel._send(
        "comm_open",
        {
            "comm_id": "tags",
            "target_name": "jupyter_smstep",
            "data": {"type": "request_state", "cell_ids": list(sources), "parameter_cells": ["c-params"]},
        },
    )
    for cell_id in ("c-config", "c-params", "c-train"):
        kernel.execute(sources[cell_id], cell_id=cell_id)
    shown = kernel.execute(
        "ws = get_ipython().magics_manager.registry['StepMagics'].workspace\n"
        "graph = ws.graph()\nprint('PARAMS', dict(graph.parameters))\n"
        "print('WARN', [p.message for p in graph.report.problems if 'tagged parameters' in p.message])\n"
        "run = ws.run_local()\nprint('CACHED', run.steps['train'].cached_from)"
    )
    out = "".join(m["content"].get("text", "") for m in shown if m["msg_type"] == "stream")
    assert f"PARAMS {expected}" in out, out
    assert "'frame' is a DataFrame" in out, out
    assert f"CACHED {cli_run.run_id}" in out, out  # the same definition: the kernel's run reuses the CLI's

    # untagged in the notebook: its values are ordinary again, as they would be headless
    kernel._send(
        "comm_msg",
        {"comm_id": "tags", "data": {"type": "notebook_cells", "cell_ids": list(sources), "parameter_cells": []}},
    )
    out = "".join(
        m["content"].get("text", "")
        for m in kernel.execute("print('PARAMS', dict(ws.graph().parameters))")
        if m["msg_type"] == "stream"
    )
    assert "PARAMS {}" in out, out
