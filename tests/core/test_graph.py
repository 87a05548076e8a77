"""Dependency inference and validation, driven through a real IPython shell."""

from __future__ import annotations

import pytest

from jupyter_smstep.core.registry import StepSpec


def cells(shell, *sources):
    for src in sources:
        shell.run(src)


def test_links_parameters_captures_and_imports(shell):
    shell.configure()
    cells(
        shell,
        "%pipeline param input_uri=s3://bucket/data.csv epochs=10",
        "import math\ndef load(uri):\n    return [1, 2, 3, 4, 5]\nTHRESHOLD = 0.5",
        "%%step prep\ndf = load(input_uri)\ntrain, test = df[:3], df[3:]",
        "%%step fit\nmodel = sum(train) * epochs * math.pi",
        "%%step score\nresult = model - sum(test) > THRESHOLD",
    )
    g = shell.graph()
    prep, fit, score = g.steps
    assert prep.inputs["input_uri"].kind == "parameter"
    assert prep.inputs["load"].kind == "value" and prep.inputs["load"].type_name == "function"
    assert prep.outputs == ["train", "test"] or sorted(prep.outputs) == ["test", "train"]
    assert "df" not in prep.outputs  # nobody reads it later
    assert fit.inputs["train"].kind == "step" and fit.inputs["train"].step == "prep"
    assert fit.inputs["math"].kind == "import" and fit.inputs["math"].statement == "import math"
    assert fit.depends_on == ["prep"]
    assert score.inputs["THRESHOLD"].kind == "value"
    assert set(score.depends_on) == {"fit", "prep"}
    assert score.outputs == ["result"]  # a sink returns its variables so runs can be pulled
    assert not g.report.errors


def test_graph_json_schema(shell):
    shell.configure()
    cells(shell, "%pipeline param n=3", "%%step a\nx = n + 1", "%%step b\ny = x * 2")
    doc = shell.graph().to_json()
    assert doc["pipeline"] == "test-pipeline"
    a, b = doc["steps"]
    assert a["inputs"] == {"n": {"parameter": "n"}} and a["outputs"] == ["x"]
    assert b["inputs"] == {"x": {"step": "a"}} and b["depends_on"] == ["a"]
    assert b["settings"]["instance_type"] == {"value": "ml.m5.large", "source": "notebook"}
    assert b["settings"]["volume_size"] == {"value": 30, "source": "default"}


def test_latest_earlier_writer_wins(shell):
    shell.configure()
    cells(shell, "%%step a\nx = 1", "%%step b\nx = x + 1", "%%step c\ny = x")
    g = shell.graph()
    assert g.step("b").inputs["x"].step == "a"
    assert g.step("c").inputs["x"].step == "b"
    assert g.step("a").outputs == ["x"] and g.step("b").outputs == ["x"]


def test_in_place_mutation_makes_an_output(shell):
    shell.configure()
    cells(
        shell,
        "%%step make\nrows = [3, 1, 2]\nconfig = {}",
        "%%step mutate\nrows.sort()\nconfig['k'] = 1",
        "%%step use\nfirst = rows[0]\nk = config['k']",
    )
    g = shell.graph()
    assert g.step("use").inputs["rows"].step == "mutate"
    assert g.step("use").inputs["config"].step == "mutate"
    assert set(g.step("mutate").outputs) == {"rows", "config"}


def test_importable_function_is_imported_not_pickled(shell):
    shell.configure()
    cells(shell, "from os.path import join as pjoin", "%%step a\np = pjoin('a', 'b')")
    inp = shell.graph().step("a").inputs["pjoin"]
    assert inp.kind == "import" and inp.statement.endswith("import join as pjoin")


def test_rerun_replaces_the_step(shell):
    shell.configure()
    shell.run("%%step a\nx = 1")
    shell.run("%%step a\nx = 2\ny = 3")
    assert [c.step.name for c in shell.workspace.registry.steps] == ["a"]
    assert shell.workspace.registry.steps[0].source.strip().endswith("y = 3")


def test_default_step_name_is_readable_and_stable(shell):
    shell.configure()
    shell.run("%%step\nfeatures = 1")
    shell.run("%%step\nfeatures = 2")  # another cell writing the same first name gets a suffix
    shell.run("%%step\nlabels = features")
    shell.run("%%step\nfeatures = 1")  # the first cell re-run (no cell id here) keeps its name and place
    names = [c.step.name for c in shell.workspace.registry.steps]
    assert names == ["features", "features-2", "labels"]


def test_defer_registers_without_running(shell):
    shell.configure()
    shell.run("%%step --defer a\nside_effect = 42")
    assert "side_effect" not in shell.ip.user_ns
    assert shell.workspace.registry.step("a") is not None


def test_cell_still_runs_in_kernel(shell):
    shell.configure()
    shell.run("%%step a\nvalue = 6 * 7")
    assert shell.ip.user_ns["value"] == 42


def test_inputs_and_outputs_overrides(shell):
    shell.configure()
    cells(
        shell,
        "%%step a\nx = 1\ny = 2",
        "%%step b --inputs x --outputs z\nz = x + y_default if False else x",
        "%%step c\nw = z",
    )
    g = shell.graph()
    assert g.step("b").outputs == ["z"]
    assert g.step("c").inputs["z"].step == "b"


def problems(shell):
    return [str(p) for p in shell.graph().report.errors]


def test_name_defined_nowhere(shell):
    shell.configure()
    shell.run("%%step --defer a\ny = undefined_thing + 1")
    (msg,) = problems(shell)
    assert "step 'a'" in msg and "line 2" in msg and "undefined_thing" in msg and "fix:" in msg


def test_step_reading_a_later_step(shell):
    shell.configure()
    shell.run("%%step --defer early\nb = late_value * 2")
    shell.run("%%step --defer late\nlate_value = 1")
    (msg,) = problems(shell)
    assert "'late'" in msg and "comes later" in msg and "move step 'early' below" in msg


def test_deleted_producer_is_an_error(shell):
    shell.configure()
    shell.run("%%step --defer a\nx = 1")
    shell.run("%%step --defer b\ny = x")
    shell.run("%pipeline remove a")
    (msg,) = problems(shell)
    assert "'x'" in msg and "step 'a' computed, but that step is gone" in msg


def test_star_import_in_step(shell):
    shell.configure()
    shell.run("%%step --defer a\nfrom math import *\nv = 1")
    assert any("import *" in m and "line 2" in m for m in problems(shell))


def test_syntax_error_names_step_and_line(shell):
    shell.configure()
    shell.run("%%step --defer bad\nx = 1\ny = (", ok=True)
    (msg,) = problems(shell)
    assert "step 'bad'" in msg and "syntax error" in msg and "line 3" in msg


def test_duplicate_step_names(shell):
    shell.configure()
    shell.workspace.registry.record_step(StepSpec("a"), "x = 1", cell_id="c1")
    shell.workspace.registry.record_step(StepSpec("a"), "y = 2", cell_id="c2")
    assert any("2 cells are named step 'a'" in m for m in problems(shell))


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "dots.not.ok"])
def test_invalid_step_name(shell, bad):
    shell.configure()
    from jupyter_smstep.core.registry import StepSpec

    shell.workspace.registry.record_step(StepSpec(bad), "x = 1")
    assert any("step name" in m and "invalid" in m for m in problems(shell))


def test_invalid_pipeline_name(shell):
    shell.configure(name="my_pipeline")
    shell.run("%%step --defer a\nx = 1")
    (msg,) = problems(shell)
    assert "pipeline name 'my_pipeline'" in msg and "--name my-pipeline" in msg


def test_non_step_cell_using_step_output(shell):
    shell.configure()
    shell.run("%%step a\nraw = [1, 2, 3]")
    shell.run("cleaned = [r * 2 for r in raw]")  # an ordinary cell computes from a step output
    shell.run("%%step --defer b\ntotal = sum(cleaned)")
    g = shell.graph()
    assert any("ordinary cell" in str(p) and "'raw'" in str(p) for p in g.report.warnings)
    assert any("computed from 'raw'" in str(p) and "make ordinary cell #" in str(p) for p in g.report.errors)


def test_ipython_history_names_rejected(shell):
    shell.configure()
    shell.run("%%step --defer a\nx = Out")
    assert any("IPython's `Out`" in m for m in problems(shell))


def test_unknown_option_is_a_clear_error(shell):
    msg = shell.error("%%step a --instance-typo ml.m5.large\nx = 1")
    assert "unknown option --instance-typo" in msg and "did you mean --instance-type" in msg


@pytest.mark.parametrize(
    "line, expected",
    [
        ("--instance-count many", "is not an integer"),
        ("--use-spot-instances maybe", "true or false"),
        ("--env NOEQUALS", "KEY=VALUE"),
        ("--retry Bogus.ERROR:3", "unknown exception type"),
        ("--spark-config notjson", "is not JSON"),
    ],
)
def test_bad_option_values(shell, line, expected):
    msg = shell.error(f"%%step a {line}\nx = 1")
    assert expected in msg


def test_every_sdk_option_is_accepted(shell):
    shell.configure()
    shell.run(
        "%%step --defer full --display-name Full --description D --retry SageMaker.CAPACITY_ERROR:3:2:1.5 "
        "--retry Step.THROTTLING:4 --dependencies requirements.txt --pre-execution-commands 'echo hi' "
        "--pre-execution-commands 'echo there' --pre-execution-script s.sh --env A=1 --env B=2 "
        "--image-uri img:2 --instance-count 2 --instance-type ml.c5.xlarge --job-conda-env base "
        "--job-name-prefix custom-prefix --keep-alive-period-in-seconds 60 --max-retry-attempts 2 "
        "--max-runtime-in-seconds 600 --role arn:aws:iam::111122223333:role/Other --security-group-ids sg-1 "
        "--subnets subnet-1,subnet-2 --tag team=ml --volume-kms-key k --volume-size 50 "
        "--encrypt-inter-container-traffic --use-spot-instances --max-wait-time-in-seconds 900 "
        '--spark-config \'{"submit_files": ["s3://b/f"]}\'\nx = 1'
    )
    s = shell.graph().step("full").settings
    assert s["instance_count"].value == 2 and s["instance_count"].source == "cell"
    assert s["environment_variables"].value == {"A": "1", "B": "2"}
    assert s["pre_execution_commands"].value == ["echo hi", "echo there"]
    assert s["subnets"].value == ["subnet-1", "subnet-2"]
    assert s["retry_policies"].value[0] == {
        "exception_types": ["SageMaker.CAPACITY_ERROR"],
        "max_attempts": 3,
        "interval_seconds": 2,
        "backoff_rate": 1.5,
    }
    assert s["use_spot_instances"].value is True and s["encrypt_inter_container_traffic"].value is True
    assert s["tags"].value == {"team": "ml"}
    assert s["job_name_prefix"].value == "custom-prefix" and s["job_name_prefix"].source == "cell"


def test_load_ext_does_not_import_sagemaker():
    import subprocess
    import sys

    code = (
        "import sys\nfrom IPython.testing.globalipapp import start_ipython\nip = start_ipython()\n"
        "ip.run_cell('%load_ext jupyter_smstep')\nip.run_cell('%%step --defer a\\nx = 1')\n"
        "ip.run_cell('%pipeline show --text')\n"
        "print(sorted(m for m in sys.modules if m == 'sagemaker' or m.startswith('sagemaker.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_step_help_lists_every_option(shell):
    from jupyter_smstep.core.settings import OPTIONS

    doc = shell.ip.find_cell_magic("step").__doc__
    assert doc.splitlines()[0].startswith("usage: %%step [-h] [--inputs A,B]")
    for opt in OPTIONS:
        assert opt.flag in doc or opt.key in ("environment_variables", "tags", "retry_policies")
    assert "--env KEY=VALUE" in doc and "--tag KEY=VALUE" in doc and "--retry POLICY" in doc
    assert "--defer" in doc and "--inputs" in doc


def run_with_id(shell, cell_id, source):
    shell.ip.parent_header = {"metadata": {"cellId": cell_id}}  # what ipykernel holds during execute_request
    try:
        shell.run(source)
    finally:
        del shell.ip.parent_header


def test_deleted_step_that_ran_in_the_kernel_is_not_captured(shell):
    shell.configure()
    run_with_id(shell, "c1", "%%step a\nx = 1")  # ran: x = 1 lives on in the kernel
    run_with_id(shell, "c2", "%%step b\ny = x + 1")
    shell.workspace.registry.sync_cells(["c2"])
    (msg,) = problems(shell)
    assert "step 'a' computed, but that step is gone" in msg and "restore step 'a'" in msg
    shell.run("x = 5")  # an ordinary cell now defines x: captured, no error
    assert not problems(shell)


def test_notebook_sync_forgets_deleted_step_cells(shell):
    shell.configure()
    run_with_id(shell, "c1", "%%step --defer a\nx = 1")
    run_with_id(shell, "c2", "%%step --defer b\ny = x + 1")
    assert not shell.graph().report.errors
    assert shell.workspace.registry.sync_cells(["c2"])  # the frontend no longer has cell c1
    (msg,) = problems(shell)
    assert "step 'b'" in msg and "'x'" in msg and "step 'a' computed, but that step is gone" in msg


def test_notebook_sync_follows_moved_cells(shell):
    shell.configure()
    run_with_id(shell, "c1", "%%step --defer a\nx = 1")
    run_with_id(shell, "c2", "%%step --defer b\ny = x + 1")
    assert shell.workspace.registry.sync_cells(["c2", "c1"])  # b moved above a
    (msg,) = problems(shell)
    assert "step 'a' produces, but that step comes later" in msg
    assert not shell.workspace.registry.sync_cells(["c2", "c1"])  # nothing new: no change


def test_rerun_with_cell_id_replaces_even_when_renamed(shell):
    shell.configure()
    run_with_id(shell, "c1", "%%step --defer first\nx = 1")
    run_with_id(shell, "c1", "%%step --defer renamed\nx = 1")
    assert [c.step.name for c in shell.workspace.registry.steps] == ["renamed"]


def test_a_failing_step_cell_fails_the_notebook_cell(shell):
    shell.configure()
    msg = shell.error("%%step boom\nx = 1 / 0")
    assert "step 'boom' is registered" in msg and "ZeroDivisionError" in msg
    assert shell.workspace.registry.step("boom") is not None


def test_outputs_naming_nothing_the_cell_has_is_an_error_but_an_input_it_changes_unseen_is_fine(shell):
    shell.configure()
    shell.run("rows = [1, 2]\nimport random")
    shell.run("%%step --defer a --outputs totl\ntotal = 3")
    shell.run("%%step --defer b --outputs rows\nrandom.Random(0).shuffle(rows)\nn = len(rows)")
    errors = [p for p in shell.graph().report.errors]
    assert [(p.step, p.line) for p in errors] == [("a", 1)], errors
    assert "'totl', which the cell neither assigns nor reads" in errors[0].message
