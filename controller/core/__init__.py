"""controller.core — the control law and escalation, pure and portable.

No I/O, no clocks, no asyncio, no pydantic, no run-time ``typing``: everything the law
needs is an argument, ``now`` included. The same files run under CPython and MicroPython
(tests/controller/core runs under both). Entry points::

    settings = CoreSettings(scheme=LMC, unit=AMPS, limit=Schedule.constant(400), ...)
    state = State(settings, now)          # or State.load(settings, persisted, now)
    state, actions = step(settings, state, Inputs(measurement=..., demand=...), now)
"""

from controller.core.engine import LOCKOUT, State, step
from controller.core.g100 import G100Tracker
from controller.core.model import (
    Actions,
    Command,
    CommandResult,
    Demand,
    Event,
    Inputs,
    Lease,
    LimitOrder,
    Measurement,
    Status,
)
from controller.core.settings import WEEK_S, CoreSettings, G100Settings, Schedule

__all__ = [
    "LOCKOUT",
    "WEEK_S",
    "Actions",
    "Command",
    "CommandResult",
    "CoreSettings",
    "Demand",
    "Event",
    "G100Settings",
    "G100Tracker",
    "Inputs",
    "Lease",
    "LimitOrder",
    "Measurement",
    "Schedule",
    "State",
    "Status",
    "step",
]
