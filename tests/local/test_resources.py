"""What a local run measures per step: wall and CPU time, peak memory (wait4), payload bytes."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="wait4 measures the step's process")


def test_memory_cpu_and_payloads_of_each_step_are_measured(shell, tmp_path):
    shell.configure(name="measured")
    shell.run("%%step allocate --defer\nblob = b'x' * (600 * 2**20)\nsize = len(blob)\ndel blob")
    shell.run(
        "%%step spin --defer\nimport time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n"
        "    pass\nseen = size"
    )
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs", cache=False)
    assert result.succeeded, result.to_json()
    allocate, spin = result.steps["allocate"].resources, result.steps["spin"].resources
    assert allocate["peak_rss_bytes"] >= 600 * 2**20
    assert spin["cpu_s"] >= 0.9 and spin["cpu_s"] <= spin["wall_s"] * 1.1
    assert allocate["payload_out_bytes"] > 0 and spin["payload_in_bytes"] >= allocate["payload_out_bytes"]
    doc = result.to_json()["steps"]["spin"]["resources"]
    assert set(doc) == {"wall_s", "cpu_s", "peak_rss_bytes", "payload_in_bytes", "payload_out_bytes"}


def test_the_terminal_the_results_table_and_the_panel_show_the_measurements(shell, tmp_path):
    import io

    from jupyter_smstep.panel import runs as panel_runs
    from jupyter_smstep.panel.state import PanelState
    from jupyter_smstep.text import TerminalProgress, results_table

    shell.configure(name="measured-views")
    shell.run("%%step make --defer\nvalues = list(range(1000))")
    stream = io.StringIO()
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs", on_event=TerminalProgress(stream), cache=False)
    line = next(x for x in stream.getvalue().splitlines() if " make " in x and "succeeded" in x)
    assert "peak " in line and "MiB" in line and "cpu " in line and "out " in line
    assert "[peak " in results_table(result.to_json())
    state = PanelState(run_kind="local", local_result=result)
    assert "measured: peak " in panel_runs.run_details(state, "make")


def test_a_run_suggests_instance_types_and_submit_warns_about_a_step_too_big_for_its_instance(
    shell, tmp_path, capsys, monkeypatch
):
    # The smallest instance SageMaker trains on has 4 GiB; this test's says 1 GiB (a 1.2 GiB step outgrows it).
    from jupyter_smstep.core import instances
    from jupyter_smstep.remote import instance_specs as remote_instances

    table = instances.shipped()
    small = {**table.types, "ml.t3.medium": instances.Spec("ml.t3.medium", 2, 1024, 0)}
    for module in (instances, remote_instances):
        monkeypatch.setattr(module, "shipped", lambda: instances.Specs(small, table.source))
    shell.configure(name="suggested")
    shell.run("%%step small --defer --instance-type ml.m5.2xlarge\nv = 1")
    shell.run(
        "%%step big --defer --instance-type ml.t3.medium\nblob = b'x' * (1200 * 2**20)\nn = len(blob) + v\ndel blob"
    )
    capsys.readouterr()
    shell.run(f"%pipeline run --runs-dir {tmp_path / 'runs'} --no-cache")
    out = capsys.readouterr().out
    assert "small: peak" in out and "ml.m5.2xlarge (8 vCPU, 32 GiB) → ml.m5.large (2 vCPU, 8 GiB)" in out
    assert "warning: big: peak" in out and "more than ml.t3.medium (2 vCPU, 1 GiB) holds" in out
    doc = shell.workspace.last_run.to_json()["steps"]
    assert doc["small"]["suggestion"]["fits_same_family"] == "ml.m5.large"
    assert doc["big"]["suggestion"]["too_small"] is True
    shell.ip.run_cell("%pipeline submit")  # fails without AWS here; the warning comes first, before any upload
    assert "warning: big: peak" in capsys.readouterr().err
