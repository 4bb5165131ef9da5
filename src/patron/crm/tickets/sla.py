"""Business time: which instants are working time under a policy's hours, how much working
time lies between two instants, and which instant lies a given amount of working time
from another.

A calendar is a weekly schedule of local working hours (split hours allowed), a set of
holidays, and an IANA time zone. Each working day becomes a few UTC periods; everything
else is sums and walks over those periods, in exact ``timedelta`` arithmetic, so adding an
amount and then measuring it gives back exactly that amount.

Local times are mapped to UTC day by day, which handles DST on its own: a 09:00-17:00 day
is 8 hours of real time on either side of a change, and a period that spans the change
has the real length (an hour less in spring, more in autumn). A local time that occurs
twice (autumn) means its first occurrence; one that does not exist (the spring gap) means
the instant the clocks jump, so hours that would start in the gap start when the clock
resumes, and nothing is counted twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
CLOCK = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|24:00)$")
# A walk that finds no working time in this many days has a calendar with none (a bug:
# policies are checked to have working hours every week, and holidays are finite).
MAX_WALK_DAYS = 366 * 40
# Days of periods a calendar remembers (each a few datetimes).
DAY_CACHE = 50_000
ZERO = timedelta(0)

# (start, end) in minutes after local midnight; end may be 1440 (the day's end).
Hours = tuple[int, int]
Period = tuple[datetime, datetime]


@dataclass(frozen=True, eq=False)
class BusinessCalendar:
    """Working periods of a weekly schedule in a time zone, minus holidays."""

    zone: ZoneInfo
    # Seven entries, Monday first: that weekday's working hours, sorted, not overlapping.
    week: tuple[tuple[Hours, ...], ...]
    holidays: frozenset[date] = frozenset()
    _days: dict[date, tuple[Period, ...]] = field(default_factory=dict, repr=False)

    def periods_on(self, day: date) -> tuple[Period, ...]:
        """The UTC periods of one local date (none on holidays and days off)."""
        found = self._days.get(day)
        if found is not None:
            return found
        periods: list[Period] = []
        if day not in self.holidays:
            midnight = datetime.combine(day, time())
            for start, end in self.week[day.weekday()]:
                begin = to_utc(midnight + timedelta(minutes=start), self.zone)
                finish = to_utc(midnight + timedelta(minutes=end), self.zone)
                if periods and begin < periods[-1][1]:
                    begin = periods[-1][1]
                if finish > begin:  # hours wholly inside the spring gap are no time at all
                    periods.append((begin, finish))
        if len(self._days) >= DAY_CACHE:
            self._days.clear()
        self._days[day] = result = tuple(periods)
        return result

    def periods(self, start: datetime, *, backwards: bool = False) -> Iterator[Period]:
        """Working periods from ``start`` on (or back from it), clipped to it, in order."""
        first = start.astimezone(self.zone).date()
        step = timedelta(days=-1 if backwards else 1)
        day = first - step  # the neighbouring date's hours may reach over, by DST
        for _ in range(MAX_WALK_DAYS):
            ordered: Iterable[Period] = self.periods_on(day)
            if backwards:
                ordered = reversed(tuple(ordered))
            for begin, end in ordered:
                if backwards and begin < start:
                    yield begin, min(end, start)
                elif not backwards and end > start:
                    yield max(begin, start), end
            day += step
        raise RuntimeError("this calendar has no working time within forty years")

    def working_time(self, start: datetime, end: datetime) -> timedelta:
        """Working time between two instants (zero if ``end`` is not after ``start``)."""
        total = ZERO
        if end <= start:
            return total
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        last = end.astimezone(self.zone).date() + timedelta(days=1)
        while day <= last:
            for begin, finish in self.periods_on(day):
                low, high = max(begin, start), min(finish, end)
                if high > low:
                    total += high - low
            day += timedelta(days=1)
        return total

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The instant ``amount`` of working time after ``start`` (before it, if negative).

        Forwards, the earliest such instant: it lies in working hours, at the latest at
        the end of a period (a deadline at 17:00, not at 09:00 the next working day).
        """
        if amount == ZERO:
            return start
        backwards = amount < ZERO
        left = -amount if backwards else amount
        for begin, end in self.periods(start, backwards=backwards):
            length = end - begin
            if length >= left:
                return end - left if backwards else begin + left
            left -= length
        raise AssertionError("unreachable: periods() ends by raising")

    def is_working(self, at: datetime) -> bool:
        """Whether ``at`` lies inside a working period (its start included, end not)."""
        day = at.astimezone(self.zone).date()
        return any(
            begin <= at < end
            for near in (day - timedelta(days=1), day, day + timedelta(days=1))
            for begin, end in self.periods_on(near)
        )

    def weekly_minutes(self) -> int:
        """Working minutes in a week without holidays, on the wall clock."""
        return sum(end - start for day in self.week for start, end in day)


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time in ``zone`` as an aware UTC instant (see the module's notes)."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first  # it exists; for a repeated time, this is its first occurrence
    return _clocks_resume(local, zone)


def _clocks_resume(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks jump over the gap that swallows ``local``.

    In a gap, ``fold=1`` reads ``local`` with the offset after the jump (an instant before
    it) and ``fold=0`` with the offset before (an instant after it); the jump lies between,
    on a whole second, which a bisection finds.
    """
    before = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    offset = before.astimezone(zone).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def weekly_schedule(
    working_days: Sequence[str],
    working_hours: Sequence[Hours],
    day_hours: Mapping[str, Sequence[Hours]] | None = None,
) -> tuple[tuple[Hours, ...], ...]:
    """Seven days of hours, Monday first: ``working_hours`` on each working day, unless
    ``day_hours`` gives that day its own."""
    special = day_hours or {}
    return tuple(
        tuple(special.get(name, working_hours)) if name in working_days else () for name in DAYS
    )


@lru_cache(maxsize=128)
def calendar_for(
    zone: str, week: tuple[tuple[Hours, ...], ...], holidays: frozenset[date]
) -> BusinessCalendar:
    """A shared calendar per distinct definition, so its cache of days is reused."""
    return BusinessCalendar(ZoneInfo(zone), week, holidays)


def minutes(amount: timedelta) -> float:
    """A duration in (fractional) minutes."""
    return amount / timedelta(minutes=1)


def parse_clock(text: str) -> int:
    """``"09:30"`` as minutes after midnight (``"24:00"``, the day's end, is 1440)."""
    match = CLOCK.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time like 09:30 (00:00 to 24:00)")
    if match.group(1) is None:
        return MINUTES_PER_DAY
    return int(match.group(1)) * 60 + int(match.group(2))


def format_clock(minute: int) -> str:
    """Minutes after midnight as ``"HH:MM"``."""
    return f"{minute // 60:02d}:{minute % 60:02d}"
