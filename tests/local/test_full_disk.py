"""A full or read-only disk: a clear error naming the folder and the fix, or a warning and the run's own
result, never a traceback and never a half-written file left behind.

The disk is real: a small tmpfs mounted for the test (as root, as CI runs; elsewhere reported as skipped,
which CI counts as a failure). A disk that fills at a chosen moment is filled by the test itself, from the
run's progress callback, so the moment does not depend on timing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess

import nbformat
import pytest

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks"),
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root"),
]

CONFIG = f"%pipeline config --name disk --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


@contextlib.contextmanager
def mounted(folder, size, *options):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def remount(folder, mode):
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def notebook(folder, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("%load_ext jupyter_smstep", CONFIG, *cells)]
    nbformat.write(nb, folder / "disk.ipynb")
    os.chdir(folder)  # as `smstep run` is started: the runs folder is beside the notebook
    return load_workspace(folder / "disk.ipynb")


def fill(folder):
    """Take every free byte of ``folder``'s disk."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def leftovers(folder):
    """Half-written files: the partials of an atomic write, or a .tmp."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") and p.is_file() or p.suffix == ".tmp"]


def test_a_step_whose_result_does_not_fit_fails_with_the_fix(tmp_path):
    with mounted(tmp_path / "disk", "3m") as disk:
        workspace = notebook(
            disk, "n = 8", "%%step big\nimport os\nblob = os.urandom(n * 1024 * 1024)", "%%step small\nsize = len(blob)"
        )
        result = workspace.run_local()
        big = result.steps["big"]
        assert (big.state, result.steps["small"].state) == ("failed", "skipped")
        assert big.summary == "the disk is full: the step's results could not be written"
        assert "Free space where the run folder is, or set --runs-dir to a larger disk" in big.error


def test_a_build_whose_upload_does_not_fit_is_an_error_with_the_fix(tmp_path, capsys):
    with mounted(tmp_path / "disk", "3m") as disk:
        workspace = notebook(disk, "import os\nblob = os.urandom(5 * 1024 * 1024)", "%%step small\nsize = len(blob)")
        with pytest.raises(SmstepError) as caught:
            workspace.run_local()
        text = str(caught.value)
        assert text.startswith("the disk is full: the build could not put the steps' code and captured values")
        assert f"fix: free space on the disk that holds {disk / '.smstep' / 'runs'}" in text
        assert "--runs-dir DIR on a larger disk" in text
        assert leftovers(disk) == []


def test_a_disk_that_fills_after_the_step_keeps_no_half_file_and_says_what_ran(tmp_path):
    with mounted(tmp_path / "disk", "3m") as disk:
        workspace = notebook(disk, "%%step only\nvalue = 42")
        filled = []

        def on_event(event):  # the moment the step has succeeded, the disk is full
            if event.step == "only" and event.state == "succeeded" and not filled:
                filled.append(fill(disk))

        with pytest.raises(SmstepError) as caught:
            workspace.run_local(on_event=on_event)
        assert filled
        text = str(caught.value)
        assert "the run's record could not be written" in text and "the disk is full" in text
        assert "(its steps: only succeeded)" in text
        assert f"df -h {disk / '.smstep' / 'runs'}" in text
        assert leftovers(disk) == []
        (disk / "filler").unlink()
        again = workspace.run_local()  # space again: the step's result was whole, so the cache may serve it
        assert again.succeeded and again.steps["only"].outputs == {"value": 42}


def test_a_read_only_cache_is_a_warning_and_the_run_keeps_its_result(tmp_path):
    with mounted(tmp_path / "disk", "16m") as disk:
        workspace = notebook(disk, "%%step only\nvalue = 42")
        assert workspace.run_local().succeeded  # the cache folder exists
        cache = disk / ".smstep" / "runs" / "cache"
        subprocess.run(["mount", "--bind", str(cache), str(cache)], check=True)
        try:
            remount(cache, "bind,ro")
            result = notebook(disk, "%%step only\nvalue = 43").run_local()
        finally:
            subprocess.run(["umount", str(cache)], check=True)
        assert result.succeeded and result.steps["only"].outputs["value"] == 43
        warning = result.steps["only"].warnings[-1]
        assert warning == (
            f"could not record the result in the cache {cache} (Read-only file system): "
            "the next run runs this step again"
        )
        assert leftovers(cache) == []


def test_a_read_only_runs_folder_is_an_error_naming_it(tmp_path, capsys):
    from jupyter_smstep import cli

    with mounted(tmp_path / "disk", "16m") as disk:
        notebook(disk, "%%step only\nvalue = 42").run_local()
        remount(disk, "ro")
        code = cli.main(["run", str(disk / "disk.ipynb")])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "cannot create the run folder " + str(disk / ".smstep" / "runs") in err
        assert "Read-only file system" in err and "fix: pass --runs-dir DIR" in err
        assert "Traceback" not in err


def test_a_file_the_cli_cannot_write_is_an_error_naming_it_with_the_fix(tmp_path, capsys):
    from jupyter_smstep import cli

    with mounted(tmp_path / "disk", "16m") as disk:
        notebook(disk, "%%step only\nvalue = 42")
        remount(disk, "ro")
        code = cli.main(["export", str(disk / "disk.ipynb"), "-o", str(disk / "pipeline.py")])
        err = capsys.readouterr().err
        assert code == 3, err
        assert err.splitlines() == [
            f"smstep: error: Read-only file system: {disk / 'pipeline.py'}",
            f"  fix: make {disk} writable (ls -ld {disk}), or write somewhere else (--runs-dir DIR for runs, "
            "-o FILE for files)",
        ]
