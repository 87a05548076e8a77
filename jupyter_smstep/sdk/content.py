"""Content-addressed builds: an unchanged step gets the same definition and is never uploaded twice.

The SDK's ``Pipeline.definition()`` puts every step's pickled function and
arguments under ``<root>/<pipeline>/<step>/<build timestamp>/`` and signs them
with a key made fresh for every build, whose public half goes into the step's
``Environment``. So two builds of the same notebook differ, every build uploads
everything, and SageMaker's step caching never hits (sagemaker-python-sdk#2736).

Three changes, all made here, for both SDK lines:

1. **The payload folder is the step's content key** (:mod:`jupyter_smstep.core.keys`)
   plus the signing key's id, instead of the build time. The SDK has no
   setting for it: its ``StepsCompiler`` hands ``pipeline_build_time`` to each
   step's compilation context. :func:`_install` wraps ``StepsCompiler._build_step``
   (the same private method in v2 and v3, through :mod:`.patches`) once; the wrapper acts only while a
   :class:`BuildPlan` is set in a context variable for the current thread, so
   other builds (and other threads) see the SDK unchanged.
2. **The signing key is stable per user and pipeline**: derived with HMAC from a
   random secret kept in the user's data folder (``signing.key``, mode 0600;
   ``SMSTEP_DATA_DIR`` moves the folder). v2 signs with an HMAC key (a hex
   string in the definition, as the SDK does), v3 with an ECDSA P-256 key that
   now signs deterministically (RFC 6979), so the same bytes get the same
   signature. Another machine has another secret, hence other folders: it
   uploads once, it never trusts a payload signed with a key it does not hold.
3. **Nothing is uploaded twice**: while a plan is set, every ``PutObject`` of
   the session's S3 clients carries the SHA-256 of its body as object metadata,
   and is skipped when the object is already there with the same hash and
   length (a ``HEAD``). An object without the hash (a half-finished upload from
   another tool, an overwrite) is uploaded again, never trusted. Multipart
   uploads (bodies over the transfer threshold, 8 MiB) are not deduplicated.

:func:`digest` hashes a captured value for the key: its cloudpickle bytes, with
code objects reduced to what they compute (no file name, no line numbers: a
helper re-run in another kernel keeps its digest), sets in a canonical order,
and classes defined in the notebook by their members (cloudpickle gives each a
random tracker id).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import hmac
import io
import os
import secrets
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping

from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.core import keys as keys_mod
from jupyter_smstep.core.model import values_at
from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.folders import data_dir, write_whole
from jupyter_smstep.core import sdk_config

#: Object metadata holding the SHA-256 of the body (S3 stores it as ``x-amz-meta-smstep-sha256``).
HASH_METADATA = "smstep-sha256"
SECRET_FILE = "signing.key"


# ---------------------------------------------------------------------------- digests
def _reduced_code(*_: Any) -> None:
    """Stands for a code object in a digest pickle (never unpickled)."""


def _pickler_class() -> type:
    import cloudpickle
    from cloudpickle import cloudpickle as cp

    class _DigestPickler(cloudpickle.Pickler):  # type: ignore[misc, name-defined]
        def __init__(self, file: io.BytesIO, seen: set[int]) -> None:
            super().__init__(file, protocol=5)
            self._seen = seen

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, types.CodeType):
                return _reduced_code, (
                    obj.co_name,
                    obj.co_code,
                    obj.co_consts,
                    obj.co_names,
                    obj.co_varnames,
                    obj.co_freevars,
                    obj.co_cellvars,
                    obj.co_argcount,
                    obj.co_posonlyargcount,
                    obj.co_kwonlyargcount,
                    obj.co_flags,
                )
            return super().reducer_override(obj)

        def persistent_id(self, obj: Any) -> Any:  # called for every object, sets included
            if type(obj) in (set, frozenset):
                return (type(obj).__name__, tuple(sorted(_digest(x, self._seen) for x in obj)))
            if isinstance(obj, type) and not cp._should_pickle_by_reference(obj):
                if id(obj) in self._seen:  # a method that names its own class
                    return ("class-ref", obj.__qualname__)
                self._seen.add(id(obj))
                try:
                    members = tuple(
                        sorted(
                            (k, _digest(v, self._seen))
                            for k, v in vars(obj).items()
                            if k not in ("__dict__", "__weakref__")
                        )
                    )
                    return (
                        "class",
                        obj.__module__,
                        obj.__qualname__,
                        tuple(_digest(b, self._seen) for b in obj.__bases__),
                        members,
                    )
                finally:
                    self._seen.discard(id(obj))
            return None

    return _DigestPickler


_PICKLER: list[type] = []


def _digest(value: Any, seen: set[int]) -> str:
    if not _PICKLER:
        _PICKLER.append(_pickler_class())
    buffer = io.BytesIO()
    _PICKLER[0](buffer, seen).dump(value)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def digest(value: Any) -> str:
    """A stable SHA-256 of ``value`` (see the module docstring); ``unpicklable:<why>`` when it cannot be pickled."""
    try:
        return _digest(value, set())
    except Exception as exc:  # noqa: BLE001 - the build reports unpicklable captures on its own
        return f"unpicklable:{type(exc).__name__}"


def capture_digests(graph: PipelineGraph, namespace: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """step -> captured name -> digest of the value its cell saw, computed now (never cached: a value mutated
    in place must change its key; one object read by several steps is hashed once)."""
    done: dict[int, tuple[Any, str]] = {}  # id -> (the object, kept alive so the id stays its own; digest)
    out: dict[str, dict[str, str]] = {}
    for node in graph.steps:
        values = values_at(node.cell, namespace)
        for inp in node.captured:
            if inp.name in values:
                value = values[inp.name]
                if id(value) not in done:
                    done[id(value)] = (value, digest(value))
                out.setdefault(node.name, {})[inp.name] = done[id(value)][1]
    return out


def runtime() -> dict[str, str]:
    from jupyter_smstep.sdk import compat

    return {"python": sys.version.split()[0], "sdk": compat.installed_version() or ""}


def step_keys(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    root: Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    run: str | None = None,
) -> dict[str, keys_mod.StepKey]:
    """Every step's content key, its captured values hashed now.

    A step that imports a module from the notebook's folder (``helpers.py`` beside it), or every step
    when the SageMaker config sets ``IncludeLocalWorkDir``, also has the part ``local-sources``: the
    ``.py`` files under the folder (a change in a module the step's module imports counts too).
    """
    from jupyter_smstep.sdk import requirements

    include_workdir = sdk_config.remote_function_config(sdk_config.load_sdk_config(), "IncludeLocalWorkDir")
    include_workdir = include_workdir is True or str(include_workdir).lower() == "true"
    # the steps that import the notebook's own modules (core.workdir, decided with the graph)
    imports_local = set(graph.shipping.because) if graph.shipping is not None else set()
    local: dict[str, dict[str, str]] = {}
    sources: str | None = None
    for node in graph.steps:
        extra = local.setdefault(node.name, {})
        versions = {
            i.name: requirements.pins_for([requirements.module_of(namespace.get(i.name)) or ""]).lines
            for i in node.imports
        }
        if versions:  # a local run uses the kernel's packages: upgrading one runs the step again
            extra["imports"] = keys_mod.digest_json(versions)
        if node.name in graph.dependencies:  # --dependencies auto: the pins reach the job
            extra["dependencies"] = keys_mod.digest_json(graph.dependencies[node.name])
        if root is not None and (
            include_workdir
            or node.name in imports_local
            or any(_is_local(namespace.get(i.name), root) for i in node.imports)
        ):
            sources = sources or local_sources_digest(root)
            extra["local-sources"] = sources
    return keys_mod.step_keys(
        graph,
        capture_digests(graph, namespace),
        parameters=parameters,
        runtime=runtime(),
        root=root,
        extra=local,
        run=run,
    )


def _is_local(value: Any, root: Path) -> bool:
    """Whether ``value`` (a module, or a function or class imported from one) comes from a file under ``root``."""
    from jupyter_smstep.sdk.requirements import module_of

    file = getattr(sys.modules.get(module_of(value) or ""), "__file__", None)
    if not file:
        return False
    try:
        relative = Path(file).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return not any(part in _NOT_SOURCES or part.startswith(".") for part in relative.parts[:-1])


_NOT_SOURCES = {"__pycache__", "node_modules", "site-packages", "venv", "env"}
#: Beyond this many files the folder is not a project: the key gets a part that never matches.
MAX_LOCAL_SOURCES = 5000


def local_sources_digest(root: Path) -> str:
    """SHA-256 over every ``.py`` file under ``root`` (relative path and content), hidden folders,
    virtual environments and caches left out."""
    digest = hashlib.sha256()
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in _NOT_SOURCES and not (Path(folder, d) / "pyvenv.cfg").exists()
        )
        for name in sorted(f for f in files if f.endswith(".py")):
            count += 1
            if count > MAX_LOCAL_SOURCES:
                return f"too-many-files:{secrets.token_hex(8)}"  # never reused: it cannot be hashed here
            path = Path(folder, name)
            try:
                data = path.read_bytes()
            except OSError:
                data = b"unreadable"
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- signing
@functools.cache
def _user_secret(folder: Path) -> bytes:
    path = folder / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError:
        return secrets.token_bytes(32)  # unreadable: this process signs with its own key (uploads again)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    except OSError:
        return secrets.token_bytes(32)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class _DeterministicSigner:
    """An ECDSA P-256 private key that signs deterministically (RFC 6979), for v3's payload signatures."""

    def __init__(self, material: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._ec = ec
        self._key = ec.derive_private_key(int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())

    def sign(self, data: bytes, algorithm: Any) -> bytes:
        return self._key.sign(data, self._ec.ECDSA(algorithm.algorithm, deterministic_signing=True))

    def public_key(self) -> Any:
        return self._key.public_key()


@dataclass
class UploadCount:
    """What the build sent to S3 while a plan was set."""

    uploaded: int = 0
    skipped: int = 0


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

    @functools.cached_property
    def _material(self) -> bytes:
        secret = _user_secret(data_dir())
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
        return _DeterministicSigner(self._material)


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
    clients = _s3_clients(session)
    for client in clients:
        _register(client, plan)
    token = _PLAN.set(plan)
    try:
        yield plan.uploads
    finally:
        _PLAN.reset(token)
        for client in clients:
            _unregister(client)


def _s3_clients(session: Any) -> list[Any]:
    found = []
    for client in (
        getattr(session, "s3_client", None),
        getattr(getattr(getattr(session, "s3_resource", None), "meta", None), "client", None),
    ):
        if client is not None and all(client is not c for c in found):
            found.append(client)
    return found


_HANDLER_ID = "jupyter_smstep.dedupe"


def _register(client: Any, plan: BuildPlan) -> None:
    events = client.meta.events
    count = plan.uploads

    def before_build(params: dict, context: dict, **_: Any) -> None:
        if plan.dry:
            context["smstep_skip"] = "dry"
            return
        step = plan.compiling
        if step in plan.reuse and f"/{step}/{plan.folder(step)}/" in "/" + str(params.get("Key", "")):
            context["smstep_skip"] = True  # a payload of a step whose cached result is reused
            return
        data = _body_bytes(params.get("Body"))
        if data is None:
            return
        sha = hashlib.sha256(data).hexdigest()
        params["Metadata"] = {**(params.get("Metadata") or {}), HASH_METADATA: sha}
        context["smstep_skip"] = _stored(client, params.get("Bucket"), params.get("Key"), sha, len(data))

    def before_call(context: dict, **_: Any) -> Any:
        if not context.get("smstep_skip"):
            return None
        if context["smstep_skip"] != "dry":
            count.skipped += 1
        return _answered()

    def after_call(context: dict, http_response: Any, **_: Any) -> None:  # counted once S3 has it
        if not context.get("smstep_skip") and getattr(http_response, "status_code", 0) == 200:
            count.uploaded += 1

    def dry_call(**_: Any) -> Any:  # a multipart upload of a large workspace file, in a dry build
        return _answered() if plan.dry else None

    events.register("before-parameter-build.s3.PutObject", before_build, unique_id=_HANDLER_ID + ".build")
    events.register("before-call.s3.PutObject", before_call, unique_id=_HANDLER_ID + ".call")
    events.register("after-call.s3.PutObject", after_call, unique_id=_HANDLER_ID + ".after")
    for operation in _MULTIPART:
        events.register(f"before-call.s3.{operation}", dry_call, unique_id=f"{_HANDLER_ID}.dry.{operation}")


#: The calls of a multipart upload: answered here in a dry build.
_MULTIPART = ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload")


def _answered() -> Any:
    """A successful answer to an S3 write that is not sent."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    return (
        AWSResponse("", 200, HTTPHeaders(), None),
        {
            "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 0},
            "UploadId": "jupyter-smstep-dry",
            "ETag": '"jupyter-smstep-dry"',
        },
    )


def _unregister(client: Any) -> None:
    events = client.meta.events
    events.unregister("before-parameter-build.s3.PutObject", unique_id=_HANDLER_ID + ".build")
    events.unregister("before-call.s3.PutObject", unique_id=_HANDLER_ID + ".call")
    events.unregister("after-call.s3.PutObject", unique_id=_HANDLER_ID + ".after")
    for operation in _MULTIPART:
        events.unregister(f"before-call.s3.{operation}", unique_id=f"{_HANDLER_ID}.dry.{operation}")


def _body_bytes(body: Any) -> bytes | None:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if body is None or not hasattr(body, "read") or not hasattr(body, "seek"):
        return None
    try:
        start = body.tell()
        data = body.read()
        body.seek(start)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, bytes) else None


def _stored(client: Any, bucket: str | None, key: str | None, sha: str, size: int) -> bool:
    """Whether ``bucket/key`` already holds exactly these bytes (by the hash recorded when they were put)."""
    if not bucket or not key:
        return False
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - missing, forbidden, unreachable: upload (the PUT reports its own error)
        return False
    return head.get("ContentLength") == size and (head.get("Metadata") or {}).get(HASH_METADATA) == sha
