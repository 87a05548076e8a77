"""The cache side of a local run: the steps that succeed without a process, and what a step leaves for the next run.

- a step whose key an earlier run has, with everything it read unchanged (:func:`.cache.why_not_reused`), takes
  that run's result, and its ``--save`` objects are put again into this run's S3;
- a step whose result comes from elsewhere (``run --upstream``: a SageMaker execution's) takes it;
- a succeeded step's record goes into the cache, with the objects it read that another step writes with ``--save``
  (such a read cannot be pinned, and one of a step it does not run after is a warning).

:class:`Reuse` works on its :class:`~jupyter_smstep.local.scheduler.Execution`'s steps and run folder.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from jupyter_smstep.core.model import upstream_of
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.local import cache as cache_mod, container as containers
from jupyter_smstep.local import reads as reads_mod
from jupyter_smstep.local.attempt import Attempt
from jupyter_smstep.local.definition import split_s3_uri, to_text

if TYPE_CHECKING:
    from jupyter_smstep.local.scheduler import Execution, StepRun


class Reuse:
    """What one execution takes instead of running, and records for the next."""

    def __init__(self, execution: Execution) -> None:
        self.ex = execution

    def cached(self, st: StepRun) -> bool:
        """Succeed ``st`` with an earlier run's verified results for the same key; no process is started."""
        key = st.result.key
        if self.ex.cache is None or key is None or st.spec.name in self.ex.force or st.result.attempts:
            return False
        found = self.ex.cache.lookup(key)
        if found is None:
            return False
        # an upstream step that ran again may have given other values
        states = self.ex.states
        upstream = {d: states[d].result.payload_sha256 if d in states else None for d in st.spec.depends_on}
        why = cache_mod.why_not_reused(found, upstream, self.ex.run_dir.parent, self.ex.saves.get(st.spec.name, []))
        if why is not None or not isinstance(found, cache_mod.Entry):
            self.ex.warn(st, f"runs again: {why}")
            return False
        try:
            args = self.ex.resolver.evaluate(st.spec.arguments)
            output_uri = to_text(args["OutputDataConfig"]["S3OutputPath"])
            cache_mod.place(found, self.ex.s3.path(output_uri))
            self._put_saved_objects(st, found.run_id)
        except (OSError, KeyError, ValueError, SmstepError) as exc:
            self.ex.warn(st, f"could not reuse the result of run {found.run_id} ({exc}); running the step")
            return False
        st.result.cached_from = found.run_id
        st.result.reads = reads_mod.summary(found.reads, self.ex.root)
        self._succeed_in_place(
            st, args, output_uri, f"cached: the result of run {found.run_id}", {"cached_from": found.run_id}
        )
        return True

    def taken(self, st: StepRun) -> bool:
        """Succeed ``st`` with results from elsewhere (``self.ex.taken``); no process is started."""
        if st.spec.name not in self.ex.taken or st.result.attempts:
            return False
        folder, source = self.ex.taken[st.spec.name]
        args = self.ex.resolver.evaluate(st.spec.arguments)
        output_uri = to_text(args["OutputDataConfig"]["S3OutputPath"])
        target = self.ex.s3.path(output_uri)
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(folder.iterdir()):
            shutil.copyfile(file, target / file.name)
        st.result.taken_from = source
        self._succeed_in_place(st, args, output_uri, f"from {source}", {"taken_from": source})
        return True

    def _succeed_in_place(self, st: StepRun, args: dict, output_uri: str, message: str, info: dict) -> None:
        """``st`` succeeded without a process: its results are already at ``output_uri`` (reused or taken)."""
        result = st.result
        result.state = "succeeded"
        result.started = result.ended = time.time()
        result.duration = 0.0
        result.output_uri = output_uri
        result.payload_sha256 = self.ex.payload_hash(output_uri)
        st.properties = containers.job_properties(
            args, containers.job_name(self.ex.run_id, st.spec.name, 0), output_uri, self.ex.s3.region
        )
        self.ex.resolver.step_properties[st.spec.name] = st.properties
        self.ex.event(st, "succeeded", duration=0.0, message=message, info=info)

    def unordered_saves(self, st: StepRun, attempt: Attempt) -> list[str]:
        """The objects ``st`` read that another step writes with --save, unless that step is one ``st`` runs
        directly after (a reuse checks only its direct producers' results). Each is a read that cannot be pinned
        (its result is not reused); one of a step it does not run after at all is also a warning with the fix:
        on SageMaker both run at once, so it may read nothing, or an older execution's object."""
        if not attempt.caller or not self.ex.saves:
            return []
        writers = [
            (split_s3_uri(str(spec["uri"]).replace("{execution_id}", self.ex.run_id)), step)
            for step, specs in self.ex.saves.items()
            for spec in specs
        ]
        before = upstream_of({n: s.spec.depends_on for n, s in self.ex.states.items()}, [st.spec.name])
        found = []
        for bucket, key in self.ex.s3.reads_by(attempt.caller):
            writer = next(
                (
                    step
                    for (b, k), step in writers  # a format picked by type adds its suffix
                    if b == bucket and (key == k or key.startswith(k + "."))
                ),
                None,
            )
            if writer is None or writer == st.spec.name or writer in st.spec.depends_on:
                continue
            if writer in before:  # ordered, but not through a result the reuse check sees
                found.append(f"s3://{bucket}/{key}, which step '{writer}' writes (--save), without --after {writer}")
                continue
            self.ex.warn(
                st,
                f"read s3://{bucket}/{key}, which step '{writer}' writes (--save), but it does not run "
                f"after '{writer}': on SageMaker both run at once, so it may read nothing or an older "
                f"object, and its result is not reused (fix: %%step {st.spec.name} --after {writer})",
            )
            found.append(f"s3://{bucket}/{key}, which step '{writer}' writes (--save), without running after it")
        return found

    def _put_saved_objects(self, st: StepRun, run_id: str) -> None:
        """A reused step's --save objects, copied from the run whose result it reuses into this run's S3."""
        for spec in self.ex.saves.get(st.spec.name, []):
            old, suffix = cache_mod.saved_object(self.ex.run_dir.parent, run_id, spec)
            bucket, key = split_s3_uri(str(spec["uri"]).replace("{execution_id}", self.ex.run_id))
            target = self.ex.s3.path(f"s3://{bucket}/{key}{suffix}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old, target)

    def remember(self, st: StepRun, recorded: dict | None) -> None:
        key = st.result.key
        if self.ex.cache is None or key is None or not st.result.output_uri:
            return
        if recorded is None:
            self.ex.warn(st, "the step's process recorded nothing of what it read: its result is not cached")
            return
        try:
            known = {"payload.pkl": st.result.payload_sha256} if st.result.payload_sha256 else {}
            upstream = {d: self.ex.states[d].result.payload_sha256 for d in st.spec.depends_on if d in self.ex.states}
            self.ex.cache.record(
                key,
                self.ex.run_id,
                st.spec.name,
                self.ex.s3.path(st.result.output_uri),
                known,
                reads=recorded,
                upstream=upstream,
            )
        except OSError as exc:
            self.ex.warn(
                st,
                f"could not record the result in the cache {self.ex.cache.folder} ({exc.strerror or exc}): "
                "the next run runs this step again",
            )
