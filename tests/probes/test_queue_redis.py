"""The queue probe against a real ``redis-server`` (Debian) with jobs from the real ``rq`` and
``celery`` packages, exactly as applications enqueue them; no worker processes jobs, but RQ
workers register (and one runs a burst to make a job fail) the way RQ's own worker does.

Each test gets its own database number on a module-scoped server (16 per server, flushed
first), so the tests of this module never see each other's keys.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
import trustme
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st
from redisdb import enqueue, fresh_db, lab_redis

from exporter.config import parse_config
from exporter.lab.redis import LabRedis
from exporter.net.dnsclient import make_resolver
from exporter.probes.queue import PROBE
from exporter.probes.queue_redis import OLDEST_SAMPLE, RQ_EPOCH, parse_rq_time
from exporter.results import ProbeResult, Target
from exporter.runner import Runtime, run_probe

PASSWORD = "s3cret-Redis-pw"
NOW = 1_800_000_000.0  # 2027-01-15


@pytest.fixture(scope="module")
def server() -> Iterator[LabRedis]:
    yield from lab_redis()


@pytest.fixture
def url(server: LabRedis) -> str:
    return fresh_db(server)


def conn(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def celery_send(
    url: str, queue: str | None, n: int = 1, priority: int | None = None, prefix: str = ""
) -> None:
    app = Celery("app", broker=url)
    if prefix:
        app.conf.broker_transport_options = {"global_keyprefix": prefix}
    try:
        for _ in range(n):
            options: dict[str, Any] = {} if queue is None else {"queue": queue}
            if priority is not None:
                options["priority"] = priority
            app.send_task("mail.send_receipt", args=["order-1"], **options)
    finally:
        app.close()


def run_worker(url: str, queue: str) -> None:
    """RQ's own worker code runs every waiting job of the queue (a job of a module that does not
    exist fails and lands in the failed-job registry), registered as a worker meanwhile. Not
    ``Worker.work(burst=True)``: its pub/sub listener thread can take 60 s to stop with
    redis-py 8, which would only slow the tests down."""
    c = conn(url)
    q = rq.Queue(queue, connection=c)
    worker = rq.SimpleWorker([q], connection=c)
    worker.register_birth()
    try:
        while (found := rq.Queue.dequeue_any([q], None, connection=c)) is not None:
            worker.execute_job(*found)
    finally:
        worker.register_death()


def entry(url: str, kind: str = "rq", **extra: Any) -> dict[str, Any]:
    return {"name": "app-mail", "kind": kind, "redis_url": url, **extra}


def target_of(*entries: dict[str, Any]) -> tuple[list[Target], Any]:
    config = parse_config({"global": {"timeout": "10s"}, "queues": list(entries)})
    return PROBE.targets(config), config


def runtime() -> Runtime:
    """What the daemon makes per loaded config: runs on one runtime share the probe's resources
    (growth needs them)."""
    config = parse_config({})
    return Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)


async def run(entry_data: dict[str, Any], rt: Runtime | None = None) -> ProbeResult:
    """One run through the real runner (timeouts, sample and finding validation); on ``rt``
    when given, else on a runtime of its own (a first run: nothing remembered)."""
    (target,), _ = target_of(entry_data)
    own = runtime() if rt is None else None
    try:
        return (await run_probe(PROBE, target, rt or own)).result  # type: ignore[arg-type]
    finally:
        if own is not None:
            await own.aclose()


def values(result: ProbeResult, metric: str) -> dict[str, float]:
    return {dict(s.labels).get("queue", ""): s.value for s in result.samples if s.metric == metric}


def codes(result: ProbeResult) -> dict[tuple[str, str], str]:
    return {(f.code, f.subject): f.severity or "" for f in result.findings}


# ----- RQ ----------------------------------------------------------------------------------------


async def test_rq_depth_age_failed_and_workers(url: str) -> None:
    enqueue(url, "mail", 3)
    enqueue(url, "default", 1)
    result = await run(entry(url, queues=["mail", "default", "reports"]))
    assert result.error is None
    assert values(result, "queue_depth") == {"mail": 3, "default": 1, "reports": 0}
    ages = values(result, "queue_oldest_age_seconds")
    assert set(ages) == {"mail", "default"}  # an empty queue has no oldest job
    assert all(0 <= a < 30 for a in ages.values()), ages
    assert values(result, "queue_failed") == {"mail": 0, "default": 0, "reports": 0}
    assert values(result, "queue_workers") == {"": 0}
    # jobs and no worker: warning on the first sight (growth is not known yet)
    assert codes(result)[("queue_no_workers", "mail")] == "warning"
    # 'reports' never had a job: RQ does not know it
    assert ("queue_unknown", "reports") in codes(result)
    assert ("queue_unknown", "mail") not in codes(result)


async def test_rq_discovers_every_queue_when_none_are_listed(url: str) -> None:
    enqueue(url, "mail", 2)
    enqueue(url, "high", 1)
    result = await run(entry(url))
    assert values(result, "queue_depth") == {"mail": 2, "high": 1}


async def test_rq_oldest_job_age(url: str) -> None:
    (first,) = enqueue(url, "mail")
    await asyncio.sleep(1.2)
    enqueue(url, "mail", 2)
    enqueue(url, "mail", 1, at_front=True)  # a fresh job at the head does not hide the old one
    result = await run(
        entry(url, queues=["mail"], thresholds={"oldest_age": "1s", "oldest_age_critical": "1h"})
    )
    age = values(result, "queue_oldest_age_seconds")["mail"]
    enqueued = first.enqueued_at
    assert enqueued is not None
    assert 1.2 <= age < 1.2 + 30
    assert abs((time.time() - age) - enqueued.timestamp()) < 5
    assert codes(result)[("queue_oldest_too_old", "mail")] == "warning"
    critical = await run(
        entry(url, queues=["mail"], thresholds={"oldest_age": "500ms", "oldest_age_critical": "1s"})
    )
    assert codes(critical)[("queue_oldest_too_old", "mail")] == "critical"
    relaxed = await run(entry(url, queues=["mail"]))  # default 15m
    assert ("queue_oldest_too_old", "mail") not in codes(relaxed)


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "2010-12-31T23:59:59.999999Z",
     "9999-12-31T23:59:59.999999Z", "2200-01-01T00:00:00Z"],
)  # fmt: skip
async def test_rq_absurd_enqueued_at_is_an_unknown_age(url: str, stamp: str) -> None:
    """RQ was first released in 2011: an older enqueued_at (or one far in the future) is a
    broken clock or a forged job, not a job waiting for 50 years (a critical page)."""
    (job,) = enqueue(url, "mail")
    conn(url).hset(f"rq:job:{job.id}", mapping={"enqueued_at": stamp, "created_at": stamp})
    result = await run(entry(url, queues=["mail"]))
    assert values(result, "queue_depth") == {"mail": 1}
    assert values(result, "queue_oldest_age_seconds") == {}
    assert ("queue_oldest_too_old", "mail") not in codes(result)


async def test_rq_oldest_is_read_from_the_head_of_the_queue(url: str) -> None:
    """Jobs are run from the head: the oldest waiting job is among the first ones."""
    enqueue(url, "mail", OLDEST_SAMPLE + 5)
    result = await run(entry(url, queues=["mail"]))
    assert values(result, "queue_depth")["mail"] == OLDEST_SAMPLE + 5
    assert "mail" in values(result, "queue_oldest_age_seconds")


async def test_rq_registered_worker(url: str) -> None:
    enqueue(url, "mail", 2)
    c = conn(url)
    worker = rq.Worker(["mail"], connection=c, name="mail-worker-1")
    worker.register_birth()
    other = rq.Worker(["reports"], connection=c, name="reports-worker-1")
    other.register_birth()
    try:
        result = await run(entry(url, queues=["mail"]))
        assert values(result, "queue_workers") == {"": 2}
        assert ("queue_no_workers", "mail") not in codes(result)
        # a worker that stopped (RQ records its death) no longer counts
        worker.register_death()
        result = await run(entry(url, queues=["mail"]))
        assert values(result, "queue_workers") == {"": 1}
        assert ("queue_no_workers", "mail") in codes(result)
    finally:
        other.register_death()


async def test_rq_worker_whose_key_expired_is_not_live(url: str) -> None:
    """A worker killed without a goodbye stays in the sets until its hash's TTL runs out."""
    enqueue(url, "mail")
    c = conn(url)
    worker = rq.Worker(["mail"], connection=c, name="killed-worker")
    worker.register_birth()
    live = await run(entry(url, queues=["mail"]))
    assert values(live, "queue_workers") == {"": 1}
    c.pexpire(worker.key, 50)  # what its TTL does after the heartbeats stop
    await asyncio.sleep(0.2)
    assert c.sismember("rq:workers:mail", worker.key)
    gone = await run(entry(url, queues=["mail"]))
    assert values(gone, "queue_workers") == {"": 0}
    assert ("queue_no_workers", "mail") in codes(gone)


async def test_rq_failed_jobs_and_their_growth(url: str) -> None:
    q = rq.Queue("mail", connection=conn(url))
    rt = runtime()
    try:
        first = await run(entry(url, queues=["mail"]), rt)
        assert values(first, "queue_failed") == {"mail": 0}
        # a job that fails, run by RQ's worker code
        q.enqueue("exporter_test_no_such_module.send_mail")
        run_worker(url, "mail")
        assert q.failed_job_registry.count == 1
        second = await run(entry(url, queues=["mail"]), rt)
        assert values(second, "queue_failed") == {"mail": 1}
        assert ("queue_failed_growing", "mail") in codes(second)
        third = await run(entry(url, queues=["mail"]), rt)
        assert ("queue_failed_growing", "mail") not in codes(third)  # no new failure
        # thresholds: two new failures needed
        q.enqueue("exporter_test_no_such_module.send_mail")
        run_worker(url, "mail")
        fourth = await run(entry(url, queues=["mail"], thresholds={"failed_increase": 2}), rt)
        assert ("queue_failed_growing", "mail") not in codes(fourth)
    finally:
        await rt.aclose()


async def test_rq_expired_failed_jobs_are_not_counted(url: str) -> None:
    q = rq.Queue("mail", connection=conn(url))
    job = q.enqueue("exporter_test_no_such_module.send_mail", failure_ttl=1)
    run_worker(url, "mail")
    assert values(await run(entry(url, queues=["mail"])), "queue_failed") == {"mail": 1}
    await asyncio.sleep(1.5)
    assert q.connection.zscore("rq:failed:mail", job.id) is not None  # still there, expired
    assert values(await run(entry(url, queues=["mail"])), "queue_failed") == {"mail": 0}


async def test_rq_queue_growing_with_no_worker_becomes_critical(url: str) -> None:
    rt = runtime()
    try:
        enqueue(url, "mail", 1)
        first = await run(entry(url, queues=["mail"]), rt)
        assert codes(first)[("queue_no_workers", "mail")] == "warning"
        enqueue(url, "mail", 1)
        second = await run(entry(url, queues=["mail"]), rt)
        assert codes(second)[("queue_no_workers", "mail")] == "critical"
        third = await run(entry(url, queues=["mail"]), rt)  # no new job: still critical
        assert codes(third)[("queue_no_workers", "mail")] == "critical"
        worker = rq.Worker(["mail"], connection=conn(url), name="late-worker")
        worker.register_birth()
        fourth = await run(entry(url, queues=["mail"]), rt)
        assert ("queue_no_workers", "mail") not in codes(fourth)
        worker.register_death()
        fifth = await run(entry(url, queues=["mail"]), rt)  # gone again: a fresh start
        assert codes(fifth)[("queue_no_workers", "mail")] == "warning"
    finally:
        await rt.aclose()


async def test_queue_growing_with_a_worker(url: str) -> None:
    c = conn(url)
    worker = rq.Worker(["mail"], connection=c, name="slow-worker")
    worker.register_birth()
    rt = runtime()
    try:
        seen = []
        for _ in range(4):
            enqueue(url, "mail", 1)
            result = await run(entry(url, queues=["mail"]), rt)
            seen.append(("queue_growing", "mail") in codes(result))
        # rose at each of the last 3 runs: only the 4th run has seen that
        assert seen == [False, False, False, True]
        result = await run(entry(url, queues=["mail"]), rt)  # no new job
        assert ("queue_growing", "mail") not in codes(result)
    finally:
        worker.register_death()
        await rt.aclose()


async def test_rq_key_prefix(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RQ_KEY_PREFIX (RQ 2.x+) renames every key; key_prefix follows it."""
    c = conn(url)
    for key in ("queues", "queue:mail", "workers"):
        assert not c.exists(f"myapp:{key}")
    # what RQ writes with RQ_KEY_PREFIX=myapp, written with RQ's own classes' templates
    monkeypatch.setattr(rq.Queue, "redis_queue_namespace_prefix", "myapp:queue:")
    monkeypatch.setattr(rq.Queue, "redis_queues_keys", "myapp:queues")
    monkeypatch.setattr(rq.job.Job, "redis_job_namespace_prefix", "myapp:job:")
    enqueue(url, "mail", 2)
    assert c.llen("myapp:queue:mail") == 2
    plain = await run(entry(url))
    assert values(plain, "queue_depth") == {}
    prefixed = await run(entry(url, key_prefix="myapp"))
    assert values(prefixed, "queue_depth") == {"mail": 2}
    assert "mail" in values(prefixed, "queue_oldest_age_seconds")


async def test_wrong_key_type_is_could_not_tell(url: str) -> None:
    enqueue(url, "mail", 2)
    conn(url).set("rq:queue:broken", "not a list")
    result = await run(entry(url, queues=["mail", "broken"]))
    assert result.error is not None and "rq:queue:broken" in result.error
    assert "WRONGTYPE" in result.error
    assert values(result, "queue_depth") == {"mail": 2}  # the readable queue is still reported


# ----- Celery ------------------------------------------------------------------------------------


async def test_celery_queues_and_priority_sub_queues(url: str) -> None:
    celery_send(url, "emails", 2)
    celery_send(url, "emails", 1, priority=5)  # kombu: the list 'emails\x06\x163'
    celery_send(url, "emails", 1, priority=9)  # 'emails\x06\x169'
    celery_send(url, None, 1)  # the default queue 'celery'
    c = conn(url)
    assert c.llen("emails") == 2 and c.llen("emails\x06\x163") == 1
    result = await run(entry(url, "celery", queues=["emails", "celery", "reports"]))
    assert result.error is None
    assert values(result, "queue_depth") == {"emails": 4, "celery": 1, "reports": 0}
    assert values(result, "queue_oldest_age_seconds") == {}  # Celery records no enqueue time
    assert values(result, "queue_workers") == {}  # nor workers
    assert values(result, "queue_failed") == {}
    assert set(codes(result)) == {("queue_unknown", "reports")}


async def test_celery_discovers_bound_queues(url: str) -> None:
    celery_send(url, "emails", 2)
    celery_send(url, "webhooks", 1)
    result = await run(entry(url, "celery"))
    assert values(result, "queue_depth") == {"celery": 0, "emails": 2, "webhooks": 1}


async def test_celery_global_keyprefix(url: str) -> None:
    celery_send(url, "emails", 2, prefix="shop:")
    celery_send(url, "emails", 1, priority=6, prefix="shop:")
    assert conn(url).llen("shop:emails\x06\x166") == 1
    assert values(await run(entry(url, "celery", queues=["emails"])), "queue_depth") == {
        "emails": 0
    }
    prefixed = await run(entry(url, "celery", key_prefix="shop:"))
    assert values(prefixed, "queue_depth") == {"celery": 0, "emails": 3}


async def test_memory_forgets_queues_that_went_away(url: str) -> None:
    rt = runtime()
    try:
        enqueue(url, "mail", 1)
        enqueue(url, "batch-2024", 1)
        await run(entry(url), rt)
        memory = rt.resources_for(PROBE).memory["app-mail"]
        assert set(memory.depths) == {"mail", "batch-2024"}
        conn(url).delete("rq:queue:batch-2024")
        conn(url).srem("rq:queues", "rq:queue:batch-2024")
        await run(entry(url), rt)
        assert set(memory.depths) == set(memory.failed) == {"mail"}
    finally:
        await rt.aclose()


async def test_celery_growing(url: str) -> None:
    rt = runtime()
    try:
        flags = []
        for _ in range(3):
            celery_send(url, "emails", 1)
            result = await run(entry(url, "celery", queues=["emails"],
                                          thresholds={"growing_runs": 2}), rt)  # fmt: skip
            flags.append(("queue_growing", "emails") in codes(result))
        assert flags == [False, False, True]
    finally:
        await rt.aclose()


# ----- connection, password, TLS ----------------------------------------------------------------


async def test_unreachable_redis_is_could_not_tell(server: LabRedis) -> None:
    lab = LabRedis().start()
    port = lab.port
    lab.stop()
    result = await run(entry(f"redis://127.0.0.1:{port}/0"))
    assert result.error is not None
    assert f"redis://127.0.0.1:{port}/0" in result.error
    assert not result.findings and not result.samples


async def test_password_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = LabRedis(password=PASSWORD).start()
    try:
        enqueue_url = f"redis://:{PASSWORD}@127.0.0.1:{lab.port}/0"
        enqueue(enqueue_url, "mail", 2)
        monkeypatch.setenv("QUEUE_REDIS_PASSWORD", PASSWORD)
        by_env = await run(entry(lab.url, password_env="QUEUE_REDIS_PASSWORD"))
        assert by_env.error is None and values(by_env, "queue_depth") == {"mail": 2}
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD + "\n")
        by_file = await run(entry(lab.url, password_file=str(secret)))
        assert values(by_file, "queue_depth") == {"mail": 2}
        none = await run(entry(lab.url))
        assert none.error is not None and "auth" in none.error.lower()
        monkeypatch.setenv("QUEUE_REDIS_PASSWORD", "wrong-" + PASSWORD)
        wrong = await run(entry(lab.url, password_env="QUEUE_REDIS_PASSWORD"))
        assert wrong.error is not None
        for r in (none, wrong):
            assert PASSWORD not in repr(r)
    finally:
        lab.stop()


async def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "redis.example.test")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    lab = LabRedis(tls=(cert_file, key_file)).start()
    try:
        client = redis.Redis(host="127.0.0.1", port=lab.port, ssl=True, ssl_ca_certs=str(ca_file))
        rq.Queue("mail", connection=client).enqueue("os.getcwd")
        ok = await run(entry(lab.url, queues=["mail"], ca_file=str(ca_file)))
        assert ok.error is None and values(ok, "queue_depth") == {"mail": 1}
        untrusted = await run(entry(lab.url, queues=["mail"]))  # system roots only
        assert untrusted.error is not None and "certificate" in untrusted.error.lower()
        plain = await run(entry(lab.url.replace("rediss:", "redis:"), queues=["mail"]))
        assert plain.error is not None
    finally:
        lab.stop()


# ----- parsers -----------------------------------------------------------------------------------


def test_parse_rq_time_formats() -> None:
    assert parse_rq_time(b"2026-01-02T03:04:05.250000Z") == 1767323045.25
    assert parse_rq_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_rq_time(b"yesterday") is None
    assert parse_rq_time(None) is None


@given(st.one_of(st.binary(max_size=40), st.text(max_size=40), st.none(), st.integers()))
def test_parse_rq_time_never_raises(value: object) -> None:
    out = parse_rq_time(value)
    assert out is None or isinstance(out, float)


@given(st.datetimes(), st.booleans())
def test_parse_rq_time_only_plausible_times(when: dt.datetime, fraction: bool) -> None:
    text = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if fraction else "%Y-%m-%dT%H:%M:%SZ")
    out = parse_rq_time(text, now=NOW)
    assert out is None or RQ_EPOCH <= out <= NOW + 86400
    if RQ_EPOCH <= when.replace(tzinfo=dt.UTC).timestamp() <= NOW:
        assert out is not None
