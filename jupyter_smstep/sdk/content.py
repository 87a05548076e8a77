"""Content-addressed builds: an unchanged step gets the same definition and is never uploaded twice.

The SDK's ``Pipeline.definition()`` puts every step's pickled function and
arguments under ``<root>/<pipeline>/<step>/<build timestamp>/`` and signs them
with a key made fresh for every build, whose public half goes into the step's
``Environment``. So two builds of the same notebook differ, every build uploads
everything, and SageMaker's step caching never hits (sagemaker-python-sdk#2736).

Three changes, for both SDK lines; this module holds the first and joins them (:class:`BuildPlan`,
:func:`content_addressed`):

1. **The payload folder is the step's content key** (:mod:`jupyter_smstep.core.keys`)
   plus the signing key's id, instead of the build time. The SDK has no
   setting for it: its ``StepsCompiler`` hands ``pipeline_build_time`` to each
   step's compilation context. :func:`_install` wraps ``StepsCompiler._build_step``
   (the same private method in v2 and v3, through :mod:`.patches`) once; the wrapper acts only while a
   :class:`BuildPlan` is set in a context variable for the current thread, so
   other builds (and other threads) see the SDK unchanged.
2. **The signing key is stable per user and pipeline** (:mod:`.signing`): derived with HMAC from a
   random secret kept in the user's data folder (``signing.key``, mode 0600;
   ``SMSTEP_DATA_DIR`` moves the folder). v2 signs with an HMAC key (a hex
   string in the definition, as the SDK does), v3 with an ECDSA P-256 key that
   now signs deterministically (RFC 6979), so the same bytes get the same
   signature. Another machine has another secret, hence other folders: it
   uploads once, it never trusts a payload signed with a key it does not hold.
3. **Nothing is uploaded twice** (:mod:`.uploads`): while a plan is set, every ``PutObject`` of
   the session's S3 clients carries the SHA-256 of its body as object metadata,
   and is skipped when the object is already there with the same hash and
   length (a ``HEAD``). An object without the hash (a half-finished upload from
   another tool, an overwrite) is uploaded again, never trusted. Multipart
   uploads (bodies over the transfer threshold, 8 MiB) are not deduplicated.

The keys themselves, and the digests of captured values they hash, are :mod:`.content_keys`'.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.core import keys as keys_mod
from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.folders import data_dir, write_whole
from jupyter_smstep.sdk.signing import DeterministicSigner, user_secret
from jupyter_smstep.sdk.uploads import UploadCount, register, s3_clients, unregister


@dataclass
class BuildPlan:
    """What a content-addressed build needs: each step's payload folder and cache duration."""

    pipeline: str
    keys: Mapping[str, keys_mod.StepKey]
    cache: Mapping[str, str] = field(default_factory=dict)  # step -> ISO 8601 ExpireAfter
    #: Steps whose payloads are not needed (a local run reuses their cached results): not uploaded.
    reuse: frozenset[str] = frozenset()
    uploads: UploadCount = field(default_factory=UploadCount)
    compiling: str | None = None  # the step the SDK is compiling now
    #: The definition only: every write to S3 is answered here, nothing is sent (sdk.build.checked_definition)
    dry: bool = False
    #: ForEach body steps: each child writes its results in a folder of its own (``patches.results_per_item``)
    per_item: frozenset[str] = frozenset()

    @functools.cached_property
    def _material(self) -> bytes:
        secret = user_secret(data_dir())
        return hmac.new(secret, b"jupyter_smstep signing v1\0" + self.pipeline.encode(), hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"key id\0" + self._material).hexdigest()[:8]

    def folder(self, step: str) -> str:
        """The step's payload folder: ``<content key>-<signing key id>`` (a valid channel name too)."""
        return f"{self.keys[step].short}-{self.key_id}"

    def token_like(self, sdk_token: Any) -> Any:
        """The stable key, in the form this SDK line uses (a hex HMAC key, or an ECDSA key)."""
        if isinstance(sdk_token, str):
            return self._material.hex()
        return DeterministicSigner(self._material)


def definition_keys(definition: Mapping[str, Any]) -> dict[str, str]:
    """Step name -> the short content key its payload folder names, for the steps of a definition this
    package built (a step built otherwise, e.g. by a timestamp, is left out)."""
    found: dict[str, str] = {}
    for step, _ in definition_steps(definition):
        try:
            argv = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
            folder = argv[argv.index("--func_step_s3_dir") + 1]
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        short, _, key_id = str(folder).partition("-")
        if len(short) == keys_mod.SHORT and len(key_id) == 8 and all(c in "0123456789abcdef" for c in short):
            found[str(step.get("Name"))] = short
    return found


_PLAN: contextvars.ContextVar[BuildPlan | None] = contextvars.ContextVar("smstep_build_plan", default=None)


def _install(major: int) -> None:
    """Wrap the steps compiler's per-step build once (``sdk.patches``); the wrapper does nothing unless a plan is
    set."""
    from jupyter_smstep.sdk import compat, patches

    def build_step(compiler: Any, step: Any, original: Any) -> Any:
        plan = _PLAN.get()
        if plan is None or step.name not in plan.keys:
            return original(compiler, step)
        patches.set_compilation(compiler, plan.folder(step.name), plan.token_like)
        plan.compiling = step.name
        try:
            compiled = original(compiler, step)
        finally:
            plan.compiling = None
        if step.name in plan.cache:
            patches.set_request_field(compiled, "CacheConfig", {"Enabled": True, "ExpireAfter": plan.cache[step.name]})
        if step.name in plan.per_item:
            sdk = compat.load()
            try:
                patches.results_per_item(compiled.arguments, sdk.Join, sdk.ExecutionVariables.PIPELINE_EXECUTION_ID)
            except RuntimeError as exc:  # a release that writes the results elsewhere (patches' canary test)
                raise SmstepError(
                    Problem(
                        f"{exc}: a --foreach cell cannot be built as a ForEach step with this SDK",
                        step=step.name,
                        fix="%pipeline config --foreach-as steps (one step per item), and report the SDK's version",
                    )
                ) from None
        return compiled

    patches.wrap_build_step(major, build_step)
    patches.wrap_ensure_dependency(compat.modules(major)["remote_function"], _stable_requirements)


def _stable_requirements(original: Any, local_dependencies_path: str | None) -> str:
    """v2 (2.256+) adds its own ``sagemaker`` requirement to every step: in a temporary file with a random
    name (which the definition names), or by appending to the user's own requirements file. While a plan
    is set, it does that to a copy named by its content instead: the definition stays the same and the
    user's file is left alone."""
    if _PLAN.get() is None or (local_dependencies_path and not local_dependencies_path.endswith(".txt")):
        return str(original(local_dependencies_path))
    text = Path(local_dependencies_path).read_bytes() if local_dependencies_path else b""
    name = Path(local_dependencies_path).name if local_dependencies_path else "sagemaker_requirements.txt"
    staged = data_dir() / "requirements" / hashlib.sha256(text).hexdigest()[:16] / name
    if not staged.exists():
        staged.parent.mkdir(parents=True, exist_ok=True)
        write_whole(staged, text)
    return str(original(str(staged)))  # appends the SDK's line to the copy, once


@contextlib.contextmanager
def content_addressed(plan: BuildPlan, session: Any) -> Iterator[UploadCount]:
    """Build under ``plan`` (folders, signing key, cache) with uploads deduplicated on ``session``."""
    from jupyter_smstep.sdk import compat

    _install(compat.load().major)
    clients = s3_clients(session)
    for client in clients:
        register(client, plan)
    token = _PLAN.set(plan)
    try:
        yield plan.uploads
    finally:
        _PLAN.reset(token)
        for client in clients:
            unregister(client)
