"""Run one scenario: the real daemon process against the wire-level simulators.

For each run, in ``workdir``:

- the CPO simulator (``hil.cpo_sim``) on an ephemeral loopback port, its site built from
  ``[evs]`` and ``[cpo]``;
- a socat pty pair: the simulated meter (``hal.sim.meter.SimMeter``, Modbus RTU at 38400
  baud) on one end, the daemon's ``[meter] transport = "rtu"`` on the other; the meter
  serves the ``Plant`` (background + sensitivity x EV power, zero with the breaker open);
- CMC only: mosquitto on an ephemeral port and a lease publisher;
- ``daemon.toml`` (the scenario's ``[controller]`` tables plus this wiring, the breaker on
  ``transport = "sim"``), then ``python -m controller run --config daemon.toml``.

Then it plays the timeline, samples ``/api/status`` at 5 Hz, stops the daemon (SIGTERM),
reads the store's events and the limits the CPO received, and tears everything down in
``finally`` (no daemon, socat or mosquitto survives a run, even a failed one).
"""

import asyncio
import contextlib
import datetime
import json
import logging
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from controller.errors import GridwardenError
from hal.sim.meter import SimMeter
from hal.sim.pty import PtyPair, PythonPtyPair, open_pty_pair
from hil.bench.central import Broker, LeasePublisher
from hil.bench.daemon import DaemonProcess
from hil.bench.plant import Plant
from hil.bench.record import LimitReceived, Recording, Sample, StoredEvent
from hil.bench.scenario import (
    BackgroundEvent,
    CableEvent,
    CentralEvent,
    CpoEvent,
    CpoFaults,
    DaemonEvent,
    Event,
    MeterEvent,
    Scenario,
    daemon_config,
)
from hil.cpo_sim.model import SiteSettings
from hil.cpo_sim.server import CpoSimulator
from hil.ev_sessions import EvSession

log = logging.getLogger(__name__)

SAMPLE_S = 0.2
METER_BAUD = 38400
CPO_TOKEN = "bench-token"
_FAULT_FIELDS = (
    "answer_delay_s",
    "hang",
    "fail_status",
    "fail_next",
    "drop_auth",
    "stale_measured_at_s",
    "malformed_demand",
)


def dump_toml(data: dict[str, Any]) -> str:
    """A TOML document for the daemon's config (tables, arrays of tables, plain values)."""
    lines: list[str] = []

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{v} has no TOML form here")
            return repr(v)
        if isinstance(v, str | Path):
            return json.dumps(str(v))
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise ValueError(f"cannot write {type(v).__name__} as TOML")

    def table(prefix: str, d: dict[str, Any]) -> None:
        scalars = {
            k: v
            for k, v in d.items()
            if not isinstance(v, dict)
            and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))
        }
        if prefix and (scalars or not d):
            lines.append(f"[{prefix}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in d.items():
            name = f"{prefix}.{key(k)}" if prefix else key(k)
            if isinstance(v, dict):
                table(name, v)
            elif k not in scalars:
                for item in v:
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{key(ik)} = {value(iv)}" for ik, iv in item.items())

    table("", data)
    return "\n".join(lines) + "\n"


def ev_sessions(scenario: Scenario, t0: float) -> list[EvSession]:
    evs = scenario.evs
    if evs.sessions:
        return [
            EvSession(
                chargepoint=s.chargepoint,
                arrival_s=t0 + s.arrive_s,
                departure_s=t0 + s.depart_s,
                energy_kwh=s.energy_kwh,
                ev_max_kw=s.ev_max_kw,
            )
            for s in evs.sessions
        ]
    if not evs.busy:
        return []
    return [
        EvSession(
            chargepoint=i,
            arrival_s=t0 + evs.stagger_s * i,
            departure_s=t0 + 1e6,
            energy_kwh=evs.energy_kwh,
            ev_max_kw=evs.ev_max_kw,
        )
        for i in range(evs.chargepoints)
    ]


def tcc_schedule(
    scenario: Scenario, now_wall: float
) -> tuple[list[dict[str, Any]], float] | tuple[None, None]:
    """The schedule with its boundary at the first whole minute ``lead_s`` from now."""
    tb = scenario.tcc_boundary
    if tb is None:
        return None, None
    tz = ZoneInfo(str(scenario.controller.get("site", {}).get("timezone", "Europe/London")))
    boundary = math.ceil((now_wall + tb.lead_s) / 60.0) * 60.0
    at = datetime.datetime.fromtimestamp(boundary, tz)
    before = at - datetime.timedelta(hours=12)
    schedule = [
        {"days": ["all"], "start": before.strftime("%H:%M"), "limit": tb.before},
        {"days": ["all"], "start": at.strftime("%H:%M"), "limit": tb.after},
    ]
    return schedule, boundary


@dataclass(frozen=True)
class Wiring:
    """Where the bench's peers are. The defaults need no hardware: the meter on a socat pty
    pair, the breaker on the daemon's ``sim`` transport. On a Raspberry Pi bench
    (docs/hil.md): ``serial = (driver_port, sim_port)``, two USB-RS485 adapters wired A-A,
    B-B; ``breaker = "gpio"``, a relay and the aux contact on the scenario's pins."""

    serial: tuple[str, str] | None = None
    breaker: Literal["sim", "gpio"] = "sim"


class _Run:
    """The state of one run while it plays."""

    def __init__(self, scenario: Scenario, source: str, workdir: Path, wiring: Wiring) -> None:
        self.wiring = wiring
        self.scenario = scenario
        self.workdir = workdir
        ctl = scenario.controller
        self.site_id = str(ctl["site"]["id"])
        period = float(ctl.get("control", {}).get("period_s", 1.0))
        self.rec = Recording(scenario.name, source, scenario.description, period)
        self.t0 = time.monotonic()
        self.breaker_closed = False
        self.states_seen: dict[str, float] = {}
        self.daemon: DaemonProcess | None = None
        self.cpo: CpoSimulator | None = None
        self.meter: SimMeter | None = None
        self.cable: PtyPair | PythonPtyPair | None = None
        self.broker: Broker | None = None
        self.publisher: LeasePublisher | None = None
        self.plant: Plant | None = None
        self.t0_wall = time.time()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def note(self, what: str) -> None:
        self.rec.timeline.append((round(self.now(), 2), what))

    # --- set-up and tear-down ------------------------------------------------------------------

    async def setup(self) -> None:
        scn, wd = self.scenario, self.workdir
        c = scn.cpo
        start = time.monotonic()
        self.cpo = cpo = CpoSimulator(
            [
                SiteSettings(
                    self.site_id,
                    chargepoints=scn.evs.chargepoints,
                    rated_kw=scn.evs.rated_kw,
                    phases=scn.evs.phases,
                    min_current_a=scn.evs.min_current_a,
                    strategy=c.strategy,
                    slot_s=c.slot_s,
                    fallback_kw=c.fallback_kw,
                    response_delay_s=c.response_delay_s or 0.0,
                    ignore_limits=bool(c.ignore_limits),
                    tick_s=c.tick_s,
                )
            ],
            token=CPO_TOKEN,
            sessions={self.site_id: ev_sessions(scn, start)},
        )
        self.apply_cpo(c)
        cpo_url = await cpo.start(port=0)
        self.plant = Plant(scn, cpo.site(self.site_id), lambda: self.breaker_closed)
        if self.wiring.serial is None:
            driver_port, sim_port = str(wd / "meter-driver"), str(wd / "meter-sim")
            self.cable = open_pty_pair(driver_port, sim_port)
            await self.cable.start()
        else:
            driver_port, sim_port = self.wiring.serial
        self.meter = SimMeter(
            scn.meter.profile, source=self.plant.meter_values, jitter=True, seed=scn.site.seed
        )
        self.apply_meter(scn.meter)
        await self.meter.start_serial(sim_port, baud=METER_BAUD)
        central_port = None
        if scn.central is not None:
            self.broker = Broker(wd)
            await self.broker.start()
            central_port = self.broker.port
            prefix = str(scn.controller.get("central", {}).get("prefix", "gridwarden"))
            self.publisher = LeasePublisher(scn.central, self.site_id, prefix, self.broker)
            self.publisher.start()
        schedule, boundary_wall = tcc_schedule(scn, time.time())
        cfg = daemon_config(
            scn,
            meter_port=driver_port,
            meter_baud=METER_BAUD,
            cpo_url=cpo_url,
            cpo_token=CPO_TOKEN,
            store_path=wd / "daemon.sqlite",
            central_port=central_port,
            schedule=schedule,
            breaker_transport=self.wiring.breaker,
        )
        cfg_path = wd / "daemon.toml"
        cfg_path.write_text(dump_toml(cfg))
        self.daemon = DaemonProcess(cfg_path, wd / "daemon.log")
        await self.daemon.start()
        # the run's clock starts when the daemon is up
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.plant.t0 = self.t0
        self.rec.daemon_starts.append(0.0)
        if boundary_wall is not None:
            self.rec.boundary_t = boundary_wall - self.t0_wall

    async def teardown(self) -> None:
        errors: list[str] = []
        for name, step in (
            ("daemon", self._stop_daemon),
            ("central", self._stop_central),
            ("meter", self._stop_meter),
            ("cpo", self._stop_cpo),
        ):
            try:
                await step()
            except Exception as exc:  # tear down the rest, then report it
                errors.append(f"{name}: {exc}")
        if errors and self.rec.error is None:
            self.rec.error = "tear-down: " + "; ".join(errors)

    async def _stop_daemon(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()

    async def _stop_central(self) -> None:
        if self.publisher is not None:
            await self.publisher.close()
        if self.broker is not None:
            await self.broker.stop()

    async def _stop_meter(self) -> None:
        if self.meter is not None:
            await self.meter.stop()
        if self.cable is not None:
            await self.cable.stop()

    async def _stop_cpo(self) -> None:
        if self.cpo is not None:
            await self.cpo.stop()

    # --- the run -------------------------------------------------------------------------------

    def end_s(self) -> float:
        end = self.scenario.duration_s
        tb = self.scenario.tcc_boundary
        if tb is not None and self.rec.boundary_t is not None:
            end = max(end, self.rec.boundary_t + tb.after_s)
        return end

    async def play(self) -> None:
        end = self.end_s()
        timeline = asyncio.create_task(self._timeline(end), name="bench timeline")
        try:
            next_at = 0.0
            while True:
                t = self.now()
                if t >= end:
                    break
                await self._sample()
                next_at += SAMPLE_S
                await asyncio.sleep(max(0.0, next_at - self.now()))
        finally:
            timeline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timeline  # re-raises what made an event fail (e.g. a restart)

    async def _sample(self) -> None:
        assert self.daemon is not None and self.plant is not None
        st = await self.daemon.status()
        t = self.now()
        if st is None:
            if not self.daemon.running:
                self.breaker_closed = False  # hold-to-close: no controller, breaker open
            state, run = "down", 0
        else:
            state, run = str(st["state"]), self.daemon.starts
            self.breaker_closed = st["breaker"]["status"] == "closed"
        self.states_seen.setdefault(state, t)
        plant = self.plant
        ev_kw = plant.ev_kw()
        bg = plant.background_kw(t)
        con = (st or {}).get("constraint") or {}
        evl = (st or {}).get("ev_limit") or {}
        cpo = (st or {}).get("cpo") or {}
        brk = (st or {}).get("breaker") or {}
        self.rec.samples.append(
            Sample(
                t=round(t, 3),
                run=run,
                state=state,
                constraint=con.get("value"),
                limit=con.get("limit"),
                trim=con.get("trim"),
                ev_limit_kw=evl.get("limit_kw"),
                sent_kw=evl.get("sent_kw"),
                demand_kw=cpo.get("demand_kw"),
                breaker_status=brk.get("status"),
                breaker_wanted=brk.get("wanted"),
                alarms=list((st or {}).get("alarms", [])),
                true_constraint=plant.in_unit(bg + plant.sensitivity * ev_kw),
                background_kw=bg,
                ev_kw=ev_kw,
                ev_wanted_kw=plant.ev_wanted_kw(),
            )
        )

    async def _timeline(self, end: float) -> None:
        pending: list[Event] = list(self.scenario.events)
        while pending and self.now() < end:
            t = self.now()
            due = [e for e in pending if self._due(e, t)]
            for e in due:
                pending.remove(e)
                await self._fire(e)
            await asyncio.sleep(0.05)

    def _due(self, e: Event, t: float) -> bool:
        if e.at_s is not None:
            return t >= e.at_s + e.delay_s
        seen = self.states_seen.get(str(e.after_state))
        return seen is not None and t >= seen + e.delay_s

    async def _fire(self, e: Event) -> None:
        assert self.daemon is not None and self.plant is not None
        given = e.model_dump(exclude_unset=True, exclude={"do", "at_s", "after_state", "delay_s"})
        self.note(f"{e.do}: " + " ".join(f"{k}={v}" for k, v in given.items()))
        if isinstance(e, BackgroundEvent):
            self.plant.step_kw = e.step_kw
        elif isinstance(e, CpoEvent):
            self.apply_cpo(e)
        elif isinstance(e, MeterEvent):
            self.apply_meter(e)
        elif isinstance(e, CableEvent):
            if self.cable is None:
                raise GridwardenError("meter_cable events need the pty cable (not --serial)")
            await (self.cable.start() if e.plugged else self.cable.stop())
        elif isinstance(e, DaemonEvent):
            if e.action == "kill":
                await self.daemon.kill()
                self.breaker_closed = False
            elif e.action == "stop":
                await self.daemon.stop()
                self.breaker_closed = False
            else:
                await self.daemon.start()
                self.rec.daemon_starts.append(round(self.now(), 3))
        elif isinstance(e, CentralEvent):
            if e.publishing is not None and self.publisher is not None:
                self.publisher.publishing = e.publishing
            if e.broker is not None and self.broker is not None:
                await (self.broker.start() if e.broker else self.broker.stop())

    def apply_cpo(self, f: CpoFaults) -> None:
        assert self.cpo is not None
        site = self.cpo.site(self.site_id).settings
        for name in _FAULT_FIELDS:
            v = getattr(f, name)
            if v is not None:
                setattr(self.cpo.faults, name, v)
        if f.ignore_limits is not None:
            site.ignore_limits = f.ignore_limits
        if f.response_delay_s is not None:
            site.response_delay_s = f.response_delay_s

    def apply_meter(self, f: Any) -> None:
        assert self.meter is not None and self.plant is not None
        faults = self.meter.faults
        for name in ("silent", "corrupt_crc", "frozen"):
            v = getattr(f, name)
            if v is not None:
                setattr(faults, name, v)
        if f.exception_code is not None:
            faults.exception_code = f.exception_code or None
        if f.reply_delay_s is not None:
            faults.delay_s = f.reply_delay_s
        if f.noise is not None:
            self.plant.noise = f.noise

    # --- after the run -------------------------------------------------------------------------

    async def collect(self) -> None:
        assert self.daemon is not None and self.cpo is not None
        await self.daemon.stop()
        self.note("daemon stopped (SIGTERM)")
        site = self.cpo.site(self.site_id)
        self.rec.limits = [
            LimitReceived(round(x.received_at - self.t0, 3), x.limit_kw, x.sequence, x.reason)
            for x in site.received
        ]
        db = self.workdir / "daemon.sqlite"
        rows = await asyncio.to_thread(_read_events, db)
        self.rec.events = [
            StoredEvent(round(ts - self.t0_wall, 3), code, sev, msg) for ts, code, sev, msg in rows
        ]


#: what a run leaves in its folder: removed first, so a run never inherits an old store
RUN_FILES = ("daemon.sqlite*", "daemon.log", "daemon.toml", "recording.json", "mosquitto.*")


def _fresh_workdir(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for pattern in RUN_FILES:
        for old in workdir.glob(pattern):
            old.unlink()


def _read_events(db: Path) -> list[tuple[float, str, str, str]]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT ts, code, severity, message FROM events ORDER BY id").fetchall()
    return [(float(a), str(b), str(c), str(d)) for a, b, c, d in rows]


async def run_scenario(
    scenario: Scenario, source: str, workdir: Path, wiring: Wiring | None = None
) -> Recording:
    """Run one scenario; the recording carries ``error`` when the bench itself failed."""
    await asyncio.to_thread(_fresh_workdir, workdir)
    run = _Run(scenario, source, workdir, wiring or Wiring())
    started = time.monotonic()
    try:
        await run.setup()
        await run.play()
        await run.collect()
    except (GridwardenError, OSError) as exc:
        log.warning("bench %s: %s", scenario.name, exc)
        run.rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        await run.teardown()
        run.rec.wall_s = round(time.monotonic() - started, 2)
    return run.rec
