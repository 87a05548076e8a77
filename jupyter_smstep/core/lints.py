"""The graph's lints: names as SageMaker takes them (the pipeline's, the steps', the parameters'), what a step's
code may not do, ``-p`` values bound to settings, a global random state an earlier cell seeded, ``$name`` left
unexpanded on a ``%%step`` line, and one report line per problem.

Pure: no IPython, no sagemaker. :mod:`.graph` runs them.
"""

from __future__ import annotations

import re
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import settings as settings_mod
from jupyter_smstep.errors import Report
from jupyter_smstep.core.model import DEFAULT_PIPELINE_NAME, MISPLACED_FIX, PipelineGraph, StepNode
from jupyter_smstep.core.registry import Cell, Registry
from jupyter_smstep.core import setting_rules


def check_names(name: str, registry: Registry, report: Report) -> None:
    """The pipeline's name, the steps' names and the parameters' names, as SageMaker takes them."""
    if not settings_mod.PIPELINE_NAME.match(name):
        report.error(
            f"pipeline name {name!r} is invalid: SageMaker allows letters, digits and single dashes "
            "(no underscores or spaces), up to 256 characters",
            fix=f"%pipeline config --name {suggest_pipeline_name(name)}",
        )
    check_step_names(registry, report)
    check_parameters(registry, report)


def check_step_code(name: str, analysis: Any, report: Report) -> None:
    """What a step's code may not do, since it runs as a function in a job: ``import *``, import
    jupyter_smstep, ``return`` / ``yield`` / ``global`` at its top level."""
    for line in analysis.star_imports:
        report.error(
            "`from ... import *` in a step: the names it brings in cannot be known",
            fix="import the names you use explicitly",
            step=name,
            line=line + 1,
        )
    for var, written in analysis.imports.items():
        if "jupyter_smstep" in written:
            report.error(
                f"`{written}` in a step: the step's container has no jupyter_smstep",
                fix=f"import it in an ordinary cell above (`{written}`); a step that reads "
                f"`{var}` gets the execution's values as arguments",
                step=name,
                line=(analysis.writes.get(var) or 0) + 1,
            )
    for line, keyword in analysis.misplaced:
        report.error(
            f"`{keyword}` at the top level of a %%step cell: the cell is the step function's body, "
            "and the step returns the variables later steps read",
            fix=MISPLACED_FIX[keyword],
            step=name,
            line=line + 1,
        )


def warn_reseeded(registry: Registry, report: Report) -> None:
    """A step that draws from a global random state an earlier cell seeded, without seeding it first
    itself: in the kernel it continues the seeded sequence, in its job it starts unseeded."""
    from jupyter_smstep.core import randomness

    names: dict[str, str] = {}
    seeded: dict[str, tuple[Cell, randomness.Use]] = {}
    for cell in registry.cells:
        if cell.analysis is None:
            continue
        names.update(randomness.aliases(cell.analysis.imports.values()))
        seeds, draws = randomness.uses(cell.source, names)
        if cell.step is not None:
            own: dict[str, int] = {}
            for seed in seeds:
                own.setdefault(seed.library, seed.line)
            warned: set[str] = set()
            for draw in draws:
                seeded_first = own.get(draw.library, draw.line + 1) < draw.line
                if draw.library in seeded and draw.library not in warned and not seeded_first:
                    warned.add(draw.library)
                    where, seed = seeded[draw.library]
                    seed_line = seed.line + (1 if where.step is not None else 0)  # a step's body starts on line 2
                    report.warn(
                        f"draws from {draw.library}'s global random state ({draw.call}), which {where.label} seeds "
                        f"({seed.call}, line {seed_line}): in the kernel it continues that seeded sequence, in its "
                        "job it starts unseeded, so its numbers (and what is computed from them) differ from the "
                        "kernel's",
                        step=cell.step.name,
                        line=draw.line + 1,
                        fix=f"seed it at the top of this step too ({seed.call}(...)), or draw from a generator made "
                        "in the step from a seed parameter (rng = np.random.default_rng(seed))",
                    )
        for seed in seeds:
            seeded[seed.library] = (cell, seed)


def check_step_names(registry: Registry, report: Report) -> None:
    seen: dict[str, int] = {}
    for cell in registry.steps:
        name = cell.step.name  # type: ignore[union-attr]
        if not settings_mod.STEP_NAME.match(name):
            report.error(
                f"step name {name!r} is invalid: SageMaker allows 1-64 letters, digits, '-' and '_'",
                fix=f"rename it, e.g. %%step {suggest_step_name(name)}",
                step=name,
            )
        elif name.startswith("-"):
            # The job runs `invoke_function ... --pipeline_step_name -load-`, and argparse reads the
            # name as an option: the job fails as it starts (the local runner runs the same command).
            report.error(
                f"step name {name!r} starts with '-': SageMaker accepts it, but the @step job passes it "
                "to the SDK's entry point as `--pipeline_step_name " + name + "`, which reads it as an "
                "option and fails as the job starts",
                fix=f"rename it, e.g. %%step {name.lstrip('-') or 'step'}",
                step=name,
            )
        seen[name] = seen.get(name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            report.error(
                f"{count} cells are named step '{name}'",
                fix="give each %%step cell its own name (or remove the duplicate with %pipeline remove)",
                step=name,
            )


def check_parameters(registry: Registry, report: Report) -> None:
    for pname, value in registry.parameters.items():
        if not isinstance(value, (str, int, float, bool)):
            report.error(
                f"parameter {pname!r} has a {type(value).__name__} value; pipeline parameters "
                "are str, int, float or bool",
                fix=f"give {pname!r} a plain value",
            )


def dedupe(report: Report) -> None:
    seen = set()
    unique = []
    for p in report.problems:
        key = (p.message, p.step, p.line, p.severity)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    report.problems[:] = unique


def suggest_pipeline_name(name: str) -> str:
    import re

    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")
    return cleaned[:256] or DEFAULT_PIPELINE_NAME


def suggest_step_name(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:64] or "step"


def check_parameter_settings(graph: PipelineGraph, values: Mapping[str, Any]) -> None:
    """A run's ``-p`` values of the parameters settings are bound to (``--instance-type TrainingInstanceType``),
    checked as a literal is; raises :class:`SmstepError` before anything runs or is uploaded."""
    merged = {**graph.parameters, **values}
    report = Report()
    for node in graph.steps:
        bound = {
            r.value.name
            for r in node.settings.values()
            if isinstance(r.value, settings_mod.ParameterRef) and r.value.name in values
        }
        if bound:
            found = Report()
            setting_rules.validate(
                node.name, settings_mod.with_parameter_values(node.settings, merged), found, in_studio=True
            )
            report.problems += [p for p in found.errors if any(f"parameter {name})" in p.message for name in bound)]
    report.raise_if_errors()


#: What IPython would expand in another magic's line (``$name``, ``$$`` aside)
_DOLLAR = re.compile(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def warn_unexpanded(node: StepNode, report: Report) -> None:
    """``$name`` on a %%step line stays as written (a headless build has no kernel values to expand it
    with): say so, once, unless it is in a shell command the job runs (``--pre-execution-commands``)."""
    import shlex

    spec = node.cell.step
    assert spec is not None
    try:
        words = shlex.split(spec.header)
    except ValueError:
        return
    previous = ""
    for word in words:
        match = _DOLLAR.search(word)
        if match and previous not in ("--pre-execution-commands",):
            report.warn(
                f"the %%step line has ${match.group(1)} ({word!r}): %%step reads its line as written, so the "
                "value is that text, not the kernel variable (a headless build could not expand it)",
                fix="write the value itself (or, for an option that takes one, a pipeline parameter's "
                "name: --instance-type TrainingInstanceType)",
                step=node.name,
                line=1,
            )
            return
        previous = word if word.startswith("--") else previous
