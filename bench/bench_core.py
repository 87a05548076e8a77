"""Core figures: extension load time, analysis speed, build time vs a hand-written pipeline.

    python bench/bench_core.py

Prints ratios measured in this run; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable


def fresh_process_time(code: str, runs: int = 5) -> float:
    """Median wall time of `code` in a fresh interpreter, minus the interpreter's own start-up."""

    def once(src: str) -> float:
        out = subprocess.run(
            [PY, "-c", f"import time; t = time.perf_counter()\n{src}\nprint(time.perf_counter() - t)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"},
        )
        return float(out.stdout.strip().splitlines()[-1])

    return statistics.median(once(code) for _ in range(runs))


def bench_load_ext() -> None:
    shell = "from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance()"
    base = fresh_process_time(shell)
    load = fresh_process_time(shell + "; ip.run_line_magic('load_ext', 'jupyter_smstep')") - base
    sdk = fresh_process_time("from jupyter_smstep import sdk; sdk.load()")
    print(
        f"%load_ext jupyter_smstep: {load * 1000:.0f} ms; import sagemaker (workflow modules): {sdk * 1000:.0f} ms; "
        f"ratio {load / sdk:.3f} (target <= 0.1)"
    )


def realistic_cell(lines: int = 300) -> str:
    block = textwrap.dedent("""\
        df = load(input_uri)
        df = df[df["height"] > 0].copy()
        df["volume"] = df["length"] * df["diameter"] * df["height"]
        features = [c for c in df.columns if c not in ("rings", "sex")]
        stats = {c: (df[c].mean(), df[c].std()) for c in features}
        for c, (mu, sd) in stats.items():
            df[c] = (df[c] - mu) / sd
        def score(model, X, y):
            pred = model.predict(X)
            return float(np.sqrt(((pred - y) ** 2).mean()))
        train, test = split(df, 0.8)
        model = fit(train[features], train["rings"], epochs=epochs)
        results.append(score(model, test[features], test["rings"]))
        """)
    out: list[str] = []
    i = 0
    while len(out) + len(block.splitlines()) <= lines:
        out += block.replace("df", f"df{i}").splitlines()
        i += 1
    out += [f"pad{j} = df0.shape[0] + {j}" for j in range(lines - len(out))]  # whole statements up to `lines`
    return "\n".join(out)


def bench_analysis() -> None:
    from jupyter_smstep.core.analysis import analyze

    cell = realistic_cell()
    raw = analyze.__wrapped__
    raw(cell)
    runs = 50
    t = time.process_time()
    for _ in range(runs):
        raw(cell)
    per = (time.process_time() - t) / runs
    import ast

    t = time.process_time()
    for _ in range(runs):
        ast.parse(cell)
    parse = (time.process_time() - t) / runs
    print(
        f"analysis of a {len(cell.splitlines())}-line cell: {per * 1000:.2f} ms (ast.parse alone {parse * 1000:.2f} ms; "
        f"target <= 5 ms)"
    )


def bench_build(steps: int = 50) -> None:
    """Build (definition()) a 50-step notebook pipeline vs the same pipeline written by hand, same endpoint."""
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    from moto import mock_aws

    from jupyter_smstep import sdk
    from jupyter_smstep.ipython.notebook import load_workspace
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_smstep"),
        nbformat.v4.new_code_cell(
            "%pipeline config --name bench --role arn:aws:iam::111122223333:role/R "
            "--image-uri img:1 --instance-type ml.m5.large"
        ),
        nbformat.v4.new_code_cell("%%step s0\nx0 = 1"),
    ]
    nb.cells += [nbformat.v4.new_code_cell(f"%%step s{i}\nx{i} = x{i - 1} + 1") for i in range(1, steps)]
    path = Path("/tmp/smstep-bench-50.ipynb")
    nbformat.write(nb, path)
    S = sdk.load()
    with mock_aws():
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        session = sdk.make_session(bucket="bench")

        def notebook_build() -> float:
            t = time.perf_counter()
            ws = load_workspace(path)
            ws.definition(session)
            return time.perf_counter() - t

        def hand_build() -> float:
            t = time.perf_counter()
            prev = None
            outs = []
            for i in range(steps):
                ns: dict = {"__name__": "__main__"}
                if i == 0:
                    exec("def s0():\n    x0 = 1\n    return {'x0': x0}", ns)
                    prev = S.step(
                        ns["s0"],
                        name="s0",
                        image_uri="img:1",
                        instance_type="ml.m5.large",
                        role="arn:aws:iam::111122223333:role/R",
                        job_name_prefix="bench-s0",
                    )()
                else:
                    exec(f"def s{i}(x{i - 1}):\n    x{i} = x{i - 1} + 1\n    return {{'x{i}': x{i}}}", ns)
                    prev = S.step(
                        ns[f"s{i}"],
                        name=f"s{i}",
                        image_uri="img:1",
                        instance_type="ml.m5.large",
                        role="arn:aws:iam::111122223333:role/R",
                        job_name_prefix=f"bench-s{i}",
                    )(prev[f"x{i - 1}"])
                outs.append(prev)
            pipeline = S.Pipeline(
                name="bench",
                steps=outs,
                sagemaker_session=session,
                pipeline_definition_config=S.PipelineDefinitionConfig(use_custom_job_prefix=True),
            )
            pipeline.definition()
            return time.perf_counter() - t

        notebook_build()  # warm caches (SDK modules, boto models)
        hand_build()
        ours = statistics.median(notebook_build() for _ in range(3))
        hand = statistics.median(hand_build() for _ in range(3))
    print(
        f"build of a {steps}-step notebook: {ours:.2f} s; hand-written @step pipeline definition(): {hand:.2f} s; "
        f"ratio {ours / hand:.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    bench_load_ext()
    bench_analysis()
    bench_build()
