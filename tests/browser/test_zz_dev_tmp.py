import json, nbformat
import pytest

@pytest.mark.browser
def test_dev(lab, notebook_name):
    cells = [
        "%load_ext placeholder",
        "SPLIT = 0.8\ndef split(rows, frac):\n    n = int(len(rows) * frac)\n    return rows[:n], rows[n:]",
        "%%step load\nrows = [[i, i * 2.0] for i in range(10)]",
        "%%step preprocess --instance-type ml.m5.large\ntrain, test = split(rows, SPLIT)",
        "%%step train_model\nimport math\nmodel = sum(r[1] for r in train) / len(train) * epochs",
    ]
    path = lab.write_notebook(notebook_name, cells)
    nb = nbformat.read(str(path), 4)
    ids = [c.id for c in nb.cells]
    state = {"pipeline": "demo", "cells": [
        {"cell_id": ids[2], "role": "step", "step": "load", "inputs": {}, "outputs": ["rows"]},
        {"cell_id": ids[3], "role": "step", "step": "preprocess", "inputs": {"rows": {"step": "load"}, "split": {"value": "function"}, "SPLIT": {"value": "0.8"}}, "outputs": ["train"]},
        {"cell_id": ids[4], "role": "step", "step": "train_model", "inputs": {"train": {"step": "preprocess"}, "epochs": {"parameter": "epochs"}, "math": {"module": "math"}}, "outputs": []},
        {"cell_id": ids[1], "role": "dependency", "provides": ["split", "SPLIT"], "used_by": ["preprocess"]},
    ], "problems": [{"step": "train_model", "line": 2, "severity": "warning", "message": "model is never used", "fix": "return it"}]}
    nb.cells[0].source = ("import jupyter_smstep.frontend as f\nget_ipython().register_magic_function(lambda line, cell: None, 'cell', 'step')\n"
                          f"STATE = {json.dumps(state)}\nf.install(get_ipython(), lambda: STATE)")
    nbformat.write(nb, str(path))
    lab.open(notebook_name)
    lab.screenshot("dev-before")
    lab.run_all()
    lab.page.wait_for_selector(".jp-smstep-badge")
    lab.page.wait_for_timeout(500)
    lab.screenshot("dev-after")
    print(lab.page.console_messages)
    r = lab.execute("jupyter-smstep:preview")
    print(r)
    lab.page.wait_for_timeout(1000)
    lab.screenshot("dev-preview")
