"""`gridwarden demo`: the whole site simulated around the real controller stack.

- the constraint meter: a simulated SDM630 that is a real Modbus RTU server on one end of
  a serial pseudo-terminal pair, read by the real driver on the other end;
- the CPO back office: the CPO simulator over HTTP on loopback, six 22 kW chargepoints
  with dynamic load balancing, read and commanded by the real REST client;
- the breaker: the real gpiozero relay driver on mock pins, its aux contact wired back;
- the network: a background load at the constraint plus the EV site's power times its
  sensitivity, fed into the simulated meter every time it is polled.

A scripted story makes the controller curtail and escalate within about a minute: the
background load steps up at 25 s (curtailment), the CPO stops obeying at 40 s (emergency,
then a trip), and once tripped the CPO is made to behave again so that an operator can
reset (type ``reset`` here, or use the HMI). Ctrl-C stops everything cleanly.
"""

import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from controller import core
from controller.config import Config, load_config
from controller.cpo import build_cpo_link
from controller.errors import GridwardenError
from controller.hmi.server import serve
from controller.runtime import Runtime
from controller.store import Store
from hal.breaker import (
    BreakerSettings,
    BreakerStatus,
    build_breaker,
    mock_pin_factory,
    wire_mock_aux,
)
from hal.meter import build_meter
from hal.sim.meter import SimMeter, balanced_values
from hal.sim.pty import open_pty_pair
from hil.cpo_sim.model import SiteSettings
from hil.cpo_sim.server import CpoSimulator
from hil.ev_sessions import EvSession

log = logging.getLogger(__name__)

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo.toml"
DEMO_TOKEN = "demo-token"

# the story, in seconds since start
STEP_UP_AT_S = 25.0
CPO_MISBEHAVES_AT_S = 40.0
BACKGROUND_BEFORE_KW = 60.0
BACKGROUND_AFTER_KW = 150.0


def demo_sessions(t0: float, chargepoints: int) -> list[EvSession]:
    """Every chargepoint busy from the start, each EV wanting a lot (a busy evening)."""
    return [
        EvSession(
            chargepoint=i,
            arrival_s=t0 + 0.5 * i,
            departure_s=t0 + 24 * 3600.0,
            energy_kwh=500.0,
            ev_max_kw=22.0,
        )
        for i in range(chargepoints)
    ]


class DemoSite:
    """The network seen by the meter: background + sensitivity x EV power (if closed)."""

    def __init__(
        self,
        cpo: CpoSimulator,
        site_id: str,
        sensitivity: float,
        breaker_closed: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpo = cpo
        self.site_id = site_id
        self.sensitivity = sensitivity
        self.breaker_closed = breaker_closed
        self.clock = clock
        self.t0 = clock()
        self.background_kw = BACKGROUND_BEFORE_KW

    def ev_kw(self) -> float:
        if not self.breaker_closed():
            return 0.0
        return self.cpo.site(self.site_id).power_kw(self.clock())

    def values(self, _elapsed: float) -> Mapping[str, float]:
        return balanced_values(self.background_kw + self.sensitivity * self.ev_kw())


def demo_config(base: Config, tmp: Path, meter_port: Path, cpo_url: str, hmi_port: int) -> Config:
    """The shipped demo config pointed at this run's simulators and directory."""
    assert base.meter is not None and base.cpo is not None
    return base.model_copy(
        update={
            "meter": base.meter.model_copy(
                update={
                    "transport": "rtu",
                    "port": str(meter_port),
                    "baud": 38400,
                    "inter_frame_gap_ms": 5.0,
                }
            ),
            "breaker": BreakerSettings(output_pin=17, aux_pin=27, confirm_timeout_s=0.5),
            "cpo": base.cpo.model_copy(update={"base_url": cpo_url}),
            "hmi": base.hmi.model_copy(update={"port": hmi_port}),
            "store": base.store.model_copy(update={"path": tmp / "demo.sqlite"}),
        }
    )


async def run_demo(port: int = 8080, store_dir: Path | None = None) -> int:
    base = load_config(DEMO_CONFIG)
    with contextlib.ExitStack() as stack:
        tmp = store_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-")))
        tmp.mkdir(parents=True, exist_ok=True)
        return await _run(base, tmp, port)


async def _run(base: Config, tmp: Path, port: int) -> int:
    site_id = base.site.id
    cpo = CpoSimulator(
        [
            SiteSettings(
                site_id, chargepoints=6, rated_kw=22.0, fallback_kw=base.ev_site.fallback_kw
            )
        ],
        token=DEMO_TOKEN,
        sessions={site_id: demo_sessions(time.monotonic(), 6)},
    )
    async with contextlib.AsyncExitStack() as stack:
        # whatever fails while starting, what was started is stopped
        cpo_url = await cpo.start(port=0)
        stack.push_async_callback(cpo.stop)
        cable = open_pty_pair(tmp / "meter-driver", tmp / "meter-sim")
        await cable.start()
        stack.push_async_callback(cable.stop)
        return await _run_site(base, tmp, port, cpo, cpo_url, stack)


async def _run_site(
    base: Config,
    tmp: Path,
    port: int,
    cpo: CpoSimulator,
    cpo_url: str,
    stack: contextlib.AsyncExitStack,
) -> int:
    site_id = base.site.id
    factory = mock_pin_factory()
    wire_mock_aux(factory, 17, 27)
    cfg = demo_config(base, tmp, tmp / "meter-driver", cpo_url, port)
    breaker = build_breaker(cfg.breaker, pin_factory=factory)
    site = DemoSite(
        cpo, site_id, cfg.scheme.sensitivity, lambda: breaker.status() == BreakerStatus.CLOSED
    )
    sim = SimMeter("sdm630", source=site.values, jitter=True)
    await sim.start_serial(tmp / "meter-sim", baud=38400)
    stack.push_async_callback(sim.stop)
    store = Store(cfg.store.path)
    await store.start()
    assert cfg.meter is not None and cfg.cpo is not None
    runtime = Runtime(
        cfg,
        meter=build_meter(cfg.meter),
        breaker=breaker,
        cpo=build_cpo_link(cfg.cpo, site_id),
        store=store,
        status_server=serve,
        clock_is_synced=lambda: True,
    )
    story = asyncio.create_task(_story(runtime, cpo, site), name="demo story")
    console = asyncio.create_task(_console(runtime), name="demo console")
    ticker = asyncio.create_task(_ticker(runtime), name="demo ticker")
    try:
        return await runtime.run()
    finally:
        for task in (story, console, ticker):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _say(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


async def _story(runtime: Runtime, cpo: CpoSimulator, site: DemoSite) -> None:
    await runtime.http_ready.wait()
    for host, port in runtime.http_addresses:
        _say(f"HMI on http://{host}:{port}  (live status: /api/status)")
    _say("six EVs charging, background load 60 kW: the constraint has room")
    await asyncio.sleep(STEP_UP_AT_S)
    site.background_kw = BACKGROUND_AFTER_KW
    _say(f"background load steps up to {BACKGROUND_AFTER_KW:g} kW: watch the EV limit fall")
    await asyncio.sleep(CPO_MISBEHAVES_AT_S - STEP_UP_AT_S)
    sim_site = cpo.site(site.site_id)
    sim_site.settings.ignore_limits = True
    _say("the CPO stops obeying its limit: emergency, then a breaker trip")
    while runtime.status.state != core.model.TRIPPED:  # noqa: ASYNC110 (state of the tick)
        await asyncio.sleep(0.5)
    sim_site.settings.ignore_limits = False
    _say("tripped and latched. The CPO behaves again; reset the trip: type 'reset' + Enter")


async def _ticker(runtime: Runtime, every_s: float = 5.0) -> None:
    """A status line every few seconds, for whoever watches the terminal."""
    await runtime.http_ready.wait()
    while True:
        await asyncio.sleep(every_s)
        st = runtime.status_dict()
        c, ev, cpo = st["constraint"], st["ev_limit"], st["cpo"] or {}
        value = "?" if c["value"] is None else f"{c['value']:.1f}"
        demand = cpo.get("demand_kw")
        _say(
            f"[{st['state']}] constraint {value}/{c['limit']:g} {c['unit']}, EV limit"
            f" {ev['limit_kw']:.1f} kW, EV demand "
            + ("?" if demand is None else f"{demand:.1f} kW")
            + f", breaker {st['breaker']['status']}"
        )


async def _console(runtime: Runtime) -> None:
    """Operator commands typed on the terminal (a stand-in for the HMI's login actions)."""
    if not sys.stdin or not sys.stdin.isatty():
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip().lower()
        if not line:
            if reader.at_eof():
                return
            continue
        if line in ("reset", "maintenance_on", "maintenance_off"):
            command_id = f"console-{time.monotonic_ns()}"
            runtime.submit_command(core.Command(line, "demo-operator", command_id))
            await asyncio.sleep(2 * runtime.period_s)
            mine = [r for r in runtime.command_results if r.command_id == command_id]
            result = mine[-1] if mine else None
            if result is not None:
                verdict = "accepted" if result.accepted else "refused"
                _say(f"{result.kind}: {verdict} ({result.reason})")
        else:
            _say("commands: reset, maintenance_on, maintenance_off")


def main_demo(port: int, store_dir: Path | None) -> int:
    try:
        return asyncio.run(run_demo(port, store_dir))
    except GridwardenError as exc:
        print(f"gridwarden demo: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gridwarden demo: {exc} (is port {port} in use? try --port 0)", file=sys.stderr)
        return 2
