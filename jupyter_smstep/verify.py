"""``smstep verify`` / ``%pipeline verify``: the pipeline computes what the notebook computes, shown.

Two sides, compared per step and per output name (:mod:`jupyter_smstep.core.compare`):

- **the kernel**: from ``smstep verify``, a fresh kernel of the notebook's kernelspec runs
  the notebook top to bottom, as Restart & Run All does, in the notebook's folder; right
  after each ``%%step`` cell, the values of the names the step returns are pickled out of
  the kernel. ``%pipeline`` commands other than ``config``/``param``/``outputs`` do
  nothing there (no run, no submit). From ``%pipeline verify``, the values each step cell
  left when it last ran in this kernel (kept then: ``Cell.after``);
- **the pipeline**: a local run (its cache reuses a run of the same definition whose
  reads all still hold).

Each name is *equal*, *differs* (where, and both values) or *not comparable* (why).
A difference names its likely cause from what the step's process recorded that it read
(:mod:`jupyter_smstep.local.reads`): unseeded randomness or the clock, an environment
variable (the job's environment is not the kernel's: a cell that sets ``os.environ`` runs
only in the kernel), a file; otherwise a change in place the build did not see, with its
fix. Exit status: 0 all equal, 1 a difference (or a failed run), 2 bad input.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping

from jupyter_smstep.core.compare import Verdict, compare
from jupyter_smstep.errors import Problem, SmstepError

#: In the verifying kernel: %pipeline commands that would act (run, submit, schedule...) do nothing.
VERIFY_ENV = "SMSTEP_VERIFYING"


@dataclass
class Finding:
    step: str
    name: str
    verdict: Verdict
    cause: str = ""

    def to_json(self) -> dict[str, str]:
        return {**self.verdict.to_json(), **({"likely_cause": self.cause} if self.cause else {})}


@dataclass
class Verification:
    kernel: str  # where the kernel's values came from
    run_id: str
    run_succeeded: bool
    findings: list[Finding] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    source: str = "local run"  # or "SageMaker execution" (run_id: its id)
    notes: list[str] = field(default_factory=list)  # what the reader should know first (parameters that differ)

    @property
    def counts(self) -> dict[str, int]:
        out = {"equal": 0, "differs": 0, "not comparable": 0}
        for finding in self.findings:
            out[finding.verdict.kind] += 1
        return out

    def by_step(self) -> dict[str, tuple[str, str]]:
        """Each step's one mark, as the panel draws it, with what to say: ``≠ kernel`` when a name differs
        (naming the names and the likely cause), ``? kernel`` when none differs but one cannot be compared,
        ``= kernel`` when every name is equal."""
        found: dict[str, list[Finding]] = {}
        for finding in self.findings:
            found.setdefault(finding.step, []).append(finding)
        marks: dict[str, tuple[str, str]] = {}
        for step, findings in found.items():
            differs = [f for f in findings if f.verdict.kind == "differs"]
            unknown = [f for f in findings if f.verdict.kind == "not comparable"]
            if differs:
                first = differs[0]
                marks[step] = (
                    "≠ kernel",
                    f"{', '.join(f.name for f in differs)} differ(s) from the kernel's: "
                    f"{first.name}: {first.verdict.detail}" + (f"; likely cause: {first.cause}" if first.cause else ""),
                )
            elif unknown:
                marks[step] = (
                    "? kernel",
                    f"{', '.join(f.name for f in unknown)} cannot be compared: {unknown[0].verdict.detail}",
                )
            else:
                marks[step] = (
                    "= kernel",
                    f"{len(findings)} value(s) equal to the kernel's ({', '.join(f.name for f in findings)})",
                )
        return marks

    @property
    def exit_code(self) -> int:
        return 0 if self.run_succeeded and not self.counts["differs"] else 1

    def to_json(self) -> dict[str, Any]:
        steps: dict[str, dict[str, Any]] = {}
        for finding in self.findings:
            steps.setdefault(finding.step, {})[finding.name] = finding.to_json()
        return {
            "kernel": self.kernel,
            "pipeline": self.source,
            "run_id": self.run_id,
            "run_succeeded": self.run_succeeded,
            "failed_steps": self.failed_steps,
            "steps": steps,
            **({"notes": self.notes} if self.notes else {}),
            **self.counts,
        }

    def lines(self) -> list[str]:
        out = [f"kernel: {self.kernel}", f"pipeline: {self.source} {self.run_id}", *self.notes]
        step = None
        for finding in self.findings:
            if finding.step != step:
                step = finding.step
                out.append(f"step {step}")
            mark = {"equal": "=", "differs": "≠", "not comparable": "?"}[finding.verdict.kind]
            text = f"  {mark} {finding.name}"
            if finding.verdict.detail:
                text += f": {finding.verdict.detail}"
            out.append(text)
            if finding.cause:
                out.append(f"      likely cause: {finding.cause}")
        for failed in self.failed_steps:
            where = "the run's log" if self.source == "local run" else "the execution in the console"
            out.append(f"step {failed}: failed in the pipeline (see {where})")
        counts = self.counts
        out.append(
            f"{counts['equal']} equal, {counts['differs']} differ, {counts['not comparable']} not comparable"
            + ("" if self.run_succeeded else f"; the pipeline's {self.source} failed")
        )
        return out


# ------------------------------------------------------------------------------------------- the kernel
def kernel_values(
    path: Path, workspace: Any, parameters: Mapping[str, Any] | None = None, timeout: float = 600
) -> dict[str, dict[str, Any]]:
    """step -> name -> the value right after its cell ran, in a fresh kernel running ``path`` top to bottom
    (a value that could not be pickled out of the kernel: an :class:`Unavailable`)."""
    import json

    from jupyter_client.kernelspec import NoSuchKernel
    from jupyter_client.manager import start_new_kernel

    notebook = json.loads(path.read_text(encoding="utf-8"))
    kernel_name = (notebook.get("metadata", {}).get("kernelspec", {}) or {}).get("name") or "python3"
    by_id = {node.cell.cell_id: node for node in workspace.graph().steps}
    env = {**os.environ, VERIFY_ENV: "1"}
    try:
        manager, client = start_new_kernel(
            kernel_name=kernel_name,
            cwd=str(path.parent.resolve()),
            env=env,
            startup_timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except NoSuchKernel:
        raise SmstepError(
            f"the notebook's kernel {kernel_name!r} is not installed here",
            fix="install it (python -m ipykernel install --user --name NAME), or change the notebook's kernel",
        ) from None
    found: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="smstep-verify-") as folder:
            for index, cell in enumerate(notebook.get("cells", []), start=1):
                if cell.get("cell_type") != "code":
                    continue
                source = cell.get("source", "")
                source = "".join(source) if isinstance(source, list) else str(source)
                if not source.strip():
                    continue
                _execute(client, source, index, timeout)
                tags = cell.get("metadata", {}).get("tags", [])
                if parameters and ("parameters" in tags or "%pipeline param" in source):
                    _execute(client, "\n".join(f"{k} = {v!r}" for k, v in parameters.items()), index, timeout)
                cell_id = cell.get("id") or f"index-{index}"
                node = by_id.get(cell_id) or by_id.get(f"index-{index}") or by_id.get(f"{cell_id}#{index}")
                if node is not None:
                    found[node.name] = _pull(client, node.outputs, Path(folder) / f"{index}.pkl", index, timeout)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return found


@dataclass(frozen=True)
class Unavailable:
    why: str


def _execute(client: Any, source: str, index: int, timeout: float) -> None:
    try:
        reply = client.execute_interactive(
            source, store_history=True, timeout=timeout, allow_stdin=False, output_hook=lambda message: None
        )
    except TimeoutError:
        raise SmstepError(
            f"cell #{index} ran longer than {timeout:g} s in the verifying kernel",
            fix="pass a larger --timeout, or make the cell faster",
        ) from None
    content = reply.get("content", {})
    if content.get("status") == "error":
        raise SmstepError(
            f"cell #{index} failed in a fresh kernel running the notebook top to bottom: "
            f"{content.get('ename')}: {content.get('evalue')}",
            fix="fix the cell so that Restart & Run All runs the notebook through",
        )


_PULL = """
def _smstep_pull(names, path):
    import pickle
    try:
        import cloudpickle as dumper
    except ImportError:
        dumper = pickle
    values = {}
    for name in names:
        if name not in globals():
            values[name] = None
            continue
        try:
            values[name] = dumper.dumps(globals()[name])
        except Exception as exc:
            values[name] = f"{type(exc).__name__}: {exc}"
    with open(path, "wb") as out:
        pickle.dump(values, out)
_smstep_pull(%r, %r)
del _smstep_pull
"""


def _pull(client: Any, names: list[str], path: Path, index: int, timeout: float) -> dict[str, Any]:
    _execute(client, _PULL % (list(names), str(path)), index, timeout)
    import cloudpickle

    with open(path, "rb") as handle:
        raw = pickle.load(handle)  # noqa: S301 - written just now by the kernel this process started
    values: dict[str, Any] = {}
    for name, data in raw.items():
        if data is None:
            values[name] = Unavailable(
                "the kernel has no such value after the cell (a --defer step does not run in the kernel)"
            )
        elif isinstance(data, str):
            values[name] = Unavailable(f"it cannot be pickled out of the kernel ({data})")
        else:
            values[name] = cloudpickle.loads(data)
    return values


# ------------------------------------------------------------------------------------------- comparing
def compare_run(
    kernel: Mapping[str, Mapping[str, Any]], result: Any, graph: Any, rtol: float, atol: float, kernel_label: str
) -> Verification:
    """The kernel's values against a local run's."""
    verification = Verification(kernel_label, result.run_id, bool(result.succeeded))
    differing: set[str] = set()  # steps with a difference: what their readers get already differs
    for node in graph.steps:
        step = result.steps.get(node.name)
        if step is None or step.state != "succeeded":
            if step is not None and step.state == "failed":
                verification.failed_steps.append(node.name)
            continue
        outputs = result.outputs(node.name)
        values = kernel.get(node.name) or _iteration_values(kernel, node)
        for name in node.outputs:
            mine = (
                values.get(name, Unavailable("not recorded"))
                if values is not None
                else Unavailable("the step's cell has not run in the kernel")
            )
            if isinstance(mine, Unavailable):
                finding = Finding(node.name, name, Verdict("not comparable", mine.why))
            elif name not in outputs:
                finding = Finding(node.name, name, Verdict("not comparable", "the pipeline's step did not return it"))
            else:
                verdict = compare(mine, outputs[name], rtol, atol)
                finding = Finding(node.name, name, verdict)
                if verdict.kind == "differs":
                    upstream = sorted(
                        {
                            f"{i.name!r} from step '{i.step}'"
                            for i in node.inputs.values()
                            if i.kind == "step" and i.step in differing
                        }
                    )
                    finding.cause = (
                        f"it reads {', '.join(upstream)}, which already differs there"
                        if upstream
                        else likely_cause(name, node, step.reads)
                    )
            verification.findings.append(finding)
        if any(f.step == node.name and f.verdict.kind == "differs" for f in verification.findings):
            differing.add(node.name)
    return verification


def _iteration_values(kernel: Mapping[str, Mapping[str, Any]], node: Any) -> dict[str, Any] | None:
    """One ``--foreach`` iteration's values in the kernel: item ``index`` of each list the cell left (with
    ``--select`` the kernel keeps only the chosen iteration's values, which the gather step compares)."""
    fan = node.fanout
    if fan is None or fan.index is None or fan.step not in kernel:
        return None
    if fan.select is not None:
        why = f"--select keeps only the chosen iteration in the kernel (step '{fan.step}' compares it)"
        return {name: Unavailable(why) for name in node.outputs}
    lists = kernel[fan.step]
    return {
        name: lists[name][fan.index]
        if isinstance(lists.get(name), list) and len(lists[name]) > fan.index
        else Unavailable("the kernel's list has no such item")
        for name in node.outputs
    }


def likely_cause(name: str, node: Any, reads: Mapping[str, Any]) -> str:
    """What most likely made the step's ``name`` differ, from what the step recorded that it read."""
    unpinned = [r for r in reads.get("unpinned", []) if "random" in r or "clock" in r]
    if unpinned:
        seeds = [
            seed
            for key, seed in (
                ("(random.", "random.seed(0)"),
                ("numpy.random.default_rng", "default_rng(0)"),
                ("(numpy.random.", "np.random.seed(0)"),
                ("(random's global", "random.seed(0)"),
                ("(numpy's global", "random_state=0 on the library's call, or np.random.seed(0)"),
            )
            if any(key in r for r in unpinned)
        ]
        fix = f"seed it inside the step ({' / '.join(seeds)})" if seeds else "pass the time in as a parameter"
        return (
            f"the step read {', '.join(unpinned)}: the job got other values than the kernel did (fix: {fix}, "
            "and run the cells again)"
        )
    if reads.get("env"):
        names = ", ".join(reads["env"])
        return (
            f"the step read the environment variable(s) {names} when it ran: the job has the environment it "
            "starts with, not the kernel's (a cell that sets os.environ runs only in the kernel; fix: "
            "--env NAME=VALUE on the step, or a parameter)"
        )
    if reads.get("files") or reads.get("folders"):
        return (
            f"the step read {', '.join([*reads.get('files', []), *reads.get('folders', [])][:3])} when it ran: "
            "the job read them as they are now, the kernel as they were"
        )
    return (
        f"a change the build did not see: a cell changed {name!r} (or a value it is made from) in place "
        f"without its code showing it (fix: %%step --outputs on the step that changes it, or a cell "
        f"`%pipeline outputs {name}`)"
    )


def verify_notebook(
    path: Path,
    workspace: Any,
    parameters: Mapping[str, Any],
    rtol: float,
    atol: float,
    runs_dir: str | None = None,
    timeout: float = 600,
    on_event: Callable | None = None,
) -> Verification:
    """``smstep verify``: a fresh kernel top to bottom against a local run."""
    kernel = kernel_values(path, workspace, parameters, timeout)
    result = workspace.run_local(parameters, on_event=on_event, runs_dir=runs_dir)
    return compare_run(
        kernel, result, workspace.graph(), rtol, atol, f"a fresh kernel running {path.name} top to bottom"
    )


def values_in_kernel(graph: Any) -> dict[str, dict[str, Any]]:
    """The values each step cell left in this kernel, by step. A ``--foreach`` cell's are its gather's (the lists,
    or the selected values): each iteration is compared with its item of them (:func:`_iteration_values`)."""
    return {
        node.name: dict(node.cell.after)
        for node in graph.steps
        if node.cell.after is not None and (node.fanout is None or node.fanout.index is None)
    }


def verify_live(
    workspace: Any,
    parameters: Mapping[str, Any],
    rtol: float,
    atol: float,
    runs_dir: str | None = None,
    on_event: Callable | None = None,
    stop: Any = None,
) -> Verification:
    """``%pipeline verify``: the values each step cell left in this kernel against a local run."""
    graph = workspace.graph()
    kernel = values_in_kernel(graph)
    if not kernel:
        raise SmstepError(
            "no step cell has run in this kernel yet (a --defer step does not)",
            fix="run the notebook's cells (Run All), then %pipeline verify",
        )
    result = workspace.run_local(parameters, on_event=on_event, runs_dir=runs_dir, stop=stop)
    done = compare_run(kernel, result, graph, rtol, atol, "this kernel, as each step cell left its values")
    workspace.last_verification = done  # the panel marks each step with it
    return done


def bad_tolerance(rtol: float, atol: float) -> Problem | None:
    if not (rtol >= 0 and atol >= 0) or rtol != rtol or atol != atol:
        return Problem(
            f"--rtol {rtol} --atol {atol}: tolerances are numbers of at least 0",
            fix="e.g. --rtol 1e-9 --atol 0 (the default)",
        )
    return None


# ------------------------------------------------------------------------------------------- a SageMaker execution
@dataclass
class _RemoteStep:
    state: str
    reads: dict


@dataclass
class _ExecutionSide:
    """A SageMaker execution's outputs, as :func:`compare_run` reads a local run: step states, outputs, and
    what the step read when it last ran locally (the likely cause of a difference; the service records none)."""

    run_id: str
    succeeded: bool
    steps: dict[str, _RemoteStep]
    values: dict[str, dict[str, Any]]

    def outputs(self, step: str) -> dict[str, Any]:
        return self.values.get(step, {})


def verify_execution(
    workspace: Any,
    execution: str,
    rtol: float,
    atol: float,
    path: Path | None = None,
    timeout: float = 600,
    changed_ok: bool = False,
) -> Verification:
    """``verify --execution``: the kernel's values (a fresh kernel running ``path`` with the execution's
    parameter values, or this kernel's) against what the SageMaker execution's steps returned."""
    pulled = workspace.pull_execution(execution, changed_ok=changed_ok)
    remote = pulled.execution
    graph = workspace.graph()
    ran_with = {k: v for k, v in remote.parameters.items() if k in graph.parameters}
    if path is not None:
        kernel = kernel_values(path, workspace, ran_with, timeout)
        label = f"a fresh kernel running {path.name} top to bottom with the execution's parameters"
    else:
        kernel = values_in_kernel(graph)
        label = "this kernel, as each step cell left its values"
    local = workspace.last_run or workspace.latest_run(graph.name)
    states = {"Succeeded": "succeeded", "Failed": "failed"}
    side = _ExecutionSide(
        remote.id,
        remote.status == "Succeeded",
        {
            name: _RemoteStep(
                states.get(step.status, step.status.lower()),
                dict(local.steps[name].reads) if local is not None and name in local.steps else {},
            )
            for name, step in remote.steps.items()
        },
        pulled.values,
    )
    verification = compare_run(kernel, side, graph, rtol, atol, label)
    verification.source, verification.notes = "SageMaker execution", list(pulled.notes)
    return verification
