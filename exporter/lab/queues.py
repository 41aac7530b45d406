"""The demo's mail queues: RQ and Celery queues in a lab Redis (:mod:`exporter.lab.redis`).

The keys are written in RQ's and kombu's layout (documented in
:mod:`exporter.probes.queue_redis`) with redis-py, because ``rq`` and ``celery`` are not
dependencies of the exporter; the tests enqueue with the real packages. What the demo shows:

- ``app-mail`` (RQ): ``mail`` with three fresh jobs and a live worker, two jobs in its
  failed-job registry; ``reports`` with twelve jobs, the oldest enqueued two hours ago, and no
  worker listening: a critical ``queue_oldest_too_old`` and a ``queue_no_workers`` warning;
- ``celery-mail`` (Celery): ``emails`` with five messages and two more in its priority 3
  sub-list, bound as kombu binds it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import redis

SEP = "\x06\x16"
WORKER_TTL = 86400


def _stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rq_jobs(r: redis.Redis, queue: str, ages: list[float], now: float) -> None:
    for age in ages:
        job_id = str(uuid.uuid4())
        stamp = _stamp(now - age)
        r.hset(f"rq:job:{job_id}", mapping={
            "status": "queued", "origin": queue, "created_at": stamp, "enqueued_at": stamp,
            "description": f"app.mail.send_{queue}(...)", "timeout": "180",
        })  # fmt: skip
        r.rpush(f"rq:queue:{queue}", job_id)
    r.sadd("rq:queues", f"rq:queue:{queue}")


def seed(url: str) -> None:
    """Write the demo's queues into the Redis at ``url`` (database 0 for RQ, 1 for Celery)."""
    now = time.time()
    r = redis.Redis.from_url(url)
    try:
        _rq_jobs(r, "mail", [20.0, 12.0, 3.0], now)
        _rq_jobs(r, "reports", [7200.0 - 300 * i for i in range(12)], now)
        r.zadd("rq:failed:mail", {str(uuid.uuid4()): float("inf"), str(uuid.uuid4()): float("inf")})
        worker = "rq:worker:demo-worker-1"
        r.hset(worker, mapping={"birth": _stamp(now - 3600), "last_heartbeat": _stamp(now),
                                "queues": "mail", "state": "idle"})  # fmt: skip
        r.expire(worker, WORKER_TTL)
        r.sadd("rq:workers", worker)
        r.sadd("rq:workers:mail", worker)
    finally:
        r.close()
    celery = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/1")
    try:
        message = json.dumps({
            "body": "W1sib3JkZXItMSJdLCB7fSwge31d", "content-encoding": "utf-8",
            "content-type": "application/json", "headers": {"task": "mail.send_receipt"},
            "properties": {"priority": 0, "delivery_info": {"routing_key": "emails"}},
        })  # fmt: skip
        celery.lpush("emails", *[message] * 5)
        celery.lpush(f"emails{SEP}3", *[message] * 2)
        celery.sadd("_kombu.binding.emails", f"emails{SEP}{SEP}emails")
    finally:
        celery.close()
