"""AWS plumbing of the ``ses`` probe: clients, the thread pool, error reasons without secrets.

boto3 blocks, so calls run in a small thread pool owned by the probe's per-config resources
(:class:`SesResources`: a stuck call cannot starve the event loop's default executor; the pool
is shut down when a reload replaces the config), with botocore's connect/read timeouts sized
from the target's timeout and its "standard" retry mode (throttling and 5xx are retried with
backoff). Clients are kept between runs of one config (building one costs tens of milliseconds
of CPU, and an assumed role's credentials are then refreshed by botocore only when they near
expiry).

Reasons name the operation and AWS's error code and message, never the request: messages are
cut before any echoed canonical request and scrubbed of anything shaped like an access key, a
secret key or a session token.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from exporter import redact as secret_values
from exporter.config import SesConfig

# boto3/botocore (about 18 MB resident) are imported only where clients are built or their errors
# classified, so a daemon without ``ses`` entries never loads them.
if TYPE_CHECKING:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.credentials import CredentialProvider, Credentials
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sesv2 import SESV2Client

    from exporter.probes.ses_sqs import SqsQueue

# botocore logs whole requests (headers included, so the session token) at DEBUG; keep it quiet
# whatever the exporter's --log.level, also when the probe is used without setup_logging().
for _name in ("botocore", "boto3", "urllib3"):
    _logger = logging.getLogger(_name)
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.WARNING)

ROLE_SESSION_NAME = "deliverability-exporter"
WORKERS = 4
CLIENT_CACHE_SIZE = 32

PERMISSIONS = {
    "GetSendQuota": "ses:GetSendQuota",
    "GetAccount": "ses:GetAccount",
    "GetEmailIdentity": "ses:GetEmailIdentity",
    "GetMetricData": "cloudwatch:GetMetricData",
    "AssumeRole": "sts:AssumeRole on the role",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
}
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "TooManyRequestsException",
                              "RequestLimitExceeded", "RequestThrottled", "SlowDown"})  # fmt: skip
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                          "NotAuthorized"})  # fmt: skip
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
REJECTED_CODES = frozenset({"InvalidClientTokenId", "UnrecognizedClientException",
                            "SignatureDoesNotMatch", "InvalidSignatureException",
                            "IncompleteSignature", "MissingAuthenticationToken"})  # fmt: skip


# ----- secrets never leave ---------------------------------------------------------------------

_ACCESS_KEY = re.compile(r"(?:AKIA|ASIA|AROA|AIDA|ABIA|ACCA)[A-Z0-9]{12,}")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9/+=_-]{40,}")
_SIGNATURE = re.compile(r"(Signature=|Credential=)[^\s,;'\"]*")
_ECHO_MARKERS = ("The Canonical String", "The String-to-Sign", "Canonical request", "\n")
REDACTED = "[redacted]"
MAX_MESSAGE = 300


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove credential-shaped text: the given secret values and every registered one
    (:mod:`exporter.redact`, which the runner applies to every result anyway), access key ids,
    long tokens. Applied here first so that messages are cut after, never through, a secret."""
    secret_values.add(*secrets)
    text = secret_values.redact(text)
    text = _SIGNATURE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _ACCESS_KEY.sub(REDACTED, text)
    return _LONG_TOKEN.sub(REDACTED, text)


def clean_message(message: str) -> str:
    """AWS's error message without an echoed request (SignatureDoesNotMatch), and bounded."""
    for marker in _ECHO_MARKERS:
        message = message.split(marker, 1)[0]
    message = message.strip()
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return message


def _env_secrets() -> tuple[str, ...]:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
             "AWS_SECURITY_TOKEN")  # fmt: skip
    return tuple(v for v in (os.environ.get(n) for n in names) if v)


def describe_error(operation: str, exc: BaseException) -> str:
    """One line saying which call failed and why, with a hint; never credentials."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    secrets = _env_secrets()
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "UnknownError")
        op = exc.operation_name or operation
        # redact before cutting, so that no prefix of a secret survives the cut
        message = clean_message(redact(str(error.get("Message") or ""), secrets))
        text = f"{op}: {code}" + (f": {message}" if message else "")
        retries = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
        if code in THROTTLING_CODES:
            text += " (throttled by AWS, probe less often or ask AWS for a higher API rate)"
        elif code in DENIED_CODES:
            text += f" (access denied: grant {PERMISSIONS.get(op, op)})"
        elif code in EXPIRED_CODES:
            text += " (the AWS credentials have expired)"
        elif code in REJECTED_CODES:
            text += " (the AWS credentials were rejected)"
        if retries:
            text += f" after {retries} retries"
    elif isinstance(exc, NoCredentialsError):
        text = (f"{operation}: no AWS credentials found (environment, profile, web identity,"
                " container or instance role)")  # fmt: skip
    elif isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
        text = f"{operation}: timed out talking to the AWS endpoint ({type(exc).__name__})"
    elif isinstance(exc, EndpointConnectionError | ConnectionClosedError):
        text = (f"{operation}: cannot reach the AWS endpoint"
                f" ({clean_message(redact(str(exc), secrets))})")  # fmt: skip
    elif isinstance(exc, ResponseParserError):
        # Its message quotes the body, which may echo the request (headers, signature): not shown.
        text = (f"{operation}: the endpoint's answer is not an AWS API response"
                " (a proxy, or a wrong endpoint_url?)")  # fmt: skip
    elif isinstance(exc, BotoCoreError):
        text = f"{operation}: {type(exc).__name__}: {clean_message(redact(str(exc), secrets))}"
    else:
        text = f"{operation}: {type(exc).__name__}"
    return redact(text, secrets)


# ----- clients ---------------------------------------------------------------------------------


def attempt_timeout(timeout: float, max_attempts: int) -> float:
    """Per-attempt read timeout: all attempts (plus backoff) fit in half the probe timeout."""
    return max(0.5, min(20.0, timeout / (2 * max_attempts)))


def botocore_config(timeout: float, max_attempts: int) -> BotoConfig:
    from botocore.config import Config as BotoConfig

    per_attempt = attempt_timeout(timeout, max_attempts)
    return BotoConfig(
        connect_timeout=min(per_attempt, 5.0),
        read_timeout=per_attempt,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        user_agent_extra="deliverability-exporter",
    )


_ASSUME_ROLE_METHOD = "assume-role"


def _fixed_provider(credentials: Credentials) -> CredentialProvider:
    """A provider that hands botocore the (self-refreshing) assumed-role credentials (the class
    is defined here so that botocore is imported only when a role is assumed)."""
    from botocore.credentials import CredentialProvider

    class _FixedProvider(CredentialProvider):
        METHOD = _ASSUME_ROLE_METHOD
        CANONICAL_NAME = "deliverability-exporter-assume-role"

        def __init__(self, credentials: Credentials) -> None:
            super().__init__()
            self._credentials = credentials

        def load(self) -> Credentials:
            return self._credentials

    return _FixedProvider(credentials)


@dataclass(frozen=True)
class AwsClients:
    ses: SESClient
    sesv2: SESV2Client
    cloudwatch: CloudWatchClient


def aws_session(cfg: SesConfig, timeout: float) -> boto3.Session:
    """The session of one entry: the standard credential chain, then ``role_arn`` if given
    (assumed through STS, refreshed by botocore when the credentials near expiry)."""
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleCredentialFetcher,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )
    from botocore.exceptions import NoCredentialsError

    session = boto3.Session(profile_name=cfg.profile, region_name=cfg.region)
    # Resolve the chain now: with none found, say so once (not once per call), and build no
    # clients to cache (a client keeps the credentials it was built with).
    source = session.get_credentials()
    if source is None:
        raise NoCredentialsError()
    frozen = source.get_frozen_credentials()
    secret_values.add(frozen.access_key, frozen.secret_key, frozen.token)
    if not cfg.role_arn:
        return session
    sts_url = cfg.sts_endpoint_url or cfg.endpoint_url
    extra: dict[str, Any] = {"RoleSessionName": ROLE_SESSION_NAME}
    if cfg.external_id:
        extra["ExternalId"] = cfg.external_id
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            session.client,
            region_name=cfg.region,
            endpoint_url=sts_url,
            config=botocore_config(timeout, cfg.max_attempts),
        ),
        source_credentials=source,
        role_arn=cfg.role_arn,
        extra_args=extra,
    )

    def fetch() -> dict[str, Any]:
        fetched: dict[str, Any] = fetcher.fetch_credentials()
        # assumed-role credentials: never in any output either (exporter.redact)
        secret_values.add(
            fetched.get("access_key"), fetched.get("secret_key"), fetched.get("token")
        )
        return fetched

    assumed = DeferredRefreshableCredentials(refresh_using=fetch, method=_ASSUME_ROLE_METHOD)
    core = botocore.session.Session()
    resolver = CredentialResolver([_fixed_provider(assumed)])
    core.register_component("credential_provider", resolver)
    return boto3.Session(botocore_session=core, region_name=cfg.region)


def build_clients(cfg: SesConfig, timeout: float) -> AwsClients:
    """Clients for one entry's SES account (see :func:`aws_session` for the credentials)."""
    config = botocore_config(timeout, cfg.max_attempts)
    session = aws_session(cfg, timeout)
    return AwsClients(
        ses=session.client("ses", endpoint_url=cfg.endpoint_url, config=config),
        sesv2=session.client("sesv2", endpoint_url=cfg.endpoint_url, config=config),
        cloudwatch=session.client(
            "cloudwatch",
            endpoint_url=cfg.cloudwatch_endpoint_url or cfg.endpoint_url,
            config=config,
        ),
    )


_CLIENT_FIELDS = ("region", "endpoint_url", "cloudwatch_endpoint_url", "sts_endpoint_url",
                  "profile", "role_arn", "external_id", "max_attempts")  # fmt: skip
_QUEUE_FIELDS = (*_CLIENT_FIELDS, "events_queue_url", "sqs_endpoint_url")


class SesResources:
    """What the ``ses`` probe keeps across the runs of one config: built clients (by the
    entry's AWS settings and timeout, at most :data:`CLIENT_CACHE_SIZE`) and the thread pool;
    for entries with ``events_queue_url``, their queues' clients and a second pool for SQS (a
    long poll holds its thread for its wait, which must not delay the account's calls)."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ses-probe")
        self._clients: OrderedDict[tuple[str, float], AwsClients] = OrderedDict()
        self._queues: OrderedDict[tuple[str, float], SqsQueue] = OrderedDict()
        self._queue_pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self._lock = threading.Lock()  # clients are built on the pools' threads

    @property
    def queue_pool(self) -> ThreadPoolExecutor:
        """The SQS calls' pool, made on first use (a config without queues makes none)."""
        with self._lock:
            if self._queue_pool is None:
                self._queue_pool = ThreadPoolExecutor(self._workers, thread_name_prefix="ses-sqs")
            return self._queue_pool

    def queue_for(self, cfg: SesConfig, timeout: float) -> SqsQueue:
        """The entry's events queue with its client, built once (call it on :attr:`queue_pool`:
        building a client blocks). Raises botocore's errors (no credentials)."""
        from exporter.probes.ses_sqs import SqsQueue, sqs_client  # it imports this module

        url = cfg.events_queue_url
        assert url is not None

        def build() -> SqsQueue:
            client = sqs_client(
                aws_session(cfg, timeout),
                url,
                region=cfg.region,
                endpoint_url=cfg.sqs_endpoint_url or cfg.endpoint_url,
                timeout=timeout,
                max_attempts=cfg.max_attempts,
            )
            return SqsQueue(client, url, self.queue_pool)

        key = (cfg.model_dump_json(include=set(_QUEUE_FIELDS)), timeout)
        return self._cached(self._queues, key, build)

    def clients_for(self, cfg: SesConfig, timeout: float) -> AwsClients:
        key = (cfg.model_dump_json(include=set(_CLIENT_FIELDS)), timeout)
        return self._cached(self._clients, key, lambda: build_clients(cfg, timeout))

    def _cached(
        self,
        cache: OrderedDict[tuple[str, float], C],
        key: tuple[str, float],
        build: Callable[[], C],
    ) -> C:
        """``cache[key]``, built outside the lock when missing (two threads may both build one:
        the first stored wins); the least recently used entries beyond the size are dropped."""
        with self._lock:
            found = cache.get(key)
            if found is not None:
                cache.move_to_end(key)
                return found
        built = build()
        with self._lock:
            built = cache.setdefault(key, built)
            while len(cache) > CLIENT_CACHE_SIZE:
                cache.popitem(last=False)
        return built

    def call(self, operation: str, fn: Callable[[], T]) -> asyncio.Future[Outcome]:
        """Run one blocking AWS call on the pool; the outcome holds its value or its reason."""
        return asyncio.get_running_loop().run_in_executor(self.pool, guarded, operation, fn)

    async def aclose(self) -> None:
        with self._lock:
            self._clients.clear()
            self._queues.clear()
            queue_pool, self._queue_pool = self._queue_pool, None
        # Calls in flight finish on their own threads (botocore's timeouts bound them).
        self.pool.shutdown(wait=False, cancel_futures=True)
        if queue_pool is not None:
            queue_pool.shutdown(wait=False, cancel_futures=True)


T = TypeVar("T")
C = TypeVar("C")


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str | None = None


_BOTO_MODULES = ("boto3", "botocore.config", "botocore.credentials", "botocore.exceptions",
                 "botocore.session")  # fmt: skip


def _import_boto() -> None:
    """Import boto3/botocore: the first runs import them from several worker threads at once,
    and the import system's per-module locks make that safe (each module is imported once)."""
    for module in _BOTO_MODULES:
        importlib.import_module(module)


def guarded(operation: str, fn: Callable[[], T]) -> Outcome:
    _import_boto()
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    try:
        return Outcome(value=fn())
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        return Outcome(error=describe_error(operation, exc))
