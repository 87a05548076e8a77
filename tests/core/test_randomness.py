"""A step drawing from a global random state that an earlier cell seeded: warned, and the fix agrees
with the kernel (the local run against what one kernel computed top to bottom)."""

from __future__ import annotations

import os

import pytest

from jupyter_smstep.core.randomness import aliases, uses


def test_aliases_follow_the_notebooks_imports():
    assert aliases(
        [
            "import numpy as np",
            "import random",
            "from numpy import random as npr",
            "from random import shuffle",
            "import torch.nn",
        ]
    ) == {"np": "numpy", "random": "random", "npr": "numpy.random", "shuffle": "random.shuffle", "torch": "torch"}


@pytest.mark.parametrize(
    "source, seeds, draws",
    [
        ("np.random.seed(0)\nx = np.random.normal(size=3)", [("numpy", 1)], [("numpy", 2)]),
        ("rng = np.random.default_rng(0)\nx = rng.normal()", [], []),  # a generator has its own state
        ("x = [random.random() for _ in range(3)]", [], [("random", 1)]),
        ("shuffle(xs)", [], [("random", 1)]),
        ("def f():\n    return random.random()", [], []),  # runs when called: not followed
        ("torch.manual_seed(1)\nt = torch.rand(2)", [("torch", 1)], [("torch", 2)]),
        ("r = random.Random(3)\nr.shuffle(xs)", [], []),
        ("npr.randint(0, 5)", [], [("numpy", 1)]),
    ],
)
def test_seeds_and_draws(source, seeds, draws):
    names = aliases(
        [
            "import numpy as np",
            "import random",
            "from random import shuffle",
            "import torch",
            "from numpy import random as npr",
        ]
    )
    found_seeds, found_draws = uses(source, names)
    assert [(u.library, u.line) for u in found_seeds] == seeds
    assert [(u.library, u.line) for u in found_draws] == draws


def warnings(shell):
    return [(p.step, p.line, p.message, p.fix) for p in shell.graph().report.warnings if "random state" in p.message]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")
def test_a_step_drawing_from_a_state_seeded_above_is_warned_and_the_fix_gives_the_kernels_numbers(shell, tmp_path):
    shell.configure(name="seeded")
    shell.run("import random\nrandom.seed(7)")
    shell.run("%%step draw\ndraws = [random.random() for _ in range(3)]")
    (warning,) = warnings(shell)
    assert warning[:2] == ("draw", 2) and "ordinary cell" in warning[2] and "random.seed, line 2" in warning[2]
    assert "seed it at the top of this step" in warning[3]
    kernel = shell.ip.user_ns["draws"]
    unseeded, _ = shell.run_local(tmp_path / "runs")
    assert unseeded.outputs("draw")["draws"] != kernel  # what the warning says: other numbers, no error

    shell.run("random.seed(7)")
    shell.run("%%step draw\nrandom.seed(7)\ndraws = [random.random() for _ in range(3)]")  # the fix
    assert warnings(shell) == []
    fixed, _ = shell.run_local(tmp_path / "runs")
    assert fixed.outputs("draw")["draws"] == shell.ip.user_ns["draws"]
