"""The pipeline graph's model: what :func:`jupyter_smstep.core.graph.build_graph` makes and every other layer
reads (:class:`PipelineGraph` of :class:`StepNode` with their :class:`Input` links), the names the build
treats specially, and the bindings it keeps while it walks the notebook's cells (:class:`Bindings`).
Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import ast
import builtins
import graphlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable, Iterator, Mapping

from jupyter_smstep.core import settings as settings_mod
from jupyter_smstep.core.registry import Cell
from jupyter_smstep.core.states import InputKind
from jupyter_smstep.errors import Report, SmstepError
from jupyter_smstep.core import secrets, setting_rules

if TYPE_CHECKING:  # imported where used: %load_ext builds no graph, and should not pay for these
    from jupyter_smstep.core import conditions as cond_mod, foreach as foreach_mod, saves as saves_mod


#: Random generators: a step that reads one may advance it, so it is an output of that step too (the next
#: step reading it draws on from where this one left it, as in the kernel, not the same numbers again).
RANDOM_STATES: dict[tuple[str, str | None], str] = {
    ("random", "Random"): "a random.Random",
    ("numpy.random._generator", "Generator"): "a numpy Generator",
    ("numpy.random.mtrand", "RandomState"): "a numpy RandomState",
    ("torch._C", "Generator"): "a torch Generator",
}


#: Names IPython adds to ``builtins`` while a cell runs; a job's plain Python has none of them.
IPYTHON_BUILTINS = frozenset({"display", "get_ipython", "__IPYTHON__", "dreload"})


#: Python's own builtins (``open``, ``exit``, ``quit``, ``print``...), whatever IPython shadows them with.
#: (``site`` adds ``exit`` and ``quit``; IPython hides those two while a cell runs, so they are named here.)
BUILTINS = (frozenset(dir(builtins)) | {"exit", "quit", "copyright", "credits", "license", "help"}) - IPYTHON_BUILTINS


#: Names IPython puts in the namespace; a step cannot use them in a container.
IPYTHON_NAMES = frozenset({"In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_oh", "_dh", "_ih"}) | IPYTHON_BUILTINS


#: How to do without each statement a step's body cannot hold at its top level.
MISPLACED_FIX = {
    "return": "assign the value to a variable instead: a step returns the variables later steps read, by name",
    "yield": "collect the values in a list, or define a generator function in the cell and call it",
    "await": "a step runs as a plain function: wrap the coroutine in asyncio.run(...)",
    "global": "drop the global statement: at the top of a cell it changes nothing, in a step it breaks the "
    "function (its names come from earlier steps and the kernel)",
}


DEFAULT_PIPELINE_NAME = "notebook-pipeline"


#: ``from jupyter_smstep import execution``: read in a step, it becomes the execution's variables
EXECUTION_MODULE = "jupyter_smstep.execution"


#: The step function's arguments for them (id, start time, pipeline name; see jupyter_smstep.execution)
EXECUTION_ARGS = ("_smstep_execution_id", "_smstep_execution_start", "_smstep_pipeline_name")


@dataclass(frozen=True)
class Input:
    """Where one input of a step comes from, and why (the line that reads it)."""

    name: str
    kind: InputKind
    line: int  # line in the cell body; the cell's own line number is line + 1 (after %%step)
    step: str | None = None  # producing step, for kind "step"
    type_name: str | None = None  # for kind "value"
    statement: str | None = None  # for kind "import": the import statement
    via: str | None = None  # the cell that wrote a captured value, if known
    output: str | None = None  # for kind "step": the producer's output, when the argument is named otherwise

    @property
    def produced(self) -> str:
        """The name the producing step returns this under (a gather step's ``auc__0`` is ``auc``)."""
        return self.output or self.name

    def to_json(self) -> dict[str, str]:
        if self.kind == "step":
            return {"step": self.step or ""}
        if self.kind == "parameter":
            return {"parameter": self.name}
        if self.kind == "execution":
            return {"execution": "id, start_time, pipeline_name of the pipeline execution"}
        return {"value": self.type_name or "object"}


@dataclass
class StepNode:
    name: str
    cell: Cell
    inputs: dict[str, Input]
    outputs: list[str]
    depends_on: list[str]
    settings: dict[str, settings_mod.Resolved]
    #: Inputs the step changes although its own syntax does not show it: through calls of notebook
    #: functions or methods, as seen when it ran in the kernel, or as declared with ``%pipeline
    #: outputs``. Outputs too, so later steps get the changed value. name -> line in the body.
    hidden_changes: dict[str, int] = field(default_factory=dict)
    #: The ConditionStep whose if branch holds this step (its own --when, or an upstream step's)
    guard: str | None = None
    #: --save: values written to S3 at the end of the step
    saves: list[saves_mod.Save] = field(default_factory=list)
    #: A final step's implicit outputs whose values the build could not see (headless, --defer): the
    #: job leaves out those that are not data (``core.plain``), as the build does for the ones it sees
    unchecked: list[str] = field(default_factory=list)
    #: A final step's implicit outputs before the kernel's values were checked (None: not a final step). Its
    #: content key is made from these, so a build that saw the values and one that did not agree
    #: (``core.keys``): the job's check leaves out what the build's does.
    sink_outputs: list[str] | None = None
    #: --foreach: one iteration of the cell, or the gather that makes its lists (core.foreach)
    fanout: foreach_mod.FanOut | None = None
    #: Notebook functions the step calls that read step outputs when they run -> those outputs (its inputs too)
    helper_globals: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def order_only(self) -> list[str]:
        """Steps this one runs after with no data from them (``--after``)."""
        linked = {i.step for i in self.inputs.values() if i.kind == "step"}
        return [d for d in self.depends_on if d not in linked]

    @property
    def links(self) -> list[Input]:
        """Inputs passed as function arguments (step outputs and parameters), in reading order."""
        links = (i for i in self.inputs.values() if i.kind in ("step", "parameter"))
        return sorted(links, key=lambda i: (i.line, i.name))

    @property
    def execution(self) -> list[Input]:
        """``jupyter_smstep.execution`` as the step reads it (by its name in the notebook)."""
        return [i for i in self.inputs.values() if i.kind == "execution"]

    @property
    def captured(self) -> list[Input]:
        return [i for i in self.inputs.values() if i.kind == "value"]

    @property
    def per_run(self) -> bool:
        """Whether what the step does depends on the run: it reads the execution, or writes to S3."""
        return bool(self.execution or self.saves)

    @property
    def needs_execution(self) -> bool:
        """Whether the step function takes the execution's variables (it reads them, or saves to a URI
        with {execution_id})."""
        return bool(self.execution) or any(s.per_execution for s in self.saves)

    @property
    def imports(self) -> list[Input]:
        return [i for i in self.inputs.values() if i.kind == "import"]


@dataclass
class PipelineGraph:
    name: str
    steps: list[StepNode]
    parameters: dict[str, Any]
    report: Report = field(default_factory=Report)
    kernel_image_note: str = ""
    #: step -> core.keys.StepKey, when the caller computed them (the captured values' digests need pickling)
    keys: dict[str, Any] = field(default_factory=dict)
    #: step -> the pins of its ``--dependencies auto`` requirements (filled where the kernel's values are)
    dependencies: dict[str, list[str]] = field(default_factory=dict)
    #: "local run <id>" / "execution <arn>" -> step -> why it changed since then ([] = unchanged)
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: The ConditionSteps (--when), in notebook order of their first step
    conditions: list[cond_mod.Condition] = field(default_factory=list)
    #: step -> what it read when it last ran locally (files, folders, modules, packages, environment variables,
    #: what cannot be pinned: local.reads.summary), when the caller looked it up
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Steps with no image_uri where the SDK has none either: a local run needs none, the service does
    no_image: list[str] = field(default_factory=list)
    #: The steps' workspace (IncludeLocalWorkDir): files, bytes and which steps import which local modules
    ships: dict[str, Any] = field(default_factory=dict)
    #: SageMaker managed MLflow: {"arn": ..., "experiment": ...} (%pipeline config --mlflow-arn)
    mlflow: dict[str, str] = field(default_factory=dict)
    #: What the steps' workspace ships (core.workdir.Shipping), None: no workspace; decided once, here
    shipping: Any = None
    #: A --foreach cell under SDK v3: SageMaker's ForEach step ("foreach"), or one step per item ("steps")
    foreach_as: str = "foreach"

    def step(self, name: str) -> StepNode:
        return next(s for s in self.steps if s.name == name)

    def condition(self, name: str) -> cond_mod.Condition:
        return next(c for c in self.conditions if c.name == name)

    def to_json(self) -> dict[str, Any]:
        """The ``smstep graph --json`` document."""
        return {
            "pipeline": self.name,
            "parameters": {k: _jsonable(v) for k, v in self.parameters.items()},
            "steps": [
                {
                    "name": s.name,
                    "inputs": {i.name: i.to_json() for i in s.inputs.values() if i.kind != "import"},
                    "imports": [i.statement for i in s.imports],
                    "outputs": list(s.outputs),
                    "depends_on": list(s.depends_on),
                    "settings": {
                        k: {**r.to_json(), "value": _jsonable(secrets.shown(k, r.to_json()["value"]))}
                        for k, r in s.settings.items()
                    },
                    **({"key": self.keys[s.name].key} if s.name in self.keys else {}),
                    **({"dependencies": self.dependencies[s.name]} if s.name in self.dependencies else {}),
                    **_guard_json(self, s),
                    **({"saves": [v.to_json() for v in s.saves]} if s.saves else {}),
                    **({"unchecked_outputs": list(s.unchecked)} if s.unchecked else {}),
                    **({"reads": self.reads[s.name]} if s.name in self.reads else {}),
                    **({"foreach": s.fanout.to_json()} if s.fanout is not None else {}),
                }
                for s in self.steps
            ],
            "conditions": [c.to_json() for c in self.conditions],
            "problems": [
                {"step": p.step, "line": p.line, "severity": p.severity, "message": p.message, "fix": p.fix}
                for p in self.report.problems
            ],
            "kernel_image": self.kernel_image_note,
            **({"ships": self.ships} if self.ships else {}),
            **({"mlflow": self.mlflow} if self.mlflow else {}),
            **({"changed_since": self.changes} if self.changes else {}),
        }


def _guard_json(graph: PipelineGraph, node: StepNode) -> dict[str, Any]:
    """A guarded step's ``when`` (and ``else_fail``, for the step that declared it) in ``graph --json``."""
    if node.guard is None:
        return {}
    condition = graph.condition(node.guard)
    out: dict[str, Any] = {"when": condition.expression, "condition": condition.name}
    spec = node.cell.step
    if spec is not None and spec.else_fail is not None and condition.else_fail is not None:
        out["else_fail"] = condition.else_fail.text
    return out


def path_literals(node: StepNode, values: Mapping[str, Any] | None = None) -> list[tuple[str, int]]:
    """The string literals of a step's code that could be paths: (text, line in the body); with ``values`` (what
    the step's cell saw), its captured string constants too (``DATA_PATH = "data/x.csv"`` in a cell above)."""
    try:
        tree = ast.parse(node.cell.source)
    except SyntaxError:
        return []
    found = [(n.value, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    if values is not None:
        found += [
            (values[i.name], i.line)
            for i in sorted(node.captured, key=lambda i: i.line)
            if i.name in values and isinstance(values[i.name], str)
        ]
    return [
        (text, line)
        for text, line in found
        if text
        and len(text) <= 1024
        and "\n" not in text
        and "\0" not in text
        and "://" not in text
        and text not in (".", "..")
    ]


def local_file_reads(
    node: StepNode,
    root: Path | None,
    values: Mapping[str, Any] | None = None,
) -> list[tuple[str, int, Path]]:
    """String literals in a step's code (and, given ``values``, its captured string constants) that name a file on
    this machine: (text, line in the body, path).

    Relative ones start at the notebook's folder, as in the kernel. These are what a local run reads
    and a SageMaker job cannot: each is a warning, and its content is part of the step's key.
    """
    found: dict[str, tuple[str, int, Path]] = {}
    for text, line in path_literals(node, values):
        path = Path(text).expanduser()
        if not path.is_absolute():
            if root is None:
                continue
            path = root / path
        try:
            if path.is_file():
                found.setdefault(text, (text, line, path))
        except OSError:
            continue
    return list(found.values())


def local_folder_reads(
    node: StepNode,
    root: Path | None,
    values: Mapping[str, Any] | None = None,
) -> list[tuple[str, int, Path]]:
    """Relative path literals with a ``/`` that name a folder beside the notebook (``"data/"``, joined
    with a file name later, as in ``pd.read_csv(path + "train.csv")``): the job has no such folder."""
    if root is None:
        return []
    found: dict[str, tuple[str, int, Path]] = {}
    for text, line in path_literals(node, values):
        if "/" not in text or Path(text).expanduser().is_absolute() or text.strip("/.") == "":
            continue
        try:
            if (root / text).is_dir():
                found.setdefault(text, (text, line, root / text))
        except OSError:
            continue
    return list(found.values())


def with_dependents(depends_on: Mapping[str, Iterable[str]], names: Iterable[str]) -> set[str]:
    """``names`` and every step that depends on one of them, directly or not."""
    chosen = set(names)
    grew = True
    while grew:
        more = {n for n, deps in depends_on.items() if n not in chosen and chosen & set(deps)}
        chosen |= more
        grew = bool(more)
    return chosen


def upstream_of(depends_on: Mapping[str, Iterable[str]], names: Iterable[str]) -> set[str]:
    """Every step one of ``names`` depends on, directly or not, outside ``names``."""
    chosen = set(names)
    found: set[str] = set()
    todo = [d for n in chosen for d in depends_on.get(n, [])]
    while todo:
        name = todo.pop()
        if name not in found and name not in chosen:
            found.add(name)
            todo += depends_on.get(name, [])
    return found


def dependency_order(names: Iterable[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """``names``, each after the steps it depends on; the steps that become ready together keep their given order.

    ``graphlib``'s sorter, in rounds: every step whose dependencies are placed, then the next round. Dependencies
    outside ``names`` are ignored. Raises ``graphlib.CycleError`` on a cycle.
    """
    position = {n: i for i, n in enumerate(dict.fromkeys(names))}
    sorter = graphlib.TopologicalSorter({n: [d for d in depends_on.get(n, ()) if d in position] for n in position})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order += ready
        sorter.done(*ready)
    return order


def pipeline_role(graph: PipelineGraph) -> str | None:
    """The role the pipeline itself runs as: the notebook-wide (or first step's) role."""
    for node in graph.steps:
        if "role" in node.settings:
            return node.settings["role"].value
    return None


def check_buildable(graph: PipelineGraph, for_the_service: bool = True) -> None:
    """Refuse to build a graph with errors, or with no step (nothing is uploaded); ``for_the_service``: a
    definition SageMaker will run (submit, definition, export, schedule) also needs every step's image."""
    if not graph.steps and not graph.report.errors:
        raise SmstepError("the notebook has no %%step cells", fix="mark a cell with %%step NAME and run it")
    graph.report.raise_if_errors()
    if for_the_service and graph.no_image:
        raise SmstepError(setting_rules.no_image_problem(graph.no_image, len(graph.steps)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclass
class Bindings:
    """What each name is bound to at a point of the notebook, walking its cells in order.

    A name has at most one current binding: the latest cell that wrote it
    (``writer``), an import in an earlier step (``imported``: re-done in the
    steps that use it, a module is never data), or a ``del`` that always runs
    (``deleted``: reading it is a NameError when the notebook runs top to bottom).
    ``derived`` marks names an ordinary cell computed from a step's output.
    """

    writer: dict[str, Cell] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # name -> the import statement
    deleted: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (who, line in the cell)
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (step output, step)

    def bind(self, var: str, cell: Cell) -> None:
        self.writer[var] = cell
        self.imported.pop(var, None)
        self.deleted.pop(var, None)

    def after_step(self, cell: Cell, node: StepNode) -> None:
        analysis = cell.analysis
        assert analysis is not None
        for var in candidate_outputs(cell, node):
            if var in node.inputs and node.inputs[var].kind == "import":
                continue  # `np.append(...)` / `sys.path.append(...)` does not make a module an output
            if var in analysis.imports and (cell.step is None or var not in (cell.step.outputs or ())):
                self.writer.pop(var, None)
                self.deleted.pop(var, None)
                self.imported[var] = analysis.imports[var]
            else:
                self.bind(var, cell)
            self.derived.pop(var, None)
        self.forget(analysis.deletes, cell.label, offset=1)  # the %%step line is the cell's line 1

    def forget(self, deletes: Mapping[str, int], who: str, offset: int = 0) -> None:
        for var, line in deletes.items():
            self.writer.pop(var, None)
            self.imported.pop(var, None)
            self.derived.pop(var, None)
            self.deleted[var] = (who, line + offset)


def candidate_outputs(cell: Cell, node: StepNode | None = None) -> set[str]:
    assert cell.analysis is not None
    found = set(cell.analysis.outputs) | (set(node.hidden_changes) if node is not None else set())
    if cell.step is not None and cell.step.outputs is not None:
        return set(cell.step.outputs) | found
    return found


class _Layered(Mapping[str, Any]):
    """A step cell's own values over the namespace: what it saw first, the rest as the namespace has it."""

    def __init__(self, seen: Mapping[str, Any], namespace: Mapping[str, Any]) -> None:
        self.seen, self.namespace = seen, namespace

    def __getitem__(self, name: str) -> Any:
        return self.seen[name] if name in self.seen else self.namespace[name]

    def __contains__(self, name: object) -> bool:
        return name in self.seen or name in self.namespace

    def __iter__(self) -> Iterator[str]:
        yield from self.seen
        yield from (n for n in self.namespace if n not in self.seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def values_at(cell: Cell, namespace: Mapping[str, Any]) -> Mapping[str, Any]:
    """The values a step's cell saw (``Cell.seen``: recorded when the notebook reached it) over
    ``namespace``: the one view of a step's captured values, for the graph and for every build.
    Notebook order is the truth: a later cell that rebinds a name does not reach the step."""
    return _Layered(cell.seen, namespace) if cell.seen else namespace
