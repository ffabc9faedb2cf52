"""The controller daemon: the asyncio wiring around the pure core.

One ``asyncio.TaskGroup`` of named tasks — meter polling, the control tick, the CPO link,
breaker supervision, the store, the status/HMI server, systemd notify/watchdog. The
control tick runs on monotonic deadlines without drift and never awaits I/O: every task
leaves its latest result in memory and the tick reads it at the next period.

A task that dies takes the controller down *visibly*: a TASK_FAILED event is written, the
process exits non-zero (systemd restarts it), and the relay falls back to what its wiring
dictates (hold-to-close: the breaker opens). SIGTERM/SIGINT stop it cleanly: no new
limits, the store flushed, devices closed.
"""

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from controller import core
from controller.central import CentralLink
from controller.clock import clock_synced, time_of_week_s
from controller.config import Config
from controller.cpo import CpoLink
from controller.store import Store, StoreError
from controller.sysd import Notifier
from hal.breaker import Breaker, BreakerStatus
from hal.errors import BreakerError, MeterError, MeterImplausible
from hal.meter import Meter, Reading

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_TASK_FAILED = 1
BREAKER_CHECK_S = 2.0  # how often the breaker's aux contact is compared with its order
BREAKER_RETRY_S = 10.0  # an order the breaker did not follow is repeated this often


class _Stop(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised inside the task group to stop it cleanly (a signal or ``stop()``)."""


@dataclass
class TickStats:
    """How punctual the control tick is (seconds late against its deadline)."""

    period_s: float
    ticks: int = 0
    overruns: int = 0
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=3600))

    def p99_ms(self) -> float | None:
        if not self.lateness:
            return None
        ordered = sorted(self.lateness)
        return 1000.0 * ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class LinkEvent:
    """An event raised by the runtime itself (not the core): store, breaker, tasks."""

    code: str
    severity: str
    message: str
    values: dict[str, Any] = field(default_factory=dict)


class Runtime:
    """Runs one controller. Devices are injected, so the demo and the bench hand in
    simulators and the field hands in real drivers."""

    def __init__(
        self,
        config: Config,
        *,
        meter: Meter | None,
        breaker: Breaker,
        cpo: CpoLink | None,
        store: Store,
        central: CentralLink | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        clock_is_synced: Callable[[], bool] | None = None,
        notifier: Notifier | None = None,
        status_server: Callable[["Runtime"], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.config = config
        self.settings = config.core_settings()
        self.meter = meter
        self.breaker = breaker
        self.cpo = cpo
        self.central = central
        self.store = store
        self.clock = clock
        self.wall_clock = wall_clock
        trusted = config.site.clock_trusted
        self.clock_is_synced = clock_is_synced or (lambda: trusted or clock_synced())
        self.notifier = notifier or Notifier()
        self.status_server = status_server
        self.tz = ZoneInfo(config.site.timezone)
        self.period_s = config.control.period_s
        self.stats = TickStats(self.period_s)
        self.state: core.State | None = None
        self.status = core.Status()
        self.started_wall = wall_clock()
        # latest inputs, written by their tasks, read by the tick
        self.reading: Reading | None = None
        self.measurement: core.Measurement | None = None
        self.meter_error: str | None = None
        self.commands: list[core.Command] = []
        self.lease: core.Lease | None = None
        self.central_connected = True
        # what the tick decided, for the other tasks and the status API
        self.last_order: core.LimitOrder | None = None
        self.last_order_wall: float | None = None
        self.breaker_wanted: str | None = None
        self.breaker_status = BreakerStatus.UNKNOWN
        self.alarms: dict[str, str] = {}  # runtime alarms (store, breaker), beside the core's
        self.exit_code = EXIT_OK
        self._breaker_wake = asyncio.Event()
        self._persist: dict[str, Any] | None = None
        self._persist_for_trip: dict[str, Any] | None = None
        self._stop = asyncio.Event()
        self._first_tick = asyncio.Event()
        self.last_tick_mono: float | None = None
        self.command_results: deque[core.CommandResult] = deque(maxlen=100)
        self.http_addresses: list[tuple[str, int]] = []
        self.http_ready = asyncio.Event()

    # --- public controls -----------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def submit_command(self, command: core.Command) -> None:
        """Queue an operator/central command for the next period."""
        self.commands.append(command)

    def set_lease(self, lease: core.Lease | None, connected: bool = True) -> None:
        self.lease = lease
        self.central_connected = connected

    # --- lifecycle -----------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        await self._restore()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._guard("stopper", self._stopper()), name="stopper")
                tg.create_task(self._guard("tick", self._tick_loop()), name="tick")
                if self.meter is not None:
                    tg.create_task(self._guard("meter", self._meter_loop()), name="meter")
                tg.create_task(self._guard("breaker", self._breaker_loop()), name="breaker")
                tg.create_task(self._guard("store", self._store_loop()), name="store")
                tg.create_task(self._guard("watchdog", self._watchdog_loop()), name="watchdog")
                if self.cpo is not None:
                    tg.create_task(self._guard("cpo", self.cpo.run()), name="cpo")
                if self.central is not None:
                    tg.create_task(self._guard("central", self.central.run()), name="central")
                if self.status_server is not None:
                    tg.create_task(self._guard("http", self.status_server(self)), name="http")
        except* _Stop:
            log.info("controller stopping")
        except* Exception as group:
            self.exit_code = EXIT_TASK_FAILED
            for exc in group.exceptions:
                log.critical("controller stopped by a failed task: %r", exc)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            self.notifier.notify("STOPPING=1")
            await self._shutdown()
        return self.exit_code

    async def _restore(self) -> None:
        """Rebuild the core's state from the store. A commissioned device whose state is
        missing, unreadable or of another version may have been tripped when it was lost:
        it starts tripped and latched, and someone at the site resets it. Only a store
        created just now (a new device) starts untripped."""
        now = self.clock()
        lost: str | None = None
        try:
            persisted = await self.store.load_state()
        except (StoreError, ValueError) as exc:
            persisted, lost = None, f"unreadable ({exc})"
        if persisted is not None:
            try:
                self.state = core.State.load(self.settings, persisted, now)
            except (ValueError, TypeError) as exc:
                lost = f"refused ({exc})"
        elif lost is None and not self.store.created:
            lost = "missing from an existing store"
        if self.state is None:
            self.state = core.State(self.settings, now)
        if lost is not None:
            message = f"persisted controller state {lost}: starting tripped, reset needed"
            self._raise_runtime("STORE_STATE_LOST", core.model.CRITICAL, message)
            self.state.latch_trip("controller state lost, a trip may have been forgotten", "store")
        if self.central is not None:
            # a replay of the last lease after a restart must not restore central control
            self.central.seed_sequence(self.state.central_sequence)

    async def _shutdown(self) -> None:
        # no new limits from here on; the CPO falls back when valid_until passes
        if self.central is not None:
            with contextlib.suppress(Exception):
                await self.central.aclose()  # publishes the retained "offline" state
        if self.cpo is not None:
            with contextlib.suppress(Exception):
                await self.cpo.aclose()
        if self.meter is not None:
            with contextlib.suppress(Exception):
                await self.meter.close()
        with contextlib.suppress(Exception):
            if self.state is not None:
                await self.store.save_state(self.state.to_dict(self.clock()))
        with contextlib.suppress(Exception):
            await self.store.close()
        # last: the relay goes to its unpowered state, as the wiring dictates
        with contextlib.suppress(Exception):
            await self.breaker.close()

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except (asyncio.CancelledError, _Stop):
            raise
        except Exception as exc:
            log.critical("task %s failed: %r", name, exc, exc_info=exc)
            event = LinkEvent(
                "TASK_FAILED", core.model.CRITICAL, f"controller task {name} failed: {exc!r}"
            )
            self.store.add_events([event], self.wall_clock())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.flush(), 2.0)
            raise

    async def _stopper(self) -> None:
        await self._stop.wait()
        raise _Stop

    # --- the control tick ----------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        period = self.period_s
        start = self.clock()
        n = 0
        while True:
            n += 1
            deadline = start + n * period
            delay = deadline - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.clock()
            late = now - deadline
            if late > period:  # missed whole periods: skip them, never burst
                skipped = int(late // period)
                n += skipped
                self.stats.overruns += skipped
            self.stats.lateness.append(max(0.0, late))
            self.stats.ticks += 1
            self.tick(now)
            self._first_tick.set()

    def tick(self, now: float) -> core.Actions:
        """One control period: gather, step the core, hand out the actions. No awaits."""
        assert self.state is not None
        wall = self.wall_clock()
        inputs = core.Inputs(
            measurement=self.measurement,
            demand=None,
            cpo_reachable=True,
            lease=self.lease,
            central_connected=self.central_connected,
            time_of_week_s=time_of_week_s(wall, self.tz),
            clock_synced=self.clock_is_synced(),
            commands=self.commands,
        )
        self.commands = []
        if self.central is not None:
            inputs.lease = self.central.lease()
            inputs.central_connected = self.central.connected
            inputs.commands.extend(self.central.take_commands())
            self.lease, self.central_connected = inputs.lease, inputs.central_connected
        demand_kw: float | None = None
        if self.cpo is not None:
            snap = self.cpo.snapshot()
            if snap.cpo_sequence is not None and self.state.resync_sequence(snap.cpo_sequence):
                # the CPO refused our numbers as stale (this device's store was lost?)
                self._record(
                    "SEQUENCE_RESYNC",
                    core.model.WARNING,
                    f"CPO holds limit sequence {snap.cpo_sequence}: continuing above it",
                )
            inputs.demand = snap.demand()
            inputs.cpo_reachable = snap.reachable
            demand_kw = snap.demand_kw
        self.state, actions = core.step(self.settings, self.state, inputs, now)
        self.last_tick_mono = now
        self.status = actions.status
        if actions.limit is not None:
            self.last_order = actions.limit
            self.last_order_wall = wall
            if self.cpo is not None:
                o = actions.limit
                self.cpo.submit_limit(o.limit_kw, o.sequence, o.valid_for_s, o.reason)
        if actions.persist is not None:
            self._persist = actions.persist
        if actions.breaker is not None:
            self.breaker_wanted = actions.breaker
            if actions.breaker == core.model.TRIP:
                self._persist_for_trip = self.state.to_dict(now)
            self._breaker_wake.set()
        for result in actions.command_results:
            self.command_results.append(result)
        if actions.events:
            self.store.add_events(actions.events, wall)
            for e in actions.events:
                _log_event(e.code, e.severity, e.message)
        status = actions.status
        self.store.add_sample(status.constraint, status.limit, status.ev_limit_kw, demand_kw, wall)
        if self.central is not None:
            self.central.on_period(self.status_dict(), actions.command_results)
            link_events = self.central.take_events()
            if link_events:
                self.store.add_events(link_events, wall)
                for e in link_events:
                    _log_event(e.code, e.severity, e.message)
        return actions

    # --- inputs --------------------------------------------------------------------------------
    async def _meter_loop(self) -> None:
        assert self.meter is not None
        interval = self.config.meter.poll_interval_s if self.config.meter else 1.0
        next_poll = self.clock()
        while True:
            try:
                reading = await self.meter.read()
            except MeterImplausible as exc:
                self.meter_error = str(exc)
                self.measurement = _invalid(self.clock())
            except MeterError as exc:
                self.meter_error = str(exc)  # keep the last good reading: the core ages it
            else:
                self.meter_error = None
                self.reading = reading
                self.measurement = to_measurement(reading)
            next_poll += interval
            delay = next_poll - self.clock()
            if delay < 0:  # a slow poll: start again from now, do not burst
                next_poll = self.clock()
                delay = 0.0
            await asyncio.sleep(delay)

    # --- outputs -------------------------------------------------------------------------------
    async def _breaker_loop(self) -> None:
        """Apply the newest order, then keep watching: a breaker whose aux contact
        disagrees with the order (a trip pulse that did not open it, a breaker closed by
        hand while the trip is latched) is ordered again, at most every
        ``BREAKER_RETRY_S``, with ``BREAKER_FAILED`` raised until it agrees."""
        applied: str | None = None
        last_try = -math.inf
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._breaker_wake.wait(), BREAKER_CHECK_S)
            self._breaker_wake.clear()
            wanted = self.breaker_wanted
            if wanted is None:
                continue
            status = self.breaker.status()
            self.breaker_status = status
            disagrees = (wanted == core.model.TRIP and status == BreakerStatus.CLOSED) or (
                wanted == core.model.PERMIT_CLOSE and status == BreakerStatus.OPEN
            )
            if wanted == applied and not disagrees:
                self._clear_runtime("BREAKER_FAILED", "breaker follows its orders again")
                continue
            if wanted == applied and self.clock() - last_try < BREAKER_RETRY_S:
                continue
            last_try = self.clock()
            try:
                if wanted == core.model.TRIP:
                    await self._persist_before_trip()
                    self.breaker_status = await self.breaker.trip()
                else:
                    self.breaker_status = await self.breaker.permit_close()
                applied = wanted
            except BreakerError as exc:
                applied = wanted
                self.breaker_status = self.breaker.status()
                self._raise_runtime(
                    "BREAKER_FAILED", core.model.CRITICAL, f"breaker failed to {wanted}: {exc}"
                )
                continue
            if wanted == core.model.PERMIT_CLOSE and self.breaker_status == BreakerStatus.OPEN:
                # permitted, but it stays open (its own protection, or opened by hand)
                self._raise_runtime(
                    "BREAKER_FAILED", core.model.WARNING, "breaker open although close permitted"
                )

    async def _persist_before_trip(self) -> None:
        """The latch goes to disk before the breaker opens; if the disk refuses, trip
        anyway (and say so): an open breaker matters more than the record."""
        trip_state = self._persist_for_trip or self._persist
        if trip_state is None:
            return
        try:
            await asyncio.wait_for(self.store.save_state(trip_state), 2.0)
        except Exception as exc:  # any failure here must not stop the trip
            self._raise_runtime("STORE_FAILED", core.model.ALARM, f"trip not persisted: {exc!r}")

    async def _store_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            pending, self._persist = self._persist, None
            if pending is not None:
                try:
                    await self.store.save_state(pending)
                except StoreError:
                    self._persist = self._persist or pending  # retry next time
            await self.store.flush()
            if self.store.healthy:
                self._clear_runtime("STORE_FAILED", "store writes succeed again")
            else:
                self._raise_runtime(
                    "STORE_FAILED",
                    core.model.ALARM,
                    f"store writes failing ({self.store.last_error}); controlling without log",
                )

    async def _watchdog_loop(self) -> None:
        await self._first_tick.wait()
        self.notifier.notify("READY=1")
        interval = (self.notifier.watchdog_s or 10.0) / 2.0
        while True:
            last = self.last_tick_mono
            # only a living control tick keeps the watchdog fed
            if last is not None and self.clock() - last < 3 * self.period_s + 1.0:
                self.notifier.notify("WATCHDOG=1")
                self.notifier.notify(f"STATUS={self.status.state}: {self.status.reason}")
            await asyncio.sleep(interval)

    # --- runtime events and alarms ---------------------------------------------------------------
    def _record(self, code: str, severity: str, message: str) -> None:
        self.store.add_events([LinkEvent(code, severity, message)], self.wall_clock())
        _log_event(code, severity, message)

    def _raise_runtime(self, code: str, severity: str, message: str) -> None:
        if code not in self.alarms:
            self.alarms[code] = severity
            self._record(code, severity, message)

    def _clear_runtime(self, code: str, message: str) -> None:
        if code in self.alarms:
            del self.alarms[code]
            self._record(code + "_CLEARED", core.model.INFO, message)

    # --- status for the HMI/API ------------------------------------------------------------------
    def status_dict(self) -> dict[str, Any]:
        st = self.status
        now = self.clock()
        snap = self.cpo.snapshot() if self.cpo is not None else None
        order = self.last_order
        reading = self.reading
        return {
            "site": {"id": self.config.site.id, "name": self.config.site.name},
            "scheme": self.config.scheme.type,
            "state": st.state,
            "reason": st.reason,
            "constraint": {
                "value": st.constraint,
                "limit": st.limit,
                "trim": st.trim,
                "unit": st.unit,
                "phase": st.phase or None,
            },
            "ev_limit": {
                "limit_kw": st.ev_limit_kw,
                "sent_kw": order.limit_kw if order else None,
                "sequence": order.sequence if order else None,
                "reason": order.reason if order else None,
                "sent_at": self.last_order_wall,
                "acked_sequence": snap.acked_sequence if snap else None,
            },
            "cpo": None
            if snap is None
            else {
                "reachable": snap.reachable,
                "demand_kw": snap.demand_kw,
                "demand_age_s": snap.demand_age_s(now),
                "applied_limit_kw": snap.applied_limit_kw,
                "last_error": snap.last_error,
            },
            "meter": None
            if reading is None
            else {
                **reading.as_dict(),
                "age_s": round(now - reading.taken_at_monotonic, 3),
                "error": self.meter_error,
            },
            "breaker": {"wanted": self.breaker_wanted, "status": str(self.breaker_status)},
            "alarms": sorted({*st.alarms, *self.alarms}),
            "tick": {
                "period_s": self.period_s,
                "ticks": self.stats.ticks,
                "overruns": self.stats.overruns,
                "lateness_p99_ms": self.stats.p99_ms(),
            },
            "store": {"healthy": self.store.healthy, "error": self.store.last_error},
            "uptime_s": round(self.wall_clock() - self.started_wall, 1),
        }


def to_measurement(reading: Reading) -> core.Measurement:
    """A HAL reading as the core's measurement. A reading flagged frozen is not valid: a
    meter repeating itself is blind, and the core must treat it as silent."""
    volts = tuple(math.nan if v is None else v for v in reading.voltages_v)
    return core.Measurement(
        reading.power_kw,
        reading.taken_at_monotonic,
        reading.currents_a,
        volts,
        reading.apparent_kva,
        "frozen" not in reading.quality,
    )


def _invalid(now: float) -> core.Measurement:
    return core.Measurement(math.nan, now, None, None, None, False)


_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "alarm": logging.ERROR,
           "critical": logging.CRITICAL}  # fmt: skip


def _log_event(code: str, severity: str, message: str) -> None:
    """One line per event for journald; never one per poll."""
    log.log(_LEVELS.get(severity, logging.INFO), "%s %s", code, message)


def setup_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr; journald adds its own timestamps."""
    import os  # noqa: PLC0415

    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt)


async def run_daemon(config: Config) -> int:
    """The field entry point: real drivers from the config, the HMI/status server."""
    from controller.central import build_central_link  # noqa: PLC0415
    from controller.cpo import build_cpo_link  # noqa: PLC0415
    from controller.hmi.server import serve  # noqa: PLC0415
    from hal.breaker import build_breaker  # noqa: PLC0415
    from hal.meter import build_meter  # noqa: PLC0415

    store = Store(
        config.store.path,
        event_retention_days=config.store.event_retention_days,
        trend_retention_h=config.store.trend_retention_h,
        clock_trusted=lambda: config.site.clock_trusted or clock_synced(),
    )
    await store.start()
    meter = build_meter(config.meter) if config.meter is not None else None
    breaker = build_breaker(config.breaker)
    cpo = build_cpo_link(config.cpo, config.site.id) if config.cpo is not None else None
    if cpo is None:
        log.warning("no [cpo] section: EV limits are computed but sent nowhere")
    central = (
        build_central_link(config.central, config.site.id) if config.central is not None else None
    )
    runtime = Runtime(
        config,
        meter=meter,
        breaker=breaker,
        cpo=cpo,
        store=store,
        central=central,
        status_server=serve,
    )
    return await runtime.run()
