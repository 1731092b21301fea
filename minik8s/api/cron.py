"""Cron schedules as Kubernetes' CronJob controller reads them (robfig/cron v3 `ParseStandard`).

Five fields (minute hour day-of-month month day-of-week) with lists, ranges, steps, `*`/`?`, month and
weekday names (JAN..DEC, SUN..SAT, any case), and the descriptors @yearly/@annually, @monthly,
@weekly, @daily/@midnight, @hourly. `@every` is refused, as Kubernetes' validation does.

Day-of-month and day-of-week are ORed when both are restricted and ANDed when either is `*`,
as cron does. Times are walked in the schedule's time zone the way robfig does it: days advance
on the wall clock, hours and minutes in absolute time, so across a spring-forward gap a time that
does not exist is skipped and across a fall-back overlap a repeated wall time fires twice.
Written here (no dependency) because the rules above are what Kubernetes users rely on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
SEARCH_YEARS = 5  # robfig gives up after this many years without a match (e.g. `0 0 30 2 *`)

_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class CronError(ValueError):
    """A schedule that does not parse; the message says which field and why."""


@dataclass(frozen=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (_Bounds("minute", 0, 59), _Bounds("hour", 0, 23), _Bounds("day of month", 1, 31),
           _Bounds("month", 1, 12, _MONTHS), _Bounds("day of week", 0, 6, _DAYS))


def _number(text: str, b: _Bounds) -> int:
    if b.names and text.lower() in b.names:
        return b.names[text.lower()]
    if not text.isdigit():
        raise CronError(f"failed to parse int from {text}: {b.name} must be a number"
                        + (" or a name" if b.names else ""))
    return int(text)


def _parse_field(text: str, b: _Bounds) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is a bare `*`/`?` (which matters for DOM/DOW)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        range_text, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"invalid step {step_text!r} in {b.name} field {text!r}")
            step = int(step_text)
        if range_text in ("*", "?"):
            low, high = b.low, b.high
            star = star or step == 1
        else:
            first, dash, last = range_text.partition("-")
            low = _number(first, b)
            high = _number(last, b) if dash else (b.high if slash else low)
        if low < b.low or high > b.high:
            raise CronError(f"{b.name} value out of range ({b.low}-{b.high}): {part!r}")
        if low > high:
            raise CronError(f"beginning of range ({low}) beyond end of range ({high}): {part!r}")
        values.update(range(low, high + 1, step))
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_star: bool
    weekdays_star: bool

    def _day_matches(self, t: dt.datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def next(self, after: dt.datetime, zone: dt.tzinfo = UTC) -> dt.datetime | None:
        """The first activation strictly after `after` (an aware time), in UTC; None if there is none
        within SEARCH_YEARS (a schedule like Feb 30)."""
        t = _norm(after.astimezone(zone).replace(second=0, microsecond=0) + dt.timedelta(minutes=1), zone)
        year_limit = t.year + SEARCH_YEARS
        while t.year <= year_limit:
            if t.month not in self.months:
                first = dt.datetime(t.year, t.month, 1, tzinfo=zone)
                t = _norm(first.replace(year=t.year + (t.month == 12), month=t.month % 12 + 1), zone)
                continue
            if not self._day_matches(t):
                day = dt.datetime(t.year, t.month, t.day, tzinfo=zone) + dt.timedelta(days=1)
                t = _norm(day, zone)
                continue
            if t.hour not in self.hours:
                t = _add(t.replace(minute=0), dt.timedelta(hours=1), zone)
                continue
            if t.minute not in self.minutes:
                t = _add(t, dt.timedelta(minutes=1), zone)
                continue
            return t.astimezone(UTC)
        return None


def _norm(t: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """A wall time that may fall in a DST gap, moved to a real instant in `zone`."""
    return t.astimezone(UTC).astimezone(zone)


def _add(t: dt.datetime, delta: dt.timedelta, zone: dt.tzinfo) -> dt.datetime:
    """Absolute-time addition (aware datetime + timedelta in Python is wall-clock addition)."""
    return (t.astimezone(UTC) + delta).astimezone(zone)


def parse(text: str) -> Schedule:
    """A Schedule from a cron expression, or a CronError naming the problem."""
    spec = text.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        raise CronError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    if spec.startswith("@every"):
        raise CronError("@every is not supported: use a five-field schedule")
    if spec.startswith("@"):
        if spec.lower() not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec.lower()]
    fields = spec.split()
    if len(fields) != len(_FIELDS):
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {text!r}")
    parsed = [_parse_field(f, b) for f, b in zip(fields, _FIELDS, strict=True)]
    return Schedule(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], parsed[4][0],
                    parsed[2][1], parsed[4][1])


def zone(name: str | None) -> dt.tzinfo:
    """The IANA zone a CronJob names (UTC when unset), or a CronError."""
    if not name:
        return UTC
    if name.startswith(("/", ".")) or ".." in name or name.lower() == "local":
        raise CronError(f"unknown time zone {name}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name}") from None
