"""An S3 endpoint on 127.0.0.1 for the local runner: files on disk, nothing to configure.

The local runner compiles the pipeline with the real SDK, which uploads the
pickled step functions to S3, and runs every step through the SDK's own
container entry point, which reads its inputs from S3 and writes its results
back. :class:`LocalS3` gives both sides a real S3 API over HTTP, so what runs
locally goes through the same boto3 calls, and the same bytes, as on SageMaker.

Why not moto (the tests use it as AWS): moto re-reads a whole object for
every ranged GET, so the 8 MB ranges boto3 downloads a 500 MB result in cost
60 full copies; it keeps objects in memory, answers in ~20 ms, and is a test
library the user's kernel should not need. This server stores each object as a
file, ``<data_dir>/<bucket>/<key>``, the moment it is written: a run's S3 data
persists with no copy at the end, ranged reads are ``sendfile`` calls, and a
request costs about a millisecond. It implements the S3 operations the SDK and
boto3's transfer manager use (objects, listings, multipart uploads, buckets),
plus STS ``GetCallerIdentity``, and answers anything else with a clear
``NotImplemented`` error. Only the standard library is needed.

Any local user can connect to 127.0.0.1, so each endpoint makes random
:attr:`LocalS3.credentials` and answers only requests signed with them
(:mod:`.sigv4`): the runner hands them to its steps alone, never to a file.

:class:`LocalS3` is the endpoint's handle (start, stop, a client, paths);
:mod:`.http` speaks the protocol, :mod:`.store` keeps the objects, :mod:`.sts`
answers the account lookup.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from jupyter_smstep.local.s3.http import Server
from jupyter_smstep.local.s3.sigv4 import Credentials, new_credentials
from jupyter_smstep.local.s3.store import S3Error, Store, check_bucket, object_path
from jupyter_smstep.local.s3.sts import ACCOUNT as LOCAL_ACCOUNT

DEFAULT_BUCKET = "smstep-local"

__all__ = ["DEFAULT_BUCKET", "LOCAL_ACCOUNT", "Credentials", "LocalS3", "default_region"]


def default_region() -> str:
    """The region the user's AWS configuration names, else ``us-east-1``."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        import boto3

        return boto3.session.Session().region_name or "us-east-1"
    except Exception:  # noqa: BLE001 - a broken ~/.aws/config must not stop a local run
        return "us-east-1"


class LocalS3:
    """Embedded S3 endpoint on 127.0.0.1 (free port), used as a context manager.

    ``endpoint_url``, ``bucket`` and ``region`` are set once started; ``credentials`` (random, this
    endpoint's own) are the only ones it accepts. Objects are
    files under ``data_dir/<bucket>/<key>`` as soon as they are written, so the
    data outlives the endpoint; without ``data_dir`` a temporary folder is used
    and removed on stop.
    """

    def __init__(
        self, data_dir: str | Path | None = None, *, region: str | None = None, bucket: str = DEFAULT_BUCKET
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.region = region or default_region()
        self.bucket = bucket
        self.credentials: Credentials = new_credentials()
        self.endpoint_url = ""
        self._temporary: str | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None

    @property
    def buckets(self) -> list[str]:
        return [p.name for p in self.store.buckets()]

    @property
    def store(self) -> Store:
        assert self._server is not None, "LocalS3 is not started"
        return self._server.store

    @property
    def root(self) -> Path:
        return self.store.root

    def start(self) -> LocalS3:
        if self.data_dir is None:
            self._temporary = tempfile.mkdtemp(prefix="smstep-s3-")
            root = Path(self._temporary)
        else:
            root = self.data_dir
        root.mkdir(parents=True, exist_ok=True)
        self._server = Server(("127.0.0.1", 0), root=root, region=self.region, credentials=self.credentials)
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address, not a socket path
        self.endpoint_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="smstep-local-s3",
            daemon=True,
        )
        self._thread.start()
        (root / self.bucket).mkdir(exist_ok=True)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server.store.close()
        self._server = None
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- conveniences for the runner and tests -------------------------------------------
    def client(self) -> Any:
        """A boto3 S3 client bound to this endpoint, with its credentials."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session(region_name=self.region, **self.credentials.as_boto()).client(
                "s3", endpoint_url=self.endpoint_url
            )
        return self._client

    def caller(self, tag: str) -> str:
        """An access key id for one step's attempt (the run's, suffixed): signed with the run's secret, so the
        endpoint serves it, and the reads it makes are told apart (:meth:`reads_by`)."""
        return f"{self.credentials.access_key}-{tag}"

    def reads_by(self, access_key: str) -> list[tuple[str, str]]:
        """The objects (bucket, key) requests signed with ``access_key`` found, in order, each once."""
        server = self._server
        return list(dict.fromkeys((b, k) for who, b, k in list(server.reads) if who == access_key)) if server else []

    def create_bucket(self, name: str) -> None:
        (self.root / check_bucket(name)).mkdir(exist_ok=True)

    def path(self, uri: str) -> Path:
        """The file holding ``s3://bucket/key`` (which may not exist)."""
        bucket, _, key = uri[5:].partition("/") if uri.startswith("s3://") else ("", "", "")
        if not bucket:
            raise ValueError(f"not an S3 URI: {uri}")
        return object_path(self.root, bucket, key)

    def exists(self, uri: str) -> bool:
        try:
            return self.path(uri).is_file()
        except (ValueError, S3Error):
            return False

    def keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        return [k for k, _ in self.store.files(bucket or self.bucket, prefix)]
