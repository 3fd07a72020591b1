"""Cron schedules with time zones: validation, next fire times, readable form.

croniter computes the fire times; cron-descriptor words them. Fire times are
computed in the job's time zone (so "06:00 Europe/Paris" follows daylight
saving) and stored in UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..exceptions import ValidationError


def check_timezone(tz: str) -> Any:
    """The ``ZoneInfo`` for ``tz``, or a ValidationError naming an example."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValidationError(
            f"unknown time zone {tz!r}; use an IANA name such as UTC, Europe/Paris "
            "or America/New_York"
        ) from None


def check_cron(expr: str) -> str:
    """Return ``expr`` normalised if it is a valid 5-field cron expression, else raise."""
    from croniter import croniter

    text = " ".join(str(expr).split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ValidationError(
            f"invalid cron schedule {expr!r}: use five fields 'minute hour day month weekday', "
            "e.g. '0 6 * * *' for every day at 06:00"
        )
    return text


def next_fire(expr: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, as an aware UTC datetime."""
    from croniter import croniter

    start = after.astimezone(check_timezone(tz))
    nxt: datetime = croniter(expr, start).get_next(datetime)
    return nxt.astimezone(timezone.utc)


def upcoming(expr: str, tz: str, count: int = 3, after: datetime | None = None) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (default now), as aware UTC datetimes."""
    at = after or datetime.now(timezone.utc)
    out: list[datetime] = []
    for _ in range(count):
        at = next_fire(expr, tz, at)
        out.append(at)
    return out


def latest_fire(expr: str, tz: str, at_or_before: datetime) -> datetime:
    """The last fire time at or before ``at_or_before`` (aware UTC)."""
    from croniter import croniter

    # get_prev is strict: start a microsecond later so the instant itself counts
    start = at_or_before.astimezone(check_timezone(tz)) + timedelta(microseconds=1)
    prev: datetime = croniter(expr, start).get_prev(datetime)
    return prev.astimezone(timezone.utc)


def describe(expr: str | None, tz: str = "UTC") -> str:
    """A readable form, e.g. ``"every day at 06:00 UTC"``; ``"manual"`` without a schedule."""
    if not expr:
        return "manual"
    minute, hour, dom, month, dow = expr.split()
    if minute.isdigit() and hour.isdigit() and dom == month == dow == "*":
        return f"every day at {int(hour):02d}:{int(minute):02d} {tz}"
    if minute.isdigit() and hour == dom == month == dow == "*":
        return f"every hour at :{int(minute):02d} ({tz})"
    from cron_descriptor import Options, get_description

    options = Options()
    options.use_24hour_time_format = True
    try:
        text = get_description(expr, options)
    except Exception:  # valid for croniter, but cron-descriptor cannot word it
        return f"cron '{expr}' ({tz})"
    return f"{text[0].lower()}{text[1:]} ({tz})"
