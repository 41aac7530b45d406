"""The shared DNS transport and short-lived cache (:class:`exporter.net.dnsclient.SharedDns`).

Against the real loopback test server: answers read exactly as the plain dnspython path reads
them (records, NXDOMAIN, NODATA, CNAME chains, truncation then TCP, SERVFAIL and timeouts as
temporary failures), and runs that share a :class:`SharedDns` ask a name once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
from dnsserver import DnsServer
from hypothesis import given
from hypothesis import strategies as st

from exporter.net.addr import is_ip_address
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsshared import SharedDns
from exporter.net.limiter import Limiter


@pytest.fixture
def server(dns_server: DnsServer) -> DnsServer:
    dns_server.add_txt("a.example", "v=spf1 -all")
    dns_server.add("www.example", "CNAME", "host.example.")
    dns_server.add("host.example", "A", "192.0.2.1")
    dns_server.add("nodata.example", "A", "192.0.2.2")
    dns_server.add_txt("big.example", "x" * 3000)  # over any UDP payload: TC, then TCP
    dns_server.servfail.add("broken.example")
    dns_server.timeout.add("slow.example")
    return dns_server


def _clients(server: DnsServer, n: int = 1) -> tuple[list[DnsClient], list[DnsClient]]:
    resolver = make_resolver([server.address], attempt_timeout=0.3, lifetime=0.6)
    shared = SharedDns(resolver)
    assert shared.enabled
    shared.acquire()
    return (
        [DnsClient(resolver, shared=shared) for _ in range(n)],
        [DnsClient(resolver) for _ in range(n)],
    )


async def test_answers_read_as_the_resolver_reads_them(server: DnsServer) -> None:
    (fast,), (plain,) = _clients(server)
    for name, rdtype in [
        ("a.example", "TXT"),
        ("www.example", "A"),
        ("nodata.example", "TXT"),
        ("missing.example", "A"),
        ("big.example", "TXT"),
    ]:
        ours, theirs = await fast.query(name, rdtype), await plain.query(name, rdtype)
        assert (ours.status, ours.canonical_name) == (theirs.status, theirs.canonical_name)
        assert sorted(r.to_text() for r in ours.rdatas) == sorted(
            r.to_text() for r in theirs.rdatas
        )
    assert (await fast.query("www.example", "A")).canonical_name == "host.example"
    assert (await fast.query("big.example", "TXT")).texts() == ["x" * 3000]
    assert (await fast.query("missing.example", "A")).status == "nxdomain"
    assert (await fast.query("nodata.example", "TXT")).status == "nodata"


async def test_temporary_failures_are_errors_and_not_shared(server: DnsServer) -> None:
    (one, two), _ = _clients(server, 2)
    with pytest.raises(DnsTempError, match="SERVFAIL"):
        await one.query("broken.example", "TXT")
    with pytest.raises(DnsTempError, match="timeout"):
        await one.query("slow.example", "TXT")
    broken = ("broken.example", "TXT")
    before = server.queries.count(broken)  # (retries of slow.example may still arrive)
    with pytest.raises(DnsTempError, match="SERVFAIL"):
        await two.query("broken.example", "TXT")
    assert server.queries.count(broken) == before + 1  # asked again: failures are never cached


async def test_runs_sharing_it_ask_a_name_once(server: DnsServer) -> None:
    clients, _ = _clients(server, 5)
    answers = await asyncio.gather(*(c.query("a.example", "TXT") for c in clients))
    assert {a.texts()[0] for a in answers} == {"v=spf1 -all"}
    assert server.queries.count(("a.example", "TXT")) == 1
    assert sum(c.stats.queries for c in clients) == 1
    assert sum(c.stats.cache_hits for c in clients) == 4
    await clients[0].query("a.example", "TXT")  # its own per-run cache
    later = DnsClient(clients[0].resolver, shared=clients[0].shared)
    await later.query("a.example", "TXT")  # within SHARED_MAX_AGE: shared
    assert server.queries.count(("a.example", "TXT")) == 1


async def test_shared_answers_expire(server: DnsServer) -> None:
    resolver = make_resolver([server.address], attempt_timeout=0.3, lifetime=0.6)
    shared = SharedDns(resolver, max_age=0.05)
    shared.acquire()
    await DnsClient(resolver, shared=shared).query("a.example", "TXT")
    await asyncio.sleep(0.1)
    await DnsClient(resolver, shared=shared).query("a.example", "TXT")
    assert server.queries.count(("a.example", "TXT")) == 2
    shared.release()


async def test_forgotten_answers_are_asked_again(server: DnsServer) -> None:
    (one,), _ = _clients(server)
    await one.query("a.example", "TXT")
    assert one.shared is not None
    one.shared.forget()
    await DnsClient(one.resolver, shared=one.shared).query("a.example", "TXT")
    assert server.queries.count(("a.example", "TXT")) == 2


async def test_query_both_gives_each_answer_or_its_failure(server: DnsServer) -> None:
    (one,), _ = _clients(server)
    a, txt = await one.query_both("host.example", "A", "TXT")
    assert not isinstance(a, DnsTempError) and a.addresses() == ["192.0.2.1"]
    assert not isinstance(txt, DnsTempError) and txt.status == "nodata"
    ok, failed = await one.query_both("a.example", "TXT", "AAAA")
    assert not isinstance(ok, DnsTempError) and ok.texts() == ["v=spf1 -all"]
    assert not isinstance(failed, DnsTempError)
    broken = await one.query_both("broken.example", "A", "TXT")
    assert all(isinstance(b, DnsTempError) and "SERVFAIL" in str(b) for b in broken)
    # What the run (or another run, lately) already has is not asked again.
    before = len(server.queries)
    again = await DnsClient(one.resolver, shared=one.shared).query_both("host.example", "A", "TXT")
    assert again == (a, txt)
    assert len(server.queries) == before


def test_refused_nameserver_leaves_no_unretrieved_future() -> None:
    """ICMP 'port unreachable' fails every pending question on the socket, including ones
    whose asker already gave up: those must not be logged as 'never retrieved'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "check", "--nameserver", dead,
         "a.example", "b.example", "c.example"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not tell" in result.stdout
    assert "never retrieved" not in result.stdout + result.stderr


@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.text(alphabet="0123456789abcdefABCDEF.:%-xyz", max_size=45),
        st.text(max_size=20),
    )
)
def test_is_ip_address_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert is_ip_address(text) is expected


async def test_txt_split_inside_a_utf8_character_reads_back_whole(server: DnsServer) -> None:
    value = "v=spf1 " + "a" * 247 + "é€" + " -all"  # the 255-byte split falls inside "é"
    server.add_txt("utf8.example", value)
    (fast,), _ = _clients(server)
    assert (await fast.query("utf8.example", "TXT")).texts() == [value]


async def _until(condition: Callable[[], bool]) -> None:
    """Poll what the server thread records (no event to wait for), for up to 2 s."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met within 2 s")


async def test_a_cancelled_asker_does_not_fail_the_runs_waiting_for_its_answer(
    server: DnsServer,
) -> None:
    server.add_txt("late.example", "v=spf1 ~all")
    server.timeout.add("late.example")  # the first question gets no reply
    (first, second), _ = _clients(server, 2)
    asking = asyncio.create_task(first.query("late.example", "TXT"))
    await _until(lambda: ("late.example", "TXT") in server.queries)
    waiting = asyncio.create_task(second.query("late.example", "TXT"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    server.timeout.discard("late.example")
    asking.cancel()  # as when its run times out
    answer = await asyncio.wait_for(waiting, 2)
    assert answer.texts() == ["v=spf1 ~all"]
    assert second.stats.queries == 1  # it asked again itself
    assert server.queries.count(("late.example", "TXT")) == 2
    with pytest.raises(asyncio.CancelledError):
        await asking


async def test_a_cancelled_waiter_is_cancelled_and_the_asker_still_answers(
    server: DnsServer,
) -> None:
    server.add_txt("late2.example", "v=spf1 ~all")
    server.timeout.add("late2.example")
    (first, second), _ = _clients(server, 2)
    asking = asyncio.create_task(first.query("late2.example", "TXT"))
    await _until(lambda: ("late2.example", "TXT") in server.queries)
    waiting = asyncio.create_task(second.query("late2.example", "TXT"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    server.timeout.discard("late2.example")  # the asker's retry (after 0.3 s) is answered
    assert (await asyncio.wait_for(asking, 2)).texts() == ["v=spf1 ~all"]


async def test_limiter_admits_at_most_its_limit_in_arrival_order() -> None:
    limiter = Limiter(2)
    inside: list[int] = []
    peak = 0
    order: list[int] = []
    gate = asyncio.Event()

    async def holder(i: int) -> None:
        nonlocal peak
        async with limiter:
            order.append(i)
            inside.append(i)
            peak = max(peak, len(inside))
            await gate.wait()
            inside.remove(i)

    tasks = [asyncio.create_task(holder(i)) for i in range(6)]
    await asyncio.sleep(0.01)
    assert order == [0, 1]
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4, 5]
    assert peak == 2
    assert limiter.free == 2


async def test_limiter_cancelled_waiters_give_back_their_place_and_slot() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    queued = asyncio.create_task(limiter.acquire())
    handed = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.01)
    queued.cancel()  # cancelled while waiting: leaves the queue
    with pytest.raises(asyncio.CancelledError):
        await queued
    limiter.release()  # the slot goes to `handed`...
    handed.cancel()  # ...which is cancelled before it runs: the slot is passed on
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert limiter.free == 1
    async with asyncio.timeout(1):
        await limiter.acquire()
    assert limiter.free == 0
