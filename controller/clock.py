"""Wall-clock facts the core needs as plain numbers: the local time of week for schedules,
and whether the system clock is known to be synchronised (a Pi has no RTC: until NTP has
set it, the clock may be anywhere)."""

import ctypes
import ctypes.util
import datetime as dt
from zoneinfo import ZoneInfo

_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex begins with: unsigned int modes; then longs...; we only need the
    # return value of adjtimex, but the kernel writes the whole struct: give it room.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


def _adjtimex_state() -> int | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        return int(libc.adjtimex(ctypes.byref(tx)))
    except (OSError, AttributeError):
        return None


def clock_synced() -> bool:
    """True when the kernel says the clock is synchronised (NTP/timesyncd has set it)."""
    state = _adjtimex_state()
    return state is not None and state >= 0 and state != _TIME_ERROR


def time_of_week_s(wall: float, tz: ZoneInfo) -> float:
    """Seconds since Monday 00:00 local time at ``wall`` (Unix seconds)."""
    local = dt.datetime.fromtimestamp(wall, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.weekday() * 86400.0 + (local - midnight).total_seconds()
