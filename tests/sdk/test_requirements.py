"""--dependencies auto: the kernel's versions of what each step uses, pinned, shown, built, exported, keyed."""

from __future__ import annotations

import importlib.metadata
import json
import runpy

from jupyter_smstep.sdk import content_keys

NOTEBOOK = [
    "import json\nimport yaml\nfrom packaging.version import Version\n"
    "def parse(text):\n    return yaml.safe_load(text)\n"
    "class Box:\n    def opened(self):\n        return Version('1.0')",
    "%%step load --defer --dependencies auto\nrows = parse(json.dumps([1, 2]))",
    "%%step use --defer --dependencies auto\nbox = Box()\nv = box.opened()",
    "%%step plain --defer\nz = 1",
]


def build(shell):
    shell.configure(name="pinned")
    for cell in NOTEBOOK:
        shell.run(cell)


def pin(dist: str) -> str:
    return f"{dist}=={importlib.metadata.version(dist)}"


def test_each_step_pins_what_it_uses_from_the_kernel(shell, capsys):
    build(shell)
    graph = shell.workspace.graph()
    # load: the helper `parse` is pickled by value and calls yaml; json is the standard library
    assert graph.dependencies["load"] == [pin("PyYAML")]
    # use: a notebook class whose method uses packaging's Version
    assert graph.dependencies["use"] == [pin("packaging")]
    assert "plain" not in graph.dependencies
    from jupyter_smstep.panel import html as panel_html
    from jupyter_smstep.panel.state import PanelState

    state = PanelState()
    state.set_graph(graph, None, 0)
    assert f"<code>{pin('PyYAML')}</code>" in panel_html.step_details(state, "load", {}, {})
    capsys.readouterr()
    shell.run("%pipeline graph --json")
    doc = json.loads(capsys.readouterr().out)
    assert {s["name"]: s.get("dependencies") for s in doc["steps"]} == {
        "load": [pin("PyYAML")],
        "use": [pin("packaging")],
        "plain": None,
    }


def test_the_pins_reach_the_definition_the_key_and_the_export(shell, session, tmp_path):
    build(shell)
    definition = {s["Name"]: s for s in shell.workspace.definition(session)["Steps"]}
    args = definition["load"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    settings = json.loads(args[args.index("--dependency_settings") + 1])
    assert settings["dependency_file"] == "requirements-load.txt"
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    assert "dependencies" in keys["load"].parts and "dependencies" not in keys["plain"].parts
    path = tmp_path / "pinned.py"
    shell.run(f"%pipeline export {path}")
    assert (tmp_path / "requirements-load.txt").read_text() == pin("PyYAML") + "\n"
    assert "os.path.join(os.path.dirname(os.path.abspath(__file__)), 'requirements-load.txt')" in path.read_text()
    module = runpy.run_path(str(path), run_name="exported")
    module["pipeline"].sagemaker_session = session
    exported = {s["Name"]: s for s in json.loads(module["pipeline"].definition())["Steps"]}
    args = exported["load"]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert json.loads(args[args.index("--dependency_settings") + 1])["dependency_file"] == "requirements-load.txt"


def test_a_module_beside_the_notebook_cannot_be_pinned_and_says_how_to_ship_it(shell, tmp_path, monkeypatch):
    (tmp_path / "smstep_local_helpers_r.py").write_text("def f(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    shell.configure(name="pinned-local")
    shell.run("import smstep_local_helpers_r")
    shell.run("%%step a --defer --dependencies auto\ny = smstep_local_helpers_r.f(1)")
    problem = next(p for p in shell.workspace.graph().report.problems if p.step == "a")
    assert "'smstep_local_helpers_r', which no installed package provides" in problem.message
    assert "IncludeLocalWorkDir" in problem.fix


def test_a_local_run_checks_the_pins_against_its_environment_and_they_hold(shell, tmp_path):
    build(shell)
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, result.to_json()
    assert result.outputs("load") == {"rows": [1, 2]}
    assert not any("requirement" in w for s in result.steps.values() for w in s.warnings)


def test_the_steps_own_imports_helper_bodies_and_its_producers_needs_are_pinned(tmp_path):
    """Headless, as smstep builds it: the step's `import numpy`, an import inside a helper's body, and a
    consumer of a fitted scikit-learn model (which unpickles it) all need their packages."""
    import nbformat

    from jupyter_smstep.ipython.notebook import load_workspace

    from helpers.constants import IMAGE, ROLE

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "%load_ext jupyter_smstep",
            f"%pipeline config --name pins --role {ROLE} --image-uri {IMAGE} --dependencies auto",
            "def load_rows():\n    import yaml\n    return yaml.safe_load('[[1, 2], [3, 4]]')",
            "%%step arrays\nimport numpy as np\nrows = np.array(load_rows())",
            "%%step fit\nfrom sklearn.linear_model import LinearRegression\nmodel = LinearRegression().fit(rows, [1, 2])",
            "%%step predict\nprediction = model.predict(rows).tolist()",
        ]
    ]
    path = tmp_path / "pins.ipynb"
    nbformat.write(nb, path)
    graph = load_workspace(path).graph()
    assert pin("numpy") in graph.dependencies["arrays"] and pin("PyYAML") in graph.dependencies["arrays"]
    assert pin("scikit-learn") in graph.dependencies["fit"]
    assert pin("scikit-learn") in graph.dependencies["predict"]  # it unpickles fit's model
    assert pin("numpy") in graph.dependencies["predict"]


def test_a_package_installed_from_a_folder_is_never_pinned_by_name(shell, monkeypatch):
    real = importlib.metadata.distribution

    class FromFolder:
        def __init__(self, dist):
            self.dist = dist

        def read_text(self, name):
            return (
                json.dumps({"url": "file:///home/me/src/mylib", "dir_info": {"editable": True}})
                if name == "direct_url.json"
                else self.dist.read_text(name)
            )

    monkeypatch.setattr(importlib.metadata, "distribution", lambda d: FromFolder(real(d)) if d == "PyYAML" else real(d))
    build(shell)
    graph = shell.workspace.graph()
    assert graph.dependencies["load"] == []
    (warning,) = [p for p in graph.report.warnings if p.step == "load" and "local folder" in p.message]
    assert "'PyYAML'" in warning.message and "PyPI" in warning.message and "IncludeLocalWorkDir" in warning.fix


def test_a_module_the_kernel_cannot_import_is_an_error_naming_it(shell):
    shell.configure(name="pinned-missing")
    shell.run("%%step a --defer --dependencies auto\nimport no_such_module_anywhere\ny = 1")
    (error,) = [p for p in shell.workspace.graph().report.errors if p.step == "a"]
    assert "'no_such_module_anywhere', which this kernel cannot import" in error.message
