"""Human durations such as ``30m``, ``8h``, ``7d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

# ASCII only: under Unicode case folding the long s (U+017F) matches "s" (then has no unit: a KeyError, a 500),
# and Unicode digits such as U+0661 would be read as numbers.
_DURATION = re.compile(r"^\s*(?:(\d{1,6})\s*([smhdw])|(0))\s*$", re.IGNORECASE | re.ASCII)
#: The same grammar as a JSON Schema pattern, for the OpenAPI document.
DURATION_PATTERN = r"^[ \t\n\r\f\v]*(?:[0-9]{1,6}[ \t\n\r\f\v]*[smhdwSMHDW]|0)[ \t\n\r\f\v]*$"
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str) -> timedelta:
    """Parse ``<n><unit>`` (s, m, h, d, w), or a bare ``0``. Raise ValueError with a usable message."""
    match = _DURATION.match(value or "")
    if not match:
        raise ValueError(f"{value!r} is not a duration; use forms like 30m, 8h, 7d")
    if match.group(3):
        return timedelta(0)
    amount, unit = int(match.group(1)), match.group(2).lower()
    return timedelta(seconds=amount * _UNIT[unit])


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_duration(value: timedelta) -> str:
    """A duration for people: ``8 h``, ``7 d``, ``90 min`` (the console's and messages' form)."""
    seconds = int(value.total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
