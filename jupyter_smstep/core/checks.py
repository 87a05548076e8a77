"""Checks of what a step's code names on this machine and in S3, which a SageMaker job would not find or would
race for: a local file or folder, a file one step writes and another reads, another step's ``--save`` object; and
each step's own ``--save`` targets (resolved, one writer per object).

Pure: no IPython, no sagemaker. ``core.graph`` runs them once every step is resolved.
"""

from __future__ import annotations

import ast
import os.path
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import files as files_mod, lints, workdir
from jupyter_smstep.core.model import (
    candidate_outputs,
    StepNode,
    local_file_reads,
    local_folder_reads,
    path_literals,
    upstream_of,
    values_at,
)
from jupyter_smstep.errors import Report


def local_paths(
    nodes: list[StepNode], namespace: Mapping[str, Any], root: Path | None, shipping: Any, report: Report
) -> None:
    """A local file or folder a step names, which a SageMaker job will not find (unless the workspace ships it)."""
    for node in nodes:
        seen = values_at(node.cell, namespace)
        constants = {seen[i.name]: i.name for i in node.captured if i.name in seen and isinstance(seen[i.name], str)}
        for kind, (literal, line, path) in [("file", r) for r in local_file_reads(node, root, seen)] + [
            ("folder", r) for r in local_folder_reads(node, root, seen)
        ]:
            if kind == "file" and workdir.travels(shipping, path):
                continue
            through = (
                f" through {constants[literal]}"
                if literal in constants and literal not in (t for t, _ in path_literals(node))
                else ""
            )  # a captured constant, said as the user wrote it
            where = (
                "a local run finds it on this machine"
                if Path(literal).expanduser().is_absolute()
                else "nor does a local run, which runs the step in its own folder as SageMaker does"
            )
            report.warn(
                f"names the local {kind} {literal!r}{through} ({path}): a SageMaker job runs in its own "
                f"container and will not find it ({where})",
                fix="upload it to S3 and read the s3:// URI (or pass the URI as a parameter), or "
                "ship it with IncludeLocalWorkDir and a CustomFileFilter in config.yaml",
                step=node.name,
                line=line + 1,
            )


def passed_files(nodes: list[StepNode], namespace: Mapping[str, Any], report: Report) -> None:
    """A local file one step writes and a later step reads does not travel between their containers
    (``core.files``): an error naming both lines."""
    writers: dict[str, tuple[str, int]] = {}  # normalised path -> (step, line in its body)
    for node in nodes:
        seen = values_at(node.cell, namespace)
        constants = {i.name: seen[i.name] for i in node.captured if i.name in seen and isinstance(seen[i.name], str)}
        own = {os.path.normpath(p) for p in files_mod.written_paths(node.cell.source, constants)}
        for text, line in path_literals(node, seen):
            writer = writers.get(os.path.normpath(text))
            if writer is not None and writer[0] != node.name and os.path.normpath(text) not in own:
                absolute = Path(text).expanduser().is_absolute()  # a local run shares this machine's files
                (report.warn if absolute else report.error)(
                    f"reads {text!r}, which step '{writer[0]}' writes (its line {writer[1] + 1}): "
                    + ("a local run on this machine finds it, but on SageMaker " if absolute else "")
                    + "each step runs in its own container, so the file does not travel from one to the other",
                    fix=f"pass the object as a variable (assign it in step '{writer[0]}', read the variable "
                    "here: it travels as data), or --save it to S3 there and read the s3:// URI here",
                    step=node.name,
                    line=line + 1,
                )
        for path, line in files_mod.written_paths(node.cell.source, constants).items():
            writers.setdefault(os.path.normpath(path), (node.name, line))


def read_saves(nodes: list[StepNode], namespace: Mapping[str, Any], report: Report) -> None:
    """A step that names another step's --save object (its ``s3://`` URI, or its bucket and its key) reads it
    over S3: unless it runs after that step, both run at once on SageMaker, and it reads nothing or an older
    execution's object. A warning with the fix (a local run also never reuses such a step: ``local.scheduler``)."""
    written = [
        (split, node.name)
        for node in nodes
        for save in node.saves
        if (split := save.uri[len("s3://") :].partition("/")) and "{" not in save.uri
    ]
    if not written:
        return
    depends_on = {n.name: list(n.depends_on) for n in nodes}
    for node in nodes:
        seen = values_at(node.cell, namespace)
        try:
            texts = {
                n.value
                for n in ast.walk(ast.parse(node.cell.source))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
            }
        except SyntaxError:
            continue
        texts |= {seen[i.name] for i in node.captured if isinstance(seen.get(i.name), str)}
        before = upstream_of(depends_on, [node.name])
        for (bucket, _, key), writer in written:
            named = f"s3://{bucket}/{key}" in texts or (bucket in texts and key in texts)
            if named and writer != node.name and writer not in before:
                report.warn(
                    f"names s3://{bucket}/{key}, which step '{writer}' writes (--save), but does not run "
                    f"after '{writer}': on SageMaker both run at once, so it reads nothing or an older "
                    "execution's object",
                    fix=f"%%step {node.name} --after {writer} (or read the value '{writer}' returns: it "
                    "travels as data)",
                    step=node.name,
                )


def saves(nodes: list[StepNode], name: str, save_root: str | None, report: Report) -> None:
    """Each step's ``--save`` targets, resolved; one object has one writer."""
    written: dict[str, tuple[str, str]] = {}  # --save URI -> (step, name): one object, one writer
    for node in nodes:
        _resolve_saves(node, name, save_root, report)
        lints.warn_unexpanded(node, report)
        for save in node.saves:
            if save.uri in written:
                other, what = written[save.uri]
                report.error(
                    f"--save {save.name} writes {save.uri}, which step '{other}' writes too (--save {what}): "
                    "the step that ends last would overwrite the other's object without a word",
                    fix="give each its own URI (or use {step} in the URI)",
                    step=node.name,
                    line=1,
                )
            written.setdefault(save.uri, (node.name, save.name))


def _resolve_saves(node: StepNode, pipeline: str, root: str | None, report: Report) -> None:
    """The step's ``--save`` values, each checked (an error on the %%step line, before anything runs)."""
    from jupyter_smstep.core import saves as saves_mod

    spec = node.cell.step
    assert spec is not None
    bound = candidate_outputs(node.cell, node)
    seen: dict[str, str] = {}
    for name, uri in spec.saves:
        try:
            save = saves_mod.resolve(name, uri, pipeline=pipeline, step=node.name, root=root, bound=bound)
        except saves_mod.SaveError as exc:
            report.error(exc.message, fix=exc.fix, step=node.name, line=1)
            continue
        if save.uri in seen:
            report.error(
                f"--save {name} and --save {seen[save.uri]} write the same object {save.uri}",
                fix="give each its own URI",
                step=node.name,
                line=1,
            )
            continue
        seen[save.uri] = name
        node.saves.append(save)
    if "cache" in node.settings and any(s.per_execution for s in node.saves):
        report.warn(
            "--cache with a --save URI that has {execution_id}: when SageMaker reuses the step's earlier "
            "result it runs nothing, so this execution's object is never written",
            fix="drop {execution_id} from the URI, or --cache from the step",
            step=node.name,
            line=1,
        )
