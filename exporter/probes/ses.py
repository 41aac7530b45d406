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

The AWS side (clients, the thread pool boto3's blocking calls run on, error reasons without
secrets) is :mod:`exporter.probes.ses_aws`; the pool and clients are the probe's per-config
resources.

A call that fails (throttled, access denied, expired credentials, endpoint down, timeout) adds
its reason to the result's error, so ``probe_success`` is 0, while the parts that answered are
still published. Reasons name the operation and AWS's error code and message, never the request:
messages are cut before any echoed canonical request and scrubbed of anything shaped like an
access key, a secret key or a session token.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from exporter.config import Config, SesConfig
from exporter.net.network import Network
from exporter.probes.base import ProbeContext
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
from exporter.probes.ses_aws import AwsClients, Outcome, SesResources
from exporter.results import Finding, ProbeResult, Target, sample, state_set

ENFORCEMENT_STATUSES = ("HEALTHY", "PROBATION", "SHUTDOWN")
REPUTATION_NAMESPACE = "AWS/SES"
BOUNCE_METRIC = "Reputation.BounceRate"
COMPLAINT_METRIC = "Reputation.ComplaintRate"
REPUTATION_LOOKBACK = timedelta(hours=24)
REPUTATION_PERIOD = 300


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

    def __init__(self, cfg: SesConfig, resources: SesResources, *, timeout: float) -> None:
        self.cfg = cfg
        self.resources = resources
        self.timeout = timeout

    async def fetch(self) -> SendingAccount:
        res = self.resources
        out = SendingAccount()
        built = await res.call("credentials", lambda: res.clients_for(self.cfg, self.timeout))
        if built.error:
            out.errors.append(built.error)
            return out
        clients: AwsClients = built.value

        def call(operation: str, fn: Callable[[AwsClients], Any]) -> asyncio.Future[Outcome]:
            return res.call(operation, lambda: fn(clients))

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

    def targets(self, config: Config) -> list[Target[SesConfig]]:
        return [
            Target.of(self.name, name, entry, config)
            for entry, name in zip(config.ses, target_names(config.ses), strict=True)
        ]

    def resources(self, config: Config, net: Network) -> SesResources:
        return SesResources()

    async def run(self, target: Target[SesConfig], ctx: ProbeContext[SesResources]) -> ProbeResult:
        cfg = target.settings
        account = await SesProvider(cfg, ctx.resources, timeout=ctx.timeout).fetch()
        return evaluate(account, target.name)


PROBE = SesProbe()
