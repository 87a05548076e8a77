"""Shared fixtures: a real IPython shell with the extension loaded, moto as AWS, the fake SageMaker.

Every test runs in a folder of its own (its ``tmp_path``), so what a test leaves in the working
directory (a local run's ``.smstep/runs``, whose cache the next run would reuse) reaches no other
test, and tests can run side by side (``pytest -n``). The suite's own rules (required skips fail,
the SDK-line marker) live in :mod:`helpers.suite`.
"""

from __future__ import annotations

import pytest

from helpers.constants import IMAGE, ROLE
from helpers.fakes import FakeSageMaker, start_moto_server

pytest_plugins = ["helpers.suite"]


@pytest.fixture(scope="session", autouse=True)
def _every_definition_checked():
    """Every pipeline definition a test builds (submit, definition, schedule, a local run) is checked against
    SageMaker's published rules: its training steps against botocore's CreateTrainingJob model, the whole
    against the definition JSON schema. A test whose definition breaks them fails, naming the rule."""
    from jupyter_smstep.sdk import build, rules, schema

    original = build.Compiled.definition

    def definition(self):
        text = original(self)
        problems = rules.definition_problems(text) + schema.problems(text)
        assert not problems, "the SDK built a definition SageMaker would refuse:\n" + "\n".join(map(str, problems))
        return text

    build.Compiled.definition = definition
    yield
    build.Compiled.definition = original


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch, tmp_path):
    """Dummy credentials and no stray config: tests never reach a real AWS account. Each test runs in
    its own folder (its local runs, their cache, anything written relative to it stay its own)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("SAGEMAKER_INTERNAL_IMAGE_URI", raising=False)
    monkeypatch.delenv("SM_INTERNAL_IMAGE_URI", raising=False)
    # Prices and instance specs are never asked of real AWS from a test (nothing listens on port 9)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    monkeypatch.setenv("SMSTEP_CACHE_DIR", str(tmp_path / "smstep-cache"))
    # The signing secret of content-addressed builds: one per test session, never the user's own.
    monkeypatch.setenv("SMSTEP_DATA_DIR", str(tmp_path.parent / "smstep-data"))
    # Empty SDK config files, so the machine's own never leak in. (Empty, not a bare SchemaVersion:
    # v3 validates a non-empty config on every lookup; sdk.load() memoizes that for users.)
    for kind in ("USER", "ADMIN"):
        path = tmp_path / f"{kind.lower()}-config.yaml"
        path.write_text("")
        monkeypatch.setenv(f"SAGEMAKER_{kind}_CONFIG_OVERRIDE", str(path))


class Shell:
    """A real IPython shell with ``%load_ext jupyter_smstep``; cells run with run_cell."""

    def __init__(self, ip):
        self.ip = ip

    def run(self, source: str, *, ok: bool = True):
        result = self.ip.run_cell(source)
        if ok and not result.success:
            raise AssertionError(f"cell failed: {result.error_before_exec or result.error_in_exec!r}\n{source}")
        return result

    def error(self, source: str) -> str:
        """Run a cell that must fail; return the error text."""
        result = self.ip.run_cell(source)
        assert not result.success, f"cell unexpectedly succeeded:\n{source}"
        return str(result.error_before_exec or result.error_in_exec)

    @property
    def workspace(self):
        import jupyter_smstep

        return jupyter_smstep.get_workspace()

    def graph(self):
        return self.workspace.graph()

    def notebook(self, name: str, cells: list[str]) -> Shell:
        """Configure the pipeline ``name`` and run ``cells`` in order (each must succeed)."""
        self.configure(name=name)
        for source in cells:
            self.run(source)
        return self

    def run_local(self, runs_dir, **kwargs):
        """A local run of the workspace into ``runs_dir``: (its result, the events it emitted)."""
        events: list = []
        result = self.workspace.run_local(runs_dir=runs_dir, on_event=events.append, **kwargs)
        return result, events

    def configure(self, name: str = "test-pipeline", **extra: str) -> None:
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in extra.items())
        self.run(
            f"%pipeline config --name {name} --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large {flags}"
        )


#: What a fresh IPython shell puts in the user's namespace (besides ``_``-names): kept, as a kernel has them.
FRESH_NAMES = ("In", "Out", "get_ipython", "exit", "quit", "open")


@pytest.fixture
def shell():
    from IPython.testing.globalipapp import start_ipython

    import jupyter_smstep

    ip = start_ipython() or __import__("IPython").get_ipython()
    jupyter_smstep.unload_ipython_extension(ip)
    keep = {k: v for k, v in ip.user_ns.items() if k.startswith("_") or k in FRESH_NAMES}
    ip.user_ns.clear()
    ip.user_ns.update(keep)
    ip.extension_manager.loaded.discard("jupyter_smstep")
    ip.run_cell("%load_ext jupyter_smstep")
    yield Shell(ip)
    jupyter_smstep.unload_ipython_extension(ip)


@pytest.fixture
def aws():
    """moto as the AWS endpoint (in-process), with a default bucket."""
    from moto import mock_aws

    with mock_aws():
        import boto3

        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="smstep-test")
        yield boto3.Session(region_name="us-east-1")


@pytest.fixture
def session(aws):
    from jupyter_smstep import sdk

    return sdk.make_session(bucket="smstep-test", boto_session=aws)


@pytest.fixture(scope="session")
def moto_server():
    """moto in server mode on 127.0.0.1, shared by every test that needs a real HTTP endpoint."""
    server, url = start_moto_server()
    yield url
    server.stop()


@pytest.fixture
def fake_sagemaker(moto_server, monkeypatch):
    """Start a :class:`FakeSageMaker` in front of moto and point ``AWS_ENDPOINT_URL`` at it."""
    started = []

    def start(**kwargs):
        fake = FakeSageMaker(upstream=moto_server, **kwargs).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()
