"""A role that the service cannot assume is refused before anything is uploaded; the SDK's own role check is said
truthfully."""

from __future__ import annotations

import uuid

import pytest

from jupyter_smstep.errors import SmstepError, aws_error
from jupyter_smstep.remote import roles

from helpers.constants import IMAGE
from helpers.fakes import ACCOUNT, prepare_account


@pytest.fixture
def notebook(shell, moto_server, fake_sagemaker):
    prepare_account(moto_server)
    fake = fake_sagemaker()
    role = prepare_account(moto_server, f"ec2-only-{uuid.uuid4().hex[:12]}", "ec2.amazonaws.com")
    shell.run(f"%pipeline config --name trust --role {role} --image-uri {IMAGE} --instance-type ml.m5.large")
    shell.run("%%step --defer a\nx = 1")
    fake.requests.clear()
    return shell, fake, role


def test_a_pipeline_role_that_does_not_trust_sagemaker_is_refused_before_any_upload(notebook):
    shell, fake, role = notebook
    with pytest.raises(SmstepError) as info:
        shell.workspace.submit()
    (problem,) = info.value.problems
    assert problem.message.startswith(f"the pipeline's role {role} does not trust sagemaker.amazonaws.com")
    assert "Principal" in problem.fix and "sts:AssumeRole" in problem.fix
    assert [r for r in fake.requests if r[0] == "PUT"] == [] and fake.calls == []


def test_a_schedule_role_that_does_not_trust_the_scheduler_is_refused(notebook, moto_server):
    shell, fake, _ = notebook
    sagemaker_role = prepare_account(moto_server)
    shell.run(f"%pipeline config --role {sagemaker_role}")
    error = shell.error(f"%pipeline schedule nightly --rate 'rate(1 day)' --role {sagemaker_role}")
    assert "the schedule's role" in error and "does not trust scheduler.amazonaws.com" in error
    assert fake.calls == []


def test_a_role_that_does_not_exist_is_named(notebook):
    shell, _, _ = notebook
    shell.run(f"%pipeline config --role arn:aws:iam::{ACCOUNT}:role/nobody-made-this")
    with pytest.raises(SmstepError, match="the pipeline's role .*nobody-made-this does not exist"):
        shell.workspace.submit()


class DeniedSession:
    class boto_session:  # noqa: N801 - stands in for a boto3 session
        @staticmethod
        def client(name):
            from botocore.exceptions import ClientError

            class Iam:
                def get_role(self, **_):
                    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetRole")

            return Iam()


def test_where_iam_cannot_be_asked_the_check_is_skipped_and_said():
    found = roles.trust(DeniedSession(), "arn:aws:iam::1:role/r", roles.SAGEMAKER, "the pipeline's role")
    assert found.trusted is None and "was not checked (iam:GetRole: AccessDenied)" in found.note


@pytest.mark.parametrize(
    "statement, trusted",
    [
        ({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}, True),
        (
            {
                "Effect": "Allow",
                "Action": ["sts:AssumeRole"],
                "Principal": {"Service": ["a", "sagemaker.amazonaws.com"]},
            },
            True,
        ),
        ({"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}, False),
        ({"Effect": "Allow", "Action": "sts:TagSession", "Principal": {"Service": "sagemaker.amazonaws.com"}}, False),
        ({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "arn:aws:iam::1:root"}}, False),
    ],
)
def test_trust_documents(statement, trusted):
    assert roles.trusts({"Statement": [statement]}, roles.SAGEMAKER) is trusted


def test_the_sdks_role_check_is_said_with_its_reason_and_the_real_fix():
    RoleValidationError = type("RoleValidationError", (Exception,), {})
    text = (
        "IAM role 'arn:aws:iam::1:role/r' cannot be used for 'pipeline' workloads.\nIts trust policy does not "
        "allow 'sagemaker.amazonaws.com' to assume it.\nMissing permissions: s3:GetObject\n\nTo fix this, either:"
        "\n  1. Grant ..."
    )
    error = aws_error(RoleValidationError(text), "creating pipeline 'p' on SageMaker")
    assert type(error) is SmstepError
    (problem,) = error.problems
    assert "the SageMaker SDK's role check: IAM role 'arn:aws:iam::1:role/r' cannot be used" in problem.message
    assert "Missing permissions: s3:GetObject" in problem.message and "To fix" not in problem.message
    assert "trust policy" in problem.fix and "SAGEMAKER_VALIDATE_ROLE=false" in problem.fix
