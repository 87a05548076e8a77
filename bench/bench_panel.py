"""Pipeline panel render time for a 50-step DAG, measured inside a real kernel.

    python bench/bench_panel.py [--steps 50] [--repeat 7] [--in-process]

Starts an ipykernel (jupyter_client), builds a notebook of N ``%%step --defer``
cells whose steps read 1-3 earlier steps (fan-in and long edges, so the layout
has crossings to reduce and labels to place), then times, inside the kernel,
the median of ``--repeat`` runs of:

- ``graph``: ``workspace.graph()`` alone (the core's part, not the panel's);
- ``layout`` and ``svg``: the layered layout and the SVG drawing alone;
- ``first render``: ``panel.show(workspace)``: graph, captured sizes, layout,
  SVG, every widget created and its comm opened, displayed (the target:
  ≤ 200 ms);
- ``refresh``: the panel's ``post_run_cell`` refresh after a step cell is re-run
  (same shape: the cached layout is reused);
- ``select``: clicking a node (details of one step rendered);
- ``state``: one local-run event with its redraw (the DAG recoloured; a real
  run coalesces redraws to at most 5 a second).

Prints the figures and their ratios to the target; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 200.0

KERNEL_CODE = r"""
import json, statistics, time, random
from types import SimpleNamespace
ip = get_ipython()
ip.run_cell("%load_ext jupyter_smstep")
ip.run_cell("%pipeline config --name bench --role arn:aws:iam::111122223333:role/R --instance-type ml.m5.xlarge "
            "--image-uri 111122223333.dkr.ecr.us-east-1.amazonaws.com/img:1")
ip.run_cell("%pipeline param seed=1 rate=0.5")
ip.run_cell("def helper(*xs):\n    return sum(xs)\nCONST = 3")
rng = random.Random(7)
N = __N__
for i in range(N):
    picks = sorted({j for j in (i - 1, i - rng.randint(2, 4), i - rng.randint(5, 9)) if j >= 0})[: rng.randint(1, 3)]
    expr = "helper(" + ", ".join(f"v{j}" for j in picks) + ")" if picks else "seed * rate"
    ip.run_cell(f"%%step step_{i:02d} --defer\nv{i} = {expr} + CONST")
import jupyter_smstep, importlib
panel_mod = importlib.import_module("jupyter_smstep.panel.widget")
from jupyter_smstep.local.results import StepEvent
from jupyter_smstep.panel import html, layout as dag_layout
from jupyter_smstep.panel import svg as dag_svg
ws = jupyter_smstep.get_workspace()

def med(f, n=__REPEAT__):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)

out = {"steps": N}
out["graph"] = med(ws.graph)
g = ws.graph()
views = {s.name: dag_svg.NodeView(s.name, "ml.m5.xlarge") for s in g.steps}
edges = html.edges(g)
widths = {n: dag_svg.node_width(n, "ml.m5.xlarge") for n in views}
out["layout"] = med(lambda: dag_layout.layered_layout(list(views), [(e.source, e.target) for e in edges], widths=widths))
lay = dag_layout.layered_layout(list(views), [(e.source, e.target) for e in edges], widths=widths)
out["svg"] = med(lambda: dag_svg.render(lay, views, edges, "bench"))
out["edges"] = len(edges)
out["crossings"] = lay.crossings
out["size"] = [round(lay.width), round(lay.height)]
panels = []
def first():
    panels.append(panel_mod.show(ws))
out["first render"] = med(first)
p = panels[-1]
for old in panels[:-1]:
    old.close()
def refresh():
    ws.registry.revision += 1  # what re-running a step cell does
    p.refresh()
out["refresh"] = med(refresh)
names = list(p.selector.options)
k = iter(range(10**6))
out["select"] = med(lambda: setattr(p, "_sel", p.selector.__setattr__("value", names[next(k) % len(names)])))
ev = StepEvent("bench", names[0], "running")
p.state.run_kind = "local"
p.render_interval = 0  # redraw on every event (the panel coalesces them to ~5/s in a real run)
states = iter(["running", "succeeded"] * 10**5)
def state():
    ev.state = next(states)
    p.on_local_event(ev)
out["state"] = med(state)
t = time.perf_counter(); ip.run_cell("%pipeline show --text", silent=True); out["text summary"] = (time.perf_counter() - t) * 1000
p.close()
print("BENCH" + json.dumps(out))
"""


def run_in_kernel(code: str) -> dict:
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(REPO))
    lines: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            lines.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            lines.append("\n".join(msg["content"]["traceback"]))

    try:
        kc.execute_interactive(code, output_hook=hook, timeout=600)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = "".join(lines)
    for line in text.splitlines():
        if line.startswith("BENCH"):
            return json.loads(line[5:])
    raise SystemExit(f"the kernel did not report:\n{text}")


def run_in_process(code: str) -> dict:
    import contextlib
    import io

    sys.path.insert(0, str(REPO))
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, "<bench>", "exec"), {"get_ipython": lambda: ip})
    for line in buf.getvalue().splitlines():
        if line.startswith("BENCH"):
            return json.loads(line[5:])
    raise SystemExit(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--in-process", action="store_true", help="an IPython shell in this process instead of a kernel")
    args = ap.parse_args()
    code = KERNEL_CODE.replace("__N__", str(args.steps)).replace("__REPEAT__", str(args.repeat))
    where = "IPython shell in this process" if args.in_process else "ipykernel (jupyter_client)"
    t0 = time.perf_counter()
    r = run_in_process(code) if args.in_process else run_in_kernel(code)
    print(
        f"pipeline panel, {r['steps']} steps, {r['edges']} edges ({r['crossings']} crossings left, "
        f"{r['size'][0]}x{r['size'][1]} px), measured in an {where}; median of {args.repeat} runs"
    )
    print(
        textwrap.dedent(f"""\
        {"":<30}{"ms":>9}   ratio
        {"first render (panel.show)":<30}{r["first render"]:>9.1f}   {r["first render"] / TARGET_MS:.2f} of the {TARGET_MS:.0f} ms target
        {"  of which graph (core)":<30}{r["graph"]:>9.1f}   {r["graph"] / r["first render"]:.2f} of the render
        {"  of which layout":<30}{r["layout"]:>9.1f}   {r["layout"] / r["first render"]:.2f} of the render
        {"  of which svg":<30}{r["svg"]:>9.1f}   {r["svg"] / r["first render"]:.2f} of the render
        {"refresh after a re-run":<30}{r["refresh"]:>9.1f}   {r["refresh"] / r["first render"]:.2f} of the first render
        {"select a step (click)":<30}{r["select"]:>9.1f}   {r["select"] / TARGET_MS:.2f} of the target
        {"one run-state event":<30}{r["state"]:>9.1f}   {r["state"] / TARGET_MS:.2f} of the target
        {"%pipeline show --text":<30}{r["text summary"]:>9.1f}   panel / text = {r["first render"] / max(r["text summary"], 1e-9):.1f}x""")
    )
    print(f"(bench wall time {time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    main()
