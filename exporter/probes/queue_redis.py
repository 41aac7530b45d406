"""RQ and Celery queues on Redis, read the way RQ and kombu store them (redis-py's asyncio client).

Read only: nothing here writes to the Redis, not even the clean-ups RQ's own readers do on the
way (``Queue.count`` is a plain ``LLEN``, but ``FailedJobRegistry.count`` first deletes expired
entries; here they are counted out with ``ZCOUNT`` instead). Every step is one pipeline, so a
run costs three round trips whatever the number of queues.

RQ (1.0 and later; key names from RQ's ``queue.py``, ``registry.py``, ``worker_registration.py``
and ``worker/base.py``; ``rq`` is ``RQ_KEY_PREFIX``, the entry's ``key_prefix``):

- ``rq:queues`` — a set of queue keys ``rq:queue:<name>``: the queues that exist;
- ``rq:queue:<name>`` — a list of job ids, the next job to run first (``RPUSH`` to enqueue,
  ``LPOP`` to run; ``at_front`` jobs are pushed to the head);
- ``rq:job:<id>`` — a hash; ``enqueued_at`` (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC; older RQ without
  the fraction) is when the job entered the queue. The oldest waiting job is taken among the
  first :data:`OLDEST_SAMPLE` of the list, so an ``at_front`` job does not hide older ones;
- ``rq:failed:<name>`` — the failed-job registry, a sorted set scored by expiry time (``+inf``
  or a negative score: never); entries whose time has passed are expired and not counted;
- ``rq:workers`` and ``rq:workers:<name>`` — sets of worker keys ``rq:worker:<worker name>``,
  each a hash (``birth``, ``death`` once it stopped) with a TTL the heartbeat renews: a member
  whose hash is gone, or has ``death``, is not a live worker (RQ's ``clean_worker_registry``
  removes such members the same way).

Celery with the Redis broker (kombu's ``transport/redis.py``): a queue is a list named after
it, pushed with ``LPUSH`` and taken with ``RPOP``; messages with a priority go to sub-lists
``<name>\\x06\\x16<step>`` (``sep`` and ``priority_steps``, default steps ``0 3 6 9``; a
priority is one of 0-9, so the steps used are always among 1-9 besides the list itself: all
ten are counted). Queues are bound in sets ``_kombu.binding.<exchange>`` whose members are
``<routing key>\\x06\\x16<pattern>\\x06\\x16<queue>``; with no ``queues`` configured these are
scanned to find them (worker control and event queues, ``*.pidbox`` and ``celeryev``, left
out). kombu's ``global_keyprefix`` is the entry's ``key_prefix``. Celery messages carry no
enqueue time and Celery workers register nothing in Redis, so neither age nor workers exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.config import QueueConfig

OLDEST_SAMPLE = 10
"""Jobs at the head of an RQ queue whose ``enqueued_at`` is read to find the oldest."""
MAX_QUEUES = 100
"""Queues found by discovery that are reported (sorted by name); configure ``queues`` for more."""
MAX_WORKERS = 10_000
SCAN_BATCH = 1000
MAX_SCAN_CALLS = 200
"""SCAN calls for kombu's bindings: up to 200,000 keys looked at; configure ``queues`` beyond."""
KOMBU_SEP = "\x06\x16"
KOMBU_PRIORITIES = range(1, 10)
RQ_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")
RQ_EPOCH = dt.datetime(2011, 1, 1, tzinfo=dt.UTC).timestamp()
"""No RQ job is older than RQ (first released in 2011)."""
MAX_CLOCK_SKEW = 86400.0
"""How far in the future an ``enqueued_at`` may be (the application's clock ahead of ours)."""


class QueueReadError(Exception):
    """The Redis could not be read (could not tell); the message holds no secret."""


@dataclass
class RedisQueue:
    name: str
    depth: int
    known: bool
    """RQ: listed in ``rq:queues``; Celery: has messages or a ``_kombu.binding.<name>`` set."""
    oldest_enqueued: float | None = None
    failed: int | None = None
    workers: int | None = None
    """RQ: live workers that listen on this queue."""


@dataclass
class RedisQueues:
    queues: list[RedisQueue] = field(default_factory=list)
    workers: int | None = None
    """RQ: live workers registered (any queue)."""
    discovered_more: int = 0
    """Queues found beyond :data:`MAX_QUEUES` and not reported."""
    problems: list[str] = field(default_factory=list)
    """Queues that could not be read (a key of another type): could not tell."""


def make_client(entry: QueueConfig, password: str | None, timeout: float) -> Redis:
    """A client with a small pool, no retries (the next run is the retry) and timeouts."""
    assert entry.redis_url is not None
    extra: dict[str, Any] = {}
    if entry.redis_url.startswith("rediss:") and entry.ca_file:
        extra["ssl_ca_certs"] = entry.ca_file
    return Redis.from_url(
        entry.redis_url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        max_connections=4,
        client_name="deliverability-exporter",
        **extra,
    )


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def parse_rq_time(value: Any, now: float | None = None) -> float | None:
    """RQ's ``enqueued_at``/``created_at`` text as Unix time; None when absent, malformed or
    absurd: before RQ existed (:data:`RQ_EPOCH`), or more than a day after ``now`` (when given).
    A forged or broken job would otherwise be "waiting for 50 years", a critical page."""
    if not isinstance(value, bytes | str):
        return None
    text = _text(value)
    for fmt in RQ_TIME_FORMATS:
        try:
            when = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
        if when < RQ_EPOCH or (now is not None and when > now + MAX_CLOCK_SKEW):
            return None
        return when
    return None


def describe(exc: RedisError, what: str) -> QueueReadError:
    """The error as a reason and a fix (could not tell)."""
    text = f"{what}: {type(exc).__name__}: {str(exc)[:300]}"
    low = text.lower()
    if isinstance(exc, AuthenticationError) or "noauth" in low or "wrongpass" in low:
        fix = ("give the Redis password in password_env or password_file (and, with Redis ACLs,"
               " the user name in redis_url as redis://USER@host)")  # fmt: skip
    elif "certificate" in low or "ssl" in low:
        fix = "give ca_file for a private CA, and check the server's certificate and host name"
    elif isinstance(exc, RedisTimeoutError):
        fix = "Redis did not answer in time: check its load, or raise the entry's timeout"
    elif isinstance(exc, RedisConnectionError):
        fix = "check the host and port of redis_url, and that the exporter can reach Redis"
    else:
        fix = "see the Redis error; check redis_url and that it is the application's Redis"
    return QueueReadError(f"{text}; fix: {fix}")


async def _run(pipe: Any, what: str) -> list[Any]:
    """Execute a pipeline; a reply that is an error (WRONGTYPE) stays in the list."""
    try:
        return list(await pipe.execute(raise_on_error=False))
    except RedisError as exc:
        raise describe(exc, what) from None


def _wrong_type(reply: Any, key: str, problems: list[str]) -> bool:
    if isinstance(reply, ResponseError):
        problems.append(f"{key}: {str(reply)[:200]}")
        return True
    return False


async def _live_workers(client: Redis, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    ordered = sorted(keys)
    pipe = client.pipeline(transaction=False)
    for key in ordered:
        pipe.hmget(key, ["birth", "death"])
    replies = await _run(pipe, "reading RQ workers")
    return {
        key
        for key, reply in zip(ordered, replies, strict=True)
        if isinstance(reply, list) and reply[0] is not None and reply[1] is None
    }


async def read_rq(client: Redis, prefix: str, names: list[str] | None, now: float) -> RedisQueues:
    """The RQ queues ``names`` (all of ``<prefix>:queues`` when None)."""
    out = RedisQueues()
    queues_key, queue_prefix = f"{prefix}:queues", f"{prefix}:queue:"
    pipe = client.pipeline(transaction=False)
    pipe.smembers(queues_key)
    pipe.smembers(f"{prefix}:workers")
    existing, all_workers = await _run(pipe, "reading RQ's queue and worker sets")
    if _wrong_type(existing, queues_key, out.problems) or _wrong_type(
        all_workers, f"{prefix}:workers", out.problems
    ):
        return out
    known = {
        _text(k).removeprefix(queue_prefix) for k in existing if _text(k).startswith(queue_prefix)
    }
    if names is None:
        found = sorted(known)
        out.discovered_more = max(0, len(found) - MAX_QUEUES)
        names = found[:MAX_QUEUES]
    pipe = client.pipeline(transaction=False)
    for name in names:
        failed = f"{prefix}:failed:{name}"
        pipe.llen(queue_prefix + name)
        pipe.lrange(queue_prefix + name, 0, OLDEST_SAMPLE - 1)
        pipe.zcount(failed, "-inf", "(0")
        pipe.zcount(failed, f"({now!r}", "+inf")
        pipe.smembers(f"{prefix}:workers:{name}")
    replies = await _run(pipe, "reading RQ queues")
    per_queue: list[tuple[str, list[Any]]] = []
    for i, name in enumerate(names):
        depth, head, never, later, workers = replies[5 * i : 5 * i + 5]
        keys = (queue_prefix + name, queue_prefix + name, f"{prefix}:failed:{name}")
        if any(
            _wrong_type(r, k, out.problems) for r, k in zip((depth, head, never), keys, strict=True)
        ):
            continue
        if _wrong_type(workers, f"{prefix}:workers:{name}", out.problems):
            workers = set()
        per_queue.append((name, [depth, head, int(never) + int(later), workers]))
    worker_keys = {_text(k) for k in all_workers}
    for _, (_, _, _, members) in per_queue:
        worker_keys |= {_text(k) for k in members}
    live = await _live_workers(client, set(sorted(worker_keys)[:MAX_WORKERS]))
    out.workers = len({_text(k) for k in all_workers} & live)
    pipe = client.pipeline(transaction=False)
    heads = [[_text(job) for job in head] for _, (_, head, _, _) in per_queue]
    for head in heads:
        for job in head:
            pipe.hmget(f"{prefix}:job:{job}", ["enqueued_at", "created_at"])
    times = iter(await _run(pipe, "reading RQ jobs") if any(heads) else [])
    for (name, (depth, _, failed, members)), head in zip(per_queue, heads, strict=True):
        oldest: float | None = None
        for _ in head:
            reply = next(times)
            if isinstance(reply, list):
                when = parse_rq_time(reply[0], now)
                if when is None:
                    when = parse_rq_time(reply[1], now)
                if when is not None and (oldest is None or when < oldest):
                    oldest = when
        out.queues.append(RedisQueue(
            name, int(depth), name in known, oldest_enqueued=oldest, failed=failed,
            workers=len({_text(k) for k in members} & live),
        ))  # fmt: skip
    return out


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def discover_celery(client: Redis, prefix: str) -> list[str]:
    """Queue names bound in kombu's ``_kombu.binding.*`` sets, plus ``celery``."""
    names = {"celery"}
    binding = f"{prefix}_kombu.binding."
    keys: list[str] = []
    cursor: Any = 0
    try:
        for _ in range(MAX_SCAN_CALLS):
            cursor, batch = await client.scan(cursor, match=_glob_escape(binding) + "*",
                                              count=SCAN_BATCH)  # fmt: skip
            keys.extend(_text(k) for k in batch)
            if int(cursor) == 0:
                break
    except RedisError as exc:
        raise describe(exc, "scanning kombu's bindings") from None
    exchanges = sorted(k for k in set(keys) if not _control_exchange(k.removeprefix(binding)))
    pipe = client.pipeline(transaction=False)
    for key in exchanges:
        pipe.smembers(key)
    for members in await _run(pipe, "reading kombu's bindings") if exchanges else []:
        if isinstance(members, set):
            for member in members:
                queue = _text(member).split(KOMBU_SEP)[-1]
                if queue and not _control_exchange(queue):
                    names.add(queue)
    return sorted(names)


def _control_exchange(name: str) -> bool:
    return name.endswith(".pidbox") or name == "celeryev" or name.startswith("celeryev.")


async def read_celery(client: Redis, prefix: str, names: list[str] | None) -> RedisQueues:
    """The Celery queues ``names`` (discovered when None): each list and its priority lists."""
    out = RedisQueues()
    if names is None:
        found = await discover_celery(client, prefix)
        out.discovered_more = max(0, len(found) - MAX_QUEUES)
        names = found[:MAX_QUEUES]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(prefix + name)
        for step in KOMBU_PRIORITIES:
            pipe.llen(f"{prefix}{name}{KOMBU_SEP}{step}")
        pipe.exists(f"{prefix}_kombu.binding.{name}")
    replies = await _run(pipe, "reading Celery queues")
    width = 2 + len(KOMBU_PRIORITIES)
    for i, name in enumerate(names):
        lengths, bound = replies[width * i : width * i + width - 1], replies[width * i + width - 1]
        bad = [r for r in lengths if isinstance(r, ResponseError)]
        if bad:
            out.problems.append(f"{prefix}{name}: {str(bad[0])[:200]}")
            continue
        depth = sum(int(n) for n in lengths)
        known = depth > 0 or (not isinstance(bound, Exception) and int(bound) > 0)
        out.queues.append(RedisQueue(name, depth, known))
    return out
