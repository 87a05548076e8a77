"""What a local run leaves behind, and how to read it back.

A run folder (``runs_dir/<run_id>/``) holds ``run.json`` (parameters, timings,
outcome), ``definition.json`` (what the SDK produced), ``events.jsonl`` (every
:class:`StepEvent`), ``steps/<name>/step.json`` plus one folder per attempt
(``log.txt``, the working directory), and ``s3/<bucket>/<key>``: every object
the run wrote, among them each step's results. :func:`load_run` rebuilds a
:class:`RunResult` from that folder alone, so results can be pulled into a
kernel long after the run (``%pipeline pull``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.core.states import STEP_STATES, EventKind, StepState
from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.folders import write_whole
from jupyter_smstep.local.definition import as_run, split_s3_uri

#: The states a local run's step goes through ("stopped" is SageMaker's only).
STATES: tuple[StepState, ...] = tuple(s for s in STEP_STATES if s != "stopped")
DEFAULT_RUNS_DIR = ".smstep/runs"


@dataclass
class StepEvent:
    """A change in a run, passed to ``on_event``.

    ``kind`` is ``"state"`` (the step's ``state`` changed; one of :data:`STATES`),
    ``"retry"`` (an attempt failed and the step will run again), ``"warning"``
    (e.g. a requirement the current environment does not satisfy) or ``"run"``
    (``step`` is None; ``state`` is ``"running"`` at the start and
    ``"succeeded"``/``"failed"`` at the end, ``info["steps"]`` lists the steps).
    """

    run_id: str
    step: str | None
    state: StepState
    kind: EventKind = "state"
    attempt: int = 0
    time: float = field(default_factory=time.time)
    duration: float | None = None
    message: str | None = None  # one line: the failure summary, the warning, why skipped
    error: str | None = None  # failed: the step's own exception and traceback
    info: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """What happened to one step. ``outputs`` loads the step's return value on first use."""

    name: str
    state: StepState
    duration: float | None = None
    error: str | None = None  # the step's own exception + traceback, with an explanation first
    attempts: int = 0
    log_path: str | None = None
    summary: str | None = None  # one line, for tables and the terminal
    failure_type: str | None = None  # AlgorithmError, MaxRuntimeExceeded, SageMaker.JOB_INTERNAL_ERROR, ...
    started: float | None = None
    ended: float | None = None
    skipped_because: str | None = None
    warnings: list[str] = field(default_factory=list)
    job_name: str | None = None
    output_uri: str | None = None  # S3OutputPath: results/{payload.pkl,metadata.json,results.json}
    exception_uri: str | None = None  # where the SDK pickled the step's exception
    #: SHA-256 of results/payload.pkl (and of the exception's) when the runner saw the step end: a pickle
    #: is loaded only if it is still what this run's step wrote (see :func:`load_payload`)
    payload_sha256: str | None = None
    exception_sha256: str | None = None
    attempt_log: list[dict] = field(default_factory=list)
    key: str | None = None  # the step's content key (core.keys)
    key_parts: dict[str, str] = field(default_factory=dict)  # what the key was made of (to say what changed)
    #: The last attempt, measured: wall_s, cpu_s, peak_rss_bytes, payload_in_bytes, payload_out_bytes
    resources: dict[str, float] = field(default_factory=dict)
    cached_from: str | None = None  # the earlier run whose results this step reused (no process started)
    #: where results taken from elsewhere came from (``run --upstream``: "step X of execution ID"); no process
    taken_from: str | None = None
    condition: dict | None = None  # a ConditionStep's decision: {"outcome": bool, "when": "EXPR"}
    #: what the step's code read when it ran (files, folders, modules, packages, environment variables, what
    #: cannot be pinned): the cache reuses its result only while all of it holds (local.reads)
    reads: dict = field(default_factory=dict)
    run_dir: str | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False, compare=False)
    _loaded: bool = field(default=False, repr=False, compare=False)

    @property
    def value(self) -> Any:
        """The step function's return value (deserialised from the run's S3 mirror)."""
        if not self._loaded:
            if self.state != "succeeded" or not self.output_uri or not self.run_dir:
                raise SmstepError(Problem(f"has no outputs: it {self.state}", step=self.name))
            self._value = load_payload(Path(self.run_dir), self.output_uri, self.payload_sha256, self.name)
            self._loaded = True
        return self._value

    @property
    def outputs(self) -> dict:
        """The step's outputs by name (our steps return a dict); ``{"return": v}`` otherwise."""
        if self.state != "succeeded" or self.condition is not None:
            return {}
        value = self.value
        return value if isinstance(value, dict) else {"return": value}

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "run_dir"}
        return data


@dataclass
class RunResult:
    """A finished local run; also what :func:`load_run` returns for an old one."""

    run_id: str
    run_dir: Path
    steps: dict[str, StepResult]
    succeeded: bool
    definition: dict
    pipeline_name: str = ""
    parameters: dict = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    sdk_version: str | None = None
    interrupted: str | None = None  # why the run ended without recording its end (its process died)
    #: step -> what its --save values wrote: [{"name", "uri", "path"}] (path: the object in this run's S3)
    saved: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: the notebook file the run was made from (its name: runs live beside it), when known
    notebook: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def outputs(self, step: str) -> dict:
        """The deserialised return value of a step (a dict of outputs for our steps)."""
        return self._step(step).outputs

    def exception(self, step: str) -> BaseException | None:
        """The exception the step raised, as the SDK pickled it (with its traceback)."""
        result = self._step(step)
        if not result.exception_uri:
            return None
        try:
            return load_payload(self.run_dir, result.exception_uri, result.exception_sha256, result.name)
        except (OSError, SmstepError):
            return None

    def instance_types(self) -> dict[str, str]:
        """Each step's instance type as the definition gives it (a parameter's default if it is one)."""
        defaults = {p.get("Name"): p.get("DefaultValue") for p in self.definition.get("Parameters", []) or []}
        out = {}
        for step, _ in definition_steps(as_run(self.definition)):
            value = (step.get("Arguments", {}).get("ResourceConfig") or {}).get("InstanceType")
            if isinstance(value, dict) and isinstance(value.get("Get"), str):
                name = value["Get"].removeprefix("Parameters.")
                value = self.parameters.get(name, defaults.get(name))
            if isinstance(value, str):
                out[str(step.get("Name"))] = value
        return out

    def measurements(self) -> dict[str, dict[str, Any]]:
        """step -> what a cost estimate needs: instance type and count, measured wall time (None: not
        measured, e.g. cached), spot."""
        types = self.instance_types()
        out: dict[str, dict[str, Any]] = {}
        for step, _ in definition_steps(as_run(self.definition)):
            if step.get("Type") != "Training":
                continue  # a condition or a fail step costs nothing
            name = str(step.get("Name"))
            args = step.get("Arguments", {})
            count = (args.get("ResourceConfig") or {}).get("InstanceCount", 1)
            result = self.steps.get(name)
            measured = (
                result.resources.get("wall_s")
                if result is not None and not result.cached_from and not result.taken_from
                else None
            )
            out[name] = {
                "instance_type": types.get(name, "?"),
                "instance_count": count if isinstance(count, int) else 1,
                "wall_s": measured,
                "spot": bool(args.get("EnableManagedSpotTraining")),
            }
        return out

    def suggestions(self, specs: Any = None) -> dict[str, Any]:
        """step -> :class:`jupyter_smstep.core.instances.Suggestion`, for the steps this run measured
        (``specs``: a :class:`~jupyter_smstep.core.instances.Specs`, default the shipped table)."""
        from jupyter_smstep.core.instances import suggest

        types = self.instance_types()
        found = {}
        for name, step in self.steps.items():
            if name in types and step.state == "succeeded" and not step.cached_from and not step.taken_from:
                suggestion = suggest(name, types[name], step.resources, specs)
                if suggestion is not None:
                    found[name] = suggestion
        return found

    def failed_steps(self) -> list[str]:
        return [n for n, s in self.steps.items() if s.state == "failed"]

    def to_json(self) -> dict:
        """Per step: state, duration, attempts, a short repr of each output, the error."""
        steps = {}
        suggestions = self.suggestions()
        for name, step in self.steps.items():
            entry: dict[str, Any] = {
                "state": step.state,
                "duration": None if step.duration is None else round(step.duration, 3),
                "attempts": step.attempts,
            }
            if step.condition is not None:
                entry["condition"] = step.condition
            elif step.state == "succeeded":
                try:
                    entry["outputs"] = {k: _short_repr(v) for k, v in step.outputs.items()}
                except Exception as exc:  # noqa: BLE001 - a report must not fail on one value
                    entry["outputs_error"] = f"{type(exc).__name__}: {exc}"
            if step.summary and step.state != "succeeded":
                entry["summary"] = step.summary
            if step.error:
                entry["error"] = step.error
            if step.skipped_because:
                entry["skipped_because"] = step.skipped_because
            if step.resources:
                entry["resources"] = step.resources
            if name in suggestions:
                entry["suggestion"] = suggestions[name].to_json()
            if step.cached_from:
                entry["cached"] = True
                entry["cached_from"] = step.cached_from
            if step.taken_from:
                entry["taken_from"] = step.taken_from
            if step.key:
                entry["key"] = step.key
            if step.warnings:
                entry["warnings"] = step.warnings
            if step.log_path:
                entry["log"] = step.log_path
            steps[name] = entry
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "pipeline": self.pipeline_name,
            "succeeded": self.succeeded,
            "duration": None if self.duration is None else round(self.duration, 3),
            "parameters": self.parameters,
            "steps": steps,
            **({"interrupted": self.interrupted} if self.interrupted else {}),
            **({"saved": self.saved} if self.saved else {}),
        }

    def _step(self, step: str) -> StepResult:
        if step not in self.steps:
            known = ", ".join(self.steps) or "none"
            raise SmstepError(Problem(f"run {self.run_id} has no step '{step}'", fix=f"steps: {known}"))
        return self.steps[step]

    def __repr__(self) -> str:
        states = ", ".join(f"{n}={s.state}" for n, s in self.steps.items())
        return f"RunResult({self.run_id!r}, succeeded={self.succeeded}, {states})"


def _short_repr(value: Any, limit: int = 80) -> str:
    import reprlib

    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    r.maxlist = r.maxdict = r.maxtuple = r.maxset = 6
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        if tuple(shape) == () and hasattr(value, "item"):  # a numpy scalar: its value says more
            try:
                return r.repr(value.item())
            except (TypeError, ValueError):
                pass
        return f"<{type(value).__name__} shape={tuple(shape)} dtype={value.dtype}>"
    if shape is not None and hasattr(value, "columns"):  # pandas/polars-like frames
        columns = ", ".join(map(str, list(value.columns)[:6])) + (", …" if len(value.columns) > 6 else "")
        return f"<{type(value).__name__} {shape[0]} rows × {shape[1]} columns: {columns}>"
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def local_path(run_dir: Path, uri: str) -> Path:
    bucket, key = split_s3_uri(uri)
    return Path(run_dir, "s3", bucket, *[p for p in key.split("/") if p])


def load_payload(run_dir: Path, uri: str, recorded: str | None, step: str | None = None) -> Any:
    """Unpickle ``<uri>/payload.pkl`` from the run's S3 mirror, only if it is what the run's step wrote.

    ``recorded`` is the SHA-256 the runner took when the step ended (in the run's own
    ``step.json``, in a folder only the user can open). The SDK's ``metadata.json`` hash beside
    the pickle proves nothing: whoever replaces the one can replace the other. A pickle runs
    code when loaded, so one that differs, or that no run recorded, is refused, never loaded.
    """
    import cloudpickle

    folder = local_path(run_dir, uri)
    payload = folder / "payload.pkl"
    if not payload.is_file():
        raise SmstepError(Problem(f"no {payload} (was the run's S3 data deleted?)", step=step))
    if recorded is None:
        raise SmstepError(
            Problem(
                f"not loading {payload}: the run did not record its hash when the step ended "
                "(a run by an older jupyter_smstep, or one that was killed)",
                step=step,
                fix="run the step again",
            )
        )
    data = payload.read_bytes()
    if hashlib.sha256(data).hexdigest() != recorded:
        raise SmstepError(
            Problem(
                f"not loading {payload}: it changed after the step wrote it (a pickle runs code when loaded)",
                step=step,
                fix="run the step again",
            )
        )
    return cloudpickle.loads(data)


# ======================================================================================
# Reopening runs
# ======================================================================================
def write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` whole or not at all (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_whole(path, json.dumps(data, indent=1, default=str))


def owner() -> dict[str, Any]:
    """Who is running a run: recorded in its run.json, so a later reader can tell a live run from a dead one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), telling a reused pid from its first owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_gone(info: dict[str, Any]) -> str | None:
    """Why the process that ran an unfinished run is gone, or None (alive, on another host, or unknown)."""
    who = info.get("owner") or {}
    pid = who.get("pid")
    if not isinstance(pid, int) or who.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"its process (pid {pid}) is gone: it was killed or crashed before recording the end"
    except PermissionError:
        pass
    since = who.get("since")
    if since is not None and _process_start(pid) not in (None, since):
        return f"its process (pid {pid}) is gone (the pid now belongs to another process)"
    return None


def _mark_dead(run_dir: Path, info: dict[str, Any], why: str) -> dict[str, Any]:
    """Record the end of a run whose owner died: steps not finished are ``stopped``; the next reader sees it."""
    last = info.get("started") or time.time()
    events = run_dir / "events.jsonl"
    if events.is_file():
        for line in events.read_text().splitlines():
            try:
                last = max(last, float(json.loads(line).get("time") or 0))
            except (ValueError, AttributeError):
                continue
    for name in info.get("steps", []):
        path = run_dir / "steps" / name / "step.json"
        if not path.is_file():
            write_json(
                path,
                StepResult(
                    name=name, state="stopped", summary=f"stopped: the run ended early ({why})", error=why
                ).to_json(),
            )
    info.update(ended=last, succeeded=False, interrupted=why)
    write_json(run_dir / "run.json", info)
    return info


SAVES_FILE = "saves.json"  # step -> its --save values (core.saves.Save.to_json), written before the run


def record_saves(run_dir: Path, saves: dict[str, list[dict[str, Any]]]) -> None:
    write_json(run_dir / SAVES_FILE, saves)


def _saved(run_dir: Path, run_id: str, steps: dict[str, StepResult]) -> dict[str, list[dict[str, str]]]:
    """What each succeeded step's --save values wrote into this run's S3 (``{execution_id}`` is the run id)."""
    path = run_dir / SAVES_FILE
    if not path.is_file():
        return {}
    found: dict[str, list[dict[str, str]]] = {}
    for step, specs in json.loads(path.read_text()).items():
        if step not in steps or steps[step].state != "succeeded":
            continue  # a reused step's objects were put again from the run it reuses
        for spec in specs:
            uri = str(spec["uri"]).replace("{execution_id}", run_id)
            bucket, key = split_s3_uri(uri)
            local = run_dir / "s3" / bucket / key
            if spec.get("format") == "by type":  # the step picked the format and appended its suffix
                local = next(iter(sorted(local.parent.glob(local.name + ".*"))), local)
                uri = f"s3://{bucket}/{key}{local.name[len(Path(key).name) :]}"
            if local.is_file():
                found.setdefault(step, []).append({"name": spec["name"], "uri": uri, "path": str(local)})
    return found


def load_run(run_dir: str | Path) -> RunResult:
    """Reopen a run from its folder (``runs_dir/<run_id>``). A run whose process died without recording its
    end (SIGKILL, a crash) is marked here, once: its unfinished steps ``stopped``, the run failed."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise SmstepError(Problem(f"{run_dir} is not a local run folder (no run.json)"))
    info = json.loads(info_path.read_text())
    if info.get("ended") is None and (why := _owner_gone(info)) is not None:
        info = _mark_dead(run_dir, info, why)
    definition_path = run_dir / "definition.json"
    definition = json.loads(definition_path.read_text()) if definition_path.is_file() else {}
    steps: dict[str, StepResult] = {}
    for name in info.get("steps", []):
        path = run_dir / "steps" / name / "step.json"
        if path.is_file():
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in StepResult.__dataclass_fields__ and not k.startswith("_")}
            steps[name] = StepResult(**known)
        else:
            steps[name] = StepResult(name=name, state="pending")
        steps[name].run_dir = str(run_dir)
    return RunResult(
        run_id=info["run_id"],
        run_dir=run_dir,
        steps=steps,
        succeeded=bool(info.get("succeeded")),
        definition=definition,
        pipeline_name=info.get("pipeline", ""),
        parameters=info.get("parameters", {}),
        started=info.get("started"),
        ended=info.get("ended"),
        sdk_version=info.get("sdk_version"),
        interrupted=info.get("interrupted"),
        saved=_saved(run_dir, info["run_id"], steps),
        notebook=info.get("notebook"),
    )


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[Path]:
    """Run folders under ``runs_dir``, oldest first (run ids sort by start time)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "run.json").is_file())


def latest_run(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> RunResult | None:
    runs = list_runs(runs_dir)
    return load_run(runs[-1]) if runs else None
