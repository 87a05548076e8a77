"""``%%remote``: one cell as a training job, values back in the kernel. ``--local`` through the local runner in a
real shell; the SageMaker path against the fake endpoint (the job's request, and the stop button)."""

from __future__ import annotations

import _thread
import os
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")


def test_local_puts_the_cells_variables_back_with_the_kernels_values(shell, capsys):
    shell.configure(name="remote-local")
    shell.run("import math\nBASE = [1.0, 4.0, 9.0]\ndef scale(v, k):\n    return [x * k for x in v]")
    shell.run(
        "%%remote --local --instance-type ml.m5.xlarge\nroots = [math.sqrt(x) for x in scale(BASE, 4)]\n"
        "total = sum(roots)"
    )
    ns = shell.ip.user_ns
    assert ns["roots"] == [2.0, 4.0, 6.0] and ns["total"] == 12.0
    err = capsys.readouterr().err
    assert (
        "%%remote: job " in err
        and "ran locally (the local runner)" in err
        and "back in the kernel: roots, total" in err
    )
    # a later step reads what it computed as a captured value, like any ordinary cell's
    shell.run("%%step --defer report\nout = total * 2")
    report = shell.graph().step("report")
    assert report.inputs["total"].kind == "value"


def test_local_raises_the_cells_own_exception_with_its_lines(shell):
    shell.configure(name="remote-error")
    result = shell.ip.run_cell("%%remote --local\nx = 1\ny = x / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    import traceback

    assert "%%remote cell, line 3: y = x / 0" in "".join(traceback.format_exception(result.error_in_exec))
    assert "y" not in shell.ip.user_ns


def test_local_stops_on_the_stop_button(shell, tmp_path):
    shell.configure(name="remote-stop")
    marker = tmp_path / "started"
    shell.run(f"MARK = {str(marker)!r}")

    def interrupt_when_started():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    started = time.monotonic()
    result = shell.ip.run_cell(
        "%%remote --local\nimport time\nopen(MARK, 'w').write('x')\ntime.sleep(120)\ndone = True"
    )
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert time.monotonic() - started < 100 and "done" not in shell.ip.user_ns


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%remote --when 'x > 1'", "--when is a pipeline option"),
        ("%%remote --save x=s3://b/x.json", "--save is a pipeline option"),
        ("%%remote --after a", "--after is a pipeline option"),
        ("%%remote --else-fail no", "--else-fail is a pipeline option"),
        ("%%remote --instance-typo ml.m5.large", "unknown option --instance-typo"),
        ("%%remote --instance-count many", "--instance-count 'many' is not an integer"),
        ("%%remote --instance-type xlarge", "--instance-type 'xlarge' (from cell): InstanceType must be one of"),
    ],
)
def test_bad_remote_lines_are_refused_before_anything_starts(shell, line, message):
    shell.configure(name="remote-bad")
    error = shell.error(f"{line}\nx = 1")
    assert message in error and "x" not in shell.ip.user_ns


def test_a_name_the_kernel_does_not_have_is_refused_before_anything_starts(shell):
    shell.configure(name="remote-missing")
    error = shell.error("%%remote --local\ny = nowhere + 1")
    assert "'nowhere'" in error and "defined nowhere" in error


# ----------------------------------------------------------------------------- on SageMaker (the fake endpoint)
@pytest.fixture
def account(shell, moto_server, fake_sagemaker, monkeypatch, tmp_path):
    from helpers.constants import IMAGE
    from helpers.fakes import prepare_account

    monkeypatch.chdir(tmp_path)
    fake = fake_sagemaker()
    role = prepare_account(moto_server)
    (tmp_path / "requirements.txt").write_text("numpy\n")
    shell.run(f"%pipeline config --name remote-job --role {role} --image-uri {IMAGE} --instance-type ml.m5.large")
    shell.run(f"REQUIREMENTS = {str(tmp_path / 'requirements.txt')!r}")
    return fake, role, IMAGE


class FastClock:
    """The SDK's log follower polls a job every 10 s and describes it every 30 s of ``time.time()``: a clock
    whose time jumps by each sleep keeps its logic and makes the test wait for the job, not the poll."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.offset += seconds
        time.sleep(0.05)

    def __getattr__(self, name: str):
        return getattr(time, name)


@pytest.fixture
def fast_polling(monkeypatch):
    import importlib
    import sys

    from jupyter_smstep.sdk.compat import load

    client = importlib.import_module(f"{load().remote_function.__name__}.client")
    follower = client._Job.wait.__globals__["_logs_for_job"]
    monkeypatch.setattr(sys.modules[follower.__module__], "time", FastClock())


def test_the_job_is_created_with_the_cells_settings_and_its_values_come_back(shell, account, capsys, fast_polling):
    fake, role, image = account
    fake.run_jobs = True
    shell.run("BASE = [1, 2, 3]")
    requirements = shell.ip.user_ns["REQUIREMENTS"]
    shell.run(
        f"%%remote --instance-type ml.g5.xlarge --dependencies {requirements} --env MODE=fast\n"
        "import os\ndoubled = [x * 2 for x in BASE]\nmode = os.environ.get('MODE')"
    )
    (request,) = fake.ops("CreateTrainingJob")
    assert request["AlgorithmSpecification"]["TrainingImage"] == image and request["RoleArn"] == role
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert request["Environment"]["MODE"] == "fast"
    args = request["AlgorithmSpecification"]["ContainerArguments"]
    assert "requirements.txt" in args[args.index("--dependency_settings") + 1]
    assert shell.ip.user_ns["doubled"] == [2, 4, 6] and shell.ip.user_ns["mode"] == "fast"
    shown = capsys.readouterr()
    assert f"%%remote: job {request['TrainingJobName']} ran on ml.g5.xlarge" in shown.err
    assert "Invoking the function" in shown.out + shown.err  # the job's own log lines, streamed by the SDK


def test_the_stop_button_stops_the_training_job(shell, account, fast_polling):
    fake, _, _ = account  # jobs stay InProgress: only the stop ends one

    def interrupt_when_created():
        deadline = time.monotonic() + 120
        while not fake.ops("CreateTrainingJob") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_created, daemon=True).start()
    result = shell.ip.run_cell("%%remote\nvalue = 42")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    (request,) = fake.ops("CreateTrainingJob")
    assert fake.ops("StopTrainingJob") == [{"TrainingJobName": request["TrainingJobName"]}]
    assert "value" not in shell.ip.user_ns


# ----------------------------------------------------------------------------- in a real kernel
def test_in_a_real_kernel_values_come_back_and_the_interrupt_stops_the_cell(tmp_path):
    """What JupyterLab does: execute_request for the cell, and the stop button's interrupt (SIGINT to the kernel)."""
    from helpers.kernel import Kernel

    kernel = Kernel()
    try:
        kernel.execute(
            f"import os\nos.chdir({str(tmp_path)!r})\n%load_ext jupyter_smstep\n"
            "%pipeline config --name kernel-remote --role arn:aws:iam::111122223333:role/R "
            "--image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/i:1 --instance-type ml.m5.large"
        )
        kernel.execute("WORDS = ['a', 'bb', 'ccc']")
        seen = kernel.execute("%%remote --local\nlengths = {w: len(w) for w in WORDS}")
        assert any("%%remote: job" in m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
        seen = kernel.execute("print(lengths)")
        assert "{'a': 1, 'bb': 2, 'ccc': 3}" in "".join(
            m["content"].get("text", "") for m in seen if m["msg_type"] == "stream"
        )
        marker = tmp_path / "running"

        def interrupt_when_running():
            deadline = time.monotonic() + 120
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            kernel.km.interrupt_kernel()

        threading.Thread(target=interrupt_when_running, daemon=True).start()
        started = time.monotonic()
        content = {
            "code": f"%%remote --local\nimport time\nopen({str(marker)!r}, 'w').write('x')\n"
            "time.sleep(120)\nlate = True",
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        seen = kernel._send("execute_request", content)
        errors = [m["content"]["ename"] for m in seen if m["msg_type"] == "error"]
        # (SDK v2 installs rich's traceback handler in IPython: the error then comes as display_data)
        shown = [
            str(m["content"].get("data", {}).get("text/plain", "")) for m in seen if m["msg_type"] == "display_data"
        ]
        assert errors == ["KeyboardInterrupt"] or any("KeyboardInterrupt" in text for text in shown), seen
        assert time.monotonic() - started < 100
        seen = kernel.execute("print('late' in dir())")
        assert "False" in "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    finally:
        kernel.stop()
