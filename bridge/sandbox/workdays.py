"""Norwegian working days: when the 16:00 vedtak run happens and when a payment lands."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache

from bridge.sandbox.clock import OSLO

VEDTAK_TIME = time(16, 0)
UTBETALING_TIME = time(8, 0)


def _easter_sunday(year: int) -> date:
    """Gregorian Easter (the anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_shift = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_shift) // 451
    month, day = divmod(h + weekday_shift - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def public_holidays(year: int) -> frozenset[date]:
    """Norway's public holidays (helligdager) that fall on or could fall on a weekday."""
    easter = _easter_sunday(year)
    moving = (
        -3,
        -2,
        1,
        39,
        50,
    )  # skjærtorsdag, langfredag, 2. påskedag, Kristi himmelfart, 2. pinsedag
    fixed = [(1, 1), (5, 1), (5, 17), (12, 25), (12, 26)]
    days = {easter + timedelta(days=offset) for offset in moving}
    days.update(date(year, month, day) for month, day in fixed)
    return frozenset(days)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in public_holidays(day.year)


def add_working_days(day: date, count: int) -> date:
    """The `count`-th working day after `day`."""
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


def next_vedtak_run(after: float) -> datetime:
    """The first working-day 16:00 (Oslo) strictly after epoch seconds `after`."""
    moment = datetime.fromtimestamp(after, OSLO)
    day = moment.date()
    while True:
        run = datetime.combine(day, VEDTAK_TIME, OSLO)
        if is_working_day(day) and run.timestamp() > after:
            return run
        day += timedelta(days=1)


def utbetaling_time(vedtak_day: date, working_days: int) -> datetime:
    """When a payment decided on `vedtak_day` is made: 08:00 after `working_days` working days."""
    return datetime.combine(add_working_days(vedtak_day, working_days), UTBETALING_TIME, OSLO)
