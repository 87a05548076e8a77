"""A step that reads scikit-learn models from several upstream steps: the SDK reads them in parallel threads,
which raced importing scikit-learn ("cannot import name 'clone' from partially initialized module
'sklearn.base'", 1 run in 6 to 1 in 2 here). The step function now imports them first (sdk.build._preload_names)."""

from __future__ import annotations

import pytest

#: Without the fix, 12 runs here failed 2 times (and smstep run failed 4 times in 8): a regression shows in most
#: CI runs, and any failure is one.
RUNS = 12

CELLS = [
    "%%step a\nfrom sklearn.linear_model import LinearRegression\nm1 = LinearRegression().fit([[0], [1]], [0, 1])",
    "%%step b\nfrom sklearn.tree import DecisionTreeRegressor\nm2 = DecisionTreeRegressor().fit([[0], [1]], [0, 1])",
    "%%step c\nfrom sklearn.ensemble import RandomForestRegressor\n"
    "m3 = RandomForestRegressor(n_estimators=2, random_state=0).fit([[0], [1]], [0, 1])",
    "%%step join\nfrom sklearn.base import clone\n"
    "score = float(m1.predict([[2]])[0] + m2.predict([[2]])[0] + m3.predict([[2]])[0])\nk = type(clone(m1)).__name__",
]


@pytest.mark.timeout(240)
@pytest.mark.primary_line  # about 100 s a run; the fix's unit test (tests/sdk/test_build.py) runs on both lines
def test_a_fan_in_of_scikit_learn_models_never_races(shell, tmp_path):
    shell.configure(name="fan-in")
    for cell in CELLS:
        shell.run(cell)
    expected = shell.ip.user_ns["score"]
    failures = []
    for i in range(RUNS):
        result, _ = shell.run_local(tmp_path / "runs", cache=False)
        if not result.succeeded:
            failures.append((i, str(result.steps["join"].error)[:300]))
        else:
            assert result.outputs("join")["score"] == expected
    assert failures == []
