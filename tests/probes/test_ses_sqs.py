"""The SES events queue against moto's SQS and SNS on loopback, behind a real front server.

moto (``ThreadedMotoServer``, 127.0.0.1, port 0) answers SQS and SNS: queues, long polls, batch
deletes, redrive policies to a dead-letter queue, SNS topics fanning out to SQS subscriptions
(enveloped, or raw). The front server (:mod:`sqsfront`) forwards to moto and answers the errors
moto does not produce (access denied, throttling, a KMS key) as SQS writes them on the wire.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from awsenv import REGION, SECRETS, closed_port_url
from botocore.exceptions import NoCredentialsError
from sqsfront import SqsFront

from exporter.config import parse_config
from exporter.probes.ses_aws import SesResources
from exporter.probes.ses_events import NotAnEvent, SesEvent, parse
from exporter.probes.ses_sqs import (
    MAX_WAIT,
    QueueMessage,
    SqsCallError,
    SqsQueue,
    describe_sqs_error,
    poll_wait,
    queue_region,
    sqs_client,
    sqs_config,
)

DATA = Path(__file__).parent / "data" / "ses_events"

pytestmark = pytest.mark.usefixtures("aws_env")


def fixture_text(name: str) -> str:
    return (DATA / f"{name}.json").read_text()


@pytest.fixture
def front(aws_front: SqsFront) -> SqsFront:
    return aws_front


@pytest.fixture
async def pool() -> AsyncIterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(4, thread_name_prefix="test-sqs")
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def aws(front: SqsFront, service: str) -> Any:
    """A plain boto3 client (to seed state), through the front server."""
    return boto3.client(service, region_name=REGION, endpoint_url=front.url)


def make_queue(
    front: SqsFront, name: str = "ses-events", *, dlq_after: int | None = None, visibility: int = 30
) -> tuple[str, str]:
    """(queue URL, its ARN); with ``dlq_after``, a redrive policy to ``<name>-dlq``."""
    sqs = aws(front, "sqs")
    attributes = {"VisibilityTimeout": str(visibility)}
    if dlq_after is not None:
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = arn(front, dlq)
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(dlq_after)}
        attributes["RedrivePolicy"] = json.dumps(policy)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url, arn(front, url)


def arn(front: SqsFront, url: str) -> str:
    attrs = aws(front, "sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def queue(front: SqsFront, url: str, pool: ThreadPoolExecutor, attempts: int = 1) -> SqsQueue:
    client = sqs_client(
        boto3.Session(),
        url,
        region=REGION,
        endpoint_url=front.url,
        timeout=10.0,
        max_attempts=attempts,
    )
    return SqsQueue(client, url, pool)


async def drain(q: SqsQueue) -> list[QueueMessage]:
    out: list[QueueMessage] = []
    while batch := await q.receive(wait=1):
        out += batch
    return out


# ----- receiving ---------------------------------------------------------------------------------


async def test_receive_raw_events(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    url, _ = make_queue(front)
    names = ["event-bounce", "notification-complaint", "event-send"]
    for name in names:
        aws(front, "sqs").send_message(QueueUrl=url, MessageBody=fixture_text(name))
    q = queue(front, url, pool)
    got = await drain(q)
    assert len(got) == 3 and all(m.receive_count == 1 for m in got)
    kinds = sorted(p.event for p in (parse(m.body) for m in got) if isinstance(p, SesEvent))
    assert kinds == ["Bounce", "Complaint", "Send"]
    # received, not deleted: in flight until the visibility timeout
    depth = await q.depth()
    assert (depth.visible, depth.in_flight, depth.dead_letter_queue) == (0, 3, None)
    assert await q.delete(got) == []
    depth = await q.depth()
    assert (depth.visible, depth.in_flight) == (0, 0)


async def test_sns_fans_out_to_sqs(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    """SES publishes to a topic; one queue subscribes with the SNS envelope, one raw."""
    enveloped, enveloped_arn = make_queue(front, "enveloped")
    raw, raw_arn = make_queue(front, "raw")
    sns = aws(front, "sns")
    topic = sns.create_topic(Name="ses-events")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=enveloped_arn)
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=raw_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    for name in ("event-bounce", "event-delivery-delay", "notification-delivery"):
        sns.publish(TopicArn=topic, Message=fixture_text(name))
    sns.publish(
        TopicArn=topic, Message="Successfully validated SNS topic for Amazon SES event publishing."
    )
    from_sns = [parse(m.body) for m in await drain(queue(front, enveloped, pool))]
    from_raw = [parse(m.body) for m in await drain(queue(front, raw, pool))]
    assert NotAnEvent("SES event destination validation") in from_sns
    sns_events = {p.dedup_key: p for p in from_sns if isinstance(p, SesEvent)}
    raw_events = {p.dedup_key: p for p in from_raw if isinstance(p, SesEvent)}
    assert {p.envelope for p in sns_events.values()} == {"sns"}
    assert {p.envelope for p in raw_events.values()} == {"raw"}
    # the same three events whichever way they came: one de-dup key each
    assert set(sns_events) == set(raw_events) and len(sns_events) == 3
    assert sorted(p.event for p in sns_events.values()) == ["Bounce", "Delivery", "DeliveryDelay"]


async def test_long_poll_returns_a_message_sent_while_waiting(
    front: SqsFront, pool: ThreadPoolExecutor
) -> None:
    url, _ = make_queue(front)
    q = queue(front, url, pool)
    sender = threading.Timer(
        0.5, lambda: aws(front, "sqs").send_message(QueueUrl=url, MessageBody="{}")
    )
    sender.start()
    try:
        got = await q.receive(wait=5)
    finally:
        sender.join()
    # one call: a short poll would have answered empty before the message was sent
    assert [m.body for m in got] == ["{}"]
    assert front.operations().count("sqs:ReceiveMessage") == 1


async def test_invalid_message_goes_to_the_dead_letter_queue(
    front: SqsFront, pool: ThreadPoolExecutor
) -> None:
    """Not deleted, a message comes back after the visibility timeout; past maxReceiveCount the
    queue's redrive policy moves it to the dead-letter queue."""
    url, _ = make_queue(front, dlq_after=2, visibility=1)
    sqs = aws(front, "sqs")
    sqs.send_message(QueueUrl=url, MessageBody="this is not an SES event")
    q = queue(front, url, pool)
    depth = await q.depth()
    assert depth.dead_letter_queue == arn(front, f"{url}-dlq")
    assert depth.max_receive_count == 2
    counts = []
    for _ in range(4):
        got = await q.receive(wait=2)
        counts += [m.receive_count for m in got]
        if not got:
            break
        await asyncio.sleep(1.1)  # the visibility timeout
    assert counts == [1, 2]
    dead = sqs.receive_message(QueueUrl=f"{url}-dlq", WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in dead] == ["this is not an SES event"]


async def test_delete_reports_what_was_not_deleted(
    front: SqsFront, pool: ThreadPoolExecutor
) -> None:
    url, _ = make_queue(front)
    for n in range(12):
        aws(front, "sqs").send_message(QueueUrl=url, MessageBody=json.dumps({"n": n}))
    q = queue(front, url, pool)
    got = await drain(q)
    assert len(got) == 12
    stale = QueueMessage("stale-id", "not-a-receipt-handle", "{}", 1)
    assert await q.delete([*got, stale]) == ["stale-id"]
    batches = [s for s in front.seen if s.operation == "sqs:DeleteMessageBatch"]
    assert len(batches) == 2  # ten at most per call
    assert (await q.depth()).in_flight == 0


# ----- errors ------------------------------------------------------------------------------------


async def errors_of(q: SqsQueue) -> dict[str, SqsCallError]:
    out: dict[str, SqsCallError] = {}
    for name, call in (("receive", q.receive(wait=0)), ("depth", q.depth()),
                       ("delete", q.delete([QueueMessage("id", "handle", "", 1)]))):  # fmt: skip
        try:
            await call
        except SqsCallError as exc:
            out[name] = exc
    return out


async def test_access_denied(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    url, _ = make_queue(front)
    for operation in ("ReceiveMessage", "GetQueueAttributes", "DeleteMessageBatch"):
        front.fail(
            f"sqs:{operation}",
            403,
            "AccessDenied",
            f"User: arn:aws:iam::123456789012:user/probe is not authorized to perform:"
            f" sqs:{operation.lower()} on resource: {url}",
        )
    errors = await errors_of(queue(front, url, pool))
    assert {name: e.code for name, e in errors.items()} == {
        "receive": "AccessDenied",
        "depth": "AccessDenied",
        "delete": "AccessDenied",
    }
    assert "access denied: grant sqs:ReceiveMessage" in str(errors["receive"])
    assert "access denied: grant sqs:GetQueueAttributes" in str(errors["depth"])
    assert "access denied: grant sqs:DeleteMessage" in str(errors["delete"])


async def test_throttling_is_retried_then_reported(
    front: SqsFront, pool: ThreadPoolExecutor
) -> None:
    url, _ = make_queue(front)
    aws(front, "sqs").send_message(QueueUrl=url, MessageBody="{}")
    front.fail("sqs:ReceiveMessage", 400, "RequestThrottled", "Request is throttled.", times=1)
    got = await queue(front, url, pool, attempts=3).receive(wait=1)
    assert len(got) == 1
    assert front.operations().count("sqs:ReceiveMessage") == 2

    front.fail("sqs:ReceiveMessage", 400, "RequestThrottled", "Request is throttled.")
    with pytest.raises(SqsCallError) as info:
        await queue(front, url, pool, attempts=2).receive(wait=1)
    text = str(info.value)
    assert info.value.code == "RequestThrottled"
    assert "throttled by AWS" in text and "after 1 retries" in text


async def test_missing_queue(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    """moto's own answer for a queue that does not exist."""
    url = f"{front.url}/123456789012/no-such-queue"
    errors = await errors_of(queue(front, url, pool))
    assert set(errors) == {"receive", "depth", "delete"}
    for error in errors.values():
        assert error.code == "AWS.SimpleQueueService.NonExistentQueue"
        assert "no such queue: check events_queue_url" in str(error)


async def test_kms_key_not_usable(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    url, _ = make_queue(front)
    front.fail("sqs:ReceiveMessage", 400, "KMS.AccessDeniedException", "Access to KMS is denied.")
    with pytest.raises(SqsCallError, match="grant kms:Decrypt"):
        await queue(front, url, pool).receive(wait=0)


async def test_endpoint_down(pool: ThreadPoolExecutor) -> None:
    url = f"{closed_port_url()}/123456789012/ses-events"
    client = sqs_client(
        boto3.Session(), url, region=REGION, endpoint_url=url.rsplit("/", 2)[0],
        timeout=2.0, max_attempts=1,
    )  # fmt: skip
    with pytest.raises(SqsCallError, match="cannot reach the AWS endpoint"):
        await SqsQueue(client, url, pool).receive(wait=0)


async def test_errors_never_carry_credentials(front: SqsFront, pool: ThreadPoolExecutor) -> None:
    url, _ = make_queue(front)
    front.fail("sqs:ReceiveMessage", 403, "AccessDenied", "echo {authorization} {token}")
    with pytest.raises(SqsCallError) as info:
        await queue(front, url, pool).receive(wait=0)
    for secret in SECRETS:
        assert secret not in str(info.value)


# ----- resources ---------------------------------------------------------------------------------


async def test_resources_build_a_queue_client_once_and_close(front: SqsFront) -> None:
    url, _ = make_queue(front)
    config = parse_config(
        {"ses": [{"region": REGION, "endpoint_url": front.url, "events_queue_url": url,
                  "max_attempts": 1}]}
    )  # fmt: skip
    (cfg,) = config.ses
    resources = SesResources(workers=2)
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(resources.queue_pool, resources.queue_for, cfg, 10.0)
    again = await loop.run_in_executor(resources.queue_pool, resources.queue_for, cfg, 10.0)
    assert first is again
    assert first.executor is resources.queue_pool is not resources.pool  # long polls apart
    assert await first.receive(wait=0) == []
    pool = resources.queue_pool
    await resources.aclose()
    assert pool._shutdown  # type: ignore[attr-defined]
    await resources.aclose()


async def test_resources_without_credentials(
    front: SqsFront, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    config = parse_config(
        {"ses": [{"region": REGION, "events_queue_url": f"{front.url}/123456789012/q"}]}
    )
    resources = SesResources(workers=1)
    loop = asyncio.get_running_loop()
    with pytest.raises(NoCredentialsError):
        await loop.run_in_executor(resources.queue_pool, resources.queue_for, config.ses[0], 10.0)
    assert describe_sqs_error("credentials", NoCredentialsError()).code == ""
    assert "no AWS credentials found" in str(
        describe_sqs_error("credentials", NoCredentialsError())
    )
    await resources.aclose()


# ----- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/ses-events", "eu-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("https://us-gov-west-1.queue.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("http://127.0.0.1:4566/000000000000/q", None),
        ("https://vpce-1a2b.sqs.us-east-1.vpce.amazonaws.com/1/q", None),
        ("not a url", None),
    ],
)
def test_queue_region(url: str, region: str | None) -> None:
    assert queue_region(url) == region


def test_client_region_follows_the_queue_url() -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/ses-events"
    client = sqs_client(
        boto3.Session(), url, region=REGION, endpoint_url=None, timeout=10.0, max_attempts=3
    )
    assert client.meta.region_name == "eu-west-1"


def test_long_poll_settings() -> None:
    assert poll_wait(60.0) == 2 and poll_wait(4.0) == 1 and poll_wait(1.0) == 0
    assert poll_wait(1000.0) <= MAX_WAIT
    config = sqs_config(10.0, 2)
    # SQS holds the connection for the wait, then the per-attempt read budget applies
    assert config.read_timeout == poll_wait(10.0) + 2.5
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}
