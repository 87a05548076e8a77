"""``%pipeline`` and ``smstep``: one argparse parser per command, shared; errors by cause.

Through a real IPython shell for the magic, and ``jupyter_smstep.cli.main`` (plus a
subprocess where the process' own exit code is the point) for the command line.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest

from jupyter_smstep import cli
from jupyter_smstep.errors import RunFailed, ServiceError, SmstepError
from jupyter_smstep.ipython import cmd
from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

CONFIG = f"%pipeline config --name demo --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


@pytest.fixture
def demo(shell):
    shell.run(CONFIG)
    shell.run("%pipeline param flag=True epochs=3")
    shell.run("%%step a --defer\nx = epochs")
    shell.run("%%step b --defer\ny = x + 1")
    return shell


#: (line, what the error must say) — each refused before anything runs
REFUSED = [
    ("%pipeline reset --force-typo", "%pipeline reset: unknown option --force-typo"),
    ("%pipeline reset now", "%pipeline reset: unexpected argument 'now'"),
    ("%pipeline remove", "the following arguments are required: STEP"),
    ("%pipeline remove a b", "unexpected argument 'b'"),
    ("%pipeline remove c", "no step named 'c' (steps: a, b)"),
    ("%pipeline show --bogus --text", "%pipeline show: unknown option --bogus"),
    ("%pipeline shwo", "unknown command 'shwo'; did you mean show?"),
    ("%pipeline run --jsno", "did you mean --json?"),
    ("%pipeline run -p flag=ture", "parameter 'flag' is a bool (true/false, 1/0 or yes/no, any case); 'ture' is not"),
    ("%pipeline run -p epochs=2.5", "parameter 'epochs' is an integer; 2.5 is not"),
    ("%pipeline run -p epoch=2", "unknown parameter 'epoch'"),
    ("%pipeline run -p", "argument -p/--param: expected one argument"),
    ("%pipeline export a.py -o b.py", "two output files given (a.py, b.py)"),
    ("%pipeline param", "the following arguments are required: NAME=VALUE"),
    ("%pipeline param 3x=1", "parameter '3x=1' is not NAME=VALUE"),
    ("%pipeline outputs", "the following arguments are required: NAME"),
    ("%pipeline status --watch", "unknown option --watch"),
    ("%pipeline pull --run", "argument --run: expected one argument"),
    ("%pipeline config --instance-typ ml.m5.large", "did you mean --instance-type?"),
    ("%pipeline config --name 'unbalanced", "No closing quotation"),
]


@pytest.mark.parametrize("line, message", REFUSED, ids=[line for line, _ in REFUSED])
def test_magic_refuses_what_it_does_not_understand(demo, line, message):
    registry = demo.workspace.registry
    before = ([c.key for c in registry.steps], dict(registry.parameters), dict(registry.defaults), registry.name)
    error = demo.error(line)
    assert message in error
    assert "Traceback" not in error
    after = ([c.key for c in registry.steps], dict(registry.parameters), dict(registry.defaults), registry.name)
    assert after == before  # nothing was changed or cleared


def test_did_you_mean_for_a_misspelt_pull_step(demo):
    from jupyter_smstep.local.results import RunResult, StepResult

    demo.workspace.last_run = RunResult("r", Path("."), {"a": StepResult("a", "failed")}, False, {})
    assert "did you mean a?" in demo.error("%pipeline pull aa")


def test_reset_and_remove_do_what_they_say(demo):
    demo.run("%pipeline remove a")
    assert [c.step.name for c in demo.workspace.registry.steps] == ["b"]
    demo.run("%pipeline reset")
    assert demo.workspace.registry.steps == []


def test_help_lists_the_same_commands_in_the_magic_and_the_cli(demo, capsys):
    demo.run("%pipeline")
    magic = capsys.readouterr().out
    assert cli.main(["-h"]) == 0
    terminal = capsys.readouterr().out
    listed = set(re.findall(r"^    (\w+)", terminal.split("options:")[0], re.M))  # argparse's COMMAND list
    assert listed == {n for n, c in cmd.COMMANDS.items() if c.where == "both"}
    for name in cmd.COMMANDS:
        assert re.search(rf"^  {name} ", magic, re.M), name
        assert re.search(rf"\b{name}\b", terminal), name  # notebook-only ones are named too
    assert demo.ip.find_line_magic("pipeline").__doc__.startswith("%pipeline COMMAND")


@pytest.mark.parametrize("name", list(cmd.COMMANDS))
def test_every_command_has_help_in_the_magic(demo, capsys, name):
    demo.run(f"%pipeline {name} -h")
    out = capsys.readouterr().out
    assert out.startswith(f"usage: %pipeline {name}"), out
    assert cmd.COMMANDS[name].help in " ".join(out.split())


@pytest.mark.parametrize("name", [n for n, c in cmd.COMMANDS.items() if c.where == "both"])
def test_every_cli_command_has_help(capsys, name):
    assert cli.main([name, "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: smstep {name}"), out
    usage = out.split("\n\n")[0]
    assert ("notebook" in usage) == cmd.COMMANDS[name].needs_notebook


def test_the_cli_and_the_magic_share_each_parser():
    for name, command in cmd.COMMANDS.items():
        magic = cmd.parser_for(command, cli=False)
        flags = {s for a in magic._actions for s in a.option_strings}
        if command.where == "both":
            terminal = cmd.parser_for(command, cli=True)
            assert flags == {s for a in terminal._actions for s in a.option_strings}, name


# --------------------------------------------------------------------------- exit codes by cause
def notebook(tmp_path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("%load_ext jupyter_smstep", CONFIG, *cells)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_error_classes_carry_their_exit_codes():
    assert (SmstepError("x").exit_code, RunFailed("x").exit_code, ServiceError("x").exit_code) == (2, 1, 3)
    assert issubclass(RunFailed, SmstepError) and issubclass(ServiceError, SmstepError)


def test_graph_and_definition_agree_on_a_bad_notebook(tmp_path, capsys):
    path = notebook(tmp_path, "%%step a\ny = missing_name + 1")
    assert cli.main(["graph", str(path)]) == 2
    assert "missing_name" in capsys.readouterr().out
    assert cli.main(["definition", str(path)]) == 2
    assert cli.main(["export", str(path), "-o", str(tmp_path / "p.py")]) == 2
    assert cli.main(["run", str(path)]) == 2
    assert not (tmp_path / "p.py").exists()


def test_a_failed_step_exits_1(tmp_path, capsys):
    path = notebook(tmp_path, "%%step a\nx = 1 / 0")
    assert cli.main(["run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_sdk_missing_exits_3(tmp_path, monkeypatch, capsys):
    from jupyter_smstep.sdk import compat, lines

    monkeypatch.setattr(lines, "installed_version", lambda: None)
    compat.load.cache_clear()
    try:
        assert cli.main(["definition", str(notebook(tmp_path, "%%step a\nx = 1"))]) == 3
    finally:
        compat.load.cache_clear()
    err = capsys.readouterr().err
    assert "the SageMaker Python SDK is not installed" in err and "pip install" in err


def test_unreachable_endpoint_exits_3_without_a_traceback(tmp_path, monkeypatch, capsys):
    path = notebook(tmp_path, "%%step a\nx = 1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert cli.main(["definition", str(path)]) == 3  # an exception escaping main would fail the test here
    err = capsys.readouterr().err
    assert "cannot reach AWS" in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    assert cli.main(["grpah", "x.ipynb"]) == 2
    assert "did you mean graph?" in capsys.readouterr().err
    assert cli.main(["status"]) == 2
    assert cli.main(["stop", "arn", "extra"]) == 2
    assert "unexpected argument 'extra'" in capsys.readouterr().err
    assert cli.main(["status", "not-an-arn"]) == 2  # said before anything reaches AWS (no region is needed)
    assert "'not-an-arn' is not a pipeline execution ARN" in capsys.readouterr().err


# --------------------------------------------------------------------------- headless builds are isolated
def test_a_headless_load_does_not_see_the_previous_notebooks_names(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a = notebook(first, "SECRET = 42", "%%step s\nx = SECRET")
    b = notebook(second, "%%step t\ny = SECRET + 1")
    assert not load_workspace(a).graph().report.errors
    errors = load_workspace(b).graph().report.errors
    assert [e.step for e in errors] == ["t"] and "'SECRET', which is defined nowhere" in errors[0].message


def test_load_ext_beside_other_lines_and_reload_ext_keep_the_headless_recorder(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"%load_ext jupyter_smstep\n{CONFIG}"),
        nbformat.v4.new_code_cell("%reload_ext jupyter_smstep\nn = 2"),
        nbformat.v4.new_code_cell("%%step a\nx = n * 2"),
    ]
    path = tmp_path / "layout.ipynb"
    nbformat.write(nb, path)
    graph = load_workspace(path).graph()
    assert graph.name == "demo" and [s.name for s in graph.steps] == ["a"]
    assert not graph.report.errors


# --------------------------------------------------------------------------- AWS errors by cause
class FakeClientError(Exception):
    def __init__(self, code: str, message: str = "m") -> None:
        super().__init__(message)
        self.response = {"Error": {"Code": code, "Message": message}}


class NoCredentialsError(Exception):
    pass


class EndpointConnectionError(Exception):
    pass


class NoRegionError(Exception):
    pass


AWS_CASES = [
    (NoCredentialsError("Unable to locate credentials"), ServiceError, "no AWS credentials"),
    (EndpointConnectionError('Could not connect to the endpoint URL: "http://x"'), ServiceError, "cannot reach AWS"),
    (NoRegionError("You must specify a region."), ServiceError, "no AWS region is configured"),
    (
        ValueError("Must setup local AWS configuration with a region supported by SageMaker."),
        ServiceError,
        "no AWS region is configured",
    ),
    (FakeClientError("AccessDenied"), ServiceError, "access denied"),
    (FakeClientError("ThrottlingException"), ServiceError, "throttling"),
    (FakeClientError("InternalFailure"), ServiceError, "InternalFailure: m"),
    (FakeClientError("ResourceNotFound"), SmstepError, "ResourceNotFound: m"),
    (FakeClientError("ValidationException", "bad arn"), SmstepError, "ValidationException: bad arn"),
]


@pytest.mark.parametrize(
    "exc, kind, says", AWS_CASES, ids=[type(c[0]).__name__ + str(i) for i, c in enumerate(AWS_CASES)]
)
def test_aws_errors_are_said_by_cause(exc, kind, says):
    from jupyter_smstep.errors import aws_error

    error = aws_error(exc, "doing it")
    assert type(error) is kind and says in str(error) and str(error).startswith("doing it failed")
    assert error.problems[0].fix


def test_a_missing_bucket_is_named_with_the_fix(aws):
    from jupyter_smstep.errors import aws_error

    try:
        aws.client("s3").get_object(Bucket="no-such-bucket-here", Key="x")
    except Exception as exc:  # noqa: BLE001 - botocore's own ClientError, from moto
        error = aws_error(exc, "reading the results")
    assert "reading the results failed: the S3 bucket no-such-bucket-here does not exist" in str(error)
    assert "aws s3 mb s3://no-such-bucket-here" in error.problems[0].fix


def test_an_html_error_page_is_not_printed(aws):
    from botocore.exceptions import ClientError

    from jupyter_smstep.errors import aws_error

    page = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>" + "x" * 2000 + "</body></html>"
    exc = ClientError(
        {"Error": {"Code": "502", "Message": page}, "ResponseMetadata": {"HTTPStatusCode": 502}}, "DescribePipeline"
    )
    text = str(aws_error(exc, "describing the pipeline"))
    assert "the endpoint answered with an HTML page (HTTP 502)" in text and "<html" not in text


def test_the_sdks_telemetry_failures_stay_out_of_the_users_output():
    import logging

    from jupyter_smstep.sdk import compat

    compat.load()
    for name in ("sagemaker.telemetry", "sagemaker.core.telemetry"):
        assert not logging.getLogger(f"{name}.telemetry_logging").isEnabledFor(logging.ERROR)


# --------------------------------------------------------------------------- headless = live, whatever the layout
def write_notebook(tmp_path: Path, cells: list[str], ids: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    if not ids:
        nb.nbformat_minor = 4
        for c in nb.cells:
            c.pop("id", None)
    path = tmp_path / "layout.ipynb"
    nbformat.write(nb, path)
    return path


LAYOUTS = {
    "load_ext-with-other-lines": [f"%load_ext jupyter_smstep\n{CONFIG}", "%%step a\nx = 1", "%%step b\ny = x + 1"],
    "load_ext-in-a-later-cell": [
        CONFIG.replace("%pipeline", "# no config yet"),
        "%load_ext jupyter_smstep",
        CONFIG,
        "%%step a\nx = 1",
        "%%step b\ny = x + 1",
    ],
    "reload_ext": [
        "%load_ext jupyter_smstep",
        "%reload_ext jupyter_smstep",
        CONFIG,
        "%%step a\nx = 1",
        "%%step b\ny = x + 1",
    ],
    "cell-magic-before-step": [
        "%load_ext jupyter_smstep",
        CONFIG,
        "%%time\n%%step a\nx = 1",
        "%%capture out\n%%step b\ny = x + 1",
    ],
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_every_layout_gives_the_kernels_pipeline_headless(tmp_path, shell, layout):
    cells = LAYOUTS[layout]
    graph = load_workspace(write_notebook(tmp_path, cells)).graph()
    assert graph.name == "demo" and [s.name for s in graph.steps] == ["a", "b"], graph.report.problems
    assert graph.step("b").inputs["x"].step == "a"
    for source in cells:  # the same cells in a kernel give the same steps and links
        shell.run(source)
    live = shell.graph()
    assert [s.name for s in live.steps] == ["a", "b"] and live.step("b").inputs["x"].step == "a"


def test_ipythons_open_exit_and_quit_are_builtins_headless_and_live(tmp_path, shell, monkeypatch):
    """A headless shell's `open` is IPython's wrapper (functools.wraps(io.open): module "io"), as a
    kernel's is: neither may capture it as a value."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("hello")
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "%%step a\nwith open('x.txt') as f:\n    text = f.read()\nstop = exit if not text else quit",
    ]
    headless = load_workspace(write_notebook(tmp_path, cells)).graph()
    for source in cells:
        shell.run(source)
    for graph in (headless, shell.graph()):
        assert dict(graph.step("a").inputs) == {}, graph.step("a").inputs


def test_unnamed_twins_in_a_notebook_without_cell_ids_are_two_steps(tmp_path):
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "%%step\nfeatures = 1",
        "%%step\nfeatures = 1",
        "%%step\nlabels = features",
    ]
    graph = load_workspace(write_notebook(tmp_path, cells, ids=False)).graph()
    assert [s.name for s in graph.steps] == ["features", "features-2", "labels"]


def test_a_step_cell_that_did_not_register_fails_the_build(tmp_path, capsys):
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "%%step a\nx = 1",
        "%%capture\n%pipeline remove a\n%%step b\ny = 2",
    ]  # %%step on line 3: not a cell magic any more
    with pytest.raises(SmstepError, match="did not become steps"):
        load_workspace(write_notebook(tmp_path, cells))


def test_modules_beside_the_notebook_import_headless_as_in_a_kernel(tmp_path, monkeypatch):
    name = f"nb_helpers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def double(v):\n    return 2 * v\n")
    (tmp_path / f"{name}_steps").mkdir()
    (tmp_path / f"{name}_steps" / "__init__.py").write_text("FACTOR = 3\n")
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        f"from {name} import double\nfrom {name}_steps import FACTOR",
        "%%step a\nx = double(FACTOR)",
    ]
    notebook_path = write_notebook(tmp_path, cells)
    monkeypatch.chdir(tmp_path.parent)  # a relative path, as users type it: smstep run notebooks/x.ipynb
    before = list(sys.path)
    try:
        graph = load_workspace(Path(tmp_path.name) / notebook_path.name).graph()
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}_steps", None)
    assert not graph.report.errors, graph.report.errors
    assert graph.step("a").inputs["double"].statement == f"from {name} import double"
    assert sys.path == before  # the notebook's folder was on sys.path for the build only


def test_a_cell_magic_before_step_keeps_the_step_in_a_kernel_that_sends_cell_ids(shell):
    shell.run(CONFIG)
    shell.ip.parent_header = {"metadata": {"cellId": "cell-1"}}  # what ipykernel holds during execute_request
    try:
        shell.run("%%time\n%%step a\nx = 1")
    finally:
        del shell.ip.parent_header
    assert [(c.step.name, c.cell_id) for c in shell.workspace.registry.steps] == [("a", "cell-1")]


def test_a_parameters_cell_may_import_modules_and_define_helpers(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        "import math\nn = 3\nrate = 0.5\nname = 'x'\ndef f(v):\n    return v\nrows = [1]"
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_code_cell(f"%load_ext jupyter_smstep\n{CONFIG}"),
        params,
        nbformat.v4.new_code_cell("%%step a\nx = math.sqrt(n) * rate + len(rows) + f(1)"),
    ]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, path)
    graph = load_workspace(path).graph()
    assert graph.parameters == {"n": 3, "rate": 0.5, "name": "x"}
    assert not graph.report.errors, graph.report.errors
    kinds = {k: v.kind for k, v in graph.step("a").inputs.items()}
    assert kinds == {"math": "import", "n": "parameter", "rate": "parameter", "rows": "value", "f": "value"}


def test_a_notebook_for_another_language_says_so(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "ir", "language": "R", "display_name": "R"}
    nb.cells = [nbformat.v4.new_code_cell("library(dplyr)")]
    path = tmp_path / "r.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(SmstepError, match="is a R notebook \\(kernel 'ir'\\)"):
        load_workspace(path)


def test_a_step_name_that_starts_with_a_dash_is_read_after_double_dash_and_refused_for_its_job(shell, tmp_path):
    """`%%step -- -load-` parses, but such a step cannot run: its job passes `--pipeline_step_name -load-`
    to the SDK's entry point, whose argparse takes the name for an option (the local run shows it)."""
    shell.run(CONFIG)
    shell.run("%%step --defer -- -load-\nx = 1")
    assert [c.step.name for c in shell.workspace.registry.steps] == ["-load-"]
    (error,) = shell.graph().report.errors
    assert "starts with '-'" in error.message and "--pipeline_step_name -load-" in error.message
    assert error.fix == "rename it, e.g. %%step load-"


OPTION_CASES = [
    (
        "--keep-alive-period-in-seconds -5",
        "--keep-alive-period-in-seconds -5 (from cell): KeepAlivePeriodInSeconds "
        "is at least 0 (CreateTrainingJob.ResourceConfig.KeepAlivePeriodInSeconds)",
    ),
    ("--keep-alive-period-in-seconds 21601", "KeepAlivePeriodInSeconds is at most 21600"),
    ("--max-runtime-in-seconds 99999999", "above SageMaker's limit of 2419200"),
    ("--max-wait-time-in-seconds -1", "MaxWaitTimeInSeconds is at least 1 (CreateTrainingJob.StoppingCondition"),
    ("--use-spot-instances", "spot instances need --max-wait-time-in-seconds"),
    (
        "--use-spot-instances --max-wait-time-in-seconds 60 --max-runtime-in-seconds 120",
        "max_wait_time_in_seconds 60 is shorter than max_runtime_in_seconds 120",
    ),
    ("--image-uri ''", "image_uri '' (from cell) is not an image URI"),
    ("--image-uri 'https://x/y:1'", "is not an image URI"),
    ("--image-uri 'a b:1'", "is not an image URI"),
    (
        "--env 1BAD=x",
        "--env '1BAD' (from cell): Environment keys must match [a-zA-Z_][a-zA-Z0-9_]* (CreateTrainingJob.Environment)",
    ),
    ("--env 'A-B=x'", "--env 'A-B' (from cell): Environment keys must match"),
    ("--security-group-id 'bad!sg'", "SecurityGroupIds entries must match [-0-9a-zA-Z]+"),
    ("--volume-kms-key " + "k" * 3000, "VolumeKmsKeyId has at most 2048 characters"),
    ("--max-retry-attempts 31", "MaximumRetryAttempts is at most 30"),
    ("--instance-type ml.m5.xlarg", "InstanceType must be one of the"),
    ("--tag " + "k" * 129 + "=v", "Key has at most 128 characters (CreateTrainingJob.Tags.Key)"),
    ("--tag aws:owner=me", "uses the prefix 'aws:'"),
    ("--dependencies nowhere/requirements.txt", "dependencies 'nowhere/requirements.txt' (from cell) names no file"),
    ("--pre-execution-script missing.sh", "pre_execution_script 'missing.sh' (from cell) names no file"),
]


@pytest.mark.parametrize("flags, message", OPTION_CASES, ids=[f for f, _ in OPTION_CASES])
def test_option_values_sagemaker_would_refuse_are_refused_before_anything_is_uploaded(shell, flags, message):
    shell.run(CONFIG)
    shell.run(f"%%step --defer a {flags}\nx = 1")
    found = [p for p in shell.graph().report.errors if p.step == "a"]
    assert any(message in p.message for p in found), [p.message for p in found]
    assert all(p.fix for p in found)


RETRY_CASES = [
    ("SageMaker.CAPACITY_ERROR:2.5", "max_attempts '2.5' is not a whole number"),
    ("SageMaker.CAPACITY_ERROR:-1", "max_attempts '-1' is not a whole number of attempts, at least 1"),
    ("SageMaker.CAPACITY_ERROR:3:0", "interval_seconds '0' is not"),
    ("SageMaker.CAPACITY_ERROR:3:2:0.5", "backoff_rate '0.5' is not a number, at least 1.0"),
    ("SageMaker.CAPACITY_ERROR:3:2:2:9", "has 4 fields after the types"),
    ("SageMaker.NOPE:3", "unknown exception type SageMaker.NOPE"),
]


@pytest.mark.parametrize("spec, message", RETRY_CASES, ids=[s for s, _ in RETRY_CASES])
def test_retry_specs_are_checked(shell, spec, message):
    shell.run(CONFIG)
    assert message in shell.error(f"%%step --defer a --retry {spec}\nx = 1")


def test_relative_file_options_start_at_the_notebooks_folder(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text("numpy\n")
    path = write_notebook(
        tmp_path, [f"%load_ext jupyter_smstep\n{CONFIG}", "%%step a --dependencies requirements.txt\nx = 1"]
    )
    monkeypatch.chdir(Path("/"))
    graph = load_workspace(path).graph()
    assert not graph.report.errors, graph.report.errors
    from jupyter_smstep.sdk import stepargs

    assert stepargs.step_arguments(graph.step("a"), tmp_path)["dependencies"] == str(tmp_path / "requirements.txt")
    assert stepargs.step_arguments(graph.step("a"))["dependencies"] == "requirements.txt"  # the export keeps it


def run_until(path: Path, runs: Path, pid_file: Path) -> subprocess.Popen:
    """``smstep run`` of ``path`` in a process of its own, returned once a step has written ``pid_file``."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_smstep.cli", "run", str(path), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert pid_file.exists(), proc.communicate(timeout=10)
    return proc


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_run_stopped_from_outside_records_its_end_and_leaves_nothing_running(tmp_path, sig, code):
    import json
    import os
    import signal
    import time

    pid_file = tmp_path / "child.pid"
    path = notebook(
        tmp_path,
        f"PID_FILE = {str(pid_file)!r}",
        "%%step slow\nimport subprocess, time\nchild = subprocess.Popen(['sleep', '300'])\n"
        "open(PID_FILE, 'w').write(str(child.pid))\ntime.sleep(300)",
    )
    runs = tmp_path / "runs"
    proc = run_until(path, runs, pid_file)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    (run_dir,) = list(runs.iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["ended"] and info["succeeded"] is False and "interrupted" in info.get("error", "") + err
    step = json.loads((run_dir / "steps" / "slow" / "step.json").read_text())
    assert step["state"] == "failed" and step["summary"].startswith("the run was interrupted")
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the step's subprocess {child} outlived the run")


def _gone(pid: int, seconds: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie nobody reaped yet) within ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="escaped processes are found through /proc")
def test_a_killed_run_is_marked_by_the_next_reader_and_keeps_what_it_finished(tmp_path):
    """SIGKILL leaves no chance to record the end: the next command that reads the folder sees the dead owner
    and marks the run; the steps that finished before keep their records; the step's daemon is gone."""
    import signal

    from jupyter_smstep import local

    pid_file = tmp_path / "daemon.pid"
    path = notebook(
        tmp_path,
        f"PID_FILE = {str(pid_file)!r}",
        "%%step first\nx = 41",
        "%%step slow\nimport subprocess, time\n"
        "daemon = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "open(PID_FILE, 'w').write(str(daemon.pid))\ntime.sleep(300)\ny = x + 1",
    )
    runs = tmp_path / "runs"
    proc = run_until(path, runs, pid_file)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (run_dir,) = local.list_runs(runs)
    assert "ended" not in json.loads((run_dir / "run.json").read_text())
    result = local.load_run(run_dir)
    assert result.interrupted and f"pid {proc.pid}" in result.interrupted and not result.succeeded
    assert result.steps["first"].state == "succeeded" and result.outputs("first") == {"x": 41}
    assert result.steps["slow"].state == "stopped" and "the run ended early" in result.steps["slow"].summary
    info = json.loads((run_dir / "run.json").read_text())  # marked once, for every later reader
    assert info["ended"] and info["interrupted"] == result.interrupted
    assert _gone(int(pid_file.read_text())), "the step's daemon outlived the run"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="escaped processes are found through /proc")
def test_a_daemon_a_step_starts_ends_with_the_step(shell, tmp_path):
    shell.configure(name="daemon")
    shell.run(
        "%%step --defer spawn\nimport subprocess\npid = subprocess.Popen(['sleep', '300'], start_new_session=True).pid"
    )
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded
    assert _gone(result.outputs("spawn")["pid"])
    assert any("were still running when it ended: stopped" in w for w in result.steps["spawn"].warnings)


def test_a_secret_looking_environment_value_is_a_warning_and_masked_in_every_view(shell, capsys):
    import json

    from jupyter_smstep.panel import html as panel_html
    from jupyter_smstep.panel.state import PanelState

    shell.configure(name="env-secret")
    shell.run("%%step a --defer --env API_TOKEN=hunter2-value --env MODE=fast\nx = 1")
    graph = shell.workspace.graph()
    warning = next(p for p in graph.report.problems if "look like secrets" in p.message)
    assert "API_TOKEN" in warning.message and "Secrets Manager" in warning.fix and warning.severity == "warning"
    capsys.readouterr()
    shell.run("%pipeline show --text")
    shell.run("%pipeline graph --json")
    out = capsys.readouterr().out
    assert "hunter2-value" not in out and "••••••" in out and "'fast'" in out
    assert json.loads(out[out.index("{\n") :])["steps"][0]["settings"]["environment_variables"]["value"] == {
        "API_TOKEN": "••••••",
        "MODE": "fast",
    }
    state = PanelState()
    state.set_graph(graph, None, 0)
    assert "hunter2-value" not in panel_html.step_details(state, "a", {}, {})


def test_the_step_line_is_read_as_written_never_expanded_with_kernel_values(shell):
    """IPython expands {expr} and $name in magic lines with the kernel's values; a headless build has none, so
    the same notebook would give another pipeline. %%step opts out."""
    shell.configure(name="literal")
    shell.run("prefix = 'expanded'")
    shell.run("%%step --defer a --job-name-prefix {prefix}-x --description $prefix\ny = 1")
    graph = shell.graph()
    settings = graph.step("a").settings
    assert settings["description"].value == "$prefix"
    assert settings["job_name_prefix"].value == "{prefix}-x"
    (warning,) = [p for p in graph.report.warnings if "reads its line as written" in p.message]
    assert "$prefix ('$prefix')" in warning.message and warning.step == "a" and warning.line == 1
    shell.run("%%step --defer b --pre-execution-commands 'echo $PATH'\ny = 2")  # the job's shell expands it
    assert not [p for p in shell.graph().report.warnings if p.step == "b" and "as written" in p.message]


def test_commands_that_act_say_the_warnings_first_and_count_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.csv").write_text("1\n")
    peeks = [f"print(total + {i})" for i in range(cmd.SHOWN_WARNINGS + 2)]  # each reads a step's output
    path = write_notebook(
        tmp_path,
        ["%load_ext jupyter_smstep", CONFIG, "%%step a\nrows = open('rows.csv').read()\ntotal = len(rows)", *peeks],
    )
    assert cli.main(["export", str(path), "-o", str(tmp_path / "out.py")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == cmd.SHOWN_WARNINGS
    assert "names the local file 'rows.csv'" in lines[0] and "line 2" in lines[0]
    assert "... and 3 more warnings (smstep graph NOTEBOOK lists them all)" in err
    assert err.index("warning: ") < err.index("wrote ")


@pytest.mark.parametrize("magic", ["%matplotlib inline", "%matplotlib widget", "%matplotlib", "%pylab inline"])
def test_a_notebook_with_matplotlib_magics_and_plots_builds_headless(tmp_path, magic):
    path = write_notebook(
        tmp_path,
        [
            "%load_ext jupyter_smstep",
            f"%pipeline config --name plots --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
            f"{magic}\nimport matplotlib.pyplot as plt",
            "%%step values\nys = [1, 4, 9]",
            "plt.plot([1, 2, 3], [1, 4, 9])\nplt.title('exploration')\nplt.show()",
        ],
    )
    graph = load_workspace(path).graph()
    assert [s.name for s in graph.steps] == ["values"] and not graph.report.errors, graph.report.errors
