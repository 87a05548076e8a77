"""What checking SageMaker's published rules costs (sdk.rules, sdk.schema).

    python bench/bench_rules.py

1. The graph of a 20-step notebook (every step with environment variables, tags and VPC settings), with and
   without the service-model check of each step's settings (``rules.graph_problems``), median of 21.
2. The check of the built definition before anything is uploaded: one extra definition built with nothing
   sent to S3, plus the model and JSON-schema walk (``Compiled.checked``), against the definition itself;
   median of 5, against moto.
3. Loading the models once per process (botocore's SageMaker and Scheduler models, the schema).

Prints ratios measured in this run; asserts nothing. The target: the graph check under 10% of the graph.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
for key, value in {
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ.setdefault(key, value)

ROLE = "arn:aws:iam::111122223333:role/SMRole"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/bench:1"
STEPS = 20


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_smstep")
    ip.run_cell(f"%pipeline config --name bench --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large")
    ip.run_cell("x0 = 1")
    for i in range(1, STEPS + 1):
        env = " ".join(f"--env K{j}=v{j}" for j in range(10))
        ip.run_cell(
            f"%%step s{i} --defer {env} --tag team=ml --security-group-id sg-1 --subnet subnet-1\nx{i} = x{i - 1} + 1"
        )
    return ip


def bench_graph(ip) -> None:
    from jupyter_smstep.ipython.extension import workspace
    from jupyter_smstep.sdk import rules

    ws = workspace(ip)
    ws.graph()  # models loaded, values fingerprinted once
    with_rules = median_time(ws.graph, 21)
    graph = ws.graph()
    alone = median_time(lambda: rules.graph_problems(graph), 21)
    print(
        f"graph of {STEPS} steps: {with_rules * 1000:.1f} ms, of which the service-model check "
        f"{alone * 1000:.1f} ms; ratio {alone / with_rules:.3f} (target < 0.10)"
    )


def bench_definition(ip) -> None:
    from moto import mock_aws

    from jupyter_smstep import sdk
    from jupyter_smstep.ipython.extension import workspace
    from jupyter_smstep.sdk import build

    ws = workspace(ip)
    with mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        session = sdk.make_session(bucket="bench")
        graph = ws._buildable_graph()
        compiled = build.build_pipeline(graph, ws.namespace, session, ws.captures, ws.root)
        build.definition(compiled)  # uploads once; later builds find everything there
        plain = median_time(lambda: build.definition(compiled), 5)
        checked = median_time(compiled.checked, 5)
    print(
        f"definition of {STEPS} steps: {plain * 1000:.0f} ms; the check before upload (a dry build and the "
        f"rules): {checked * 1000:.0f} ms; ratio {checked / plain:.2f}"
    )


def bench_models() -> None:
    code = (
        "import time; t = time.perf_counter()\nfrom jupyter_smstep.sdk import rules, schema\n"
        "rules.input_shape('sagemaker', 'CreateTrainingJob'); rules.input_shape('scheduler', 'CreateSchedule')\n"
        "schema._schema(); print(time.perf_counter() - t)"
    )
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
            ).stdout.split()[-1]
        )
        for _ in range(5)
    ]
    print(f"loading the service models and the schema, once per process: {statistics.median(runs) * 1000:.0f} ms")


if __name__ == "__main__":
    ip = shell()
    bench_graph(ip)
    bench_definition(ip)
    bench_models()
