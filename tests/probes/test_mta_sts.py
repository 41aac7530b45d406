"""The mta_sts probe against real HTTPS policy hosts (aiohttp + trustme) on port 443 of their own
loopback addresses, resolved only through a real in-process DNS server, and a real SQLite store
for the policy id's memory."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import exposed_value, make_ctx
from conftest import sample_value as value
from dnsserver import DnsServer
from servers.https import (
    Handler,
    HttpsServer,
    https_server_on_443,
    loopback_address,
    redirect,
    silent_server,
    text,
)

from exporter.collector import exposition
from exporter.config import ConfigError, parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.probes.mta_sts import PROBE
from exporter.results import Finding, ProbeResult, severity_of
from exporter.runner import Runtime, run_probe
from exporter.storage import Store

DOMAIN = "example.test"
HOST = f"mta-sts.{DOMAIN}"
PATH = "/.well-known/mta-sts.txt"
RECORD = "v=STSv1; id=20250101T000000"
ENFORCE = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mail.example.test\r\n"
    "max_age: 604800\r\n"
)
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    dns_server.add(DOMAIN, "SOA", f"ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 300")
    dns_server.add(DOMAIN, "MX", "10 mx1.example.test.")
    dns_server.add(DOMAIN, "MX", "20 in.mail.example.test.")
    dns_server.add_txt(f"_mta-sts.{DOMAIN}", RECORD)
    dns_server.add_txt(f"_smtp._tls.{DOMAIN}", "v=TLSRPTv1; rua=mailto:tls@example.test")
    return dns_server


@contextlib.asynccontextmanager
async def policy_host(
    dns: DnsServer, cert: trustme.LeafCert, routes: dict[str, Handler]
) -> AsyncIterator[HttpsServer]:
    """A policy host on 443 of a fresh loopback address, which the DNS names as HOST."""
    async with https_server_on_443(cert, routes) as server:
        dns.set_records(HOST, [("A", server.address)])
        yield server


async def probe(
    dns: DnsServer,
    ca_file: str | None,
    *,
    store: Store | None = None,
    within: float = 5.0,
    expect: dict[str, Any] | None = None,
) -> ProbeResult:
    section: dict[str, Any] = {"ca_file": ca_file} if ca_file else {}
    domain: dict[str, Any] = {"domain": DOMAIN, **({"expect": expect} if expect else {})}
    config = parse_config(
        {
            "global": {"nameservers": [dns.address], "timeout": within},
            "domains": [domain],
            "mta_sts": section,
        }
    )
    (target,) = PROBE.targets(config)
    ctx = make_ctx(dns, config=config, timeout=within)
    ctx.store = store
    return await PROBE.run(target, ctx)


def mode(result: ProbeResult) -> str | None:
    on = [dict(s.labels)["mode"] for s in result.samples if s.metric == "mta_sts_mode" and s.value]
    assert len(on) <= 1
    return on[0] if on else None


def codes(result: ProbeResult) -> dict[str, Finding]:
    return {f.code: f for f in result.findings}


async def serve_policy(
    dns: DnsServer, ca: trustme.CA, ca_file: str, body: str, **kw: Any
) -> ProbeResult:
    async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(body)}):
        return await probe(dns, ca_file, **kw)


# ----- the cases of the brief ------------------------------------------------------------------


async def test_valid_enforce(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(ENFORCE)}) as server:
        result = await probe(dns, ca_file)
    assert result.error is None and result.findings == []
    assert server.hits == [PATH] and server.sni == [HOST]
    d = DOMAIN
    assert value(result, "mta_sts_policy_valid", domain=d) == 1
    assert mode(result) == "enforce"
    assert value(result, "mta_sts_max_age_seconds", domain=d) == 604800
    assert value(result, "mta_sts_cert_not_after_timestamp_seconds", domain=d) > NOW.timestamp()
    # mx1 exactly, in.mail.example.test by the one-label wildcard *.mail.example.test
    assert value(result, "mta_sts_mx_covered", domain=d, mx="mx1.example.test") == 1
    assert value(result, "mta_sts_mx_covered", domain=d, mx="in.mail.example.test") == 1
    assert value(result, "tlsrpt_valid", domain=d) == 1
    (table,) = result.tables
    assert table.rows == (
        ("mx1.example.test", "10", "mx1.example.test"),
        ("in.mail.example.test", "20", "*.mail.example.test"),
    )
    assert result.details["mta-sts id"] == "20250101T000000"
    assert result.details["policy id tracking"].startswith("not tracked in a one-shot run")


async def test_mode_against_the_baseline(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    """expect: mta_sts_mode is compared here (this probe fetches the policy)."""
    held = await serve_policy(dns, ca, ca_file, ENFORCE, expect={"mta_sts_mode": "enforce"})
    assert "mta_sts_mode_drift" not in codes(held)
    assert held.details["baseline"] == "mta_sts_mode enforce, as expected"
    body = ENFORCE.replace("enforce", "testing")
    drifted = await serve_policy(dns, ca, ca_file, body, expect={"mta_sts_mode": "enforce"})
    found = codes(drifted)["mta_sts_mode_drift"]
    assert found.evidence == "expect: mta_sts_mode enforce, the policy says testing"
    assert severity_of(found) == "warning"
    # No policy at all reads as mode none: drift from enforce too.
    dns.remove(f"_mta-sts.{DOMAIN}")
    gone = await probe(dns, ca_file, expect={"mta_sts_mode": "enforce"})
    assert codes(gone)["mta_sts_mode_drift"].evidence.endswith("the policy says none")


async def test_testing_mode(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    body = ENFORCE.replace("enforce", "testing").replace("*.mail.example.test", "other.test")
    result = await serve_policy(dns, ca, ca_file, body)
    assert mode(result) == "testing"
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 1
    found = codes(result)
    assert set(found) == {"mta_sts_testing_mode", "mta_sts_mx_not_covered"}
    assert severity_of(found["mta_sts_testing_mode"]) == "info"
    # An uncovered MX only costs a report in testing mode: a warning, not critical.
    assert severity_of(found["mta_sts_mx_not_covered"]) == "warning"
    assert found["mta_sts_mx_not_covered"].subject == "in.mail.example.test"


async def test_none_mode(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    body = "version: STSv1\nmode: none\nmax_age: 86400\nmx: elsewhere.test\n"
    result = await serve_policy(dns, ca, ca_file, body)
    assert mode(result) == "none"
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 1
    assert value(result, "mta_sts_mx_covered", domain=DOMAIN, mx="mx1.example.test") == 0
    assert result.findings == []  # a none policy asks nothing of senders


async def test_none_mode_without_mx_lines(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    result = await serve_policy(dns, ca, ca_file, "version: STSv1\nmode: none\nmax_age: 0\n")
    assert (mode(result), result.findings) == ("none", [])


@pytest.mark.parametrize(
    ("mx", "covered"),
    [
        ("in.mail.example.test", True),  # exactly one label under *.mail.example.test
        ("mail.example.test", False),  # the wildcard needs one label more
        ("a.b.mail.example.test", False),  # and only one
        ("mx1.example.test.evil.test", False),
        ("MX1.Example.Test", True),  # case-insensitive
    ],
)
async def test_wildcard_and_non_matching_mx(
    ca: trustme.CA, ca_file: str, dns: DnsServer, mx: str, covered: bool
) -> None:
    dns.set_records(DOMAIN, [("MX", f"10 {mx}.")])
    result = await serve_policy(dns, ca, ca_file, ENFORCE)
    assert value(result, "mta_sts_mx_covered", domain=DOMAIN, mx=mx.lower()) == covered
    if covered:
        assert result.findings == []
    else:
        (finding,) = result.findings
        assert finding.code == "mta_sts_mx_not_covered" and severity_of(finding) == "critical"
        assert mx.lower() in finding.evidence and "*.mail.example.test" in finding.evidence


async def test_not_found(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    async with policy_host(dns, ca.issue_cert(HOST), {}):
        result = await probe(dns, ca_file)
    assert result.error is None
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0
    assert mode(result) == "none"
    (finding,) = result.findings
    assert finding.code == "mta_sts_policy_unreachable" and "404" in finding.evidence
    assert value(result, "mta_sts_cert_not_after_timestamp_seconds", domain=DOMAIN) is not None


@pytest.mark.parametrize("status", [301, 302])
async def test_redirect(ca: trustme.CA, ca_file: str, dns: DnsServer, status: int) -> None:
    routes = {PATH: redirect(f"https://www.{DOMAIN}/mta-sts.txt", status)}
    async with policy_host(dns, ca.issue_cert(HOST), routes) as server:
        result = await probe(dns, ca_file)
    assert server.hits == [PATH]
    (finding,) = result.findings
    assert finding.code == "mta_sts_policy_redirect"
    assert f"HTTP {status} to https://www.{DOMAIN}/mta-sts.txt" in finding.evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0
    assert mode(result) == "none"


async def test_wrong_media_type(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    routes = {PATH: text(ENFORCE, "text/html; charset=utf-8")}
    async with policy_host(dns, ca.issue_cert(HOST), routes):
        result = await probe(dns, ca_file)
    assert set(codes(result)) == {"mta_sts_policy_media_type"}
    assert "text/html" in codes(result)["mta_sts_policy_media_type"].evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0
    # What the policy says is still shown (senders with a cached copy apply it).
    assert mode(result) == "enforce"


async def test_charset_parameter_is_fine(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    routes = {PATH: text(ENFORCE, "text/plain; charset=utf-8")}
    async with policy_host(dns, ca.issue_cert(HOST), routes):
        result = await probe(dns, ca_file)
    assert result.findings == [] and value(result, "mta_sts_policy_valid", domain=DOMAIN) == 1


async def test_oversized_body(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    body = ENFORCE + "".join(f"x-pad{i}: {'y' * 60}\r\n" for i in range(1200))  # ~80 KB
    result = await serve_policy(dns, ca, ca_file, body)
    (finding,) = result.findings
    assert finding.code == "mta_sts_policy_invalid" and "64 KB" in finding.evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


async def test_invalid_policy(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    result = await serve_policy(dns, ca, ca_file, ENFORCE.replace("604800", "31557601"))
    (finding,) = result.findings
    assert finding.code == "mta_sts_policy_invalid" and "31557600" in finding.evidence
    assert (value(result, "mta_sts_policy_valid", domain=DOMAIN), mode(result)) == (0, "none")


async def test_server_that_never_answers(dns: DnsServer) -> None:
    address = loopback_address()
    async with silent_server(address=address, port=443):
        dns.set_records(HOST, [("A", address)])
        result = await probe(dns, None, within=1.0)
    # Could not tell: probe_success 0 with the step named, and no claim about the policy.
    assert result.error is not None and "no answer within" in result.error
    assert "connecting" in result.error
    assert result.findings == []
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) is None
    assert mode(result) is None
    assert value(result, "tlsrpt_valid", domain=DOMAIN) == 1  # the other checks still publish


async def test_expired_certificate(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    not_after = (NOW - dt.timedelta(days=2)).replace(microsecond=0)
    cert = ca.issue_cert(HOST, not_before=NOW - dt.timedelta(days=90), not_after=not_after)
    async with policy_host(dns, cert, {PATH: text(ENFORCE)}):
        result = await probe(dns, ca_file)
    (finding,) = result.findings
    assert finding.code == "mta_sts_cert_invalid" and "expired" in finding.evidence
    assert value(result, "mta_sts_cert_not_after_timestamp_seconds", domain=DOMAIN) == (
        not_after.timestamp()
    )
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


async def test_wrong_name_certificate(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    async with policy_host(dns, ca.issue_cert(f"www.{DOMAIN}"), {PATH: text(ENFORCE)}):
        result = await probe(dns, ca_file)
    (finding,) = result.findings
    assert finding.code == "mta_sts_cert_invalid" and f"does not cover {HOST}" in finding.evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


async def test_untrusted_without_ca_file(ca: trustme.CA, dns: DnsServer) -> None:
    async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(ENFORCE)}):
        result = await probe(dns, None)
    assert set(codes(result)) == {"mta_sts_cert_invalid"}


async def test_expiring_certificate(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST, not_after=NOW + dt.timedelta(days=10))
    async with policy_host(dns, cert, {PATH: text(ENFORCE)}):
        result = await probe(dns, ca_file)
    (finding,) = result.findings
    assert finding.code == "mta_sts_cert_expiring" and severity_of(finding) == "warning"
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 1


async def test_two_txt_records(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    dns.add_txt(f"_mta-sts.{DOMAIN}", "v=STSv1; id=20250202T000000")
    async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(ENFORCE)}) as server:
        result = await probe(dns, ca_file)
    (finding,) = result.findings
    assert finding.code == "mta_sts_record_duplicate"
    assert "20250101T000000" in finding.evidence and "20250202T000000" in finding.evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0
    assert server.hits == [PATH]  # the policy is still checked and shown
    assert mode(result) == "enforce"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=STSv1; id=2025-01-01", "1 to 32 letters and digits"),
        ("v=STSv1", "no id= field"),
        ("v=stsv1; id=1", "does not begin"),
    ],
)
async def test_invalid_record(
    ca: trustme.CA, ca_file: str, dns: DnsServer, record: str, reason: str
) -> None:
    dns.set_records(f"_mta-sts.{DOMAIN}", [])
    dns.add_txt(f"_mta-sts.{DOMAIN}", record)
    result = await serve_policy(dns, ca, ca_file, ENFORCE)
    (finding,) = result.findings
    assert finding.code == "mta_sts_record_invalid" and reason in finding.evidence
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


async def test_no_record(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    dns.remove(f"_mta-sts.{DOMAIN}")
    async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(ENFORCE)}) as server:
        result = await probe(dns, ca_file)
    assert server.hits == []  # no record: senders never fetch the policy, nor does the probe
    assert result.error is None and result.findings == []
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) is None
    assert mode(result) == "none"


async def test_short_max_age(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    result = await serve_policy(dns, ca, ca_file, ENFORCE.replace("604800", "3600"))
    (finding,) = result.findings
    assert finding.code == "mta_sts_max_age_short" and severity_of(finding) == "warning"
    assert value(result, "mta_sts_max_age_seconds", domain=DOMAIN) == 3600
    a_day = await serve_policy(dns, ca, ca_file, ENFORCE.replace("604800", "86400"))
    assert a_day.findings == []


async def test_policy_host_without_address(dns: DnsServer) -> None:
    result = await probe(dns, None)
    (finding,) = result.findings
    assert finding.code == "mta_sts_policy_unreachable"
    assert f"{HOST} has no A or AAAA record" in finding.evidence
    assert result.error is None
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


async def test_dns_failure_is_could_not_tell(dns: DnsServer) -> None:
    dns.servfail.add(f"_mta-sts.{DOMAIN}")
    result = await probe(dns, None)
    assert result.error is not None and "_mta-sts TXT" in result.error
    assert result.findings == []
    assert value(result, "mta_sts_policy_valid", domain=DOMAIN) is None and mode(result) is None


async def test_policy_host_dns_failure_is_could_not_tell(dns: DnsServer) -> None:
    dns.servfail.add(HOST)
    result = await probe(dns, None)
    assert result.error is not None and "policy fetch" in result.error
    assert result.findings == [] and mode(result) is None


async def test_no_mx_means_the_domain_itself(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    dns.set_records(DOMAIN, [("SOA", f"ns.{DOMAIN}. h.{DOMAIN}. 1 2 3 4 5")])
    result = await serve_policy(dns, ca, ca_file, ENFORCE.replace("mx1.example.test", DOMAIN))
    assert value(result, "mta_sts_mx_covered", domain=DOMAIN, mx=DOMAIN) == 1
    assert result.tables[0].note.startswith("no MX records")


async def test_null_mx(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    dns.set_records(DOMAIN, [("MX", "0 .")])
    result = await serve_policy(dns, ca, ca_file, ENFORCE)
    assert result.findings == [] and "null MX" in result.details["mx hosts"]
    assert not [s for s in result.samples if s.metric == "mta_sts_mx_covered"]


# ----- the id across runs ----------------------------------------------------------------------


async def test_id_unchanged_while_the_policy_changed(
    ca: trustme.CA, ca_file: str, dns: DnsServer, tmp_path: Path
) -> None:
    store = await Store.open(tmp_path)
    try:
        first = await serve_policy(dns, ca, ca_file, ENFORCE, store=store)
        assert first.findings == []
        assert "first seen now" in first.details["policy id tracking"]
        # The same policy written differently (LF, other order) is no change.
        same = "max_age: 604800\nmx: *.mail.example.test\nmx: mx1.example.test\n" + (
            "mode: enforce\nversion: STSv1\n"
        )
        assert (await serve_policy(dns, ca, ca_file, same, store=store)).findings == []
        edited = ENFORCE.replace("enforce", "testing")
        second = await serve_policy(dns, ca, ca_file, edited, store=store)
        finding = codes(second)["mta_sts_policy_changed_same_id"]
        assert "-mode: enforce" in finding.evidence and "+mode: testing" in finding.evidence
    finally:
        await store.aclose()
    # The memory survives a restart: a fresh store on the same file still knows the first policy.
    reopened = await Store.open(tmp_path)
    try:
        again = await serve_policy(dns, ca, ca_file, edited, store=reopened)
        assert "mta_sts_policy_changed_same_id" in codes(again)
        # A new id clears it, and is remembered from then on.
        dns.set_records(f"_mta-sts.{DOMAIN}", [])
        dns.add_txt(f"_mta-sts.{DOMAIN}", "v=STSv1; id=20250301T000000")
        fixed = await serve_policy(dns, ca, ca_file, edited, store=reopened)
        assert "mta_sts_policy_changed_same_id" not in codes(fixed)
        assert "first seen now" in fixed.details["policy id tracking"]
        back = await serve_policy(dns, ca, ca_file, ENFORCE, store=reopened)
        assert "mta_sts_policy_changed_same_id" in codes(back)
    finally:
        await reopened.aclose()


async def test_put_back_policy_clears_the_finding(
    ca: trustme.CA, ca_file: str, dns: DnsServer, tmp_path: Path
) -> None:
    store = await Store.open(tmp_path)
    try:
        await serve_policy(dns, ca, ca_file, ENFORCE, store=store)
        edited = ENFORCE.replace("604800", "1209600")
        assert codes(await serve_policy(dns, ca, ca_file, edited, store=store))
        assert (await serve_policy(dns, ca, ca_file, ENFORCE, store=store)).findings == []
    finally:
        await store.aclose()


# ----- TLS-RPT ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "valid", "code"),
    [
        (["v=TLSRPTv1; rua=mailto:tls@example.test,https://r.example.test/v1"], 1, None),
        (["v=TLSRPTv1; rua=http://r.example.test/v1"], 0, "tlsrpt_invalid"),
        (["v=TLSRPTv1"], 0, "tlsrpt_invalid"),
        (
            ["v=TLSRPTv1; rua=mailto:a@example.test", "v=TLSRPTv1; rua=mailto:b@example.test"],
            0,
            "tlsrpt_duplicate",
        ),
    ],
)
async def test_tlsrpt(dns: DnsServer, records: list[str], valid: int, code: str | None) -> None:
    dns.remove(f"_mta-sts.{DOMAIN}")
    dns.remove(f"_smtp._tls.{DOMAIN}")
    for record in records:
        dns.add_txt(f"_smtp._tls.{DOMAIN}", record)
    result = await probe(dns, None)
    assert value(result, "tlsrpt_valid", domain=DOMAIN) == valid
    assert [f.code for f in result.findings] == ([code] if code else [])
    # DANE is asked about only when it could make a finding (no TLS-RPT record at all).
    assert not [q for q in dns.queries if q[1] == "TLSA"]
    if code:
        assert severity_of(result.findings[0]) == "warning"


async def test_tlsrpt_missing_with_mta_sts(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    dns.remove(f"_smtp._tls.{DOMAIN}")
    result = await serve_policy(dns, ca, ca_file, ENFORCE)
    (finding,) = result.findings
    assert finding.code == "tlsrpt_missing" and severity_of(finding) == "info"
    assert value(result, "tlsrpt_valid", domain=DOMAIN) is None


async def test_tlsrpt_missing_with_dane(dns: DnsServer) -> None:
    dns.remove(f"_mta-sts.{DOMAIN}")
    dns.remove(f"_smtp._tls.{DOMAIN}")
    dns.add("_25._tcp.in.mail.example.test", "TLSA", "3 1 1 " + "ab" * 32)
    result = await probe(dns, None)
    assert [f.code for f in result.findings] == ["tlsrpt_missing"]
    assert "_25._tcp.in.mail.example.test" in result.details["dane"]


async def test_dane_is_asked_of_the_most_preferred_mx_hosts_only(dns: DnsServer) -> None:
    """40 MX records: TLSA is asked of the 16 most preferred (as the tls probe's mx_of), not of
    all 40 at once; a TLSA record at the 40th is not seen."""
    dns.remove(f"_mta-sts.{DOMAIN}")
    dns.remove(f"_smtp._tls.{DOMAIN}")
    dns.set_records(DOMAIN, [("MX", f"{i} mx{i:02d}.example.test.") for i in range(40)])
    dns.add("_25._tcp.mx39.example.test", "TLSA", "3 1 1 " + "ab" * 32)
    result = await probe(dns, None)
    assert result.error is None and result.findings == []
    asked = sorted(q[0].rstrip(".") for q in dns.queries if q[1] == "TLSA")
    assert asked == [f"_25._tcp.mx{i:02d}.example.test" for i in range(16)]
    dns.add("_25._tcp.mx15.example.test", "TLSA", "3 1 1 " + "ab" * 32)
    result = await probe(dns, None)
    assert [f.code for f in result.findings] == ["tlsrpt_missing"]


async def test_tlsrpt_not_needed_without_mta_sts_or_dane(dns: DnsServer) -> None:
    dns.remove(f"_mta-sts.{DOMAIN}")
    dns.remove(f"_smtp._tls.{DOMAIN}")
    result = await probe(dns, None)
    assert result.error is None and result.findings == []
    assert mode(result) == "none" and value(result, "tlsrpt_valid", domain=DOMAIN) is None


# ----- plumbing --------------------------------------------------------------------------------


async def test_through_the_runner_and_exposition(
    ca: trustme.CA, ca_file: str, dns: DnsServer, tmp_path: Path
) -> None:
    config = parse_config(
        {
            "global": {"nameservers": [dns.address], "timeout": 5},
            "domains": [{"domain": DOMAIN}],
            "mta_sts": {"ca_file": ca_file},
        }
    )
    (target,) = PROBES["mta_sts"].targets(config)
    store = await Store.open(tmp_path)
    runtime = Runtime(make_resolver([dns.address], attempt_timeout=1, lifetime=1), config, store)
    try:
        body = ENFORCE.replace("*.mail.example.test", "mx2.example.test")
        async with policy_host(dns, ca.issue_cert(HOST), {PATH: text(body)}):
            record = await run_probe(PROBES["mta_sts"], target, runtime)
    finally:
        await runtime.aclose()
        await store.aclose()
    exposed = exposition([record])

    def get(name: str, **labels: str) -> float:
        return exposed_value(exposed, name, **labels)

    assert get("deliverability_probe_success", probe="mta_sts", target=DOMAIN) == 1
    assert get("deliverability_mta_sts_policy_valid", domain=DOMAIN) == 1
    assert get("deliverability_mta_sts_mode", domain=DOMAIN, mode="enforce") == 1
    assert get("deliverability_mta_sts_mode", domain=DOMAIN, mode="none") == 0
    assert get("deliverability_mta_sts_mx_covered", domain=DOMAIN, mx="in.mail.example.test") == 0
    assert get("deliverability_finding", code="mta_sts_mx_not_covered", severity="critical") == 1


def test_targets_and_config() -> None:
    base: dict[str, Any] = {"domains": [{"domain": "a.test"}, {"domain": "b.test"}]}
    assert PROBE.targets(parse_config(base)) == []
    # Present, even empty (YAML 'mta_sts:' with nothing after it is null), enables the probe.
    for section in ({}, None):
        targets = PROBE.targets(parse_config({**base, "mta_sts": section}))
        assert [t.name for t in targets] == ["a.test", "b.test"]
        assert targets[0].interval == 3600 and targets[0].timeout == 30
    config = parse_config({**base, "mta_sts": {"interval": "6h", "timeout": "20s"}})
    assert (PROBE.targets(config)[0].interval, PROBE.targets(config)[0].timeout) == (21600, 20)
    with pytest.raises(ConfigError, match=r"mta_sts\.intervall: unknown key"):
        parse_config({**base, "mta_sts": {"intervall": "1h"}})
    with pytest.raises(ConfigError, match=r"mta_sts\.timeout"):
        parse_config({**base, "mta_sts": {"timeout": "soon"}})


async def test_unreadable_ca_file_is_could_not_tell(dns: DnsServer, tmp_path: Path) -> None:
    result = await probe(dns, str(tmp_path / "missing.pem"))
    assert result.error is not None and "mta_sts.ca_file" in result.error
    assert result.findings == []
