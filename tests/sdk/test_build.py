"""Compiling to a real SageMaker definition, with moto as the AWS endpoint."""

from __future__ import annotations

import json
import runpy

import pytest

from jupyter_smstep.errors import SmstepError

from helpers.constants import IMAGE, ROLE, s3_keys

NOTEBOOK = [
    "%pipeline param input_uri=s3://bucket/abalone.csv epochs=10",
    "import math\ndef load(uri):\n    return list(range(10))\ndef split(df, frac):\n"
    "    n = int(len(df) * frac)\n    return df[:n], df[n:]",
    "%%step preprocess --instance-type ml.m5.2xlarge\ndf = load(input_uri)\ntrain, test = split(df, 0.8)",
    "%%step train\nmodel = sum(train) * epochs + math.sqrt(4)",
    "%%step evaluate\nscore = model - sum(test)",
]


def build(shell):
    shell.configure(name="abalone")
    for cell in NOTEBOOK:
        shell.run(cell)


def steps_by_name(definition):
    return {s["Name"]: s for s in definition["Steps"]}


def property_refs(step):
    args = step["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    i = args.index("--property_references")
    refs = args[i + 1 :]
    return {refs[j] for j in range(0, len(refs), 2) if isinstance(refs[j], str) and not refs[j].startswith("--")}


def test_definition_has_steps_links_and_settings(shell, session):
    build(shell)
    d = shell.workspace.definition(session)
    steps = steps_by_name(d)
    assert set(steps) == {"preprocess", "train", "evaluate"}
    assert "DependsOn" not in steps["preprocess"]
    assert steps["train"]["DependsOn"] == ["preprocess"]
    assert set(steps["evaluate"]["DependsOn"]) == {"train", "preprocess"}
    assert "Steps.preprocess.OutputDataConfig.S3OutputPath" in property_refs(steps["train"])
    assert "Parameters.epochs" in property_refs(steps["train"])
    assert {p["Name"]: p["Type"] for p in d["Parameters"]} == {"input_uri": "String", "epochs": "Integer"}
    pre = steps["preprocess"]["Arguments"]
    assert pre["ResourceConfig"]["InstanceType"] == "ml.m5.2xlarge"
    assert steps["train"]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert pre["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert pre["RoleArn"] == ROLE
    assert pre["TrainingJobName"] == "abalone-preprocess"
    assert steps["preprocess"]["DisplayName"] == "preprocess"


def test_every_option_reaches_the_definition(shell, session):
    shell.configure(name="opts")
    shell.run(
        "%%step --defer full --retry SageMaker.CAPACITY_ERROR:3 --retry Step.THROTTLING:4:2:1.5 "
        "--env A=1 --instance-count 2 --max-runtime-in-seconds 600 --volume-size 50 --tag team=ml "
        "--subnets subnet-1 --security-group-ids sg-1 --keep-alive-period-in-seconds 60 "
        "--use-spot-instances --max-wait-time-in-seconds 900 --encrypt-inter-container-traffic\nx = 1"
    )
    step = steps_by_name(shell.workspace.definition(session))["full"]
    args = step["Arguments"]
    assert args["ResourceConfig"]["InstanceCount"] == 2 and args["ResourceConfig"]["VolumeSizeInGB"] == 50
    assert args["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 60
    assert args["StoppingCondition"]["MaxRuntimeInSeconds"] == 600
    assert args["StoppingCondition"]["MaxWaitTimeInSeconds"] == 900
    assert args["Environment"]["A"] == "1"
    assert args["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert args["EnableManagedSpotTraining"] is True and args["EnableInterContainerTrafficEncryption"] is True
    policies = step["RetryPolicies"]
    assert {tuple(p["ExceptionType"]) for p in policies} == {("SageMaker.CAPACITY_ERROR",), ("Step.THROTTLING",)}


def test_validation_failure_uploads_nothing(shell, aws, session):
    build(shell)
    shell.run("%%step --defer broken\nz = does_not_exist + 1")
    before = s3_keys(aws)
    with pytest.raises(SmstepError, match="does_not_exist"):
        shell.workspace.definition(session)
    assert s3_keys(aws) == before


def test_unpicklable_captured_value_is_named(shell, session, tmp_path):
    shell.configure(name="p")
    shell.run(f"handle = open({str(tmp_path / 'f.txt')!r}, 'w')")
    shell.run("%%step --defer writes\nhandle.write('x')")
    with pytest.raises(SmstepError) as info:
        shell.workspace.definition(session)
    text = str(info.value)
    assert "step 'writes'" in text and "captures 'handle', an open file" in text
    assert "open the file inside the step" in text
    shell.ip.user_ns["handle"].close()


def test_magic_errors_are_usage_errors_without_traceback(shell, capsys):
    from IPython.core.error import UsageError

    shell.configure(name="p")
    shell.run("%%step --defer a\ny = nowhere")
    capsys.readouterr()
    result = shell.ip.run_cell("%pipeline definition")
    assert isinstance(result.error_in_exec, UsageError)  # IPython shows a UsageError without a traceback
    msg = str(result.error_in_exec)
    assert "nowhere" in msg and "fix:" in msg
    shown = capsys.readouterr()
    assert "nowhere" in shown.err + shown.out and "Traceback" not in shown.err + shown.out


def test_empty_pipeline(shell):
    shell.configure(name="p")
    assert "no %%step cells" in shell.error("%pipeline definition")


def comparable(definition):
    """Steps, links and settings, without the build timestamps and upload paths."""
    from jupyter_smstep.core.conditions import definition_steps

    out = {}
    for s, _ in definition_steps(definition):
        a = s["Arguments"]
        if s["Type"] == "ForEach":  # its body step follows it
            out[s["Name"]] = {"depends": sorted(s.get("DependsOn", [])), **{k: a[k] for k in a if k != "ForEachBody"}}
            continue
        out[s["Name"]] = {
            "depends": sorted(s.get("DependsOn", [])),
            "refs": sorted(property_refs(s)),
            "resources": a["ResourceConfig"],
            "image": a["AlgorithmSpecification"]["TrainingImage"],
            "role": a["RoleArn"],
            "job": a.get("TrainingJobName"),
            "stop": a["StoppingCondition"],
            # v3 signs each build's payloads with a fresh key; everything else must match
            "env": {k: v for k, v in (a.get("Environment") or {}).items() if k != "REMOTE_FUNCTION_SECRET_KEY"},
            "display": s.get("DisplayName"),
            "retry": s.get("RetryPolicies"),
            "cache": s.get("CacheConfig"),
        }
    return out, definition["Parameters"]


def test_export_builds_the_same_pipeline(shell, session, tmp_path, monkeypatch):
    build(shell)
    notebook_def = shell.workspace.definition(session)
    path = tmp_path / "pipeline.py"
    shell.run(f"%pipeline export {path}")
    text = path.read_text()
    assert "@step(name='preprocess'" in text and "def preprocess(input_uri):" in text
    assert "import math" in text and "def load(uri):" in text
    module = runpy.run_path(str(path), run_name="exported")
    pipeline = module["pipeline"]
    pipeline.sagemaker_session = session
    exported_def = json.loads(pipeline.definition())
    assert comparable(exported_def) == comparable(notebook_def)


def export_and_build(shell, session, path) -> tuple[str, dict]:
    """``%pipeline export`` to ``path``, then the exported module's own definition (against ``session``)."""
    shell.run(f"%pipeline export {path}")
    module = runpy.run_path(str(path), run_name="exported")
    module["pipeline"].sagemaker_session = session
    return path.read_text(), json.loads(module["pipeline"].definition())


def test_the_export_puts_the_same_cache_config_on_the_same_steps(shell, session, tmp_path):
    build(shell)
    shell.run("%%step train --cache P30D\nmodel = sum(train) * epochs + math.sqrt(4)")
    notebook_def = shell.workspace.definition(session)
    assert steps_by_name(notebook_def)["train"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    text, exported = export_and_build(shell, session, tmp_path / "cached.py")
    assert "cache_step(train_step_out, 'P30D')" in text
    assert comparable(exported) == comparable(notebook_def)


def test_compiled_function_runs_and_keeps_cell_line_numbers(shell, session):
    shell.configure(name="p")
    shell.run("import math")
    shell.run("%%step --defer a\nx = 1\ny = math.sqrt(x) / 0")
    from jupyter_smstep.sdk.build import step_functions

    functions = step_functions(shell.graph(), shell.ip.user_ns)
    with pytest.raises(ZeroDivisionError) as info:
        functions["a"]()
    frame = info.traceback[-1]
    assert frame.lineno + 1 == 3  # line 3 of the cell (line 1 is %%step)
    assert "%%step a" in str(frame.path) or "%%step a" in str(info.traceback[-1].frame.code.raw.co_filename)


def test_after_adds_an_order_only_dependency_to_the_definition_and_the_export(shell, session, tmp_path):
    shell.configure(name="ordered")
    shell.run("%%step --defer publish\nmarker = 'written'")
    shell.run("%%step --defer notify --after publish\nsent = True")
    graph = shell.graph()
    assert graph.step("notify").depends_on == ["publish"] and graph.step("notify").order_only == ["publish"]
    assert graph.to_json()["steps"][1]["depends_on"] == ["publish"]
    definition = shell.workspace.definition(session)
    assert steps_by_name(definition)["notify"]["DependsOn"] == ["publish"]
    text, exported = export_and_build(shell, session, tmp_path / "ordered.py")
    assert "get_step(notify_out).add_depends_on([get_step(publish_out)])" in text
    assert comparable(exported) == comparable(definition)


@pytest.mark.parametrize(
    "line, message",
    [
        ("--after nope", "there is no step 'nope' above this one"),
        ("--after publsh", "did you mean publish?"),
        ("--after later", "step 'later' comes later in the notebook"),
        ("--after notify", "a step cannot run after itself"),
    ],
)
def test_after_names_an_earlier_step(shell, line, message):
    shell.configure(name="ordered")
    shell.run("%%step --defer publish\nmarker = 1")
    shell.run(f"%%step --defer notify {line}\nsent = True")
    shell.run("%%step --defer later\nz = 2")
    problems = [p for p in shell.graph().report.errors if p.step == "notify"]
    assert any(message in p.message or message in p.fix for p in problems), problems


def test_a_local_run_honours_after(shell, tmp_path):
    shell.configure(name="ordered")
    shell.ip.user_ns["flag_file"] = str(tmp_path / "flag")
    shell.run("%%step --defer publish\nimport time, pathlib\ntime.sleep(0.5)\npathlib.Path(flag_file).write_text('x')")
    shell.run("%%step --defer notify --after publish\nimport pathlib\nseen = pathlib.Path(flag_file).exists()")
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, {n: s.error for n, s in result.steps.items()}
    assert result.outputs("notify") == {"seen": True}
    assert result.steps["notify"].started >= result.steps["publish"].ended


def test_unpickling_a_step_function_first_imports_what_its_upstream_results_are_made_of(shell, tmp_path):
    """The SDK reads a step's upstream results in parallel threads, which can race importing the library that
    made them (scikit-learn: "cannot import name 'clone' from partially initialized module"). The step function
    carries those modules, so unpickling it, before the threads, imports them, in one thread."""
    import subprocess
    import sys

    import cloudpickle

    from jupyter_smstep.sdk import build

    shell.configure(name="preload")
    shell.run(
        "%%step make\nfrom fractions import Fraction\nimport ipaddress\n"
        "third = Fraction(1, 3)\nhosts = [ipaddress.ip_address('10.0.0.1')]"
    )
    shell.run("%%step --defer use\nboth = (third, hosts)")
    functions = build.step_functions(shell.graph(), shell.ip.user_ns)
    assert functions["use"].__dict__[build.PRELOAD].names == ("fractions", "ipaddress")
    assert build.PRELOAD not in functions["make"].__dict__  # no upstream: nothing to preload
    path = tmp_path / "use.pkl"
    path.write_bytes(cloudpickle.dumps(functions["use"]))
    check = (
        "import sys, cloudpickle\nassert 'fractions' not in sys.modules\n"
        f"cloudpickle.loads(open({str(path)!r}, 'rb').read())\n"
        "print('fractions' in sys.modules, 'ipaddress' in sys.modules)"
    )  # (no jupyter_smstep needed)
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


SWEEP = [
    "alphas = [0.1, 1.0, 10.0]",
    "%%step data\nxs = list(range(10))",
    "%%step fit --foreach alpha=alphas --max-concurrency 2 --select max:score --instance-type ml.c5.xlarge\n"
    "w = [x * alpha for x in xs]\nscore = -abs(sum(w) - 45)",
    "%%step report\nbest = w",
]


def test_a_fan_out_cell_is_a_for_each_step_under_sdk_v3_and_one_step_per_item_under_v2(shell, session):
    from jupyter_smstep.sdk import compat

    shell.notebook("sweep", SWEEP)
    steps = steps_by_name(shell.workspace.definition(session))
    if compat.load().ForEachStep is None:  # SDK v2 (and v3 before 3.27): the expansion
        assert set(steps) == {"data", "fit-0", "fit-1", "fit-2", "fit", "report"}
        assert all(steps[f"fit-{i}"]["Type"] == "Training" for i in range(3))
        assert steps["fit-0"]["DependsOn"] == ["data"] and set(steps["fit-2"]["DependsOn"]) == {"data", "fit-0"}
        assert set(steps["fit"]["DependsOn"]) == {"fit-0", "fit-1", "fit-2"} and steps["report"]["DependsOn"] == ["fit"]
        assert {f"Steps.fit-{i}.OutputDataConfig.S3OutputPath" for i in range(3)} <= property_refs(steps["fit"])
        # the iterations run on the cell's instance type; the gather, which only makes lists, on the pipeline's
        assert steps["fit-1"]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
        assert steps["fit"]["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"
        return
    assert set(steps) == {"data", "fit-foreach", "fit-gather", "report"}
    each = steps["fit-foreach"]
    assert each["Type"] == "ForEach" and each["DependsOn"] == ["data"]
    assert {k: v for k, v in each["Arguments"].items() if k != "ForEachBody"} == {
        "IterableItems": [0, 1, 2],  # the item's number: the body runs that iteration, its item as the kernel had it
        "MaxConcurrency": 2,
    }
    [body] = each["Arguments"]["ForEachBody"]
    assert body["Name"] == "fit" and body["Type"] == "Training"  # SageMaker names its children fit-0, fit-1, fit-2
    assert body["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    item = {"Get": "ForEach.CurrentItem"}
    argv = body["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert argv[argv.index("ForEach.CurrentItem") + 1] == {"Std:Join": {"On": "", "Values": [item]}}
    # each child writes its results in a folder of its own: the item's number after the execution id, in the
    # output path and in the execution id the job builds its own path from
    output = body["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"]
    assert output[-3:] == [{"Get": "Execution.PipelineExecutionId"}, item, "results"]
    execution = argv[argv.index("--pipeline_execution_id") + 1]["Std:Join"]
    assert execution == {"On": "/", "Values": [{"Get": "Execution.PipelineExecutionId"}, item]}
    gather = steps["fit-gather"]
    assert gather["DependsOn"] == ["fit-foreach"] and steps["report"]["DependsOn"] == ["fit-gather"]
    reads = {f"Steps.fit-foreach.IterationOutputs[{i}].fit.OutputDataConfig.S3OutputPath" for i in range(3)}
    assert property_refs(gather) == reads | {"Execution.PipelineExecutionId"}
    assert gather["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.m5.large"


def test_an_sdk_that_writes_results_elsewhere_is_said_with_the_way_back(shell, session, monkeypatch):
    """sdk/patches.py checks the results path it rewrites is the one the SDK writes (its canary fails in CI
    first); a user whose SDK moved it gets the step, the reason and --foreach-as steps, not a traceback."""
    from jupyter_smstep.errors import SmstepError
    from jupyter_smstep.sdk import compat, patches

    def moved(arguments, join, execution_id):
        raise RuntimeError("this SDK writes a @step's results elsewhere (…/moved)")

    monkeypatch.setattr(patches, "results_per_item", moved)
    shell.notebook("sweep", SWEEP)
    if compat.load().ForEachStep is None:  # SDK v2 builds no ForEach: nothing is rewritten
        assert "fit-1" in steps_by_name(shell.workspace.definition(session))
        return
    with pytest.raises(SmstepError) as caught:
        shell.workspace.definition(session)
    (problem,) = caught.value.problems
    assert problem.step == "fit" and "results elsewhere" in problem.message
    assert "--foreach-as steps" in problem.fix


def test_foreach_as_steps_builds_one_step_per_item_under_either_sdk_line(shell, session, tmp_path):
    """The way back, should SageMaker refuse a ForEach: %pipeline config --foreach-as steps."""
    shell.notebook("sweep", ["%pipeline config --foreach-as steps", *SWEEP])
    steps = steps_by_name(shell.workspace.definition(session))
    assert set(steps) == {"data", "fit-0", "fit-1", "fit-2", "fit", "report"}
    assert set(steps["fit-2"]["DependsOn"]) == {"data", "fit-0"}  # --max-concurrency 2: two lanes
    _, exported = export_and_build(shell, session, tmp_path / "pipeline.py")
    assert set(steps_by_name(exported)) == set(steps)
    assert "--foreach-as: invalid choice: 'loop' (choose from 'foreach', 'steps')" in shell.error(
        "%pipeline config --foreach-as loop"
    )


def test_the_export_of_a_fan_out_builds_the_same_pipeline_each_iteration_with_its_item(shell, session, tmp_path):
    shell.notebook(
        "sweep",
        [
            "alphas = [0.1, 'x', (1, 2)]",
            "%%step fit --foreach alpha=alphas --max-concurrency 1 --select max:n\nn = len(str(alpha))",
            "%%step report\nbest = n",
        ],
    )
    notebook_def = shell.workspace.definition(session)
    text, exported_def = export_and_build(shell, session, tmp_path / "pipeline.py")
    assert "def fit_1(alpha='x'):" in text and "def fit_2(alpha=(1, 2)):" in text
    assert comparable(exported_def) == comparable(notebook_def)
    if "fit-foreach" in steps_by_name(exported_def):  # SDK v3: the ForEach, and each child's own results
        paths = [
            steps_by_name(d)["fit-foreach"]["Arguments"]["ForEachBody"][0]["Arguments"]["OutputDataConfig"]
            for d in (exported_def, notebook_def)
        ]
        exported, built = ([*p["S3OutputPath"]["Std:Join"]["Values"]] for p in paths)
        del exported[2], built[2]  # the payload folder: the export's build time, the notebook's content key
        assert exported == built and {"Get": "ForEach.CurrentItem"} in built
        assert "return [fit_0, fit_1, fit_2][int(item)]()" in text
    else:
        assert steps_by_name(exported_def)["fit-2"]["DependsOn"] == ["fit-1"]


MLFLOW = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/team"


def test_mlflow_settings_reach_the_definition_and_the_export_under_sdk_v3(shell, session, tmp_path):
    from jupyter_smstep.sdk import compat

    shell.notebook("tracked", [f"%pipeline config --mlflow-arn {MLFLOW} --mlflow-experiment churn", "%%step a\nx = 1"])
    if compat.installed_major() < 3:  # SDK v2 has no MLflow settings for pipelines: said before anything is built
        errors = [p for p in shell.graph().report.errors if "--mlflow-arn" in p.message]
        assert errors and "sagemaker>=3.27" in errors[0].fix, shell.graph().report.problems
        return
    definition = shell.workspace.definition(session)
    assert definition["MlflowConfig"] == {"MlflowResourceArn": MLFLOW, "MlflowExperimentName": "churn"}
    _, exported = export_and_build(shell, session, tmp_path / "pipeline.py")
    assert exported["MlflowConfig"] == definition["MlflowConfig"]
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")  # the local runner reads it as the service does
    assert result.succeeded and result.outputs("a") == {"x": 1}


def test_an_mlflow_arn_sagemaker_would_refuse_is_refused_by_its_model(shell):
    from jupyter_smstep.sdk import compat

    shell.notebook(
        "tracked",
        ["%pipeline config --mlflow-arn arn:aws:sagemaker:us-east-1:1234:mlflow-tracking-server/t", "%%step a\nx = 1"],
    )
    errors = [p for p in shell.graph().report.errors if "%pipeline config --mlflow-arn" in p.message]
    # the account has 4 digits: the model's pattern wants 12 (botocore's model, under either SDK line)
    assert any("MlflowResourceArn" in p.message and "[0-9]{12}" in p.fix for p in errors), errors
    assert any("sagemaker>=3.27" in p.fix for p in errors) == (compat.installed_major() < 3), errors


def test_an_mlflow_experiment_without_a_tracking_server_is_refused_at_the_line(shell):
    assert "--mlflow-experiment needs --mlflow-arn" in shell.error("%pipeline config --mlflow-experiment churn")
