"""Resource accounting for fault and soak tests: open file descriptors, asyncio tasks, memory.

A run that leaks grows one of these by a little every repetition; a run that does not stays
flat once caches and pools are warm. :func:`repeat_flat` runs a coroutine factory for a warm-up,
takes a :class:`Usage` snapshot, runs it hundreds of times more and compares.

Memory is judged two ways: the number of objects the garbage collector tracks (exact and
deterministic: a leak of one object per run shows as hundreds) and the process RSS (coarse: the
allocator keeps freed pages, so only a generous bound is meaningful).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    fds: int
    tasks: int
    objects: int
    rss_kib: int

    def __str__(self) -> str:
        return (
            f"fds={self.fds} tasks={self.tasks} objects={self.objects} "
            f"rss={self.rss_kib / 1024:.1f}MiB"
        )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def usage() -> Usage:
    gc.collect()
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = 0
    return Usage(open_fds(), tasks, len(gc.get_objects()), rss_kib())


@dataclass(frozen=True)
class Limits:
    """How much growth is tolerated between the warm snapshot and the end."""

    fds: int = 2
    tasks: int = 0
    objects: int = 3000
    rss_kib: int = 24 * 1024


async def settle() -> None:
    """Let callbacks scheduled by closing transports run (a closed socket is freed on the next
    loop iterations, not at once)."""
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


async def repeat_flat(
    run_once: Callable[[], Awaitable[object]],
    *,
    warmup: int = 20,
    repeat: int = 200,
    batch: int = 1,
    limits: Limits = Limits(),
) -> tuple[Usage, Usage]:
    """Run ``run_once`` ``warmup`` times, snapshot, ``repeat`` more times (``batch`` at once),
    snapshot again and assert nothing grew beyond ``limits``. Returns both snapshots."""

    async def rounds(count: int) -> None:
        done = 0
        while done < count:
            n = min(batch, count - done)
            await asyncio.gather(*(run_once() for _ in range(n)))
            done += n

    await rounds(warmup)
    await settle()
    before = usage()
    await rounds(repeat)
    await settle()
    after = usage()
    assert after.fds <= before.fds + limits.fds, f"file descriptors grew: {before} -> {after}"
    assert after.tasks <= before.tasks + limits.tasks, f"tasks grew: {before} -> {after}"
    assert after.objects <= before.objects + limits.objects, f"objects grew: {before} -> {after}"
    assert after.rss_kib <= before.rss_kib + limits.rss_kib, f"RSS grew: {before} -> {after}"
    return before, after
