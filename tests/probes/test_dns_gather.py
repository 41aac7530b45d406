"""exporter/probes/dns/common.py gather(): asyncio.gather's results with fewer tasks."""

from __future__ import annotations

import asyncio

import pytest

from exporter.probes.dns.common import gather


async def _after(delay: float, value: int, log: list[int]) -> int:
    await asyncio.sleep(delay)
    log.append(value)
    return value


async def test_results_in_order_and_run_concurrently() -> None:
    log: list[int] = []
    assert await gather(_after(0.03, 1, log), _after(0.0, 2, log), _after(0.01, 3, log)) == [
        1,
        2,
        3,
    ]
    assert log == [2, 3, 1]
    assert await gather() == []


async def test_one_awaitable_runs_in_the_callers_task() -> None:
    async def which() -> asyncio.Task[object] | None:
        return asyncio.current_task()

    assert await gather(which()) == [asyncio.current_task()]
    first, second = await gather(which(), which())
    assert first is asyncio.current_task() and second is not first


async def test_a_failure_cancels_the_others() -> None:
    log: list[int] = []

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await gather(fail(), _after(0.05, 2, log))
    await asyncio.sleep(0.08)
    assert log == []
