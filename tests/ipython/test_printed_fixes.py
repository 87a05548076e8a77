"""Every fix the tool prints is one that works when followed as written (issue 25.4).

Each case makes a notebook with one problem, takes the fix the tool prints for it, and does exactly what it
says: the command in it, run as a cell (its placeholders, ACCOUNT, REGION, NAME and IMAGE:TAG, filled in as a
user would), or its flags added to the step's own line. Then the problem is gone, and no error took its place.
"""

from __future__ import annotations

import re

import pytest

from helpers.constants import IMAGE, ROLE

#: What a user types for the placeholders the fixes show.
PLACEHOLDERS = {"ACCOUNT": "111122223333", "REGION": "us-east-1", "IMAGE:TAG": "smstep:1", "NAME": "SMRole"}
COMMAND = re.compile(r"(%pipeline config(?: --[\w-]+ \S+)+|%%step [\w-]+(?: --[\w-]+ \S+)*)")


def follow(shell, fix: str, cells: dict[str, str]) -> str:
    """Do what ``fix`` says; returns the line that was run."""
    match = COMMAND.search(fix)
    if match is None:  # "set one with --instance-type ml.m5.xlarge (on the cell or with %pipeline config)"
        flags = re.search(r"((?: ?--[\w-]+ [\w.:/-]+)+)", fix)
        assert flags and "%pipeline config" in fix, f"no command to follow in the fix: {fix!r}"
        line = "%pipeline config " + flags.group(1).strip()
    else:
        line = match.group(1).rstrip(").,")
    for placeholder, value in PLACEHOLDERS.items():
        line = line.replace(placeholder, value)
    if line.startswith("%%step"):  # the fix is the step's line: its name, and the flags to add to it
        _, name, *flags = line.split()
        header, _, body = cells[name].partition("\n")
        cells[name] = " ".join([header, *flags]) + "\n" + body
        shell.run(cells[name])
    else:
        shell.run(line)
    return line


def messages(shell, severity: str | None = None) -> list[str]:
    return [str(p) for p in shell.graph().report.problems if severity is None or p.severity == severity]


ROLE_FLAG, INSTANCE_FLAG, IMAGE_FLAG = f"--role {ROLE}", "--instance-type ml.m5.large", f"--image-uri {IMAGE}"
ALL = f"{ROLE_FLAG} {INSTANCE_FLAG} {IMAGE_FLAG}"

CASES = [
    pytest.param(f"--name my_pipeline {ALL}", {}, "pipeline name 'my_pipeline' is invalid", id="pipeline-name"),
    pytest.param(f"--name fixes {INSTANCE_FLAG} {IMAGE_FLAG}", {}, "no IAM role", id="role"),
    pytest.param(f"--name fixes {ROLE_FLAG} {IMAGE_FLAG}", {}, "no instance type", id="instance-type"),
    pytest.param(f"--name fixes {ROLE_FLAG} {INSTANCE_FLAG}", {}, "no image_uri", id="image-uri"),
    pytest.param(
        f"--name fixes {ALL}",
        {
            "write": "%%step write --defer --save table=s3://smstep-results/shared.json\ntable = {'n': 1}",
            "read": "%%step read --defer\nimport boto3\ns3 = boto3.client('s3')\n"
            "got = s3.get_object(Bucket='smstep-results', Key='shared.json')",
        },
        "names s3://smstep-results/shared.json",
        id="after",
    ),
]


@pytest.mark.parametrize("config, steps, problem", CASES)
def test_the_printed_fix_works_when_followed(shell, config, steps, problem, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    shell.run(f"%pipeline config {config}")
    cells = dict(steps) or {"only": "%%step only --defer\nx = 1"}
    for source in cells.values():
        shell.run(source)
    found = [p for p in shell.graph().report.problems if problem in p.message]
    assert found and found[0].fix, messages(shell)
    line = follow(shell, found[0].fix, cells)
    left = [m for m in messages(shell) if problem in m]
    assert left == [], (line, left)
    assert messages(shell, "error") == [], (line, messages(shell, "error"))
