"""Fan-out cells: ``%%step train --foreach lr=learning_rates [--max-concurrency N] [--select max:auc]``.

The cell runs once per item, with ``lr`` bound to the item. For later cells, every name the cell
assigns is a list in item order (as Metaflow's join step gets it), or, with ``--select max:auc``, the
value of the iteration whose ``auc`` is largest (the first such iteration on a tie).

**The graph expands it**: one node per item, ``train-0 … train-N-1`` (each captures its item as a value, so
each has its own content key and cache entry), and a gather node named ``train`` that takes every iteration's
outputs and makes the lists (or the selection); later steps read ``train`` as they would any step.

**The build** (``sdk.build``) makes of it, under SDK v3 3.27+, SageMaker's ``ForEachStep``
(:func:`foreach_name`) over the items' numbers, whose one body step takes the cell's name, so the service
names its children as the iterations; the body runs the iteration its item numbers (its item pickled as the
kernel held it, never through JSON); the gather is :func:`gather_name` there. Under SDK v2, which has no
ForEach, the nodes are steps as they are, and ``--max-concurrency K`` chains the iterations in K lanes
(iteration ``i`` runs after ``i-K``). Either way the items must be known when the pipeline is built: a list
made in an ordinary cell. Items from a parameter or an upstream step are refused with that reason.

``--select`` is the gather's, under both lines: a ForEach's ``Selector`` compares a property of the children's
jobs (a ``Get`` of ``IterationOutput``), and a ``@step``'s return value is not one: it is in the child's results
object on S3, which only a ``JsonGet`` reads.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_smstep.errors import Report

if TYPE_CHECKING:
    from jupyter_smstep.core import conditions as cond_mod
    from jupyter_smstep.core.model import StepNode
    from jupyter_smstep.core.registry import Cell

#: At most this many items (ForEachStep's own limit on literal items; one job each)
MAX_ITEMS = 100
#: --max-concurrency's range (ForEachStep's)
MIN_CONCURRENCY, MAX_CONCURRENCY = 1, 50
#: --select's ways to pick an iteration
PICKS = ("max", "min")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
#: The names a gather step's arguments take: ``auc__0`` is iteration 0's ``auc``
_ARG = "{name}__{index}"


class ForEachError(ValueError):
    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


def parse_foreach(text: str) -> tuple[str, str]:
    """``"lr=learning_rates"`` -> ``("lr", "learning_rates")``."""
    var, sep, source = (part.strip() for part in text.partition("="))
    if not sep or not _NAME.match(var) or not _NAME.match(source):
        raise ForEachError(
            f"--foreach {text!r}: expected VAR=ITEMS, two Python names",
            fix="e.g. --foreach lr=learning_rates: the cell runs once per item of learning_rates, with lr bound to it",
        )
    if var == source:
        raise ForEachError(
            f"--foreach {text!r}: the item and the list need different names", fix=f"e.g. --foreach item={source}"
        )
    return var, source


def parse_select(text: str) -> tuple[str, str]:
    """``"max:auc"`` -> ``("max", "auc")``."""
    pick, sep, name = (part.strip() for part in text.partition(":"))
    if not sep or pick not in PICKS or not _NAME.match(name):
        raise ForEachError(
            f"--select {text!r}: expected max:NAME or min:NAME",
            fix="e.g. --select max:auc: later cells get the values of the iteration whose auc is largest",
        )
    return pick, name


def pick(pick_: str, scores: list[Any]) -> int:
    """The selected iteration: the first whose score is the largest (``max``) or smallest (``min``). The kernel
    and the gather step both pick with this rule (the gather's source spells out the same expression)."""
    best = max(scores) if pick_ == "max" else min(scores)
    return scores.index(best)


def iteration_name(step: str, index: int) -> str:
    return f"{step}-{index}"


#: SDK v3's definition of a fan-out (``sdk.build``): the iterations are the children of a ``ForEachStep`` named
#: :func:`foreach_name`, whose one body step takes the cell's name (so SageMaker names its children
#: ``train-0 …``, as the expansion does); the gather step, which needs a name of its own there, is
#: :func:`gather_name`. The local runner names it back (``local.definition``).
def foreach_name(step: str) -> str:
    return f"{step}{_FOREACH}"


_FOREACH = "-foreach"


def gather_name(step: str) -> str:
    return f"{step}-gather"


def named_back(names: Iterable[str]) -> dict[str, str]:
    """The steps of an execution the notebook names otherwise: each fan-out's gather (``<step>-gather``, beside
    its ``<step>-foreach``) -> the cell's name. Its children already have the iterations' names."""
    listed = set(names)
    return {
        gather_name(name.removesuffix(_FOREACH)): name.removesuffix(_FOREACH)
        for name in listed
        if name.endswith(_FOREACH) and gather_name(name.removesuffix(_FOREACH)) in listed
    }


def iterations_of(steps: list[StepNode]) -> dict[str, list[StepNode]]:
    """Each fan-out cell's iteration nodes, in item order: cell step -> nodes."""
    found: dict[str, list[StepNode]] = {}
    for node in steps:
        if node.fanout is not None and node.fanout.index is not None:
            found.setdefault(node.fanout.step, []).append(node)
    return found


def for_each_arguments(fan: FanOut) -> dict[str, Any]:
    """The ``ForEachStep`` keywords of a fan-out (without its body and what it runs after). Its items are the
    iterations' numbers: the body runs that iteration, whose item is pickled as the kernel held it."""
    each = foreach_name(fan.step)
    return {
        "name": each,
        "display_name": each,
        "description": descriptions(fan)[each],
        "iterable_items": list(range(len(fan.items))),
        "max_concurrency": fan.max_concurrency or min(len(fan.items), MAX_CONCURRENCY),
    }


def runs_after(iterations: list[StepNode]) -> list[str]:
    """The steps a fan-out's ForEach runs after: those its cell reads and its ``--after`` steps (not the lanes
    the expansion chains iterations in: ``MaxConcurrency`` bounds them)."""
    siblings = {n.name for n in iterations}
    reads = [i.step for i in iterations[0].links if i.step is not None]
    return list(dict.fromkeys(reads + [d for n in iterations for d in n.order_only if d not in siblings]))


def descriptions(fan: FanOut) -> dict[str, str]:
    """What the definition of a fan-out built as a ForEach says of its steps (their ``Description``)."""
    made = "the selected iteration's values" if fan.select else "its iterations' values as lists"
    return {
        foreach_name(fan.step): f"jupyter_smstep step {fan.step!r}: --foreach {fan.var}={fan.source}, "
        f"{len(fan.items)} items",
        fan.step: f"jupyter_smstep step {fan.step!r}, once per item of {fan.source!r}",
        gather_name(fan.step): f"jupyter_smstep step {fan.step!r}: {made}",
    }


def items_of(value: Any) -> tuple[tuple[Any, ...] | None, str]:
    """The items of a --foreach list, or (None, why it cannot be one)."""
    if isinstance(value, (str, bytes)):
        return None, f"is a {type(value).__name__}: the cell would run once per character"
    if isinstance(value, (set, frozenset)):
        return None, "is a set, which has no order: each item's iteration number would change from run to run"
    if isinstance(value, Mapping):
        return None, "is a dict: say which items, e.g. list(d.items()) or list(d)"
    if isinstance(value, (list, tuple, range)):
        return tuple(value), ""
    if hasattr(value, "tolist") and getattr(value, "ndim", 1) == 1:  # a 1-D numpy array, a pandas Series
        return tuple(value), ""
    return None, f"is a {type(value).__name__}, not a list"


@dataclass(frozen=True)
class FanOut:
    """What a fan-out step node is: one iteration (``index``) or the gather (``index`` None)."""

    step: str  # the cell's step name, which the gather takes
    var: str  # the name each iteration binds to its item
    source: str  # the name holding the items
    items: tuple[Any, ...]
    max_concurrency: int | None = None
    select: tuple[str, str] | None = None
    index: int | None = None

    @property
    def iterations(self) -> list[str]:
        return [iteration_name(self.step, i) for i in range(len(self.items))]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "var": self.var,
            "source": self.source,
            "count": len(self.items),
            "max_concurrency": self.max_concurrency or len(self.items),
        }
        if self.index is not None:
            out["index"] = self.index
            out["item"] = _json_safe(self.items[self.index])
        else:
            out["items"] = [_json_safe(item) for item in self.items]
        if self.select is not None:
            out["select"] = f"{self.select[0]}:{self.select[1]}"
        return out


def _json_safe(value: Any) -> Any:
    """An item as ``graph --json`` shows it: itself when JSON holds it (numpy scalars as numbers), else its repr."""
    import json

    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


class ItemView(Mapping[str, Any]):
    """One iteration's view of the values its cell saw: the item under the loop's name, the rest as seen."""

    def __init__(self, base: Mapping[str, Any] | None, var: str, item: Any) -> None:
        self.base: Mapping[str, Any] = base or {}
        self.var, self.item = var, item

    def __getitem__(self, name: str) -> Any:
        return self.item if name == self.var else self.base[name]

    def __contains__(self, name: object) -> bool:
        return name == self.var or name in self.base

    def __iter__(self) -> Iterator[str]:
        yield self.var
        yield from (n for n in self.base if n != self.var)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return True


def gather_source(outputs: list[str], count: int, select: tuple[str, str] | None) -> str:
    """The gather step's body: each output as the list of the iterations' values, or the selected one's."""

    def listed(name: str) -> str:
        return "[" + ", ".join(_ARG.format(name=name, index=i) for i in range(count)) + "]"

    if select is None:
        return "".join(f"{name} = {listed(name)}\n" for name in outputs)
    how, key = select
    lines = [f"_scores = {listed(key)}", f"_best = _scores.index({how}(_scores))"]
    lines += [f"{name} = {listed(name)}[_best]" for name in outputs]
    return "\n".join(lines) + "\n"


def check(node: StepNode, fan: FanOut | None, why: str, report: Report) -> None:
    """The errors a fan-out step can have before anything is built (``why``: why its items are unknown)."""
    spec = node.cell.step
    assert spec is not None
    if fan is None:
        var, source = spec.foreach or ("", "")
        report.error(
            f"--foreach {var}={source}: {why}",
            fix="make the list in an ordinary cell above (the items are then fixed when the pipeline is "
            "built, one job each)",
            step=node.name,
            line=1,
        )
        return
    if not fan.items:
        report.error(
            f"--foreach {fan.var}={fan.source}: {fan.source!r} is empty, so there is nothing to run",
            fix=f"give {fan.source!r} at least one item",
            step=node.name,
            line=1,
        )
    if len(fan.items) > MAX_ITEMS:
        report.error(
            f"--foreach {fan.var}={fan.source}: {len(fan.items)} items, more than {MAX_ITEMS} (one job each; "
            "SageMaker's ForEach takes at most 100 literal items too)",
            fix="split the sweep over two cells, or sample fewer items",
            step=node.name,
            line=1,
        )
    if fan.max_concurrency is not None and not MIN_CONCURRENCY <= fan.max_concurrency <= MAX_CONCURRENCY:
        report.error(
            f"--max-concurrency {fan.max_concurrency}: must be between {MIN_CONCURRENCY} and {MAX_CONCURRENCY}",
            fix="e.g. --max-concurrency 4",
            step=node.name,
            line=1,
        )
    if spec.saves:
        report.error(
            "--save with --foreach: every iteration would write the same object",
            fix="save from a step below, which reads the list (or the selected value)",
            step=node.name,
            line=1,
        )
    assigned = set(node.cell.analysis.outputs) if node.cell.analysis is not None else set()
    if fan.select is not None and fan.select[1] not in assigned:
        report.error(
            f"--select {fan.select[0]}:{fan.select[1]}: the cell does not assign {fan.select[1]!r}, so "
            "there is nothing to compare",
            fix="name a value the cell computes, e.g. --select max:auc",
            step=node.name,
            line=1,
        )


def expand(
    nodes: list[StepNode], conditions: list[cond_mod.Condition], gather_settings: Mapping[str, Any], report: Report
) -> list[StepNode]:
    """Each fan-out node as its iterations and its gather (see the module docstring); the rest as they are.
    ``gather_settings``: step -> the gather's settings (the cell's, without its instance type and count)."""
    from jupyter_smstep.core.model import Input, StepNode
    from jupyter_smstep.core.registry import analyse_source

    taken = {n.name for n in nodes}
    out: list[StepNode] = []
    for node in nodes:
        fan: FanOut | None = getattr(node, "fanout", None)
        if fan is None or fan.index is not None:
            out.append(node)
            continue
        reserved = {foreach_name(node.name), gather_name(node.name)}
        clash = [n for n in taken if re.fullmatch(re.escape(node.name) + r"-\d+", n) or n in reserved]
        if clash:
            report.error(
                f"step '{clash[0]}' has a name this --foreach step's pipeline takes (its iterations "
                f"'{node.name}-0', '{node.name}-1', …, and on SDK v3 '{foreach_name(node.name)}' and "
                f"'{gather_name(node.name)}')",
                fix=f"rename step '{clash[0]}'",
                step=node.name,
                line=1,
            )
            out.append(node)
            continue
        names = fan.iterations
        body_outputs = list(dict.fromkeys(node.outputs + ([fan.select[1]] if fan.select else [])))
        kept = [v for v in node.outputs if v not in node.unchecked]  # a value the job may leave out cannot gather
        for i, item in enumerate(fan.items):
            cell = _iteration_cell(node.cell, names[i], fan, i, item)
            lanes = [names[i - fan.max_concurrency]] if fan.max_concurrency and i >= fan.max_concurrency else []
            out.append(
                dataclasses.replace(
                    node,
                    name=names[i],
                    cell=cell,
                    inputs=dict(node.inputs),
                    outputs=list(body_outputs),
                    depends_on=list(node.depends_on) + lanes,
                    settings=dict(node.settings),
                    hidden_changes=dict(node.hidden_changes),
                    unchecked=list(node.unchecked),
                    fanout=dataclasses.replace(fan, index=i),
                )
            )
        source = gather_source(kept, len(names), fan.select)
        analysis, _ = analyse_source(source)
        assert node.cell.step is not None
        spec = dataclasses.replace(
            node.cell.step,
            foreach=None,
            saves=(),
            when=None,
            else_fail=None,
            max_concurrency=None,
            select=None,
            inputs=None,
            outputs=None,
            after=(),
        )
        cell = dataclasses.replace(
            node.cell,
            key=node.cell.key + "#gather",
            source=source,
            analysis=analysis,
            step=spec,
            seen=None,
            unbound=frozenset(),
            changed_in_kernel=(),
        )
        wanted = kept + ([fan.select[1]] if fan.select and fan.select[1] not in kept else [])
        inputs = {
            _ARG.format(name=v, index=i): Input(_ARG.format(name=v, index=i), "step", 0, step=names[i], output=v)
            for v in wanted
            for i in range(len(names))
        }
        out.append(
            StepNode(
                node.name,
                cell,
                inputs,
                kept,
                list(names),
                dict(gather_settings.get(node.name, {})),
                guard=node.guard,
                fanout=fan,
            )
        )
        for condition in conditions:
            if node.name in condition.steps:
                at = condition.steps.index(node.name)
                condition.steps[at : at + 1] = [*names, node.name]
    return out


def _iteration_cell(cell: Cell, name: str, fan: FanOut, index: int, item: Any) -> Cell:
    assert cell.step is not None
    spec = dataclasses.replace(cell.step, name=name, foreach=None, max_concurrency=None, select=None)
    return dataclasses.replace(
        cell,
        key=f"{cell.key}#{index}",
        step=spec,
        cell_id=None,
        label=f"step '{fan.step}' ({fan.var}={item!r}, item {index})",
        seen=ItemView(cell.seen, fan.var, item),
    )
