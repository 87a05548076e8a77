"""What a step's container gets: its input channels, its working directory and its environment.

A ``@step`` runs as a training job: SageMaker downloads the job's input channels
(the pickled function and arguments come through S3, the user workspace and the
``pre_exec_script_and_dependencies`` channel as files), starts the container with
the job's ``Environment`` and ``SM_*`` variables, and the SDK's bootstrap runs the
function in ``sagemaker_remote_function_workspace``. :class:`Container` does the
same for one local run: channels are staged once per step into a template folder
(off the scheduler's critical path), each attempt gets a fresh copy, and the
environment points every AWS call at the run's embedded S3.

The runner reads the embedded S3's files directly (it is the server's own storage):
staging a channel is a file copy, not a download.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.local.definition import Resolver, StepSpec, split_s3_uri, to_text
from jupyter_smstep.local.environment import check_dependencies_dir
from jupyter_smstep.local.s3 import LOCAL_ACCOUNT, LocalS3

WORKSPACE = "sagemaker_remote_function_workspace"


def cores() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def job_name(run_id: str, step: str, attempt: int) -> str:
    """A training job name as the service makes them: ``pipelines-<execution>-<step>-<suffix>``."""
    clean = re.sub(r"[^A-Za-z0-9-]", "-", step)
    suffix = secrets.token_hex(3) + f"-{attempt}"
    base = f"pipelines-{run_id}-{clean}"
    return f"{base[: 63 - len(suffix) - 1]}-{suffix}"


def job_properties(args: dict, name: str, output_uri: str, region: str) -> dict:
    """What ``Steps.<name>.*`` reads after the step: a DescribeTrainingJob-like view."""
    properties = dict(args)
    properties.update(
        {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:training-job/{name}",
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": f"{output_uri.rstrip('/')}/{name}/output/model.tar.gz"},
        }
    )
    return properties


class Container:
    """The containers of one run: staging channels and building environments against its S3."""

    def __init__(
        self, run_dir: Path, s3: LocalS3, resolver: Resolver, host_env: Mapping[str, str] | None = None
    ) -> None:
        self.run_dir = run_dir
        #: what a step's process inherits from this machine (default: this process's environment; a kernel
        #: passes its own without what its cells set, which a SageMaker job would not have)
        self.host_env = os.environ if host_env is None else host_env
        self._callers = itertools.count(1)
        self.s3 = s3
        self.resolver = resolver
        # The job's container does not see this machine's SageMaker config files
        # (~/.config/sagemaker, /etc/xdg/sagemaker); an empty file stands for them.
        self.empty_config = run_dir / "container-sagemaker-config.yaml"
        self.empty_config.write_text("")

    # ------------------------------------------------------------------ channels
    def prepare_channels(self, spec: StepSpec) -> tuple[Path, list[str]]:
        """Fetch the step's input channels once, and check its requirements (called in a thread).

        The container bootstrap unpacks the user workspace (when the step ships
        one) and copies the ``pre_exec_script_and_dependencies`` channel into it;
        here that becomes a template folder copied into each attempt's working
        directory. Requirements are checked against this environment, never
        installed. Returns the template and the warnings to show.
        """
        template = self.run_dir / "steps" / spec.name / "channels"
        workspace = template / WORKSPACE
        warnings: list[str] = []
        input_config = self.resolver.evaluate(spec.arguments.get("InputDataConfig", []))
        channels = {
            c["ChannelName"]: to_text(c["DataSource"]["S3DataSource"]["S3Uri"])
            for c in input_config
            if "S3DataSource" in c.get("DataSource", {})
        }
        step_dir = spec.option("func_step_s3_dir")
        if step_dir and step_dir in channels:  # IncludeLocalWorkDir: the notebook folder's files, zipped
            self._stage_workspace(spec.name, channels[step_dir], template / "input" / step_dir, template)
        workspace.mkdir(parents=True, exist_ok=True)
        deps_uri = channels.get("pre_exec_script_and_dependencies")
        if deps_uri:
            deps_dir = template / "pre_exec_script_and_dependencies"
            self.download_prefix(deps_uri, deps_dir)
            for item in deps_dir.iterdir():
                if item.is_file():
                    shutil.copy(item, workspace / item.name)
            settings = spec.option("dependency_settings")
            dependency_file = None
            if settings:
                try:
                    dependency_file = json.loads(settings).get("dependency_file")
                except ValueError:
                    pass
            warnings += check_dependencies_dir(deps_dir, dependency_file)
        count = spec.arguments.get("ResourceConfig", {}).get("InstanceCount", 1)
        if isinstance(count, int) and count > 1:
            warnings.append(f"instance_count={count}: the local runner runs the step once, in one process")
        return workspace, warnings

    def _stage_workspace(self, step: str, uri: str, channel: Path, template: Path) -> None:
        """Unpack the workspace channel into ``template`` as the job's bootstrap does.

        The SDK gives the first step that uploads it the archive itself
        (``.../sm_rf_user_ws/<build>/workspace.zip``) and every later step its folder; SageMaker
        downloads either into the channel as ``workspace.zip``, and so does this. A channel with no
        archive is an error: the step would run in an empty folder and miss every file.
        """
        self.download_prefix(uri, channel)
        archive = channel / "workspace.zip"
        if not archive.is_file():
            raise SmstepError(
                Problem(
                    f"its workspace channel (IncludeLocalWorkDir) has no workspace.zip at {uri}",
                    step=step,
                    fix="build the pipeline again; if it persists, report it with the step's definition "
                    "(%pipeline definition)",
                )
            )
        with zipfile.ZipFile(archive) as z:
            z.extractall(template)
        shutil.rmtree(channel, ignore_errors=True)

    @staticmethod
    def attempt_workspace(template: Path, folder: Path) -> Path:
        """An attempt's working directory: a fresh copy of the step's template."""
        workspace = folder / template.name
        shutil.copytree(template, workspace, dirs_exist_ok=True)
        return workspace

    # ------------------------------------------------------------------ environment
    def environment(self, args: dict, folder: Path, name: str, failure_path: Path) -> dict[str, str]:
        """The training container's environment, pointed at the local S3 and this attempt's folders."""
        region = self.s3.region
        env = {k: v for k, v in self.host_env.items() if not k.startswith("AWS_")}
        opt_ml = folder / "opt_ml"
        for sub in ("model", "output/data", "input/data", "input/config"):
            (opt_ml / sub).mkdir(parents=True, exist_ok=True)
        instance_type = to_text(args.get("ResourceConfig", {}).get("InstanceType", ""))
        env.update(
            {
                "AWS_REGION": region,
                "AWS_DEFAULT_REGION": region,
                # the run's own credentials: its endpoint answers only requests signed with them
                "AWS_ACCESS_KEY_ID": self.s3.caller(str(next(self._callers))),  # this attempt's: what it reads is known
                "AWS_SECRET_ACCESS_KEY": self.s3.credentials.secret_key,
                "AWS_ENDPOINT_URL": self.s3.endpoint_url,
                "AWS_ENDPOINT_URL_S3": self.s3.endpoint_url,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "TRAINING_JOB_NAME": name,
                "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:training-job/{name}",
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": '["algo-1"]',
                "SM_HOST_COUNT": "1",
                "SM_CURRENT_HOST_RANK": "0",
                "SM_CURRENT_INSTANCE_TYPE": instance_type,
                "SM_NUM_CPUS": str(cores()),
                "SM_NUM_GPUS": "0",
                "SM_MODEL_DIR": str(opt_ml / "model"),
                "SM_INPUT_DIR": str(opt_ml / "input"),
                "SM_INPUT_DATA_DIR": str(opt_ml / "input" / "data"),
                "SM_INPUT_CONFIG_DIR": str(opt_ml / "input" / "config"),
                "SM_OUTPUT_DIR": str(opt_ml / "output"),
                "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
                "SM_OUTPUT_FAILURE": str(failure_path),
                "SAGEMAKER_USER_CONFIG_OVERRIDE": str(self.empty_config),
                "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(self.empty_config),
            }
        )
        for key, value in (args.get("Environment") or {}).items():
            env[key] = to_text(value)
        return env

    # ------------------------------------------------------------------ the run's S3, as files
    def read(self, uri: str) -> bytes:
        return self.s3.path(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        return self.s3.exists(uri)

    def download(self, uri: str, dest: Path) -> bool:
        if not self.exists(uri):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.s3.path(uri), dest)
        return True

    def download_prefix(self, uri: str, dest: Path) -> None:
        """Stage an ``S3Prefix`` channel into ``dest`` as SageMaker does: an object whose key is the
        prefix itself lands as its base name, the objects under ``prefix/`` at their relative paths."""
        bucket, prefix = split_s3_uri(uri)
        prefix = prefix.rstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        if prefix and self.exists(f"s3://{bucket}/{prefix}"):
            shutil.copyfile(self.s3.path(f"s3://{bucket}/{prefix}"), dest / prefix.rsplit("/", 1)[-1])
        folder = prefix + "/" if prefix else ""
        for key in self.s3.keys(bucket, folder):
            rel = key[len(folder) :]
            if rel and not rel.endswith("/"):
                target = dest.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.s3.path(f"s3://{bucket}/{key}"), target)
