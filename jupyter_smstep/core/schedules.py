"""Schedule expressions as EventBridge Scheduler reads them, checked here before any AWS call.

:func:`parse` takes one of ``--cron`` / ``--rate`` / ``--at`` (with or without the
``cron(...)`` wrapper) and returns an :class:`Expression`, or raises
:class:`~jupyter_smstep.errors.SmstepError` saying which field is wrong and how to
write it. :meth:`Expression.next_times` computes when it fires (UTC), so
``%pipeline schedules`` can show the next three.

EventBridge's rules (Scheduler user guide, "Schedule types"):

- ``cron(minutes hours day-of-month month day-of-week year)``: six fields;
  ``, - * /`` everywhere, ``? L W`` in day-of-month, ``? L #`` in day-of-week
  (1-7 or SUN-SAT, 1 is Sunday), months 1-12 or JAN-DEC, years 1970-2199; one of
  day-of-month and day-of-week must be ``?``;
- ``rate(value unit)``: a positive whole number and ``minute(s)``, ``hour(s)`` or
  ``day(s)``, singular for 1 and plural otherwise; it fires at the start date and
  every interval after;
- ``at(yyyy-mm-ddThh:mm:ss)``: one time, no time zone (the schedule's, UTC here).

Pure: no boto3.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

from jupyter_smstep.errors import Problem, SmstepError

Kind = Literal["cron", "rate", "at"]
UTC = dt.timezone.utc
#: EventBridge Scheduler schedule names
NAME = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")
MONTHS = {
    m: i
    for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)
}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
CRON_FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
_RANGES = {
    "minutes": (0, 59),
    "hours": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (1, 7),
    "year": (1970, 2199),
}
CRON_EXAMPLE = 'write e.g. --cron "cron(0 6 * * ? *)" (06:00 UTC every day) or "cron(0 9 ? * MON-FRI *)"'


def _bad(message: str, fix: str) -> SmstepError:
    return SmstepError(Problem(message, fix=fix))


@dataclass(frozen=True)
class CronField:
    values: frozenset[int] = frozenset()  # the plain values this field allows
    any: bool = False  # * or ?
    last: bool = False  # L (day-of-month): the month's last day
    weekday_near: int | None = None  # nW (day-of-month): the weekday nearest day n
    last_weekday: int | None = None  # nL (day-of-week): the month's last such weekday
    nth: tuple[int, int] | None = None  # d#n (day-of-week): the n-th such weekday


@dataclass(frozen=True)
class Expression:
    kind: Kind
    text: str  # the expression EventBridge gets: cron(...), rate(...), at(...)
    fields: tuple[CronField, ...] = ()  # cron
    interval: dt.timedelta | None = None  # rate
    at: dt.datetime | None = None  # at (UTC)
    pieces: tuple[str, ...] = field(default=())

    def next_times(
        self, after: dt.datetime, n: int = 3, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> list[dt.datetime]:
        """The next ``n`` fire times after ``after`` (UTC), within the schedule's start and end dates."""
        after = after.astimezone(UTC)
        if start is not None and start > after:
            after = start - dt.timedelta(seconds=1)
        found: list[dt.datetime] = []
        if self.kind == "at":
            assert self.at is not None
            found = [self.at] if self.at > after else []
        elif self.kind == "rate":
            assert self.interval is not None
            origin = start or after
            steps = max(0, int((after - origin) // self.interval) + 1) if after >= origin else 0
            found = [origin + self.interval * (steps + i) for i in range(n)]
        else:
            found = _cron_times(self.fields, after, n)
        return [t for t in found if end is None or t <= end][:n]


def parse(cron: str | None = None, rate: str | None = None, at: str | None = None) -> Expression:
    given = [(k, v) for k, v in (("cron", cron), ("rate", rate), ("at", at)) if v is not None]
    if len(given) != 1:
        raise _bad(
            "a schedule needs exactly one of --cron, --rate and --at"
            + (f" (got {', '.join('--' + k for k, _ in given)})" if given else ""),
            fix='write e.g. --rate "rate(1 day)" or --cron "cron(0 6 * * ? *)"',
        )
    kind, raw = given[0]
    text = raw.strip()
    wrapped = re.fullmatch(rf"{kind}\((.*)\)", text, re.S)
    inner = (wrapped.group(1) if wrapped else text).strip()
    if kind == "rate":
        return _parse_rate(inner)
    if kind == "at":
        return _parse_at(inner)
    return _parse_cron(inner)


#: The longest rate accepted: ten years (a datetime a rate's runs are counted in overflows near 2.7 million days)
MAX_RATE_SECONDS = 10 * 366 * 86400


def _parse_rate(inner: str) -> Expression:
    fix = 'write e.g. --rate "rate(1 day)", "rate(6 hours)" or "rate(30 minutes)"'
    m = re.fullmatch(r"(\d+)\s+([a-z]+)", inner)
    if not m:
        raise _bad(f"rate({inner}) is not rate(VALUE UNIT)", fix=fix)
    value, unit = int(m.group(1)), m.group(2)
    base = unit[:-1] if unit.endswith("s") else unit
    if base not in RATE_UNITS:
        raise _bad(f"rate({inner}): {unit!r} is not a unit EventBridge knows (minute(s), hour(s), day(s))", fix=fix)
    if value < 1:
        raise _bad(f"rate({inner}): the value must be a positive whole number", fix=fix)
    if value * RATE_UNITS[base] > MAX_RATE_SECONDS:  # timedelta overflows long before; EventBridge refuses too
        raise _bad(
            f"rate({inner}) is longer than any schedule can wait (at most {MAX_RATE_SECONDS // 86400} days)",
            fix="use a shorter interval, or --at for one run at a given time",
        )
    if (value == 1) != (unit == base):
        right = base if value == 1 else base + "s"
        raise _bad(
            f"rate({inner}): EventBridge wants the singular for 1 and the plural otherwise",
            fix=f"write rate({value} {right})",
        )
    return Expression("rate", f"rate({value} {unit})", interval=dt.timedelta(seconds=value * RATE_UNITS[base]))


def _parse_at(inner: str) -> Expression:
    fix = 'write e.g. --at "at(2027-01-01T06:00:00)" (UTC, no time zone)'
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", inner):
        why = "has a time zone" if re.search(r"(Z|[+-]\d{2}:?\d{2})$", inner) else "is not yyyy-mm-ddThh:mm:ss"
        raise _bad(f"at({inner}) {why}: EventBridge takes at(yyyy-mm-ddThh:mm:ss) in the schedule's time zone", fix)
    try:
        when = dt.datetime.strptime(inner, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError as exc:
        raise _bad(f"at({inner}) is not a date and time ({exc})", fix) from None
    return Expression("at", f"at({inner})", at=when)


def _parse_cron(inner: str) -> Expression:
    parts = inner.split()
    if len(parts) != 6:
        hint = (
            " (a Unix cron has 5; EventBridge adds the year and wants ? in day-of-month or day-of-week)"
            if len(parts) == 5
            else ""
        )
        raise _bad(
            f"cron({inner}) has {len(parts)} fields; EventBridge's has 6: minutes hours day-of-month month "
            f"day-of-week year{hint}",
            fix=CRON_EXAMPLE,
        )
    dom, dow = parts[2], parts[4]
    if (dom == "?") == (dow == "?"):
        raise _bad(
            f"cron({inner}): exactly one of day-of-month ({dom}) and day-of-week ({dow}) must be ?",
            fix="write ? in the one you do not use, e.g. cron(0 6 * * ? *) or cron(0 6 ? * MON *)",
        )
    fields = tuple(_cron_field(name, text, inner) for name, text in zip(CRON_FIELDS, parts))
    day, month = fields[2], fields[3]
    months = range(1, 13) if month.any else sorted(month.values)
    longest = {m: calendar.monthrange(2028, m)[1] for m in months}  # 2028: February has 29 days
    if day.values and not (day.any or day.last) and all(d > longest[m] for d in day.values for m in months):
        named = ", ".join(f"{calendar.month_name[m]} {min(day.values)}" for m in months[:3])
        raise _bad(
            f"cron({inner}) never fires: no year has {named}",
            fix="pick a day every chosen month has (at most 28 for February), or L for the month's last day",
        )
    return Expression("cron", f"cron({' '.join(parts)})", fields=fields, pieces=tuple(parts))


def _cron_field(name: str, text: str, inner: str) -> CronField:
    low, high = _RANGES[name]

    def bad(why: str) -> SmstepError:
        return _bad(f"cron({inner}): {name} {text!r} {why}", fix=CRON_EXAMPLE)

    def number(token: str) -> int:
        names = MONTHS if name == "month" else DAYS if name == "day-of-week" else {}
        value = names.get(token.upper()) if token.upper() in names else int(token) if token.isdigit() else None
        if value is None:
            raise bad(f"has {token!r}, which is not a number" + (" or a name" if names else ""))
        if not low <= value <= high:
            raise bad(f"has {value}, outside {low}-{high}")
        return value

    if text in ("*", "?"):
        if text == "?" and name not in ("day-of-month", "day-of-week"):
            raise bad("uses ?, which only day-of-month and day-of-week take")
        return CronField(any=True)
    if name == "day-of-month":
        if text == "L":
            return CronField(last=True)
        if text.endswith("W") and text[:-1].isdigit():
            return CronField(weekday_near=number(text[:-1]))
    if name == "day-of-week":
        if text.endswith("L") and len(text) > 1:
            return CronField(last_weekday=number(text[:-1]))
        if "#" in text:
            day, _, nth = text.partition("#")
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise bad("has #N with N not 1-5")
            return CronField(nth=(number(day), int(nth)))
    if re.search(r"[LW#]", text.upper().replace("WED", "").replace("JUL", "")):
        raise bad(
            "uses L, W or # where EventBridge does not take them (L and W: day-of-month, L and #: "
            "day-of-week, each alone in its field)"
        )
    values: set[int] = set()
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise bad(f"has the step /{step}, which is not a positive number")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = number(a), number(b)
            if first > last:
                raise bad(f"has the range {base}, which runs backwards")
        else:
            first = number(base)
            last = high if step else first
        values.update(range(first, last + 1, int(step) if step else 1))
    return CronField(values=frozenset(values))


def _day_matches(dom: CronField, dow: CronField, day: dt.date) -> bool:
    last_day = calendar.monthrange(day.year, day.month)[1]
    weekday = (day.isoweekday() % 7) + 1  # EventBridge: 1 = Sunday
    if not dom.any:
        if dom.last:
            return day.day == last_day
        if dom.weekday_near is not None:
            return day.day == _nearest_weekday(day.year, day.month, dom.weekday_near)
        return day.day in dom.values
    if dow.any:
        return True
    if dow.last_weekday is not None:
        return weekday == dow.last_weekday and day.day + 7 > last_day
    if dow.nth is not None:
        return weekday == dow.nth[0] and (day.day - 1) // 7 + 1 == dow.nth[1]
    return weekday in dow.values


def _nearest_weekday(year: int, month: int, wanted: int) -> int:
    last_day = calendar.monthrange(year, month)[1]
    target = min(wanted, last_day)
    weekday = dt.date(year, month, target).weekday()  # Monday 0
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return target - 1 if target > 1 else target + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return target + 1 if target < last_day else target - 2
    return target


def _cron_times(fields: tuple[CronField, ...], after: dt.datetime, n: int) -> list[dt.datetime]:
    minutes, hours, dom, months, dow, years = fields

    def allowed(f: CronField, low: int, high: int) -> list[int]:
        return list(range(low, high + 1)) if f.any else sorted(f.values)

    found: list[dt.datetime] = []
    day = after.date()
    limit = dt.date(min(2199, after.year + 30), 12, 31)
    while day <= limit and len(found) < n:
        if (
            (years.any or day.year in years.values)
            and (months.any or day.month in months.values)
            and _day_matches(dom, dow, day)
        ):
            for hour in allowed(hours, 0, 23):
                for minute in allowed(minutes, 0, 59):
                    when = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if when > after:
                        found.append(when)
                        if len(found) == n:
                            return found
        day += dt.timedelta(days=1)
    return found


def parse_date(text: str, flag: str) -> dt.datetime:
    """``--start`` / ``--end``: an ISO 8601 date or date and time; UTC unless it names a zone."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{flag} {text!r} is not an ISO 8601 date", fix=f"write e.g. {flag} 2027-01-01T06:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise _bad(
            f"schedule name {name!r} is invalid: EventBridge allows 1-64 letters, digits, '-', '_' and '.'",
            fix=f"use e.g. {re.sub(r'[^0-9a-zA-Z._-]+', '-', name).strip('-')[:64] or 'daily'}",
        )
