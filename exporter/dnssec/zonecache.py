"""Conclusions about zones kept across the runs of one config, each until its own deadline.

A thousand monitored domains under one parent validate the parent's DS and DNSKEY records once:
the first run to need a zone works it out, runs asking at the same time wait for that answer, and
later runs reuse it until the deadline the validator gave it (the records' TTL, the signatures'
expiration, a cap). A failure to tell (:class:`~exporter.net.dnsmodel.DnsTempError`) is shared only
with the runs already waiting for it, never kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import dns.name

from exporter.dnssec.model import ZoneState


class ZoneCache:
    """Zone states by name, computed once even when asked concurrently."""

    def __init__(self, clock: Callable[[], float], max_entries: int = 100_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._done: OrderedDict[dns.name.Name, ZoneState] = OrderedDict()
        self._pending: dict[dns.name.Name, asyncio.Future[ZoneState]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def clear(self) -> None:
        self._done.clear()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.cancel()

    async def get(
        self, name: dns.name.Name, compute: Callable[[], Awaitable[ZoneState]]
    ) -> ZoneState:
        while True:
            hit = self._done.get(name)
            if hit is not None:
                if hit.until > self.clock():
                    self.hits += 1
                    return hit
                del self._done[name]
            pending = self._pending.get(name)
            if pending is None:
                break
            try:
                self.hits += 1
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    continue  # the run computing it was cancelled, not this one: compute again
                raise
        self.misses += 1
        fut: asyncio.Future[ZoneState] = asyncio.get_running_loop().create_future()
        self._pending[name] = fut
        try:
            state = await compute()
        except BaseException as exc:
            if self._pending.get(name) is fut:
                del self._pending[name]
            if not fut.done():
                if isinstance(exc, Exception):
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: nobody may be waiting
                else:
                    fut.cancel()
            raise
        if self._pending.get(name) is fut:
            del self._pending[name]
        self._keep(name, state)
        if not fut.done():
            fut.set_result(state)
        return state

    def _keep(self, name: dns.name.Name, state: ZoneState) -> None:
        if state.until <= self.clock():
            return
        self._done.pop(name, None)
        self._done[name] = state
        while len(self._done) > self.max_entries:
            self._done.popitem(last=False)
