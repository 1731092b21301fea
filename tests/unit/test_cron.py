"""The cron parser: fields, names, steps, descriptors, DOM/DOW OR semantics, time zones and DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from minik8s.api import cron

UTC = dt.UTC


def at(text: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


def upcoming(spec: str, start: dt.datetime, n: int, zone: dt.tzinfo = UTC) -> list[dt.datetime]:
    sched, out, t = cron.parse(spec), [], start
    for _ in range(n):
        nxt = sched.next(t, zone)
        assert nxt is not None
        out.append(nxt.astimezone(zone))
        t = nxt
    return out


def test_every_minute_and_steps() -> None:
    assert upcoming("* * * * *", at("2024-01-01T00:00:30"), 2) == [at("2024-01-01T00:01"), at("2024-01-01T00:02")]
    assert upcoming("*/15 * * * *", at("2024-01-01T00:00"), 3) == [
        at("2024-01-01T00:15"), at("2024-01-01T00:30"), at("2024-01-01T00:45")]
    # N/step means N-max/step; a range with a step
    assert upcoming("50/5 * * * *", at("2024-01-01T00:00"), 3) == [
        at("2024-01-01T00:50"), at("2024-01-01T00:55"), at("2024-01-01T01:50")]
    assert upcoming("0 9-17/4 * * *", at("2024-01-01T00:00"), 3) == [
        at("2024-01-01T09:00"), at("2024-01-01T13:00"), at("2024-01-01T17:00")]


def test_lists_names_and_descriptors() -> None:
    assert upcoming("0 0 1 jan,JUL *", at("2024-02-01T00:00"), 2) == [at("2024-07-01T00:00"), at("2025-01-01T00:00")]
    # 2024-01-01 is a Monday
    assert upcoming("0 12 * * MON-wed", at("2024-01-01T13:00"), 3) == [
        at("2024-01-02T12:00"), at("2024-01-03T12:00"), at("2024-01-08T12:00")]
    assert upcoming("@hourly", at("2024-01-01T00:00"), 1) == [at("2024-01-01T01:00")]
    assert upcoming("@daily", at("2024-01-01T00:00"), 1) == [at("2024-01-02T00:00")]
    assert upcoming("@weekly", at("2024-01-01T00:00"), 1) == [at("2024-01-07T00:00")]
    assert upcoming("@monthly", at("2024-01-15T00:00"), 1) == [at("2024-02-01T00:00")]
    assert upcoming("@yearly", at("2024-01-15T00:00"), 1) == [at("2025-01-01T00:00")]


def test_day_of_month_and_day_of_week_are_ored_when_both_restricted() -> None:
    # the 13th, or any Friday (2024-09-06 and 09-13 are Fridays)
    assert upcoming("0 0 13 * 5", at("2024-09-01T00:00"), 3) == [
        at("2024-09-06T00:00"), at("2024-09-13T00:00"), at("2024-09-20T00:00")]
    # with one side `*` they are ANDed: every Friday only
    assert upcoming("0 0 * * 5", at("2024-09-07T00:00"), 1) == [at("2024-09-13T00:00")]
    # `*/1` style steps of one still count as a star; a step over 1 does not
    assert upcoming("0 0 */2 * 1", at("2024-09-01T00:00"), 3) == [
        at("2024-09-02T00:00"), at("2024-09-03T00:00"), at("2024-09-05T00:00")]


def test_impossible_date_gives_none() -> None:
    assert cron.parse("0 0 30 2 *").next(at("2024-01-01T00:00")) is None


@pytest.mark.parametrize("spec,needle", [
    ("* * * *", "exactly 5 fields"), ("60 * * * *", "out of range"), ("* * * * 7", "out of range"),
    ("*/0 * * * *", "invalid step"), ("5-1 * * * *", "beyond end"), ("* * * FOO *", "parse int"),
    ("@every 5m", "@every"), ("@fortnightly", "unrecognized"), ("TZ=UTC * * * * *", "timeZone field"),
])
def test_bad_schedules_are_refused(spec: str, needle: str) -> None:
    with pytest.raises(cron.CronError, match=needle):
        cron.parse(spec)


def test_time_zone_and_unknown_zone() -> None:
    tokyo = cron.zone("Asia/Tokyo")
    nxt = cron.parse("0 9 * * *").next(at("2024-01-01T00:00"), tokyo)
    assert nxt == at("2024-01-02T00:00")  # 09:00 JST on Jan 2 is midnight UTC
    assert cron.zone(None) is UTC
    for bad in ("Mars/Olympus", "../etc/passwd", "Local"):
        with pytest.raises(cron.CronError, match="unknown time zone"):
            cron.zone(bad)


def test_dst_spring_forward_skips_the_missing_time_and_fall_back_repeats() -> None:
    ny = ZoneInfo("America/New_York")
    # 2024-03-10 02:30 does not exist in New York: that day is skipped
    assert upcoming("30 2 * * *", at("2024-03-09T03:00", ny), 2, ny) == [
        at("2024-03-11T02:30", ny), at("2024-03-12T02:30", ny)]
    # 2024-11-03 01:30 happens twice (EDT, then EST): both fire, one hour apart in absolute time
    first, second = upcoming("30 1 * * *", at("2024-11-03T00:00", ny), 2, ny)
    assert (second.astimezone(UTC) - first.astimezone(UTC)) == dt.timedelta(hours=1)
    assert first.utcoffset() == dt.timedelta(hours=-4) and second.utcoffset() == dt.timedelta(hours=-5)
    # a daily midnight job keeps local midnight across the change
    days = upcoming("0 0 * * *", at("2024-03-09T12:00", ny), 3, ny)
    assert [(d.day, d.hour) for d in days] == [(10, 0), (11, 0), (12, 0)]
