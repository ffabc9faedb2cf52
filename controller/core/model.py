"""Plain value types crossing the core's boundary: inputs, actions, events, status.

Portable to MicroPython: plain classes with ``__slots__``, string constants instead of
``enum``, no ``dataclasses``/``typing``/``__future__``. Times are seconds on the caller's
monotonic clock (the same clock as the ``now`` passed to ``step``); wall time appears only
as the local time of week used by schedules.
"""

# --- schemes -----------------------------------------------------------------------------
CLM = "CLM"  # customer load management: fixed import capacity at the connection point
TCC = "TCC"  # timed capacity: weekly schedule of import capacity at the connection point
LMC = "LMC"  # locally managed: DNO threshold at one LV constraint point, sensitivity sf
CMC = "CMC"  # centrally managed: EV site limit leased from the central platform
SCHEMES = (CLM, TCC, LMC, CMC)

# --- units of the constraint limit ---------------------------------------------------------
KW = "kW"
KVA = "kVA"
AMPS = "A"  # amps per phase, the worst phase is compared
UNITS = (KW, KVA, AMPS)

# --- controller states -----------------------------------------------------------------------
STARTING = "starting"
NORMAL = "normal"
CURTAILING = "curtailing"
EMERGENCY = "emergency"
TRIPPED = "tripped"
FALLBACK = "fallback"
MAINTENANCE = "maintenance"
STATES = (STARTING, NORMAL, CURTAILING, EMERGENCY, TRIPPED, FALLBACK, MAINTENANCE)

# --- reasons carried by a limit sent to the CPO (the CPO REST API's enum) --------------------
REASON_NORMAL = "normal"
REASON_CURTAIL = "curtail"
REASON_EMERGENCY = "emergency"
REASON_FALLBACK = "fallback"

# --- breaker orders ------------------------------------------------------------------------
TRIP = "trip"
PERMIT_CLOSE = "permit_close"

# --- event severities ----------------------------------------------------------------------
INFO = "info"
WARNING = "warning"
ALARM = "alarm"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, ALARM, CRITICAL)

# --- operator and central-platform commands --------------------------------------------------
CMD_RESET = "reset"  # clear a latched trip and/or a G100 lockout (authorised, local)
CMD_MAINTENANCE_ON = "maintenance_on"
CMD_MAINTENANCE_OFF = "maintenance_off"
CMD_TRIP = "trip"  # trip the breaker now (operator or central platform)
CMD_PERMIT_CLOSE = "permit_close"  # central platform asks to allow re-closing
COMMANDS = (CMD_RESET, CMD_MAINTENANCE_ON, CMD_MAINTENANCE_OFF, CMD_TRIP, CMD_PERMIT_CLOSE)
# commands only someone at the site may give (the HMI, the console), never a remote platform
LOCAL_ONLY_COMMANDS = (CMD_RESET, CMD_MAINTENANCE_ON, CMD_MAINTENANCE_OFF)
# sources that are not people at the site; HMI account names may not use them
REMOTE_SOURCES = ("central",)
RESERVED_SOURCES = ("central", "controller", "store")


class Measurement:
    """One reading of the constraint meter.

    ``power_kw`` is total active power, import positive. ``currents_a``/``voltages_v`` are
    per-phase tuples (None where the meter does not provide them). ``apparent_kva`` may be
    None: it is then derived from volts x amps. ``valid`` is False when the reading failed
    plausibility (the core then treats the meter as silent). ``taken_at`` is on the
    monotonic clock of ``now``.
    """

    __slots__ = ("apparent_kva", "currents_a", "power_kw", "taken_at", "valid", "voltages_v")

    def __init__(
        self,
        power_kw: float,
        taken_at: float,
        currents_a: "tuple[float, ...] | None" = None,
        voltages_v: "tuple[float, ...] | None" = None,
        apparent_kva: "float | None" = None,
        valid: bool = True,
    ) -> None:
        self.power_kw = power_kw
        self.taken_at = taken_at
        self.currents_a = currents_a
        self.voltages_v = voltages_v
        self.apparent_kva = apparent_kva
        self.valid = valid


class Demand:
    """The EV site's demand as reported by the CPO back office (kW), and when it was measured
    (monotonic time of ``now``'s clock: the shell converts the report's own age)."""

    __slots__ = ("demand_kw", "measured_at")

    def __init__(self, demand_kw: float, measured_at: float) -> None:
        self.demand_kw = demand_kw
        self.measured_at = measured_at


class Lease:
    """A limit for the EV site from the central platform (CMC), valid until ``expires_at``
    on the controller's monotonic clock (measured from receipt, so wall-clock skew can
    neither extend nor cut it). ``sequence`` increases with every command."""

    __slots__ = ("expires_at", "limit_kw", "sequence")

    def __init__(self, limit_kw: float, expires_at: float, sequence: int) -> None:
        self.limit_kw = limit_kw
        self.expires_at = expires_at
        self.sequence = sequence


class Command:
    """An operator or central-platform command. ``source`` names who sent it (an HMI
    account, "central", "cli"); ``command_id`` is echoed in the result so the sender can
    correlate it (e.g. the MQTT ack)."""

    __slots__ = ("command_id", "kind", "source")

    def __init__(self, kind: str, source: str = "local", command_id: str = "") -> None:
        self.kind = kind
        self.source = source
        self.command_id = command_id


class Inputs:
    """Everything the shell gathered for one control period.

    - ``measurement``: latest constraint meter reading, or None if none yet.
    - ``demand``: latest CPO-reported EV demand, or None.
    - ``cpo_reachable``: the last exchange with the CPO back office succeeded.
    - ``lease``: the central platform's current limit lease (CMC), or None.
    - ``central_connected``: the link to the central platform is up (CMC).
    - ``time_of_week_s``: local time since Monday 00:00 in seconds, for schedules.
    - ``clock_synced``: the wall clock is known good (NTP); if not, schedules apply their
      most restrictive value.
    - ``commands``: operator/central commands received since the last period.
    """

    __slots__ = (
        "central_connected",
        "clock_synced",
        "commands",
        "cpo_reachable",
        "demand",
        "lease",
        "measurement",
        "time_of_week_s",
    )

    def __init__(
        self,
        measurement: "Measurement | None" = None,
        demand: "Demand | None" = None,
        cpo_reachable: bool = True,
        lease: "Lease | None" = None,
        central_connected: bool = True,
        time_of_week_s: float = 0.0,
        clock_synced: bool = True,
        commands: "list[Command] | None" = None,
    ) -> None:
        self.measurement = measurement
        self.demand = demand
        self.cpo_reachable = cpo_reachable
        self.lease = lease
        self.central_connected = central_connected
        self.time_of_week_s = time_of_week_s
        self.clock_synced = clock_synced
        self.commands = commands if commands is not None else []


class Event:
    """Something worth telling a person: a transition, an alarm raised or cleared, an
    operator action. ``code`` is stable (documented in docs/architecture.md); ``values``
    holds the numbers behind the message."""

    __slots__ = ("code", "message", "severity", "values")

    def __init__(self, code: str, severity: str, message: str, values: "dict | None" = None):  # type: ignore[type-arg]
        self.code = code
        self.severity = severity
        self.message = message
        self.values = values if values is not None else {}

    def __repr__(self) -> str:
        return "Event(%s, %s, %r)" % (self.code, self.severity, self.message)


class LimitOrder:
    """An EV site limit to send to the CPO now. The CPO must fall back to its own safe
    limit if ``valid_for_s`` passes without a refresh (the shell turns it into the wall
    clock ``valid_until`` of the REST API)."""

    __slots__ = ("limit_kw", "reason", "sequence", "valid_for_s")

    def __init__(self, limit_kw: float, sequence: int, valid_for_s: float, reason: str) -> None:
        self.limit_kw = limit_kw
        self.sequence = sequence
        self.valid_for_s = valid_for_s
        self.reason = reason

    def __repr__(self) -> str:
        return "LimitOrder(%.3f kW, seq %d, %s)" % (self.limit_kw, self.sequence, self.reason)


class CommandResult:
    """The outcome of one command: accepted, or refused with a reason."""

    __slots__ = ("accepted", "command_id", "kind", "reason")

    def __init__(self, command_id: str, kind: str, accepted: bool, reason: str) -> None:
        self.command_id = command_id
        self.kind = kind
        self.accepted = accepted
        self.reason = reason


class Status:
    """A snapshot of what the controller is doing and why, for the HMI and telemetry.

    Constraint figures are in the scheme's limit unit (``unit``); ``phase`` is the worst
    phase (1..3) when the unit is amps. ``ev_limit_kw`` is the limit currently in force.
    """

    __slots__ = (
        "alarms",
        "constraint",
        "ev_limit_kw",
        "limit",
        "phase",
        "reason",
        "state",
        "trim",
        "unit",
    )

    def __init__(self) -> None:
        self.state = STARTING
        self.reason = ""
        self.unit = KW
        self.constraint: float | None = None
        self.limit: float | None = None
        self.trim: float | None = None
        self.phase = 0
        self.ev_limit_kw = 0.0
        self.alarms: list[str] = []


class Actions:
    """What the shell must do after a period: send ``limit`` (if not None) to the CPO,
    drive the breaker (``breaker`` is TRIP, PERMIT_CLOSE or None for no change), record
    ``events``, answer ``command_results``, and write ``persist`` (a JSON-able dict) to
    durable storage when it is not None — before acting on a trip is best."""

    __slots__ = ("breaker", "command_results", "events", "limit", "persist", "status")

    def __init__(self, status: Status) -> None:
        self.limit: LimitOrder | None = None
        self.breaker: str | None = None
        self.events: list[Event] = []
        self.command_results: list[CommandResult] = []
        self.persist: dict | None = None  # type: ignore[type-arg]
        self.status = status
