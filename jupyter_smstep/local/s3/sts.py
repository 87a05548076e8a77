"""STS ``GetCallerIdentity`` for the local runner: the SDK asks it for the account id.

Every other STS action is refused with ``NotImplemented``: a local run must not
pretend to hand out credentials.
"""

from __future__ import annotations

from jupyter_smstep.local.s3.store import S3Error

#: The account a local run belongs to (12 digits, as the SDK checks).
ACCOUNT = "123456789012"


def respond(form: dict[str, str]) -> str:
    """The XML answer to an STS request whose form (or query) is ``form``."""
    action = form.get("Action")
    if action != "GetCallerIdentity":
        raise S3Error(501, "NotImplemented", f"the local runner's endpoint does not implement sts:{action}")
    return (
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/smstep-local</Arn>"
        f"<UserId>AIDASMSTEPLOCAL</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult>"
        "<ResponseMetadata><RequestId>local</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    )
