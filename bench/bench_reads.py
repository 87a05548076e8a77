"""What recording a step's reads costs, and what checking them costs on an unchanged re-run.

    python bench/bench_reads.py

1. A step-shaped workload (import pandas, open and read 1,000 small files, list their folder)
   in fresh interpreters, with and without the recorder (``jupyter_smstep/local/recorder.py``)
   installed as the step's process installs it; interleaved, median of 7 each. The target is
   at most 5% more wall time.
2. The reuse check (``local.reads.changed``) of that step's record when nothing changed: a
   ``stat`` per file. The target is at most 0.1 s per step.

No assertions: the targets are printed next to the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDER = ROOT / "jupyter_smstep" / "local" / "recorder.py"

WORKLOAD = """
import importlib.util, json, os, sys, time
folder, record = sys.argv[1], sys.argv[2] == "1"
started = time.perf_counter()
if record:
    spec = importlib.util.spec_from_file_location("rec", {recorder!r})
    rec = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rec)
    rec.distributions()  # as the warm worker does before it forks (not a step's cost)
    started = time.perf_counter()
    recorder = rec.Recorder([], "/nonexistent-workdir", None)
    recorder.install()
code = compile('''
import pandas
total = 0
for name in sorted(os.listdir(folder)):
    with open(os.path.join(folder, name)) as f:
        total += len(f.read())
''', "<dynamic-code>", "exec")
exec(code, {{"folder": folder, "os": os}})
if record:
    recorder.write(os.path.join(folder, "..", "reads.json"))
print(time.perf_counter() - started)
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "files"
        folder.mkdir()
        for i in range(1000):
            (folder / f"{i:04}.txt").write_text(f"row {i}\n" * 10)
        script = WORKLOAD.format(recorder=str(RECORDER))
        times: dict[str, list[float]] = {"0": [], "1": []}
        for _ in range(7):
            for mode in ("0", "1"):
                out = subprocess.run(
                    [sys.executable, "-c", script, str(folder), mode], capture_output=True, text=True, check=True
                )
                times[mode].append(float(out.stdout.strip()))
        plain, recorded = statistics.median(times["0"]), statistics.median(times["1"])
        print(
            f"1. a step that imports pandas and reads 1,000 files: {plain:.3f} s plain, {recorded:.3f} s recorded "
            f"(+{(recorded / plain - 1) * 100:.1f}%; target at most +5%)"
        )

        from jupyter_smstep.local import reads

        data = json.loads((Path(tmp) / "reads.json").read_text())
        print(
            f"   recorded: {len(data['files'])} files, {len(data['folders'])} folder(s), "
            f"{len(data['packages'])} package(s) ({', '.join(sorted(data['packages']))})"
        )
        checks = []
        for _ in range(7):
            started = time.perf_counter()
            assert reads.changed(data, "bench") is None
            checks.append(time.perf_counter() - started)
        check = statistics.median(checks)
        print(
            f"2. the reuse check of that record, nothing changed: {check * 1000:.1f} ms per step "
            f"(target at most 100 ms)"
        )
        os.utime(folder / "0000.txt", ns=(1, 1))  # touched, same bytes: hashed, still holds
        started = time.perf_counter()
        assert reads.changed(data, "bench") is None
        print(f"   with one file touched (same bytes, hashed once): {(time.perf_counter() - started) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
