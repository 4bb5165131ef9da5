"""Business-time arithmetic: examples across nights, weekends, holidays, split hours and
DST changes, and properties that must hold for any calendar."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from patron.crm.tickets.sla import DAYS, BusinessCalendar, weekly_schedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = weekly_schedule(DAYS[:5], [(9 * 60, 12 * 60), (13 * 60, 17 * 60)])
NINE_TO_FIVE = weekly_schedule(DAYS[:5], [(9 * 60, 17 * 60)])
ALWAYS = weekly_schedule(DAYS, [(0, 24 * 60)])


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone).astimezone(UTC)  # type: ignore[misc]


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# --- examples --------------------------------------------------------------------------


def test_a_deadline_carries_over_the_night() -> None:
    cal = BusinessCalendar(PARIS, NINE_TO_FIVE)
    start = local(PARIS, 2026, 6, 15, 16, 0)  # Monday 16:00
    assert cal.add(start, hours(2)) == local(PARIS, 2026, 6, 16, 10, 0)
    assert cal.working_time(start, local(PARIS, 2026, 6, 16, 10, 0)) == hours(2)


def test_a_deadline_carries_over_the_weekend() -> None:
    cal = BusinessCalendar(PARIS, NINE_TO_FIVE)
    friday = local(PARIS, 2026, 6, 19, 16, 30)
    assert cal.add(friday, hours(1)) == local(PARIS, 2026, 6, 22, 9, 30)
    assert cal.working_time(friday, local(PARIS, 2026, 6, 22, 12, 0)) == hours(3.5)


def test_holidays_are_skipped() -> None:
    cal = BusinessCalendar(PARIS, OFFICE, frozenset({date(2026, 12, 25)}))
    thursday = local(PARIS, 2026, 12, 24, 16, 0)
    # An hour on Thursday, Friday is Christmas, the weekend, then two hours on Monday.
    assert cal.add(thursday, hours(3)) == local(PARIS, 2026, 12, 28, 11, 0)
    assert cal.working_time(thursday, local(PARIS, 2026, 12, 29, 0, 0)) == hours(8)


def test_split_hours_leave_the_lunch_break_out() -> None:
    cal = BusinessCalendar(PARIS, OFFICE)
    morning = local(PARIS, 2026, 6, 15, 11, 30)
    assert cal.add(morning, hours(1)) == local(PARIS, 2026, 6, 15, 13, 30)
    assert cal.working_time(morning, local(PARIS, 2026, 6, 15, 14, 0)) == hours(1.5)
    assert not cal.is_working(local(PARIS, 2026, 6, 15, 12, 30))
    assert cal.is_working(local(PARIS, 2026, 6, 15, 13, 0))


def test_a_deadline_that_fills_the_day_ends_it_rather_than_opening_the_next() -> None:
    cal = BusinessCalendar(PARIS, NINE_TO_FIVE)
    assert cal.add(local(PARIS, 2026, 6, 15, 9, 0), hours(8)) == local(PARIS, 2026, 6, 15, 17, 0)


def test_time_outside_the_hours_counts_from_the_next_opening() -> None:
    cal = BusinessCalendar(PARIS, NINE_TO_FIVE)
    night = local(PARIS, 2026, 6, 15, 22, 0)
    assert cal.add(night, timedelta(minutes=30)) == local(PARIS, 2026, 6, 16, 9, 30)
    assert cal.add(night, timedelta(0)) == night


def test_walking_backwards() -> None:
    cal = BusinessCalendar(PARIS, NINE_TO_FIVE)
    monday = local(PARIS, 2026, 6, 22, 10, 0)
    assert cal.add(monday, -hours(2)) == local(PARIS, 2026, 6, 19, 16, 0)


@pytest.mark.parametrize(
    ("day", "length"),
    [
        (date(2026, 3, 29), hours(23)),
        (date(2026, 10, 25), hours(25)),
        (date(2026, 6, 1), hours(24)),
    ],
    ids=["spring", "autumn", "summer"],
)
def test_a_whole_day_lasts_what_the_clocks_say(day: date, length: timedelta) -> None:
    cal = BusinessCalendar(PARIS, ALWAYS)
    start = datetime.combine(day, time(), PARIS).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), PARIS).astimezone(UTC)
    assert cal.working_time(start, end) == length


def test_hours_across_a_dst_change_last_their_real_length() -> None:
    cal = BusinessCalendar(PARIS, weekly_schedule(DAYS, [(60, 240)]))  # 01:00-04:00
    assert sum((e - s for s, e in cal.periods_on(date(2026, 3, 29))), timedelta()) == hours(2)
    assert sum((e - s for s, e in cal.periods_on(date(2026, 10, 25))), timedelta()) == hours(4)


def test_hours_that_begin_in_the_spring_gap_begin_when_the_clocks_resume() -> None:
    cal = BusinessCalendar(PARIS, weekly_schedule(DAYS, [(150, 300)]))  # 02:30-05:00
    ((start, end),) = cal.periods_on(date(2026, 3, 29))
    assert start == local(PARIS, 2026, 3, 29, 3, 0) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert end - start == hours(2)


def test_hours_on_both_sides_of_the_spring_gap_never_overlap() -> None:
    cal = BusinessCalendar(PARIS, weekly_schedule(DAYS, [(60, 165), (180, 240)]))
    periods = cal.periods_on(date(2026, 3, 29))  # 01:00-02:45 and 03:00-04:00
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(periods))
    assert sum((e - s for s, e in periods), timedelta()) == hours(2)


def test_a_us_weekend_with_the_spring_change() -> None:
    cal = BusinessCalendar(NEW_YORK, NINE_TO_FIVE)
    friday = local(NEW_YORK, 2026, 3, 6, 16, 0)  # clocks go forward on Sunday the 8th
    due = cal.add(friday, hours(2))
    assert due == local(NEW_YORK, 2026, 3, 9, 10, 0)
    assert due - friday == timedelta(days=2, hours=17)  # an hour less than the wall says


def test_hours_up_to_midnight_join_the_next_day() -> None:
    cal = BusinessCalendar(PARIS, weekly_schedule(DAYS, [(0, 4 * 60), (20 * 60, 24 * 60)]))
    late = local(PARIS, 2026, 6, 15, 23, 0)
    assert cal.add(late, hours(2)) == local(PARIS, 2026, 6, 16, 1, 0)


# --- properties ------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
FIXED_ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu"]


@st.composite
def day_hours(draw: st.DrawFn) -> tuple[tuple[int, int], ...]:
    """Up to three sorted, disjoint periods of a day, in minutes."""
    count = draw(st.integers(0, 3))
    edges = sorted(draw(st.sets(st.integers(0, 24 * 60), min_size=2 * count, max_size=2 * count)))
    return tuple((edges[i], edges[i + 1]) for i in range(0, len(edges), 2))


@st.composite
def calendars(draw: st.DrawFn, zones: list[str] = ZONES) -> BusinessCalendar:
    week = tuple(draw(day_hours()) for _ in DAYS)
    assume(any(week))
    holidays = draw(st.frozensets(st.dates(date(2025, 12, 1), date(2026, 12, 31)), max_size=20))
    return BusinessCalendar(ZoneInfo(draw(st.sampled_from(zones))), week, holidays)


instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)
amounts = st.integers(0, 60 * 24 * 60 * 1_000_000).map(lambda us: timedelta(microseconds=us))
FEW = settings(max_examples=150, deadline=None)


@FEW
@given(calendars(), instants, amounts)
def test_adding_then_measuring_gives_the_amount_back(
    cal: BusinessCalendar, start: datetime, amount: timedelta
) -> None:
    due = cal.add(start, amount)
    assert due >= start
    assert cal.working_time(start, due) == amount


@FEW
@given(calendars(), instants, amounts)
def test_walking_back_then_measuring_gives_the_amount_back(
    cal: BusinessCalendar, end: datetime, amount: timedelta
) -> None:
    start = cal.add(end, -amount)
    assert start <= end
    assert cal.working_time(start, end) == amount


@FEW
@given(calendars(), instants, amounts.filter(bool))
def test_a_due_time_is_never_outside_working_hours(
    cal: BusinessCalendar, start: datetime, amount: timedelta
) -> None:
    due = cal.add(start, amount)
    # The deadline is the end of the last working instant it needs: it closes a period.
    assert cal.is_working(due - timedelta(microseconds=1))


@FEW
@given(calendars(FIXED_ZONES), instants, amounts.filter(bool))
def test_a_due_time_lies_in_the_local_hours_of_a_working_day(
    cal: BusinessCalendar, start: datetime, amount: timedelta
) -> None:
    last = (cal.add(start, amount) - timedelta(microseconds=1)).astimezone(cal.zone)
    minute = last.hour * 60 + last.minute + (last.second + last.microsecond / 1e6) / 60
    assert last.date() not in cal.holidays
    assert any(a <= minute < b for a, b in cal.week[last.weekday()])


@FEW
@given(calendars(), instants, st.lists(amounts, min_size=2, max_size=2))
def test_working_time_adds_up_over_consecutive_spans(
    cal: BusinessCalendar, start: datetime, steps: list[timedelta]
) -> None:
    middle = start + steps[0] / 20
    end = middle + steps[1] / 20
    whole = cal.working_time(start, end)
    assert whole == cal.working_time(start, middle) + cal.working_time(middle, end)
    assert whole <= end - start


@FEW
@given(calendars(), instants, amounts, amounts)
def test_more_time_is_never_due_sooner(
    cal: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    low, high = sorted((a, b))
    assert cal.add(start, low) <= cal.add(start, high)


@settings(max_examples=60, deadline=None)
@given(calendars(FIXED_ZONES), instants, st.integers(0, 4 * 24 * 60))
def test_working_time_agrees_with_counting_minute_by_minute(
    cal: BusinessCalendar, start: datetime, span: int
) -> None:
    start = start.replace(second=0, microsecond=0)
    counted = 0
    for offset in range(span):
        moment = (start + timedelta(minutes=offset)).astimezone(cal.zone)
        minute = moment.hour * 60 + moment.minute
        working = any(a <= minute < b for a, b in cal.week[moment.weekday()])
        counted += working and moment.date() not in cal.holidays
    assert cal.working_time(start, start + timedelta(minutes=span)) == timedelta(minutes=counted)
