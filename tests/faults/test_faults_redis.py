"""The ``queue`` probe (RQ and Celery) against a Redis holding wrong-shaped data, and against a
fake Redis (``tests/faults/redisfault.py``, real RESP on loopback) for replies no real
``redis-server`` sends.

For every fault: the run is "could not tell" (an error naming the key or the reply), never a
wrong count nor a finding drawn from data it could not read; a run against healthy data at the
same place succeeds; and repeated faulted runs leave no connection open and nothing growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from faults.leakcheck import repeat_flat, settle
from faults.redisfault import Answer, Cut, FakeRedis, array, bulk, error, integer
from hypothesis import given
from hypothesis import strategies as st
from redisdb import enqueue, fresh_db, lab_redis

from exporter.config import parse_config
from exporter.lab.redis import LabRedis
from exporter.net.dnsclient import make_resolver
from exporter.probes.queue import PROBE
from exporter.probes.queue_redis import (
    QueueReadError,
    _count,
    _fields,
    _scan_reply,
    _strings,
    queue_name,
)
from exporter.results import ProbeResult
from exporter.runner import Runtime, run_probe

STAMP = "2026-01-02T03:04:05.250000Z"
BINDING = "emails\x06\x16\x06\x16emails"


async def run(entry: dict[str, Any], limit: str = "5s") -> ProbeResult:
    config = parse_config({"global": {"timeout": limit},
                           "queues": [{"name": "app", **entry}]})  # fmt: skip
    (target,) = PROBE.targets(config)
    own = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
    try:
        return (await run_probe(PROBE, target, own)).result
    finally:
        await own.aclose()


def depths(result: ProbeResult) -> dict[str, float]:
    return {dict(s.labels)["queue"]: s.value for s in result.samples if s.metric == "queue_depth"}


# ----- a fake Redis: replies redis-server never sends ---------------------------------------------


def healthy(command: list[bytes]) -> bytes:
    """An RQ queue ``mail`` of two jobs and a Celery queue ``emails`` bound in kombu's set."""
    name, key = command[0].upper(), (command[1] if len(command) > 1 else b"")
    members = {b"rq:queues": [bulk("rq:queue:mail")], b"_kombu.binding.emails": [bulk(BINDING)]}
    if name == b"SMEMBERS":
        return array(members.get(key, []))
    if name == b"SSCAN":
        return array([bulk("0"), array(members.get(key, []))])
    if name == b"SCAN":
        return array([bulk("0"), array([bulk("_kombu.binding.emails")])])
    if name == b"LLEN":
        return integer(2 if key in (b"rq:queue:mail", b"emails") else 0)
    if name == b"LRANGE":
        if key == b"emails":
            return array([bulk(json.dumps({"body": "e30=", "properties": {}, "headers": {}}))])
        return array([bulk("j1"), bulk("j2")] if key == b"rq:queue:mail" else [])
    if name == b"ZCOUNT":
        return integer(0)
    if name == b"HMGET":
        return array([bulk(STAMP), bulk(STAMP)])
    if name == b"EXISTS":
        return integer(1)
    return error(f"ERR unknown command '{name.decode()}'")


def faulty(names: tuple[bytes, ...], reply: bytes | None) -> Answer:
    return lambda command: reply if command[0].upper() in names else healthy(command)


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server = await FakeRedis(healthy).start()
    try:
        yield server
    finally:
        await server.stop()


SETS = (b"SMEMBERS", b"SSCAN")
FAKE_FAULTS = [
    ("llen_text", "rq", (b"LLEN",), bulk("many"), "unexpected reply"),
    ("llen_negative", "rq", (b"LLEN",), integer(-5), "unexpected reply"),
    ("llen_beyond_64_bits", "rq", (b"LLEN",), integer(2**70), "unexpected reply"),
    ("llen_5000_digits", "rq", (b"LLEN",), b":" + b"9" * 5000 + b"\r\n", "not a proxy"),
    ("lrange_integer", "rq", (b"LRANGE",), integer(3), "unexpected reply"),
    ("lrange_nested", "rq", (b"LRANGE",), array([array([bulk("j1")])]), "unexpected reply"),
    ("zcount_text", "rq", (b"ZCOUNT",), bulk("none"), "unexpected reply"),
    ("set_integer", "rq", SETS, integer(7), "unexpected reply"),
    ("hmget_short", "rq", (b"HMGET",), array([bulk(STAMP)]), "unexpected reply"),
    ("hmget_integer", "rq", (b"HMGET",), integer(1), "unexpected reply"),
    ("scan_cursor_text", "celery", (b"SCAN",), array([bulk("next"), array([])]),
     "unexpected reply"),
    ("scan_flat", "celery", (b"SCAN",), array([bulk("0")]), "unexpected reply"),
    ("binding_integer", "celery", SETS, integer(7), "unexpected reply"),
    ("exists_text", "celery", (b"EXISTS",), bulk("yes"), "unexpected reply"),
    ("celery_llen_text", "celery", (b"LLEN",), bulk("2"), "unexpected reply"),
    ("not_resp", "rq", SETS, b"HTTP/1.1 400 Bad Request\r\n\r\n", "Protocol Error"),
    ("cut_mid_reply", "rq", (b"LRANGE",), Cut(b"*2\r\n$2\r\nj1\r\n$2\r\nj"), "Connection"),
    ("closed", "celery", (b"SCAN",), None, "Connection"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "names", "reply", "reason"),
    [f[1:] for f in FAKE_FAULTS],
    ids=[f[0] for f in FAKE_FAULTS],
)
async def test_replies_no_redis_sends_are_could_not_tell(
    fake: FakeRedis, kind: str, names: tuple[bytes, ...], reply: bytes | None, reason: str
) -> None:
    entry = {"kind": kind, "redis_url": fake.url}
    good = await run(entry)
    assert good.error is None, good.error
    assert depths(good) == ({"mail": 2} if kind == "rq" else {"celery": 0, "emails": 2})
    fake.answer = faulty(names, reply)
    bad = await run(entry)
    assert bad.error is not None and reason in bad.error, bad.error
    assert bad.error.startswith(f"redis://127.0.0.1:{fake.port}/0: ")
    assert not bad.findings
    assert not [s for s in bad.samples if s.value < 0 or s.value > 2**63]
    assert depths(bad) in ({}, depths(good))  # nothing, or what was read right


async def test_a_redis_that_never_answers_is_could_not_tell(fake: FakeRedis) -> None:
    fake.answer = faulty((b"LLEN",), b"")
    result = await run({"kind": "rq", "redis_url": fake.url}, limit="1s")
    assert result.error is not None and "no answer within 0.9s" in result.error
    assert not result.samples and not result.findings


async def test_garbage_replies_leak_nothing(fake: FakeRedis) -> None:
    fake.answer = faulty((b"LLEN",), bulk("many"))
    entry = {"kind": "rq", "redis_url": fake.url}

    async def once() -> None:
        result = await run(entry)
        assert result.error is not None and "unexpected reply" in result.error

    await repeat_flat(once, warmup=10, repeat=100, batch=10)
    await settle()
    assert fake.open == 0, "the probe left Redis connections open"


# ----- a real redis-server holding wrong-shaped data --------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LabRedis]:
    yield from lab_redis()


@pytest.fixture
def url(server: LabRedis) -> str:
    return fresh_db(server)


async def test_rq_worker_set_of_another_type_is_no_proof_of_no_worker(url: str) -> None:
    """rq:workers:mail holding a string was read as "no worker listens on mail": a warning
    (critical once the queue grew) drawn from data that could not be read."""
    enqueue(url, "mail", 2)
    redis.Redis.from_url(url).set("rq:workers:mail", "garbage")
    result = await run({"kind": "rq", "redis_url": url})
    assert result.error is not None and "rq:workers:mail: WRONGTYPE" in result.error
    assert ("queue_no_workers", "mail") not in {(f.code, f.subject) for f in result.findings}
    assert depths(result) == {"mail": 2}


async def test_rq_worker_or_job_key_of_another_type_is_could_not_tell(url: str) -> None:
    c = redis.Redis.from_url(url)
    (job,) = enqueue(url, "mail")
    c.sadd("rq:workers", "rq:worker:w1")
    c.set("rq:worker:w1", "not a hash")
    workers = await run({"kind": "rq", "redis_url": url})
    assert workers.error is not None and "rq:worker:w1: WRONGTYPE" in workers.error
    assert not [s for s in workers.samples if s.metric == "queue_workers"]
    c.delete("rq:workers", "rq:worker:w1")
    c.delete(f"rq:job:{job.id}")
    c.rpush(f"rq:job:{job.id}", "a list, not a hash")
    jobs = await run({"kind": "rq", "redis_url": url})
    assert jobs.error is not None and f"rq:job:{job.id}: WRONGTYPE" in jobs.error


async def test_kombu_binding_of_another_type_is_could_not_tell(url: str) -> None:
    c = redis.Redis.from_url(url)
    c.lpush("emails", json.dumps({"body": "", "properties": {}, "headers": {}}))
    c.sadd("_kombu.binding.emails", BINDING)
    assert depths(await run({"kind": "celery", "redis_url": url})) == {"celery": 0, "emails": 1}
    c.delete("_kombu.binding.emails")
    c.set("_kombu.binding.emails", BINDING)  # a string: the bound queues cannot be read
    result = await run({"kind": "celery", "redis_url": url})
    assert result.error is not None and "_kombu.binding.emails: WRONGTYPE" in result.error


@pytest.mark.parametrize("payload", [b"\xff\x00garbage", b"not json", b"[1, 2]", b'"a string"'])
async def test_celery_queue_of_non_kombu_messages_is_could_not_tell(
    url: str, payload: bytes
) -> None:
    """A list under the queue's name whose next message is no kombu message (not a JSON object):
    another application's key, or a broken producer; its length is not Celery's backlog."""
    c = redis.Redis.from_url(url)
    c.lpush("emails", json.dumps({"body": "", "properties": {}, "headers": {}}))
    c.lpush("webhooks", json.dumps({"body": "", "properties": {}, "headers": {}}))
    entry = {"kind": "celery", "redis_url": url, "queues": ["emails", "webhooks"]}
    assert (await run(entry)).error is None
    c.rpush("emails", payload)  # the tail is what kombu's BRPOP takes next
    result = await run(entry)
    assert result.error is not None and "emails: the next message is not a kombu message" in (
        result.error
    )
    assert depths(result) == {"webhooks": 1}


# ----- sizes: a hostile or huge Redis cannot make a run hold it all -------------------------------


def fill_set(url: str, key: str, n: int, member: str = "m{}") -> None:
    c = redis.Redis.from_url(url)
    for start in range(0, n, 5000):
        c.sadd(key, *(member.format(i) for i in range(start, min(n, start + 5000))))


async def test_rq_sets_are_read_up_to_10000_members(url: str) -> None:
    enqueue(url, "mail", 1)
    fill_set(url, "rq:workers", 10_000, "rq:worker:w{}")
    at_cap = await run({"kind": "rq", "redis_url": url, "queues": ["mail"]})
    assert at_cap.error is None, at_cap.error
    assert [s.value for s in at_cap.samples if s.metric == "queue_workers"] == [0]
    fill_set(url, "rq:workers", 20_000, "rq:worker:w{}")
    over = await run({"kind": "rq", "redis_url": url, "queues": ["mail"]})
    assert over.error is not None and "rq:workers: more than 10000 members" in over.error
    assert not [s for s in over.samples if s.metric == "queue_workers"]
    fill_set(url, "rq:workers:mail", 10_001, "rq:worker:x{}")
    redis.Redis.from_url(url).delete("rq:workers")
    per_queue = await run({"kind": "rq", "redis_url": url, "queues": ["mail"]})
    assert per_queue.error is not None
    assert "rq:workers:mail: more than 10000 members" in per_queue.error
    assert ("queue_no_workers", "mail") not in {(f.code, f.subject) for f in per_queue.findings}


async def test_at_most_1000_kombu_binding_sets(url: str) -> None:
    c = redis.Redis.from_url(url)
    c.lpush("emails", json.dumps({"body": "", "properties": {}, "headers": {}}))
    pipe = c.pipeline(transaction=False)
    for i in range(1000):
        pipe.sadd(f"_kombu.binding.exchange{i}", f"q{i}\x06\x16\x06\x16q{i}")
    pipe.execute()
    at_cap = await run({"kind": "celery", "redis_url": url})
    assert at_cap.error is None, at_cap.error
    c.sadd("_kombu.binding.one-more", "x\x06\x16\x06\x16x")
    over = await run({"kind": "celery", "redis_url": url})
    assert over.error is not None and "more than 1000 kombu binding sets" in over.error
    assert "list the queues to watch in queues" in over.error
    assert not over.samples
    fill_set(url, "_kombu.binding.emails", 10_001, "k{}\x06\x16\x06\x16emails")
    c.delete(*(f"_kombu.binding.exchange{i}" for i in range(1000)), "_kombu.binding.one-more")
    huge = await run({"kind": "celery", "redis_url": url})
    assert huge.error is not None
    assert "_kombu.binding.emails: more than 10000 members" in huge.error


ODD_NAMES = [b"bad\x00name", b"x" * 300, b"caf\xe9", b"tab\tname", b"new\nline", b"\x1b[31m", b""]


async def test_rq_queue_names_unfit_for_labels_are_left_out_and_counted(url: str) -> None:
    enqueue(url, "mail", 2)
    c = redis.Redis.from_url(url)
    c.sadd("rq:queues", *(b"rq:queue:" + name for name in ODD_NAMES))
    for name in ODD_NAMES:
        c.rpush(b"rq:queue:" + name, b"job")
    result = await run({"kind": "rq", "redis_url": url})
    assert result.error is None, result.error
    assert depths(result) == {"mail": 2}
    assert result.details["names left out"] == (
        "7 queue names with control characters, over 200 characters or not UTF-8"
    )


async def test_celery_queue_names_unfit_for_labels_are_left_out_and_counted(url: str) -> None:
    c = redis.Redis.from_url(url)
    c.sadd("_kombu.binding.emails", BINDING, *(b"rk\x06\x16\x06\x16" + n for n in ODD_NAMES))
    c.lpush("emails", json.dumps({"body": "", "properties": {}, "headers": {}}))
    result = await run({"kind": "celery", "redis_url": url})
    assert result.error is None, result.error
    assert depths(result) == {"celery": 0, "emails": 1}
    assert result.details["names left out"].startswith("6 queue names")  # the empty one is none


@given(st.binary(max_size=300) | st.text(max_size=250).map(str.encode))
def test_queue_name_is_a_label_and_the_same_key(raw: bytes) -> None:
    name = queue_name(raw)
    if name is not None:
        assert name.encode() == raw  # read back under the very key it was found as
        assert 0 < len(name) <= 200 and name.isprintable()


# ----- cluster, ACL, a server that stops or dies, TLS on a plain port ----------------------------


async def test_redis_cluster_redirects_are_could_not_tell_with_the_fix(fake: FakeRedis) -> None:
    """A Redis Cluster node answers MOVED for keys of other nodes: depths read from one node are
    not the queue's; nothing is counted and the error says cluster mode is not supported."""
    names = (b"SSCAN", b"LLEN", b"LRANGE", b"ZCOUNT", b"HMGET", b"SCAN", b"EXISTS")
    fake.answer = faulty(names, error("MOVED 3999 127.0.0.1:7001"))
    for kind in ("rq", "celery"):
        result = await run({"kind": kind, "redis_url": fake.url})
        assert result.error is not None and "MOVED 3999" in result.error, result.error
        assert "Redis Cluster is not supported" in result.error
        assert not result.samples and not result.findings


async def test_acl_user_without_a_permission_is_could_not_tell_with_the_fix(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(url, "mail", 1)
    c = redis.Redis.from_url(url)
    c.acl_setuser("exporter", enabled=True, passwords=["+exporter-pw-1"], keys=["*"],
                  commands=["+llen", "+lrange", "+zcount", "+hmget", "+client", "+select",
                            "+ping", "+hello", "+auth"])  # fmt: skip
    try:
        monkeypatch.setenv("QUEUE_PW", "exporter-pw-1")
        result = await run({"kind": "rq", "password_env": "QUEUE_PW",
                            "redis_url": url.replace("redis://", "redis://exporter@")})  # fmt: skip
        assert result.error is not None and "NOPERM" in result.error, result.error
        assert "ACL" in result.error and "exporter-pw-1" not in result.error
        assert not result.samples
    finally:
        c.acl_deluser("exporter")


async def test_redis_stopped_then_killed_mid_run(tmp_path: Any) -> None:
    """One runtime (its pooled connection kept between runs): a redis-server that stops
    answering (SIGSTOP) is a timeout, the next run after it resumes succeeds; one killed
    (SIGKILL) is a connection error, and nothing is left open."""
    lab = LabRedis().start()
    try:
        assert lab.proc is not None
        url = f"redis://127.0.0.1:{lab.port}/0"
        enqueue(url, "mail", 1)
        entry = {"name": "app", "kind": "rq", "redis_url": url}
        config = parse_config({"global": {"timeout": "1s"}, "queues": [entry]})
        (target,) = PROBE.targets(config)
        rt = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
        try:
            assert (await run_probe(PROBE, target, rt)).result.error is None
            lab.proc.send_signal(signal.SIGSTOP)
            stalled = (await run_probe(PROBE, target, rt)).result
            assert stalled.error is not None and "no answer within 0.9s" in stalled.error
            assert "check that Redis answers at this address" in stalled.error
            lab.proc.send_signal(signal.SIGCONT)
            again = (await run_probe(PROBE, target, rt)).result
            assert again.error is None and depths(again) == {"mail": 1}
            lab.proc.kill()
            lab.proc.wait(10)
            dead = (await run_probe(PROBE, target, rt)).result
            assert dead.error is not None and "Connection" in dead.error, dead.error
            assert not dead.samples
        finally:
            await rt.aclose()
    finally:
        lab.stop()


async def test_rediss_url_to_a_plain_port_says_so(server: LabRedis) -> None:
    result = await run(
        {"kind": "rq", "redis_url": f"rediss://127.0.0.1:{server.port}/0"}, limit="1s"
    )
    assert result.error is not None
    assert "with rediss://, that it speaks TLS on this port" in result.error


def test_a_ca_file_that_is_a_fifo_never_blocks_the_event_loop(tmp_path: Any) -> None:
    """ssl reads ca_file as the connection is made, on the event loop: a FIFO there froze the
    whole daemon (no deadline can interrupt a blocking read), every run."""
    fifo = tmp_path / "ca.pem"
    os.mkfifo(fifo)
    out: list[ProbeResult] = []
    entry = {"kind": "rq", "redis_url": "rediss://127.0.0.1:9/0", "ca_file": str(fifo)}
    thread = threading.Thread(target=lambda: out.append(asyncio.run(run(entry))), daemon=True)
    thread.start()
    thread.join(10)
    try:
        assert out, "the run blocked on the FIFO"
        (result,) = out
        assert result.error is not None
        assert f"cannot read ca_file {fifo}: not a regular file (a FIFO)" in result.error
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)


async def test_worker_sets_of_many_queues_are_read_up_to_100000_members_in_all(url: str) -> None:
    """Each set under the 10,000 cap, 11 of them over 100,000 members together."""
    names = [f"q{i}" for i in range(11)]
    for name in names:
        enqueue(url, name, 1)
        fill_set(url, f"rq:workers:{name}", 10_000, f"rq:worker:{name}-{{}}")
    result = await run({"kind": "rq", "redis_url": url, "queues": names}, limit="20s")
    assert result.error is not None
    assert "reading RQ's worker sets: more than 100000 members in all" in result.error
    assert not [f for f in result.findings if f.code == "queue_no_workers"]


async def test_more_worker_keys_than_checked_is_no_worker_count(url: str) -> None:
    """Only the first 10,000 worker keys (sorted) were checked for life: a live worker after
    them was counted dead, and its queue "had no worker"."""
    enqueue(url, "mail", 1)
    fill_set(url, "rq:workers", 6000, "rq:worker:a{:05d}")
    fill_set(url, "rq:workers:mail", 6000, "rq:worker:b{:05d}")
    c = redis.Redis.from_url(url)
    c.sadd("rq:workers:mail", "rq:worker:zz-live")
    c.hset("rq:worker:zz-live", mapping={"birth": STAMP})
    result = await run({"kind": "rq", "redis_url": url, "queues": ["mail"]})
    assert result.error is not None and "more than 10000 RQ worker keys" in result.error
    assert not [s for s in result.samples if s.metric == "queue_workers"]
    assert not [f for f in result.findings if f.code == "queue_no_workers"]


@pytest.mark.parametrize("names", [(b"LLEN",), (b"SSCAN",), (b"HMGET",)])
async def test_control_characters_in_redis_errors_never_reach_a_terminal(
    fake: FakeRedis, names: tuple[bytes, ...]
) -> None:
    """``check`` prints the run's error: a server's error reply with an escape sequence must
    arrive as harmless text."""
    reply = error("ERR \x1b]0;pwned\x07\x1b[2J boom\x00\x7f")
    fake.answer = faulty(names, reply)
    result = await run({"kind": "rq", "redis_url": fake.url})
    assert result.error is not None and "boom" in result.error, result.error
    assert result.error.isprintable(), repr(result.error)


_REPLIES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=8)
    | st.text(max_size=8) | st.floats(),
    lambda children: st.lists(children, max_size=3) | st.tuples(children, children),
    max_leaves=8,
)  # fmt: skip


@given(_REPLIES)
def test_reply_checks_accept_only_what_redis_sends(reply: object) -> None:
    """Every reply shape redis-py can hand over: a count is an integer of 0 to 2^63 - 1, members
    are bulk strings, an HMGET has its fields, a SCAN its cursor; anything else is
    QueueReadError (could not tell), never another exception."""
    for check in (_count, _strings, _scan_reply, lambda r, w: _fields(r, 2, w)):
        try:
            out = check(reply, "X")
        except QueueReadError as exc:
            assert "unexpected reply" in str(exc) and str(exc).isprintable()
            continue
        if check is _count:
            assert isinstance(out, int) and 0 <= out < 2**63
        elif check is _strings:
            assert all(isinstance(x, bytes) for x in out)
