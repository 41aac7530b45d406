"""Helpers shared by the DNS sub-checks, and the ``dns`` probe's per-config resources."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, TypeVar, cast

from exporter.dnssec import Validator
from exporter.net.dnsmodel import DnsTempError
from exporter.probes.base import ProbeContext
from exporter.results import ProbeResult, Sample, sample

if TYPE_CHECKING:
    from exporter.probes.dns.replay import Replays

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


class DnsResources:
    """What the ``dns`` probe keeps across the runs of one config (made by the runtime): the
    DNSSEC validator with its zone cache (None with ``global.dnssec: false``) and the memory of
    each domain's last run (:mod:`exporter.probes.dns.replay`)."""

    def __init__(self, dnssec: Validator | None = None, replays: Replays | None = None) -> None:
        self.dnssec = dnssec
        self.replays = replays
        """None: every run is a full one (contexts made by hand in tests)."""

    async def aclose(self) -> None:
        if self.dnssec is not None:
            await self.dnssec.aclose()


DnsContext = ProbeContext[DnsResources]
"""The context every DNS sub-check gets."""


def checksum(domain: str, record: str, texts: Iterable[str]) -> Sample:
    """``deliverability_dns_record_checksum``: CRC-32 of the record set's normalized text.

    Normalized: each record's whitespace collapsed, records sorted, joined by newlines, so
    that reordering by the DNS server does not look like an edit.
    """
    normalized = "\n".join(sorted(" ".join(t.split()) for t in texts))
    return sample(
        "dns_record_checksum", zlib.crc32(normalized.encode()), domain=domain, record=record
    )


def dns_failure(what: str, exc: DnsTempError) -> ProbeResult:
    """A sub-check that could not tell: probe_success 0 with the reason, no finding."""
    return ProbeResult(error=f"{what}: DNS lookup failed: {exc}")


def published(result: ProbeResult, metric: str, **match: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``metric`` in ``result`` whose labels include ``match``: (labels, value).

    The sub-checks that run after the others (bulk-sender rules, baseline) read what the others
    published, so "could not tell" (no sample) stays distinguishable from a bad value."""
    out = []
    for s in result.samples:
        if s.metric == metric:
            labels = dict(s.labels)
            if all(labels.get(k) == v for k, v in match.items()):
                out.append((labels, s.value))
    return out


def current_state(result: ProbeResult, metric: str, label: str, **match: str) -> str | None:
    """The value of a state set that is 1 (None when none is, or the set was not published)."""
    for labels, value in published(result, metric, **match):
        if value == 1:
            return labels.get(label)
    return None


async def gather(*aws: Awaitable[T]) -> list[T]:
    """The results of ``aws``, run concurrently, in order: :func:`asyncio.gather` with the first
    awaited in the caller's own task, so one awaitable (one sending IP, one MX host, one PTR
    name: the common case) costs no task and no gathering future, and n cost n - 1 tasks.
    A ``dns`` run made about 21 tasks; each is about 8 us of CPU with its gathering
    (bench/README.md). If one raises, the others are cancelled (only a bug raises here: the
    sub-checks turn a DNS failure into their result)."""
    if len(aws) <= 1:
        return [await aw for aw in aws]
    tasks = [asyncio.ensure_future(aw) for aw in aws[1:]]
    try:
        out = [await aws[0]]
        for task in tasks:
            out.append(await task)
    except BaseException:
        for task in tasks:
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: raised by the await above or not wanted
        raise
    return out


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """:func:`gather` of two awaitables of different types."""
    a, b = await gather(first, second)
    return cast(A, a), cast(B, b)


async def gather_merged(parts: Iterable[Awaitable[ProbeResult]]) -> ProbeResult:
    """Run the parts of a check concurrently and merge their results, in order."""
    merged = ProbeResult()
    for part in await gather(*parts):
        merged.merge(part)
    return merged
