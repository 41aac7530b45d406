"""The ``ses`` probe against a faulty SES endpoint (throttling, 500s, a slow endpoint), beside a
healthy one: a real moto server behind two loopback front servers (``tests/awsfront.py``), one of
which injects the fault. The faulted region fails with the operation and AWS error named, the
healthy region is unaffected, and 120 more runs leave file descriptors, asyncio tasks and
memory flat (botocore's connection pools are warm after the first runs)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from awsfront import AwsFront
from faults.leakcheck import Limits, repeat_flat
from moto.server import ThreadedMotoServer

from exporter.config import parse_config
from exporter.findings import CATALOGUE
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.results import RunRecord, Target
from exporter.runner import Runtime, run_probe

ACCESS_KEY = "AKIAFAULTSEXAMPLE0001"
SECRET_KEY = "faults/secret/key/EXAMPLE0000000000000000"


@pytest.fixture(scope="module")
def fronts() -> Iterator[tuple[AwsFront, AwsFront]]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    req = urllib.request.Request(url + "/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    faulty, healthy = AwsFront(url).start(), AwsFront(url).start()
    try:
        yield faulty, healthy
    finally:
        faulty.stop()
        healthy.stop()
        moto.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


def setup(
    faulty: AwsFront, healthy: AwsFront, *, timeout: str = "10s", max_attempts: int = 1
) -> tuple[Runtime, Target, Target]:
    def entry(name: str, front: AwsFront) -> dict[str, Any]:
        return {"region": "us-east-1", "name": name, "endpoint_url": front.url,
                "cloudwatch_endpoint_url": front.url, "max_attempts": max_attempts,
                "timeout": timeout}  # fmt: skip

    config = parse_config({"ses": [entry("faulty", faulty), entry("healthy", healthy)]})
    deps = Runtime(make_resolver(["127.0.0.1:9"]), config)
    bad, good = PROBES["ses"].targets(config)
    return deps, bad, good


def assert_could_not_tell(rec: RunRecord, reason: str) -> None:
    assert rec.result.error is not None, "the fault went unnoticed"
    assert re.search(reason, rec.result.error), rec.result.error
    critical = [f.code for f in rec.result.findings if CATALOGUE[f.code].severity == "critical"]
    assert critical == []
    assert SECRET_KEY not in rec.result.error and ACCESS_KEY not in rec.result.error


def assert_healthy(rec: RunRecord) -> None:
    assert rec.result.error is None, rec.result.error
    assert any(s.metric == "ses_max_24h_send" for s in rec.result.samples)


SES_FAULTS = [
    (
        "throttling",
        "sesv2:GetAccount",
        400,
        "ThrottlingException",
        r"GetAccount: ThrottlingException",
    ),
    ("server_error", "ses:GetSendQuota", 500, "InternalFailure", r"GetSendQuota: InternalFailure"),
    (
        "unavailable",
        "cloudwatch:GetMetricData",
        503,
        "ServiceUnavailable",
        r"GetMetricData: .*ServiceUnavailable",
    ),
]


@pytest.mark.parametrize(
    ("operation", "status", "code", "reason"),
    [f[1:] for f in SES_FAULTS],
    ids=[f[0] for f in SES_FAULTS],
)
async def test_ses_endpoint_fault(
    fronts: tuple[AwsFront, AwsFront], operation: str, status: int, code: str, reason: str
) -> None:
    faulty, healthy = fronts
    faulty.reset()
    healthy.reset()
    faulty.fail(operation, status, code)
    deps, bad, good = setup(faulty, healthy)
    kind = PROBES["ses"]
    bad_rec, good_rec = await asyncio.gather(
        run_probe(kind, bad, deps), run_probe(kind, good, deps)
    )
    assert_could_not_tell(bad_rec, reason)
    assert_healthy(good_rec)

    async def once() -> None:
        bad_rec, good_rec = await asyncio.gather(
            run_probe(kind, bad, deps), run_probe(kind, good, deps)
        )
        assert_could_not_tell(bad_rec, reason)
        assert_healthy(good_rec)

    # boto3 clients are cached per entry and keep connections in bounded pools (10 per client),
    # which may still grow by a few after warm-up; a per-run leak would show as 100 or more.
    await repeat_flat(once, warmup=10, repeat=60, batch=5, limits=Limits(fds=12))


async def test_slow_ses_endpoint(fronts: tuple[AwsFront, AwsFront]) -> None:
    """An endpoint that answers after 3 s against a 2 s probe timeout: the faulted region
    reports the stalled call; the healthy region, run at the same time, still succeeds."""
    faulty, healthy = fronts
    faulty.reset()
    healthy.reset()
    for op in ("ses:GetSendQuota", "sesv2:GetAccount", "cloudwatch:GetMetricData"):
        faulty.slow(op, 3.0)
    deps, bad, good = setup(faulty, healthy, timeout="2s")
    kind = PROBES["ses"]
    for _ in range(3):
        bad_rec, good_rec = await asyncio.gather(
            run_probe(kind, bad, deps), run_probe(kind, good, deps)
        )
        assert_could_not_tell(bad_rec, r"(?i)tim(ed|e) ?out")
        assert_healthy(good_rec)
