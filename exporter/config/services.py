"""Sections for services mail depends on: ``ses`` (AWS) and ``queues`` (Postfix, RQ, Celery)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from exporter.config.fields import ROLE_ARN, Duration, Model, SecretRef, check_name, check_url
from exporter.net.redisurl import check_redis_url

MAX_COUNT = 10**9
"""Of a count threshold: a queue of more messages or jobs cannot be listed anyway."""
QUEUE_PATH = re.compile(r"/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?/?")


class SesConfig(Model):
    """One AWS account and region to watch (the ``ses`` probe).

    Credentials come from the standard AWS chain (environment, ``profile`` or the default
    profile, container/instance role, IRSA web identity); ``role_arn`` is then assumed with them.
    ``endpoint_url`` applies to every AWS API the probe calls; ``cloudwatch_endpoint_url`` and
    ``sts_endpoint_url`` override it for CloudWatch and STS (e.g. when only SES has a VPC
    endpoint). ``name`` (default: the region) is the target name and the ``region`` label of the
    metrics (see :mod:`exporter.probes.ses` for entries that share a region).
    ``events_queue_url``: the SQS queue SES event notifications arrive in (SNS-wrapped or raw);
    its client uses the queue URL's region, and ``sqs_endpoint_url`` (else ``endpoint_url``).
    """

    region: str
    name: str | None = None
    identities: list[str] = Field(default_factory=list)
    events_queue_url: str | None = None
    endpoint_url: str | None = None
    cloudwatch_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", value):
            raise ValueError(f"invalid AWS region {value!r}")
        return value

    @field_validator("endpoint_url", "cloudwatch_endpoint_url", "sts_endpoint_url",
                     "sqs_endpoint_url")  # fmt: skip
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_url(value)

    @field_validator("events_queue_url")
    @classmethod
    def _queue_url(cls, value: str | None) -> str | None:
        value = check_url(value)
        if value is not None and not QUEUE_PATH.fullmatch(urlsplit(value).path):
            raise ValueError(
                f"invalid SQS queue URL {value!r}: expected"
                " https://sqs.<region>.amazonaws.com/<account>/<queue name>"
            )
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.fullmatch(value):
            raise ValueError(
                f"invalid role ARN {value!r}: expected arn:aws:iam::<12-digit account>:role/<name>"
            )
        return value

    @field_validator("identities")
    @classmethod
    def _identities(cls, value: list[str]) -> list[str]:
        out = [v.strip() for v in value]
        for ident in out:
            if not ident or any(c.isspace() for c in ident):
                raise ValueError(f"invalid SES identity {ident!r}: expected a domain or address")
        return out

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> SesConfig:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id needs role_arn")
        return self


class QueueThresholds(Model):
    """When the ``queue`` probe reports a finding; meaning and defaults in the README (Queues)."""

    oldest_age: Duration = 900.0
    oldest_age_critical: Duration = 3600.0
    deferred: int = Field(default=100, ge=1, le=MAX_COUNT)
    deferred_critical: int = Field(default=1000, ge=1, le=MAX_COUNT)
    failed_increase: int = Field(default=1, ge=1, le=MAX_COUNT)
    growing_runs: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> QueueThresholds:
        for key in ("oldest_age", "deferred"):
            if getattr(self, f"{key}_critical") < getattr(self, key):
                raise ValueError(f"{key}_critical must be at least {key}")
        return self


class QueueConfig(SecretRef):
    """One ``queues`` entry: this host's Postfix queue, or RQ / Celery queues on a Redis."""

    name: str
    kind: Literal["postfix", "rq", "celery"]
    postfix_config_dir: str | None = None
    postqueue_path: str | None = None
    redis_url: str | None = None
    ca_file: str | None = None
    key_prefix: str | None = None
    queues: list[str] | None = None
    thresholds: QueueThresholds = Field(default_factory=QueueThresholds)
    interval: Duration | None = None
    timeout: Duration | None = None

    @field_validator("redis_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_redis_url(value)  # never echoes the URL: it may carry a password
        return value

    @field_validator("queues")
    @classmethod
    def _dedupe(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _valid(self) -> QueueConfig:
        check_name(self.name)
        redis = ("redis_url", "ca_file", "key_prefix", "queues", "password_env", "password_file")
        for key in redis if self.kind == "postfix" else ("postfix_config_dir", "postqueue_path"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key} cannot be used with kind {self.kind}")
        if self.kind != "postfix" and self.redis_url is None:
            raise ValueError(f"kind {self.kind} needs redis_url")
        if self.ca_file is not None and not (self.redis_url or "").startswith("rediss:"):
            raise ValueError("ca_file needs a rediss:// redis_url")
        if self.queues is not None and not self.queues:
            raise ValueError("queues: list at least one queue, or omit it to find them all")
        for text in [*(self.queues or ()), self.key_prefix or ""]:
            if len(text) > 200 or not text.isprintable():
                raise ValueError("queue names and key_prefix: at most 200 printable characters")
        return self
