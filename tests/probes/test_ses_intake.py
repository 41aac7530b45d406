"""The ``ses`` probe with ``events_queue_url``: SES events from moto's SQS and SNS into the store.

Real servers on loopback: moto (SQS, SNS, and the SES account calls of the same run) behind the
front server that injects SQS's wire errors (:mod:`sqsfront`), a real SQLite store in a temporary
directory (reopened to play a restart), and the in-process DNS server for custom domains' MX.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from awsenv import REGION, SECRETS
from dnsserver import DnsServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqsfront import SqsFront

from exporter.collector import StateCollector, exposition, make_registry
from exporter.config import ConfigError, parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.probes.ses_intake import CODES_TABLE
from exporter.results import RunRecord, State
from exporter.runner import Runtime, run_probe
from exporter.storage import Store, Tx
from exporter.web import status_page

DATA = Path(__file__).parent / "data" / "ses_events"

pytestmark = pytest.mark.usefixtures("aws_env")


def text(name: str) -> str:
    return (DATA / f"{name}.json").read_text()


def doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text(name))
    return data


@pytest.fixture
def front(aws_front: SqsFront) -> SqsFront:
    return aws_front


class Lab:
    """A queue (with a dead-letter queue), a topic fanning out to it, and a way to run."""

    def __init__(self, front: SqsFront, dns: DnsServer, storage: Path, *, raw: bool = False,
                 dlq_after: int | None = 3, visibility: int = 30) -> None:  # fmt: skip
        self.front, self.dns, self.storage = front, dns, storage
        self.sqs = boto3.client("sqs", region_name=REGION, endpoint_url=front.url)
        self.sns = boto3.client("sns", region_name=REGION, endpoint_url=front.url)
        attributes = {"VisibilityTimeout": str(visibility)}
        if dlq_after is not None:
            self.dlq = self.sqs.create_queue(QueueName="ses-events-dlq")["QueueUrl"]
            policy = {"deadLetterTargetArn": self.arn(self.dlq), "maxReceiveCount": dlq_after}
            attributes["RedrivePolicy"] = json.dumps(policy)
        self.url = self.sqs.create_queue(QueueName="ses-events", Attributes=attributes)["QueueUrl"]
        self.topic = self.sns.create_topic(Name="ses-events")["TopicArn"]
        extra = {"Attributes": {"RawMessageDelivery": "true"}} if raw else {}
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=self.arn(self.url),
                           **extra)  # fmt: skip

    def arn(self, url: str) -> str:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    def publish(self, *bodies: str) -> None:
        """As SES does: to the topic, which hands them to the queue."""
        for body in bodies:
            self.sns.publish(TopicArn=self.topic, Message=body)

    def send(self, *bodies: str) -> None:
        """Straight into the queue (raw message delivery, or something else writing to it)."""
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (int(attrs["ApproximateNumberOfMessages"]),
                int(attrs["ApproximateNumberOfMessagesNotVisible"]))  # fmt: skip

    def config(self, **entry: Any) -> Any:
        entry = {"region": REGION, "endpoint_url": self.front.url, "events_queue_url": self.url,
                 "max_attempts": 1, **entry}  # fmt: skip
        return parse_config(
            {"global": {"timeout": "10s", "nameservers": [self.dns.address]}, "ses": [entry]}
        )

    async def run(self, *, store: bool = True, **entry: Any) -> RunRecord:
        """One run on a fresh runtime; with ``store``, the store is opened and closed around it
        (every run is a restart as far as the store is concerned)."""
        config = self.config(**entry)
        (target,) = PROBES["ses"].targets(config)
        opened = await Store.open(self.storage) if store else None
        runtime = Runtime(make_resolver([self.dns.address]), config, store=opened)
        try:
            return await run_probe(PROBES["ses"], target, runtime)
        finally:
            await runtime.aclose()
            if opened is not None:
                await opened.aclose()


@pytest.fixture
def make_lab(front: SqsFront, dns_server: DnsServer, tmp_path: Path) -> Callable[..., Lab]:
    return functools.partial(Lab, front, dns_server, tmp_path / "data")


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    return make_lab()


def counters(rec: RunRecord) -> dict[tuple[str, ...], float]:
    """Counter samples by (metric, label values but region), non-zero ones only."""
    out = {}
    for s in rec.result.samples:
        if s.metric.endswith("_total") and s.value:
            out[(s.metric, *(v for k, v in s.labels if k != "region"))] = s.value
    return out


def everything(rec: RunRecord) -> str:
    r = rec.result
    return json.dumps([r.error, r.details, [t.rows for t in r.tables], [t.note for t in r.tables],
                       [(f.code, f.evidence) for f in r.findings],
                       [s.labels for s in r.samples]])  # fmt: skip


# ----- both formats, SNS envelopes ---------------------------------------------------------------


async def test_every_event_counted_by_type_and_provider(lab: Lab) -> None:
    lab.publish(*(text(n) for n in ("event-bounce", "event-complaint", "event-delivery",
                                    "event-send", "event-reject", "event-rendering-failure",
                                    "event-delivery-delay", "event-open")))  # fmt: skip
    lab.send(*(text(n) for n in ("notification-bounce-dsn", "notification-bounce-no-dsn",
                                 "notification-complaint", "notification-complaint-no-feedback",
                                 "notification-delivery",
                                 "notification-subscription-succeeded")))  # fmt: skip
    lab.publish("Successfully validated SNS topic for Amazon SES event publishing.")
    rec = await lab.run()
    assert rec.success, rec.result.error
    assert counters(rec) == {
        ("ses_events_total", "Bounce"): 4,  # one + one + two recipients
        ("ses_events_total", "Complaint"): 3,
        ("ses_events_total", "Delivery"): 2,
        ("ses_events_total", "Send"): 2,  # two destinations
        ("ses_events_total", "Reject"): 1,
        ("ses_events_total", "RenderingFailure"): 1,
        ("ses_events_total", "DeliveryDelay"): 1,
        ("ses_events_total", "Open"): 1,
        ("ses_bounces_total", "Permanent", "gmail"): 1,
        ("ses_bounces_total", "Permanent", "other"): 1,  # example.org, no MX
        ("ses_bounces_total", "Transient", "microsoft"): 2,  # hotmail.com, live.fr
        ("ses_complaints_total", "microsoft"): 1,
        ("ses_complaints_total", "yahoo"): 1,
        ("ses_complaints_total", "apple"): 1,
        ("ses_deliveries_total", "yahoo"): 1,
        ("ses_deliveries_total", "gmail"): 1,
    }
    # every series exists from the first run, zero where nothing was counted
    zeros = [s for s in rec.result.samples if s.metric == "ses_bounces_total" and not s.value]
    assert len(zeros) == 3 * 5 - 3
    assert lab.depth() == (0, 0)  # all deleted, the setup messages too
    assert "15 messages read, 13 events counted, 2 setup messages" in rec.result.details["events"]
    (table,) = rec.result.tables
    rows = {(r[0], r[1], r[2]): r for r in table.rows}
    gmail = rows[("gmail", "Permanent", "550 5.7.26")]
    assert gmail[3:5] == ("1", "gmail.com")
    assert gmail[5].startswith("This mail is unauthenticated")
    assert rows[("other", "Permanent", "550 5.1.1")][4] == "example.org"
    assert rows[("microsoft", "Transient", "no diagnostic code")][3] == "2"
    # recipients are personal data: no local part of any address anywhere in the result
    state = State()
    state.set_targets([rec.target])
    state.record(rec)
    page = status_page(state, True, lab.storage / "config.yml")
    assert "550 5.7.26" in page and "gmail.com" in page
    for local in ("ada.lovelace", "grace.hopper", "jane.doe", "edsger", "richard", "barbara"):
        assert local not in everything(rec)
        assert local not in page


async def test_unicode_addresses_are_scrubbed_and_idn_domains_are_a_labels(lab: Lab) -> None:
    lab.dns.add("xn--bcher-kva.de", "MX", "1 aspmx.l.google.com.")
    bounce = doc("event-bounce")
    first = bounce["bounce"]["bouncedRecipients"][0]
    addresses = ("jörg.müller@Bücher.DE", "用户名@例子.广告", "δοκιμή@παράδειγμα.δοκιμή")
    bounce["bounce"]["bouncedRecipients"] = [
        dict(first, emailAddress=a,
             diagnosticCode=f"smtp; 550 5.1.1 <{a}>: user {a.partition('@')[0]} unknown")
        for a in addresses
    ]  # fmt: skip
    bounce["mail"]["destination"] = list(addresses)
    lab.publish(json.dumps(bounce))
    rec = await lab.run()
    assert rec.success, rec.result.error
    assert counters(rec)[("ses_bounces_total", "Permanent", "gmail")] == 1  # by the A-label's MX
    (table,) = rec.result.tables
    examples = {r[0]: r[4] for r in table.rows}  # one example domain per provider and code
    assert examples["gmail"] == "xn--bcher-kva.de"
    assert examples["other"] in ("xn--fsqu00a.xn--4rr70v", "xn--hxajbheg2az3al.xn--jxalpdlp")
    state = State()
    state.set_targets([rec.target])
    state.record(rec)
    page = status_page(state, True, lab.storage / "config.yml")
    for local in ("jörg", "müller", "用户名", "δοκιμή@", "Bücher", "例子"):
        assert local not in everything(rec), local
        assert local not in page, local


async def test_parsing_a_batch_does_not_hold_the_event_loop(lab: Lab) -> None:
    """Messages were parsed on the event loop: ten of 1 MB (1,000 recipients, long diagnostics
    full of addresses) held it about 1.6 s, scrapes and every other probe waiting."""
    bounce = doc("event-bounce")
    first = bounce["bounce"]["bouncedRecipients"][0]
    for n in range(10):
        bounce["mail"]["messageId"] = f"big-{n}"
        bounce["bounce"]["bouncedRecipients"] = [
            dict(first, emailAddress=f"r{i}@example.org", diagnosticCode="a@b " * 225)
            for i in range(1000)
        ]
        lab.send(json.dumps(bounce))
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        rec = await lab.run()
    finally:
        tick.cancel()
    assert rec.success, rec.result.error
    assert counters(rec)[("ses_events_total", "Bounce")] == 10_000
    assert max(gaps) < 0.5, f"the event loop stalled {max(gaps):.2f} s"


async def test_custom_domains_by_their_mx(lab: Lab) -> None:
    lab.dns.add("workspace.example", "MX", "1 aspmx.l.google.com.")
    lab.dns.add("tenant.example", "MX", "0 tenant-example.mail.protection.outlook.com.")
    bounce = doc("event-bounce")
    recipients = bounce["bounce"]["bouncedRecipients"]
    addresses = ("a@workspace.example", "b@tenant.example", "c@nowhere.example")
    recipients[:] = [dict(recipients[0], emailAddress=a) for a in addresses]
    lab.publish(json.dumps(bounce))
    rec = await lab.run()
    assert rec.success, rec.result.error
    assert {k: v for k, v in counters(rec).items() if k[0] == "ses_bounces_total"} == {
        ("ses_bounces_total", "Permanent", "gmail"): 1,
        ("ses_bounces_total", "Permanent", "microsoft"): 1,
        ("ses_bounces_total", "Permanent", "other"): 1,
    }
    # the next run asks the store, not the DNS
    asked = len(lab.dns.queries)
    again = json.loads(json.dumps(bounce))
    again["mail"]["messageId"] = "another-message"
    lab.publish(json.dumps(again))
    rec = await lab.run()
    assert counters(rec)[("ses_bounces_total", "Permanent", "gmail")] == 2
    assert len(lab.dns.queries) == asked  # nowhere.example's NXDOMAIN is an answer too


# ----- at least once -----------------------------------------------------------------------------


async def test_a_duplicate_delivery_is_counted_once(lab: Lab) -> None:
    bounce = text("event-bounce")
    lab.publish(bounce)
    lab.send(bounce)  # the same event again, raw (two subscriptions, or SNS retrying)
    notification = doc("notification-bounce-dsn")
    lab.send(json.dumps(notification))
    notification["eventType"] = notification.pop("notificationType")
    lab.publish(json.dumps(notification))  # the same bounce in the other format
    rec = await lab.run()
    assert counters(rec)[("ses_events_total", "Bounce")] == 2
    assert "2 duplicates skipped" in rec.result.details["events"]
    lab.publish(bounce)  # and once more, a run later
    rec = await lab.run()
    assert counters(rec)[("ses_events_total", "Bounce")] == 2
    assert lab.depth() == (0, 0)


async def test_a_restart_mid_batch_loses_nothing_and_counts_nothing_twice(
    make_lab: Callable[..., Lab],
) -> None:
    """The batch is counted, then the delete fails (as if the process died before it): the
    messages come back after the visibility timeout, are seen as counted, and are deleted."""
    lab = make_lab(visibility=1)
    lab.publish(*(text(n) for n in ("event-bounce", "event-complaint", "event-delivery")))
    lab.front.fail("sqs:DeleteMessageBatch", 500, "InternalError", "We encountered an error")
    first = await lab.run()
    assert not first.success and "DeleteMessageBatch: InternalError" in str(first.result.error)
    assert counters(first)[("ses_bounces_total", "Permanent", "gmail")] == 1
    assert sum(lab.depth()) == 3  # still in the queue
    lab.front.faults.clear()
    await asyncio.sleep(1.2)  # the visibility timeout
    second = await lab.run()
    assert second.success, second.result.error
    assert counters(second) == counters(first)
    assert "3 duplicates skipped" in second.result.details["events"]
    assert lab.depth() == (0, 0)


async def test_a_batch_whose_transaction_fails_is_neither_counted_nor_deleted(
    make_lab: Callable[..., Lab],
) -> None:
    """The counting transaction fails halfway (a bounce's diagnostic row cannot be written:
    a table of the wrong shape): the counters and marks it had written are rolled back with it,
    and nothing is deleted; once the store is fixed, the next run counts the batch once."""
    lab = make_lab(visibility=1)
    lab.publish(text("event-delivery"), text("event-bounce"))
    store = await Store.open(lab.storage)
    try:
        await store.transact(
            lambda tx: tx.execute(f"CREATE TABLE {CODES_TABLE} (ts REAL, extra TEXT NOT NULL)")
        )
    finally:
        await store.aclose()
    failed = await lab.run()
    assert not failed.success and "store" in str(failed.result.error)
    assert counters(failed) == {}  # the delivery counted before the bounce is rolled back too
    assert sum(lab.depth()) == 2
    store = await Store.open(lab.storage)
    try:
        await store.transact(lambda tx: tx.execute(f"DROP TABLE {CODES_TABLE}"))
    finally:
        await store.aclose()
    await asyncio.sleep(1.2)  # the visibility timeout
    rec = await lab.run()
    assert rec.success, rec.result.error
    assert counters(rec) == {
        ("ses_events_total", "Delivery"): 1,
        ("ses_events_total", "Bounce"): 1,
        ("ses_deliveries_total", "yahoo"): 1,
        ("ses_bounces_total", "Permanent", "gmail"): 1,
    }
    assert lab.depth() == (0, 0)


async def test_a_malformed_message_is_left_for_the_dead_letter_queue(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab(dlq_after=2, visibility=1)
    lab.send("this is not an SES event", json.dumps({"eventType": "Bounce", "mail": {}}))
    lab.publish(text("event-delivery"))
    first = await lab.run()
    assert first.success, first.result.error
    assert "3 messages read, 1 events counted, 2 not SES events" in first.result.details["events"]
    reasons = first.result.details["invalid messages"]
    assert "message body is not JSON (1)" in reasons
    assert "Bounce event without mail.messageId (1)" in reasons
    assert "this is not" not in everything(first)  # the reason, never the content
    assert not first.result.findings  # the queue has a dead-letter queue
    dead: list[Any] = []
    for _ in range(4):  # each comes back after the visibility timeout until SQS moves it
        await asyncio.sleep(1.2)
        rec = await lab.run()
        assert rec.success, rec.result.error
        # counted once however often it comes back; the event was deleted at once
        assert counters(rec)[("ses_events_invalid_total",)] == 2
        assert counters(rec)[("ses_events_total", "Delivery")] == 1
        answer = lab.sqs.receive_message(QueueUrl=lab.dlq, MaxNumberOfMessages=10)
        dead += answer.get("Messages", [])
        if len(dead) == 2:
            break
    assert sorted(m["Body"][:7] for m in dead) == ["this is", '{"event']
    assert lab.depth() == (0, 0)


async def test_without_a_dead_letter_queue(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab(dlq_after=None)
    rec = await lab.run()
    assert [f.code for f in rec.result.findings] == ["ses_events_no_dead_letter_queue"]
    assert "no dead-letter queue" in rec.result.details["events queue"]


async def test_events_not_described_here(lab: Lab) -> None:
    future = doc("event-send")
    future["eventType"] = "Suppression"
    future["suppression"] = future.pop("send")
    lab.publish(json.dumps(future), text("event-open"))
    rec = await lab.run()
    assert counters(rec) == {("ses_events_total", "other"): 1, ("ses_events_total", "Open"): 1}
    assert lab.depth() == (0, 0)


# ----- could not tell ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "code", "expected"),
    [
        ("GetQueueAttributes", 403, "AccessDenied", "access denied: grant sqs:GetQueueAttributes"),
        ("ReceiveMessage", 403, "AccessDenied", "access denied: grant sqs:ReceiveMessage"),
        ("ReceiveMessage", 400, "RequestThrottled", "throttled by AWS"),
        ("DeleteMessageBatch", 403, "AccessDenied", "access denied: grant sqs:DeleteMessage"),
    ],
)
async def test_sqs_errors_could_not_tell(
    lab: Lab, operation: str, status: int, code: str, expected: str
) -> None:
    lab.publish(text("event-bounce"))
    lab.front.fail(f"sqs:{operation}", status, code, "User: arn:aws:iam::123456789012:user/p")
    rec = await lab.run()
    assert not rec.success
    assert expected in str(rec.result.error)
    for secret in SECRETS:
        assert secret not in everything(rec)
    # the account part of the run still reports, and the counters keep their series
    assert any(s.metric == "ses_max_24h_send" for s in rec.result.samples)
    assert any(s.metric == "ses_events_total" for s in rec.result.samples)
    lab.front.faults.clear()
    if operation == "DeleteMessageBatch":  # counted, not deleted: the next run deletes it
        assert counters(rec)[("ses_events_total", "Bounce")] == 1
    else:
        assert ("ses_events_total", "Bounce") not in counters(rec)
        assert sum(lab.depth()) == 1


async def test_throttling_retried(lab: Lab) -> None:
    lab.publish(text("event-bounce"))
    lab.front.fail("sqs:ReceiveMessage", 400, "RequestThrottled", "Rate exceeded", times=1)
    rec = await lab.run(max_attempts=3)
    assert rec.success, rec.result.error
    assert counters(rec)[("ses_events_total", "Bounce")] == 1


async def test_missing_queue(lab: Lab) -> None:
    rec = await lab.run(events_queue_url=f"{lab.front.url}/123456789012/no-such-queue")
    assert not rec.success
    assert "no such queue: check events_queue_url" in str(rec.result.error)


# ----- check: nothing consumed -------------------------------------------------------------------


async def test_one_shot_run_consumes_nothing(lab: Lab) -> None:
    lab.publish(text("event-bounce"), text("event-delivery"))
    rec = await lab.run(store=False)
    assert rec.success, rec.result.error
    assert "sqs:ReceiveMessage" not in lab.front.operations()
    assert "sqs:DeleteMessageBatch" not in lab.front.operations()
    assert rec.result.details["events queue"].startswith("2 waiting, 0 in flight")
    assert "does not consume" in rec.result.details["events"]
    assert [s.value for s in rec.result.samples if s.metric == "ses_events_queue_messages"] == [2]
    assert not [s for s in rec.result.samples if s.metric.endswith("_total")]
    assert lab.depth() == (2, 0)
    assert not (lab.storage / "deliverability-exporter.sqlite3").exists()


# ----- exposition, storage, config ---------------------------------------------------------------


async def test_counters_are_exposed_as_counters(lab: Lab) -> None:
    lab.publish(text("event-bounce"))
    rec = await lab.run()
    text_ = exposition([rec])
    # the collector's fast path writes what prometheus_client itself writes
    collector = StateCollector(lambda: [rec], lambda: (True, 0.0))
    assert text_.encode() == generate_latest(make_registry(collector))
    families = {f.name: f for f in text_string_to_metric_families(text_)}
    for name in ("ses_events", "ses_bounces", "ses_complaints", "ses_deliveries",
                 "ses_events_invalid"):  # fmt: skip
        assert families[f"deliverability_{name}"].type == "counter"
    bounces = {
        (s.labels["bounce_type"], s.labels["provider"]): s.value
        for s in families["deliverability_ses_bounces"].samples
    }
    assert bounces[("Permanent", "gmail")] == 1 and bounces[("Transient", "yahoo")] == 0
    assert families["deliverability_ses_events_queue_messages"].type == "gauge"


async def test_old_diagnostic_rows_are_forgotten(lab: Lab) -> None:
    lab.publish(text("event-bounce"))
    await lab.run()
    store = await Store.open(lab.storage)
    try:
        old = 1_000_000.0
        await store.transact(lambda tx: tx.execute(f"UPDATE {CODES_TABLE} SET ts = ?", (old,)))
        await store.transact(lambda tx: tx.execute("DELETE FROM kv WHERE key LIKE 'pruned:%'"))
    finally:
        await store.aclose()
    rec = await lab.run()
    assert rec.result.tables[0].rows == ()
    assert rec.result.tables[0].note == "No bounce in the last 24 hours."


async def test_marks_are_kept_as_long_as_the_queue_keeps_messages(lab: Lab) -> None:
    """moto's queue keeps messages 4 days (SQS's default): marks are kept 5 days."""
    bounce = text("event-bounce")
    lab.publish(bounce)
    assert counters(await lab.run())[("ses_events_total", "Bounce")] == 1

    async def age(days: float) -> None:
        store = await Store.open(lab.storage)
        try:
            then = time.time() - days * 86400

            def older(tx: Tx) -> None:
                tx.execute("UPDATE seen SET ts = ? WHERE namespace LIKE 'ses_events%'", (then,))
                tx.execute("DELETE FROM kv WHERE key LIKE 'pruned:%'")

            await store.transact(older)
        finally:
            await store.aclose()

    await age(4.5)
    lab.publish(bounce)
    assert counters(await lab.run())[("ses_events_total", "Bounce")] == 1  # still a duplicate
    await age(6)
    lab.publish(bounce)  # later than any copy of the first could come: a new event
    assert counters(await lab.run())[("ses_events_total", "Bounce")] == 2


@pytest.mark.parametrize(
    "url",
    ["sqs.us-east-1.amazonaws.com/123/q", "https://sqs.us-east-1.amazonaws.com/ses-events",
     "https://sqs.us-east-1.amazonaws.com/123456789012/bad name"],
)  # fmt: skip
def test_queue_url_checked(url: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("events_queue_url")):
        parse_config({"ses": [{"region": REGION, "events_queue_url": url}]})
