"""Incremental pipelines: what an unchanged or one-cell change costs, measured in one run.

    python bench/bench_cache.py

1. ``smstep run`` of the example notebook, twice into a fresh runs folder: the
   second finds every step in the cache (no process, no SDK build).
2. A 10-step chain notebook run once; then its last cell changed and run again,
   against one 1-step pipeline's run (warm worker, both in this process).
3. ``submit`` against moto (a real HTTP endpoint): S3 PUTs of the first
   submit, of an unchanged re-submit, and after one changed cell.
4. ``smstep definition`` twice on the unchanged example: identical bytes?

No assertions: the targets are printed next to the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
EXAMPLE = ROOT / "notebooks" / "abalone.ipynb"
SMSTEP = [sys.executable, "-m", "jupyter_smstep.cli"]
CONFIG = (
    "%pipeline config --name {name} --role arn:aws:iam::123456789012:role/SageMakerRole "
    "--image-uri 123456789012.dkr.ecr.us-east-1.amazonaws.com/bench:1 --instance-type ml.m5.large"
)


def write_notebook(path: Path, cells: list[str]) -> Path:
    path.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
                "cells": [
                    {
                        "cell_type": "code",
                        "id": f"c{i}",
                        "metadata": {},
                        "source": src,
                        "outputs": [],
                        "execution_count": None,
                    }
                    for i, src in enumerate(cells)
                ],
            }
        )
    )
    return path


def chain_cells(n: int, last: str) -> list[str]:
    cells = ["%load_ext jupyter_smstep", CONFIG.format(name=f"chain{n}"), "import time"]
    cells.append("%%step s0\ntime.sleep(0.2)\nv0 = 1")
    cells += [f"%%step s{i}\ntime.sleep(0.2)\nv{i} = v{i - 1} + 1" for i in range(1, n - 1)]
    cells.append(f"%%step s{n - 1}\ntime.sleep(0.2)\nv{n - 1} = v{n - 2} + {last}")
    return cells


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        SMSTEP + list(args), capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}, check=True
    )


def main() -> None:
    from jupyter_smstep import sdk
    from jupyter_smstep.ipython.notebook import load_workspace

    os.environ.setdefault("SMSTEP_DATA_DIR", tempfile.mkdtemp(prefix="smstep-bench-data-"))
    print(f"sagemaker {sdk.installed_version()}, python {sys.version.split()[0]}, {os.cpu_count()} cores")
    rows: list[tuple[str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="smstep-bench-cache-"))

    # 1. the example, twice
    runs = work / "example-runs"
    _, first = timed(lambda: cli("run", str(EXAMPLE), "--runs-dir", str(runs)))
    _, second = timed(lambda: cli("run", str(EXAMPLE), "--runs-dir", str(runs)))
    rows += [
        ("smstep run example, first (s)", f"{first:.2f}", ""),
        ("smstep run example, second, unchanged (s)", f"{second:.2f}", ""),
        ("  ratio second / first", f"{second / first:.2f}", "<= 0.25"),
    ]

    # 2. a 10-step chain, last cell changed, against one step
    chain_runs = work / "chain-runs"
    chain = load_workspace(write_notebook(work / "chain.ipynb", chain_cells(10, "1")))
    chain.run_local(runs_dir=chain_runs)  # fills the cache (and warms the worker)
    changed = load_workspace(write_notebook(work / "chain.ipynb", chain_cells(10, "2")))
    result, changed_wall = timed(lambda: changed.run_local(runs_dir=chain_runs))
    ran = [n for n, s in result.steps.items() if not s.cached_from]
    timings = json.loads((result.run_dir / "run.json").read_text())["timings"]
    one = load_workspace(
        write_notebook(
            work / "one.ipynb",
            [
                "%load_ext jupyter_smstep",
                CONFIG.format(name="one"),
                "import time",
                "%%step s0\ntime.sleep(0.2)\nv0 = 1",
            ],
        )
    )
    one.run_local(runs_dir=work / "one-runs", cache=False)
    _, one_wall = timed(lambda: one.run_local(runs_dir=work / "one-runs", cache=False))
    rows += [
        ("10-step chain, last cell changed: steps run", ", ".join(ran), "s9"),
        ("10-step chain, last cell changed, wall (s)", f"{changed_wall:.2f}", ""),
        ("  of which building the definition (s)", f"{timings.get('build_definition', 0):.2f}", ""),
        ("  of which executing (s)", f"{timings.get('execute', 0):.2f}", ""),
        ("1-step pipeline, wall (s)", f"{one_wall:.2f}", ""),
        ("  ratio chain / one step", f"{changed_wall / one_wall:.2f}", "<= 1.5"),
    ]

    # 3. PUTs against moto, 4. identical definitions
    import logging

    from helpers.fakes import prepare_account, start_moto_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server, url = start_moto_server()
    try:
        os.environ["AWS_ENDPOINT_URL"] = url
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            os.environ.setdefault(key, value)
        prepare_account(url)
        cells = chain_cells(4, "1")
        submitted = load_workspace(write_notebook(work / "submit.ipynb", cells))
        puts = [submitted.submit().uploads[0], submitted.submit().uploads[0]]
        edited = load_workspace(write_notebook(work / "submit.ipynb", chain_cells(4, "5")))
        puts.append(edited.submit().uploads[0])
        rows += [
            ("submit 4 steps, first: S3 PUTs", str(puts[0]), ""),
            ("re-submit, unchanged: S3 PUTs", str(puts[1]), "0"),
            ("re-submit, last cell changed: S3 PUTs", str(puts[2]), "one step's payloads"),
        ]
        env = {"AWS_ENDPOINT_URL": url}
        a = cli("definition", str(EXAMPLE), env=env).stdout
        b = cli("definition", str(EXAMPLE), env=env).stdout
        rows.append(("smstep definition twice: identical bytes", str(a == b), "True"))
    finally:
        server.stop()

    width = max(len(r[0]) for r in rows)
    print()
    for label, value, target in rows:
        print(f"{label.ljust(width)}  {value:>9}  {('target ' + target) if target else ''}")


if __name__ == "__main__":
    main()
