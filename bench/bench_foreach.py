"""A ``--foreach`` sweep run locally: its iterations in parallel against the same cells one after another.

    python bench/bench_foreach.py [--items 3] [--repeat 3]

A notebook fits one scikit-learn random forest per item (about a second of one core each). It is run
with ``smstep run --no-cache`` three ways, interleaved, median of ``--repeat`` each:

1. ``--foreach`` as written: the runner starts the iterations side by side, up to the machine's cores;
2. the same cell with ``--max-concurrency 1``: the iterations one after another (the same jobs, chained);
3. the notebook in one fresh kernel top to bottom (``jupyter nbconvert --execute``), where the cell runs
   its items in turn.

Printed: each wall time (and the runs' execution part alone) and the ratios 1/2 and 1/3. With N cores and N items the first ratio tends to
1/N plus the fixed cost of a run (the build, the data step, the gather). No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CELLS = [
    "%load_ext jupyter_smstep",
    "%pipeline config --name bench-sweep --role arn:aws:iam::123456789012:role/bench "
    "--image-uri 123456789012.dkr.ecr.us-east-1.amazonaws.com/bench:1 --instance-type ml.m5.large",
    "from sklearn.datasets import make_classification\nfrom sklearn.ensemble import RandomForestClassifier\n"
    "depths = {items}",
    "%%step data\nX, y = make_classification(n_samples=4000, n_features=30, random_state=0)",
    "%%step fit --foreach depth=depths{limit}\n"
    "model = RandomForestClassifier(n_estimators=120, max_depth=depth, n_jobs=1, random_state=0).fit(X, y)\n"
    "accuracy = float(model.score(X, y))",
    "%%step report\nbest = max(accuracy)",
]


def notebook(folder: Path, name: str, items: int, limit: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    depths = [8 + i for i in range(items)]
    nb.cells = [nbformat.v4.new_code_cell(c.format(items=depths, limit=limit)) for c in CELLS]
    path = folder / name
    nbformat.write(nb, path)
    return path


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        command,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return time.perf_counter() - started


def executed(cwd: Path) -> float:
    """The latest run's execution part (first step started to last step ended: no build, no SDK import)."""
    latest = max((cwd / ".smstep" / "runs").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    return float(json.loads(latest.read_text())["timings"]["execute"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smstep-bench-foreach-") as tmp:
        folder = Path(tmp)
        parallel = notebook(folder, "parallel.ipynb", args.items, "")
        chained = notebook(folder, "chained.ipynb", args.items, " --max-concurrency 1")
        smstep = str(BIN / "smstep")
        runs: dict[str, list[float]] = {
            "parallel": [],
            "one after another": [],
            "one kernel": [],
            "parallel, steps only": [],
            "one after another, steps only": [],
        }
        timed([smstep, "run", parallel.name, "--no-cache"], folder)  # warm the disk cache and the wheels' imports
        for _ in range(args.repeat):
            runs["parallel"].append(timed([smstep, "run", parallel.name, "--no-cache"], folder))
            runs["parallel, steps only"].append(executed(folder))
            runs["one after another"].append(timed([smstep, "run", chained.name, "--no-cache"], folder))
            runs["one after another, steps only"].append(executed(folder))
            runs["one kernel"].append(
                timed(
                    [
                        str(BIN / "jupyter"),
                        "nbconvert",
                        "--to",
                        "notebook",
                        "--execute",
                        "--output",
                        "executed.ipynb",
                        parallel.name,
                    ],
                    folder,
                )
            )
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"a --foreach sweep of {args.items} random forests, {os.cpu_count()} cores, median of {args.repeat} "
        "(smstep run --no-cache; the kernel: nbconvert --execute)"
    )
    for label, seconds in median.items():
        print(f"  {label:<30} {seconds:6.2f} s")
    print(
        f"  parallel / one after another = {median['parallel'] / median['one after another']:.2f}"
        f"   (ideal with {min(args.items, os.cpu_count() or 1)} at once: "
        f"{1 / min(args.items, os.cpu_count() or 1):.2f} of the fitting)"
    )
    steps = median["parallel, steps only"] / median["one after another, steps only"]
    print(f"  the same, steps only          = {steps:.2f}   (the run's execution: no build, no SDK import)")
    print(f"  parallel / one kernel        = {median['parallel'] / median['one kernel']:.2f}")


if __name__ == "__main__":
    main()
