"""The graph's checks that need this kernel's values or the SDK, which the pure graph (``core.graph``) cannot make.

- each step gets the values its cell saw (``sdk.snapshot``): a value too large to have been copied that changed in
  place since is refused; in a kernel, the values that moved on since a step's cell ran are said;
- ``--dependencies auto``: each such step's pins, and what cannot be pinned;
- what the steps' workspace ships (IncludeLocalWorkDir), and a warning when it is large.

:class:`jupyter_smstep.workspace.Workspace` runs them on every graph.
"""

from __future__ import annotations

from typing import Any

from jupyter_smstep.core.model import PipelineGraph


class KernelChecks:
    """The checks for one workspace (its cells, its namespace), with what they remember between graphs."""

    def __init__(self, workspace: Any) -> None:
        self.workspace = workspace
        #: (cell, name, id of the kernel's value, registry revision) -> moved since the cell ran: a panel refresh
        #: between two cells fingerprints nothing again (running any cell bumps the revision)
        self._moved: dict[tuple[str, str, int, int], bool] = {}

    def check(self, graph: PipelineGraph) -> None:
        self.seen_values(graph)
        self.pinned_dependencies(graph)
        self.shipped_workspace(graph)

    def shipped_workspace(self, graph: PipelineGraph) -> None:
        """What the steps' workspace ships (``sdk.workdir``): listed on the graph, and a warning when it is large."""
        from jupyter_smstep.core import workdir
        from jupyter_smstep.text import fmt_bytes

        shipping = graph.shipping
        if shipping is None:
            return
        files = workdir.shipped(shipping)
        graph.ships = {
            "files": sorted(f for f, _ in files),
            "bytes": sum(n for _, n in files),
            "because": {step: list(mods) for step, mods in shipping.because.items()},
        }
        if graph.ships["bytes"] > workdir.LARGE:
            largest = ", ".join(f"{f} ({fmt_bytes(n)})" for f, n in files[:3])
            graph.report.warn(
                f"the steps' workspace (IncludeLocalWorkDir) is {fmt_bytes(graph.ships['bytes'])}, "
                f"zipped and uploaded with every step of every build; largest: {largest}",
                fix="list those names under CustomFileFilter: IgnoreNamePatterns in config.yaml, or "
                "move them out of the notebook's folder (upload data to S3)",
            )

    def seen_values(self, graph: PipelineGraph) -> None:
        """Each step gets the values its cell saw (``sdk.snapshot``). Refuse a value too large to have been
        copied that changed in place since; in a kernel, say which values have moved on since the step's
        cell ran (the step keeps the ones its cell saw)."""
        from jupyter_smstep.sdk.snapshot import CAP, Snapshot

        for node in graph.steps:
            if node.fanout is not None and node.fanout.index:
                continue  # a --foreach cell's iterations share what it saw: said once, on the first
            seen = getattr(node.cell.seen, "base", node.cell.seen)  # an iteration's item over what its cell saw
            if not isinstance(seen, Snapshot):
                continue
            captured = {i.name: i for i in node.captured}
            for var in seen.changed_in_place(captured):
                who = (
                    "the step's own cell when it ran in the kernel"
                    if var in node.cell.changed_in_kernel
                    else self._writer_after(node.cell, var) or "a later cell"
                )
                graph.report.error(
                    f"reads {var!r}, which changed in place after this step's cell saw it ({who}): it is too large "
                    f"to keep a copy of (over {CAP // 2**20} MiB pickled), so the pipeline would give the step the "
                    "changed value, not the one its cell saw",
                    fix=f"copy it where it changes ({var} = {var}.copy() before changing it), or make {var!r} "
                    "an output of a step above so it travels as data",
                    step=node.name,
                    line=captured[var].line + 1,
                )
            if not self.workspace.live:
                continue
            analysis = node.cell.analysis
            own = set(node.cell.changed_in_kernel) | set(node.hidden_changes)  # the step changes these itself
            if analysis is not None:
                own |= set(analysis.outputs) | set(analysis.mutates)
            for var, inp in captured.items():
                if var not in own and self._has_moved(node.cell.key, var, seen):
                    writer = self._writer_after(node.cell, var, anywhere=True)
                    graph.report.warn(
                        f"{var!r} changed in the kernel after this step's cell ran{f' ({writer})' if writer else ''}: "
                        "the step uses the value its cell saw, as the notebook run top to bottom does",
                        fix=f"to use the kernel's current {var!r}, run step '{node.name}' again",
                        step=node.name,
                        line=inp.line + 1,
                    )

    def _has_moved(self, cell_key: str, var: str, seen: Any) -> bool:
        key = (cell_key, var, id(self.workspace.namespace.get(var)), self.workspace.registry.revision)
        if key not in self._moved:
            if len(self._moved) > 10_000:
                self._moved.clear()
            self._moved[key] = seen.moved(var, self.workspace.namespace)
        return self._moved[key]

    def _writer_after(self, cell: Any, var: str, anywhere: bool = False) -> str | None:
        """The label of the last cell below ``cell`` (or, with ``anywhere``, any other) that binds or changes
        ``var``."""
        cells = self.workspace.registry.cells
        index = next((i for i, c in enumerate(cells) if c is cell), len(cells))
        found = None
        for i, other in enumerate(cells):
            if other is cell or other.analysis is None or (i < index and not anywhere):
                continue
            if var in other.analysis.outputs or var in other.analysis.mutates:
                found = other.label
        return found

    def pinned_dependencies(self, graph: PipelineGraph) -> None:
        """``--dependencies auto``: each such step's pins, and a warning for what cannot be pinned."""
        from jupyter_smstep.sdk import requirements

        for node in requirements.auto_steps(graph.steps):
            pins = requirements.step_pins(node, self.workspace.namespace, graph.steps)
            graph.dependencies[node.name] = pins.lines
            for module in pins.missing:
                graph.report.error(
                    f"imports {module!r}, which this kernel cannot import: --dependencies auto "
                    "cannot pin it, and the job would fail on it",
                    step=node.name,
                    fix=f"install it in the kernel (pip install the package that provides "
                    f"{module!r}) and run the cell again, or fix the import's spelling",
                )
            for dist in pins.local:
                graph.report.warn(
                    f"uses the package {dist!r}, installed here from a local folder (editable or "
                    "a path): pinned by name, pip in the job would install whatever PyPI has under "
                    "that name, so it is not pinned",
                    step=node.name,
                    fix="ship its source with IncludeLocalWorkDir (its folder beside the notebook), "
                    "or build a wheel and list the wheel's path in --dependencies FILE",
                )
            for module in pins.unresolved:
                graph.report.warn(
                    f"uses the module {module!r}, which no installed package provides (a .py file "
                    "beside the notebook?): --dependencies auto cannot pin it, and the job will "
                    "not have it",
                    step=node.name,
                    fix="set IncludeLocalWorkDir: true in config.yaml so the notebook's .py files "
                    "travel with the step, or make it an installable package",
                )
