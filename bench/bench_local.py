"""Local runner figures, measured in one run, printed as a table.

    python bench/bench_local.py [--mb 500] [--runs-dir DIR]

1. Per-step overhead: the median duration of a trivial step run by the local
   runner (fork, SDK entry point, S3 round trips, result upload) minus the median
   time of calling the same function directly in this process.
2. A 10-step chain of trivial steps: wall time of ``run_pipeline`` with a warm
   worker (what a second ``%pipeline run`` in a kernel costs), and its execution
   part (first step start to last step end). The cold figure (fresh process:
   SDK import, worker start) is printed too.
3. A 500 MB numpy array returned by one step and summed by the next, against
   creating it, pickling it to a local file, loading it back and summing it in
   this process.

No assertions: the targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_smstep import local
from jupyter_smstep import sdk

# Step functions by value, as the notebook's cells are (module "__main__").
SOURCE = """
def trivial(x):
    return {"x": x + 1}

def make_array(mb):
    import numpy as np
    return {"a": np.full(int(mb * 1024 * 1024 // 8), 1.0)}

def total(a):
    return {"total": float(a.sum())}
"""


def functions() -> dict:
    namespace: dict = {"__name__": "__main__"}
    exec(compile(SOURCE, "<bench-cell>", "exec"), namespace)
    return namespace


FN = functions()
STEP_KW = dict(image_uri="local/bench:latest", role="arn:aws:iam::123456789012:role/bench", instance_type="ml.m5.large")


def chain(n: int):
    S = sdk.load()

    def build(session):
        value = 0
        steps = []
        for i in range(n):
            value = S.step(FN["trivial"], name=f"s{i}", **STEP_KW)(value if i == 0 else value["x"])
            steps.append(value)
        return S.Pipeline(name=f"chain{n}", steps=[value], sagemaker_session=session)

    return build


def array_pipeline(mb: float):
    S = sdk.load()

    def build(session):
        made = S.step(FN["make_array"], name="make", **STEP_KW)(mb)
        summed = S.step(FN["total"], name="total", **STEP_KW)(made["a"])
        return S.Pipeline(name="array", steps=[summed], sagemaker_session=session)

    return build


def span(result) -> float:
    starts = [s.started for s in result.steps.values() if s.started]
    ends = [s.ended for s in result.steps.values() if s.ended]
    return max(ends) - min(starts)


def timed_run(build, runs_dir: str):
    t = time.perf_counter()
    result = local.run_pipeline(build, runs_dir=runs_dir)
    wall = time.perf_counter() - t
    if not result.succeeded:
        raise SystemExit(f"bench pipeline failed: {result.to_json()}")
    return result, wall


def direct_trivial(repeat: int = 2000) -> float:
    f = FN["trivial"]
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        f(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def direct_array(mb: float, folder: str) -> float:
    path = os.path.join(folder, "array.pkl")
    t = time.perf_counter()
    a = FN["make_array"](mb)["a"]
    with open(path, "wb") as f:
        pickle.dump(a, f, protocol=pickle.HIGHEST_PROTOCOL)
    del a
    with open(path, "rb") as f:
        b = pickle.load(f)
    FN["total"](b)
    elapsed = time.perf_counter() - t
    os.unlink(path)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=500)
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--chains", type=int, default=3, help="warm 10-step chain runs to take the median of")
    args = parser.parse_args()
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="smstep-bench-runs-")
    try:
        measure(args, runs_dir)
    finally:
        if not args.runs_dir:  # the array runs keep ~0.5 GB each
            shutil.rmtree(runs_dir, ignore_errors=True)


def measure(args: argparse.Namespace, runs_dir: str) -> None:
    S = sdk.load()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"sagemaker {S.version}, python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {load:.1f}, runs in {runs_dir}"
    )

    # Cold: this process has imported the SDK, the worker has not started yet.
    _, cold = timed_run(chain(1), runs_dir)

    chains = [timed_run(chain(10), runs_dir) for _ in range(args.chains)]
    walls = [w for _, w in chains]
    spans = [span(r) for r, _ in chains]
    step_durations = [s.duration for r, _ in chains for s in r.steps.values()]
    direct = direct_trivial()
    overhead = statistics.median(step_durations) - direct

    with tempfile.TemporaryDirectory() as folder:
        direct_big = direct_array(args.mb, folder)
    big, big_wall = timed_run(array_pipeline(args.mb), runs_dir)
    big_span = span(big)
    check = big.outputs("total")["total"]
    expected = float(int(args.mb * 1024 * 1024 // 8))

    rows = [
        ("first run, 1 step, cold worker (s)", f"{cold:.2f}", ""),
        ("trivial step, direct call (median, ms)", f"{direct * 1000:.4f}", ""),
        ("trivial step, local runner (median, s)", f"{statistics.median(step_durations):.3f}", ""),
        ("per-step overhead (median, s)", f"{overhead:.3f}", "<= 0.5"),
        (f"10-step chain, run_pipeline wall (median of {len(walls)}, s)", f"{statistics.median(walls):.2f}", "<= 5"),
        ("10-step chain, first start to last end (s)", f"{statistics.median(spans):.2f}", ""),
        ("10-step chain, per step incl. scheduling (s)", f"{statistics.median(spans) / 10:.3f}", ""),
        (f"{args.mb:g} MB array: create+pickle to file+load+sum (s)", f"{direct_big:.2f}", ""),
        (f"{args.mb:g} MB array: make -> total steps, start to end (s)", f"{big_span:.2f}", ""),
        (f"{args.mb:g} MB array: ratio steps / file", f"{big_span / direct_big:.2f}", "<= 3"),
        (f"{args.mb:g} MB array: run_pipeline wall, build included (s)", f"{big_wall:.2f}", ""),
        (f"{args.mb:g} MB array: ratio wall / file", f"{big_wall / direct_big:.2f}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    for label, value, target in rows:
        print(f"{label.ljust(width)}  {value:>9}  {('target ' + target) if target else ''}")
    if abs(check - expected) > 1e-6 * expected:
        print(f"WARNING: the array step returned {check}, expected {expected}")
    for name, step in big.steps.items():
        print(f"  array step '{name}': {step.duration:.2f} s")
    if hasattr(os, "getloadavg"):
        print(
            f"load average at the end: {os.getloadavg()[0]:.1f} (figures are wall times: a busy machine inflates them)"
        )


if __name__ == "__main__":
    main()
