"""Does a role trust the service that must assume it? Asked of IAM (``GetRole``) before a submit or a schedule.

The pipeline's role must trust ``sagemaker.amazonaws.com``; a schedule's role must
trust ``scheduler.amazonaws.com``. A role that does not is refused here, with the
fix, before anything is uploaded; where the caller may not call ``iam:GetRole``,
the check is skipped and the result says so. No printing.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from jupyter_smstep.errors import Problem, SmstepError, error_code

SAGEMAKER = "sagemaker.amazonaws.com"
SCHEDULER = "scheduler.amazonaws.com"


@dataclass(frozen=True)
class Trust:
    role: str
    service: str
    trusted: bool | None  # None: not checked (note says why)
    note: str = ""


def trust(session: Any, role: str, service: str, what: str) -> Trust:
    """Whether ``role`` lets ``service`` assume it; raises :class:`SmstepError` when IAM says it does not, or
    that the role does not exist. ``what``: the role's use, for the message ("the pipeline's role")."""
    name = role.rsplit("/", 1)[-1]
    try:
        document = session.boto_session.client("iam").get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    except Exception as exc:  # noqa: BLE001 - denied, offline: the check is skipped, and said so
        if error_code(exc) == "NoSuchEntity":
            raise SmstepError(
                Problem(
                    f"{what} {role} does not exist",
                    fix=f"create it, or pass the ARN of a role that exists and trusts {service}",
                )
            ) from None
        return Trust(
            role,
            service,
            None,
            f"the trust of {what} {role} was not checked (iam:GetRole: "
            f"{error_code(exc) or type(exc).__name__}); {service} must be able to assume it",
        )
    if isinstance(document, str):  # IAM returns it URL-encoded; boto3 usually decodes it
        document = json.loads(urllib.parse.unquote(document))
    if trusts(document, service):
        return Trust(role, service, True)
    raise SmstepError(
        Problem(
            f"{what} {role} does not trust {service}: the service cannot assume it, and the run would fail with "
            "'Could not assume role'",
            fix=f'add {service} to the role\'s trust policy (Principal: {{"Service": "{service}"}}, Action: '
            "sts:AssumeRole), or pass another role",
        )
    )


def trusts(document: Any, service: str) -> bool:
    """Whether a trust policy document allows ``service`` to ``sts:AssumeRole``."""
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in [statements] if isinstance(statements, dict) else statements:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        if service in ([services] if isinstance(services, str) else services):
            return True
    return False
