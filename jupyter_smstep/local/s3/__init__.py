"""The local runner's S3 endpoint on 127.0.0.1 (see :mod:`.server`)."""

from jupyter_smstep.local.s3.server import DEFAULT_BUCKET, LOCAL_ACCOUNT, Credentials, LocalS3

__all__ = ["DEFAULT_BUCKET", "LOCAL_ACCOUNT", "Credentials", "LocalS3"]
