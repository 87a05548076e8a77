"""The local runner's warm worker: imports the SDK's entry point once, forks a child per step.

A SageMaker training job for a ``@step`` runs ``python -m
sagemaker[.core].remote_function.invoke_function ARGS`` in a fresh container.
Doing the same locally with a fresh interpreter per step would pay the SDK's
import (3 s for v2, 7 s for v3) on every step. Instead, the runner starts this
worker once: it imports the entry point module and nothing of the user's, then
forks one child per step. The child is the step's "container": a new process
group, its own log file, working directory and environment, and it calls the
entry point's ``main`` with the step's container arguments.

This file is loaded by path into a fresh interpreter (it imports nothing from
``jupyter_smstep``, so the worker's ``sys.modules`` holds only the SDK and the
standard library). Protocol: JSON lines on stdin (commands from the runner) and
on ``--reply-fd`` (events back to it).

Commands: ``{"op": "run", "id", "argv", "env", "cwd", "log_path",
"failure_path", "diag_path"}``, ``{"op": "exit"}``.
Events: ``{"op": "ready"}``, ``{"op": "started", "id", "pid", "time"}``,
``{"op": "exited", "id", "pid", "returncode", "time", "rusage"}`` (``rusage``: CPU seconds and peak
resident bytes from ``wait4``; ``returncode`` < 0 means
killed by that signal), ``{"op": "failed", "id", "error"}`` (could not fork).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback

_children: dict[int, str] = {}  # pid -> command id


def main(argv: list[str]) -> None:
    args = dict(zip(argv[::2], argv[1::2]))
    reply_fd = int(args["--reply-fd"])
    invoke_name = args["--invoke"]
    errors_name = args["--errors"]

    # The runner decides what Ctrl-C means; children get a new session anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # ``python -c`` puts the current directory first on sys.path: drop it, so a
    # stray ``sagemaker.py`` next to the notebook cannot shadow the SDK.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]

    import importlib

    started = time.time()
    invoke = importlib.import_module(invoke_name)
    errors = importlib.import_module(errors_name)
    import cloudpickle  # noqa: F401  (the entry point imports it lazily; warm it here)

    _warm_up(invoke, invoke_name)
    _load_recorder().distributions()  # once, before the forks: each step's record names its packages for free
    # Everything imported so far lives as long as the worker: move it out of the
    # collector's sight, so that a child's garbage collections do not walk (and
    # copy-on-write) the whole SDK. This is what gc.freeze() exists for.
    import gc

    gc.collect()
    gc.freeze()

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)

    def reply(message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(reply_fd, data) :]
        except OSError:  # the runner is gone; the EOF on stdin ends this loop
            pass

    reply({"op": "ready", "pid": os.getpid(), "import_seconds": time.time() - started})

    buffer = b""
    stdin_open = True
    while stdin_open or _children:
        readable, _, _ = select.select([0, wake_r] if stdin_open else [wake_r], [], [], 1.0)
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        _reap(reply)
        if 0 in readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:  # the runner went away: take the steps down with it
                stdin_open = False
                for pid in list(_children):
                    _kill_group(pid)
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                command = json.loads(line)
                if command["op"] == "exit":
                    stdin_open = False
                    for pid in list(_children):
                        _kill_group(pid)
                elif command["op"] == "run":
                    _spawn(command, invoke, errors, reply, [0, reply_fd, wake_r, wake_w])
    sys.exit(0)


def _warm_up(invoke, invoke_name: str) -> None:
    """Pay once, before any fork, what every step would pay again: lazy imports and
    botocore's parsing of its service models (about 1 s per SageMaker ``Session``).

    botocore caches parsed JSON per session; a step makes new sessions, so the
    cache is made process-wide here and filled by building one ``Session`` the
    way the entry point does. Only static data files are cached; nothing of the
    step's own behaviour changes.
    """
    import importlib

    package = invoke_name.rsplit(".", 1)[0]
    for name in (f"{package}.core.stored_function", f"{package}.core.pipeline_variables", "tblib.pickling_support"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            pass
    try:
        _share_botocore_data()
    except Exception:  # noqa: BLE001 - a botocore without these hooks is only slower
        return
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "warm-up",
            "AWS_SECRET_ACCESS_KEY": "warm-up",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        invoke._get_sagemaker_session(os.environ["AWS_DEFAULT_REGION"])
    except Exception:  # noqa: BLE001
        pass
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _share_botocore_data() -> None:
    import functools

    from botocore import loaders

    files: dict = {}
    original_load_file = loaders.JSONFileLoader.load_file

    @functools.wraps(original_load_file)
    def load_file(self, file_path):
        if file_path not in files:
            files[file_path] = original_load_file(self, file_path)
        return files[file_path]

    loaders.JSONFileLoader.load_file = load_file

    for method_name in ("list_available_services", "list_api_versions", "determine_latest_version"):
        original = getattr(loaders.Loader, method_name)
        results: dict = {}

        def shared(self, *args, __original=original, __results=results):
            key = (tuple(self.search_paths), args)
            if key not in __results:
                __results[key] = __original(self, *args)
            return __results[key]

        setattr(loaders.Loader, method_name, functools.wraps(original)(shared))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


#: Set in every step process, and so inherited by whatever it starts (``start_new_session`` included):
#: the step's processes are found by it when the step ends (the cookie Jenkins' ProcessTreeKiller uses).
STEP_COOKIE = "SMSTEP_STEP"


def _kill_escaped(command_id: str) -> int:
    """SIGKILL every process still carrying this step's cookie (Linux: /proc); how many were killed."""
    marker = f"{STEP_COOKIE}={command_id}".encode() + b"\0"
    killed = 0
    for _ in range(5):  # a process may fork while we look
        found = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return killed  # no /proc (macOS): a process group is all that is known
        for entry in entries:
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if b"\0" + marker in b"\0" + f.read() + b"\0":
                        found.append(int(entry))
            except OSError:
                continue
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.01)
    return killed


def _reap(reply) -> None:
    while _children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            _children.clear()
            return
        if pid == 0:
            return
        command_id = _children.pop(pid, None)
        if command_id is None:
            continue
        escaped = _kill_escaped(command_id)  # a daemon (new session) ends with its step, as in a container
        returncode = os.waitstatus_to_exitcode(status)
        # The child's own use plus its waited-for descendants' (the kernel folds those in), measured at exit.
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux
        reply(
            {
                "op": "exited",
                "id": command_id,
                "pid": pid,
                "returncode": returncode,
                "time": time.time(),
                "rusage": {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": peak},
                "escaped": escaped,
            }
        )


def _spawn(command: dict, invoke, errors, reply, worker_fds: list[int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        reply({"op": "failed", "id": command["id"], "error": f"{type(exc).__name__}: {exc}"})
        return
    if pid == 0:  # the step's process
        code = 1
        try:
            code = _run_step(command, invoke, errors, worker_fds)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            try:
                traceback.print_exc()
            except BaseException:  # noqa: BLE001 - not even a broken stderr may escape a forked child
                pass
        finally:
            os._exit(code)
    _children[pid] = command["id"]
    reply({"op": "started", "id": command["id"], "pid": pid, "time": time.time()})


def _run_step(command: dict, invoke, errors, worker_fds: list[int]) -> int:
    """Become the step's container process and run the SDK entry point. Returns the exit code."""
    os.setsid()  # its own process group: a timeout kills everything the step started
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in worker_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(command["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)

    cwd = command["cwd"]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(command["env"])
    os.environ[STEP_COOKIE] = command["id"]
    # As in a fresh container: boto3's default session (the warm-up's SDK session made one) must
    # read this step's credentials, not keep the warm-up's.
    boto3 = sys.modules.get("boto3")
    if boto3 is not None:
        setattr(boto3, "DEFAULT_SESSION", None)  # noqa: B010 - boto3's module attribute
    sys.path.insert(0, cwd)  # what ``python -m`` does in the job's working directory
    sys.argv = [getattr(invoke, "__file__", invoke.__name__)] + list(command["argv"])

    # The entry point writes its failure reason to a hard-coded /opt/ml/output/failure;
    # where that directory is missing, writing it raises inside the error handler and
    # main() exits 0. Point it at the step's own folder, so a failure stays a failure.
    errors.FAILURE_REASON_PATH = command["failure_path"]
    original_handle_error = invoke.handle_error
    diag_path = command["diag_path"]

    def handle_error(*args, **kwargs):
        error = kwargs.get("error", args[0] if args else None)
        try:
            _write_diagnostics(error, diag_path)
        except BaseException as exc:  # noqa: BLE001
            print(f"smstep: could not record the step's error: {exc!r}", file=sys.stderr)
        try:
            return original_handle_error(*args, **kwargs) or 1
        except BaseException:  # noqa: BLE001 - main() would turn this into exit 0
            traceback.print_exc()
            return 1

    invoke.handle_error = handle_error
    recorder = None
    if command.get("reads_path"):  # what the step's own code reads, for the cache (recorder.py)
        recorder = _load_recorder().Recorder(command.get("ignore") or [], cwd, command.get("root"))
        recorder.install()
        recorder.watch_numpy()
    code = 0
    profile_dir = os.environ.get("SMSTEP_PROFILE_DIR")  # debugging the runner's overhead
    profiler = None
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        invoke.main(list(command["argv"]))
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt, or anything main() does not catch
        try:
            _write_diagnostics(exc, diag_path)
        except BaseException:  # noqa: BLE001 - the diagnostics are a courtesy; the exit code is what counts
            pass
        traceback.print_exc()
        code = 1
    if profiler is not None and profile_dir:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"{os.getpid()}.prof"))
    if recorder is not None and code == 0:
        try:
            recorder.write(command["reads_path"])
        except BaseException:  # noqa: BLE001 - no record: the runner does not cache the result
            traceback.print_exc()
    _finish_interpreter()
    return code


def _load_recorder():
    """``recorder.py`` beside this file, loaded by path as this file is (it imports nothing of ours)."""
    import importlib.util

    name = "_smstep_step_recorder"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "recorder.py"))
        assert spec is not None and spec.loader is not None  # a .py file beside this one
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _finish_interpreter() -> None:
    """What a normal interpreter exit does: wait for threads, run atexit, flush."""
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except BaseException:  # noqa: BLE001
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


# -- what went wrong, in the user's terms ---------------------------------------------
def _write_diagnostics(error: BaseException | None, path: str) -> None:
    if error is None:
        return
    info = diagnose(error)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def diagnose(error: BaseException) -> dict:
    """Where the step failed (phase) and the part of the traceback that is the user's.

    The entry point calls ``StoredFunction.load_and_invoke``, which loads the
    function, loads and resolves its arguments, calls the function and
    serialises its result. Which of those failed is read from that frame's
    locals; the user's traceback starts at the frame of their function.
    """
    entries = []
    tb = error.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    try:
        message = str(error)
    except Exception as exc:  # noqa: BLE001 - a broken __str__ must not hide the failure
        message = f"<str() failed: {exc!r}>"
    info: dict = {
        "type": type(error).__name__,
        "module": type(error).__module__,
        "message": message,
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        "phase": "runtime",
        "user_traceback": None,
        "variable": None,
        "cause": None,
        "unpicklable": [],
    }
    cause = error.__cause__ or error.__context__
    if cause is not None:
        info["cause"] = f"{type(cause).__name__}: {cause}"
    for i, entry in enumerate(entries):
        code = entry.tb_frame.f_code
        if code.co_name != "load_and_invoke" or not code.co_filename.endswith("stored_function.py"):
            continue
        local = entry.tb_frame.f_locals
        func = local.get("func")
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        if func is not None and nxt is not None and nxt.tb_frame.f_code is getattr(func, "__code__", None):
            info["phase"] = "function"
            info["user_traceback"] = "".join(traceback.format_exception(type(error), error, nxt))
            if isinstance(error, NameError):
                info["variable"] = getattr(error, "name", None)
        elif "result" in local:
            info["phase"] = "output"
            info["unpicklable"] = _unpicklable_parts(local["result"])
        elif func is None:
            info["phase"] = "load_function"
        elif "args" not in local:
            info["phase"] = "load_arguments"
        else:
            info["phase"] = "resolve_inputs"
        break
    return info


def _unpicklable_parts(result) -> list:
    """Which entries of a step's return value cannot be pickled (name, reason)."""
    import cloudpickle

    if isinstance(result, dict):
        items = list(result.items())
    elif isinstance(result, (list, tuple)):
        items = list(enumerate(result))
    else:
        items = [(None, result)]
    bad = []
    for key, value in items:
        try:
            cloudpickle.dumps(value)
        except Exception as exc:  # noqa: BLE001
            bad.append([None if key is None else str(key), type(value).__name__, f"{type(exc).__name__}: {exc}"])
    return bad


if __name__ == "__main__":
    main(sys.argv[1:])
