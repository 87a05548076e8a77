"""The scheduler's plan, as the service keeps it: which steps may start, and which can no longer run and why.

Pure: it reads the steps' states and the conditions' outcomes, and decides; it starts no process and reads no
clock. :class:`jupyter_smstep.local.scheduler.Execution` launches what it says is ready and applies its skips
(hamilton keeps its ``execution/state.py`` apart from its executors the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_smstep.core.model import dependency_order
from jupyter_smstep.local.definition import StepSpec
from jupyter_smstep.local.results import StepResult


@dataclass(frozen=True)
class Skip:
    """A step that can no longer run: a condition took the other branch, or a step it depends on did not succeed."""

    step: str
    because: str  # the condition step, or the step it depends on
    summary: str
    not_taken: bool  # the run went down another branch: not a failure of the run
    info: dict[str, Any] = field(default_factory=dict)


class Plan:
    """The steps of one execution in dependency order, and the rules that move them on."""

    def __init__(self, steps: Mapping[str, StepSpec]) -> None:
        self.steps = steps
        self.order = dependency_order(steps, {name: spec.depends_on for name, spec in steps.items()})

    def outcome(self, condition: str, results: Mapping[str, StepResult]) -> bool | None:
        """What a ConditionStep decided (None: not yet, or it failed)."""
        result = results[condition]
        return result.condition.get("outcome") if result.state == "succeeded" and result.condition else None

    def ready(self, name: str, results: Mapping[str, StepResult]) -> bool:
        """Pending, on the branch its condition took, and every step it depends on succeeded."""
        spec = self.steps[name]
        if results[name].state != "pending":
            return False
        if spec.branch is not None and self.outcome(spec.branch[0], results) != spec.branch[1]:
            return False
        return all(results[d].state == "succeeded" for d in spec.depends_on)

    def skips(self, results: Mapping[str, StepResult], idle: Callable[[str], bool], not_taken: set[str]) -> list[Skip]:
        """The pending steps that can no longer run, until none is left to find (a skip can block its dependents).

        ``idle``: the step has no attempt running or waiting for a retry. ``not_taken``: the steps already skipped
        because the run went down another branch; a step skipped because of one of them is not taken either.
        """
        states = {name: result.state for name, result in results.items()}
        not_taken = set(not_taken)
        found: list[Skip] = []
        changed = True
        while changed:
            changed = False
            for name in self.order:
                if states[name] != "pending" or not idle(name):
                    continue
                skip = self._blocked(name, states, results, not_taken)
                if skip is not None:
                    states[name] = "skipped"
                    if skip.not_taken:
                        not_taken.add(name)
                    found.append(skip)
                    changed = True
        return found

    def _blocked(
        self, name: str, states: Mapping[str, str], results: Mapping[str, StepResult], not_taken: set[str]
    ) -> Skip | None:
        branch = self.steps[name].branch
        if branch is not None and self.outcome(branch[0], results) is (not branch[1]):
            condition = results[branch[0]].condition or {}
            return Skip(
                name,
                branch[0],
                f"skipped: {condition.get('when') or 'the condition'} is "
                f"{'false' if branch[1] else 'true'} (step '{branch[0]}')",
                not_taken=True,
                info={"condition": branch[0], "outcome": not branch[1]},
            )
        for dep in self.steps[name].depends_on:
            if states[dep] in ("failed", "skipped"):
                return Skip(name, dep, f"skipped: step '{dep}' {states[dep]}", not_taken=dep in not_taken)
        return None
