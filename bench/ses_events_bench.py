"""SES events: parser throughput, and draining a queue into the store against moto on loopback.

    .venv/bin/python -m bench.ses_events_bench [--messages 2000]

* **parse**: :func:`exporter.probes.ses_events.parse` over the documented fixtures (raw and
  SNS-wrapped, both formats), events per second of one core;
* **drain**: N messages (a mix of the fixtures with distinct message ids, published to an SNS
  topic that fans out to the queue) drained by the real ``ses`` probe (``run_probe``, a real
  SQLite store) in as many runs as it takes; messages per second end to end (long polls, MX
  lookups of the custom domains against a loopback DNS server, one transaction per batch,
  batch deletes), and the store's size per 1,000 events. moto's own speed bounds this number:
  it is the throughput against moto, not against AWS.

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from awsenv import ACCESS_KEY, REGION, SECRET_KEY, moto_server  # noqa: E402
from dnsserver import DnsServer  # noqa: E402
from sqsfront import SqsFront  # noqa: E402

from exporter.config import parse_config  # noqa: E402
from exporter.net.dnsclient import make_resolver  # noqa: E402
from exporter.probes import PROBES  # noqa: E402
from exporter.probes.ses_events import SesEvent, parse  # noqa: E402
from exporter.runner import Runtime, run_probe  # noqa: E402
from exporter.storage import FILE_NAME, Store  # noqa: E402

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


def bench_parse(rounds: int = 2000) -> float:
    messages = [json.dumps(b) for b in bodies()] + [sns(b) for b in bodies()]
    t0 = time.process_time()
    for _ in range(rounds):
        for m in messages:
            assert isinstance(parse(m), SesEvent)
    return rounds * len(messages) / (time.process_time() - t0)


async def bench_drain(count: int) -> dict[str, float]:
    import boto3

    with moto_server() as url, tempfile.TemporaryDirectory() as tmp:
        front = SqsFront(url).start()
        dns = DnsServer().start()
        try:
            sqs = boto3.client("sqs", region_name=REGION, endpoint_url=front.url)
            sns_client = boto3.client("sns", region_name=REGION, endpoint_url=front.url)
            queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
            topic = sns_client.create_topic(Name="bench")["TopicArn"]
            sns_client.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"]
            )
            templates = bodies()
            for n in range(count):
                body = json.loads(json.dumps(templates[n % len(templates)]))
                body["mail"]["messageId"] = f"bench-{n}"
                sns_client.publish(TopicArn=topic, Message=json.dumps(body))
            config = parse_config({
                "global": {"timeout": "30s", "nameservers": [dns.address]},
                "ses": [{"region": REGION, "endpoint_url": front.url, "events_queue_url": queue,
                         "max_attempts": 1}],
            })  # fmt: skip
            (target,) = PROBES["ses"].targets(config)
            store = await Store.open(tmp)
            runtime = Runtime(make_resolver([dns.address]), config, store=store)
            runs = 0
            t0 = time.perf_counter()
            try:
                while True:
                    runs += 1
                    rec = await run_probe(PROBES["ses"], target, runtime)
                    assert rec.success, rec.result.error
                    if rec.result.details["events"].startswith("0 messages read"):
                        break
            finally:
                await runtime.aclose()
                await store.aclose()
            wall = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in Path(tmp).glob(FILE_NAME + "*"))
            return {"messages": count, "runs": runs, "seconds": wall,
                    "messages_per_s": count / wall, "store_bytes_per_1000": size / count * 1000}  # fmt: skip
        finally:
            dns.stop()
            front.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                      AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=REGION)  # fmt: skip
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(name, None)
    print(f"parse: {bench_parse():,.0f} events/s (one core, {len(EVENTS) * 2} documented shapes)")
    result = asyncio.run(bench_drain(args.messages))
    print(
        f"drain: {result['messages']:.0f} messages in {result['runs']:.0f} runs,"
        f" {result['seconds']:.1f} s, {result['messages_per_s']:,.0f} messages/s against moto;"
        f" store {result['store_bytes_per_1000'] / 1024:,.0f} KiB per 1,000 events"
    )


if __name__ == "__main__":
    main()
