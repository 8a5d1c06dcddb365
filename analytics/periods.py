"""Reporting periods in the province's time zone: a day, an ISO week or a month of Asia/Ho_Chi_Minh.

The province's day starts at 00:00 in Hà Nội time (UTC+7, no daylight saving), so
"October 2026" is 2026-09-30T17:00Z to 2026-10-31T17:00Z.  Boundaries come from
zoneinfo, not a hard-coded offset, so the code stays right if the zone ever changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
KINDS = ("day", "week", "month")
NS = 1_000_000_000


class PeriodError(ValueError):
    """A period that cannot be read; the message says what is accepted."""


@dataclass(frozen=True)
class Period:
    kind: str  # day | week | month | range
    label: str  # 2026-10-05, 2026-W41, 2026-10, or "start/end" for a free range
    start_ns: int
    end_ns: int  # exclusive

    @property
    def length_ns(self) -> int:
        return self.end_ns - self.start_ns


def _local_midnight_ns(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp()) * NS


def local_date(ts_ns: int) -> date:
    return datetime.fromtimestamp(ts_ns / NS, TZ).date()


def day(d: date) -> Period:
    return Period("day", d.isoformat(), _local_midnight_ns(d), _local_midnight_ns(d + timedelta(days=1)))


def week(d: date) -> Period:
    monday = d - timedelta(days=d.weekday())
    iso = monday.isocalendar()
    return Period("week", f"{iso.year}-W{iso.week:02d}", _local_midnight_ns(monday),
                  _local_midnight_ns(monday + timedelta(days=7)))


def month(year: int, mon: int) -> Period:
    nxt = date(year + (mon == 12), mon % 12 + 1, 1)
    return Period("month", f"{year:04d}-{mon:02d}", _local_midnight_ns(date(year, mon, 1)), _local_midnight_ns(nxt))


def parse(kind: str, at: str) -> Period:
    """``kind`` day|week|month; ``at``: 2026-10-05 (day, or any day of the week), 2026-W41 (week), 2026-10 (month)."""
    at = at.strip()
    try:
        if kind == "month":
            m = re.fullmatch(r"(\d{4})-(\d{2})", at)
            if not m or not 1 <= int(m.group(2)) <= 12:
                raise PeriodError(f"{at!r} is not a month: write YYYY-MM, e.g. 2026-10")
            return month(int(m.group(1)), int(m.group(2)))
        if kind == "week":
            m = re.fullmatch(r"(\d{4})-W(\d{2})", at)
            if m:
                return week(date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1))
            return week(date.fromisoformat(at))
        if kind == "day":
            return day(date.fromisoformat(at))
    except ValueError as exc:
        if isinstance(exc, PeriodError):
            raise
        raise PeriodError(f"{at!r} is not a {kind}: write YYYY-MM-DD{' or YYYY-Www' if kind == 'week' else ''} "
                          f"({exc})") from None
    raise PeriodError(f"unknown period {kind!r}: one of {', '.join(KINDS)}")


def days_between(start_ns: int, end_ns: int) -> list[Period]:
    """The local days that [start_ns, end_ns) touches, in order."""
    out, d = [], local_date(start_ns)
    while _local_midnight_ns(d) < end_ns:
        out.append(day(d))
        d += timedelta(days=1)
    return out
