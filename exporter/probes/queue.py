"""The ``queue`` probe: is mail waiting where it should be moving? One target per ``queues`` entry.

- ``kind: postfix`` — this host's Postfix queue through ``postqueue -j``
  (:mod:`exporter.probes.queue_postfix`): messages per queue (``maildrop incoming active deferred
  hold``), the age of each queue's oldest message, and the most frequent reasons of deferral.
- ``kind: rq`` / ``kind: celery`` — the application's mail jobs on Redis
  (:mod:`exporter.probes.queue_redis`): jobs waiting per queue; for RQ also the oldest job's age,
  the failed-job registry and the live workers.

Findings (thresholds per entry, ``thresholds:``, defaults in
:class:`exporter.config.QueueThresholds`): the oldest waiting item is older than ``oldest_age``
(RQ queues, Postfix ``incoming`` and ``maildrop``: a deferred message is old by nature, and the
active queue holds deferred mail again at every retry); the deferred queue holds ``deferred``
messages or more; messages are on hold; an RQ queue has jobs and no live worker (critical once
it grew since that was first seen); the failed-job registry grew; a Redis queue grew at each of
the last ``growing_runs`` runs; a configured queue that neither RQ nor kombu knows (a typo?).

Growth needs what the previous runs saw: :class:`QueueResources`, the probe kind's per-config
resources, keeps it (with the Redis clients) for as long as the config is loaded. ``check``
runs once, so it never reports growth.

Could not tell (``probe_success`` 0, the reason and its fix in the error): postqueue missing,
not allowed, failing, too slow or printing what is not a queued message; Redis unreachable,
refusing the password, sending replies of a shape Redis never sends, a key of another type
(queue, worker set or hash, job hash, kombu binding), or a Celery list whose next message is
not a kombu message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from exporter.config import Config, QueueConfig
from exporter.net.network import Network
from exporter.net.redisurl import display_redis_url
from exporter.probes.base import ProbeContext
from exporter.probes.queue_postfix import (
    PostfixQueue,
    PostqueueError,
    list_queue,
    postqueue_command,
)
from exporter.results import Finding, ProbeResult, Table, Target, sample

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from exporter.probes.queue_redis import RedisQueues

AGED_POSTFIX_QUEUES = ("incoming", "maildrop")
"""Postfix queues whose oldest message is judged against ``oldest_age``."""
TOP_REASONS = 10


@dataclass
class QueueMemory:
    """What the previous runs of one target saw, per queue."""

    depths: dict[str, deque[int]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    unattended: dict[str, int] = field(default_factory=dict)
    """RQ queues seen with jobs and no worker: the depth when that was first seen."""


class QueueResources:
    """Per config: one Redis client (connection pool) per entry, and each target's memory.
    Made by the runtime for each loaded config and closed when it is replaced."""

    def __init__(self) -> None:
        self.memory: dict[str, QueueMemory] = {}
        self._clients: dict[str, Redis] = {}

    def memory_of(self, target: str) -> QueueMemory:
        return self.memory.setdefault(target, QueueMemory())

    def client(self, entry: QueueConfig, password: str | None, timeout: float) -> Redis:
        from exporter.probes.queue_redis import make_client

        client = self._clients.get(entry.name)
        if client is None:
            client = self._clients[entry.name] = make_client(entry, password, timeout)
        return client

    async def drop_client(self, name: str) -> None:
        """Forget a client after an error: the next run connects (and reads the secret) anew."""
        client = self._clients.pop(name, None)
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        for name in list(self._clients):
            await self.drop_client(name)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def humanize(seconds: float) -> str:
    s = int(max(0.0, seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{s // 60}m" if s >= 60 else f"{s}s"


def _age_finding(entry: QueueConfig, queue: str, age: float, what: str) -> Finding | None:
    th = entry.thresholds
    if age < th.oldest_age:
        return None
    critical = age >= th.oldest_age_critical
    return Finding(
        "queue_oldest_too_old",
        f"the oldest {what} in {queue} has waited {humanize(age)} (warning from"
        f" {humanize(th.oldest_age)}, critical from {humanize(th.oldest_age_critical)})",
        subject=queue,
        severity="critical" if critical else "warning",
    )


# ----- postfix -----------------------------------------------------------------------------------


def postfix_result(
    entry: QueueConfig, target: str, listing: PostfixQueue, now: float
) -> ProbeResult:
    result = ProbeResult()
    th = entry.thresholds
    for queue in sorted(listing.depth):
        result.samples.append(
            sample("queue_depth", listing.depth[queue], target=target, queue=queue)
        )
    for queue, arrival in sorted(listing.oldest_arrival.items()):
        age = max(0.0, now - arrival)
        result.samples.append(sample("queue_oldest_age_seconds", age, target=target, queue=queue))
        if queue in AGED_POSTFIX_QUEUES and (f := _age_finding(entry, queue, age, "message")):
            result.findings.append(f)
    reasons = listing.top_reasons(TOP_REASONS)
    deferred = listing.depth.get("deferred", 0)
    if deferred >= th.deferred:
        top = reasons[0] if reasons else None
        why = (
            f"; most frequent reason: {top.remote or '-'} {top.status} ({top.recipients}"
            f" recipients)"
            if top
            else ""
        )
        result.findings.append(Finding(
            "postfix_deferred_high",
            f"{_n(deferred, 'message')} in the deferred queue (warning from {th.deferred}, critical"
            f" from {th.deferred_critical}){why}",
            subject="deferred",
            severity="critical" if deferred >= th.deferred_critical else "warning",
        ))  # fmt: skip
    if listing.depth.get("hold", 0):
        result.findings.append(Finding(
            "postfix_hold", f"{_n(listing.depth['hold'], 'message')} on hold", subject="hold"
        ))  # fmt: skip
    result.details["queues"] = " · ".join(f"{q} {n}" for q, n in sorted(listing.depth.items()))
    if listing.oldest_arrival:
        result.details["oldest message"] = " · ".join(
            f"{q} {humanize(now - t)}" for q, t in sorted(listing.oldest_arrival.items())
        )
    if reasons:
        result.tables.append(Table(
            "Top deferral reasons",
            ("remote host", "status", "recipients", "example"),
            tuple((r.remote or "-", r.status, str(r.recipients), r.example) for r in reasons),
            note=f"{listing.deferred_recipients} deferred recipients in all; mail addresses"
            " shortened to their domain",
        ))  # fmt: skip
    if listing.warnings:
        result.details["postqueue warnings"] = "\n".join(listing.warnings)
    return result


async def run_postfix(entry: QueueConfig, target: str, time_limit: float) -> ProbeResult:
    try:
        command = postqueue_command(entry.postqueue_path, entry.postfix_config_dir)
        # A deadline of our own, inside the runner's, so the error says what was slow.
        listing = await list_queue(command, time_limit=time_limit * 0.9)
    except PostqueueError as exc:
        return ProbeResult(error=str(exc))
    result = postfix_result(entry, target, listing, time.time())
    result.details["command"] = " ".join(command)
    return result


# ----- redis -------------------------------------------------------------------------------------


def _grew(history: deque[int] | None, depth: int, runs: int) -> bool:
    """The depth rose at each of the last ``runs`` runs (``history`` excludes this run)."""
    if history is None or len(history) < runs:
        return False
    seq = [*list(history)[-runs:], depth]
    return all(b > a for a, b in itertools.pairwise(seq))


def redis_result(
    entry: QueueConfig, target: str, data: RedisQueues, memory: QueueMemory, now: float
) -> ProbeResult:
    result = ProbeResult()
    th = entry.thresholds
    rq = entry.kind == "rq"
    if data.workers is not None:
        result.samples.append(sample("queue_workers", data.workers, target=target))
    for q in data.queues:
        result.samples.append(sample("queue_depth", q.depth, target=target, queue=q.name))
        history = memory.depths.get(q.name)
        if q.oldest_enqueued is not None and q.depth:
            age = max(0.0, now - q.oldest_enqueued)
            result.samples.append(
                sample("queue_oldest_age_seconds", age, target=target, queue=q.name)
            )
            if f := _age_finding(entry, q.name, age, "job"):
                result.findings.append(f)
        if q.failed is not None:
            result.samples.append(sample("queue_failed", q.failed, target=target, queue=q.name))
            before = memory.failed.get(q.name)
            if before is not None and q.failed - before >= th.failed_increase:
                result.findings.append(Finding(
                    "queue_failed_growing",
                    f"the failed-job registry of {q.name} grew from {before} to {q.failed} since"
                    " the previous run",
                    subject=q.name,
                ))  # fmt: skip
            memory.failed[q.name] = q.failed
        no_workers = rq and q.depth > 0 and q.workers == 0
        if no_workers:
            # Critical from the first growth on, for as long as no worker comes: a steady alert.
            first_seen = memory.unattended.setdefault(q.name, q.depth)
            grew = q.depth > first_seen
            result.findings.append(Finding(
                "queue_no_workers",
                f"{_n(q.depth, 'job')} waiting in {q.name} and no live RQ worker listens on it"
                f" ({data.workers or 0} workers registered in all)"
                + (f"; it has grown from {first_seen} since then" if grew else ""),
                subject=q.name,
                severity="critical" if grew else "warning",
            ))  # fmt: skip
        else:
            memory.unattended.pop(q.name, None)
        if not no_workers and _grew(history, q.depth, th.growing_runs):
            result.findings.append(Finding(
                "queue_growing",
                f"{q.name} grew at each of the last {th.growing_runs} runs, to {q.depth}",
                subject=q.name,
            ))  # fmt: skip
        if entry.queues is not None and not q.known and q.depth == 0:
            where = f"{entry.key_prefix or 'rq'}:queues" if rq else "kombu's bindings"
            result.findings.append(Finding(
                "queue_unknown", f"{q.name} is not in {where} and holds nothing", subject=q.name
            ))  # fmt: skip
        memory.depths.setdefault(q.name, deque(maxlen=th.growing_runs + 1)).append(q.depth)
    # Forget queues this run did not see: discovered names may come and go.
    seen = {q.name for q in data.queues}
    for kept in (memory.depths, memory.failed, memory.unattended):
        for name in [n for n in kept if n not in seen]:
            del kept[name]
    result.details["queues"] = " · ".join(f"{q.name} {q.depth}" for q in data.queues) or "none"
    if data.discovered_more:
        result.details["not shown"] = (
            f"{data.discovered_more} more queues were found; list the ones to watch in queues"
        )
    if data.left_out:
        result.details["names left out"] = (
            f"{_n(data.left_out, 'queue name')} with control characters, over 200 characters"
            " or not UTF-8"
        )
    if data.problems:
        result.error = "could not read " + "; ".join(data.problems)
    return result


async def run_redis(
    entry: QueueConfig, target: str, time_limit: float, resources: QueueResources
) -> ProbeResult:
    # redis-py is imported on the first Redis run: a config without one never loads it.
    from exporter.probes.queue_redis import QueueReadError, read_celery, read_rq

    assert entry.redis_url is not None
    where = display_redis_url(entry.redis_url)
    try:
        password = entry.read_secret(f"queues[{entry.name}]")
    except ValueError as exc:
        return ProbeResult(error=str(exc))
    try:
        client = resources.client(entry, password, time_limit)
        # A deadline of our own, inside the runner's, so the error says what was slow.
        async with asyncio.timeout(time_limit * 0.9):
            if entry.kind == "rq":
                data = await read_rq(client, entry.key_prefix or "rq", entry.queues, time.time())
            else:
                data = await read_celery(client, entry.key_prefix or "", entry.queues)
    except (QueueReadError, TimeoutError) as exc:
        await resources.drop_client(entry.name)
        message = str(exc) or (
            f"no answer within {time_limit * 0.9:g}s; fix: check that Redis answers at this"
            " address (with rediss://, that it speaks TLS on this port), or raise the entry's"
            " timeout"
        )
        if password:
            message = message.replace(password, "***")
        return ProbeResult(error=f"{where}: {message}")
    result = redis_result(entry, target, data, resources.memory_of(target), time.time())
    result.details["redis"] = where
    return result


# ----- the probe kind ----------------------------------------------------------------------------


class QueueProbe:
    name = "queue"
    title = "Mail queues"
    config_key = "queues"

    def targets(self, config: Config) -> list[Target[QueueConfig]]:
        return [Target.of(self.name, q.name, q, config) for q in config.queues]

    def resources(self, config: Config, net: Network) -> QueueResources:
        return QueueResources()

    async def run(
        self, target: Target[QueueConfig], ctx: ProbeContext[QueueResources]
    ) -> ProbeResult:
        entry = target.settings
        if entry.kind == "postfix":
            return await run_postfix(entry, target.name, ctx.timeout)
        return await run_redis(entry, target.name, ctx.timeout, ctx.resources)


PROBE = QueueProbe()
