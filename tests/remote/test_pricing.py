"""Cost estimates: measured time x prices from a fake Price List API on 127.0.0.1, a prices file, or none."""

from __future__ import annotations

import json
import os

import pytest

from helpers.fakes import FakePricing, price_item

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="the estimate needs a measured local run")


@pytest.fixture
def measured(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SMSTEP_CACHE_DIR", str(tmp_path / "cache"))
    shell.configure(name="priced")
    shell.run("%%step prep --defer --instance-type ml.m5.2xlarge\nv = 1")
    shell.run(
        "%%step fit --defer --instance-type ml.m5.large --use-spot-instances --max-wait-time-in-seconds 90000"
        "\nw = v + 1"
    )
    result = shell.workspace.run_local(runs_dir=tmp_path / ".smstep" / "runs")
    assert result.succeeded
    shell.workspace.root = tmp_path
    return shell, result


@pytest.fixture
def pricing(monkeypatch):
    fake = FakePricing(
        [
            price_item("ml.m5.large", "USE1-Notebk:ml.m5.large", "0.999"),  # not training: never used
            price_item("ml.m5.large", "USE1-Train:ml.m5.large", "0.115"),
            price_item("ml.m5.2xlarge", "USE1-Train:ml.m5.2xlarge", "0.461"),
        ],
        page_size=1,
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", fake.url)
    yield fake
    fake.stop()


def expected_total(result) -> float:
    walls = {n: s.resources["wall_s"] for n, s in result.steps.items()}
    return (walls["prep"] + 60) / 3600 * 0.461 + (walls["fit"] + 60) / 3600 * 0.115


def test_prices_from_the_api_with_paging_make_the_estimate_and_are_cached_for_a_day(measured, pricing):
    shell, result = measured
    estimate = shell.workspace.estimate(region="us-east-1")
    assert estimate.total == pytest.approx(expected_total(result))
    assert any(call.get("NextToken") for call in pricing.calls)  # the Notebook product came first: paged
    lines = estimate.lines()
    assert lines[0].startswith("estimated cost: at least ") and "AWS Price List API, us-east-1" in lines[0]
    assert any("fit: 1 × ml.m5.large" in line and "with spot up to 90% less" in line for line in lines)
    calls = len(pricing.calls)
    again = shell.workspace.estimate(region="us-east-1")
    assert len(pricing.calls) == calls and "(cached)" in again.prices.source


def test_an_api_error_or_no_endpoint_gives_instance_hours_only_and_says_why(measured, pricing, monkeypatch):
    shell, _ = measured
    pricing.fail_with = (400, "AccessDeniedException", "not allowed to pricing:GetProducts")
    estimate = shell.workspace.estimate(region="us-east-1")
    assert estimate.total is None and estimate.prices is None
    assert "AccessDeniedException" in estimate.why_no_prices and "instance-hours (no cost:" in estimate.lines()[0]
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", "http://127.0.0.1:9")  # nothing listens: offline
    offline = shell.workspace.estimate(region="us-east-1")
    assert offline.total is None and "could not be asked" in offline.why_no_prices


def test_a_prices_file_is_used_as_given_and_a_bad_one_is_an_error(measured, tmp_path, capsys):
    shell, result = measured
    good = tmp_path / "prices.json"
    good.write_text(
        json.dumps({"region": "us-east-1", "currency": "USD", "hourly": {"ml.m5.large": 0.115, "ml.m5.2xlarge": 0.461}})
    )
    capsys.readouterr()
    shell.run(f"%pipeline cost --prices {good} --json")
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"] == pytest.approx(expected_total(result), rel=1e-3) and doc["prices_source"] == str(good)
    for text, message in [
        ("{", "is not JSON"),
        ('{"hourly": {}}', 'has no "hourly" object'),
        ('{"hourly": {"m5.large": 1}}', "is not an ml.* type"),
        ('{"hourly": {"ml.m5.large": -1}}', "price per hour of at least 0"),
        ('{"hourly": {"ml.m5.large": 1' + "0" * 400 + "}}", "finite price per hour"),
        ('{"hourly": {"ml.m5.large": Infinity}}', "Infinity is not a number JSON allows"),
        ('{"hourly": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ('{"hourly": {"ml.m5.large": 0.1, "ml.m5.large": 0.2}}', "gives 'ml.m5.large' two values (0.1 and 0.2)"),
    ]:
        good.write_text(text)
        assert message in shell.error(f"%pipeline cost --prices {good}")
    good.write_text(json.dumps({"hourly": {"ml.m5.large": 0.115}}))
    partial = shell.workspace.estimate(str(good))
    assert partial.total is None and "has no price for ml.m5.2xlarge" in partial.why_no_prices


def test_no_measured_run_is_an_error_not_a_guess(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shell.configure(name="never-run")
    shell.workspace.root = tmp_path
    shell.run("%%step a --defer\nx = 1")
    assert "no local run of 'never-run' with measurements" in shell.error("%pipeline cost")


def test_suggestions_use_ec2_specs_from_moto_and_say_when_they_fall_back(measured, moto_server, monkeypatch):
    import boto3

    from jupyter_smstep.remote.instance_specs import describe

    specs, note = describe(["ml.m5.2xlarge"], boto3.client("ec2", endpoint_url=moto_server, region_name="us-east-1"))
    assert note == "" and specs.source.startswith("EC2 DescribeInstanceTypes")
    assert specs.get("ml.m5.2xlarge").memory_mib == 32768 and specs.get("ml.m5.large").vcpus == 2
    shell, _ = measured
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")  # nothing listens: offline
    found, fallback = shell.workspace.suggestions()
    assert "could not be asked" in fallback
    assert "ml.m5.2xlarge (8 vCPU, 32 GiB) → ml.m5.large (2 vCPU, 8 GiB)" in found["prep"].note


def test_ec2_specs_are_asked_in_the_region_aws_region_names(moto_server, monkeypatch):
    from jupyter_smstep.remote.instance_specs import describe

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the AWS CLI's variable, which this botocore does not read
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", moto_server)
    specs, note = describe(["ml.m5.2xlarge"])
    assert note == "" and specs.source.startswith("EC2 DescribeInstanceTypes"), note


def test_cost_uses_only_this_notebooks_runs_not_anothers_with_the_same_pipeline_name(tmp_path, monkeypatch, capsys):
    import nbformat

    from jupyter_smstep import cli
    from helpers.constants import IMAGE, ROLE

    for name, step in (("a.ipynb", "%%step heavy\nx = sum(range(10))"), ("b.ipynb", "%%step light\ny = 1")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(c)
            for c in (
                "%load_ext jupyter_smstep",
                f"%pipeline config --name shared --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
                step,
            )
        ]
        nbformat.write(nb, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", "http://127.0.0.1:9")
    assert cli.main(["run", "a.ipynb"]) == 0
    capsys.readouterr()
    assert cli.main(["cost", "b.ipynb"]) == 2  # a.ipynb's run is no measurement of b.ipynb
    assert "no local run of 'shared' with measurements" in capsys.readouterr().err
    assert cli.main(["cost", "a.ipynb"]) == 0
    assert "heavy" in capsys.readouterr().out
