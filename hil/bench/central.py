"""CMC scenarios: a mosquitto broker on an ephemeral loopback port and a central platform
publishing leases to the site under test (``hil.central_sim.CentralSim``, the simulator's
one aiomqtt adapter).

``publishing`` stops and resumes the lease commands (the lease lapses); ``stop_broker`` /
``start_broker`` take the whole link away and back (same port). Everything started here is
stopped by ``close``: the bench never leaves a broker behind.
"""

import asyncio
import contextlib
import logging
import shutil
import socket
from pathlib import Path

from controller.errors import GridwardenError
from hil.bench.scenario import Central

log = logging.getLogger(__name__)


class BrokerError(GridwardenError):
    """mosquitto is missing or did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process, anonymous, no TLS, loopback only (a bench, not the field)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 5.0) -> None:
        exe = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        if exe is None:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "persistence false",
                    f"log_dest file {self.workdir / 'mosquitto.log'}",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                ]
            )
            + "\n"
        )
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "-c",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return
        await self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class LeasePublisher:
    """The central platform granting ``central.limit_kw`` to one site, lease by lease."""

    def __init__(self, central: Central, site_id: str, prefix: str, broker: Broker) -> None:
        self.central = central
        self.site_id = site_id
        self.prefix = prefix
        self.broker = broker
        self.publishing = True
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench central")

    async def _run(self) -> None:
        # imported here: only CMC scenarios need the MQTT stack
        from hil.central_sim import CentralModel, CentralSim, SiteSpec  # noqa: PLC0415

        model = CentralModel([SiteSpec(self.site_id, self.central.limit_kw)], [])
        while True:
            sim = CentralSim(
                model,
                port=self.broker.port,
                prefix=self.prefix,
                lease_s=self.central.lease_s,
                auto_limits=False,
                identifier=f"bench-central-{self.broker.port}",
            )
            runner = asyncio.create_task(sim.run(), name="bench central link")
            try:
                await sim.wait_ready(5.0)
                while not runner.done():
                    if self.publishing:
                        await sim.send_limit(self.site_id, self.central.limit_kw)
                        self.published += 1
                    await asyncio.sleep(self.central.period_s)
            except Exception as exc:  # the broker went away: retry, as a platform would
                log.info("bench central: link down (%s); retrying", exc)
            finally:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
