"""The CPO link against the CPO simulator over real HTTP(S) on loopback."""

import asyncio
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.cpo import (
    CpoAuthError,
    CpoBadResponse,
    CpoLink,
    CpoRejected,
    CpoUnreachable,
    LimitRequest,
    build_cpo_link,
)
from controller.cpo.rest import RestTransport
from controller.errors import ConfigError
from hil.cpo_sim import CpoSimulator, SiteSettings

from .helpers import SITE, TOKEN, LinkFactory, cpo_config, make_ca_and_server_cert, wait_for


def request(sequence: int, limit_kw: float = 20.0, valid_s: float = 60.0) -> LimitRequest:
    now = datetime.now(UTC)
    return LimitRequest(
        limit_kw=limit_kw,
        sequence=sequence,
        reason="curtail",
        issued_at=now,
        valid_until=now + timedelta(seconds=valid_s),
    )


def put_sequences(sim: CpoSimulator) -> list[int]:
    """Sequences of the PUT bodies the simulator received, in order (retries included)."""
    return [
        r.body["sequence"]
        for r in sim.requests
        if r.method == "PUT" and r.body is not None and "sequence" in r.body
    ]


async def test_a_limit_is_applied_and_reported_back(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    link = start_link()
    assert isinstance(link, CpoLink)
    link.submit_limit(12.5, 1, 60.0, "curtail")
    await wait_for(lambda: link.snapshot().acked_sequence == 1)
    site = sim.site(SITE)
    assert site.limit is not None and site.limit.limit_kw == 12.5
    assert site.limit.reason == "curtail"
    # validity stamped from wall time: valid_until about 60 s after issue
    body = next(r.body for r in sim.requests if r.method == "PUT")
    assert body is not None
    issued = datetime.fromisoformat(body["issued_at"])
    until = datetime.fromisoformat(body["valid_until"])
    assert 59.0 <= (until - issued).total_seconds() <= 60.0
    assert abs(issued.timestamp() - time.time()) < 5.0
    await wait_for(lambda: link.snapshot().applied_limit_kw == 12.5)
    snap = link.snapshot()
    assert snap.reachable and snap.last_error is None
    assert snap.acked_limit_kw == 12.5 and snap.pending_sequence is None
    assert len(snap.chargepoints) == 4
    assert snap.demand_kw is not None and snap.demand_kw <= 12.5 + 1e-6
    assert snap.demand_kw == pytest.approx(sum(cp.power_kw for cp in snap.chargepoints), abs=0.01)
    demand = snap.demand()
    assert demand is not None and demand.demand_kw == snap.demand_kw
    assert demand.measured_at <= time.monotonic()
    # the compliance view: reports after the ack carry the acknowledged limit
    assert snap.compliance and snap.compliance[-1].requested_limit_kw == 12.5
    assert snap.compliance[-1].excess_kw is not None and snap.compliance[-1].excess_kw <= 1e-6


async def test_latest_wins_under_a_slow_server(sim: CpoSimulator, start_link: LinkFactory) -> None:
    sim.faults.answer_delay_s = 0.3
    link = start_link(demand_poll_s=10.0)
    link.submit_limit(30.0, 1, 60.0, "normal")
    await wait_for(lambda: put_sequences(sim) == [1] or link.snapshot().pending_sequence == 1)
    await asyncio.sleep(0.05)  # sequence 1 is now on the wire
    for seq, kw in ((2, 25.0), (3, 20.0), (4, 15.0)):
        link.submit_limit(kw, seq, 60.0, "curtail")
    await wait_for(lambda: link.snapshot().acked_sequence == 4)
    assert put_sequences(sim) == [1, 4]  # 2 and 3 were superseded before they were sent
    site = sim.site(SITE)
    assert site.limit is not None and site.limit.limit_kw == 15.0
    assert [lim.sequence for lim in site.received] == [1, 4]


async def test_submit_never_waits_for_the_network(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.hang = True
    link = start_link(total_timeout_s=0.3, max_attempts=1)
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    for seq in range(1, 101):
        link.submit_limit(10.0, seq, 60.0, "curtail")
    assert time.perf_counter() - started < 0.05  # 100 submits, no awaiting
    await wait_for(lambda: link.snapshot().last_error is not None, 2.0)
    assert link.snapshot().acked_sequence is None


async def test_the_total_timeout_bounds_one_exchange(sim: CpoSimulator) -> None:
    sim.faults.hang = True
    async with RestTransport(sim.base_url, SITE, TOKEN, total_timeout_s=0.3) as transport:
        started = time.monotonic()
        with pytest.raises(CpoUnreachable, match=r"no answer within 0\.3 s"):
            await transport.put_limit(request(1))
        assert 0.25 <= time.monotonic() - started < 1.0


async def test_connection_refused_is_unreachable_and_quick() -> None:
    sim = CpoSimulator([SiteSettings(SITE)], token=TOKEN)
    url = await sim.start(port=0)
    await sim.stop()  # nothing listens on that port any more
    async with RestTransport(url, SITE, TOKEN, connect_timeout_s=0.5) as transport:
        started = time.monotonic()
        with pytest.raises(CpoUnreachable):
            await transport.get_demand()
        assert time.monotonic() - started < 1.0


async def test_retries_are_bounded(sim: CpoSimulator, start_link: LinkFactory) -> None:
    sim.faults.fail_status = 503
    link = start_link(max_attempts=3, demand_poll_s=10.0)
    link.submit_limit(10.0, 7, 60.0, "curtail")
    await wait_for(lambda: len(put_sequences(sim)) == 3)
    await asyncio.sleep(0.5)  # backoff is at most 0.2 s: a 4th attempt would have come
    assert put_sequences(sim) == [7, 7, 7]
    assert link.snapshot().acked_sequence is None
    assert "503" in (link.snapshot().last_error or "")


async def test_a_transient_failure_is_retried_with_the_same_body(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.fail_next = 2
    link = start_link(max_attempts=4, demand_poll_s=10.0)
    await asyncio.sleep(0.05)  # the first demand poll took one of the failures
    link.submit_limit(10.0, 7, 60.0, "curtail")
    await wait_for(lambda: link.snapshot().acked_sequence == 7)
    bodies = [r.body for r in sim.requests if r.method == "PUT"]
    assert 2 <= len(bodies) <= 3
    assert all(b == bodies[0] for b in bodies)  # a replay, byte for byte
    assert [r.status for r in sim.requests if r.method == "PUT"][-1] == 200


async def test_a_newer_limit_stops_the_retries_of_an_older_one(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.fail_status = 503
    link = start_link(max_attempts=10, retry_base_s=2.0, retry_max_s=2.0, demand_poll_s=10.0)
    link.submit_limit(10.0, 1, 60.0, "curtail")
    await wait_for(lambda: put_sequences(sim) == [1])  # failed once, now backing off ~2 s
    sim.faults.fail_status = None
    link.submit_limit(8.0, 2, 60.0, "emergency")
    await wait_for(lambda: link.snapshot().acked_sequence == 2, 1.0)  # not after the backoff
    await asyncio.sleep(0.1)
    assert put_sequences(sim) == [1, 2]  # sequence 1 was abandoned, not retried
    assert sim.site(SITE).limit is not None and sim.site(SITE).limit.sequence == 2  # type: ignore[union-attr]


async def test_an_order_past_its_validity_is_not_sent(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    fake = [1000.0]
    link = start_link(clock=lambda: fake[0], demand_poll_s=10.0)
    sim.faults.answer_delay_s = 0.2
    link.submit_limit(10.0, 1, 5.0, "curtail")  # goes on the wire now
    await asyncio.sleep(0.05)
    link.submit_limit(9.0, 2, 5.0, "curtail")  # waits behind it...
    fake[0] += 10.0  # ...and lapses while waiting
    await wait_for(lambda: link.snapshot().acked_sequence == 1)
    await asyncio.sleep(0.3)
    assert put_sequences(sim) == [1]
    assert "expired" in (link.snapshot().last_error or "")


async def test_unreachable_after_failures_then_recovered(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    link = start_link(total_timeout_s=0.2, unreachable_after_s=0.4)
    await wait_for(lambda: link.snapshot().demand_kw is not None)
    sim.faults.fail_status = 503
    await asyncio.sleep(0.2)
    assert link.snapshot().reachable  # failing, but not for long enough yet
    await wait_for(lambda: not link.snapshot().reachable, 2.0)
    sim.faults.fail_status = None
    await wait_for(lambda: link.snapshot().reachable, 2.0)
    assert link.snapshot().last_error is None


async def test_https_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sim = CpoSimulator([SiteSettings(SITE, response_delay_s=0.0)], token=TOKEN)
    url = await sim.start(port=0, ssl_context=server_ctx)
    try:
        assert url.startswith("https://127.0.0.1:")
        link = build_cpo_link(cpo_config(url, ca_file=ca, demand_poll_s=0.05), SITE)
        task = asyncio.create_task(link.run())
        try:
            link.submit_limit(9.0, 1, 60.0, "curtail")
            await wait_for(lambda: link.snapshot().acked_sequence == 1)
            await wait_for(lambda: link.snapshot().demand_kw is not None)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await link.aclose()
        # the system store does not know the private CA: refused, not silently accepted
        async with RestTransport(url, SITE, TOKEN) as untrusting:
            with pytest.raises(CpoUnreachable, match="certificate"):
                await untrusting.get_demand()
    finally:
        await sim.stop()


async def test_a_wrong_token_is_an_auth_error(sim: CpoSimulator, start_link: LinkFactory) -> None:
    async with RestTransport(sim.base_url, SITE, "wrong") as transport:
        with pytest.raises(CpoAuthError) as info:
            await transport.get_demand()
    assert info.value.status == 401 and info.value.code == "unauthorized"
    link = start_link(token="wrong", unreachable_after_s=0.3)
    link.submit_limit(10.0, 1, 60.0, "curtail")
    await wait_for(lambda: "401" in (link.snapshot().last_error or ""))
    assert link.snapshot().acked_sequence is None and link.snapshot().demand_kw is None
    await wait_for(lambda: not link.snapshot().reachable, 2.0)  # limits cannot land


async def test_a_stale_sequence_is_refused_with_the_cpo_sequence(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    async with RestTransport(sim.base_url, SITE, TOKEN) as transport:
        ack = await transport.put_limit(request(5))
        assert ack.sequence == 5
        with pytest.raises(CpoRejected) as info:
            await transport.put_limit(request(3))
        assert info.value.status == 409 and info.value.code == "stale_sequence"
        assert info.value.details == {"current_sequence": 5}
        with pytest.raises(CpoRejected) as info:
            await transport.put_limit(request(5, limit_kw=1.0))
        assert info.value.code == "sequence_conflict"
        replay = request(5)
        assert (await transport.put_limit(replay)).sequence == 5
    assert [lim.sequence for lim in sim.site(SITE).received] == [5]
    link = start_link(demand_poll_s=10.0)
    link.submit_limit(10.0, 4, 60.0, "curtail")  # a controller whose store was reset
    await wait_for(lambda: link.snapshot().cpo_sequence == 5)
    snap = link.snapshot()
    assert snap.acked_sequence is None and snap.reachable
    assert "stale_sequence" in (snap.last_error or "")


async def test_a_malformed_demand_is_a_typed_error_and_the_link_survives(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.malformed_demand = True
    async with RestTransport(sim.base_url, SITE, TOKEN) as transport:
        with pytest.raises(CpoBadResponse, match="malformed DemandReport"):
            await transport.get_demand()
    link = start_link()
    await wait_for(lambda: "malformed" in (link.snapshot().last_error or ""))
    assert link.snapshot().demand_kw is None
    sim.faults.malformed_demand = False
    await wait_for(lambda: link.snapshot().demand_kw is not None)


async def test_an_unknown_site_is_refused(sim: CpoSimulator) -> None:
    async with RestTransport(sim.base_url, "nope", TOKEN) as transport:
        with pytest.raises(CpoRejected) as info:
            await transport.get_demand()
    assert info.value.status == 404 and info.value.code == "unknown_site"


async def test_measured_at_becomes_an_age_on_the_monotonic_clock(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.stale_measured_at_s = 30.0
    link = start_link()
    await wait_for(lambda: link.snapshot().demand_measured_at is not None)
    age = time.monotonic() - link.snapshot().demand_measured_at  # type: ignore[operator]
    assert 29.0 < age < 32.0
    assert link.snapshot().demand_age_s(time.monotonic()) == pytest.approx(age, abs=0.5)


async def test_a_cpo_clock_ahead_never_dates_demand_in_the_future(
    sim: CpoSimulator, start_link: LinkFactory
) -> None:
    sim.faults.stale_measured_at_s = -120.0  # the CPO's clock runs two minutes ahead
    link = start_link()
    await wait_for(lambda: link.snapshot().demand_measured_at is not None)
    assert link.snapshot().demand_measured_at <= time.monotonic()  # type: ignore[operator]


def test_submit_refuses_an_unknown_reason(sim: CpoSimulator) -> None:
    link = build_cpo_link(cpo_config(sim.base_url), SITE)
    with pytest.raises(ValueError, match="reason"):
        link.submit_limit(10.0, 1, 60.0, "panic")
    with pytest.raises(ValueError):
        link.submit_limit(-1.0, 1, 60.0, "normal")


async def test_build_reads_the_token_file(tmp_path: Path, sim: CpoSimulator) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    cfg = cpo_config(sim.base_url, token="", token_file=token_file)
    link = build_cpo_link(cfg, SITE)
    task = asyncio.create_task(link.run())
    try:
        await wait_for(lambda: link.snapshot().demand_kw is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.aclose()
    with pytest.raises(ConfigError, match=r"cpo\.token_file"):
        build_cpo_link(cpo_config(sim.base_url, token_file=tmp_path / "missing"), SITE)
