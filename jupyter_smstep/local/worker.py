"""The runner's side of the warm worker (:mod:`jupyter_smstep.local.worker_entry`).

One worker per Python executable and SDK line is kept alive between runs (a
second ``%pipeline run`` in the same kernel does not wait for the SDK import
again) and closed at exit. The worker's messages are read by a thread into a
queue that the scheduler consumes.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jupyter_smstep.sdk.compat import modules
from jupyter_smstep.folders import cache_dir
from jupyter_smstep.errors import Problem, SmstepError


# ======================================================================================
# The warm worker
# ======================================================================================
_WORKER_SCRIPT = Path(__file__).with_name("worker_entry.py")
_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_smstep_step_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module.main(sys.argv[2:])\n"
)


def _entry_point_modules() -> tuple[str, str]:
    """The SDK's container entry point and its errors module, without importing the SDK."""
    package = modules()["remote_function"]
    return f"{package}.invoke_function", f"{package}.errors"


class WarmWorker:
    """The parent's handle on one ``_step_worker`` process."""

    def __init__(self, python: str, invoke_module: str, errors_module: str, log_path: Path) -> None:
        self.key = (python, invoke_module)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
            env["AWS_DEFAULT_REGION"] = "us-east-1"  # v3's import builds a client and needs one
        env.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        read_fd, write_fd = os.pipe()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    python,
                    "-c",
                    _BOOT,
                    str(_WORKER_SCRIPT),
                    "--reply-fd",
                    str(write_fd),
                    "--invoke",
                    invoke_module,
                    "--errors",
                    errors_module,
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_fd,),
                cwd=tempfile.gettempdir(),
                env=env,
            )
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "rb")
        self.messages: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.ready_info: dict = {}
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="smstep-worker-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for line in self._replies:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if message.get("op") == "ready":
                    self.ready_info = message
                    self.ready.set()
                else:
                    self.messages.put(message)
        finally:
            self.dead.set()
            self.ready.set()
            self.messages.put({"op": "worker-died"})

    def alive(self) -> bool:
        return not self.dead.is_set() and self.process.poll() is None

    def wait_ready(self, timeout: float = 300.0) -> None:
        if not self.ready.wait(timeout) or not self.alive():
            tail = log_tail(self.log_path, 30)
            raise SmstepError(
                Problem(
                    "the local runner's worker process could not import the SageMaker SDK",
                    fix=f"see {self.log_path}:\n{tail}",
                )
            )

    def send(self, command: dict) -> None:
        data = (json.dumps(command) + "\n").encode()
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(data)
            self.process.stdin.flush()

    def drain(self) -> None:
        while True:
            try:
                self.messages.get_nowait()
            except queue.Empty:
                return

    def close(self, timeout: float = 5.0) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.returncode == 0:
            self.log_path.unlink(missing_ok=True)


_idle_workers: dict[tuple, WarmWorker] = {}
_idle_lock = threading.Lock()


#: A worker log older than this whose runner is gone is removed when a new worker starts.
STALE_LOG_SECONDS = 24 * 60 * 60


def worker_log_path() -> Path:
    """The worker's own output (its import errors), in the user's cache folder (``workers/``); removed
    when the worker exits cleanly, and, when it did not, by a later start once a day old."""
    folder = cache_dir() / "workers"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a step's import errors may show its data
    now = time.time()
    for old in folder.glob("smstep-worker-*.log"):
        try:
            pid = int(old.name.split("-")[2])
            if now - old.stat().st_mtime > STALE_LOG_SECONDS and not _alive(pid):
                old.unlink()
        except (ValueError, IndexError, OSError):
            continue
    return folder / f"smstep-worker-{os.getpid()}-{secrets.token_hex(3)}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def take_worker() -> WarmWorker:
    invoke_module, errors_module = _entry_point_modules()
    key = (sys.executable, invoke_module)
    with _idle_lock:
        worker = _idle_workers.pop(key, None)
    if worker is not None and worker.alive():
        worker.drain()
        return worker
    if worker is not None:
        worker.close()
    return WarmWorker(sys.executable, invoke_module, errors_module, worker_log_path())


def return_worker(worker: WarmWorker) -> None:
    if not worker.alive():
        worker.close()
        return
    with _idle_lock:
        previous = _idle_workers.get(worker.key)
        _idle_workers[worker.key] = worker
    if previous is not None and previous is not worker:
        previous.close()


@atexit.register
def _close_idle_workers() -> None:
    with _idle_lock:
        workers = list(_idle_workers.values())
        _idle_workers.clear()
    for worker in workers:
        # One still importing the SDK (a run whose every step was cached never needed it) cannot
        # read its end of input yet: stop it now rather than wait for the import to finish.
        worker.close(timeout=2 if worker.ready.is_set() else 0)


def worker_args() -> tuple[str, str, str]:
    invoke_module, errors_module = _entry_point_modules()
    return sys.executable, invoke_module, errors_module


def log_tail(path: Path | str | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
