"""SES events: parser throughput, and draining a queue into the store against moto on loopback.

    .venv/bin/python -m bench.ses_events_bench [--messages 2000]

* **parse**: :func:`exporter.probes.ses_events.parse` over the documented fixtures (raw and
  SNS-wrapped, both formats), events per second of one core;
* **drain**: N SNS-wrapped messages (a mix of the fixtures with distinct message ids) in a
  moto queue, drained by the probe's intake (long polls, MX lookups of the custom domains
  against a loopback DNS server, one store transaction per batch of ten, batch deletes) into a
  real SQLite store. moto's receive scans its whole queue (hundreds of ms per call at 1,000
  messages), so the time spent waiting on SQS is reported apart from the exporter's own share
  per message; and the store's size per 1,000 events (de-dup marks, counters, diagnostic rows).

Nothing is asserted; the numbers go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from awsenv import ACCESS_KEY, REGION, SECRET_KEY, moto_server  # noqa: E402
from dnsserver import DnsServer  # noqa: E402

from exporter.net.dnsclient import DnsClient, make_resolver  # noqa: E402
from exporter.probes.ses_events import SesEvent, parse  # noqa: E402
from exporter.probes.ses_intake import intake  # noqa: E402
from exporter.probes.ses_sqs import SqsQueue, sqs_client  # noqa: E402
from exporter.storage import FILE_NAME, Store  # noqa: E402

T = TypeVar("T")

DATA = ROOT / "tests" / "probes" / "data" / "ses_events"
EVENTS = sorted(p.stem for p in DATA.glob("event-*.json")) + sorted(
    p.stem for p in DATA.glob("notification-*.json") if "subscription" not in p.stem
)


def bodies() -> list[dict[str, Any]]:
    return [json.loads((DATA / f"{name}.json").read_text()) for name in EVENTS]


def sns(inner: dict[str, Any]) -> str:
    envelope = json.loads((DATA / "sns-envelope.json").read_text())
    envelope["Message"] = json.dumps(inner)
    return json.dumps(envelope)


def store_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob(FILE_NAME + "*"))


def bench_parse(rounds: int = 2000) -> float:
    messages = [json.dumps(b) for b in bodies()] + [sns(b) for b in bodies()]
    t0 = time.process_time()
    for _ in range(rounds):
        for m in messages:
            assert isinstance(parse(m), SesEvent)
    return rounds * len(messages) / (time.process_time() - t0)


class Timed:
    """Wall seconds spent in each awaited call, by name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        return timed


async def bench_drain(count: int) -> dict[str, float]:
    import boto3

    with moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        dns = DnsServer().start()
        try:
            sqs = boto3.client("sqs", region_name=REGION, endpoint_url=url)
            queue_url = sqs.create_queue(QueueName="bench")["QueueUrl"]
            templates = bodies()
            for start in range(0, count, 10):
                entries: list[Any] = []
                for n in range(start, min(count, start + 10)):
                    body = json.loads(json.dumps(templates[n % len(templates)]))
                    body["mail"]["messageId"] = f"bench-{n}"
                    entries.append({"Id": str(n), "MessageBody": sns(body)})
                sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            client = sqs_client(boto3.Session(), queue_url, region=REGION, endpoint_url=url,
                                timeout=30.0, max_attempts=1)  # fmt: skip
            timed = Timed()
            with ThreadPoolExecutor(4) as pool:
                queue = SqsQueue(client, queue_url, pool)
                queue.receive = timed.wrap("receive", queue.receive)  # type: ignore[method-assign,assignment]
                queue.delete = timed.wrap("delete", queue.delete)  # type: ignore[method-assign,assignment]
                store = await Store.open(tmp)
                store.transact = timed.wrap("store", store.transact)  # type: ignore[method-assign,assignment]
                resolver = make_resolver([dns.address])
                t0 = time.perf_counter()
                try:
                    done = await intake(
                        queue, store, region=REGION, dns=DnsClient(resolver), wait=1,
                        deadline=time.monotonic() + 3600,
                    )  # fmt: skip
                finally:
                    await store.aclose()
                wall = time.perf_counter() - t0
            assert done.counted == count, done
            sqs_seconds = timed.seconds["receive"] + timed.seconds["delete"]
            return {
                "messages": count,
                "seconds": wall,
                "sqs_seconds": sqs_seconds,
                "store_seconds": timed.seconds["store"],
                "exporter_ms_per_message": (wall - sqs_seconds) / count * 1000,
                "store_bytes_per_1000": store_size(Path(tmp)) / count * 1000,
            }
        finally:
            dns.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=REGION)  # fmt: skip
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    print(f"parse: {bench_parse():,.0f} events/s (one core, {len(EVENTS) * 2} documented shapes)")
    result = asyncio.run(bench_drain(args.messages))
    print(
        f"drain: {result['messages']:.0f} SNS-wrapped events in {result['seconds']:.1f} s, of"
        f" which {result['sqs_seconds']:.1f} s waiting on moto's SQS (its receive scans the"
        f" queue) and {result['store_seconds']:.2f} s in store transactions;"
        f" the exporter's own share {result['exporter_ms_per_message']:.2f} ms per message;"
        f" store {result['store_bytes_per_1000'] / 1024:,.0f} KiB per 1,000 events"
    )


if __name__ == "__main__":
    main()
