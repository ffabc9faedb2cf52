"""The CPO link: what the daemon holds to reach a CPO back office, whatever the protocol.

``CpoLink`` is the Protocol the daemon programs against (the bespoke REST API today, OSCP 2.0
later). ``PollingCpoLink`` implements it over any ``CpoTransport`` (``put_limit`` /
``get_demand``): it owns the policy, the transport owns the wire.

Policy, and why:

- ``submit_limit`` never awaits: it drops the order in a one-slot mailbox and wakes the
  sender. A newer order replaces a pending one (latest wins: an old limit is never worth
  sending once a newer exists). An exchange already on the wire is left to finish (it is
  bounded by the transport's total timeout) rather than cancelled: cancelling a PUT leaves
  its outcome unknown, and a steady stream of orders against a slow CPO would then never
  land one. The newest order therefore waits for at most one exchange.
- ``issued_at``/``valid_until`` are stamped with wall time when an order is first sent and
  kept for its retries, so a retry is byte-identical and the CPO can treat it as a replay.
- Retries: only retryable failures (``CpoUnreachable``, ``CpoBadResponse``), at most
  ``max_attempts`` per order, exponential backoff, abandoned at once when a newer order
  arrives or the order's validity has passed. Rejections (4xx) are not retried.
- Demand is polled every ``demand_poll_s`` on its own task, so a slow PUT never delays it.
- Reachability: failing exchanges for ``unreachable_after_s`` make the CPO unreachable;
  one success makes it reachable. A refused token (401/403) counts as a failure; another
  refusal of a limit (e.g. 409 stale sequence) proves the CPO is there and does not.
  Loss and recovery are logged once per episode.
- ``run()`` never raises except ``CancelledError``: an unexpected bug in a loop is logged
  with its traceback and the loop goes on after a pause.

Times: ``clock`` (monotonic) for everything the core sees; ``wall_clock`` only to stamp
orders and to convert the CPO's ``measured_at`` into an age. Scheduling uses the event
loop's own clock. Not thread-safe: call ``submit_limit`` from the loop's thread.
"""

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from controller.core.model import Demand
from controller.cpo.errors import (
    CpoAuthError,
    CpoBadResponse,
    CpoError,
    CpoRejected,
    CpoUnreachable,
)
from controller.cpo.models import (
    ERR_STALE_SEQUENCE,
    REASONS,
    Chargepoint,
    DemandReport,
    LimitAck,
    LimitRequest,
    utc,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ComplianceSample:
    """One demand report as received: what the site drew against what it was told.

    ``measured_at``/``received_at`` are on the controller's monotonic clock.
    ``requested_limit_kw`` is the last limit the CPO acknowledged before this report.
    """

    received_at: float
    measured_at: float
    demand_kw: float
    applied_limit_kw: float | None
    requested_limit_kw: float | None

    @property
    def excess_kw(self) -> float | None:
        """How far the reported demand is above the acknowledged limit (None if no limit)."""
        if self.requested_limit_kw is None:
            return None
        return self.demand_kw - self.requested_limit_kw


@dataclass(frozen=True, slots=True)
class CpoSnapshot:
    """What the link knows now, for the core (via ``demand()``), the HMI and telemetry."""

    reachable: bool
    demand_kw: float | None
    demand_measured_at: float | None
    """Monotonic time of the latest validated demand; never after its receipt."""
    applied_limit_kw: float | None
    acked_sequence: int | None
    """Highest sequence the CPO accepted."""
    last_error: str | None
    chargepoints: tuple[Chargepoint, ...] = ()
    acked_limit_kw: float | None = None
    """The limit of ``acked_sequence``."""
    pending_sequence: int | None = None
    """The newest order not yet acknowledged (waiting, on the wire or being retried)."""
    cpo_sequence: int | None = None
    """The CPO's current sequence from its last ``stale_sequence`` refusal: if it is above
    the controller's own, the controller's sequence store was reset."""
    compliance: tuple[ComplianceSample, ...] = field(default=(), repr=False)
    """Recent demand reports against the acknowledged limit, oldest first."""

    def demand(self) -> Demand | None:
        """The latest demand as the core's input type (None before the first report)."""
        if self.demand_kw is None or self.demand_measured_at is None:
            return None
        return Demand(self.demand_kw, self.demand_measured_at)

    def demand_age_s(self, now: float) -> float | None:
        if self.demand_measured_at is None:
            return None
        return max(0.0, now - self.demand_measured_at)


@runtime_checkable
class CpoLink(Protocol):
    """A link to one site's CPO back office."""

    def submit_limit(self, limit_kw: float, sequence: int, valid_for_s: float, reason: str) -> None:
        """Queue a limit to send; never blocks; the newest order supersedes a pending one."""
        ...

    def snapshot(self) -> CpoSnapshot: ...

    async def run(self) -> None:
        """Send orders and poll demand until cancelled; never raises otherwise."""
        ...

    async def aclose(self) -> None: ...


class CpoTransport(Protocol):
    """One exchange per call; raises ``CpoError`` subclasses only."""

    async def put_limit(self, request: LimitRequest) -> LimitAck: ...

    async def get_demand(self) -> DemandReport: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Order:
    limit_kw: float
    sequence: int
    valid_for_s: float
    reason: str
    submitted_at: float  # monotonic
    request: LimitRequest | None = None  # stamped on first send


class PollingCpoLink:
    """``CpoLink`` over a request/response transport (see the module docstring)."""

    def __init__(
        self,
        transport: CpoTransport,
        *,
        name: str = "CPO",
        demand_poll_s: float = 5.0,
        unreachable_after_s: float = 15.0,
        clock: Clock,
        wall_clock: Clock,
        max_attempts: int = 4,
        retry_base_s: float = 0.5,
        retry_max_s: float = 8.0,
        history_len: int = 720,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._transport = transport
        self._name = name
        self._poll_s = demand_poll_s
        self._unreachable_after_s = unreachable_after_s
        self._clock = clock
        self._wall = wall_clock
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._rng = rng if rng is not None else random.Random()
        self._pending: _Order | None = None
        self._inflight: _Order | None = None
        self._wake = asyncio.Event()
        self._failing_since: float | None = None
        self._loss_logged = False
        self._last_error: str | None = None
        self._report: DemandReport | None = None
        self._measured_at: float | None = None
        self._acked_sequence: int | None = None
        self._acked_limit_kw: float | None = None
        self._cpo_sequence: int | None = None
        self._history: deque[ComplianceSample] = deque(maxlen=history_len)

    # --- the daemon's side: synchronous, never blocks ---------------------------------------

    def submit_limit(self, limit_kw: float, sequence: int, valid_for_s: float, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
        if not limit_kw >= 0 or not valid_for_s > 0:
            raise ValueError("limit_kw must be >= 0 and valid_for_s > 0")
        if self._pending is not None:
            log.debug("%s: order %d superseded by %d", self._name, self._pending.sequence, sequence)
        self._pending = _Order(limit_kw, sequence, valid_for_s, reason, self._clock())
        self._wake.set()

    def snapshot(self) -> CpoSnapshot:
        rep = self._report
        pending = self._pending or self._inflight
        return CpoSnapshot(
            reachable=self._reachable(self._clock()),
            demand_kw=rep.demand_kw if rep is not None else None,
            demand_measured_at=self._measured_at,
            applied_limit_kw=rep.applied_limit_kw if rep is not None else None,
            acked_sequence=self._acked_sequence,
            last_error=self._last_error,
            chargepoints=rep.chargepoints if rep is not None else (),
            acked_limit_kw=self._acked_limit_kw,
            pending_sequence=pending.sequence if pending is not None else None,
            cpo_sequence=self._cpo_sequence,
            compliance=tuple(self._history),
        )

    # --- the long-running task ----------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._guarded(self._send_loop), name=f"{self._name}-send")
            tg.create_task(self._guarded(self._poll_loop), name=f"{self._name}-poll")

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _guarded(self, loop_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            try:
                await loop_fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: say it loudly, keep the link alive
                log.exception("%s: link task failed, restarting it in 1 s", self._name)
                self._last_error = f"internal: {type(exc).__name__}: {exc}"
                await asyncio.sleep(1.0)

    async def _send_loop(self) -> None:
        while True:
            while self._pending is None:
                await self._wake.wait()
                self._wake.clear()
            order, self._pending = self._pending, None
            self._inflight = order
            try:
                await self._deliver(order)
            finally:
                self._inflight = None

    async def _deliver(self, order: _Order) -> None:
        for attempt in range(1, self._max_attempts + 1):
            now = self._clock()
            if now >= order.submitted_at + order.valid_for_s:
                self._last_error = f"limit sequence {order.sequence} expired before delivery"
                return
            if order.request is None:
                issued = self._wall()
                order.request = LimitRequest(
                    limit_kw=order.limit_kw,
                    sequence=order.sequence,
                    reason=order.reason,  # type: ignore[arg-type]
                    issued_at=utc(issued),
                    valid_until=utc(issued + order.valid_for_s - (now - order.submitted_at)),
                )
            try:
                ack = await self._transport.put_limit(order.request)
            except CpoRejected as exc:
                self._on_rejected(order, exc)
                return
            except (CpoUnreachable, CpoBadResponse) as exc:
                self._on_failure(exc)
                if attempt == self._max_attempts:
                    log.debug("%s: gave up on sequence %d", self._name, order.sequence)
                    return
                delay = min(self._retry_max_s, self._retry_base_s * 2 ** (attempt - 1))
                delay *= 0.8 + 0.4 * self._rng.random()
                self._wake.clear()
                if self._pending is not None:
                    return  # a newer order is waiting: it replaces this one
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                if self._pending is not None:
                    return
            else:
                self._on_ack(ack)
                return

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                report = await self._transport.get_demand()
            except CpoError as exc:
                self._on_failure(exc)
            else:
                self._on_report(report)
            await asyncio.sleep(max(0.0, started + self._poll_s - loop.time()))

    # --- bookkeeping ----------------------------------------------------------------------------

    def _reachable(self, now: float) -> bool:
        since = self._failing_since
        return since is None or now - since < self._unreachable_after_s

    def _on_success(self) -> None:
        if self._loss_logged:
            log.info("%s: reachable again", self._name)
        self._failing_since = None
        self._loss_logged = False
        self._last_error = None

    def _on_failure(self, exc: CpoError) -> None:
        now = self._clock()
        self._last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = now
            log.debug("%s: exchange failed: %s", self._name, exc)
        if not self._loss_logged and not self._reachable(now):
            self._loss_logged = True
            log.warning(
                "%s: unreachable for %.0f s: %s", self._name, now - self._failing_since, exc
            )

    def _on_rejected(self, order: _Order, exc: CpoRejected) -> None:
        # The CPO answered, but this order did not land. A refused token means our limits
        # cannot land at all: that counts towards unreachable; any other refusal does not.
        if isinstance(exc, CpoAuthError):
            self._on_failure(exc)
        else:
            self._on_success()
            self._last_error = str(exc)
        if exc.code == ERR_STALE_SEQUENCE:
            current = exc.details.get("current_sequence")
            if isinstance(current, int):
                self._cpo_sequence = current
        log.warning("%s: limit sequence %d refused: %s", self._name, order.sequence, exc)

    def _on_ack(self, ack: LimitAck) -> None:
        self._on_success()
        if self._acked_sequence is None or ack.sequence >= self._acked_sequence:
            self._acked_sequence = ack.sequence
            self._acked_limit_kw = ack.limit_kw

    def _on_report(self, report: DemandReport) -> None:
        self._on_success()
        now_mono, now_wall = self._clock(), self._wall()
        age_s = max(0.0, now_wall - report.measured_at.timestamp())
        measured_at = now_mono - age_s
        if self._measured_at is not None and measured_at < self._measured_at:
            # an older report than the one we hold (a CPO cache): keep the newer one
            return
        self._report = report
        self._measured_at = measured_at
        self._history.append(
            ComplianceSample(
                received_at=now_mono,
                measured_at=measured_at,
                demand_kw=report.demand_kw,
                applied_limit_kw=report.applied_limit_kw,
                requested_limit_kw=self._acked_limit_kw,
            )
        )
