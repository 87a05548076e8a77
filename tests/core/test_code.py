"""What a function's compiled code says: the clock reads the step's recorder cannot wrap, found in the step's
code and in every helper it takes along, and which functions travel by value."""

from __future__ import annotations

import json
import textwrap

from jupyter_smstep.core.code import by_value, clock_reads, reachable

NOTEBOOK = textwrap.dedent("""
    import datetime as dt
    from datetime import date, datetime

    class Timestamp:  # stands for pandas' (the name is what is read)
        @staticmethod
        def now():
            return 0

    def today_helper():
        return date.today()

    def step():
        a = datetime.now()
        b = dt.datetime.utcnow()
        c = Timestamp.now()
        d = [today_helper() for _ in range(2)]
        return a, b, c, d

    def stamp(np):
        return np.datetime64("now")

    def no_clock():
        fixed = datetime(2020, 1, 1)
        return fixed.date(), date.fromisoformat("2020-01-02"), "now"
""")


def notebook():
    """The functions as a notebook's cells define them (in ``__main__``), as the build compiles a step."""
    namespace = {"__name__": "__main__"}
    exec(compile(NOTEBOOK, "<cell>", "exec"), namespace)
    return namespace


def test_clock_reads_in_the_step_and_in_the_helpers_it_takes_along():
    nb = notebook()
    assert clock_reads(nb["step"]) == ["datetime.now()", "datetime.utcnow()", "Timestamp.now()", "date.today()"]
    assert clock_reads(nb["stamp"]) == ["datetime64('now')"]


def test_a_fixed_date_and_the_word_now_alone_are_not_the_clock():
    assert clock_reads(notebook()["no_clock"]) == []


def test_an_importable_library_function_travels_by_reference_and_is_not_read():
    nb = notebook()
    assert not by_value(json.dumps) and list(reachable(json.dumps)) == []
    assert by_value(nb["step"]) and nb["today_helper"] in list(reachable(nb["step"]))
