"""Schedule expressions checked as EventBridge Scheduler reads them, and their next fire times."""

from __future__ import annotations

import datetime as dt

import pytest

from jupyter_smstep.core import schedules as s
from jupyter_smstep.errors import SmstepError

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 15, 40, 7, tzinfo=UTC)  # a Tuesday


def times(expr: s.Expression, **kw) -> list[str]:
    return [t.strftime("%Y-%m-%d %a %H:%M") for t in expr.next_times(NOW, **kw)]


def test_cron_fire_times():
    assert times(s.parse(cron="cron(0 6 * * ? *)")) == [
        "2026-12-02 Wed 06:00",
        "2026-12-03 Thu 06:00",
        "2026-12-04 Fri 06:00",
    ]
    assert times(s.parse(cron="0/20 16 ? * TUE-THU 2026")) == [
        "2026-12-01 Tue 16:00",
        "2026-12-01 Tue 16:20",
        "2026-12-01 Tue 16:40",
    ]
    assert times(s.parse(cron="cron(30 9 L * ? *)")) == [
        "2026-12-31 Thu 09:30",
        "2027-01-31 Sun 09:30",
        "2027-02-28 Sun 09:30",
    ]
    assert times(s.parse(cron="cron(0 8 ? * 2#1 *)")) == [
        "2026-12-07 Mon 08:00",
        "2027-01-04 Mon 08:00",
        "2027-02-01 Mon 08:00",
    ]
    assert times(s.parse(cron="cron(0 8 ? * 6L *)")) == [
        "2026-12-25 Fri 08:00",
        "2027-01-29 Fri 08:00",
        "2027-02-26 Fri 08:00",
    ]
    assert times(s.parse(cron="cron(0 8 1W * ? *)")) == [
        "2027-01-01 Fri 08:00",
        "2027-02-01 Mon 08:00",
        "2027-03-01 Mon 08:00",
    ]
    assert times(s.parse(cron="cron(0 0 1 JAN,JUL ? 2027-2028)")) == [
        "2027-01-01 Fri 00:00",
        "2027-07-01 Thu 00:00",
        "2028-01-01 Sat 00:00",
    ]
    assert s.parse(cron="0 6 * * ? *").text == "cron(0 6 * * ? *)"


def test_rate_and_at_fire_times():
    start = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert times(s.parse(rate="rate(6 hours)"), start=start) == [
        "2026-12-01 Tue 18:00",
        "2026-12-02 Wed 00:00",
        "2026-12-02 Wed 06:00",
    ]
    later = dt.datetime(2026, 12, 24, tzinfo=UTC)
    assert times(s.parse(rate="1 day"), start=later) == [
        "2026-12-24 Thu 00:00",
        "2026-12-25 Fri 00:00",
        "2026-12-26 Sat 00:00",
    ]
    assert times(s.parse(rate="1 day"), start=later, end=dt.datetime(2026, 12, 25, tzinfo=UTC)) == [
        "2026-12-24 Thu 00:00",
        "2026-12-25 Fri 00:00",
    ]
    assert times(s.parse(at="at(2027-01-01T06:00:00)")) == ["2027-01-01 Fri 06:00"]
    assert times(s.parse(at="2026-01-01T06:00:00")) == []  # already past


@pytest.mark.parametrize(
    "kwargs, message, fix",
    [
        ({}, "exactly one of --cron, --rate and --at", "rate(1 day)"),
        ({"cron": "0 6 * * ? *", "rate": "1 day"}, "(got --cron, --rate)", "rate(1 day)"),
        (
            {"cron": "0 6 * * *"},
            "has 5 fields; EventBridge's has 6: minutes hours day-of-month month day-of-week year (a Unix cron has 5",
            "cron(0 6 * * ? *)",
        ),
        (
            {"cron": "0 6 * * * *"},
            "exactly one of day-of-month (*) and day-of-week (*) must be ?",
            "cron(0 6 ? * MON *)",
        ),
        ({"cron": "0 6 ? * ? *"}, "exactly one of day-of-month", "write ? in the one"),
        ({"cron": "61 6 * * ? *"}, "minutes '61' has 61, outside 0-59", "cron(0 6 * * ? *)"),
        ({"cron": "0 24 * * ? *"}, "hours '24' has 24, outside 0-23", "cron(0 6"),
        ({"cron": "0 6 ? * FUNDAY *"}, "has 'FUNDAY', which is not a number or a name", "cron("),
        ({"cron": "0 6 ? FOO * *"}, "month 'FOO' has 'FOO', which is not a number or a name", "cron("),
        ({"cron": "0 6 * FOO ? *"}, "month 'FOO' has 'FOO'", "cron("),
        ({"cron": "0 ? * * ? *"}, "hours '?' uses ?, which only day-of-month and day-of-week take", "cron("),
        ({"cron": "? 6 * * ? *"}, "minutes '?' uses ?", "cron("),
        ({"cron": "0 6 5-1 * ? *"}, "has the range 5-1, which runs backwards", "cron("),
        ({"cron": "0/0 6 * * ? *"}, "has the step /0", "cron("),
        ({"cron": "0 6 ? * 2#6 *"}, "has #N with N not 1-5", "cron("),
        ({"cron": "0 6 LW * ? *"}, "uses L, W or # where EventBridge does not take them", "cron("),
        ({"cron": "0 6 * * ? 1969"}, "year '1969' has 1969, outside 1970-2199", "cron("),
        ({"rate": "rate(1 days)"}, "singular for 1 and the plural otherwise", "rate(1 day)"),
        ({"rate": "rate(5 minute)"}, "singular for 1 and the plural otherwise", "rate(5 minutes)"),
        ({"rate": "rate(2 weeks)"}, "'weeks' is not a unit EventBridge knows", "rate(6 hours)"),
        ({"rate": "rate(0 hours)"}, "must be a positive whole number", "rate(1 day)"),
        ({"rate": "every day"}, "is not rate(VALUE UNIT)", "rate(1 day)"),
        ({"at": "at(2027-01-01T06:00:00Z)"}, "has a time zone", "no time zone"),
        ({"at": "at(2027-01-01 06:00)"}, "is not yyyy-mm-ddThh:mm:ss", "at(2027-01-01T06:00:00)"),
        ({"at": "at(2027-02-30T06:00:00)"}, "is not a date and time", "at(2027-01-01T06:00:00)"),
    ],
)
def test_bad_expressions_are_refused_with_the_fix(kwargs, message, fix):
    with pytest.raises(SmstepError) as info:
        s.parse(**kwargs)
    problem = info.value.problems[0]
    assert message in problem.message and fix in problem.fix


def test_names_and_dates():
    s.check_name("daily-retrain_v1.2")
    with pytest.raises(SmstepError, match="schedule name 'every day' is invalid") as info:
        s.check_name("every day")
    assert "every-day" in info.value.problems[0].fix
    assert s.parse_date("2027-01-01", "--start") == dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert s.parse_date("2027-01-01T06:00:00+02:00", "--end").utcoffset() == dt.timedelta(hours=2)
    with pytest.raises(SmstepError, match="--end 'tomorrow' is not an ISO 8601 date"):
        s.parse_date("tomorrow", "--end")


@pytest.mark.parametrize("rate", ["rate(999999999 days)", "rate(100000000000000000000 days)", "rate(99999999 hours)"])
def test_a_rate_longer_than_any_schedule_waits_is_refused_not_an_overflow(rate):
    with pytest.raises(SmstepError, match="longer than any schedule can wait"):
        s.parse(rate=rate)


@pytest.mark.parametrize(
    "cron, named", [("cron(0 6 30 2 ? *)", "February 30"), ("cron(0 6 31 4,6 ? *)", "April 31, June 31")]
)
def test_a_cron_on_a_day_no_year_has_is_said_to_never_fire(cron, named):
    with pytest.raises(SmstepError) as caught:
        s.parse(cron=cron)
    assert f"{cron} never fires: no year has {named}" in str(caught.value)
    assert "at most 28 for February), or L for the month's last day" in str(caught.value)


@pytest.mark.parametrize(
    "cron", ["cron(0 6 29 2 ? *)", "cron(0 6 31 * ? *)", "cron(0 6 L 2 ? *)", "cron(0 6 30 1-3 ? *)"]
)
def test_a_day_some_chosen_month_has_fires(cron):
    assert s.parse(cron=cron).next_times(dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc), n=1)
