"""The controller's configuration: pydantic models of one TOML file, parsed once, strictly.

Every section forbids unknown keys (a typo is an error, not a silently ignored setting) and
the models are frozen. ``load_config`` turns any problem into ``ConfigError`` whose lines
name the file and the key path, e.g.
``config/lmc.toml: scheme.sensitivty: unknown key 'sensitivty' (did you mean 'sensitivity'?)``.
``Config.core_settings()`` builds the plain settings object that ``controller.core`` runs on.
"""

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    """Site identifier used in the CPO API path and the MQTT topics."""
    name: str = ""
    timezone: str = "Europe/London"
    """IANA time zone of the site: schedules are in local time."""


class ScheduleEntry(_Section):
    days: list[str] = Field(default_factory=lambda: ["all"])
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
    type: Literal["CLM", "TCC", "LMC", "CMC"]
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
    ev_power_factor: Annotated[float, Field(gt=0.5, le=1.0)] = 1.0

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
    period_s: Annotated[float, Field(ge=0.1, le=10)] = 1.0
    ramp_kw_per_s: PositiveFloat = 1.0
    release_hold_s: NonNegFloat = 60.0
    """How long the headroom must stay available before the limit is raised."""
    deadband_kw: NonNegFloat = 0.5
    cut_confirm_s: NonNegFloat = 5.0
    """A cut while the constraint is still within its limit must persist this long
    (noise must not ratchet the limit down); above the limit a cut is immediate."""
    limit_validity_s: Annotated[float, Field(ge=10)] = 300.0
    """valid_until sent with each limit: the CPO falls back on its own after this."""
    refresh_s: Annotated[float, Field(ge=1)] = 60.0
    demand_stale_s: Annotated[float, Field(ge=1)] = 30.0

    @model_validator(mode="after")
    def _refresh(self) -> Self:
        if self.refresh_s >= self.limit_validity_s:
            raise ValueError("refresh_s must be shorter than limit_validity_s")
        return self


class EscalationConfig(_Section):
    compliance_deadline_s: PositiveFloat = 60.0
    """Over the limit this long without the site complying -> emergency (minimum limit)."""
    compliance_deadline_unreachable_s: PositiveFloat = 20.0
    """The same deadline while the CPO cannot be reached (escalate sooner)."""
    compliance_tolerance_kw: NonNegFloat = 1.0
    trip_delay_s: NonNegFloat = 30.0
    """In emergency, still above the trip level after this long -> breaker trip."""
    emergency_release_s: NonNegFloat = 60.0
    meter_timeout_s: PositiveFloat = 10.0
    """No valid measurement this long -> fallback limit."""
    meter_trip_timeout_s: PositiveFloat | None = 300.0
    """No valid measurement this long -> trip (omit to never trip on a silent meter)."""
    maintenance_max_s: PositiveFloat = 4 * 3600.0

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
    enabled: bool = False
    stage2_s: PositiveFloat = 15.0
    single_excursion_lockout_s: PositiveFloat = 60.0
    window_s: PositiveFloat = 600.0
    window_max_stage2: Annotated[int, Field(ge=1)] = 2
    day_window_s: PositiveFloat = 86400.0
    day_max_stage2: Annotated[int, Field(ge=0)] = 3
    lockout_s: PositiveFloat = 4 * 3600.0
    failsafe_kw: NonNegFloat | None = None
    """EV limit held during a lockout (default: the EV site's fallback_kw)."""


class CpoConfig(_Section):
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    """The CPO API's base, including the version, e.g. https://cpo.example.com/v1."""
    token: SecretStr = SecretStr("")
    token_file: Path | None = None
    """A file holding the token (preferred over inlining it here)."""
    ca_file: Path | None = None
    """CA bundle to verify the CPO's certificate (default: the system store)."""
    connect_timeout_s: PositiveFloat = 3.0
    total_timeout_s: PositiveFloat = 5.0
    demand_poll_s: PositiveFloat = 5.0
    unreachable_after_s: PositiveFloat = 15.0
    """Failed exchanges for this long -> the CPO counts as unreachable."""

    @model_validator(mode="after")
    def _token(self) -> Self:
        if not self.token.get_secret_value() and self.token_file is None:
            raise ValueError("give token or token_file (the CPO API needs a token)")
        return self


class CentralConfig(_Section):
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 8883
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+$")] = "gridwarden"
    tls: bool = True
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str = ""
    password: SecretStr = SecretStr("")
    telemetry_s: PositiveFloat = 10.0
    offline_buffer: Annotated[int, Field(ge=0)] = 8640


class HmiConfig(_Section):
    bind: str = "127.0.0.1"
    """Local only by default: the HMI is for people at the site."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    service_bind: str | None = None
    """An optional second address (a local service interface) the HMI also listens on."""
    users: dict[str, str] = Field(default_factory=dict)
    """Account name -> salted password hash (make one with `gridwarden hash-password`)."""


class StoreConfig(_Section):
    path: Path = Path("/var/lib/gridwarden/gridwarden.sqlite")
    event_retention_days: Annotated[int, Field(ge=1)] = 365
    trend_retention_h: Annotated[int, Field(ge=24)] = 48


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
        return self

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


def format_validation_error(source: str, exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            msg = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, _known_keys(Config, loc[:-1]), n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
        elif err["type"] == "missing":
            msg = "missing required key"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{source}: {_loc(loc)}: {msg}")
    return lines


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file; ``ConfigError`` lists every problem."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError([f"{source}: no such file"]) from exc
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from exc
    return parse_config(data, source)
