"""Settings precedence, config.yaml, the Studio kernel image and validation."""

from __future__ import annotations

from jupyter_smstep.core import settings
from jupyter_smstep.core import studio
from jupyter_smstep.core import sdk_config

from helpers.constants import IMAGE, ROLE


def test_precedence_cell_notebook_config_default(shell, tmp_path, monkeypatch):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
        "        InstanceType: ml.c5.large\n        RoleArn: arn:aws:iam::111122223333:role/FromConfig\n"
        "        Tags:\n          - Key: team\n            Value: ml\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(cfg))
    shell.run(f"%pipeline config --name p --image-uri {IMAGE} --volume-size 64")
    shell.run("%%step --defer a --volume-size 100\nx = 1")
    shell.run("%%step --defer b\ny = 2")
    a, b = shell.graph().steps
    assert a.settings["volume_size"] == settings.Resolved(100, "cell")
    assert b.settings["volume_size"] == settings.Resolved(64, "notebook")
    assert b.settings["instance_type"] == settings.Resolved("ml.c5.large", "config.yaml")
    assert b.settings["role"].source == "config.yaml"
    assert b.settings["tags"].value == {"team": "ml"}
    assert b.settings["max_runtime_in_seconds"] == settings.Resolved(86400, "default")


def test_kernel_image_is_pinned_and_used(shell, monkeypatch):
    monkeypatch.setenv(
        "SAGEMAKER_INTERNAL_IMAGE_URI", "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution-prod"
    )
    monkeypatch.setenv("IMAGE_VERSION", "2.4.1-cpu")
    shell.run(f"%pipeline config --name p --role {ROLE} --instance-type ml.m5.large")
    shell.run("%%step --defer a\nx = 1")
    g = shell.graph()
    image = g.steps[0].settings["image_uri"]
    assert image.source == "kernel image"
    assert image.value.endswith("sagemaker-distribution-prod:2.4.1-cpu")
    assert "IMAGE_VERSION" in g.kernel_image_note
    assert not g.report.errors  # in Studio a role is optional too


def test_studio_image_variants():
    assert studio.kernel_image({}).uri is None
    tagged = studio.kernel_image({"SAGEMAKER_INTERNAL_IMAGE_URI": "r/img:1.0", "IMAGE_VERSION": "2"})
    assert tagged.uri == "r/img:1.0"
    renamed = studio.kernel_image({"SM_INTERNAL_IMAGE_URI": "r/img"})
    assert renamed.uri == "r/img" and "untagged" in renamed.note
    assert studio.in_studio({"SERVICE_NAME": "SageMakerUnifiedStudio"}, path=__import__("pathlib").Path("/nonexistent"))


def test_missing_role_and_image_outside_studio(shell):
    shell.run("%pipeline config --name p --instance-type ml.m5.large")
    shell.run("%%step --defer a\nx = 1")
    errors = [str(p) for p in shell.graph().report.errors]
    assert any("no IAM role" in e and "--role" in e for e in errors)
    import sys

    if f"{sys.version_info[0]}.{sys.version_info[1]}" not in ("3.8", "3.10"):
        # a warning (a local run needs no image), and an error where the service needs it
        warnings = [str(p) for p in shell.graph().report.warnings]
        assert any("no image_uri" in w and "a local run needs none" in w and "--image-uri" in w for w in warnings)
        assert not any("no image_uri" in e for e in errors)
        from jupyter_smstep.core.model import check_buildable
        from jupyter_smstep.errors import SmstepError

        graph = shell.graph()
        graph.report.problems = [p for p in graph.report.problems if "IAM role" not in p.message]
        check_buildable(graph, for_the_service=False)
        try:
            check_buildable(graph)
        except SmstepError as exc:
            assert "no image_uri" in str(exc) and "--image-uri" in str(exc)
        else:
            raise AssertionError("a definition for the service needs an image")


def test_invalid_instance_type(shell):
    shell.configure()
    shell.run("%%step --defer a --instance-type m5.large\nx = 1")
    (err,) = shell.graph().report.errors
    assert "--instance-type 'm5.large' (from cell): InstanceType must be one of the" in err.message
    assert "(CreateTrainingJob.ResourceConfig.InstanceType)" in err.message and "ml.m5.large" in err.fix


def test_job_name_prefix_fits_63_characters():
    prefix = settings.job_name_prefix("a" * 200, "my_step")
    assert len(prefix) + len("-2026-11-27-16-26-14-625") <= 63
    assert "_" not in settings.job_name_prefix("abalone", "my_step")
    assert settings.job_name_prefix("abalone", "train") == "abalone-train"


def test_bad_role_arn(shell):
    shell.configure()
    shell.run("%%step --defer a --role MyRole\nx = 1")
    (err,) = shell.graph().report.errors
    assert err.message.startswith("--role 'MyRole' (from cell): RoleArn must match arn:aws")


def test_invalid_yaml_config_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / "config.yaml"
    bad.write_text("SageMaker: [unclosed")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(bad))
    import pytest

    from jupyter_smstep.errors import SmstepError

    with pytest.raises(SmstepError, match="not valid YAML"):
        sdk_config.load_sdk_config()
