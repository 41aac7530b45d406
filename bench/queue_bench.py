"""The ``queue`` probe's cost: reading a large Postfix listing, and a run against many Redis queues.

    python -m bench.queue_bench                    # 200,000-message listing; 10 and 100 RQ queues
    python -m bench.queue_bench --messages 1000000 --queues 10,100,500
    python -m bench.queue_bench --smoke            # small sizes, what tests/bench runs

* **postfix**: a ``postqueue -j`` listing of N messages written to a file in postqueue's exact
  format (70 % deferred with one to three recipients and the reasons Postfix writes, 20 %
  active, 5 % hold, 5 % incoming), read by :func:`exporter.probes.queue_postfix.list_queue`
  through ``cat`` (a real subprocess and pipe, as with postqueue); wall and CPU seconds,
  messages per second, and the peak RSS of this process before and after (the listing is
  streamed, so it should not grow with N);
* **redis**: a lab ``redis-server`` (:mod:`exporter.lab.redis`) with Q RQ queues of 1,000 jobs
  each, enqueued with the real ``rq`` package (a test dependency), and one live worker; the
  probe run through the runner on one runtime (the Redis client is reused, as in the daemon):
  the median and the maximum of 20 runs, and the commands Redis counted per run.

Prints a table and one JSON line; asserts no timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REASONS = [
    "connect to mx{n}.example.com[192.0.2.{n}]:25: Connection timed out",
    "host gmail-smtp-in.l.google.com[142.250.1.26] said: 421-4.7.28 [192.0.2.9] Our system has"
    " detected an unusual rate of unsolicited mail (in reply to end of DATA command)",
    "host mx.example.net[198.51.100.7] said: 450 4.2.0 <user{n}@example.net>: Recipient address"
    " rejected: Greylisted (in reply to RCPT TO command)",
    "Host or domain name not found. Name service error for name=exmaple{n}.com type=MX: Host not"
    " found, try again",
]


def write_listing(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = int(time.time())
    with path.open("w") as f:
        for i in range(n):
            r = rng.random()
            queue = (
                "deferred"
                if r < 0.7
                else "active"
                if r < 0.9
                else "hold"
                if r < 0.95
                else ("incoming")
            )
            recipients = []
            for k in range(rng.randint(1, 3)):
                rcpt: dict[str, Any] = {"address": f"user{i}-{k}@example{rng.randint(0, 50)}.com"}
                if queue in ("deferred", "hold"):
                    rcpt["delay_reason"] = rng.choice(REASONS).format(n=rng.randint(1, 40))
                recipients.append(rcpt)
            arrival = now - rng.randint(0, 86400 * 3)
            f.write(json.dumps({
                "queue_name": queue, "queue_id": f"{i:011X}", "arrival_time": arrival,
                "message_size": rng.randint(500, 50000), "forced_expire": False,
                "sender": "shop@example.test", "recipients": recipients,
            }) + "\n")  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_postfix(n: int) -> dict[str, Any]:
    from exporter.probes.queue_postfix import list_queue

    with tempfile.TemporaryDirectory(prefix="queue-bench-") as tmp:
        path = Path(tmp) / "postqueue.jsonl"
        write_listing(path, n)
        rss_before = peak_rss_mb()
        cpu0, t0 = time.process_time(), time.perf_counter()
        listing = await list_queue(["cat", str(path)], time_limit=600)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        size = path.stat().st_size
    assert sum(listing.depth.values()) == n
    return {
        "messages": n,
        "listing_mb": round(size / 1e6, 1),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "messages_per_s": round(n / wall),
        "peak_rss_mb_before": round(rss_before, 1),
        "peak_rss_mb_after": round(peak_rss_mb(), 1),
        "distinct_reasons": len(listing.top_reasons(10_000)),
    }


def _enqueue(url: str, queues: int, jobs: int) -> None:
    import redis
    import rq

    conn = redis.Redis.from_url(url)
    for q in range(queues):
        queue = rq.Queue(f"mail-{q}", connection=conn)
        with conn.pipeline() as pipe:
            queue.enqueue_many([rq.Queue.prepare_data("os.getcwd") for _ in range(jobs)],
                               pipeline=pipe)  # fmt: skip
            pipe.execute()
    rq.Worker([f"mail-{q}" for q in range(queues)], connection=conn, name="bench").register_birth()


async def bench_redis(queues: int, jobs: int, runs: int) -> dict[str, Any]:
    import redis

    from exporter.config import parse_config
    from exporter.lab.redis import LabRedis
    from exporter.probes.queue import PROBE
    from exporter.runner import Runtime, run_probe

    lab = LabRedis().start()
    try:
        await asyncio.to_thread(_enqueue, lab.url, queues, jobs)
        config = parse_config({"queues": [{"name": "app", "kind": "rq", "redis_url": lab.url}]})
        (target,) = PROBE.targets(config)
        rt = Runtime.for_config(config)
        stats = redis.Redis.from_url(lab.url)
        try:
            times, commands = [], []
            for _ in range(runs):
                before = stats.info("stats")["total_commands_processed"]
                t0 = time.perf_counter()
                record = await run_probe(PROBE, target, rt)
                times.append(time.perf_counter() - t0)
                commands.append(stats.info("stats")["total_commands_processed"] - before - 1)
                assert record.result.error is None, record.result.error
            depth = [s for s in record.result.samples if s.metric == "queue_depth"]
            assert len(depth) == min(queues, 100)
        finally:
            stats.close()
            await rt.aclose()
    finally:
        lab.stop()
    return {
        "queues": queues,
        "jobs_per_queue": jobs,
        "run_median_ms": round(statistics.median(times) * 1000, 2),
        "run_max_ms": round(max(times) * 1000, 2),
        "redis_commands_per_run": statistics.median(commands),
        "series": len(record.result.samples),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    postfix = [await bench_postfix(n) for n in args.messages]
    redis_runs = [await bench_redis(q, args.jobs, args.runs) for q in args.queues]
    return {"postfix": postfix, "redis": redis_runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", default="200000",
                        help="comma-separated listing sizes")  # fmt: skip
    parser.add_argument("--queues", default="10,100", help="comma-separated RQ queue counts")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2,000 messages, 5 queues of 50")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.queues, args.jobs, args.runs = "2000", "5", 50, 3
    args.messages = [int(x) for x in args.messages.split(",")]
    args.queues = [int(x) for x in args.queues.split(",")]
    report = asyncio.run(main_async(args))
    print("postfix listing: messages  MB      wall s  cpu s   msg/s     peak RSS MB before/after")
    for p in report["postfix"]:
        print(
            f"  {p['messages']:>21,}  {p['listing_mb']:<6}  {p['wall_s']:<6}  {p['cpu_s']:<6}"
            f"  {p['messages_per_s']:<8,}  {p['peak_rss_mb_before']} / {p['peak_rss_mb_after']}"
        )
    print("redis (RQ):      queues  jobs/queue  median ms  max ms  commands/run")
    for r in report["redis"]:
        print(
            f"  {r['queues']:>21}  {r['jobs_per_queue']:<10}  {r['run_median_ms']:<9}"
            f"  {r['run_max_ms']:<6}  {r['redis_commands_per_run']}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
