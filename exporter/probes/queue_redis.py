"""RQ and Celery queues on Redis, read the way RQ and kombu store them (redis-py's asyncio client).

Read only: nothing here writes to the Redis, not even the clean-ups RQ's own readers do on the
way (``Queue.count`` is a plain ``LLEN``, but ``FailedJobRegistry.count`` first deletes expired
entries; here they are counted out with ``ZCOUNT`` instead). Every step is one pipeline, so a
run costs about five round trips whatever the number of queues (sets are read with ``SSCAN``,
all of a step's sets in each round trip: one for sets under 1,000 members).

Bounded, whatever the Redis holds: a set is read up to :data:`MAX_MEMBERS` members (then "could
not tell"), at most :data:`MAX_BINDINGS` kombu binding sets, :data:`MAX_SCAN_CALLS` SCAN calls.
A reply of a shape Redis never sends is :class:`QueueReadError` (could not tell), never a count.

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
import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterCrossSlotError,
    ClusterDownError,
    InvalidResponse,
    MasterDownError,
    MovedError,
    NoPermissionError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from exporter.config import QueueConfig
from exporter.config.files import read_regular_file

OLDEST_SAMPLE = 10
"""Jobs at the head of an RQ queue whose ``enqueued_at`` is read to find the oldest."""
MAX_QUEUES = 100
"""Queues found by discovery that are reported (sorted by name); configure ``queues`` for more."""
MAX_WORKERS = 10_000
MAX_MEMBERS = 10_000
"""Members read of one set (``rq:queues``, ``rq:workers``, a kombu binding): SSCAN stops at the
10,001st and the set is "could not tell" (a hostile Redis with a million-member set took
357 MiB and 14 s a run)."""
MAX_CA_FILE = 1 << 20
"""Of a ``ca_file``: a bundle of a few hundred certificates."""
MAX_NAME = 200
"""Characters of a queue name (as ``queues`` in the config): longer ones are left out."""
MAX_BINDINGS = 1000
"""kombu binding sets (``_kombu.binding.*``, one per exchange) read to discover queues."""
MAX_TOTAL_MEMBERS = 100_000
"""Members read of all the sets of one step (e.g. the worker sets of 100 queues)."""
SCAN_BATCH = 1000
MAX_SCAN_CALLS = 200
"""SCAN calls for kombu's bindings: up to 200,000 keys looked at; configure ``queues`` beyond.
Also the most SSCAN rounds for the sets of one run."""
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
    left_out: int = 0
    """Queue names found that are unfit for a label (:func:`queue_name`), not reported."""
    problems: list[str] = field(default_factory=list)
    """Queues that could not be read (a key of another type): could not tell."""


def make_client(entry: QueueConfig, password: str | None, timeout: float) -> Redis:
    """A client with a small pool, no retries (the next run is the retry) and timeouts; raises
    :class:`QueueReadError` when ``ca_file`` cannot be read."""
    assert entry.redis_url is not None
    extra: dict[str, Any] = {}
    if entry.redis_url.startswith("rediss:") and entry.ca_file:
        # Read here, not by ssl as it connects: that read is on the event loop, and a FIFO
        # there froze the daemon.
        try:
            pem = read_regular_file(entry.ca_file, MAX_CA_FILE).decode("utf-8", "replace")
        except OSError as exc:
            raise QueueReadError(
                f"cannot read ca_file {entry.ca_file}: {exc.strerror or exc}; fix: give the PEM"
                " file of the CA that signed the Redis server's certificate"
            ) from None
        extra["ssl_ca_data"] = pem
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


_CODES: tuple[tuple[type[ResponseError], str], ...] = (
    (MovedError, "MOVED"), (AskError, "ASK"), (ClusterDownError, "CLUSTERDOWN"),
    (ClusterCrossSlotError, "CROSSSLOT"), (TryAgainError, "TRYAGAIN"),
    (MasterDownError, "MASTERDOWN"), (NoPermissionError, "NOPERM"),
)  # fmt: skip
"""Error replies redis-py turns into classes, dropping the code from the text."""
_CLUSTER = (MovedError, AskError, ClusterDownError, ClusterCrossSlotError, TryAgainError)
_CLUSTER_FIX = (
    "Redis Cluster is not supported (one node holds only some of the keys): point redis_url at"
    " a standalone Redis, or the primary of a replicated one"
)
_ACL_FIX = (
    "give the Redis user of redis_url read access to the queue keys (ACL, e.g."
    " '+@read +@connection ~*'), or use a user that has it"
)


def _printable(text: str) -> str:
    """A server's text as it may be shown: ``check`` prints errors to a terminal, where an
    escape sequence in a Redis error reply would act."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)


def _error_text(exc: ResponseError) -> str:
    code = next((code for cls, code in _CODES if isinstance(exc, cls)), "")
    text = _printable(str(exc)[:200])
    return f"{code} {text}" if code else text


def describe(exc: RedisError, what: str) -> QueueReadError:
    """The error as a reason and a fix (could not tell)."""
    shown = _error_text(exc) if isinstance(exc, ResponseError) else _printable(str(exc)[:300])
    text = f"{what}: {type(exc).__name__}: {shown}"
    low = text.lower()
    if isinstance(exc, _CLUSTER):
        fix = _CLUSTER_FIX
    elif isinstance(exc, InvalidResponse):
        fix = _NOT_REDIS.removeprefix("fix: ")
    elif isinstance(exc, NoPermissionError):
        fix = _ACL_FIX
    elif isinstance(exc, AuthenticationError) or "noauth" in low or "wrongpass" in low:
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


_NOT_REDIS = "fix: check that redis_url points at a Redis server, not a proxy or another service"
_REPLY_ERRORS = (ValueError, TypeError, IndexError, KeyError, AttributeError)
"""What redis-py's reply callbacks raise on a reply of the wrong shape (``int(b"next")``)."""


def _unexpected(reply: Any, what: str) -> QueueReadError:
    shape = type(reply).__name__
    if isinstance(reply, bytes | int):
        shape += f" {reply[:40]!r}" if isinstance(reply, bytes) else f" {str(reply)[:40]}"
    return QueueReadError(f"{what}: unexpected reply ({shape}); {_NOT_REDIS}")


async def _run(pipe: Any, what: str) -> list[Any]:
    """Execute a pipeline; a reply that is an error (WRONGTYPE) stays in the list."""
    try:
        return list(await pipe.execute(raise_on_error=False))
    except RedisError as exc:
        raise describe(exc, what) from None
    except _REPLY_ERRORS as exc:
        raise QueueReadError(f"{what}: unexpected reply ({exc}); {_NOT_REDIS}") from None


def _count(reply: Any, what: str) -> int:
    """A count as Redis sends it: an integer from 0 to 2^63 - 1."""
    if isinstance(reply, int) and not isinstance(reply, bool) and 0 <= reply < 2**63:
        return reply
    raise _unexpected(reply, what)


def _strings(reply: Any, what: str) -> list[bytes]:
    """The members of a set or the items of a list: bulk strings."""
    if isinstance(reply, list | set | tuple) and all(isinstance(x, bytes) for x in reply):
        return list(reply)
    raise _unexpected(reply, what)


def _wrong_type(reply: Any, key: str, problems: list[str]) -> bool:
    """Whether ``reply`` is an error reply: a key of another type is a problem of that key (the
    others are still read); a cluster redirect or a missing permission makes the whole run
    could not tell (:class:`QueueReadError`)."""
    if isinstance(reply, (*_CLUSTER, NoPermissionError)):
        raise describe(reply, key)
    if isinstance(reply, ResponseError):
        problems.append(f"{key}: {_error_text(reply)}")
        return True
    return False


def queue_name(raw: bytes) -> str | None:
    """A discovered queue name fit to be a label value and a key again: UTF-8 (a name decoded
    with replacement characters would read another key: a wrong depth), 1-200 characters, none
    of them a control character; None otherwise."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if 0 < len(name) <= MAX_NAME and name.isprintable() else None


def _fields(reply: Any, n: int, what: str) -> list[bytes | None]:
    """An HMGET reply of ``n`` fields."""
    if (
        isinstance(reply, list)
        and len(reply) == n
        and all(x is None or isinstance(x, bytes) for x in reply)
    ):
        return reply
    raise _unexpected(reply, what)


def _scan_reply(reply: Any, what: str) -> tuple[int, list[bytes]]:
    """A SCAN/SSCAN reply as redis-py parses it: (cursor, members)."""
    if isinstance(reply, list | tuple) and len(reply) == 2:
        return _count(reply[0], what), _strings(reply[1], what)
    raise _unexpected(reply, what)


async def read_sets(
    client: Redis, keys: list[str], problems: list[str], what: str
) -> dict[str, set[bytes] | None]:
    """The members of each set in ``keys``, by SSCAN, all sets a round trip at a time; None for
    a set that cannot be read whole: of another type, or more than :data:`MAX_MEMBERS` members
    (the read stops there), each with its problem."""
    out: dict[str, set[bytes] | None] = {}
    found: dict[str, set[bytes]] = {key: set() for key in keys}
    cursors = dict.fromkeys(keys, 0)
    total = 0
    for _ in range(MAX_SCAN_CALLS):
        if total > MAX_TOTAL_MEMBERS:
            # 100 queues' worker sets of 10,000 members each would be a million strings.
            problems.append(
                f"{what}: more than {MAX_TOTAL_MEMBERS} members in all; not read further"
            )
            out.update(dict.fromkeys(cursors))
            return out
        if not cursors:
            break
        pipe = client.pipeline(transaction=False)
        for key, cursor in cursors.items():
            pipe.sscan(key, cursor, count=SCAN_BATCH)
        for (key, _), reply in zip(list(cursors.items()), await _run(pipe, what), strict=True):
            if _wrong_type(reply, key, problems):
                out[key] = None
                del cursors[key]
                continue
            cursor, batch = _scan_reply(reply, f"SSCAN {key}")
            before = len(found[key])
            found[key].update(batch)
            total += len(found[key]) - before
            if len(found[key]) > MAX_MEMBERS:
                problems.append(f"{key}: more than {MAX_MEMBERS} members; not read further")
                out[key] = None
                del cursors[key]
                found[key] = set()
            elif cursor == 0:
                out[key] = found.pop(key)
                del cursors[key]
            else:
                cursors[key] = cursor
    for key in cursors:
        problems.append(f"{key}: not read whole in {MAX_SCAN_CALLS} SSCAN calls")
        out[key] = None
    return out


async def _live_workers(client: Redis, keys: set[str], problems: list[str]) -> set[str] | None:
    """The worker keys among ``keys`` whose hash says the worker is alive; None when a worker
    key cannot be read (then no worker count is known)."""
    if not keys:
        return set()
    ordered = sorted(keys)
    pipe = client.pipeline(transaction=False)
    for key in ordered:
        pipe.hmget(key, ["birth", "death"])
    replies = await _run(pipe, "reading RQ workers")
    live: set[str] | None = set()
    for key, reply in zip(ordered, replies, strict=True):
        if _wrong_type(reply, key, problems):
            live = None
            continue
        birth, death = _fields(reply, 2, f"HMGET {key}")
        if live is not None and birth is not None and death is None:
            live.add(key)
    return live


async def read_rq(client: Redis, prefix: str, names: list[str] | None, now: float) -> RedisQueues:
    """The RQ queues ``names`` (all of ``<prefix>:queues`` when None)."""
    out = RedisQueues()
    queues_key, queue_prefix = f"{prefix}:queues", f"{prefix}:queue:"
    workers_key = f"{prefix}:workers"
    sets = await read_sets(client, [queues_key, workers_key], out.problems,
                           "reading RQ's queue and worker sets")  # fmt: skip
    queue_keys, workers = sets[queues_key], sets[workers_key]
    if queue_keys is None or workers is None:
        return out
    registered = {_text(k) for k in workers}
    worker_keys = set(registered)
    known: set[str] = set()
    for member in queue_keys:
        if member.startswith(queue_prefix.encode()):
            name = queue_name(member[len(queue_prefix.encode()) :])
            if name is None:
                out.left_out += 1
            else:
                known.add(name)
    if names is None:
        found = sorted(known)
        out.discovered_more = max(0, len(found) - MAX_QUEUES)
        names = found[:MAX_QUEUES]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(queue_prefix + name)
        pipe.lrange(queue_prefix + name, 0, OLDEST_SAMPLE - 1)
        pipe.zcount(f"{prefix}:failed:{name}", "-inf", "(0")
        pipe.zcount(f"{prefix}:failed:{name}", f"({now!r}", "+inf")
    replies = await _run(pipe, "reading RQ queues")
    listeners = await read_sets(client, [f"{prefix}:workers:{name}" for name in names],
                                out.problems, "reading RQ's worker sets")  # fmt: skip
    per_queue: list[tuple[str, int, list[str], int, set[str] | None]] = []
    for i, name in enumerate(names):
        depth, head, never, later = replies[4 * i : 4 * i + 4]
        key, failed_key = queue_prefix + name, f"{prefix}:failed:{name}"
        keys = (key, key, failed_key, failed_key)
        if any(
            _wrong_type(r, k, out.problems)
            for r, k in zip((depth, head, never, later), keys, strict=True)
        ):
            continue
        listening = listeners[f"{prefix}:workers:{name}"]
        members = None if listening is None else {_text(k) for k in listening}
        worker_keys |= members or set()
        per_queue.append((
            name, _count(depth, f"LLEN {key}"),
            [_text(job) for job in _strings(head, f"LRANGE {key}")[:OLDEST_SAMPLE]],
            _count(never, f"ZCOUNT {failed_key}") + _count(later, f"ZCOUNT {failed_key}"),
            members,
        ))  # fmt: skip
    live: set[str] | None = None
    if len(worker_keys) > MAX_WORKERS:
        # Checking only some would call the others dead: "no worker" on a guess.
        out.problems.append(
            f"more than {MAX_WORKERS} RQ worker keys in {workers_key} and the queues' worker"
            " sets; workers not counted"
        )
    else:
        live = await _live_workers(client, worker_keys, out.problems)
    out.workers = None if live is None else len(registered & live)
    pipe = client.pipeline(transaction=False)
    for _, _, head, _, _ in per_queue:
        for job in head:
            pipe.hmget(f"{prefix}:job:{job}", ["enqueued_at", "created_at"])
    times = iter(await _run(pipe, "reading RQ jobs") if any(q[2] for q in per_queue) else [])
    for name, depth, head, failed, members in per_queue:
        oldest: float | None = None
        unreadable = False
        for job in head:
            reply = next(times)
            if _wrong_type(reply, f"{prefix}:job:{job}", out.problems):
                unreadable = True  # the oldest may be that one: no age rather than a wrong one
                continue
            enqueued, created = _fields(reply, 2, f"HMGET {prefix}:job:{job}")
            when = parse_rq_time(enqueued, now)
            if when is None:
                when = parse_rq_time(created, now)
            if when is not None and (oldest is None or when < oldest):
                oldest = when
        out.queues.append(RedisQueue(
            name, depth, name in known, oldest_enqueued=None if unreadable else oldest,
            failed=failed,
            workers=None if members is None or live is None else len(members & live),
        ))  # fmt: skip
    return out


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def discover_celery(client: Redis, prefix: str, problems: list[str]) -> tuple[list[str], int]:
    """Queue names bound in kombu's ``_kombu.binding.*`` sets, plus ``celery``; and how many
    names were left out as unfit for a label (:func:`queue_name`)."""
    names = {"celery"}
    binding = f"{prefix}_kombu.binding."
    cursor: Any = 0
    keys: set[str] = set()
    try:
        for _ in range(MAX_SCAN_CALLS):
            cursor, batch = await client.scan(cursor, match=_glob_escape(binding) + "*",
                                              count=SCAN_BATCH)  # fmt: skip
            keys.update(_text(k) for k in _strings(batch, "SCAN"))
            if len(keys) > MAX_BINDINGS:
                raise QueueReadError(
                    f"more than {MAX_BINDINGS} kombu binding sets ({binding}*); fix: list the"
                    " queues to watch in queues"
                )
            if _count(cursor, "SCAN") == 0:
                break
        else:
            raise QueueReadError(
                f"kombu's bindings not all found in {MAX_SCAN_CALLS} SCAN calls"
                f" ({MAX_SCAN_CALLS * SCAN_BATCH} keys); fix: list the queues to watch in queues"
            )
    except RedisError as exc:
        raise describe(exc, "scanning kombu's bindings") from None
    except _REPLY_ERRORS as exc:
        raise QueueReadError(f"SCAN: unexpected reply ({exc}); {_NOT_REDIS}") from None
    exchanges = sorted(k for k in keys if not _control_exchange(k.removeprefix(binding)))
    # A binding of another type, or too large, hides the queues it binds: could not tell.
    bound = await read_sets(client, exchanges, problems, "reading kombu's bindings")
    left_out = 0
    for key in exchanges:
        for member in bound[key] or ():
            raw = member.split(KOMBU_SEP.encode())[-1]
            if not raw:
                continue
            queue = queue_name(raw)
            if queue is None:
                left_out += 1
            elif not _control_exchange(queue):
                names.add(queue)
    return sorted(names), left_out


def _control_exchange(name: str) -> bool:
    return name.endswith(".pidbox") or name == "celeryev" or name.startswith("celeryev.")


def _kombu_message(raw: bytes) -> bool:
    """A kombu message as its Redis transport stores it: a JSON object with a body and its
    properties."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and "body" in message and "properties" in message


async def read_celery(client: Redis, prefix: str, names: list[str] | None) -> RedisQueues:
    """The Celery queues ``names`` (discovered when None): each list and its priority lists,
    and the next message of the list, which must be a kombu message."""
    out = RedisQueues()
    if names is None:
        found, out.left_out = await discover_celery(client, prefix, out.problems)
        out.discovered_more = max(0, len(found) - MAX_QUEUES)
        names = found[:MAX_QUEUES]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(prefix + name)
        for step in KOMBU_PRIORITIES:
            pipe.llen(f"{prefix}{name}{KOMBU_SEP}{step}")
        pipe.exists(f"{prefix}_kombu.binding.{name}")
        pipe.lrange(prefix + name, -1, -1)  # kombu takes from the tail (BRPOP)
    replies = await _run(pipe, "reading Celery queues")
    width = 3 + len(KOMBU_PRIORITIES)
    for i, name in enumerate(names):
        row = replies[width * i : width * i + width]
        lengths, bound, tail = row[:-2], row[-2], row[-1]
        if any(_wrong_type(r, f"{prefix}{name}", out.problems) for r in (*lengths, tail)):
            continue
        depth = sum(_count(n, f"LLEN {prefix}{name}") for n in lengths)
        nxt = _strings(tail, f"LRANGE {prefix}{name}")
        if nxt and not _kombu_message(nxt[0]):
            out.problems.append(
                f"{prefix}{name}: the next message is not a kombu message (not a JSON object"
                " with body and properties): is this list Celery's queue?"
            )
            continue
        known = depth > 0 or (
            not isinstance(bound, ResponseError) and _count(bound, f"EXISTS {prefix}{name}") > 0
        )
        out.queues.append(RedisQueue(name, depth, known))
    return out
