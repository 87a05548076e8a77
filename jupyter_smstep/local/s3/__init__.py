"""The local runner's S3 endpoint on 127.0.0.1 (see :mod:`.server`)."""

from jupyter_smstep.local.s3.server import DEFAULT_BUCKET, DUMMY_CREDENTIALS, LOCAL_ACCOUNT, LocalS3

__all__ = ["DEFAULT_BUCKET", "DUMMY_CREDENTIALS", "LOCAL_ACCOUNT", "LocalS3"]
