"""Edge crossings of the panel's DAG, before and after crossing reduction, on real notebooks.

    python bench/bench_crossings.py [NOTEBOOK.ipynb ...]

Loads each notebook headless (as ``smstep graph`` does: its step cells are
analysed, not run), builds the graph, and lays it out twice with the panel's
own layout: once keeping the notebook's order in every layer ("before": no
barycenter sweeps, no transpose) and once as the panel draws it ("after").
With no argument it measures ``notebooks/abalone.ipynb``. Prints the crossings
of each and the ratio; no assertions.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(path: Path) -> dict:
    from jupyter_smstep.ipython.notebook import load_workspace
    from jupyter_smstep.panel import html
    from jupyter_smstep.panel import layout as dag_layout
    from jupyter_smstep.panel import svg as dag_svg

    graph = load_workspace(path).graph()
    names = [s.name for s in graph.steps]
    edges = [(e.source, e.target) for e in html.edges(graph)]
    widths = {n: dag_svg.node_width(n, "ml.m5.xlarge") for n in names}
    before = dag_layout.layered_layout(names, edges, widths=widths, sweeps=0)
    t = time.perf_counter()
    after = dag_layout.layered_layout(names, edges, widths=widths)
    ms = (time.perf_counter() - t) * 1000
    fan_in = max((sum(1 for _, v in edges if v == n) for n in names), default=0)
    return {
        "steps": len(names),
        "edges": len(edges),
        "fan_in": fan_in,
        "before": before.crossings,
        "after": after.crossings,
        "ms": ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, default=[REPO / "notebooks" / "abalone.ipynb"])
    args = ap.parse_args()
    print(f"{'notebook':<40}{'steps':>6}{'edges':>6}{'max in':>7}{'before':>8}{'after':>7}   ratio  layout ms")
    for path in args.notebooks:
        r = measure(path.resolve())
        ratio = f"{r['after'] / r['before']:.2f}" if r["before"] else "  -  "
        print(
            f"{path.name:<40}{r['steps']:>6}{r['edges']:>6}{r['fan_in']:>7}{r['before']:>8}{r['after']:>7}"
            f"   {ratio:>5}  {r['ms']:>9.1f}"
        )


if __name__ == "__main__":
    main()
