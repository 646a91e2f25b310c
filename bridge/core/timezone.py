"""Norway's time zone: every local time the bridge reads or writes is Europe/Oslo (DST-aware;
`tzdata` ships the rules for Windows)."""

from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")
