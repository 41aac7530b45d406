"""The per-config zone cache: one computation for concurrent askers, deadlines, failures."""

from __future__ import annotations

import asyncio

import dns.name
import pytest

from exporter.dnssec.model import Status, ZoneState
from exporter.dnssec.zonecache import ZoneCache
from exporter.net.dnsmodel import DnsTempError

NAME = dns.name.from_text("example.test.")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(until: float) -> ZoneState:
    return ZoneState(Status.SECURE, NAME, until=until)


async def test_concurrent_askers_share_one_computation() -> None:
    clock = Clock()
    cache = ZoneCache(clock)
    calls = 0
    gate = asyncio.Event()

    async def compute() -> ZoneState:
        nonlocal calls
        calls += 1
        await gate.wait()
        return state(clock.now + 60)

    tasks = [asyncio.create_task(cache.get(NAME, compute)) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert (cache.misses, cache.hits) == (1, 49)


async def test_kept_until_its_deadline() -> None:
    clock = Clock()
    cache = ZoneCache(clock)
    calls = 0

    async def compute() -> ZoneState:
        nonlocal calls
        calls += 1
        return state(clock.now + 60)

    await cache.get(NAME, compute)
    clock.now += 59
    await cache.get(NAME, compute)
    assert calls == 1
    clock.now += 2
    await cache.get(NAME, compute)
    assert calls == 2


async def test_already_expired_states_are_not_kept() -> None:
    clock = Clock()
    cache = ZoneCache(clock)
    await cache.get(NAME, lambda: _value(state(clock.now)))
    assert len(cache) == 0


async def _value(value: ZoneState) -> ZoneState:
    return value


async def test_could_not_tell_is_shared_with_waiters_but_not_kept() -> None:
    clock = Clock()
    cache = ZoneCache(clock)
    gate = asyncio.Event()
    calls = 0

    async def failing() -> ZoneState:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise DnsTempError("example.test.", "DS", "timeout")

    tasks = [asyncio.create_task(cache.get(NAME, failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, DnsTempError) for r in results)
    assert calls == 1
    await cache.get(NAME, lambda: _value(state(clock.now + 60)))  # the next run asks again
    assert len(cache) == 1


async def test_cancelled_computation_is_taken_over_by_a_waiter() -> None:
    clock = Clock()
    cache = ZoneCache(clock)
    started = asyncio.Event()

    async def slow() -> ZoneState:
        started.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    first = asyncio.create_task(cache.get(NAME, slow))
    await started.wait()
    waiter = asyncio.create_task(cache.get(NAME, lambda: _value(state(clock.now + 60))))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await waiter).until == clock.now + 60


async def test_bounded_and_cleared() -> None:
    clock = Clock()
    cache = ZoneCache(clock, max_entries=3)
    for i in range(5):
        await cache.get(dns.name.from_text(f"z{i}.test."), lambda: _value(state(clock.now + 60)))
    assert len(cache) == 3
    cache.clear()
    assert len(cache) == 0
