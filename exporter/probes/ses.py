"""The ``ses`` probe: the AWS SES account of one region (quota, status, reputation, identities).

One target per ``ses`` entry; its name (and the ``region`` label of its metrics) is the entry's
``name``, by default its region. Entries that share a region without a ``name`` are told apart
automatically as ``<region>/<role name>``, ``<region>/<profile>`` or ``<region>/<endpoint host>``
(then ``#2``, ``#3``...); give them a ``name`` to choose.

Each run makes these calls, concurrently, with boto3 (the AWS SDK: credentials chain, signing,
retries and error parsing are the SDK's, nothing is hand-written):

- SES v1 ``GetSendQuota``: the 24-hour quota, the send rate and what was sent;
- SESv2 ``GetAccount``: sending enabled, production access (else the sandbox), enforcement status;
- CloudWatch ``GetMetricData`` on ``AWS/SES`` ``Reputation.BounceRate`` and
  ``Reputation.ComplaintRate``: the latest 5-minute average in the last 24 hours (none when
  nothing was sent, which is not an error);
- SESv2 ``GetEmailIdentity`` for each configured identity: verification and DKIM status.

boto3 blocks, so the calls run in a small thread pool of this module's own (a stuck call cannot
starve the event loop's default executor), with botocore's connect/read timeouts sized from the
target's timeout and its "standard" retry mode (throttling and 5xx are retried with backoff).
Clients are kept between runs (building one costs tens of milliseconds of CPU, and an assumed
role's credentials are then refreshed by botocore only when they near expiry).

A call that fails (throttled, access denied, expired credentials, endpoint down, timeout) adds
its reason to the result's error, so ``probe_success`` is 0, while the parts that answered are
still published. Reasons name the operation and AWS's error code and message, never the request:
messages are cut before any echoed canonical request and scrubbed of anything shaped like an
access key, a secret key or a session token.
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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from exporter.config import Config, SesConfig
from exporter.probes.base import Finding, ProbeContext, ProbeResult, Target, sample, state_set
from exporter.probes.providers import (
    BOUNCE_CRITICAL,
    BOUNCE_WARNING,
    COMPLAINT_CRITICAL,
    COMPLAINT_WARNING,
    NOT_FOUND,
    AccountState,
    IdentityState,
    Quota,
    RateSample,
    SendingAccount,
    dkim_level,
    identity_level,
    quota_level,
    rate_level,
)

# boto3/botocore (about 18 MB resident) are imported only where clients are built or their errors
# classified, so a daemon without ``ses`` entries never loads them.
if TYPE_CHECKING:
    from botocore.config import Config as BotoConfig
    from botocore.credentials import CredentialProvider, Credentials
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sesv2 import SESV2Client

# botocore logs whole requests (headers included, so the session token) at DEBUG; keep it quiet
# whatever the exporter's --log.level, also when the probe is used without setup_logging().
for _name in ("botocore", "boto3", "urllib3"):
    _logger = logging.getLogger(_name)
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.WARNING)

ENFORCEMENT_STATUSES = ("HEALTHY", "PROBATION", "SHUTDOWN")
REPUTATION_NAMESPACE = "AWS/SES"
BOUNCE_METRIC = "Reputation.BounceRate"
COMPLAINT_METRIC = "Reputation.ComplaintRate"
REPUTATION_LOOKBACK = timedelta(hours=24)
REPUTATION_PERIOD = 300
ROLE_SESSION_NAME = "deliverability-exporter"
WORKERS = 4
CLIENT_CACHE_SIZE = 32

PERMISSIONS = {
    "GetSendQuota": "ses:GetSendQuota",
    "GetAccount": "ses:GetAccount",
    "GetEmailIdentity": "ses:GetEmailIdentity",
    "GetMetricData": "cloudwatch:GetMetricData",
    "AssumeRole": "sts:AssumeRole on the role",
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
    """Remove credential-shaped text: the given secret values, access key ids, long tokens."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, REDACTED)
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


def build_clients(cfg: SesConfig, timeout: float) -> AwsClients:
    """Clients for one entry: the standard credential chain, then ``role_arn`` if given."""
    import boto3
    import botocore.session
    from botocore.credentials import (
        AssumeRoleCredentialFetcher,
        CredentialResolver,
        DeferredRefreshableCredentials,
    )
    from botocore.exceptions import NoCredentialsError

    config = botocore_config(timeout, cfg.max_attempts)
    session = boto3.Session(profile_name=cfg.profile, region_name=cfg.region)
    # Resolve the chain now: with none found, say so once (not once per call), and build no
    # clients to cache (a client keeps the credentials it was built with).
    source = session.get_credentials()
    if source is None:
        raise NoCredentialsError()
    if cfg.role_arn:
        sts_url = cfg.sts_endpoint_url or cfg.endpoint_url
        extra: dict[str, Any] = {"RoleSessionName": ROLE_SESSION_NAME}
        if cfg.external_id:
            extra["ExternalId"] = cfg.external_id
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=functools.partial(
                session.client, region_name=cfg.region, endpoint_url=sts_url, config=config
            ),
            source_credentials=source,
            role_arn=cfg.role_arn,
            extra_args=extra,
        )
        assumed = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=_ASSUME_ROLE_METHOD
        )
        core = botocore.session.Session()
        resolver = CredentialResolver([_fixed_provider(assumed)])
        core.register_component("credential_provider", resolver)
        session = boto3.Session(botocore_session=core, region_name=cfg.region)
    return AwsClients(
        ses=session.client("ses", endpoint_url=cfg.endpoint_url, config=config),
        sesv2=session.client("sesv2", endpoint_url=cfg.endpoint_url, config=config),
        cloudwatch=session.client(
            "cloudwatch",
            endpoint_url=cfg.cloudwatch_endpoint_url or cfg.endpoint_url,
            config=config,
        ),
    )


_cache: OrderedDict[tuple[str, float], AwsClients] = OrderedDict()
_cache_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _clients_for(cfg: SesConfig, timeout: float) -> AwsClients:
    key = (cfg.model_dump_json(include=_CLIENT_FIELDS), timeout)
    with _cache_lock:
        clients = _cache.get(key)
        if clients is not None:
            _cache.move_to_end(key)
            return clients
    clients = build_clients(cfg, timeout)
    with _cache_lock:
        _cache[key] = clients
        while len(_cache) > CLIENT_CACHE_SIZE:
            _cache.popitem(last=False)
    return clients


_CLIENT_FIELDS = {"region", "endpoint_url", "cloudwatch_endpoint_url", "sts_endpoint_url",
                  "profile", "role_arn", "external_id", "max_attempts"}  # fmt: skip


def clear_client_cache() -> None:
    """Forget cached clients (and their credentials), e.g. after the environment changed."""
    with _cache_lock:
        _cache.clear()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ses-probe")
    return _executor


# ----- the calls -------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class _Outcome:
    value: Any = None
    error: str | None = None


_import_lock = threading.Lock()
_BOTO_MODULES = ("boto3", "botocore.config", "botocore.credentials", "botocore.exceptions",
                 "botocore.session")  # fmt: skip


def _import_boto() -> None:
    """Import boto3/botocore once, under a lock: the first runs import them from several worker
    threads at once, and concurrent first imports of one package can see it half-initialised."""
    with _import_lock:
        for module in _BOTO_MODULES:
            importlib.import_module(module)


def _guarded(operation: str, fn: Callable[[], T]) -> _Outcome:
    _import_boto()
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _Outcome(value=fn())
    except (BotoCoreError, ClientError) as exc:
        return _Outcome(error=describe_error(operation, exc))


def _get_quota(c: AwsClients) -> Quota:
    r = c.ses.get_send_quota()
    return Quota(
        max_24h_send=float(r.get("Max24HourSend", 0.0)),
        max_send_rate=float(r.get("MaxSendRate", 0.0)),
        sent_last_24h=float(r.get("SentLast24Hours", 0.0)),
    )


def _get_account(c: AwsClients) -> AccountState:
    r = c.sesv2.get_account()
    return AccountState(
        sending_enabled=r.get("SendingEnabled"),
        production_access=r.get("ProductionAccessEnabled"),
        enforcement_status=r.get("EnforcementStatus"),
    )


def _get_reputation(c: AwsClients) -> tuple[RateSample | None, RateSample | None]:
    end = datetime.now(UTC).replace(microsecond=0)
    queries: list[Any] = [
        {
            "Id": qid,
            "MetricStat": {
                "Metric": {"Namespace": REPUTATION_NAMESPACE, "MetricName": metric},
                "Period": REPUTATION_PERIOD,
                "Stat": "Average",
            },
            "ReturnData": True,
        }
        for qid, metric in (("bounce", BOUNCE_METRIC), ("complaint", COMPLAINT_METRIC))
    ]
    r = c.cloudwatch.get_metric_data(
        MetricDataQueries=queries,
        StartTime=end - REPUTATION_LOOKBACK,
        EndTime=end,
        ScanBy="TimestampDescending",
    )
    latest: dict[str, RateSample] = {}
    for res in r.get("MetricDataResults", []):
        pairs = list(zip(res.get("Timestamps", []), res.get("Values", []), strict=False))
        if pairs:
            ts, value = max(pairs, key=lambda p: p[0])
            latest[res.get("Id", "")] = RateSample(float(value), ts)
    return latest.get("bounce"), latest.get("complaint")


def _get_identity(c: AwsClients, name: str) -> IdentityState:
    from botocore.exceptions import ClientError

    try:
        r = c.sesv2.get_email_identity(EmailIdentity=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NotFoundException", "NotFound"):
            return IdentityState(name, NOT_FOUND, None)
        raise
    status = r.get("VerificationStatus")
    if status is None:  # older API answers have only the boolean
        status = "SUCCESS" if r.get("VerifiedForSendingStatus") else "NOT_STARTED"
    dkim = r.get("DkimAttributes", {}).get("Status")
    return IdentityState(name, str(status), None if dkim is None else str(dkim))


class SesProvider:
    """The SES side of :class:`~exporter.probes.providers.SendingProvider` for one entry."""

    def __init__(self, cfg: SesConfig, *, timeout: float) -> None:
        self.cfg = cfg
        self.timeout = timeout

    async def fetch(self) -> SendingAccount:
        loop = asyncio.get_running_loop()
        pool = _pool()
        out = SendingAccount()
        built = await loop.run_in_executor(
            pool, _guarded, "credentials", lambda: _clients_for(self.cfg, self.timeout)
        )
        if built.error:
            out.errors.append(built.error)
            return out
        clients: AwsClients = built.value

        def call(operation: str, fn: Callable[[AwsClients], Any]) -> asyncio.Future[_Outcome]:
            return loop.run_in_executor(pool, _guarded, operation, lambda: fn(clients))

        quota, account, reputation, *identities = await asyncio.gather(
            call("GetSendQuota", _get_quota),
            call("GetAccount", _get_account),
            call("GetMetricData", _get_reputation),
            *(
                call("GetEmailIdentity", functools.partial(_get_identity, name=name))
                for name in self.cfg.identities
            ),
        )
        out.quota = quota.value
        out.account = account.value
        if reputation.value is not None:
            out.bounce_rate, out.complaint_rate = reputation.value
        for name, outcome in zip(self.cfg.identities, identities, strict=True):
            if outcome.value is not None:
                out.identities.append(outcome.value)
            elif outcome.error:
                out.details[f"identity {name}"] = "unknown: the API call failed"
        for outcome in (quota, account, reputation, *identities):
            if outcome.error and outcome.error not in out.errors:
                out.errors.append(outcome.error)
        return out


# ----- snapshot -> metrics and findings ----------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value * 100:.3g}%"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value.is_integer() else f"{value:,}"


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(acct: SendingAccount, region: str) -> ProbeResult:
    """Turn a snapshot into samples (``region`` label) and findings."""
    result = ProbeResult(details=dict(acct.details))
    samples, findings, details = result.samples, result.findings, result.details
    if acct.quota is not None:
        q = acct.quota
        samples += [
            sample("ses_max_24h_send", q.max_24h_send, region=region),
            sample("ses_max_send_rate", q.max_send_rate, region=region),
            sample("ses_sent_last_24h", q.sent_last_24h, region=region),
        ]
        usage = q.usage
        if usage is None:
            details["quota"] = (f"unlimited 24-hour quota, {_count(q.sent_last_24h)} sent,"
                                f" max {_count(q.max_send_rate)}/s")  # fmt: skip
        else:
            seen = (f"{_count(q.sent_last_24h)} of {_count(q.max_24h_send)} sent in the last"
                    f" 24 h ({_pct(usage)})")  # fmt: skip
            details["quota"] = f"{seen}, max {_count(q.max_send_rate)}/s"
            level = quota_level(usage)
            if level:
                findings.append(Finding("ses_quota_high", seen, severity=level))
    if acct.account is not None:
        a = acct.account
        if a.sending_enabled is not None:
            samples.append(sample("ses_sending_enabled", a.sending_enabled, region=region))
            if not a.sending_enabled:
                findings.append(Finding("ses_sending_paused", "SendingEnabled is false"))
        if a.production_access is not None:
            samples.append(sample("ses_production_access", a.production_access, region=region))
            if not a.production_access:
                findings.append(Finding("ses_sandbox", "ProductionAccessEnabled is false"))
        status = a.enforcement_status
        samples += state_set("ses_enforcement_status", status, ENFORCEMENT_STATUSES, "status",
                             region=region)  # fmt: skip
        if status == "PROBATION":
            findings.append(Finding("ses_probation", "EnforcementStatus is PROBATION"))
        elif status == "SHUTDOWN":
            findings.append(Finding("ses_shutdown", "EnforcementStatus is SHUTDOWN"))
        details["account"] = ", ".join([
            {True: "sending enabled", False: "sending PAUSED", None: "sending status unknown"}[
                a.sending_enabled],
            {True: "production access", False: "SANDBOX", None: "access unknown"}[
                a.production_access],
            f"enforcement status {status or 'unknown'}",
        ])  # fmt: skip
        if status is not None and status not in ENFORCEMENT_STATUSES:
            details["account"] += " (not a documented status)"
    for key, rate, metric, code, warn, crit in (
        ("bounce_rate", acct.bounce_rate, "ses_bounce_rate", "ses_bounce_rate_high",
         BOUNCE_WARNING, BOUNCE_CRITICAL),
        ("complaint_rate", acct.complaint_rate, "ses_complaint_rate", "ses_complaint_rate_high",
         COMPLAINT_WARNING, COMPLAINT_CRITICAL),
    ):  # fmt: skip
        if rate is None:
            if not any("GetMetricData" in e for e in acct.errors):
                details[key] = "no datapoint in the last 24 h (nothing sent recently?)"
            continue
        samples.append(sample(metric, rate.value, region=region))
        details[key] = f"{_pct(rate.value)} at {_when(rate.timestamp)}"
        level = rate_level(rate.value, warn, crit)
        if level:
            findings.append(Finding(code, details[key], severity=level))
    for ident in acct.identities:
        samples += [
            sample("ses_identity_verified", ident.verified, region=region, identity=ident.name),
            sample("ses_identity_dkim_verified", ident.dkim_verified, region=region,
                   identity=ident.name),
        ]  # fmt: skip
        if ident.verification == NOT_FOUND:
            details[f"identity {ident.name}"] = "not found in this region"
            missing = "identity does not exist in this region"
            findings.append(Finding("ses_identity_not_verified", missing, subject=ident.name))
            continue
        details[f"identity {ident.name}"] = (
            f"verification {ident.verification}, DKIM {ident.dkim or 'unknown'}"
        )
        level = identity_level(ident.verification)
        if level:
            evidence = f"verification status {ident.verification}"
            findings.append(
                Finding("ses_identity_not_verified", evidence, subject=ident.name, severity=level)
            )
        level = dkim_level(ident.dkim)
        if level:
            evidence = f"DKIM status {ident.dkim or 'absent'}"
            findings.append(
                Finding("ses_identity_dkim_not_verified", evidence, subject=ident.name,
                        severity=level)
            )  # fmt: skip
    if acct.errors:
        result.error = "; ".join(acct.errors)
    return result


# ----- the probe kind ----------------------------------------------------------------------------


def target_names(entries: list[SesConfig]) -> list[str]:
    """Target names: ``name``, else the region, told apart when regions repeat (module doc)."""
    regions = [e.region for e in entries]
    names: list[str] = []
    for entry in entries:
        if entry.name:
            names.append(entry.name)
        elif regions.count(entry.region) == 1:
            names.append(entry.region)
        else:
            names.append(f"{entry.region}/{_qualifier(entry)}")
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            candidate = f"{name}#{n}"
        out.append(candidate)
    return out


def _qualifier(entry: SesConfig) -> str:
    if entry.role_arn:
        return entry.role_arn.rsplit("/", 1)[-1]
    if entry.profile:
        return entry.profile
    if entry.endpoint_url:
        return urlsplit(entry.endpoint_url).netloc
    return "default"


class SesProbe:
    name = "ses"

    def targets(self, config: Config) -> list[Target]:
        return [
            Target.of(self.name, name, entry, config)
            for entry, name in zip(config.ses, target_names(config.ses), strict=True)
        ]

    async def run(self, target: Target, ctx: ProbeContext) -> ProbeResult:
        cfg: SesConfig = target.settings
        account = await SesProvider(cfg, timeout=ctx.timeout).fetch()
        return evaluate(account, target.name)


PROBE = SesProbe()
