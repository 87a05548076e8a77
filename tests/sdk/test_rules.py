"""SageMaker's own published rules, checked before anything is uploaded: botocore's service models and the
pipeline definition JSON schema (sdk.rules, sdk.schema)."""

from __future__ import annotations

import json

import pytest

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.sdk import rules, schema

from helpers.constants import IMAGE
from helpers.fakes import prepare_account

CONFIG = (
    "%pipeline config --name rules --role arn:aws:iam::111122223333:role/SMRole "
    f"--image-uri {IMAGE} --instance-type ml.m5.large"
)


# ---------------------------------------------------------------------------- one test per rule family
@pytest.mark.parametrize(
    "request_, field, rule",
    [
        ({"Environment": {"1BAD": "x"}}, "CreateTrainingJob.Environment", "must match [a-zA-Z_][a-zA-Z0-9_]*"),
        (
            {"ResourceConfig": {"VolumeKmsKeyId": "k" * 3000}},
            "CreateTrainingJob.ResourceConfig.VolumeKmsKeyId",
            "has at most 2048 characters",
        ),
        (
            {"RetryStrategy": {"MaximumRetryAttempts": 31}},
            "CreateTrainingJob.RetryStrategy.MaximumRetryAttempts",
            "is at most 30",
        ),
        (
            {"ResourceConfig": {"InstanceType": "ml.m5.huge"}},
            "CreateTrainingJob.ResourceConfig.InstanceType",
            "must be one of the",
        ),
        (
            {"Environment": {f"K{i}": "v" for i in range(101)}},
            "CreateTrainingJob.Environment",
            "has at most 100 entries",
        ),
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": 0}},
            "CreateTrainingJob.StoppingCondition.MaxRuntimeInSeconds",
            "is at least 1",
        ),
    ],
    ids=["pattern", "max length", "max value", "enum", "count", "min value"],
)
def test_each_rule_family_of_the_model_is_refused(request_, field, rule):
    (violation,) = rules.check("sagemaker", "CreateTrainingJob", request_)
    assert violation.field == field and violation.rule.startswith(rule)


def test_valid_values_pass_every_family():
    assert (
        rules.check(
            "sagemaker",
            "CreateTrainingJob",
            {
                "Environment": {f"K{i}": "v" for i in range(100)},
                "RetryStrategy": {"MaximumRetryAttempts": 30},
                "ResourceConfig": {
                    "InstanceType": "ml.m5.xlarge",
                    "KeepAlivePeriodInSeconds": 21600,
                    "VolumeKmsKeyId": "arn:aws:kms:us-east-1:111122223333:key/abc",
                },
                "VpcConfig": {"SecurityGroupIds": ["sg-0123"], "Subnets": ["subnet-1"]},
                "Tags": [{"Key": "équipe ml", "Value": "a:b/c=d+e-f@g"}],
            },
        )
        == []
    )  # \\p{L} in the tag pattern


def test_the_models_win_over_the_old_hand_written_limits(shell):
    """The tool refused 49 environment variables and a keep-alive of 3601 s; the model allows 98 (100, two of
    them the SDK's) and 21,600 s. It accepted a security group 'bad!sg' and 31 retries; the model refuses both."""
    shell.run(CONFIG)
    env = " ".join(f"--env K{i}=v" for i in range(98))
    shell.run(f"%%step --defer ok {env} --keep-alive-period-in-seconds 3601\nx = 1")
    shell.run("%%step --defer bad --security-group-id 'bad!sg' --subnet subnet-1 --max-retry-attempts 31\ny = 1")
    errors = shell.graph().report.errors
    assert [p.step for p in errors] == ["bad", "bad"]
    assert {p.message.split(" ")[0] for p in errors} == {"--security-group-id", "--max-retry-attempts"}


def test_the_sdks_own_environment_entries_count(shell):
    shell.run(CONFIG)
    env = " ".join(f"--env K{i}=v" for i in range(99))
    shell.run(f"%%step --defer a {env}\nx = 1")
    (error,) = shell.graph().report.errors
    assert "--env (99 entries) (from cell): Environment has at most 100 entries, 2 of them the SDK's" in error.message


def test_a_parameter_bound_option_is_checked_at_its_default_and_at_each_p_value(shell):
    shell.run(CONFIG)
    shell.run("%pipeline param Kind=ml.m5.xlarge")
    shell.run("%%step --defer a --instance-type Kind\nx = 1")
    assert not shell.graph().report.errors
    with pytest.raises(
        SmstepError,
        match=r"--instance-type 'ml.m5.huge' \(from cell, parameter Kind\): "
        r"InstanceType must be one of",
    ):
        shell.workspace.run_local(parameters={"Kind": "ml.m5.huge"})
    shell.run("%pipeline param Kind=ml.bogus")
    (error,) = shell.graph().report.errors
    assert "parameter Kind" in error.message and "ml.bogus" in error.message


def test_a_p_value_the_start_request_cannot_carry_is_refused():
    graph = type("G", (), {"name": "p", "parameters": {"Big": "x"}, "steps": [], "mlflow": {}})()
    (problem,) = rules.graph_problems(graph, {"Big": "x" * 1025})
    assert (
        problem.message.startswith("-p Big='xxxx")
        and "StartPipelineExecution.PipelineParameters.Value" in problem.message
    )


# ---------------------------------------------------------------------------- the definition
def definition(**arguments):
    return {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Kind", "Type": "String", "DefaultValue": "ml.m5.large"}],
        "Steps": [{"Name": "train", "Type": "Training", "Arguments": arguments}],
    }


def test_a_definition_value_that_is_a_parameter_is_checked_at_its_default_and_each_p_value():
    text = definition(ResourceConfig={"InstanceType": {"Get": "Parameters.Kind"}, "InstanceCount": 1})
    assert rules.definition_problems(text) == []
    (problem,) = rules.definition_problems(text, {"Kind": "ml.nope"})
    assert problem.step == "train" and problem.message.startswith("--instance-type 'ml.nope' (-p Kind=ml.nope)")
    # a value known only when the pipeline runs (a step's output) is not checked
    assert rules.definition_problems(definition(ResourceConfig={"InstanceType": {"Get": "Steps.a.X"}})) == []


def test_a_joined_value_is_checked_once_resolved():
    text = definition(
        Environment={"A": {"Std:Join": {"On": "", "Values": ["x" * 300, {"Get": "Parameters.Kind"}, "y" * 300]}}}
    )
    (problem,) = rules.definition_problems(text)
    assert "has at most 512 characters" in problem.message and "parameter Kind's default" in problem.message


def test_the_schema_exceptions_are_each_needed():
    """Each listed exception is one the SDK's definitions need: the published schema alone refuses them."""
    import jsonschema

    published = json.loads(schema.SCHEMA.read_text())
    sdk_like = {
        "Version": "2020-12-01",
        "Parameters": [],
        "PipelineExperimentConfig": None,
        "MlflowConfig": None,
        "Steps": [],
    }
    assert list(jsonschema.Draft7Validator(published).iter_errors(sdk_like))
    assert schema.problems(sdk_like) == []
    assert len(schema.EXCEPTIONS) == 6 and all(e.reason for e in schema.EXCEPTIONS)


def _for_each(**arguments):
    body = {"Name": "fit", "Type": "Training", "Arguments": {}}
    each = {"IterableItems": [0, 1], "MaxConcurrency": 2, "ForEachBody": [body]} | arguments
    return {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [{"Name": "fit-foreach", "Type": "ForEach", "Arguments": each}],
    }


def test_a_for_each_step_is_checked_by_what_sdk_3_27_and_the_service_allow():
    import jsonschema

    published = json.loads(schema.SCHEMA.read_text())
    assert list(jsonschema.Draft7Validator(published).iter_errors(_for_each()))  # the schema predates ForEach
    assert schema.problems(_for_each()) == []
    assert (
        schema.problems(
            _for_each(
                IterableItems={"Get": "Parameters.items"},
                Selector={"Pick": "MaxBy", "Field": {"Get": "IterationOutput.fit.x"}},
            )
        )
        == []
    )
    for wrong, where in [
        ({"MaxConcurrency": 51}, "/Arguments/MaxConcurrency"),
        ({"IterableItems": list(range(101))}, "/Arguments/IterableItems"),
        ({"IterableItems": []}, "/Arguments/IterableItems"),
        ({"Selector": {"Pick": "Best", "Field": {"Get": "IterationOutput.fit.x"}}}, "/Arguments/Selector/Pick"),
    ]:
        (problem,) = schema.problems(_for_each(**wrong))
        assert problem.step == "fit-foreach" and where in problem.message, (wrong, problem.message)


def test_a_definition_outside_the_schema_and_its_exceptions_is_refused():
    text = definition()
    text["Steps"][0]["CacheConfig"] = {"Enabled": "yes"}
    (problem,) = schema.problems(text)
    assert problem.step == "train" and "/CacheConfig/Enabled: 'yes' is not of type 'boolean'" in problem.message


def test_every_setting_lands_in_the_field_the_table_says(shell, session):
    """rules.FIELDS is what maps an option to the CreateTrainingJob field it is checked as: the SDK agrees."""
    shell.run(CONFIG)
    shell.run(
        "%%step --defer a --env A=1 --tag team=ml --security-group-id sg-1 --subnet subnet-1 "
        "--volume-kms-key key-1 --keep-alive-period-in-seconds 60 --max-retry-attempts 3 --volume-size 40 "
        "--instance-count 2 --max-runtime-in-seconds 700 --use-spot-instances --max-wait-time-in-seconds 800 "
        "--job-name-prefix jp\nx = 1"
    )
    step = shell.workspace.definition(session)["Steps"][0]["Arguments"]
    settings = {k: r.value for k, r in shell.graph().steps[0].settings.items()}
    for key, path in rules.FIELDS.items():
        node = step
        for part in path.split("."):
            node = node[part]
        expected = rules.step_request({key: settings[key]})
        for part in path.split("."):
            expected = expected[part]
        if key == "environment_variables":
            node = {k: v for k, v in node.items() if k in expected}
        assert node == expected, key


# ---------------------------------------------------------------------------- the requests
def test_a_schedule_name_and_role_are_checked_by_eventbridge_schedulers_model():
    problems = rules.schedule_problems("night ly", "rate(1 day)", "admin", {"p": "x"})
    assert [p.message.split(" ")[0] for p in problems] == ["the", "--role"]
    assert "(CreateSchedule.Name)" in problems[0].message and "(CreateSchedule.Target.RoleArn)" in problems[1].message


@pytest.fixture
def notebook(shell, moto_server, fake_sagemaker):
    role = prepare_account(moto_server)
    fake = fake_sagemaker()
    shell.run(f"%pipeline config --name refused --role {role} --image-uri {IMAGE} --instance-type ml.m5.large")
    shell.run("%pipeline param Kind=ml.m5.large")
    shell.run("%%step --defer a --instance-type Kind\nx = 1")
    fake.requests.clear()
    fake.calls.clear()
    return shell, fake


def test_a_submission_with_a_bad_p_value_sends_no_request(notebook):
    shell, fake = notebook
    with pytest.raises(SmstepError, match="InstanceType must be one of"):
        shell.workspace.submit({"Kind": "ml.m5.huge"})
    assert fake.requests == []  # refused from the notebook's values alone: not even a session


def test_what_the_graph_check_misses_the_definition_check_refuses_before_any_upload(notebook, monkeypatch):
    """The two layers: a value the settings check does not see (here: it is switched off) is still refused
    from the built definition, before any upload or pipeline request."""
    shell, fake = notebook
    monkeypatch.setattr(rules, "graph_problems", lambda graph, values=None: [])
    shell.run("%%step --defer b --env 1BAD=x --max-retry-attempts 31\ny = 1")
    with pytest.raises(SmstepError) as info:
        shell.workspace.submit()
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 2 and all(m.startswith(("--env '1BAD'", "--max-retry-attempts 31")) for m in messages)
    # no upload and no SageMaker request (what went out: the session's STS call for the account)
    assert [r for r in fake.requests if r[0] == "PUT"] == [] and fake.calls == []


def test_a_request_the_sdk_builds_is_checked_as_it_is_sent(notebook):
    shell, fake = notebook
    from jupyter_smstep import sdk

    session = sdk.make_session()
    rules.guard(session.sagemaker_client)
    fake.requests.clear()
    with pytest.raises(SmstepError, match=r"PipelineExecutionDisplayName must match"):
        session.sagemaker_client.start_pipeline_execution(PipelineName="refused", PipelineExecutionDisplayName="a b")
    assert fake.requests == []


def test_a_huge_value_is_refused_by_its_length_without_running_the_pattern():
    (violation,) = rules.check("sagemaker", "CreateTrainingJob", {"RoleArn": "x" * 100_000})
    assert violation.rule == "has at most 2048 characters"
