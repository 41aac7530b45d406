"""The DMARC record parser (RFC 9989 §4.7-4.8) at its edges: tag-name case, rua/ruf URIs."""

from __future__ import annotations

import pytest
from dnsserver import DnsServer
from probes.test_dns_auth import DOMAIN, codes, healthy, probe, value

from exporter.probes.dns.dmarc import MAX_REPORT_DESTINATIONS
from exporter.probes.dns.dmarc_record import DmarcSyntaxError, is_dmarc, parse_dmarc


@pytest.mark.parametrize(
    "text",
    [
        "V=DMARC1; p=reject",
        "V = DMARC1; P=Reject",
        "v=DMARC1; P=reject",
        "V=DMARC1",
    ],
)
def test_tag_names_are_case_insensitive(text: str) -> None:
    # ABNF string literals ("v", "p") are case-insensitive (RFC 5234 §2.3); only the
    # version value DMARC1 is spelled out byte by byte.
    assert is_dmarc(text)
    rec = parse_dmarc(text)
    assert rec.policy in ("reject", "none")
    assert rec.problems == []


@pytest.mark.parametrize("text", ["v=dmarc1; p=reject", "v=DMARC2; p=reject", "x=DMARC1"])
def test_version_value_is_exact(text: str) -> None:
    assert not is_dmarc(text)
    with pytest.raises(DmarcSyntaxError):
        parse_dmarc(text)


async def test_uppercase_version_tag_is_a_record(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"V=DMARC1; P=reject; RUA=mailto:d@{DOMAIN}")
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert "dmarc_missing" not in codes(rec.result)
    assert value(rec, "dmarc_records") == 1
    assert value(rec, "dmarc_valid") == 1
    assert value(rec, "dmarc_policy", policy="reject") == 1


@pytest.mark.parametrize(
    "uri",
    [
        "mailto:d@",
        "mailto:d@a..example.test",
        "mailto:d@bad_host.example.test",
        "mailto:d@-x.example.test",
        "mailto:d@example.test-",
        "mailto:d@localhost",
        "mailto:d@exa mple.test",
        "mailto:d@" + "a" * 64 + ".example.test",
        "mailto:@example.test",
        "MAILTO:d@.example.test",
    ],
)
def test_mailto_with_an_invalid_host_is_an_invalid_uri(uri: str) -> None:
    rec = parse_dmarc(f"v=DMARC1; p=reject; rua={uri}; ruf={uri}")
    assert rec.rua == [] and rec.ruf == []
    assert any(p.startswith("rua URI") for p in rec.problems), rec.problems
    assert any(p.startswith("ruf URI") for p in rec.problems), rec.problems


@pytest.mark.parametrize(
    "uri",
    [
        "mailto:d@example.test",
        "mailto:d@example.test.",
        "MAILTO:D@EXAMPLE.TEST!10m",
        "mailto:dmarc+rua@xn--bcher-kva.example",
        "https://reports.example.test/dmarc",
    ],
)
def test_valid_report_uris(uri: str) -> None:
    rec = parse_dmarc(f"v=DMARC1; p=reject; rua={uri}")
    assert rec.rua == [uri] and rec.problems == []


async def test_rua_with_an_invalid_host_is_an_invalid_tag(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:d@a..example.test")
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    found = [f for f in rec.result.findings if f.code == "dmarc_invalid_tag"]
    assert [f.evidence for f in found] == ["rua URI 'mailto:d@a..example.test' is not valid"]
    assert "dmarc_no_rua" in codes(rec.result)  # no valid destination is left
    assert value(rec, "dmarc_policy", policy="reject") == 1


async def test_many_report_destinations_are_bounded(dns_server: DnsServer) -> None:
    # A record (perhaps a parent's or a public suffix's, which the domain inherits) may list
    # thousands of destinations: each costs a tree walk and an authorization lookup.
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    rua = ",".join(f"mailto:d@r{i}.other{i}.test" for i in range(300))
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=reject; rua={rua}")
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    asked = [n for n, t in dns_server.queries if "._report._dmarc." in n]
    assert len(asked) == MAX_REPORT_DESTINATIONS
    assert len(dns_server.queries) < 150
    unauthorized = [
        f for f in rec.result.findings if f.code == "dmarc_report_destination_unauthorized"
    ]
    assert len(unauthorized) == MAX_REPORT_DESTINATIONS
    assert "290 more" in rec.result.details["dmarc.report_destinations"]


async def test_authorization_name_too_long_is_unauthorized(dns_server: DnsServer) -> None:
    # <domain>._report._dmarc.<host> longer than a DNS name can be: the authorization record
    # cannot exist, so the destination is unauthorized (not "could not tell" forever).
    host = ".".join(["r" * 63, "s" * 63, "t" * 63, "u" * 35, "test"])
    assert len(f"{DOMAIN}._report._dmarc.{host}") > 253 >= len(host)
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"v=DMARC1; p=reject; rua=mailto:d@{host}")
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    found = [f for f in rec.result.findings if f.code == "dmarc_report_destination_unauthorized"]
    assert [f.subject for f in found] == [host]


async def test_a_record_split_into_two_txt_records_is_pointed_out(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject;")
    dns_server.add_txt(f"_dmarc.{DOMAIN}", f"rua=mailto:d@{DOMAIN}")
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert value(rec, "dmarc_records") == 1
    assert "dmarc_no_rua" in codes(rec.result)
    hint = rec.result.details["dmarc.ignored_txt"]
    assert f"rua=mailto:d@{DOMAIN}" in hint and "split" in hint
    (finding,) = [f for f in rec.result.findings if f.code == "dmarc_no_rua"]
    assert "split" in finding.evidence


async def test_strings_split_anywhere_are_one_record(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(
        f"_dmarc.{DOMAIN}",
        [("TXT", f'"v=DMAR" "C1; p=rej" "" "ect; rua=mai" "lto:d@{DOMAIN}"')],
    )
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert value(rec, "dmarc_records") == 1
    assert value(rec, "dmarc_policy", policy="reject") == 1
    assert "dmarc_no_rua" not in codes(rec.result)


async def test_a_huge_record_makes_bounded_evidence(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none; x=" + "a" * 20_000)
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert {"dmarc_policy_none", "dmarc_no_rua"} <= codes(rec.result)
    assert all(len(f.evidence) < 1000 for f in rec.result.findings), [
        (f.code, len(f.evidence)) for f in rec.result.findings
    ]
    assert len(rec.result.details["dmarc.record"]) > 20_000  # the whole record stays in details
