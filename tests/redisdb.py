"""A real ``redis-server`` on loopback (Debian ``redis-server``, started by
:class:`exporter.lab.redis.LabRedis`) for a test module, and a fresh database of it per test;
the modules' fixtures call these."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import redis

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
