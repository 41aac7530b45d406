"""A real ``redis-server`` on loopback (Debian ``redis-server``, started by
:class:`exporter.lab.redis.LabRedis`) for a test module, and a fresh database of it per test;
the modules' fixtures call these; :func:`enqueue` puts RQ jobs on a queue as an app does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import redis
import rq

from exporter.lab.redis import LabRedis

_dbs = itertools.cycle(range(16))


def lab_redis() -> Iterator[LabRedis]:
    lab = LabRedis().start()
    try:
        yield lab
    finally:
        lab.stop()


def fresh_db(server: LabRedis) -> str:
    """A flushed database of ``server`` (16 per server, in turn), so the tests of a module never
    see each other's keys: ``redis://127.0.0.1:PORT/N``."""
    db = next(_dbs)
    redis.Redis(port=server.port, db=db).flushdb()
    return f"redis://127.0.0.1:{server.port}/{db}"


def enqueue(url: str, queue: str, n: int = 1, **kwargs: Any) -> list[rq.job.Job]:
    """``n`` jobs enqueued on ``queue`` by the real ``rq`` package (``kwargs`` to ``enqueue``)."""
    q = rq.Queue(queue, connection=redis.Redis.from_url(url))
    return [q.enqueue("os.getcwd", **kwargs) for _ in range(n)]
