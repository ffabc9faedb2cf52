"""The controller's configuration: pydantic models of one TOML file, parsed once, strictly.

Every section forbids unknown keys (a typo is an error, not a silently ignored setting) and
the models are frozen. ``load_config`` turns any problem into ``ConfigError`` whose lines
name the file and the key path, e.g.
``config/lmc.toml: scheme.sensitivty: unknown key 'sensitivty' (did you mean 'sensitivity'?)``.
``Config.core_settings()`` builds the plain settings object that ``controller.core`` runs on.
"""

import difflib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from controller import core
from controller.errors import ConfigError
from hal.breaker import BreakerSettings
from hal.meter import MeterSettings

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_GROUPS = {"all": DAYS, "weekdays": DAYS[:5], "weekend": DAYS[5:]}

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class SiteConfig(_Section):
    """The site and where it is."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    """Site identifier used in the CPO API path and the MQTT topics."""
    name: str = ""
    """Human name shown on the HMI and in reports."""
    timezone: str = "Europe/London"
    """IANA time zone of the site: schedules are in local time."""
    clock_trusted: bool = False
    """The device keeps good time without NTP (an RTC or GPS): schedules follow the clock
    even when the kernel does not report it synchronised."""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r} (an IANA name like Europe/London)") from exc
        return v


class ScheduleEntry(_Section):
    """One step of a weekly limit schedule."""

    days: list[str] = Field(default_factory=lambda: ["all"], validate_default=True)
    """Days this entry starts on: mon..sun, or all / weekdays / weekend."""
    start: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    """Local start time HH:MM; the value holds until the next entry starts."""
    limit: NonNegFloat

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for d in v:
            key = d.strip().lower()
            if key in DAY_GROUPS:
                out.extend(DAY_GROUPS[key])
            elif key[:3] in DAYS:
                out.append(key[:3])
            else:
                raise ValueError(f"unknown day {d!r} (use mon..sun, all, weekdays, weekend)")
        if not out:
            raise ValueError("at least one day")
        return out

    def starts_s(self) -> list[float]:
        hh, mm = self.start.split(":")
        return [DAYS.index(d) * 86400.0 + int(hh) * 3600.0 + int(mm) * 60.0 for d in self.days]


class SchemeConfig(_Section):
    """The SCC scheme and the constraint it protects (limit, margin, trip level in `unit`)."""

    type: Literal["CLM", "TCC", "LMC", "CMC"]
    """CLM: agreed import capacity at the site's connection point; TCC: the same with a
    weekly schedule; LMC: DNO threshold at one LV constraint; CMC: central platform."""
    unit: Literal["kW", "kVA", "A"] = "kW"
    """Unit of the limit: kW, kVA, or A per phase (the worst phase is compared)."""
    limit: NonNegFloat | None = None
    """Fixed limit at the constraint (CLM: agreed import capacity; LMC: DNO threshold).
    In CMC, an optional local backstop."""
    schedule: list[ScheduleEntry] = Field(default_factory=list)
    """Weekly limit schedule (TCC, or the limit source of any scheme)."""
    margin: NonNegFloat = 0.0
    """Kept free below the limit: the law aims for limit - margin (the trim)."""
    trip_ratio: Annotated[float, Field(ge=1.0, le=2.0)] = 1.0
    """Trip level = limit x trip_ratio (in emergency, after the trip delay)."""
    sensitivity: Annotated[float, Field(gt=0, le=1.0)] = 1.0
    """LMC: share of the EV site's power that flows through the constraint (sf)."""
    ev_phases: Literal[1, 3] = 3
    """How the EV site's current spreads over phases, for limits in amps."""
    nominal_voltage_v: Annotated[float, Field(gt=50, lt=500)] = 230.0
    """Phase voltage used to turn EV kW into amps when the meter gives no voltage."""
    ev_power_factor: Annotated[float, Field(gt=0.5, le=1.0)] = 1.0
    """Power factor of the EV site, to turn its kW into kVA (limits in kVA)."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.limit is not None and self.schedule:
            raise ValueError("give either limit or schedule, not both")
        if self.type == "TCC" and not self.schedule:
            raise ValueError("TCC needs a schedule ([[scheme.schedule]] entries)")
        if self.type in ("CLM", "LMC") and self.limit is None and not self.schedule:
            raise ValueError(f"{self.type} needs a limit (or a schedule)")
        if self.type in ("CLM", "TCC") and self.sensitivity != 1.0:
            raise ValueError(
                f"{self.type} measures the site's own connection point: sensitivity must be 1"
            )
        seen: set[float] = set()
        for entry in self.schedule:
            for start in entry.starts_s():
                if start in seen:
                    raise ValueError(f"two schedule entries start at {entry.start} on one day")
                seen.add(start)
        return self

    def limit_schedule(self) -> core.Schedule | None:
        if self.schedule:
            return core.Schedule(
                [(start, e.limit) for e in self.schedule for start in e.starts_s()]
            )
        if self.limit is not None:
            return core.Schedule.constant(self.limit)
        return None


class EvSiteConfig(_Section):
    """The EV site as the CPO runs it (all in kW)."""

    max_kw: PositiveFloat
    """The EV site's maximum import (sum of chargepoint ratings or its supply)."""
    min_kw: NonNegFloat = 0.0
    """The lowest limit ever sent (some CPOs cannot go below a minimum charging rate)."""
    fallback_kw: NonNegFloat
    """Safe limit when a sense is lost or a central lease lapses (cf. OSCP fallback)."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if not self.min_kw <= self.fallback_kw <= self.max_kw:
            raise ValueError("need min_kw <= fallback_kw <= max_kw")
        return self


class ControlConfig(_Section):
    """The setpoint law's timing."""

    period_s: Annotated[float, Field(ge=0.1, le=10)] = 1.0
    """Control period: the limit is recomputed this often."""
    ramp_kw_per_s: PositiveFloat = 1.0
    """Fastest rise of the EV limit once a raise is allowed."""
    release_hold_s: NonNegFloat = 60.0
    """How long the headroom must stay available before the limit is raised."""
    deadband_kw: NonNegFloat = 0.5
    """Changes of the EV limit smaller than this are not made (unless over the limit)."""
    cut_confirm_s: NonNegFloat = 5.0
    """A cut while the constraint is still within its limit must persist this long
    (noise must not ratchet the limit down); above the limit a cut is immediate."""
    limit_validity_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    """valid_until sent with each limit: the CPO falls back on its own after this."""
    refresh_s: Annotated[float, Field(ge=1)] = 60.0
    """An unchanged limit is sent again this often (before valid_until runs out)."""
    demand_stale_s: Annotated[float, Field(ge=1)] = 30.0
    """A CPO demand report older than this is stale: the law then assumes the worst."""

    @model_validator(mode="after")
    def _refresh(self) -> Self:
        if self.refresh_s >= self.limit_validity_s:
            raise ValueError("refresh_s must be shorter than limit_validity_s")
        return self


class EscalationConfig(_Section):
    """When not complying, or losing the meter, leads to emergency and to a trip."""

    compliance_deadline_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Over the limit this long without the site complying -> emergency (minimum limit)."""
    compliance_deadline_unreachable_s: PositiveFloat = 20.0
    """The same deadline while the CPO cannot be reached (escalate sooner)."""
    compliance_tolerance_kw: NonNegFloat = 1.0
    """CMC without a local meter: reported demand this far above the limit is over it."""
    trip_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """In emergency, still above the trip level after this long -> breaker trip."""
    emergency_release_s: NonNegFloat = 60.0
    """Within the limit this long -> leave emergency (the limit then climbs again)."""
    meter_timeout_s: PositiveFloat = 10.0
    """No valid measurement this long -> fallback limit."""
    meter_trip_timeout_s: PositiveFloat | None = 300.0
    """No valid measurement this long -> trip (omit to never trip on a silent meter)."""
    maintenance_max_s: Annotated[float, Field(gt=0, le=86400)] = 4 * 3600.0
    """Maintenance mode ends by itself after this long (a forgotten mode is unsafe)."""

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.compliance_deadline_unreachable_s > self.compliance_deadline_s:
            raise ValueError(
                "compliance_deadline_unreachable_s must not exceed compliance_deadline_s"
            )
        if (
            self.meter_trip_timeout_s is not None
            and self.meter_trip_timeout_s <= self.meter_timeout_s
        ):
            raise ValueError("meter_trip_timeout_s must be longer than meter_timeout_s")
        return self


class G100Config(_Section):
    """Excursion supervision in the style of ENA EREC G100 Issue 2 (CLM and TCC only)."""

    enabled: bool = False
    """Count excursions over the agreed capacity and lock out when they repeat."""
    stage2_s: PositiveFloat = 15.0
    """An excursion lasting this long counts as a stage-2 excursion."""
    single_excursion_lockout_s: PositiveFloat = 60.0
    """One excursion lasting this long -> lockout."""
    window_s: PositiveFloat = 600.0
    """Window for repeated stage-2 excursions."""
    window_max_stage2: Annotated[int, Field(ge=1)] = 2
    """This many stage-2 excursions within window_s -> lockout."""
    day_window_s: PositiveFloat = 86400.0
    """The longer window (a day)."""
    day_max_stage2: Annotated[int, Field(ge=0)] = 3
    """More than this many stage-2 excursions within day_window_s -> lockout."""
    lockout_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 4 * 3600.0
    """A lockout ends after this long, or earlier by an installer reset."""
    failsafe_kw: NonNegFloat | None = None
    """EV limit held during a lockout (default: the EV site's fallback_kw)."""


class CpoConfig(_Section):
    """The CPO back office's REST API (the controller is its client)."""

    base_url: Annotated[str, Field(pattern=r"^https?://")]
    """The CPO API's base, including the version, e.g. https://cpo.example.com/v1."""
    token: SecretStr = SecretStr("")
    """API token sent as `Authorization: Token <token>` (never shown by check-config)."""
    token_file: Path | None = None
    """A file holding the token (preferred over inlining it here)."""
    ca_file: Path | None = None
    """CA bundle to verify the CPO's certificate (default: the system store)."""
    connect_timeout_s: PositiveFloat = 3.0
    """Time allowed to open a connection to the CPO API."""
    total_timeout_s: PositiveFloat = 5.0
    """Time allowed for one whole request."""
    demand_poll_s: PositiveFloat = 5.0
    """How often the EV site's demand is read from the CPO."""
    unreachable_after_s: PositiveFloat = 15.0
    """Failed exchanges for this long -> the CPO counts as unreachable."""

    @model_validator(mode="after")
    def _token(self) -> Self:
        if not self.token.get_secret_value() and self.token_file is None:
            raise ValueError("give token or token_file (the CPO API needs a token)")
        return self


class CentralConfig(_Section):
    """The MQTT link to the DNO's central platform (CMC)."""

    host: str
    """MQTT broker host of the central platform."""
    port: Annotated[int, Field(ge=1, le=65535)] = 8883
    """MQTT broker port (8883 for TLS)."""
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+$")] = "gridwarden"
    """Topic prefix: topics are {prefix}/{site_id}/..."""
    tls: bool = True
    """Use TLS (certificate verified against ca_file or the system store)."""
    ca_file: Path | None = None
    """CA bundle for the broker's certificate."""
    cert_file: Path | None = None
    """Client certificate (mutual TLS), optional."""
    key_file: Path | None = None
    """Private key of the client certificate."""
    username: str = ""
    """MQTT username, optional."""
    password: SecretStr = SecretStr("")
    """MQTT password, optional."""
    telemetry_s: PositiveFloat = 10.0
    """Telemetry is published this often."""
    offline_buffer: Annotated[int, Field(ge=0)] = 8640
    """Telemetry messages kept while offline (oldest dropped first)."""


class HmiConfig(_Section):
    """The local HMI page and its status API."""

    bind: str = "127.0.0.1"
    """Local only by default: the HMI is for people at the site."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    """HMI port."""
    service_bind: str | None = None
    """An optional second address (a local service interface) the HMI also listens on."""
    users: dict[str, str] = Field(default_factory=dict)
    """Account name -> salted password hash (make one with `gridwarden hash-password`)."""

    @field_validator("users")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name in core.model.RESERVED_SOURCES:
                raise ValueError(f"account name {name!r} is reserved (it names a command source)")
        return v

    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra host names the HMI answers operator actions on (IP addresses, localhost and
    the device's own name always work; others are refused against DNS rebinding)."""
    session_idle_s: PositiveFloat = 15 * 60.0
    """A login ends after this long without activity."""
    session_max_s: PositiveFloat = 8 * 3600.0
    """A login ends after this long in any case."""
    login_max_failures: Annotated[int, Field(ge=1)] = 5
    """Failed logins (per account and per address) before a lock-out."""
    login_failure_window_s: PositiveFloat = 15 * 60.0
    """Window in which failed logins are counted."""
    login_lockout_s: PositiveFloat = 5 * 60.0
    """How long a lock-out lasts."""


class StoreConfig(_Section):
    """The on-device SQLite store: events, trends, the latched trip."""

    path: Path = Path("/var/lib/gridwarden/gridwarden.sqlite")
    """SQLite file (WAL mode); its directory must be writable."""
    event_retention_days: Annotated[int, Field(ge=1)] = 365
    """Events older than this are deleted."""
    trend_retention_h: Annotated[int, Field(ge=24)] = 48
    """One-minute trend aggregates kept this long."""


class Config(_Section):
    site: SiteConfig
    scheme: SchemeConfig
    ev_site: EvSiteConfig
    control: ControlConfig = ControlConfig()
    escalation: EscalationConfig = EscalationConfig()
    g100: G100Config = G100Config()
    meter: MeterSettings | None = None
    breaker: BreakerSettings = BreakerSettings()
    cpo: CpoConfig | None = None
    central: CentralConfig | None = None
    hmi: HmiConfig = HmiConfig()
    store: StoreConfig = StoreConfig()

    @model_validator(mode="after")
    def _scheme_needs(self) -> Self:
        scheme = self.scheme
        if scheme.type == "CMC" and self.central is None:
            raise ValueError("scheme CMC needs a [central] section (the central platform link)")
        if scheme.type != "CMC" and self.central is not None:
            raise ValueError(f"[central] is only used by scheme CMC, not {scheme.type}")
        needs_meter = scheme.type != "CMC" or scheme.limit is not None or bool(scheme.schedule)
        if needs_meter and self.meter is None:
            raise ValueError(f"scheme {scheme.type} with a local limit needs a [meter] section")
        if self.g100.enabled and scheme.type not in ("CLM", "TCC"):
            raise ValueError("g100 excursion logic applies to CLM and TCC schemes only")
        failsafe = self.g100.failsafe_kw
        if failsafe is not None and not self.ev_site.min_kw <= failsafe <= self.ev_site.max_kw:
            raise ValueError("g100.failsafe_kw must lie within ev_site.min_kw..max_kw")
        meter_poll_s = self.meter.poll_interval_s if self.meter is not None else 0.0
        if meter_poll_s >= self.escalation.meter_timeout_s:
            raise ValueError(
                "meter.poll_interval_s must be shorter than escalation.meter_timeout_s"
            )
        if self.cpo is not None and self.cpo.demand_poll_s >= self.control.demand_stale_s:
            raise ValueError("cpo.demand_poll_s must be shorter than control.demand_stale_s")
        limits = [e.limit for e in scheme.schedule] or (
            [scheme.limit] if scheme.limit is not None else []
        )
        if limits and scheme.margin >= min(limits):
            raise ValueError("scheme.margin must be smaller than the limit")
        if limits and self.meter is not None:
            self._check_meter_range(max(limits) * scheme.trip_ratio)
        return self

    def _check_meter_range(self, trip_level: float) -> None:
        """The meter must be able to see the trip level: readings beyond the CT range are
        refused as implausible, and a controller blind at the moment it matters is wrong."""
        assert self.meter is not None
        top_a = self.meter.ct_rating_a * self.meter.overrange_factor
        unit = self.scheme.unit
        top = top_a if unit == "A" else 3 * self.meter.nominal_voltage_v * top_a / 1000.0
        if top < trip_level:
            raise ValueError(
                f"meter.ct_rating_a x overrange_factor reads up to {top:g} {unit}, below the"
                f" trip level {trip_level:g} {unit}: fit larger CTs or correct ct_rating_a"
            )

    def core_settings(self) -> core.CoreSettings:
        sch, ev, ctl, esc, g = self.scheme, self.ev_site, self.control, self.escalation, self.g100
        return core.CoreSettings(
            scheme=sch.type,
            unit=sch.unit,
            limit=sch.limit_schedule(),
            margin=sch.margin,
            trip_ratio=sch.trip_ratio,
            sensitivity=sch.sensitivity,
            site_max_kw=ev.max_kw,
            min_limit_kw=ev.min_kw,
            fallback_limit_kw=ev.fallback_kw,
            ramp_kw_per_s=ctl.ramp_kw_per_s,
            release_hold_s=ctl.release_hold_s,
            deadband_kw=ctl.deadband_kw,
            cut_confirm_s=ctl.cut_confirm_s,
            limit_validity_s=ctl.limit_validity_s,
            refresh_s=ctl.refresh_s,
            demand_stale_s=ctl.demand_stale_s,
            compliance_deadline_s=esc.compliance_deadline_s,
            compliance_deadline_unreachable_s=esc.compliance_deadline_unreachable_s,
            compliance_tolerance_kw=esc.compliance_tolerance_kw,
            trip_delay_s=esc.trip_delay_s,
            emergency_release_s=esc.emergency_release_s,
            meter_timeout_s=esc.meter_timeout_s,
            meter_trip_timeout_s=esc.meter_trip_timeout_s,
            maintenance_max_s=esc.maintenance_max_s,
            ev_phases=sch.ev_phases,
            nominal_voltage_v=sch.nominal_voltage_v,
            ev_power_factor=sch.ev_power_factor,
            g100=core.G100Settings(
                enabled=g.enabled,
                stage2_s=g.stage2_s,
                single_excursion_lockout_s=g.single_excursion_lockout_s,
                window_s=g.window_s,
                window_max_stage2=g.window_max_stage2,
                day_window_s=g.day_window_s,
                day_max_stage2=g.day_max_stage2,
                lockout_s=g.lockout_s,
                failsafe_limit_kw=g.failsafe_kw if g.failsafe_kw is not None else ev.fallback_kw,
            ),
        )


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names valid at ``loc`` (the parent of an unknown key), for suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
        for arg in getattr(current, "__args__", ()):  # unwrap X | None, list[X]
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_validation_error(
    source: str,
    exc: ValidationError,
    known_keys: Callable[[tuple[int | str, ...]], list[str]] | None = None,
    messages: dict[str, str] | None = None,
) -> list[str]:
    """One line per problem: ``source: key.path: message``. ``known_keys(parent_loc)`` gives
    the valid names for "did you mean" (default: the fields of ``Config``); ``messages``
    replaces pydantic's text for some error types."""
    keys_at = known_keys or (lambda loc: _known_keys(Config, loc))
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, keys_at(loc[:-1]), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        elif err["type"] == "missing":
            msg = "missing required key"
        elif messages and err["type"] in messages:
            msg = messages[err["type"]]
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return lines


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; ``ConfigError`` with one line naming the file otherwise."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError([f"{source}: no such file"]) from exc
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from exc


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; ``ConfigError`` lists every problem."""
    return parse_config(read_toml(path), str(path))
