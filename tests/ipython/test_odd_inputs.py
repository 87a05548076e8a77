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
    assert any(
        "--spark-config has no field 'configuraton'" in p and "did you mean 'configuration'?" in p for p in found
    ), found


def test_a_captured_bearer_token_is_warned_about(shell):
    found = problems(
        shell,
        [
            "HEADERS = {'Authorization': 'Bearer abcdefghijklmnopqrstuvwxyz0123456789'}",
            "%%step a --defer\nx = len(HEADERS)",
        ],
    )
    assert any(
        "captures 'HEADERS', which carries what looks like a secret (HEADERS['Authorization'])" in p for p in found
    ), found


def secret_warnings(found):
    return [p for p in found if "like a secret" in p or "like it holds a secret" in p]


def test_a_helper_carrying_a_secret_is_warned_about_naming_the_path(shell, monkeypatch):
    """What pickling takes with a helper: the globals it reads, its closure, a dict's keys, an object's
    attributes. Each secret is named by its path, never shown."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_abcdefghijklmnop")
    found = secret_warnings(
        problems(
            shell,
            [
                "API_TOKEN = 'abcdefgh12345678'\ndef headers():\n    return {'h': API_TOKEN}",
                "def make():\n    password = 'hunter2hunter2'\n    def login():\n        return password\n    return login\n"
                "login = make()",
                "import os\nenv = dict(os.environ)",
                "class Client:\n    def __init__(self):\n        self.api_key = 'k-123456789'\nclient = Client()",
                "def call():\n    return headers()",
                "%%step a --defer\nh, p, n, c, x = headers(), login(), len(env), client, call()",
            ],
        )
    )
    assert len(found) == 5, found
    expected = {
        "headers": "(headers → API_TOKEN)",
        "login": "(login → password (closed over))",
        "env": "env['GITHUB_TOKEN']",
        "client": "(client.api_key)",
        "call": "(call → headers → API_TOKEN)",
    }
    for name, path in expected.items():
        message = next(p for p in found if f"captures '{name}'" in p)
        assert path in message and "ghp_" not in message and "hunter2" not in message, message
    assert "fix: keep 'password' out of the notebook's values: read it inside the step" in next(
        p for p in found if "captures 'login'" in p
    )


def test_a_name_like_a_secret_on_a_value_that_cannot_be_one_is_not_warned_about(shell):
    found = secret_warnings(
        problems(
            shell,
            [
                "max_tokens = 512\nclass Tokenizer:\n    vocab = 'abc'\ntokenizer = Tokenizer()\nuse_password = True",
                "%%step a --defer\nx = (max_tokens, tokenizer.vocab, use_password)",
            ],
        )
    )
    assert found == []


def test_a_secret_inlined_into_else_fail_is_warned_about(shell):
    found = problems(
        shell,
        [
            "API_KEY = 'sk-abcdefghijklmnopqrstuvwxyz'",
            "%%step a --defer\nx = 1",
            "%%step b --when 'x > 0' --else-fail 'x is {x}, key {API_KEY}' --defer\ny = x",
        ],
    )
    assert any("--else-fail writes the value of 'API_KEY' into the pipeline definition" in p for p in found), found


def test_a_condition_nested_too_deeply_is_refused_not_a_recursion_error(shell):
    shell.configure(name="odd")
    shell.run("%%step a --defer\nx = 1")
    error = shell.error("%%step b --when '" + "not " * 3000 + "x > 0' --defer\ny = x")
    assert "--when nests its expression too deeply" in error and "fewer nested" in error
    shell.run("%%step b --when '" + "not " * 20 + "x > 0' --defer\ny = x")  # deep, not too deep: accepted
