"""Nobody else's pickle runs as you: a cache another user could write is not used, and a record is used
only for the key it was written for.

The other user is real where it matters: the planted folders belong to ``nobody`` (uid 65534, set with
``chown`` as root, as CI runs; elsewhere reported as skipped, never as passed). A refused cache is a
warning with the fix, and the step runs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import nbformat
import pytest

from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

NOBODY = 65534
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="planting files as another user (nobody) needs root"
)

CONFIG = f"%pipeline config --name trust --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"
CELLS = ["%load_ext jupyter_smstep", CONFIG, "%%step make\nvalue = 21", "%%step double\nanswer = value * 2"]


def notebook(folder):
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, folder / "trust.ipynb")
    return folder / "trust.ipynb"


def run(path):
    """A run as `smstep run` makes it: the runs folder beside the notebook (the working directory)."""
    os.chdir(path.parent)
    result = load_workspace(path).run_local()
    assert result.succeeded, result.to_json()
    return result


def chown_tree(path, uid):
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, uid, uid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, uid)


@as_root
def test_a_cache_another_user_planted_is_refused_with_the_fix_and_the_step_runs(tmp_path):
    mine = run(notebook(tmp_path / "mine"))  # a valid cache, to copy as an attacker would make one
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # a sticky folder everyone may write to, as /tmp
    path = notebook(shared)
    shutil.copytree(tmp_path / "mine" / ".smstep", shared / ".smstep")  # "nobody" got there first
    chown_tree(shared / ".smstep", NOBODY)
    result = run(path)
    assert {s.cached_from for s in result.steps.values()} == {None}  # nothing of theirs was used
    warning = result.steps["make"].warnings[0]
    assert "not safe to use" in warning and "belongs to another user (uid 65534)" in warning
    assert "fix: remove" in warning
    assert mine.run_id not in json.dumps(result.to_json(), default=str)


@as_root
def test_a_group_writable_notebook_folder_is_refused(tmp_path):
    path = notebook(tmp_path / "open")
    first = run(path)
    os.chmod(tmp_path / "open", 0o777)  # umask 000: anyone could rename .smstep away and plant their own
    second = run(path)
    assert second.steps["make"].cached_from is None
    assert "may be written by other users (mode 777)" in second.steps["make"].warnings[0]
    os.chmod(tmp_path / "open", 0o755)
    assert run(path).steps["make"].cached_from == first.run_id


def test_folders_are_created_private_whatever_the_umask(tmp_path):
    path = notebook(tmp_path / "nb")  # the notebook's own folder is the user's (0755)
    old = os.umask(0)
    try:
        run(path)
    finally:
        os.umask(old)
    for folder in (
        tmp_path / "nb" / ".smstep",
        tmp_path / "nb" / ".smstep" / "runs",
        tmp_path / "nb" / ".smstep" / "runs" / "cache",
    ):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder


def test_a_record_copied_under_another_key_or_malformed_is_not_used(tmp_path):
    path = notebook(tmp_path / "nb")
    first = run(path)
    cache = tmp_path / "nb" / ".smstep" / "runs" / "cache"
    records = {json.loads(p.read_text())["step"]: p for p in cache.glob("*.json") if "definition" not in p.name}
    make, double = records["make"], records["double"]
    double.write_text(make.read_text())  # a valid record, served for another key
    second = run(path)
    assert second.steps["make"].cached_from == first.run_id and second.steps["double"].cached_from is None
    assert "is the record of another key" in second.steps["double"].warnings[0]
    make.write_text("[]")
    third = run(path)
    assert third.steps["make"].cached_from is None and "not a record" in third.steps["make"].warnings[0]
    record = json.loads(double.read_text())
    record["files"] = {"payload.pkl": "not a pair"}
    double.write_text(json.dumps(record))
    fourth = run(path)
    assert fourth.steps["double"].cached_from is None
    assert "not (size, sha256) pairs" in fourth.steps["double"].warnings[0]


def test_a_runs_folder_that_cannot_be_made_is_an_error_naming_it(tmp_path):
    from jupyter_smstep.errors import SmstepError

    path = notebook(tmp_path / "nb")
    (tmp_path / "taken").write_text("a file where the runs folder should be")  # as root, mkdir refuses this too
    with pytest.raises(SmstepError) as info:
        load_workspace(path).run_local(runs_dir=tmp_path / "taken" / "runs")
    assert "cannot create the run folder" in str(info.value) and str(tmp_path / "taken") in str(info.value)
    assert "--runs-dir" in str(info.value)
