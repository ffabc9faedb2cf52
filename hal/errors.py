"""Errors of the hardware abstraction layer.

Few, named, chained: a caller catches the class it acts on. Every driver translates its
library's exceptions into these (``raise ... from exc``); nothing in ``hal`` lets a
third-party exception escape, and nothing here is ever swallowed silently.
"""

from __future__ import annotations

__all__ = [
    "BreakerError",
    "BreakerFailedToClose",
    "BreakerFailedToOpen",
    "HalError",
    "MeterError",
    "MeterFramingError",
    "MeterImplausible",
    "MeterModbusException",
    "MeterPortError",
    "MeterTimeout",
    "ProfileError",
]


class HalError(Exception):
    """Base of every error raised by ``hal``."""


class ProfileError(HalError, ValueError):
    """A register-map profile file is missing, malformed or inconsistent."""


class MeterError(HalError):
    """No valid measurement could be obtained from the meter."""


class MeterTimeout(MeterError, TimeoutError):  # noqa: N818 (domain names)
    """The meter did not answer within the timeout (nothing came back on the wire)."""


class MeterFramingError(MeterError):
    """Bytes came back but did not form a valid frame (bad CRC, garbage, wrong length)."""


class MeterModbusException(MeterError):  # noqa: N818 (domain names)
    """The meter answered with a Modbus exception response."""

    def __init__(self, message: str, *, exception_code: int) -> None:
        super().__init__(message)
        #: the Modbus exception code (1 illegal function, 2 illegal address, 4 device failure...)
        self.exception_code = exception_code


class MeterImplausible(MeterError):  # noqa: N818 (domain names)
    """The meter answered, but a value is impossible (NaN, inf, beyond the CT rating...)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        #: the Reading field that failed the check, e.g. ``"currents_a"``
        self.field = field


class MeterPortError(MeterError, OSError):
    """The serial port or TCP connection cannot be opened or was lost (adapter unplugged)."""


class BreakerError(HalError):
    """The breaker relay could not be driven or did not do what it was told."""


class BreakerFailedToOpen(BreakerError):  # noqa: N818 (domain names)
    """A trip was commanded but the auxiliary contact did not confirm the breaker opened.

    The controller must raise the ``breaker failed to open`` alarm on this.
    """


class BreakerFailedToClose(BreakerError):  # noqa: N818 (domain names)
    """A close was permitted but the auxiliary contact still reports the breaker open."""
