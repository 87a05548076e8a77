"""A notebook's pipeline, ready to show, build, export, run or submit.

:class:`Workspace` joins the registry (the recorded cells) with the namespace
the captured values live in (the kernel's, or the one the ``smstep`` command
filled by running the ordinary cells). Magics, CLI and panel all go through it,
so they agree on every result.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, MutableMapping

from jupyter_smstep.core import studio
from jupyter_smstep.core.parameters import coerce_overrides
from jupyter_smstep.core.graph import build_graph
from jupyter_smstep.core.lints import check_parameter_settings
from jupyter_smstep.kernel_checks import KernelChecks
from jupyter_smstep.core.model import PipelineGraph, check_buildable
from jupyter_smstep.core.keys import changes, pipeline_key
from jupyter_smstep.core.registry import Registry
from jupyter_smstep.errors import Problem, RunFailed, SmstepError, did_you_mean
from jupyter_smstep.sdk import compat, rules
from jupyter_smstep.sdk.capture import Captures
from jupyter_smstep.core import sdk_config


#: The step name a %%remote cell runs as.
REMOTE_STEP = "remote"


@dataclass(frozen=True)
class RemoteRun:
    """What ``%%remote`` did: its job, where, how long, the variables it put back."""

    job_name: str
    instance_type: str
    local: bool
    seconds: float
    names: list[str]

    def line(self) -> str:
        where = "locally (the local runner)" if self.local else f"on {self.instance_type}"
        back = ", ".join(self.names) or "nothing"
        return f"%%remote: job {self.job_name} ran {where} in {self.seconds:.1f} s; back in the kernel: {back}"


def _with_cell_lines(error: BaseException, source: str) -> BaseException:
    """The cell's exception, with a note naming the cell's lines it passed through (its traceback's frames
    are the job's: cloudpickle calls the cell's code ``<dynamic-code>``, with the cell's line numbers)."""
    lines = source.splitlines()
    tb = error.__traceback__
    seen: list[str] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in ("<dynamic-code>", f"<%%step {REMOTE_STEP}>") and code.co_name == REMOTE_STEP:
            number = tb.tb_lineno  # line 1 is the %%remote line
            if 2 <= number <= len(lines) + 1:
                seen.append(f"  %%remote cell, line {number}: {lines[number - 2].strip()}")
        tb = tb.tb_next
    if seen and hasattr(error, "add_note"):
        error.add_note("\n".join(seen))
    return error


class Workspace:
    """One notebook's pipeline: the registry of its cells and the namespace its values live in."""

    def __init__(
        self,
        registry: Registry,
        namespace: MutableMapping[str, Any],
        origin: str = "a notebook",
        default_name: str | None = None,
        root: Path | None = None,
    ) -> None:
        self.registry = registry
        self.namespace = namespace
        self.origin = origin
        self.default_name = default_name
        # The notebook's folder: a kernel starts there, so relative paths in options start there too.
        self.root = (root or Path.cwd()).resolve()
        self.captures = Captures()  # pickled sizes of captured values, measured once per value
        self.last_run: Any = None  # local.RunResult of the latest %pipeline run
        self.last_verification: Any = None  # verify.Verification of the latest %pipeline verify
        #: environment variables the kernel's cells set or removed: name -> its value before (None: unset).
        #: A SageMaker job never has a cell's change, so a local run's steps do not get it either.
        self.cells_env: dict[str, str | None] = {}
        self.last_execution: Any = None  # remote.submit.Submission of the latest submit
        #: a kernel's (False: a saved notebook built headless, whose later cells ran after every step)
        self.live = True
        self.kernel_checks = KernelChecks(self)  # what the graph cannot check without the kernel's values

    # ---------------------------------------------------------------- analysis
    def graph(self, keys: bool = False, registry: Registry | None = None) -> PipelineGraph:
        """The graph with every check that needs no upload: settings, names, captured values.

        With ``keys``, each step's content key too (every captured value is pickled and hashed);
        ``registry``: other cells than the notebook's (``%%remote`` builds its one cell so)."""
        image = studio.kernel_image()
        graph = build_graph(
            registry or self.registry,
            self.namespace,
            config=sdk_config.load_sdk_config(),
            kernel_image=image.uri,
            kernel_image_note=image.note,
            in_studio=studio.in_studio(),
            default_name=self.default_name,
            root=self.root,
        )
        graph.report.problems.extend(self.captures.problems(graph, self.namespace))
        graph.report.problems.extend(rules.graph_problems(graph))  # what SageMaker would refuse, by its model
        self.kernel_checks.check(graph)
        if graph.mlflow and compat.installed_major() < 3:
            graph.report.error(
                "%pipeline config --mlflow-arn: SageMaker Pipelines' MLflow settings are in SDK v3 "
                f"(installed: {compat.installed_version()})",
                fix="pip install 'sagemaker>=3.27' (or drop --mlflow-arn)",
            )
        if keys and not graph.report.errors:
            from jupyter_smstep.sdk import content_keys

            graph.keys = content_keys.step_keys(graph, self.namespace, self.root)
            graph.changes = {
                label: {name: changes(parts.get(name), key) for name, key in graph.keys.items()}
                for label, parts in self.baselines(graph.name).items()
            }
            run = self.latest_run(graph.name)
            if run is not None:  # what each step read when it last ran (the cache checks these)
                graph.reads = {n: dict(s.reads, run=run.run_id) for n, s in run.steps.items() if s.reads}
        return graph

    def baselines(self, pipeline: str) -> dict[str, dict[str, dict[str, str]]]:
        """What the steps were made of in the last local run and the last submitted execution:
        label -> step -> its key's parts."""
        found: dict[str, dict[str, dict[str, str]]] = {}
        run = self.latest_run(pipeline)
        if run is not None:
            found[f"local run {run.run_id}"] = {n: s.key_parts for n, s in run.steps.items() if s.key_parts}
        execution = self.last_execution
        if execution is not None and getattr(execution, "keys", None):
            found[f"execution {execution.execution_arn.rsplit('/', 1)[-1]}"] = execution.keys
        return found

    # ---------------------------------------------------------------- build
    def _buildable_graph(self, for_the_service: bool = True) -> PipelineGraph:
        graph = self.graph()
        check_buildable(graph, for_the_service)
        return graph

    def definition(self, session: Any = None) -> dict[str, Any]:
        """The definition JSON (uploads the step code to the session's S3)."""
        from jupyter_smstep import sdk
        from jupyter_smstep.sdk import build

        graph = self._buildable_graph()
        if session is None:
            session = sdk.make_session()
        compiled = build.build_pipeline(graph, self.namespace, session, self.captures, self.root)
        compiled.checked()  # SageMaker's rules, before anything is uploaded
        return json.loads(build.definition(compiled))

    def export(self, path: str | Path | None = None) -> str:
        from jupyter_smstep import export
        from jupyter_smstep.sdk.requirements import requirements_name

        graph = self._buildable_graph()
        text = export.module_source(self.registry, graph, origin=self.origin)
        if path is not None:
            Path(path).write_text(text)
            for name, pins in graph.dependencies.items():  # --dependencies auto: the pins beside the module
                Path(path).with_name(requirements_name(name)).write_text("".join(f"{p}\n" for p in pins))
        return text

    # ---------------------------------------------------------------- run
    def run_local(
        self,
        parameters: Mapping[str, Any] | None = None,
        on_event: Callable | None = None,
        runs_dir: str | Path | None = None,
        cache: bool = True,
        from_step: str | None = None,
        stop: Any = None,
        upstream: str | None = None,
        changed_ok: bool = False,
    ) -> Any:
        """Run the pipeline locally; a step whose key matches an earlier run's reuses its results unless
        ``cache`` is False, and ``from_step`` and its dependents always run. Setting ``stop`` (a
        ``threading.Event``) stops the run. With ``upstream`` (a SageMaker execution: ARN or ``latest``), every
        other step takes its results from that execution, and the run has its parameter values (``parameters``
        still win); a step the notebook now builds differently is refused unless ``changed_ok``."""
        graph = self._buildable_graph(for_the_service=False)  # a local run uses no image
        if from_step is not None and from_step not in {s.name for s in graph.steps}:
            raise SmstepError(
                f"--from {from_step!r} names no step of the pipeline",
                fix=did_you_mean(from_step, [s.name for s in graph.steps], "the steps"),
            )
        if upstream is None:
            if changed_ok:
                raise SmstepError("--changed-ok applies to --upstream only", fix="add --upstream ARN (or latest)")
            self.last_run = self._run_graph(graph, parameters, on_event, runs_dir, cache, from_step, stop)
            return self.last_run
        if from_step is None:
            raise SmstepError(
                "--upstream needs --from STEP: the step (and those after it) to run locally on the execution's results",
                fix="add --from STEP",
            )
        with tempfile.TemporaryDirectory(prefix="smstep-upstream-") as folder:
            taken, ran_with = self._upstream(graph, upstream, from_step, changed_ok, Path(folder))
            self.last_run = self._run_graph(
                graph, {**ran_with, **(parameters or {})}, on_event, runs_dir, cache, from_step, stop, taken=taken
            )
        return self.last_run

    def _upstream(
        self, graph: PipelineGraph, upstream: str, from_step: str, changed_ok: bool, folder: Path
    ) -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
        """The results ``run --from STEP --upstream`` takes from the execution (step -> (their folder, where
        they came from)), and the parameter values the execution ran with."""
        from jupyter_smstep.core.model import upstream_of, with_dependents
        from jupyter_smstep.remote import executions
        from jupyter_smstep.sdk import content_keys

        remote, session, root = self.execution(upstream, graph=graph)
        depends = {n.name: n.depends_on for n in graph.steps}
        runs = with_dependents(depends, [from_step])
        needed = upstream_of(depends, runs)  # every step the run's steps read from, directly or not
        missing = sorted(
            n for n in needed if n in depends and (remote.steps.get(n) is None or remote.steps[n].status != "Succeeded")
        )
        if missing:
            raise SmstepError(
                [
                    Problem(
                        f"{remote.label(n)} "
                        + (f"is {remote.steps[n].status}" if n in remote.steps else "did not run")
                        + f": --from {from_step} needs its results",
                        fix=f"pass an execution in which it succeeded, or run from it (--from {n})",
                    )
                    for n in missing
                ]
            )
        take = [
            n.name
            for n in graph.steps
            if n.name not in runs
            and n.name in remote.steps
            and remote.steps[n.name].status == "Succeeded"
            and remote.steps[n.name].job_name
        ]
        why = (
            {}
            if changed_ok
            else executions.changed(remote, content_keys.step_keys(graph, self.namespace, self.root), take)
        )
        executions.refuse_changed(remote, {n: w for n, w in why.items() if n in needed}, "--changed-ok")
        take = [n for n in take if n not in why]  # a changed step the run does not need runs here, as it is now
        taken = {
            name: (executions.download(session, remote, name, root, folder / name), remote.label(name)) for name in take
        }
        ran_with = {k: v for k, v in remote.parameters.items() if k in graph.parameters}
        return taken, ran_with

    def _run_graph(
        self,
        graph: PipelineGraph,
        parameters: Mapping[str, Any] | None,
        on_event: Callable | None,
        runs_dir: str | Path | None,
        cache: bool,
        from_step: str | None,
        stop: Any = None,
        taken: Mapping[str, tuple[Path, str]] | None = None,
    ) -> Any:
        from jupyter_smstep import local
        from jupyter_smstep.sdk import build, content_keys

        values = run_values(graph, parameters)
        functions = build.step_functions(graph, self.namespace, self.captures)  # built once, for the runner too
        # a fresh run identity: a step that reads jupyter_smstep.execution is never reused
        keys = content_keys.step_keys(graph, self.namespace, self.root, values, run=secrets.token_hex(8))
        anyway = frozenset(
            n.name for n in graph.steps if n.settings.get("reuse") is not None and n.settings["reuse"].value == "always"
        )
        runs_dir = runs_dir or self.runs_folder  # beside the notebook, wherever the command was started
        host_env = self.host_environment()
        step_cache = (
            local.StepCache(Path(runs_dir).absolute(), root=self.root, reuse_anyway=anyway, environ=host_env)
            if cache
            else None
        )
        reused = self._cached_steps(graph, keys, step_cache, from_step) if step_cache else frozenset()
        reused |= frozenset(taken or ())  # taken from elsewhere: nothing of theirs is uploaded either

        def assemble(session: Any) -> Any:
            return build.build_pipeline(
                graph,
                self.namespace,
                session,
                root=self.root,
                functions=functions,
                keys=keys,
                reused=reused,
                local=True,
            )

        kwargs: dict[str, Any] = {
            "parameters": values,
            "on_event": on_event,
            "functions": functions,
            "keys": dict(keys),
            "cache": step_cache or False,
            "force": [from_step] if from_step else [],
            "root": self.root,
            "stop": stop,
            "notebook": self.notebook,
            "taken": dict(taken or {}),
            "host_env": host_env,
            "pipeline_key": pipeline_key(graph, keys, sdk_config.load_sdk_config(), compat.installed_version() or ""),
        }
        if runs_dir is not None:
            kwargs["runs_dir"] = runs_dir
        saves = {n.name: [s.to_json() for s in n.saves] for n in graph.steps if n.saves}
        if saves:  # the buckets they write to exist in the run's S3, and the run lists what they wrote
            kwargs["buckets"] = sorted({s.uri[len("s3://") :].split("/", 1)[0] for n in graph.steps for s in n.saves})
            kwargs["saves"] = saves
        return local.run_pipeline(assemble, **kwargs)

    def host_environment(self) -> dict[str, str]:
        """The environment a local run's steps inherit: this process's, without what the cells set."""
        env = dict(os.environ)
        for name, before in self.cells_env.items():
            if before is None:
                env.pop(name, None)
            else:
                env[name] = before
        return env

    # ---------------------------------------------------------------- %%remote
    def remote_cell(
        self,
        source: str,
        options: Mapping[str, Any],
        *,
        local: bool = False,
        on_event: Callable | None = None,
        runs_dir: str | Path | None = None,
        session: Any = None,
    ) -> Any:
        """Run one cell as a SageMaker training job (the SDK's remote function), or with ``local`` through the
        local runner, and put the variables it assigns back into the namespace. Its settings resolve as a
        step's (cell > %pipeline config > config.yaml > kernel image > default); what it reads comes from
        the kernel. Raises the cell's own exception when it fails."""
        from jupyter_smstep.core.registry import StepSpec

        base = self.registry.name or self.default_name or "notebook"
        registry = Registry(name=f"{base}-remote"[:256], defaults=dict(self.registry.defaults))
        registry.record_step(StepSpec(name=REMOTE_STEP, options=dict(options), header="%%remote"), source)
        graph = self.graph(registry=registry)
        check_buildable(graph, for_the_service=not local)
        started = time.time()
        if local:
            run = self._run_graph(graph, {}, on_event, runs_dir, cache=False, from_step=None)
            step = run.steps[REMOTE_STEP]
            if not run.succeeded:
                error = run.exception(REMOTE_STEP)
                if error is not None:
                    raise _with_cell_lines(error, source)
                raise RunFailed(step.summary or "the cell failed", fix=f"see {step.log_path}")
            values = run.outputs(REMOTE_STEP)
            job = step.job_name or run.run_id
        else:
            from jupyter_smstep.sdk import remote

            try:
                values, job = remote.run(graph, self.namespace, session=session, root=self.root)
            except (KeyboardInterrupt, SmstepError):
                raise
            except Exception as error:  # noqa: BLE001 - the cell's own exception, as the job pickled it
                raise _with_cell_lines(error, source) from None
        self.namespace.update(values)
        itype = graph.steps[0].settings.get("instance_type")
        return RemoteRun(job, str(itype.value) if itype else "?", local, time.time() - started, sorted(values))

    @property
    def notebook(self) -> str | None:
        """The notebook file's name (``__session__``, as Jupyter and ``smstep`` set it), when known: a run records it,
        and cost and the baselines use only this notebook's runs, not another's with the same pipeline name."""
        path = self.namespace.get("__session__") or self.namespace.get("__vsc_ipynb_file__")
        return Path(str(path)).name if path else None

    @property
    def runs_folder(self) -> Path:
        """Where local runs go by default: `.smstep/runs` beside the notebook (for the kernel and smstep alike)."""
        from jupyter_smstep.local.results import DEFAULT_RUNS_DIR

        return self.root / DEFAULT_RUNS_DIR

    def latest_run(self, pipeline: str) -> Any:
        """The last local run of ``pipeline``: this session's, else the newest in the notebook's runs folder."""
        if self.last_run is not None and self.last_run.pipeline_name == pipeline:
            return self.last_run
        from jupyter_smstep.local.results import DEFAULT_RUNS_DIR, list_runs, load_run

        # where runs go by default (below the working directory) and beside the notebook
        folders = {Path(DEFAULT_RUNS_DIR).absolute(), self.root / DEFAULT_RUNS_DIR}
        runs = sorted((run for folder in folders for run in list_runs(folder)[-20:]), key=lambda p: p.name)
        for folder in reversed(runs):
            try:
                candidate = load_run(folder)
            except (SmstepError, OSError, ValueError):
                continue  # a damaged run folder is no baseline
            if candidate.pipeline_name == pipeline and (
                candidate.notebook is None or self.notebook is None or candidate.notebook == self.notebook
            ):
                return candidate
        return None

    def schedule(
        self,
        name: str,
        expression: Any,
        *,
        role: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        enabled: bool = True,
        session: Any = None,
    ) -> Any:
        """Create or update schedule ``name`` (a ``core.schedules.Expression``), upserting the pipeline first
        when its definition changed."""
        from jupyter_smstep.remote import eventbridge

        graph = self._buildable_graph()
        values = run_values(graph, parameters)
        return eventbridge.put(
            graph,
            self.namespace,
            name,
            expression,
            role=role,
            parameters=values,
            start=start,
            end=end,
            enabled=enabled,
            session=session,
            root=self.root,
        )

    def schedules(self, session: Any = None) -> list[Any]:
        from jupyter_smstep.remote import eventbridge

        return eventbridge.listing(self.graph().name, session)

    def unschedule(self, name: str, session: Any = None) -> None:
        from jupyter_smstep.remote import eventbridge

        eventbridge.remove(self.graph().name, name, session)

    def estimate(self, prices_file: str | None = None, region: str | None = None, run: Any = None) -> Any:
        """The cost of the pipeline from its last local run's measurements (core.cost.Estimate);
        ``run``: that run, when the caller already has it."""
        from jupyter_smstep.core import cost

        name = run.pipeline_name if run is not None else self._buildable_graph().name
        run = run or self.latest_run(name)
        if run is None or not any(s.resources for s in run.steps.values()):
            raise SmstepError(
                f"no local run of {name!r} with measurements to estimate from",
                fix="run it locally first (%pipeline run, smstep run NB)",
            )
        measured = run.measurements()
        if region is None:
            from jupyter_smstep.sdk.compat import aws_region

            region = aws_region()
        if prices_file:
            return cost.estimate(measured, cost.parse_prices_file(prices_file, region))
        if not region:
            return cost.estimate(
                measured, None, "no AWS region is set (AWS_REGION, AWS_DEFAULT_REGION or the AWS config)"
            )
        from jupyter_smstep.remote import pricing

        prices, why = pricing.fetch(region, {m["instance_type"] for m in measured.values()})
        return cost.estimate(measured, prices, why)

    def suggestions(self, run: Any = None) -> tuple[dict[str, Any], str]:
        """Instance suggestions for the last measured local run (or ``run``), with specs from EC2 when AWS
        answers (else the shipped table, and why): (step -> Suggestion, note)."""
        from jupyter_smstep.remote.instance_specs import describe

        run = run or self.latest_run(self._buildable_graph().name)
        if run is None:
            return {}, ""
        specs, note = describe(run.instance_types().values())
        return run.suggestions(specs), note

    @staticmethod
    def _cached_steps(
        graph: PipelineGraph, keys: Mapping[str, Any], cache: Any, from_step: str | None
    ) -> frozenset[str]:
        """The steps a run will take from ``cache`` (verified now, once): their payloads need no upload."""
        from jupyter_smstep.core.model import with_dependents
        from jupyter_smstep.local.cache import reusable

        forced = with_dependents({n.name: n.depends_on for n in graph.steps}, [from_step] if from_step else [])
        taken = reusable(
            cache,
            {n.name: keys[n.name].key for n in graph.steps if n.name in keys},
            {n.name: n.depends_on for n in graph.steps},
            {n.name: [s.to_json() for s in n.saves] for n in graph.steps if n.saves},
        )
        return frozenset(taken - forced)

    def submit(
        self,
        parameters: Mapping[str, Any] | None = None,
        session: Any = None,
        changed: bool = False,
        force: bool = False,
    ) -> Any:
        """Upsert and start; with ``changed``, only the steps changed since the last succeeded execution."""
        from jupyter_smstep.remote import submit as remote

        graph = self._buildable_graph()
        values = run_values(graph, parameters)
        submission = remote.submit(
            graph, self.namespace, values, session=session, root=self.root, changed=changed, force=force
        )
        if submission.started:
            self.last_execution = submission
        return submission

    # ---------------------------------------------------------------- back from SageMaker
    def execution(
        self, execution: str, session: Any = None, graph: PipelineGraph | None = None
    ) -> tuple[Any, Any, str]:
        """A SageMaker execution of this notebook's pipeline (an ARN, or ``latest``): (the execution, the
        session, the pipeline's own S3 root, the only place its results are read from). ``graph``: the
        notebook's graph, when the caller has built it already."""
        from jupyter_smstep import sdk
        from jupyter_smstep.remote import executions

        name = (graph or self.graph()).name
        session = session or sdk.make_session()
        return executions.find(session.sagemaker_client, name, execution), session, executions.own_root(session, name)

    def pull_execution(
        self, execution: str, steps: list[str] | None = None, changed_ok: bool = False, session: Any = None
    ) -> Any:
        """The outputs of an execution's steps (default: every step it has), each checked to be what the
        notebook builds now (unless ``changed_ok``), as a ``remote.executions.Pulled``; the caller puts them in
        the kernel."""
        from jupyter_smstep.remote import executions
        from jupyter_smstep.sdk import content_keys

        graph = self._buildable_graph()
        remote, session, root = self.execution(execution, session, graph)
        names = [n.name for n in graph.steps]
        for name in steps or []:
            if name not in names:
                raise SmstepError(f"the pipeline has no step {name!r}", fix=did_you_mean(name, names, "the steps"))
        wanted = list(steps) if steps else [n for n in names if n in remote.steps]
        pulled = executions.Pulled(remote, notes=executions.parameter_notes(remote, graph.parameters))
        ready = []
        for name in wanted:
            step = remote.steps.get(name)
            if step is None or step.status != "Succeeded":
                pulled.notes.append(
                    f"{remote.label(name)} " + (f"is {step.status}" if step else "did not run") + ": nothing to pull"
                )
            elif not step.job_name:
                continue  # a condition or a fail step has no outputs
            else:
                ready.append(name)
        if not changed_ok:
            executions.refuse_changed(
                remote,
                executions.changed(remote, content_keys.step_keys(graph, self.namespace, self.root), ready),
                "--changed-ok",
            )
        for name in ready:
            pulled.values[name] = executions.load(session, remote, name, root)
        return pulled

    def history(self, limit: int = 5, session: Any = None) -> tuple[list[Any], dict[str, float]]:
        """The pipeline's ``limit`` newest SageMaker executions (``remote.history``), and each step's billable
        seconds as the last local run estimates them (measured time plus start-up, per instance)."""
        from jupyter_smstep import sdk
        from jupyter_smstep.core.cost import STARTUP_BILLABLE_S
        from jupyter_smstep.remote import history

        name = self.graph().name
        session = session or sdk.make_session()
        rows = history.history(session.sagemaker_client, name, limit)
        run = self.latest_run(name)
        estimates = {
            step: (float(m["wall_s"]) + STARTUP_BILLABLE_S) * int(m.get("instance_count") or 1)
            for step, m in (run.measurements() if run is not None else {}).items()
            if m.get("wall_s") is not None
        }
        return rows, estimates


def run_values(graph: PipelineGraph, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's ``-p`` values, coerced to their parameters' types and checked before anything runs or is uploaded:
    the settings bound to them (by the notebook's rules and the service's) and the request that carries them. The
    one path for a local run, a submit and a schedule."""
    values = coerce_overrides(graph.parameters, parameters or {})
    check_parameter_settings(graph, values)
    errors = rules.graph_problems(graph, values) if values else []
    if errors:
        raise SmstepError(errors)
    return values


def pipeline_name_from_path(path: str | None) -> str | None:
    if not path:
        return None
    stem = Path(path).stem
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", stem).strip("-")
    return cleaned[:256] or None
