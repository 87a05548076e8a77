"""An S3 endpoint on 127.0.0.1 for the local runner, with nothing to configure.

The local runner compiles the pipeline with the real SDK, which uploads the
pickled step functions to S3, and runs every step through the SDK's own
container entry point, which reads its inputs from S3 and writes its results
back. :class:`LocalS3` gives both sides a real S3 API to talk to: moto's S3
served over HTTP on a free port of the loopback interface, so what runs locally
goes through exactly the same code paths (and the same bytes) as on SageMaker.

moto keeps objects in memory (large ones spill to temporary files) and forgets
them when the process ends, so :meth:`LocalS3.stop` mirrors every object to
``<mirror_dir>/<bucket>/<key>`` first: that folder is what a finished run keeps.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

DEFAULT_BUCKET = "smstep-local"
# moto accepts any credentials; these only exist so that botocore can sign.
DUMMY_CREDENTIALS = {"aws_access_key_id": "smstep-local", "aws_secret_access_key": "smstep-local"}

_log = logging.getLogger(__name__)


def default_region() -> str:
    """The region the user's AWS configuration names, else ``us-east-1``."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    try:
        import boto3

        return boto3.session.Session().region_name or "us-east-1"
    except Exception:  # a broken ~/.aws/config must not stop a local run
        return "us-east-1"


class LocalS3:
    """Embedded S3 endpoint on 127.0.0.1 (moto, free port), used as a context manager.

    ``endpoint_url``, ``bucket`` and ``region`` are set once started. Stopping
    mirrors the objects of every bucket this instance created into
    ``mirror_dir/<bucket>/<key>`` (when ``mirror_dir`` is set), then deletes them
    from moto so that a long-lived kernel does not keep gigabytes of results.

    moto's state is global to the process: two instances alive at once share
    it, so each instance takes a bucket name no other instance uses.
    """

    def __init__(self, mirror_dir: str | Path | None = None, *, region: str | None = None,
                 bucket: str = DEFAULT_BUCKET) -> None:
        self.mirror_dir = Path(mirror_dir) if mirror_dir is not None else None
        self.region = region or default_region()
        self._wanted_bucket = bucket
        self.bucket = ""
        self.endpoint_url = ""
        self.buckets: list[str] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._client: Any = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "LocalS3":
        from werkzeug.serving import make_server
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        class QuietHandler(MotoRequestHandler):
            """moto's handler without the one-line-per-request access log."""

            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        class Dispatcher(DomainDispatcherApplication):
            """moto's dispatcher, remembering which backend serves a host name.

            moto re-derives it on every request by scanning its module folders
            (thousands of stat calls, ~4 ms); the runner makes hundreds of requests.
            """

            _known: dict = {}

            def get_backend_for_host(self, host: Any) -> Any:
                if host not in self._known:
                    self._known[host] = super().get_backend_for_host(host)
                return self._known[host]

        app = Dispatcher(create_backend_app)
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="smstep-local-s3", daemon=True,
        )
        self._thread.start()
        self.bucket = self._claim_bucket(self._wanted_bucket)
        return self

    def stop(self) -> None:
        """Mirror the objects to ``mirror_dir`` (if set), free moto's copy, stop serving."""
        if self._server is None:
            return
        try:
            if self.mirror_dir is not None:
                self.mirror(self.mirror_dir)
        finally:
            try:
                self._forget_buckets()
            finally:
                self._server.shutdown()
                self._server.server_close()
                if self._thread is not None:
                    self._thread.join(timeout=10)
                self._server = None

    def __enter__(self) -> "LocalS3":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- S3 helpers ------------------------------------------------------------
    def client(self) -> Any:
        """A boto3 S3 client bound to this endpoint (dummy credentials)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session(region_name=self.region, **DUMMY_CREDENTIALS).client(
                "s3",
                endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            )
        return self._client

    def create_bucket(self, name: str) -> None:
        """Create a bucket (used when the SDK's config points the pipeline at another bucket)."""
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client().create_bucket(**kwargs)
        self.buckets.append(name)

    def _claim_bucket(self, wanted: str) -> str:
        client = self.client()
        for i in range(1, 1000):
            name = wanted if i == 1 else f"{wanted}-{i}"
            try:
                client.head_bucket(Bucket=name)
            except client.exceptions.ClientError:
                self.create_bucket(name)
                return name
        raise RuntimeError("no free bucket name on the local S3")  # pragma: no cover

    def keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        client = self.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket or self.bucket, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def mirror(self, target: str | Path) -> None:
        """Copy every object of this instance's buckets to ``target/<bucket>/<key>``."""
        client = self.client()
        for bucket in self.buckets:
            for key in self.keys(bucket):
                if key.endswith("/"):
                    continue
                dest = Path(target, bucket, *key.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(dest))

    def _forget_buckets(self) -> None:
        client = self.client()
        for bucket in self.buckets:
            try:
                keys = self.keys(bucket)
                for i in range(0, len(keys), 1000):
                    client.delete_objects(
                        Bucket=bucket,
                        Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
                    )
                client.delete_bucket(Bucket=bucket)
            except Exception as exc:  # cleaning up must not hide the run's own result
                _log.debug("could not delete local bucket %s: %s", bucket, exc)
        self.buckets = []
