"""Test doubles behind real HTTP endpoints: moto in server mode and a fake SageMaker.

moto 5.2 lacks ``ListPipelineExecutionSteps``, ``StopPipelineExecution`` and
``RetryPipelineExecution``, so :class:`FakeSageMaker` serves those (and
``DescribePipelineExecution``) from a small simulation, on 127.0.0.1, and
forwards every other request (S3, CloudWatch Logs, the rest of SageMaker) to a
moto server. The product code is pointed at it with ``AWS_ENDPOINT_URL`` and
talks to it through boto3 exactly as to the real service.

The simulation is a discrete-event model of an execution: each step starts
when its dependencies succeeded, runs ``duration`` clock units, and fails if
told to (first attempt only); a failure stops new starts, Stop turns running
steps Stopping then Stopped, Retry re-runs failed and stopped steps. The clock
is either wall time (browser tests) or one tick per describe call, so tests are
deterministic.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from collections.abc import Callable

ACCOUNT = "123456789012"
REGION = "us-east-1"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
#: moto accepts any credentials; the fake's own clients never depend on the caller's environment.
DUMMY = {"region_name": REGION, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DUMMY_ENV = {
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


# =========================================================================== the fake
@dataclass
class Attempt:
    number: int
    start: float
    status: str = "Executing"
    end: float | None = None
    reason: str = ""


@dataclass
class StepPlan:
    name: str
    deps: list[str] = field(default_factory=list)
    duration: float = 1.0
    fail: str = ""  # failure reason of the first attempt ("" = succeeds)
    log: list[str] = field(default_factory=list)  # lines the job logs (written when it ends)


class FakeExecution:
    def __init__(self, arn: str, pipeline: str, plans: list[StepPlan], start: float, display_name: str = "") -> None:
        self.arn, self.pipeline, self.display_name = arn, pipeline, display_name or f"{pipeline}-run"
        self.plans = {p.name: p for p in plans}
        self.order = [p.name for p in plans]  # topological (notebook) order
        self.t0 = start
        self.attempts: dict[str, list[Attempt]] = {n: [] for n in self.order}
        self.halted_at: float | None = None  # first failure since the last retry
        self.stop_time: float | None = None
        self.restart_at: dict[str, float] = {}
        self.on_end: Callable[[FakeExecution, str, Attempt], None] | None = None
        self.mlflow: dict[str, str] = {}  # the definition's MlflowConfig, as DescribePipelineExecution says it

    # ------------------------------------------------------------------ simulation
    def job_name(self, step: str, attempt: int) -> str:
        exec_id = self.arn.rsplit("/", 1)[-1]
        return f"{self.pipeline[:20]}-{step[:20]}-{attempt}-{exec_id[:12]}"[:63]

    def _allowed(self, t: float) -> bool:
        return (self.halted_at is None or t < self.halted_at) and (self.stop_time is None or t < self.stop_time)

    def _next_event(self, now: float):
        best = None
        for name in self.order:
            plan, tries = self.plans[name], self.attempts[name]
            last = tries[-1] if tries else None
            candidates = []
            if last is None or (
                last.status in ("Failed", "Stopped")
                and name in self.restart_at
                and self.restart_at[name] >= (last.end or 0)
            ):
                deps = [self.attempts[d][-1] if self.attempts[d] else None for d in plan.deps]
                if all(d is not None and d.status == "Succeeded" for d in deps):
                    ready = max([self.t0] + [d.end for d in deps if d is not None])
                    if last is not None:
                        ready = max(ready, self.restart_at[name])
                    elif self.restart_at:
                        ready = max(ready, max(self.restart_at.values()))
                    if self._allowed(ready):
                        candidates.append((ready, "start"))
            elif last.status == "Executing":
                finish = last.start + plan.duration
                if self.stop_time is not None and self.stop_time < finish:
                    candidates.append((self.stop_time, "stopping"))
                else:
                    candidates.append((finish, "finish"))
            elif last.status == "Stopping":
                candidates.append((self.stop_time + 1, "stopped"))
            for t, kind in candidates:
                if t <= now and (best is None or t < best[0]):
                    best = (t, kind, name)
        return best

    def advance(self, now: float) -> None:
        while True:
            event = self._next_event(now)
            if event is None:
                return
            t, kind, name = event
            tries = self.attempts[name]
            if kind == "start":
                tries.append(Attempt(len(tries) + 1, t))
            elif kind == "finish":
                a = tries[-1]
                plan = self.plans[name]
                a.end = t
                if plan.fail and a.number == 1:
                    a.status, a.reason = "Failed", plan.fail
                    if self.halted_at is None:
                        self.halted_at = t
                else:
                    a.status = "Succeeded"
                if self.on_end:
                    self.on_end(self, name, a)
            elif kind == "stopping":
                tries[-1].status = "Stopping"
            elif kind == "stopped":
                tries[-1].status, tries[-1].end = "Stopped", t

    def status(self) -> tuple[str, str]:
        latest = [t[-1] for t in self.attempts.values() if t]
        active = any(a.status in ("Executing", "Stopping") for a in latest)
        if self.stop_time is not None:
            return ("Stopping" if active else "Stopped"), ""
        if active:
            return "Executing", ""
        failed = [(n, t[-1]) for n, t in self.attempts.items() if t and t[-1].status == "Failed"]
        if failed:
            return "Failed", f"Step failure: One or multiple steps failed. ({failed[0][0]}: {failed[0][1].reason})"
        if all(t and t[-1].status == "Succeeded" for t in self.attempts.values()):
            return "Succeeded", ""
        return "Executing", ""

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for name in self.order:
            for a in self.attempts[name]:
                row: dict[str, Any] = {
                    "StepName": name,
                    "StepDisplayName": name,
                    "StartTime": self.t0_epoch + a.start,
                    "StepStatus": a.status,
                    "AttemptCount": a.number,
                    "Metadata": {
                        "TrainingJob": {
                            "Arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{self.job_name(name, a.number)}"
                        }
                    },
                }
                if a.end is not None:
                    row["EndTime"] = self.t0_epoch + a.end
                if a.reason:
                    row["FailureReason"] = a.reason
                out.append(row)
        out.sort(key=lambda r: r["StartTime"], reverse=True)  # the service's default: newest first
        return out

    t0_epoch = 1_700_000_000.0

    def modified(self, now: float) -> float:
        """LastModifiedTime (epoch seconds)."""
        return self.t0_epoch + now


class JobExecution(FakeExecution):
    """An execution whose training steps run for real (``FakeSageMaker.run_pipelines``): each step's
    arguments resolved as the service resolves them, then the SDK's entry point run as a training job of
    the fake (``_run_job``), one step after another in definition order, against moto's S3."""

    def __init__(
        self,
        fake: FakeSageMaker,
        arn: str,
        pipeline: str,
        definition: dict,
        parameters: dict[str, Any],
        display_name: str = "",
    ) -> None:
        steps = definition.get("Steps", [])
        super().__init__(
            arn,
            pipeline,
            [StepPlan(s["Name"], list(s.get("DependsOn", []))) for s in steps],
            self._clock(),
            display_name,
        )
        self.fake, self.steps = fake, steps
        self.mlflow = dict(definition.get("MlflowConfig") or {})
        self.parameters = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
        self.parameters.update(parameters)
        self.properties: dict[str, dict] = {}
        threading.Thread(target=self._run, name=f"fake-execution-{arn[-8:]}", daemon=True).start()

    def advance(self, now: float) -> None:  # the thread moves it
        pass

    def _clock(self) -> float:
        """Wall time, on the simulation's scale (its rows add ``t0_epoch``): real jobs take real time."""
        return time.time() - self.t0_epoch

    def modified(self, now: float) -> float:
        times = [t for tries in self.attempts.values() for a in tries for t in (a.start, a.end) if t is not None]
        return self.t0_epoch + max(times, default=self.t0)

    def _resolve(self, expr: Any, item: Any = None) -> Any:
        """An expression as the service resolves it; ``item``: ``ForEach.CurrentItem`` in a ForEach's body."""
        if isinstance(expr, dict) and len(expr) == 1 and "Get" in expr:
            head, _, rest = expr["Get"].partition(".")
            if head == "Execution" and rest == "PipelineExecutionId":
                return self.arn.rsplit("/", 1)[-1]
            if head == "Parameters":
                return self.parameters[rest]
            if head == "ForEach" and rest == "CurrentItem" and item is not None:
                return item
            step, _, path = rest.partition(".")
            value: Any = self.properties[step]
            for part in path.split("."):  # "IterationOutputs[2]": a member, then an index
                member, _, index = part.partition("[")
                value = value[member]
                if index:
                    value = value[int(index.rstrip("]"))]
            return value
        if isinstance(expr, dict) and len(expr) == 1 and "Std:Join" in expr:
            spec = expr["Std:Join"]
            return spec.get("On", "").join(str(self._resolve(v, item)) for v in spec.get("Values", []))
        if isinstance(expr, dict):
            return {k: self._resolve(v, item) for k, v in expr.items()}
        if isinstance(expr, list):
            return [self._resolve(v, item) for v in expr]
        return expr

    def _run(self) -> None:
        try:
            self._run_steps()
        except Exception as exc:  # a broken fake fails the step it was on, visibly, instead of hanging
            for tries in self.attempts.values():
                if tries and tries[-1].status == "Executing":
                    tries[-1].status, tries[-1].reason = "Failed", f"the fake failed: {exc!r}"
            raise

    def _run_steps(self) -> None:
        for step in self.steps:
            if step.get("Type") == "ForEach":
                if not self._run_for_each(step):
                    return
            elif not self._run_training(step["Name"], step):
                return

    def _run_training(self, name: str, step: dict, item: Any = None) -> bool:
        if name not in self.attempts:  # a ForEach's child
            self.attempts[name], self.order = [], [*self.order, name]
        attempt = Attempt(1, self._clock())
        self.attempts[name].append(attempt)
        if step.get("Type") != "Training":
            attempt.status, attempt.reason = "Failed", f"the fake runs training steps only, not {step['Type']}"
            return False
        request = self._resolve(step["Arguments"], item)
        job_name = self.job_name(name, 1)
        job = {"status": "InProgress", "request": request, "process": None, "failure": None, "started": time.time()}
        self.fake.training_jobs[job_name] = job
        self.fake._run_job(job_name, job)
        attempt.end = self._clock()
        if job["status"] != "Completed":
            attempt.status, attempt.reason = "Failed", job["failure"] or job["status"]
            return False
        attempt.status = "Succeeded"
        self.properties[name] = {"OutputDataConfig": request["OutputDataConfig"]}
        return True

    def _run_for_each(self, step: dict) -> bool:
        """SageMaker's ForEach (SDK 3.27's documentation): each body step once per item, as child
        ``<body>-<i>`` with ``ForEach.CurrentItem`` the item (one after another here); the children's properties
        as ``IterationOutputs[i].<body>``."""
        attempt = Attempt(1, self._clock())
        self.attempts[step["Name"]].append(attempt)
        arguments = step["Arguments"]
        outputs = []
        for index, item in enumerate(self._resolve(arguments["IterableItems"])):
            for body in arguments["ForEachBody"]:
                if not self._run_training(f"{body['Name']}-{index}", body, item):
                    attempt.status, attempt.reason, attempt.end = "Failed", "a child step failed", self._clock()
                    return False
            outputs.append(
                {body["Name"]: self.properties[f"{body['Name']}-{index}"] for body in arguments["ForEachBody"]}
            )
        attempt.status, attempt.end = "Succeeded", self._clock()
        self.properties[step["Name"]] = {"IterationOutputs": outputs}
        return True


_ZYGOTE = r"""
import json, os, runpy, signal, sys, traceback
module = sys.argv[1]
reply = os.fdopen(os.dup(1), "w")  # answers only: what imports print goes to stderr
os.dup2(2, 1)
import importlib; importlib.import_module(module)  # the SDK, once
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.chdir(job["cwd"])
            os.environ.clear(); os.environ.update(job["env"])
            out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1); os.dup2(out, 2)
            sys.argv = [module, *job["argv"]]
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    print(json.dumps({"pid": pid}), file=reply, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), file=reply, flush=True)
"""


class JobZygote:
    """A process that imported the SDK's job entry point once and forks one child per job (one at a time), as a
    fresh container would run it: its own folder, environment and output, exit status kept."""

    def __init__(self, module: str) -> None:
        import subprocess
        import sys

        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **DUMMY_ENV},
        )

    def start(self, argv: list[str], env: dict[str, str], cwd: str) -> ZygoteJob:
        self.lock.acquire()  # released when the job ends (ZygoteJob.wait), or here if it cannot start
        out = f"{cwd}/.job-output"
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": cwd, "out": out}) + "\n")
            self.proc.stdin.flush()
            return ZygoteJob(self, json.loads(self.proc.stdout.readline())["pid"], out)
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ZygoteJob:
    """One job forked by a :class:`JobZygote`: ``kill()`` as StopTrainingJob does, ``wait()`` for its status."""

    def __init__(self, zygote: JobZygote, pid: int, out: str) -> None:
        self.zygote, self.pid, self.out = zygote, pid, out

    def kill(self) -> None:
        import signal

        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        try:
            assert self.zygote.proc.stdout is not None
            return int(json.loads(self.zygote.proc.stdout.readline())["code"])
        finally:
            self.zygote.lock.release()

    def output(self) -> str:
        with open(self.out, errors="replace") as handle:
            return handle.read()


class _Reply(Exception):
    """Raised by an operation to answer with an error payload."""

    def __init__(self, status: int, payload: dict) -> None:
        self.status, self.payload = status, payload


class FakeSageMaker:
    """A local HTTP endpoint: the missing SageMaker calls, simulated; everything else forwarded to moto."""

    def __init__(
        self, upstream: str | None = None, clock: str = "ticks", page_size: int = 100, seconds_per_unit: float = 1.0
    ) -> None:
        self.upstream = upstream
        self.clock_mode = clock
        self.ticks = 0.0
        self.started = time.monotonic()
        self.seconds_per_unit = seconds_per_unit
        self.page_size = page_size
        self.executions: dict[str, FakeExecution] = {}
        self.throttle: dict[str, int] = {}  # operation -> how many ThrottlingExceptions to answer first
        self.fail_with: dict[str, tuple[int, str, str]] = {}  # operation -> (http status, code, message), always
        #: S3 PUTs (objects and parts) allowed before every further one is denied (403 AccessDenied), as a
        #: bucket policy or a lost permission refuses them mid-upload; None: no limit
        self.s3_puts_allowed: int | None = None
        self.calls: list[tuple[str, dict]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, S3 included
        self.auto_plan: Callable[[str, list[dict]], list[StepPlan]] | None = None  # proxy mode: plan from definition
        self.lock = threading.RLock()
        #: training jobs (%%remote): name -> {"status", "request", "process"}; with ``run_jobs`` each job's
        #: entry point runs for real, against moto's S3, as the container's last step would
        self.training_jobs: dict[str, dict] = {}
        self.run_jobs = False
        #: with ``run_pipelines``, a started execution's training steps run for real (:class:`JobExecution`)
        self.run_pipelines = False
        self.server: ThreadingHTTPServer | None = None
        self.zygote: JobZygote | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeSageMaker:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _any(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-sagemaker", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.zygote is not None:
            self.zygote.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def now(self) -> float:
        if self.clock_mode == "ticks":
            return self.ticks
        return (time.monotonic() - self.started) / self.seconds_per_unit

    # ------------------------------------------------------------------ scenario helpers
    def add_execution(
        self, plans: list[StepPlan], pipeline: str = "demo", exec_id: str | None = None, start: float | None = None
    ) -> str:
        exec_id = exec_id or f"ex{len(self.executions) + 1:010d}"
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:pipeline/{pipeline}/execution/{exec_id}"
        ex = FakeExecution(arn, pipeline, plans, self.now() if start is None else start)
        ex.on_end = self._write_logs
        self.executions[arn] = ex
        return arn

    def ops(self, name: str) -> list[dict]:
        return [body for op, body in self.calls if op == name]

    def _write_logs(self, ex: FakeExecution, step: str, attempt: Attempt) -> None:
        self._put_log(ex.job_name(step, attempt.number), ex.plans[step].log)

    def _put_log(self, job_name: str, lines: list[str]) -> None:
        """A training job's CloudWatch log stream (in moto), as the SDK and the monitor read it."""
        if not lines or not self.upstream:
            return
        import boto3

        logs = boto3.client("logs", endpoint_url=self.upstream, **DUMMY)
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        stream = f"{job_name}/algo-1-{int(time.time())}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now_ms = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now_ms + i, "message": line} for i, line in enumerate(lines)],
        )

    # ------------------------------------------------------------------ HTTP
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        target = req.headers.get("X-Amz-Target", "")
        op = target.split(".", 1)[1] if target.startswith("SageMaker.") else ""
        with self.lock:
            self.requests.append((req.command, req.path))
        handler = getattr(self, f"_op_{op}", None) if op else None
        if not op and req.command == "PUT" and self.s3_puts_allowed is not None:
            with self.lock:
                self.s3_puts_allowed -= 1
                denied = self.s3_puts_allowed < 0
            if denied:
                return self._reply_xml(req, 403, "AccessDenied", "Access Denied")
        if op:
            with self.lock:
                self.calls.append((op, json.loads(body or b"{}")))
        if handler is not None or op in self.throttle or op in self.fail_with:
            with self.lock:
                if self.throttle.get(op, 0) > 0:
                    self.throttle[op] -= 1
                    return self._reply(req, 400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                if op in self.fail_with:
                    status, code, message = self.fail_with[op]
                    return self._reply(req, status, {"__type": code, "message": message})
                if handler is not None:
                    try:
                        result = handler(json.loads(body or b"{}"))
                    except KeyError as exc:
                        return self._reply(req, 400, {"__type": "ResourceNotFound", "message": f"not found: {exc}"})
                    except _Reply as r:
                        return self._reply(req, r.status, r.payload)
                    if result is not None:
                        return self._reply(req, 200, result)
        self._forward(req, body, op)

    def _reply_xml(self, req: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        """An S3 error as S3 answers it."""
        data = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
            "<RequestId>fake-request</RequestId></Error>"
        ).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/xml")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _reply(self, req: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/x-amz-json-1.1")
        req.send_header("Content-Length", str(len(data)))
        req.send_header("x-amzn-RequestId", "fake-request")
        req.end_headers()
        req.wfile.write(data)

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes, op: str) -> None:
        if not self.upstream:
            return self._reply(req, 500, {"__type": "InternalFailure", "message": f"fake has no {op or req.path}"})
        up = urllib.parse.urlparse(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in req.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        conn.request(req.command, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if op == "StartPipelineExecution" and resp.status == 200:
            self._register_started(json.loads(data), json.loads(body or b"{}"))
        req.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                req.send_header(k, v)
        # A HEAD answer has no body but tells the object's length
        req.send_header(
            "Content-Length", resp.getheader("Content-Length", "0") if req.command == "HEAD" else str(len(data))
        )
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(data)
        conn.close()

    def _register_started(self, response: dict, request: dict) -> None:
        """Proxy mode: moto started an execution; simulate its steps from the pipeline definition."""
        import boto3

        arn = response["PipelineExecutionArn"]
        sm = boto3.client("sagemaker", endpoint_url=self.upstream, **DUMMY)
        desc = sm.describe_pipeline(PipelineName=request["PipelineName"])
        definition = json.loads(desc["PipelineDefinition"])
        if self.run_pipelines:
            parameters = {p["Name"]: p["Value"] for p in request.get("PipelineParameters", [])}
            with self.lock:
                self.executions[arn] = JobExecution(
                    self,
                    arn,
                    request["PipelineName"],
                    definition,
                    parameters,
                    request.get("PipelineExecutionDisplayName", ""),
                )
            return
        steps = definition.get("Steps", [])
        plans = (
            self.auto_plan(request["PipelineName"], steps)
            if self.auto_plan
            else [StepPlan(s["Name"], list(s.get("DependsOn", []))) for s in steps]
        )
        with self.lock:
            ex = FakeExecution(
                arn, request["PipelineName"], plans, self.now(), request.get("PipelineExecutionDisplayName", "")
            )
            ex.on_end = self._write_logs
            self.executions[arn] = ex

    # ------------------------------------------------------------------ operations
    def _execution(self, body: dict) -> FakeExecution | None:
        return self.executions.get(body.get("PipelineExecutionArn", ""))

    def _op_DescribePipelineExecution(self, body: dict) -> dict | None:
        ex = self._execution(body)
        if ex is None:
            if self.upstream:
                return None  # moto knows it
            raise KeyError(body.get("PipelineExecutionArn"))
        if self.clock_mode == "ticks":
            self.ticks += 1
        ex.advance(self.now())
        status, reason = ex.status()
        out = {
            "PipelineArn": ex.arn.split("/execution/")[0],
            "PipelineExecutionArn": ex.arn,
            "PipelineExecutionDisplayName": ex.display_name,
            "PipelineExecutionStatus": status,
            "CreationTime": ex.t0_epoch + ex.t0,
            "LastModifiedTime": ex.modified(self.now()),
            "CreatedBy": {"IamIdentity": {"Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/DataScientist/alice"}},
        }
        if reason:
            out["FailureReason"] = reason
        if ex.mlflow:
            out["MLflowConfig"] = ex.mlflow
        return out

    def _op_ListPipelineExecutionSteps(self, body: dict) -> dict:
        ex = self._execution(body)
        if ex is None:
            raise KeyError(body.get("PipelineExecutionArn"))
        ex.advance(self.now())
        rows = ex.rows()
        if body.get("SortOrder") == "Ascending":
            rows.reverse()
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults") or 100), self.page_size)
        out: dict[str, Any] = {"PipelineExecutionSteps": rows[start : start + size]}
        if start + size < len(rows):
            out["NextToken"] = str(start + size)
        return out

    # ------------------------------------------------------------------ training jobs (%%remote)
    def _op_CreateTrainingJob(self, body: dict) -> dict:
        name = body["TrainingJobName"]
        job = {"status": "InProgress", "request": body, "process": None, "failure": None, "started": time.time()}
        self.training_jobs[name] = job
        if self.run_jobs:
            threading.Thread(target=self._run_job, args=(name, job), daemon=True).start()
        return {"TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}"}

    def _run_job(self, name: str, job: dict) -> None:
        """The job's entry point (``python -m <remote_function>.invoke_function ARGS``) in a fresh folder, with
        the job's environment and moto as AWS; its output becomes the job's CloudWatch log. The process is
        forked from a :class:`JobZygote` that imported the SDK once (a fresh interpreter pays seconds)."""
        import tempfile

        from jupyter_smstep.sdk import compat

        request = job["request"]
        module = compat.modules()["remote_function"] + ".invoke_function"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **DUMMY_ENV,
            "AWS_ENDPOINT_URL": self.upstream or "",
            "TRAINING_JOB_NAME": name,
            **(request.get("Environment") or {}),
        }
        with self.lock:
            if self.zygote is None:
                self.zygote = JobZygote(module)
        with tempfile.TemporaryDirectory() as cwd:
            proc = self.zygote.start(request["AlgorithmSpecification"]["ContainerArguments"], env, cwd)
            job["process"] = proc
            returncode = proc.wait()
            job["ended"] = time.time()
            out = proc.output()
        job["log"] = out.splitlines()
        self._put_log(name, job["log"])  # before the status changes: the SDK reads it while it waits
        with self.lock:
            if job["status"] == "InProgress":
                job["status"] = "Completed" if returncode == 0 else "Failed"
                job["failure"] = None if returncode == 0 else f"AlgorithmError: exit code {returncode}"

    def _op_DescribeTrainingJob(self, body: dict) -> dict:
        name = body["TrainingJobName"]
        job = self.training_jobs[name]
        request = job["request"]
        out = {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{name}",
            "TrainingJobStatus": job["status"],
            "SecondaryStatus": {"InProgress": "Training"}.get(job["status"], job["status"]),
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "CreationTime": job["started"],
            "TrainingStartTime": job["started"],
        }
        if "OutputDataConfig" in request:
            out["OutputDataConfig"] = request["OutputDataConfig"]
        if job["status"] != "InProgress":
            out["TrainingEndTime"] = job.setdefault("ended", time.time())
            # billed from the start of training (the service rounds up to a second), at least one second
            out["BillableTimeInSeconds"] = max(1, math.ceil(out["TrainingEndTime"] - job["started"]))
        if job.get("failure"):
            out["FailureReason"] = job["failure"]
        return out

    def _op_StopTrainingJob(self, body: dict) -> dict:
        job = self.training_jobs[body["TrainingJobName"]]
        job["status"] = "Stopped"
        if job.get("process") is not None:
            job["process"].kill()
        return {}

    def _op_StopPipelineExecution(self, body: dict) -> dict:
        ex = self._execution(body)
        if ex is None:
            raise KeyError(body.get("PipelineExecutionArn"))
        assert body.get("ClientRequestToken"), "the SDK contract: a client request token"
        ex.advance(self.now())
        ex.stop_time = self.now()
        ex.advance(self.now())
        return {"PipelineExecutionArn": ex.arn}

    def _op_RetryPipelineExecution(self, body: dict) -> dict:
        ex = self._execution(body)
        if ex is None:
            raise KeyError(body.get("PipelineExecutionArn"))
        assert body.get("ClientRequestToken")
        ex.advance(self.now())
        status, _ = ex.status()
        if status not in ("Failed", "Stopped"):
            raise _Reply(400, {"__type": "ValidationException", "message": f"cannot retry a {status} execution"})
        now = self.now()
        for name, tries in ex.attempts.items():
            if tries and tries[-1].status in ("Failed", "Stopped"):
                ex.restart_at[name] = now
        ex.halted_at = None
        ex.stop_time = None
        ex.advance(now)
        return {"PipelineExecutionArn": ex.arn}


def start_moto_server():
    """moto in server mode on 127.0.0.1 (a free port); returns (server, url)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def prepare_account(url: str, role: str = "SageMakerRole", service: str = "sagemaker.amazonaws.com") -> str:
    """What submit needs from moto: a role SageMaker may assume (SDK v3 checks) and the default bucket;
    ``service``: the service the role trusts (``scheduler.amazonaws.com`` for a schedule's)."""
    import boto3

    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}],
    }
    iam = boto3.client("iam", endpoint_url=url, **DUMMY)
    try:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    boto3.client("s3", endpoint_url=url, **DUMMY).create_bucket(Bucket=f"sagemaker-{REGION}-{ACCOUNT}")
    return f"arn:aws:iam::{ACCOUNT}:role/{role}"


# =========================================================================== the Price List API
def price_item(instance_type: str, usagetype: str, usd: str, region: str = REGION) -> str:
    """One ``PriceList`` entry as the API returns it: a JSON string of product and terms."""
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {"instanceName": instance_type, "regionCode": region, "usagetype": usagetype},
            },
            "terms": {
                "OnDemand": {
                    "SKU.TERM": {"priceDimensions": {"SKU.TERM.DIM": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}
                }
            },
        }
    )


class FakePricing:
    """``AWSPriceListService.GetProducts`` behind a real HTTP endpoint (moto does not implement it), with
    paging (``page_size`` items a page) and an error mode (``fail_with = (status, code, message)``)."""

    def __init__(self, items: list[str], page_size: int = 1) -> None:
        self.items, self.page_size = items, page_size
        self.fail_with: tuple[int, str, str] | None = None
        self.calls: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                status, payload = fake.answer(self.headers.get("X-Amz-Target", ""), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-pricing", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, target: str, body: dict) -> tuple[int, dict]:
        self.calls.append(body)
        if target != "AWSPriceListService.GetProducts":
            return 400, {"__type": "UnknownOperationException", "message": target}
        if self.fail_with:
            status, code, message = self.fail_with
            return status, {"__type": code, "Message": message}
        wanted = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
        matching = [
            i for i in self.items if all(json.loads(i)["product"]["attributes"].get(k) == v for k, v in wanted.items())
        ]
        start = int(body.get("NextToken") or 0)
        page: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": matching[start : start + self.page_size]}
        if start + self.page_size < len(matching):
            page["NextToken"] = str(start + self.page_size)
        return 200, page
