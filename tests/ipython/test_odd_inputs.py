"""Odd values in a %%step line or a cell, each said at the cell with the fix (never a traceback later): what a
second hostile probe found (issue 20's items 17, 19 and 20)."""

from __future__ import annotations


def problems(shell, cells: list[str]) -> list[str]:
    shell.configure(name="odd")
    for source in cells:
        shell.run(source)
    return [str(p) for p in shell.graph().report.problems]


def test_an_environment_value_with_a_nul_byte_is_refused(shell):
    found = problems(shell, ["%%step a --env 'K=a\x00b' --defer\nx = 1"])
    assert any("environment variable(s) K hold a NUL byte" in p and "fix: remove the NUL" in p for p in found)


def test_an_unknown_spark_config_field_is_refused_with_the_fields(shell):
    found = problems(shell, ["%%step a --spark-config '{\"configuraton\": {}}' --defer\nx = 1"])
    assert any("--spark-config has no field 'configuraton'" in p and "did you mean 'configuration'?" in p
               for p in found), found


def test_a_captured_bearer_token_is_warned_about(shell):
    found = problems(shell, ["HEADERS = {'Authorization': 'Bearer abcdefghijklmnopqrstuvwxyz0123456789'}",
                             "%%step a --defer\nx = len(HEADERS)"])
    assert any("captures 'HEADERS', which looks like it holds a secret" in p for p in found), found


def test_a_secret_inlined_into_else_fail_is_warned_about(shell):
    found = problems(shell, ["API_KEY = 'sk-abcdefghijklmnopqrstuvwxyz'", "%%step a --defer\nx = 1",
                             "%%step b --when 'x > 0' --else-fail 'x is {x}, key {API_KEY}' --defer\ny = x"])
    assert any("--else-fail writes the value of 'API_KEY' into the pipeline definition" in p for p in found), found


def test_a_condition_nested_too_deeply_is_refused_not_a_recursion_error(shell):
    shell.configure(name="odd")
    shell.run("%%step a --defer\nx = 1")
    error = shell.error("%%step b --when '" + "not " * 3000 + "x > 0' --defer\ny = x")
    assert "--when nests its expression too deeply" in error and "fewer nested" in error
    shell.run("%%step b --when '" + "not " * 20 + "x > 0' --defer\ny = x")  # deep, not too deep: accepted
