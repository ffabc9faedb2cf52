"""The CMC link over MQTT: the only module that imports aiomqtt (pinned >=2.3,<3).

One client per site: MQTT 5 (falls back to 3.1.1 if the broker refuses 5), TLS with a CA
and an optional client certificate, username/password. Subscribes to the site's two
command topics (QoS 1), publishes state (retained, last will ``{"link":"offline"}``), acks
and telemetry from the ``CentralSession`` queue. Reconnects with exponential backoff and
jitter; logs the loss once and the recovery once per episode. ``run()`` never raises
except ``CancelledError``: a broken link is a state (fallback), not a crash.
"""

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from controller import core
from controller.central.messages import offline_state
from controller.central.session import CentralSession
from controller.config import CentralConfig

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
_BAD_PROTOCOL = (1, 132)  # CONNACK: unacceptable protocol version (3.1.1 / 5)


class MqttCentralLink:
    """``CentralLink`` over aiomqtt. Construct with ``build_central_link``."""

    def __init__(
        self,
        config: CentralConfig,
        site_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        keepalive_s: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.site_id = site_id
        self.session = CentralSession(
            config.prefix,
            site_id,
            telemetry_s=config.telemetry_s,
            offline_buffer=config.offline_buffer,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        # a silent network loss is seen after 1.5 keep-alives; the lease covers the rest
        self.keepalive_s = keepalive_s or max(5, min(60, round(3 * config.telemetry_s)))
        self._rng = rng or random.Random()
        self._protocol = aiomqtt.ProtocolVersion.V5
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.attempts = 0  # connection attempts in the current outage
        self.connects = 0  # successful connections, ever
        self._lost_logged = False

    # --- CentralLink -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.session.connected

    def lease(self) -> core.Lease | None:
        return self.session.lease()

    def take_commands(self) -> list[core.Command]:
        return self.session.take_commands()

    def take_events(self) -> list[core.Event]:
        return self.session.take_events()

    def seed_sequence(self, last_limit_sequence: int) -> None:
        self.session.seed_sequence(last_limit_sequence)

    def on_period(self, telemetry: dict[str, Any], results: list[core.CommandResult]) -> None:
        self.session.on_period(telemetry, results)
        self._wake.set()

    async def aclose(self) -> None:
        """Say ``offline`` (retained) if still connected and stop ``run``."""
        self._closing.set()
        self._wake.set()
        await self._say_offline()

    async def run(self) -> None:
        delay = self.reconnect_min_s
        while not self._closing.is_set():
            self.attempts += 1
            why = ""
            try:
                await self._connected_session()
            except aiomqtt.MqttCodeError as exc:
                why = str(exc)
                if exc.rc in _BAD_PROTOCOL and self._protocol == aiomqtt.ProtocolVersion.V5:
                    log.info("central broker refuses MQTT 5: using 3.1.1")
                    self._protocol = aiomqtt.ProtocolVersion.V311
                    continue
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
            except asyncio.CancelledError:
                await self._say_offline()
                raise
            except Exception as exc:  # a bug must not kill the controller: fallback + retry
                why = repr(exc)
                log.error("central link failed unexpectedly: %r", exc, exc_info=exc)
            finally:
                self._client = None
                self.session.set_connected(False, why or "closed")
            if self._closing.is_set():
                break
            if self.attempts == 0:  # it was up: the backoff starts again
                delay = self.reconnect_min_s
            if not self._lost_logged:
                log.warning(
                    "central link to %s:%d unavailable (%s): falling back, retrying with backoff",
                    self.config.host, self.config.port, why,
                )  # fmt: skip
                self._lost_logged = True
            else:
                log.debug("central link retry %d failed: %s", self.attempts, why)
            sleep_s = self._rng.uniform(delay / 2.0, delay)
            delay = min(self.reconnect_max_s, delay * 2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), sleep_s)

    async def _connected_session(self) -> None:
        async with self._make_client() as client:
            await client.subscribe(self.session.topics.cmd_limit, qos=1)
            await client.subscribe(self.session.topics.cmd_breaker, qos=1)
            self._client = client
            self.connects += 1
            if self._lost_logged:
                log.info(
                    "central link to %s:%d recovered after %d attempts",
                    self.config.host, self.config.port, self.attempts,
                )  # fmt: skip
            else:
                log.info("central link to %s:%d up", self.config.host, self.config.port)
            self._lost_logged = False
            self.attempts = 0
            self.session.set_connected(True)
            self._wake.set()
            reader = asyncio.create_task(self._reader(client), name="central-reader")
            writer = asyncio.create_task(self._writer(client), name="central-writer")
            closer = asyncio.create_task(self._closing.wait(), name="central-closer")
            tasks = {reader, writer, closer}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                why = "closing"
                for t in done:
                    if t is not closer and not t.cancelled() and t.exception() is not None:
                        why = str(t.exception()) or type(t.exception()).__name__
                # fallback at once, before the (possibly slow) disconnect below
                self.session.set_connected(False, why)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                if t is not closer:
                    t.result()  # the reader's/writer's MqttError ends this connection
            if self._closing.is_set():
                await self._say_offline()
            raise aiomqtt.MqttError("link closing")

    async def _reader(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, str):
                data = payload.encode()
            elif isinstance(payload, bytes | bytearray):
                data = bytes(payload)
            else:
                data = b""
            self.session.handle(message.topic.value, data)
            self._wake.set()
        raise aiomqtt.MqttError("message stream ended")

    async def _writer(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            item = self.session.peek()
            if item is None:
                await self._wake.wait()
                continue
            await client.publish(
                item.topic, item.payload, qos=item.qos, retain=item.retain,
                timeout=PUBLISH_TIMEOUT_S,
            )  # fmt: skip
            self.session.sent(item)

    async def _say_offline(self) -> None:
        client = self._client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
            await client.publish(
                self.session.topics.state, offline_state(), qos=1, retain=True, timeout=2.0
            )

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        tls: ssl.SSLContext | None = None
        if cfg.tls:
            tls = ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file is not None else None
            )
            if cfg.cert_file is not None:
                tls.load_cert_chain(
                    str(cfg.cert_file), str(cfg.key_file) if cfg.key_file is not None else None
                )
        password = cfg.password.get_secret_value()
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username or None,
            password=password or None,
            identifier="gridwarden-" + self.site_id,
            protocol=self._protocol,
            will=aiomqtt.Will(self.session.topics.state, offline_state(), qos=1, retain=True),
            keepalive=self.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_context=tls,
            # small messages both ways: no Nagle delay on acks and commands
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
