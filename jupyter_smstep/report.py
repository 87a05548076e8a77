"""Plain-text views of a pipeline graph: ``%pipeline show --text`` and ``smstep graph``."""

from __future__ import annotations

from .graph import PipelineGraph


def text_summary(graph: PipelineGraph) -> str:
    lines = [f"pipeline {graph.name!r}: {len(graph.steps)} step(s)"]
    if graph.parameters:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in graph.parameters.items()))
    if graph.kernel_image_note:
        lines.append(f"kernel image: {graph.kernel_image_note}")
    for node in graph.steps:
        after = f" (after {', '.join(node.depends_on)})" if node.depends_on else ""
        lines += ["", f"step {node.name}{after}"]
        for inp in sorted(node.inputs.values(), key=lambda i: i.line):
            where = {
                "step": f"output of step '{inp.step}'",
                "parameter": "pipeline parameter",
                "value": f"captured {inp.type_name}" + (f" from {inp.via}" if inp.via else ""),
                "import": inp.statement,
            }[inp.kind]
            lines.append(f"  in   {inp.name:<16} {where}  (line {inp.line + 1})")
        for out in node.outputs:
            lines.append(f"  out  {out}")
        width = max((len(k) for k in node.settings), default=0)
        for key, r in node.settings.items():
            lines.append(f"  set  {key:<{width}}  {r.value!r}  [{r.source}]")
    if graph.report.problems:
        lines += ["", "problems:"]
        lines += [f"  {p.severity}: {p}".replace("\n", "\n  ") for p in graph.report.problems]
    return "\n".join(lines)
