"""A bench scenario as data: one TOML file, parsed once, strictly (docs/hil.md).

Sections: ``[site]`` (the network the meter sees), ``[evs]`` (chargepoints and sessions),
``[cpo]`` (the CPO simulator's behaviour), ``[meter]`` (the simulated meter's faults at
start), ``[central]`` (CMC: the lease publisher), ``[tcc_boundary]`` (a schedule change
placed in the run), ``[controller]`` (the daemon's own config tables; the bench adds the
wiring), ``[[events]]`` (the timeline) and ``[criteria]`` (how the run is judged).

Every table forbids unknown keys; ``load_scenario`` raises ``ScenarioError`` whose lines
name the file and the key, e.g. ``hil/scenarios/x.toml: criteria.trp: unknown key 'trp'
(did you mean 'trip'?)``. The ``[controller]`` tables are validated by the controller's own
config models at load time, so a scenario never reaches the bench with a config the daemon
would refuse.
"""

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.config import Config, format_validation_error, read_toml
from controller.errors import ConfigError, GridwardenError

NonNeg = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]

#: the daemon's states (controller/core/model.py) plus "down" (no daemon process answering)
State = Literal[
    "starting",
    "normal",
    "curtailing",
    "emergency",
    "tripped",
    "fallback",
    "lockout",
    "maintenance",
    "down",
]
STATES: tuple[str, ...] = get_args(State)


class ScenarioError(GridwardenError):
    """A scenario file that cannot be run; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SiteModel(_Table):
    """The network at the constraint: what the bench's meter serves (kW, import +)."""

    background_kw: float
    """Background load at the constraint (without the EV site), or the night-time base of
    the daily profile when ``daily_peak_kw`` is given."""
    daily_peak_kw: float | None = None
    """A daily profile from ``background_kw`` up to this peak at ``peak_hour``."""
    day_s: Positive = 86400.0
    """Real seconds one day of the profile is played in (time compression of the site)."""
    start_hour: Annotated[float, Field(ge=0, lt=24)] = 0.0
    """Hour of the profile's day at the start of the run."""
    peak_hour: Annotated[float, Field(ge=0, lt=24)] = 18.0
    sensitivity: Annotated[float, Field(gt=0, le=1)] | None = None
    """Share of the EV site's power seen at the constraint (default: the scheme's)."""
    noise: Annotated[float, Field(ge=0, le=0.2)] = 0.0
    """Relative uniform noise on the metered power (0.02 = +/-2 %)."""
    seed: int = 1
    voltage_v: Annotated[float, Field(gt=50, lt=500)] = 230.0


class Session(_Table):
    """One EV session; times in seconds since the start of the run."""

    chargepoint: Annotated[int, Field(ge=0)]
    arrive_s: NonNeg = 0.0
    depart_s: Positive = 1e6
    energy_kwh: Positive = 500.0
    ev_max_kw: Positive = 22.0


class Evs(_Table):
    """The EV site as the CPO simulator runs it."""

    chargepoints: Annotated[int, Field(ge=1, le=100)] = 6
    rated_kw: Positive = 22.0
    phases: Literal[1, 3] = 3
    min_current_a: NonNeg = 6.0
    busy: bool = True
    """Every chargepoint has an EV from the start (arrivals ``stagger_s`` apart) wanting
    ``energy_kwh`` at up to ``ev_max_kw``; ignored when ``sessions`` is given."""
    stagger_s: NonNeg = 0.5
    energy_kwh: Positive = 500.0
    ev_max_kw: Positive = 22.0
    sessions: list[Session] = Field(default_factory=list)

    @model_validator(mode="after")
    def _points(self) -> Self:
        for s in self.sessions:
            if s.chargepoint >= self.chargepoints:
                raise ValueError(
                    f"session on chargepoint {s.chargepoint}: the site has {self.chargepoints}"
                    " (numbered from 0)"
                )
        return self


class CpoFaults(_Table):
    """CPO simulator fault switches (hil.cpo_sim.Faults) and site behaviour."""

    answer_delay_s: NonNeg | None = None
    hang: bool | None = None
    fail_status: Annotated[int, Field(ge=400, le=599)] | None = None
    fail_next: Annotated[int, Field(ge=0)] | None = None
    drop_auth: bool | None = None
    stale_measured_at_s: NonNeg | None = None
    malformed_demand: bool | None = None
    ignore_limits: bool | None = None
    """The CPO accepts limits but its chargepoints draw as if there were none."""
    response_delay_s: NonNeg | None = None
    """How long after a limit is received the chargepoints follow it (default 0)."""


class Cpo(CpoFaults):
    """The CPO simulator at the start of the run."""

    strategy: Literal["dlb", "rr"] = "dlb"
    """dlb: dynamic load balancing; rr: round robin in time slots."""
    slot_s: Positive = 5.0
    fallback_kw: NonNeg = 11.0
    tick_s: Annotated[float, Field(gt=0, le=1)] = 0.1


class MeterFaults(_Table):
    """Simulated meter faults (hal.sim.meter.SimFaults); ``noise`` changes the site's."""

    silent: bool | None = None
    corrupt_crc: bool | None = None
    exception_code: Annotated[int, Field(ge=0, le=255)] | None = None
    """Answer with this Modbus exception (0: stop doing so)."""
    reply_delay_s: NonNeg | None = None
    """Hold every reply this long."""
    frozen: bool | None = None
    noise: Annotated[float, Field(ge=0, le=0.2)] | None = None


class Meter(MeterFaults):
    """The simulated meter at the start of the run."""

    profile: str = "sdm630"


class Central(_Table):
    """CMC: a mosquitto broker on loopback and a central platform publishing leases."""

    limit_kw: NonNeg
    """The EV limit the central platform grants."""
    lease_s: Positive = 5.0
    """Validity of each limit command."""
    period_s: Positive = 1.0
    """A fresh limit command is published this often while publishing."""


class TccBoundary(_Table):
    """Place a schedule change inside the run (schedules are in wall-clock minutes).

    The bench writes ``[[scheme.schedule]]`` with ``before`` until the boundary and
    ``after`` from it, the boundary being the first whole minute at least ``lead_s`` after
    the daemon starts. Windows with ``relative_to = "boundary"`` are judged around it."""

    before: NonNeg
    after: NonNeg
    lead_s: Annotated[float, Field(ge=5)] = 15.0
    after_s: Annotated[float, Field(ge=5)] = 15.0
    """How long the run continues after the boundary."""


class _Event(_Table):
    at_s: NonNeg | None = None
    """Seconds since the daemon came up."""
    after_state: State | None = None
    """Or: when the daemon first reports this state ..."""
    delay_s: NonNeg = 0.0
    """... plus this delay."""

    @model_validator(mode="after")
    def _trigger(self) -> Self:
        if (self.at_s is None) == (self.after_state is None):
            raise ValueError("give exactly one of at_s and after_state")
        return self


class BackgroundEvent(_Event):
    """A load step: from now on the background is the base plus ``step_kw``."""

    do: Literal["background"]
    step_kw: float


class CpoEvent(_Event, CpoFaults):
    """Change the CPO simulator's behaviour (only the fields given)."""

    do: Literal["cpo"]


class MeterEvent(_Event, MeterFaults):
    """Change the simulated meter's faults (only the fields given)."""

    do: Literal["meter"]


class CableEvent(_Event):
    """Unplug (``plugged = false``) or plug back the meter's serial cable."""

    do: Literal["meter_cable"]
    plugged: bool


class DaemonEvent(_Event):
    """``kill``: SIGKILL (no shutdown code runs); ``stop``: SIGTERM; ``start``: again, with
    the same config and store."""

    do: Literal["daemon"]
    action: Literal["kill", "stop", "start"]


class CentralEvent(_Event):
    """CMC: stop/resume publishing leases, or stop/start the broker itself."""

    do: Literal["central"]
    publishing: bool | None = None
    broker: bool | None = None


Event = Annotated[
    BackgroundEvent | CpoEvent | MeterEvent | CableEvent | DaemonEvent | CentralEvent,
    Field(discriminator="do"),
]


class Window(_Table):
    """What must hold in every status sample within a time window."""

    from_s: float
    to_s: float
    relative_to: Literal["start", "boundary"] = "start"
    states: list[State] = Field(default_factory=list)
    """Every sample's state is one of these."""
    ev_limit_max_kw: NonNeg | None = None
    ev_limit_min_kw: NonNeg | None = None
    limit: float | None = None
    """The constraint's limit the daemon reports (e.g. a schedule's value)."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.to_s <= self.from_s:
            raise ValueError("to_s must be after from_s")
        return self


class Criteria(_Table):
    """How a run is judged; a criterion left out is not judged."""

    trip: Literal["expected", "forbidden", "any"] = "any"
    """Whether the daemon trips the breaker."""
    trip_after_s: NonNeg | None = None
    """An expected trip happens no earlier than this ..."""
    trip_before_s: NonNeg | None = None
    """... and no later than this (seconds since the start)."""
    max_over_limit_s: NonNeg | None = None
    """Longest continuous time the true constraint is above its limit."""
    max_excess_unit_s: NonNeg | None = None
    """Integral of (constraint - limit) over the time above the limit (kW*s, or A*s...)."""
    max_unmet_ev_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    """EV energy wanted but not delivered, % of wanted."""
    max_extra_unmet_ev_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    """Unmet EV energy beyond what the constraint forces (an ideal controller giving the EVs
    exactly the headroom below the trim at every moment), in points of %; kW limits only."""
    max_limit_changes: Annotated[int, Field(ge=0)] | None = None
    """Changes of the limit value the CPO received."""
    min_limit_changes: Annotated[int, Field(ge=0)] | None = None
    max_reversals: Annotated[int, Field(ge=0)] | None = None
    """Direction changes of the limit the CPO received (oscillation)."""
    events_expected: list[str] = Field(default_factory=list)
    """Event codes that must be in the daemon's store at the end."""
    events_forbidden: list[str] = Field(default_factory=list)
    states_expected: list[State] = Field(default_factory=list)
    """States the daemon must report at some time."""
    states_forbidden: list[State] = Field(default_factory=list)
    alarms_expected: list[str] = Field(default_factory=list)
    """Alarm codes that must show in /api/status at some time."""
    final_state: State | None = None
    tripped_after_restart_within_s: Positive | None = None
    """After each restart of the daemon, it reports ``tripped`` within this long."""
    never_reclosed_after_trip: bool = False
    """After the first trip, the breaker is never closed nor permitted to close."""
    windows: list[Window] = Field(default_factory=list)

    @model_validator(mode="after")
    def _trip(self) -> Self:
        window = self.trip_after_s is not None or self.trip_before_s is not None
        if window and self.trip != "expected":
            raise ValueError("trip_after_s/trip_before_s need trip = 'expected'")
        return self


class Scenario(_Table):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    """Short id, used for file names in the report."""
    description: str = ""
    duration_s: Annotated[float, Field(ge=5, le=600)]
    """Real seconds the run lasts after the daemon came up (a TCC boundary extends it)."""
    pending: str | None = None
    """Why this scenario cannot run yet: the runner shows it as PENDING, never PASS."""
    site: SiteModel
    evs: Evs = Evs()
    cpo: Cpo = Cpo()
    meter: Meter = Meter()
    central: Central | None = None
    tcc_boundary: TccBoundary | None = None
    controller: dict[str, Any]
    """The daemon's config tables (site, scheme, ev_site, control, escalation, g100, and
    optional tuning of meter, cpo, central); the bench adds the wiring."""
    events: list[Event] = Field(default_factory=list)
    criteria: Criteria = Criteria()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        scheme = self.controller.get("scheme", {})
        kind = scheme.get("type") if isinstance(scheme, dict) else None
        if self.tcc_boundary is not None and (
            kind != "TCC" or "schedule" in scheme or "limit" in scheme
        ):
            raise ValueError(
                "tcc_boundary needs controller.scheme.type = 'TCC' without its own"
                " schedule or limit (the bench writes the schedule)"
            )
        if (self.central is not None) != (kind == "CMC"):
            raise ValueError("a [central] table goes with controller.scheme.type = 'CMC'")
        if any(isinstance(e, CentralEvent) for e in self.events) and self.central is None:
            raise ValueError("central events need a [central] table")
        relative = any(w.relative_to == "boundary" for w in self.criteria.windows)
        if relative and self.tcc_boundary is None:
            raise ValueError("windows relative to the boundary need a [tcc_boundary] table")
        return self

    @property
    def sensitivity(self) -> float:
        if self.site.sensitivity is not None:
            return self.site.sensitivity
        scheme = self.controller.get("scheme", {})
        return float(scheme.get("sensitivity", 1.0))

    @property
    def unit(self) -> str:
        return str(self.controller.get("scheme", {}).get("unit", "kW"))


# --- the daemon's config ----------------------------------------------------------------------

#: keys of the daemon's config the bench owns (the scenario may not set them)
BENCH_OWNED = {
    "meter": ("transport", "port", "baud", "parity", "stopbits", "host", "tcp_port", "profile"),
    "breaker": ("transport",),
    "cpo": ("base_url", "token", "token_file", "ca_file"),
    "central": ("host", "port", "tls", "ca_file", "cert_file", "key_file"),
    "hmi": ("bind", "port", "service_bind"),
    "store": ("path",),
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, tables recursively (``over`` wins)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def daemon_config(
    scenario: Scenario,
    *,
    meter_port: str,
    meter_baud: int,
    cpo_url: str | None,
    cpo_token: str,
    store_path: Path,
    central_port: int | None,
    schedule: list[dict[str, Any]] | None = None,
    breaker_transport: Literal["sim", "gpio"] = "sim",
) -> dict[str, Any]:
    """The daemon's config as a TOML-ready dict: the scenario's tables plus the wiring."""
    wiring: dict[str, Any] = {
        "breaker": {"transport": breaker_transport},
        "hmi": {"bind": "127.0.0.1", "port": 0},
        "store": {"path": str(store_path)},
    }
    ctl = scenario.controller
    scheme = ctl.get("scheme", {})
    has_local_limit = scheme.get("type") != "CMC" or "limit" in scheme or "schedule" in scheme
    if has_local_limit or "meter" in ctl:
        wiring["meter"] = {
            "transport": "rtu",
            "port": meter_port,
            "baud": meter_baud,
            "profile": scenario.meter.profile,
        }
    if cpo_url is not None:
        wiring["cpo"] = {"base_url": cpo_url, "token": cpo_token}
    if central_port is not None:
        wiring["central"] = {"host": "127.0.0.1", "port": central_port, "tls": False}
    if schedule is not None:
        wiring["scheme"] = {"schedule": schedule}
    return merge(ctl, wiring)


def check_controller(scenario: Scenario, source: str) -> list[str]:
    """Problems the daemon would find in the scenario's ``[controller]`` tables."""
    problems: list[str] = []
    for section, keys in BENCH_OWNED.items():
        table = scenario.controller.get(section)
        if isinstance(table, dict):
            problems += [
                f"{source}: controller.{section}.{k}: set by the bench, leave it out"
                for k in keys
                if k in table
            ]
    schedule = None
    if scenario.tcc_boundary is not None:
        schedule = [{"days": ["all"], "start": "00:00", "limit": scenario.tcc_boundary.before}]
    cfg = daemon_config(
        scenario,
        meter_port="/dev/null",
        meter_baud=38400,
        cpo_url="http://127.0.0.1:1/v1",
        cpo_token="t",
        store_path=Path("bench.sqlite"),
        central_port=1883 if scenario.central is not None else None,
        schedule=schedule,
    )
    try:
        Config.model_validate(cfg)
    except ValidationError as exc:
        marker = "\x00"
        for line in format_validation_error(marker, exc):
            rest = line.removeprefix(f"{marker}: ")
            problems.append(f"{source}: controller.{rest}")
    return problems


# --- loading ----------------------------------------------------------------------------------


def _known(model: Any, loc: tuple[int | str, ...]) -> list[str]:
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None or str(part) not in fields:
            # a tagged union member: its name is the tag; look it up among the members
            members = [m for m in _EVENT_MODELS if m.__name__ == part or _tag(m) == part]
            if members:
                current = members[0]
                continue
            return []
        current = fields[str(part)].annotation
        for arg in getattr(current, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return list(getattr(current, "model_fields", {}))


_EVENT_MODELS: tuple[type[_Event], ...] = (
    BackgroundEvent,
    CpoEvent,
    MeterEvent,
    CableEvent,
    DaemonEvent,
    CentralEvent,
)


def _tag(model: type[_Event]) -> str:
    return str(model.model_fields["do"].annotation.__args__[0])  # type: ignore[union-attr]


def _format(source: str, exc: ValidationError) -> list[str]:
    tags = ", ".join(repr(_tag(m)) for m in _EVENT_MODELS)
    return format_validation_error(
        source,
        exc,
        known_keys=lambda loc: _known(Scenario, loc),
        messages={"union_tag_invalid": f"unknown event kind (do = one of {tags})"},
    )


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format(source, exc)) from exc
    problems = check_controller(scenario, source)
    if problems:
        raise ScenarioError(problems)
    return scenario


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file; ``overrides`` (a nested dict) are merged in first."""
    source = str(path)
    try:
        data = read_toml(path)
    except ConfigError as exc:
        raise ScenarioError(exc.problems) from exc
    if overrides:
        data = merge(data, overrides)
    return parse_scenario(data, source)


def parse_override(text: str) -> dict[str, Any]:
    """``controller.escalation.compliance_deadline_s=600`` -> a nested dict (TOML value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ScenarioError([f"--set {text}: use KEY=VALUE (a dotted key, a TOML value)"])
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # a bare word: a string
    out: dict[str, Any] = {}
    node = out
    parts = [p.strip() for p in key.split(".")]
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = parsed
    return out
