"""The policy side of the ``mta_sts`` probe: fetch, judge, parse, and remember the policy ``id``.

:func:`check_policy` fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` as senders must
(RFC 8461 §3.3) and turns what came back into samples and findings: the certificate (expiry,
validity for the host name), the HTTP status (200 only; a redirect is its own finding since
senders never follow one), the media type (``text/plain``), the size (64 KB), the policy's syntax
and content (mode, ``max_age``).

The ``id`` is remembered across runs in the store (namespace ``mta_sts``, one row per domain:
the id, a SHA-256 of the policy's canonical form, that form, and when the id was first seen).
Senders refetch a policy only when the TXT record's ``id`` changes, so a policy edited under the
same ``id`` is never picked up by senders that cached the old one (until its ``max_age`` runs
out): that is the ``mta_sts_policy_changed_same_id`` finding, kept until the ``id`` changes or the
policy is put back. The remembered row is the first policy seen under an ``id``; a new ``id``
replaces it. In one-shot runs (``check``) there is no store and nothing is tracked.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporter.mtasts import Policy, PolicyError, StsRecord, parse_policy
from exporter.net.certs import trust_store
from exporter.net.dnsmodel import DnsTempError, NoAddress
from exporter.net.https import HttpsError, HttpsResponse, HttpsTimeout, https_get
from exporter.probes.base import ProbeContext
from exporter.results import Finding, ProbeResult, sample
from exporter.storage import StoreError, Tx

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 65536
"""The size senders are told to accept at most (RFC 8461 §3.3: "e.g., 64 KB")."""
MEDIA_TYPE = "text/plain"
SHORT_MAX_AGE = 86400
"""Below a day, a policy protects little: an attacker who blocks one refresh disables it."""
CERT_WARNING_DAYS = 21.0
STORE_NAMESPACE = "mta_sts"


@dataclass
class PolicyCheck:
    """What :func:`check_policy` found."""

    result: ProbeResult = field(default_factory=ProbeResult)
    policy: Policy | None = None
    """The parsed policy (also when senders would not accept how it was served)."""
    valid: bool = False
    """Served as senders require (certificate, 200, text/plain, size) and parses."""
    unknown: bool = False
    """Could not tell (a timeout, a DNS failure): ``result.error`` says why."""


def _cut(text: str, limit: int = 200) -> str:
    """A header as evidence: a server may send 8 KB of it."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    """A duration for people: hours under a day, else days."""
    if abs(seconds) < 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


async def check_policy(
    domain: str,
    record: StsRecord | None,
    *,
    ca_file: str | None,
    ctx: ProbeContext[Any],
    deadline: float,
) -> PolicyCheck:
    """Fetch and judge the policy of ``domain``; ``record`` is the valid TXT record, if any."""
    host = f"mta-sts.{domain}"
    check = PolicyCheck()
    result = check.result
    result.details["policy url"] = f"https://{host}{POLICY_PATH}"
    try:
        trust = trust_store(ca_file)
    except (OSError, ValueError) as exc:
        result.error = f"mta_sts.ca_file: {exc}"
        check.unknown = True
        return check
    try:
        resp = await https_get(
            host,
            POLICY_PATH,
            addresses=ctx.dns.addresses,
            deadline=deadline,
            trust=trust,
            max_body=MAX_POLICY_BYTES,
        )
    except (DnsTempError, HttpsTimeout) as exc:
        result.error = f"policy fetch: {exc}"
        check.unknown = True
        return check
    except (NoAddress, HttpsError) as exc:
        result.findings.append(Finding("mta_sts_policy_unreachable", str(exc)))
        return check
    cert_ok = _certificate(domain, host, resp, result)
    content_type = _cut(resp.content_type) or "(none)"
    result.details["policy http"] = (
        f"{resp.status} {_cut(resp.reason)}; Content-Type {content_type};"
        f" {len(resp.body)}{'+' if resp.truncated else ''} bytes; {resp.tls_version or '?'}"
    )
    if 300 <= resp.status < 400:
        where = _cut(resp.location or "") or "(no Location header)"
        result.findings.append(
            Finding("mta_sts_policy_redirect", f"HTTP {resp.status} to {where}; never followed")
        )
        return check
    if resp.status != 200:
        result.findings.append(
            Finding("mta_sts_policy_unreachable", f"HTTP {resp.status} {_cut(resp.reason)}".strip())
        )
        return check
    type_ok = resp.media_type == MEDIA_TYPE
    if not type_ok:
        result.findings.append(Finding("mta_sts_policy_media_type", f"Content-Type {content_type}"))
    if resp.truncated:
        result.findings.append(
            Finding(
                "mta_sts_policy_invalid",
                f"the body is larger than {MAX_POLICY_BYTES // 1024} KB; senders stop reading",
            )
        )
        return check
    try:
        policy = parse_policy(resp.body)
    except PolicyError as exc:
        result.findings.append(Finding("mta_sts_policy_invalid", str(exc)))
        return check
    check.policy = policy
    check.valid = cert_ok and type_ok
    _policy_findings(domain, policy, result)
    if record is not None:
        await _track(ctx, domain, record.id, policy, result)
    return check


def _certificate(domain: str, host: str, resp: HttpsResponse, result: ProbeResult) -> bool:
    """Samples, details and findings about the policy host's certificate; True when valid."""
    leaf = resp.certificate
    verdict = resp.verdict
    if leaf is None or verdict is None:
        result.findings.append(Finding("mta_sts_cert_invalid", resp.cert_error or "no certificate"))
        return False
    not_after = leaf.not_after
    if verdict.valid and verdict.verified_not_after is not None:
        not_after = verdict.verified_not_after  # the chain's earliest expiry
    result.samples.append(
        sample("mta_sts_cert_not_after_timestamp_seconds", not_after, domain=domain)
    )
    result.details["policy certificate"] = (
        f"subject {leaf.subject}; issuer {leaf.issuer}; not after {_iso(leaf.not_after)}"
    )
    if not verdict.valid:
        reason = verdict.valid_error or verdict.trust_error or "verification failed"
        result.findings.append(Finding("mta_sts_cert_invalid", f"{host}: {reason}"))
        return False
    left = not_after - time.time()
    if left < CERT_WARNING_DAYS * 86400:
        result.findings.append(
            Finding(
                "mta_sts_cert_expiring",
                f"{host}: the certificate chain expires {_iso(not_after)} (in {_span(left)})",
            )
        )
    return True


def _policy_findings(domain: str, policy: Policy, result: ProbeResult) -> None:
    result.samples.append(sample("mta_sts_max_age_seconds", policy.max_age, domain=domain))
    patterns = ", ".join(str(p) for p in policy.mx) or "(none)"
    result.details["policy"] = (
        f"mode {policy.mode}; max_age {policy.max_age} ({_span(policy.max_age)}); mx {patterns}"
    )
    if policy.notes:  # the first few: a 64 KB policy can repeat a field thousands of times
        more = f"; ... ({len(policy.notes)} in all)" if len(policy.notes) > 3 else ""
        result.details["policy note"] = "; ".join(policy.notes[:3]) + more
    if policy.mode == "testing":
        result.findings.append(
            Finding("mta_sts_testing_mode", "senders report TLS failures but still deliver")
        )
    if policy.mode != "none" and policy.max_age < SHORT_MAX_AGE:
        result.findings.append(
            Finding(
                "mta_sts_max_age_short",
                f"max_age {policy.max_age} s ({_span(policy.max_age)}); at least 86400 (a day),"
                " weeks recommended",
            )
        )


# ----- the id across runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Remembered:
    id: str
    digest: str
    policy: str
    since: float


def _load(raw: str | None) -> _Remembered | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return _Remembered(str(data["id"]), str(data["digest"]), str(data["policy"]),
                           float(data["since"]))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable row is replaced


def _remember(
    domain: str, policy_id: str, policy: Policy, now: float
) -> Callable[[Tx], _Remembered | None]:
    """The transaction: the row remembered for this id, or None after remembering this one."""

    def tx_fn(tx: Tx) -> _Remembered | None:
        before = _load(tx.get(STORE_NAMESPACE, domain))
        if before is not None and before.id == policy_id:
            return before
        row = {"id": policy_id, "digest": policy.digest(), "policy": policy.canonical(),
               "since": now}  # fmt: skip
        tx.put(STORE_NAMESPACE, domain, json.dumps(row, sort_keys=True))
        return None

    return tx_fn


def _diff(before: str, now: str) -> str:
    old, new = before.splitlines(), now.splitlines()
    removed = [f"-{line}" for line in old if line not in new]
    added = [f"+{line}" for line in new if line not in old]
    return "; ".join(removed + added)


async def _track(
    ctx: ProbeContext[Any], domain: str, policy_id: str, policy: Policy, result: ProbeResult
) -> None:
    if ctx.store is None:
        result.details["policy id tracking"] = (
            "not tracked in a one-shot run: the daemon remembers each id's policy in its store"
        )
        return
    try:
        before = await ctx.store.transact(_remember(domain, policy_id, policy, time.time()))
    except StoreError as exc:
        result.error = f"store: {exc}"
        return
    if before is None:
        result.details["policy id tracking"] = f"id {policy_id} first seen now"
        return
    result.details["policy id tracking"] = f"id {policy_id} first seen {_iso(before.since)}"
    if before.digest != policy.digest():
        result.findings.append(
            Finding(
                "mta_sts_policy_changed_same_id",
                f"the policy changed since id {policy_id} was first seen ({_iso(before.since)})"
                f" but the id did not: {_diff(before.policy, policy.canonical())}",
            )
        )
