"""What one bench run recorded: status samples, the limits the CPO received, the events in
the daemon's store, and the timeline as played. Plain data, JSON-able (``as_dict``)."""

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Sample:
    """One look at the site and the daemon (5 Hz). Times are seconds since the start."""

    t: float
    run: int
    """Which start of the daemon answered (1, 2, ...); 0 while no daemon answers."""
    state: str
    """The daemon's state, or ``down``."""
    constraint: float | None
    """The constraint as the daemon measures it (its unit)."""
    limit: float | None
    trim: float | None
    ev_limit_kw: float | None
    sent_kw: float | None
    demand_kw: float | None
    """The EV demand the CPO last reported to the daemon."""
    breaker_status: str | None
    breaker_wanted: str | None
    alarms: list[str]
    true_constraint: float
    """The constraint as the bench's site model makes it (its unit, no meter noise)."""
    background_kw: float
    ev_kw: float
    """What the EVs draw (zero with the breaker open)."""
    ev_wanted_kw: float
    """What the EVs would draw without any limit."""


@dataclass
class LimitReceived:
    t: float
    limit_kw: float
    sequence: int
    reason: str


@dataclass
class StoredEvent:
    t: float
    code: str
    severity: str
    message: str


@dataclass
class Recording:
    name: str
    source: str
    description: str
    period_s: float
    samples: list[Sample] = field(default_factory=list)
    limits: list[LimitReceived] = field(default_factory=list)
    events: list[StoredEvent] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    """(t, what the bench did) in the order played."""
    daemon_starts: list[float] = field(default_factory=list)
    boundary_t: float | None = None
    """TCC: when the schedule changes (seconds since the start)."""
    wall_s: float = 0.0
    """Real time the whole run took, set-up and tear-down included."""
    error: str | None = None
    """The bench itself failed (the run cannot be judged)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
