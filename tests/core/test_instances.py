"""Instance suggestions from measured peaks, against the shipped specs (and their stated source)."""

from __future__ import annotations

import pytest

from jupyter_smstep.core import instances

GIB = 2**30


def measured(peak_gib: float, cpu_s: float = 1.0, wall_s: float = 1.0) -> dict:
    return {"peak_rss_bytes": int(peak_gib * GIB), "cpu_s": cpu_s, "wall_s": wall_s}


def test_the_shipped_specs_say_where_they_come_from_and_know_the_common_types():
    specs = instances.shipped()
    assert "DescribeInstanceTypes" in specs.source and "20" in specs.source
    assert specs.get("ml.m5.large") == instances.Spec("ml.m5.large", 2, 8192, 0)
    assert specs.get("ml.g5.xlarge").gpus == 1


@pytest.mark.parametrize(
    "instance, peak, cpu, same, general, too_small, words",
    [
        (
            "ml.m5.2xlarge",
            1.3,
            1.0,
            "ml.m5.large",
            "ml.m5.large",
            False,
            "ml.m5.2xlarge (8 vCPU, 32 GiB) → ml.m5.large (2 vCPU, 8 GiB) fits",
        ),
        ("ml.m5.large", 1.3, 1.0, "ml.m5.large", "ml.m5.large", False, "is the smallest that fits"),
        (
            "ml.c5.4xlarge",
            6.0,
            3.5,
            "ml.c5.2xlarge",
            "ml.m5.xlarge",
            False,
            "→ ml.c5.2xlarge (8 vCPU, 16 GiB) or ml.m5.xlarge (4 vCPU, 16 GiB) fits",
        ),
        (
            "ml.m5.large",
            9.0,
            1.0,
            "ml.m5.xlarge",
            "ml.m5.xlarge",
            True,
            "more than ml.m5.large (2 vCPU, 8 GiB) holds: the job would run out of memory; ml.m5.xlarge",
        ),
        ("ml.g5.2xlarge", 2.0, 1.0, "ml.g5.xlarge", None, False, "→ ml.g5.xlarge (4 vCPU, 16 GiB, 1 GPU) fits"),
    ],
)
def test_suggestions(instance, peak, cpu, same, general, too_small, words):
    s = instances.suggest("train", instance, measured(peak, cpu))
    assert (s.same_family.name if s.same_family else None) == same
    assert (s.general.name if s.general else None) == general
    assert s.too_small is too_small
    assert words in s.note and s.note.startswith("train: peak") and "lower bound" in s.note


def test_an_unknown_type_and_an_unmeasured_step_are_said_not_guessed():
    s = instances.suggest("train", "ml.zz9.large", measured(1.0))
    assert "do not know 'ml.zz9.large'" in s.note and s.current is None and not s.too_small
    assert instances.suggest("train", "ml.m5.large", {"wall_s": 1.0}) is None


def test_a_runs_summary_groups_the_steps_that_need_nothing_and_keeps_the_others_apart():
    found = [
        instances.suggest("load", "ml.m5.large", measured(0.2)),
        instances.suggest("train", "ml.m5.large", measured(0.3)),
        instances.suggest("big", "ml.m5.2xlarge", measured(1.3)),
        instances.suggest("oom", "ml.m5.large", measured(9.0)),
    ]
    assert [s.already_smallest for s in found] == [True, True, False, False]
    lines = instances.summary_lines(found)
    assert lines[0].startswith("big: peak 1.3 GiB") and "→ ml.m5.large" in lines[0]
    assert lines[1].startswith("warning: oom: peak 9.0 GiB")
    assert lines[2].startswith(
        "load, train: each has ml.m5.large, the smallest instance type that fits (peak 205 MiB–307 MiB;"
    )
    assert instances.summary_lines(found[:1]) == [found[0].note]
