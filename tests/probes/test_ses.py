"""The ses probe against a real moto server on loopback, behind a real HTTP front server.

moto (``ThreadedMotoServer`` on 127.0.0.1, port 0) answers SES v1, SESv2 identities, CloudWatch
and STS; :mod:`awsfront` answers SESv2 GetAccount (which moto lacks) and injects the states and
errors each test needs. Dummy credentials come from the environment; nothing leaves loopback
(the EC2 metadata lookup is disabled, config files point at an empty directory).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from awsfront import AwsFront, cbor_map
from hypothesis import given
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import exposition
from exporter.config import ConfigError, parse_config
from exporter.findings import CATALOGUE, CRITICAL, WARNING
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES, ses, ses_aws
from exporter.probes.providers import (
    BOUNCE_CRITICAL,
    BOUNCE_WARNING,
    Quota,
    dkim_level,
    identity_level,
    quota_level,
    rate_level,
)
from exporter.results import ProbeResult, RunRecord, Target
from exporter.runner import Runtime, run_probe

REGION = "us-east-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKENxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)


# ----- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SES",
        "AWS_ENDPOINT_URL_SESV2",
        "AWS_ENDPOINT_URL_CLOUDWATCH",
        "AWS_ENDPOINT_URL_STS",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture(scope="module")
def shared_front(moto_url: str) -> Iterator[AwsFront]:
    server = AwsFront(moto_url).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def front(moto_url: str, shared_front: AwsFront) -> AwsFront:
    """The front server, reset, over a reset moto. Each run gets a fresh runtime, so boto3
    clients are built anew with the test's environment (production reuses them between runs of
    one config)."""
    req = urllib.request.Request(moto_url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    shared_front.reset()
    return shared_front


def client(front: AwsFront, service: str) -> Any:
    """A boto3 client talking to moto through the front server (to seed state)."""
    return boto3.client(service, region_name=REGION, endpoint_url=front.url)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def config_for(*entries: dict[str, Any], timeout: str = "10s") -> Any:
    return parse_config({"global": {"timeout": timeout}, "ses": list(entries)})


async def run(
    front: AwsFront | None,
    probe_timeout: str = "10s",
    runtime: Runtime | None = None,
    **entry: Any,
) -> RunRecord:
    """One run of one entry on ``runtime`` (kept by the caller, as the daemon keeps one per
    config) or on a fresh runtime closed afterwards."""
    entry.setdefault("region", REGION)
    entry.setdefault("max_attempts", 1)
    if front is not None:
        entry.setdefault("endpoint_url", front.url)
    config = config_for(entry, timeout=probe_timeout)
    (target,) = PROBES["ses"].targets(config)
    if runtime is not None:
        return await run_probe(PROBES["ses"], target, runtime)
    fresh = Runtime(make_resolver(["127.0.0.1:53"]), config)
    try:
        return await run_probe(PROBES["ses"], target, fresh)
    finally:
        await fresh.aclose()


def values(result: ProbeResult) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.metric, tuple((k, v) for k, v in s.labels if k != "region")): s.value
        for s in result.samples
    }


def value(result: ProbeResult, metric: str, **labels: str) -> float | None:
    return values(result).get((metric, tuple(sorted(labels.items()))))


def codes(result: ProbeResult) -> dict[str, str]:
    """Finding code (with subject) -> effective severity."""
    return {
        (f"{f.code}:{f.subject}" if f.subject else f.code): f.severity or CATALOGUE[f.code].severity
        for f in result.findings
    }


def put_rates(
    front: AwsFront,
    bounce: Sequence[tuple[float, float]] = (),
    complaint: Sequence[tuple[float, float]] = (),
) -> None:
    """Put reputation datapoints, each (value, hours ago), into moto's CloudWatch."""
    now = datetime.now(UTC)
    data = [
        {"MetricName": name, "Value": v, "Timestamp": now - timedelta(hours=h), "Unit": "None"}
        for name, points in (
            ("Reputation.BounceRate", bounce),
            ("Reputation.ComplaintRate", complaint),
        )
        for v, h in points
    ]
    if data:
        client(front, "cloudwatch").put_metric_data(Namespace="AWS/SES", MetricData=data)


# ----- healthy account, every metric -------------------------------------------------------------


async def test_healthy_account_publishes_every_metric(front: AwsFront) -> None:
    v2 = client(front, "sesv2")
    v2.create_email_identity(
        EmailIdentity="example.test", DkimSigningAttributes={"NextSigningKeyLength": "RSA_2048_BIT"}
    )
    v1 = client(front, "ses")
    for n in range(3):
        v1.send_email(
            Source="probe@example.test",
            Destination={"ToAddresses": ["a@b.test"]},
            Message={"Subject": {"Data": f"m{n}"}, "Body": {"Text": {"Data": "x"}}},
        )
    put_rates(front, bounce=[(0.012, 1.0)], complaint=[(0.0002, 1.0)])

    rec = await run(front, identities=["example.test"])

    assert rec.success, rec.result.error
    r = rec.result
    assert r.findings == []
    assert value(r, "ses_max_24h_send") == 200.0  # moto's fixed quota
    assert value(r, "ses_max_send_rate") == 1.0
    assert value(r, "ses_sent_last_24h") == 3.0
    assert value(r, "ses_sending_enabled") == 1.0
    assert value(r, "ses_production_access") == 1.0
    assert value(r, "ses_enforcement_status", status="HEALTHY") == 1.0
    assert value(r, "ses_enforcement_status", status="PROBATION") == 0.0
    assert value(r, "ses_enforcement_status", status="SHUTDOWN") == 0.0
    assert value(r, "ses_bounce_rate") == pytest.approx(0.012)
    assert value(r, "ses_complaint_rate") == pytest.approx(0.0002)
    assert value(r, "ses_identity_verified", identity="example.test") == 1.0
    assert value(r, "ses_identity_dkim_verified", identity="example.test") == 1.0
    assert all(dict(s.labels)["region"] == REGION for s in r.samples)
    assert r.details["quota"].startswith("3 of 200 sent in the last 24 h (1.5%)")
    ops = front.operations()
    for op in (
        "ses:GetSendQuota",
        "sesv2:GetAccount",
        "cloudwatch:GetMetricData",
        "sesv2:GetEmailIdentity",
    ):
        assert op in ops


async def test_metrics_through_exposition(front: AwsFront) -> None:
    front.account["EnforcementStatus"] = "PROBATION"
    rec = await run(front)
    families = {f.name: f for f in text_string_to_metric_families(exposition([rec]))}
    success = families["deliverability_probe_success"].samples
    assert [(s.labels, s.value) for s in success] == [({"probe": "ses", "target": REGION}, 1.0)]
    status = {
        s.labels["status"]: s.value
        for s in families["deliverability_ses_enforcement_status"].samples
    }
    assert status == {"HEALTHY": 0.0, "PROBATION": 1.0, "SHUTDOWN": 0.0}
    finding = families["deliverability_finding"].samples
    assert [(s.labels["code"], s.labels["severity"]) for s in finding] == [
        ("ses_probation", WARNING)
    ]
    assert families["deliverability_ses_max_24h_send"].samples[0].labels == {"region": REGION}


# ----- quota -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "maximum", "expected"),
    [
        (1599.0, 2000.0, None),
        (1600.0, 2000.0, WARNING),  # 80%
        (1899.0, 2000.0, WARNING),
        (1900.0, 2000.0, CRITICAL),  # 95%
        (2000.0, 2000.0, CRITICAL),
        (123456.0, -1.0, None),  # -1 = unlimited
    ],
)
async def test_quota_thresholds(
    front: AwsFront, sent: float, maximum: float, expected: str | None
) -> None:
    front.quota = {"Max24HourSend": maximum, "MaxSendRate": 14.0, "SentLast24Hours": sent}
    rec = await run(front)
    assert rec.success, rec.result.error
    assert value(rec.result, "ses_max_24h_send") == maximum
    assert value(rec.result, "ses_sent_last_24h") == sent
    assert value(rec.result, "ses_max_send_rate") == 14.0
    assert codes(rec.result).get("ses_quota_high") == expected
    if maximum < 0:
        assert rec.result.details["quota"].startswith("unlimited")


# ----- account states ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ProductionAccessEnabled": False}, {"ses_sandbox": WARNING}),
        ({"SendingEnabled": False}, {"ses_sending_paused": CRITICAL}),
        ({"EnforcementStatus": "PROBATION"}, {"ses_probation": WARNING}),
        (
            {"EnforcementStatus": "SHUTDOWN", "SendingEnabled": False},
            {"ses_shutdown": CRITICAL, "ses_sending_paused": CRITICAL},
        ),
    ],
)
async def test_account_states(
    front: AwsFront, changes: dict[str, Any], expected: dict[str, str]
) -> None:
    front.account.update(changes)
    rec = await run(front)
    assert rec.success, rec.result.error
    assert codes(rec.result) == expected
    r = rec.result
    assert value(r, "ses_sending_enabled") == float(front.account["SendingEnabled"])
    assert value(r, "ses_production_access") == float(front.account["ProductionAccessEnabled"])
    current = front.account["EnforcementStatus"]
    for status in ses.ENFORCEMENT_STATUSES:
        assert value(r, "ses_enforcement_status", status=status) == float(status == current)


async def test_undocumented_enforcement_status_is_all_zero(front: AwsFront) -> None:
    front.account["EnforcementStatus"] = "SOMETHING_NEW"
    rec = await run(front)
    assert rec.success
    assert [
        value(rec.result, "ses_enforcement_status", status=s) for s in ses.ENFORCEMENT_STATUSES
    ] == [0.0, 0.0, 0.0]
    assert "not a documented status" in rec.result.details["account"]
    assert rec.result.findings == []


# ----- reputation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounce", "complaint", "expected"),
    [
        (0.0199, 0.00049, {}),
        (0.02, 0.0, {"ses_bounce_rate_high": WARNING}),
        (0.05, 0.0, {"ses_bounce_rate_high": WARNING}),  # "above 5%" is critical
        (0.051, 0.0, {"ses_bounce_rate_high": CRITICAL}),
        (0.0, 0.0005, {"ses_complaint_rate_high": WARNING}),
        (0.0, 0.0011, {"ses_complaint_rate_high": CRITICAL}),
        (0.2, 0.01, {"ses_bounce_rate_high": CRITICAL, "ses_complaint_rate_high": CRITICAL}),
    ],
)
async def test_reputation_thresholds(
    front: AwsFront, bounce: float, complaint: float, expected: dict[str, str]
) -> None:
    put_rates(front, bounce=[(bounce, 0.5)], complaint=[(complaint, 0.5)])
    rec = await run(front)
    assert rec.success, rec.result.error
    assert value(rec.result, "ses_bounce_rate") == pytest.approx(bounce)
    assert value(rec.result, "ses_complaint_rate") == pytest.approx(complaint)
    assert codes(rec.result) == expected


async def test_latest_datapoint_wins_and_old_ones_are_ignored(front: AwsFront) -> None:
    put_rates(front, bounce=[(0.30, 30.0), (0.09, 3.0), (0.01, 0.2)], complaint=[(0.5, 25.0)])
    rec = await run(front)
    assert rec.success, rec.result.error
    assert value(rec.result, "ses_bounce_rate") == pytest.approx(0.01)
    # the only complaint datapoint is older than 24 h: no sample, no finding, not an error
    assert value(rec.result, "ses_complaint_rate") is None
    assert rec.result.findings == []
    assert "no datapoint" in rec.result.details["complaint_rate"]


# ----- identities --------------------------------------------------------------------------------


async def test_identities_from_moto(front: AwsFront) -> None:
    v2 = client(front, "sesv2")
    v2.create_email_identity(
        EmailIdentity="signed.test", DkimSigningAttributes={"NextSigningKeyLength": "RSA_2048_BIT"}
    )
    client(front, "ses").verify_domain_identity(Domain="unsigned.test")  # DKIM NOT_STARTED
    rec = await run(front, identities=["signed.test", "unsigned.test", "missing.test"])
    assert rec.success, rec.result.error
    r = rec.result
    assert codes(r) == {
        "ses_identity_dkim_not_verified:unsigned.test": WARNING,
        "ses_identity_not_verified:missing.test": CRITICAL,
    }
    assert value(r, "ses_identity_verified", identity="signed.test") == 1.0
    assert value(r, "ses_identity_dkim_verified", identity="signed.test") == 1.0
    assert value(r, "ses_identity_verified", identity="unsigned.test") == 1.0
    assert value(r, "ses_identity_dkim_verified", identity="unsigned.test") == 0.0
    assert value(r, "ses_identity_verified", identity="missing.test") == 0.0
    assert value(r, "ses_identity_dkim_verified", identity="missing.test") == 0.0
    assert r.details["identity missing.test"] == "not found in this region"


@pytest.mark.parametrize(
    ("verification", "dkim", "expected"),
    [
        (
            "PENDING",
            "PENDING",
            {"ses_identity_not_verified": WARNING, "ses_identity_dkim_not_verified": WARNING},
        ),
        (
            "FAILED",
            "FAILED",
            {"ses_identity_not_verified": CRITICAL, "ses_identity_dkim_not_verified": CRITICAL},
        ),
        ("TEMPORARY_FAILURE", "SUCCESS", {"ses_identity_not_verified": WARNING}),
        (
            "NOT_STARTED",
            "NOT_STARTED",
            {"ses_identity_not_verified": CRITICAL, "ses_identity_dkim_not_verified": WARNING},
        ),
        ("SUCCESS", "TEMPORARY_FAILURE", {"ses_identity_dkim_not_verified": WARNING}),
    ],
)
async def test_identity_states(
    front: AwsFront, verification: str, dkim: str, expected: dict[str, str]
) -> None:
    front.identities["probe@example.test"] = {
        "IdentityType": "EMAIL_ADDRESS",
        "FeedbackForwardingStatus": True,
        "VerifiedForSendingStatus": verification == "SUCCESS",
        "DkimAttributes": {"SigningEnabled": True, "Status": dkim},
        "VerificationStatus": verification,
    }
    rec = await run(front, identities=["probe@example.test"])
    assert rec.success, rec.result.error
    assert {f.code: codes(rec.result)[f"{f.code}:{f.subject}"] for f in rec.result.findings} == (
        expected
    )
    assert all(f.subject == "probe@example.test" for f in rec.result.findings)
    ident = {"identity": "probe@example.test"}
    assert value(rec.result, "ses_identity_verified", **ident) == float(verification == "SUCCESS")
    assert value(rec.result, "ses_identity_dkim_verified", **ident) == float(dkim == "SUCCESS")


async def test_identity_answer_without_verification_status(front: AwsFront) -> None:
    front.identities["old.test"] = {
        "IdentityType": "DOMAIN",
        "VerifiedForSendingStatus": True,
        "DkimAttributes": {"Status": "SUCCESS"},
    }
    rec = await run(front, identities=["old.test"])
    assert rec.success and rec.result.findings == []
    assert value(rec.result, "ses_identity_verified", identity="old.test") == 1.0


# ----- errors: probe_success 0, the reason, nothing critical -----------------------------------


@pytest.mark.parametrize(
    ("operation", "status", "code", "reason", "still_published"),
    [
        (
            "sesv2:GetAccount",
            400,
            "TooManyRequestsException",
            "GetAccount: TooManyRequestsException: injected TooManyRequestsException (throttled",
            "ses_max_24h_send",
        ),
        ("ses:GetSendQuota", 400, "Throttling", "GetSendQuota: Throttling", "ses_sending_enabled"),
        (
            "ses:GetSendQuota",
            403,
            "AccessDenied",
            "(access denied: grant ses:GetSendQuota)",
            "ses_sending_enabled",
        ),
        (
            "sesv2:GetAccount",
            403,
            "AccessDeniedException",
            "(access denied: grant ses:GetAccount)",
            "ses_max_24h_send",
        ),
        (
            "cloudwatch:GetMetricData",
            500,
            "InternalFailure",
            "GetMetricData: InternalFailure",
            "ses_max_24h_send",
        ),
        (
            "cloudwatch:GetMetricData",
            400,
            "ThrottlingException",
            "GetMetricData: ThrottlingException",
            "ses_sending_enabled",
        ),
        (
            "sesv2:GetEmailIdentity",
            503,
            "ServiceUnavailable",
            "GetEmailIdentity: ServiceUnavailable",
            "ses_max_24h_send",
        ),
    ],
)
async def test_api_errors(
    front: AwsFront, operation: str, status: int, code: str, reason: str, still_published: str
) -> None:
    front.fail(operation, status, code)
    front.account["EnforcementStatus"] = "HEALTHY"
    rec = await run(front, identities=["example.test"])
    assert not rec.success
    assert rec.result.error is not None and reason in rec.result.error
    assert rec.result.error.count(";") == 0  # only the failing call is blamed
    assert value(rec.result, still_published) is not None
    assert CRITICAL not in {
        f.severity or CATALOGUE[f.code].severity
        for f in rec.result.findings
        if f.code != "ses_identity_not_verified"
    }
    if operation == "sesv2:GetAccount":
        assert value(rec.result, "ses_sending_enabled") is None
        assert "ses_sending_paused" not in codes(rec.result)


async def test_throttled_call_is_retried(front: AwsFront) -> None:
    front.fail("sesv2:GetAccount", 400, "ThrottlingException", times=1)
    rec = await run(front, max_attempts=2)
    assert rec.success, rec.result.error
    assert front.operations().count("sesv2:GetAccount") == 2
    assert value(rec.result, "ses_sending_enabled") == 1.0


async def test_throttling_that_persists_names_the_retries(front: AwsFront) -> None:
    front.fail("sesv2:GetAccount", 400, "ThrottlingException")
    rec = await run(front, max_attempts=2)
    assert not rec.success
    assert rec.result.error is not None
    assert "GetAccount: ThrottlingException" in rec.result.error
    assert "after 1 retries" in rec.result.error
    assert front.operations().count("sesv2:GetAccount") == 2


async def test_expired_credentials(front: AwsFront) -> None:
    for op in ("ses:GetSendQuota", "sesv2:GetAccount", "cloudwatch:GetMetricData"):
        front.fail(
            op,
            403,
            "ExpiredTokenException" if "v2" in op or "cloud" in op else "ExpiredToken",
            "The security token included in the request is expired",
        )
    rec = await run(front)
    assert not rec.success
    assert rec.result.error is not None
    assert rec.result.error.count("(the AWS credentials have expired)") == 3
    assert rec.result.samples == [] and rec.result.findings == []


async def test_slow_endpoint_times_out_per_call(front: AwsFront) -> None:
    front.slow("sesv2:GetAccount", 8.0)
    # 4 s probe timeout, 1 attempt: the attempt may take 2 s (half the budget), then the
    # probe reports which call timed out rather than being cut off by the runner
    rec = await run(front, probe_timeout="4s")
    assert not rec.success
    assert rec.result.error is not None
    assert "GetAccount: timed out talking to the AWS endpoint (ReadTimeoutError)" in (
        rec.result.error
    )
    assert value(rec.result, "ses_max_24h_send") == 200.0


async def test_endpoint_down() -> None:
    rec = await run(None, endpoint_url=closed_port_url(), identities=["example.test"])
    assert not rec.success
    assert rec.result.error is not None
    assert "GetSendQuota: cannot reach the AWS endpoint" in rec.result.error
    assert "GetAccount: cannot reach" in rec.result.error
    assert rec.result.samples == [] and rec.result.findings == []


async def test_no_credentials(front: AwsFront, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    rec = await run(front)
    assert not rec.success
    assert rec.result.error == (
        "credentials: no AWS credentials found (environment, profile, web identity, container"
        " or instance role)"
    )
    assert rec.result.samples == [] and rec.result.findings == []
    assert front.operations() == []


async def test_missing_profile(front: AwsFront) -> None:
    rec = await run(front, profile="nope")
    assert not rec.success
    assert (
        rec.result.error
        == "credentials: ProfileNotFound: The config profile (nope) could not be found"
    )


async def test_other_targets_unaffected(front: AwsFront) -> None:
    config = config_for(
        {"region": REGION, "endpoint_url": front.url, "max_attempts": 1},
        {"region": "eu-west-1", "endpoint_url": closed_port_url(), "max_attempts": 1},
    )
    deps = Runtime(make_resolver(["127.0.0.1:53"]), config)
    targets = PROBES["ses"].targets(config)
    records = await asyncio.gather(*(run_probe(PROBES["ses"], t, deps) for t in targets))
    families = {f.name: f for f in text_string_to_metric_families(exposition(list(records)))}
    success = {
        s.labels["target"]: s.value for s in families["deliverability_probe_success"].samples
    }
    assert success == {REGION: 1.0, "eu-west-1": 0.0}
    regions = {s.labels["region"] for s in families["deliverability_ses_max_24h_send"].samples}
    assert regions == {REGION}


async def test_cloudwatch_endpoint_override(front: AwsFront) -> None:
    rec = await run(front, cloudwatch_endpoint_url=closed_port_url())
    assert not rec.success
    assert rec.result.error is not None and rec.result.error.startswith("GetMetricData: cannot")
    assert "cloudwatch:GetMetricData" not in front.operations()
    assert value(rec.result, "ses_sending_enabled") == 1.0


# ----- credentials: role, profile, secrets -------------------------------------------------------


ROLE = "arn:aws:iam::123456789012:role/ses-monitor"


async def test_role_is_assumed_and_its_credentials_sign_the_calls(front: AwsFront) -> None:
    # One runtime for both runs, as the daemon keeps one per config: clients are reused.
    runtime = Runtime(make_resolver(["127.0.0.1:53"]), config_for({"region": REGION}))
    rec = await run(
        front, runtime=runtime, role_arn=ROLE, external_id="ext-123", identities=["a.test"]
    )
    assert rec.success, rec.result.error
    assume = [s for s in front.seen if s.operation == "sts:AssumeRole"]
    assert len(assume) == 1
    assert assume[0].access_key == ACCESS_KEY
    assert assume[0].form["RoleArn"] == ROLE
    assert assume[0].form["ExternalId"] == "ext-123"
    assert assume[0].form["RoleSessionName"] == ses_aws.ROLE_SESSION_NAME
    others = [s for s in front.seen if not s.operation.startswith("sts:")]
    assert len(others) == 4
    keys = {s.access_key for s in others}
    assert len(keys) == 1 and ACCESS_KEY not in keys and keys.pop().startswith("ASIA")
    # the second run reuses the cached, still valid assumed credentials
    rec2 = await run(
        front, runtime=runtime, role_arn=ROLE, external_id="ext-123", identities=["a.test"]
    )
    await runtime.aclose()
    assert rec2.result.error == rec.result.error
    assert [s.operation for s in front.seen].count("sts:AssumeRole") == 1


async def test_role_denied(front: AwsFront) -> None:
    front.fail(
        "sts:AssumeRole",
        403,
        "AccessDenied",
        f"User: arn:aws:iam::123456789012:user/probe is not authorized to perform:"
        f" sts:AssumeRole on resource: {ROLE}",
    )
    rec = await run(front, role_arn=ROLE)
    assert not rec.success
    assert rec.result.error is not None
    assert "AssumeRole: AccessDenied: User: arn:aws:iam::123456789012:user/probe is not" in (
        rec.result.error
    )
    assert "(access denied: grant sts:AssumeRole on the role)" in rec.result.error
    assert rec.result.samples == [] and rec.result.findings == []
    assert all(s.operation == "sts:AssumeRole" for s in front.seen)


async def test_profile_credentials(
    front: AwsFront, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    (tmp_path / "aws-credentials").write_text(
        "[probe]\naws_access_key_id = AKIAPROFILEKEY000001\n"
        "aws_secret_access_key = profile/secret/key/profile/secret/key/00\n"
    )
    rec = await run(front, profile="probe")
    assert rec.success, rec.result.error
    assert {s.access_key for s in front.seen} == {"AKIAPROFILEKEY000001"}


async def test_no_secret_in_any_output(front: AwsFront, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    front.fail(
        "sesv2:GetAccount",
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided."
        " The Canonical String for this request should have been 'GET /v2/email/account"
        " x-amz-security-token:{token}' Authorization: {authorization}",
    )
    front.fail(
        "ses:GetSendQuota",
        403,
        "InvalidClientTokenId",
        f"The security token {SESSION_TOKEN} with key {ACCESS_KEY} is invalid",
    )
    front.fail(
        "cloudwatch:GetMetricData",
        400,
        "ValidationError",
        f"secret {SECRET_KEY} auth {{authorization}} token {{token}}",
    )
    # a token that straddles the point where long messages are cut
    front.fail(
        "sesv2:GetEmailIdentity",
        400,
        "BadRequestException",
        "x" * (ses_aws.MAX_MESSAGE - 20) + " {token}",
    )
    rec = await run(front, identities=["x.test"])
    assert not rec.success
    error = rec.result.error or ""
    assert "GetAccount: SignatureDoesNotMatch: The request signature we calculated" in error
    assert "(the AWS credentials were rejected)" in error
    assert "GetSendQuota: InvalidClientTokenId" in error
    text = exposition([rec]) + error + repr(rec.result.details) + repr(rec.result.findings)
    text += caplog.text
    assert "auth AWS4-HMAC-SHA256 Credential=[redacted]" in error  # the echo did arrive
    for secret in SECRETS:
        assert secret not in text
        assert secret[:12] not in text
    assert re.search(r"Signature=[0-9a-f]", text) is None


# ----- targets and config ------------------------------------------------------------------------


def test_target_names() -> None:
    config = config_for(
        {"region": "us-east-1"},
        {"region": "eu-west-1", "role_arn": ROLE},
        {"region": "eu-west-1", "profile": "prod"},
        {"region": "eu-west-1", "endpoint_url": "https://vpce-1.email.eu-west-1.vpce.test"},
        {"region": "eu-west-1"},
        {"region": "eu-west-1"},
        {"region": "ap-south-1", "name": "mumbai"},
    )
    assert [t.name for t in PROBES["ses"].targets(config)] == [
        "us-east-1",
        "eu-west-1/ses-monitor",
        "eu-west-1/prod",
        "eu-west-1/vpce-1.email.eu-west-1.vpce.test",
        "eu-west-1/default",
        "eu-west-1/default#2",
        "mumbai",
    ]


def test_targets_carry_interval_and_timeout() -> None:
    config = parse_config(
        {
            "global": {"interval": "5m", "timeout": "30s"},
            "ses": [{"region": REGION, "interval": "1m", "timeout": "20s"}],
        }
    )
    (target,) = PROBES["ses"].targets(config)
    assert (target.interval, target.timeout, target.probe) == (60.0, 20.0, "ses")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"region": "us-east-1", "role_arn": "arn:aws:iam::123:role/x"}, "invalid role ARN"),
        ({"region": "us-east-1", "external_id": "x"}, "external_id needs role_arn"),
        ({"region": "us-east-1", "max_attempts": 0}, "ses[0].max_attempts"),
        ({"region": "us-east-1", "endpoint_url": "vpce.example"}, "invalid URL"),
        ({"region": "us-east-1", "identities": [""]}, "invalid SES identity"),
        (
            {"region": "us-east-1", "secret_access_key": "x"},
            "ses[0].secret_access_key: unknown key",
        ),
        ({"region": "US-EAST-1"}, "invalid AWS region"),
    ],
)
def test_config_errors(entry: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"ses": [entry]})
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_botocore_config_bounds_every_call() -> None:
    cfg = ses_aws.botocore_config(30.0, 3)
    assert cfg.read_timeout == 5.0 and cfg.connect_timeout == 5.0
    assert cfg.retries == {"total_max_attempts": 3, "mode": "standard"}
    assert ses_aws.attempt_timeout(2.0, 1) == 1.0
    assert ses_aws.attempt_timeout(0.1, 10) == 0.5
    assert ses_aws.attempt_timeout(600.0, 1) == 20.0


def test_run_target_settings_type() -> None:
    config = config_for({"region": REGION})
    (target,) = PROBES["ses"].targets(config)
    assert isinstance(target, Target) and target.settings.region == REGION


# ----- pure functions ----------------------------------------------------------------------------


@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_rate_level_is_monotonic(a: float, b: float) -> None:
    order = {None: 0, WARNING: 1, CRITICAL: 2}
    lo, hi = sorted((a, b))
    assert (
        order[rate_level(lo, BOUNCE_WARNING, BOUNCE_CRITICAL)]
        <= order[rate_level(hi, BOUNCE_WARNING, BOUNCE_CRITICAL)]
    )
    level = rate_level(a, BOUNCE_WARNING, BOUNCE_CRITICAL)
    assert (level == CRITICAL) == (a > BOUNCE_CRITICAL)
    assert (level is None) == (a < BOUNCE_WARNING)


@given(
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.floats(min_value=-1, max_value=1e7, allow_nan=False),
)
def test_quota_level(sent: float, maximum: float) -> None:
    usage = Quota(maximum, 1.0, sent).usage
    level = quota_level(usage)
    if maximum <= 0:
        assert usage is None and level is None
    else:
        assert usage is not None
        assert (level is None) == (usage < 0.80)
        assert (level == CRITICAL) == (usage >= 0.95)


@given(
    st.sampled_from(
        ["SUCCESS", "PENDING", "FAILED", "TEMPORARY_FAILURE", "NOT_STARTED", "NOT_FOUND"]
    )
)
def test_identity_and_dkim_levels(status: str) -> None:
    assert (identity_level(status) is None) == (status == "SUCCESS")
    assert (dkim_level(status) is None) == (status == "SUCCESS")
    assert (dkim_level(status) == CRITICAL) == (status == "FAILED")
    assert (identity_level(status) == WARNING) == (status in ("PENDING", "TEMPORARY_FAILURE"))


_TEXT = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=80)


@given(_TEXT, _TEXT, st.sampled_from(SECRETS))
def test_redact_removes_credentials(before: str, after: str, secret: str) -> None:
    out = ses_aws.redact(before + secret + after)
    assert secret not in out
    assert ses_aws.redact(out) == out or ses_aws.REDACTED in out


@given(st.text(max_size=2000))
def test_clean_message_is_bounded_single_line(message: str) -> None:
    out = ses_aws.clean_message(message)
    assert len(out) <= ses_aws.MAX_MESSAGE and "\n" not in out
    assert "The Canonical String" not in out


@given(st.integers(min_value=0, max_value=400), st.sampled_from((*SECRETS, SECRET_KEY[::-1])))
def test_describe_error_never_leaks_a_prefix(pad: int, secret: str) -> None:
    from botocore.exceptions import ClientError

    message = "y" * pad + " " + secret + " tail"
    exc = ClientError({"Error": {"Code": "Bad", "Message": message}}, "GetAccount")
    out = ses_aws.describe_error("GetAccount", exc)
    assert out.startswith("GetAccount: Bad")
    assert secret[:12] not in out


def test_describe_error_for_unknown_exception() -> None:
    assert (
        ses_aws.describe_error("GetAccount", RuntimeError(SECRET_KEY)) == "GetAccount: RuntimeError"
    )


def test_cbor_helper_round_trips_through_botocore() -> None:
    from botocore.parsers import RpcV2CBORParser

    parser = RpcV2CBORParser()
    body = cbor_map({"__type": "ThrottlingException", "message": "x" * 30})
    parsed = parser._do_error_parse({"body": body, "headers": {}, "status_code": 400}, None)
    assert parsed["Error"] == {"Code": "ThrottlingException", "Message": "x" * 30}
