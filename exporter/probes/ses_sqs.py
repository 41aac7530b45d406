"""The SQS queue SES events arrive in: long polls, deletes and its depth, off the event loop.

boto3 blocks, so every call runs in a thread pool that belongs to the probe's per-config
resources (:class:`~exporter.probes.ses_aws.SesResources`, which also keeps the clients), never
in the event loop's default executor: a long poll that hangs cannot starve the rest of the
daemon. Calls use botocore's "standard" retry mode (throttling
and 5xx retried with backoff) and timeouts sized from the probe's timeout; a long poll's read
timeout is its wait plus that per-attempt budget, since SQS holds the connection for the wait.

Only three actions are called, so the smallest IAM policy is ``sqs:ReceiveMessage``,
``sqs:DeleteMessage`` (which also allows ``DeleteMessageBatch``) and ``sqs:GetQueueAttributes``.
A failed call raises :class:`SqsCallError`, whose text names the operation and AWS's error code
with a hint (access denied, throttled, no such queue, KMS key not usable), never credentials.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from exporter.probes.ses_aws import attempt_timeout, describe_error

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config as BotoConfig
    from mypy_boto3_sqs import SQSClient

MAX_WAIT = 20
"""SQS's longest long poll (``WaitTimeSeconds``)."""
LONG_POLL = 2
"""Seconds a long poll waits when the probe's timeout allows (see :func:`poll_wait`)."""
MAX_BATCH = 10
"""SQS's most messages per ``ReceiveMessage`` and per ``DeleteMessageBatch``."""
WORKERS = 4

_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_KMS = re.compile(r"^(KMS\.|Kms)")
_QUEUE_HOST = re.compile(
    r"^(?:sqs\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com(?:\.cn)?"
    r"|([a-z]{2}(?:-[a-z]+)+-\d)\.queue\.amazonaws\.com(?:\.cn)?)$"
)


class SqsCallError(Exception):
    """An SQS call failed: ``str()`` says which call and why, with a hint; ``code`` is AWS's
    error code ('' when the call did not get an answer)."""

    def __init__(self, reason: str, code: str = "") -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    """How many times SQS has handed this message out (1 on the first receive)."""


@dataclass(frozen=True, slots=True)
class QueueDepth:
    visible: int
    """Messages waiting (``ApproximateNumberOfMessages``)."""
    in_flight: int
    """Messages received and not yet deleted or returned (``...NotVisible``)."""
    dead_letter_queue: str | None
    """The redrive policy's target queue ARN; None when the queue has no dead-letter queue."""
    max_receive_count: int | None
    retention: float | None = None
    """How long the queue keeps a message (``MessageRetentionPeriod``, seconds)."""


def queue_region(queue_url: str) -> str | None:
    """The region in an AWS queue URL (``https://sqs.eu-west-1.amazonaws.com/123/q``)."""
    match = re.match(r"^https?://([^/:]+)", queue_url.strip())
    if match is None:
        return None
    host = _QUEUE_HOST.match(match.group(1).lower())
    if host is None:
        return None
    return host.group(1) or host.group(2)


def poll_wait(timeout: float) -> int:
    """Seconds a long poll waits for a first message: :data:`LONG_POLL`, within a quarter of
    the probe's timeout. Long polling asks every SQS server (a short poll samples some and may
    answer empty while messages wait); a run ends with one empty poll, so this is its cost."""
    return int(max(0.0, min(float(LONG_POLL), timeout / 4)))


def sqs_config(timeout: float, max_attempts: int) -> BotoConfig:
    """botocore settings for the queue's client: SQS holds a long poll's connection for up to
    :func:`poll_wait` seconds before it answers, so that is added to the read timeout."""
    from botocore.config import Config as BotoConfig

    per_attempt = attempt_timeout(timeout, max_attempts)
    return BotoConfig(
        connect_timeout=min(per_attempt, 5.0),
        read_timeout=poll_wait(timeout) + per_attempt,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        user_agent_extra="deliverability-exporter",
    )


def sqs_client(
    session: boto3.Session,
    queue_url: str,
    *,
    region: str,
    endpoint_url: str | None,
    timeout: float,
    max_attempts: int,
) -> SQSClient:
    """A client for the queue: in the queue URL's region when it names one, else ``region``."""
    return session.client(
        "sqs",
        region_name=queue_region(queue_url) or region,
        endpoint_url=endpoint_url,
        config=sqs_config(timeout, max_attempts),
    )


def describe_sqs_error(operation: str, exc: BaseException) -> SqsCallError:
    """The reason a call failed, with the SQS-specific hints."""
    from botocore.exceptions import ClientError

    code = ""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
    text = describe_error(operation, exc)
    if code in _MISSING_QUEUE:
        text += " (no such queue: check events_queue_url, its account and its region)"
    elif _KMS.match(code):
        text += (
            " (the queue is encrypted with a KMS key this identity cannot use: grant kms:Decrypt)"
        )
    elif code == "OverLimit":
        text += " (too many messages in flight: they are received and never deleted)"
    return SqsCallError(text, code)


T = TypeVar("T")


@dataclass
class SqsQueue:
    """One queue, called through ``client`` in ``executor``."""

    client: SQSClient
    url: str
    executor: Executor

    async def _call(self, operation: str, fn: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        def guarded() -> T:
            try:
                return fn()
            except (BotoCoreError, ClientError) as exc:
                raise describe_sqs_error(operation, exc) from None

        return await asyncio.get_running_loop().run_in_executor(self.executor, guarded)

    async def receive(self, *, wait: int, max_messages: int = MAX_BATCH) -> list[QueueMessage]:
        """One long poll: up to ``max_messages`` messages, waiting up to ``wait`` seconds for the
        first. Received messages stay invisible for the queue's visibility timeout."""
        count = max(1, min(MAX_BATCH, max_messages))

        def call() -> list[QueueMessage]:
            answer = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=max(0, min(MAX_WAIT, wait)),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            return [_message(m) for m in answer.get("Messages", [])]

        return await self._call("ReceiveMessage", call)

    async def delete(self, messages: list[QueueMessage]) -> list[str]:
        """Delete messages (batches of ten); the ids of those SQS did not delete."""
        failed: list[str] = []
        for start in range(0, len(messages), MAX_BATCH):
            batch = messages[start : start + MAX_BATCH]
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)
            ]

            def call(entries: list[Any] = entries) -> list[str]:
                answer = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
                return [str(f.get("Id", "")) for f in answer.get("Failed", [])]

            for index in await self._call("DeleteMessageBatch", call):
                if index.isascii() and index.isdigit() and int(index) < len(batch):
                    failed.append(batch[int(index)].message_id)
        return failed

    async def depth(self) -> QueueDepth:
        """How many messages wait and are in flight, and where invalid ones end up."""

        def call() -> QueueDepth:
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "RedrivePolicy",
                    "MessageRetentionPeriod",
                ],
            ).get("Attributes", {})
            target, max_receives = _redrive(attrs.get("RedrivePolicy"))
            return QueueDepth(
                visible=_int(attrs.get("ApproximateNumberOfMessages")),
                in_flight=_int(attrs.get("ApproximateNumberOfMessagesNotVisible")),
                dead_letter_queue=target,
                max_receive_count=max_receives,
                retention=float(_int(attrs.get("MessageRetentionPeriod"))) or None,
            )

        return await self._call("GetQueueAttributes", call)


def _message(raw: Any) -> QueueMessage:
    attributes = raw.get("Attributes") or {}
    return QueueMessage(
        message_id=str(raw.get("MessageId", "")),
        receipt_handle=str(raw.get("ReceiptHandle", "")),
        body=str(raw.get("Body", "")),
        receive_count=_int(attributes.get("ApproximateReceiveCount"), default=1),
    )


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def _redrive(policy: str | None) -> tuple[str | None, int | None]:
    if not policy:
        return None, None
    try:
        data = json.loads(policy)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    target = data.get("deadLetterTargetArn")
    count = _int(data.get("maxReceiveCount"), default=0)
    return (str(target) if target else None), (count if count > 0 else None)
