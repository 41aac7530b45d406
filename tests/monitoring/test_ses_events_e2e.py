"""End to end for SES events: SES-shaped events published to a moto SNS topic, fanned out to an
SQS queue, drained by the real exporter process into its store, scraped by a real Prometheus
with the bundled rules (``for:`` divided by 360); the dashboard's "SES events" row queried
against it, and the per-provider alerts seen firing.

moto (SQS, SNS, SES) runs on loopback behind the front server of :mod:`sqsfront` (which answers
SESv2 GetAccount for the account part of the same runs); the exporter gets dummy credentials
through its environment. Events are published only once Prometheus has scraped the zeroed
counters, as in production, so that ``increase()`` sees them rise.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from awsenv import REGION
from monitoring_support import DASHBOARDS
from promstack import Daemon, PromStack, free_port, get, wait_for
from sqsfront import SqsFront

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]

DATA = Path(__file__).resolve().parents[1] / "probes" / "data" / "ses_events"


def event(name: str, message_id: str, **changes: Any) -> str:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    data["mail"]["messageId"] = message_id
    data.update(changes)
    return json.dumps(data)


def row_queries() -> list[tuple[str, str]]:
    (overview,) = [p for p in DASHBOARDS if p.stem == "deliverability-overview"]
    panels = json.loads(overview.read_text())["panels"]
    ours = [p for p in panels if 2000 <= p["id"] <= 2099 and p["type"] != "row"]
    assert len(ours) == 6
    return [
        (p["title"], t["expr"].replace("$job", ".*").replace("$instance", ".*"))
        for p in ours
        for t in p["targets"]
    ]


def test_events_reach_prometheus_dashboard_and_alerts(aws_front: SqsFront, tmp_path: Path) -> None:
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=aws_front.url)
    sns = boto3.client("sns", region_name=REGION, endpoint_url=aws_front.url)
    dlq = sqs.create_queue(QueueName="ses-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 3}
    queue = sqs.create_queue(
        QueueName="ses-events", Attributes={"RedrivePolicy": json.dumps(policy)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    topic = sns.create_topic(Name="ses-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "global": {"interval": "1s", "timeout": "10s", "nameservers": ["127.0.0.1:9"],
                   "allow_short_intervals": True},
        "ses": [{"region": REGION, "endpoint_url": aws_front.url, "events_queue_url": queue,
                 "max_attempts": 1}],
    }))  # fmt: skip
    port = free_port()
    exporter = Daemon("exporter", [
        sys.executable, "-m", "exporter", "--config.file", str(config),
        "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn",
        "--storage.path", str(tmp_path / "storage"),
    ], tmp_path)  # fmt: skip
    prom: PromStack | None = None
    try:
        wait_for("exporter healthy", lambda: get(f"http://127.0.0.1:{port}/-/healthy"))
        prom = PromStack(tmp_path, f"127.0.0.1:{port}")
        wait_for(
            "zeroed counters scraped twice",
            lambda: prom.query("count_over_time(deliverability_ses_events_total[1m]) >= 2"),
        )
        # A block at Gmail: 12 hard bounces against 20 deliveries; Microsoft fine.
        for n in range(12):
            sns.publish(TopicArn=topic, Message=event("event-bounce", f"gmail-bounce-{n}"))
        for n in range(20):
            sns.publish(TopicArn=topic, Message=event("notification-delivery", f"gmail-ok-{n}"))
            sns.publish(TopicArn=topic, Message=event("event-delivery", f"yahoo-ok-{n}"))
        sns.publish(TopicArn=topic, Message=event("event-complaint", "complaint-1"))
        sqs.send_message(QueueUrl=queue, MessageBody="not an SES event")
        wait_for(
            "the bounces counted and scraped",
            lambda: prom.query(
                'deliverability_ses_bounces_total{provider="gmail", bounce_type="Permanent"} == 12'
            ),
        )
        empty = [f"{title}: {expr}" for title, expr in row_queries() if not prom.query(expr)]
        assert not empty, "panels without data:\n" + "\n".join(empty)
        share = prom.query(dict(row_queries())["Hard-bounce share by provider (1 h)"])
        by_provider = {r["metric"]["provider"]: float(r["value"][1]) for r in share}
        assert by_provider["gmail"] == pytest.approx(12 / 32, rel=0.05)

        def firing() -> set[tuple[str, str]]:
            return {
                (a["labels"]["alertname"], a["labels"].get("provider", ""))
                for a in prom.rule_alerts()
                if a["state"] == "firing"
            }

        wanted = {
            ("EmailDeliverabilitySESProviderBouncing", "gmail"),
            ("EmailDeliverabilitySESEventsInvalid", ""),
        }
        got = wait_for("the SES events alerts firing", lambda: firing() >= wanted and firing())
        # one complaint is below the minimum count; yahoo and microsoft are fine
        assert {
            a for a in got if re.match(r"EmailDeliverabilitySES(Provider|Events)", a[0])
        } == wanted
    except BaseException:
        logs = prom.logs() if prom is not None else ""
        print(f"{logs}\n--- exporter\n{exporter.log()}", file=sys.stderr)
        raise
    finally:
        if prom is not None:
            prom.stop()
        exporter.stop()
