"""The dns probe's DMARC, DKIM and MX checks against a real loopback DNS server."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dnsserver import DnsServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import exposition
from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes import PROBES
from exporter.probes.dns import dkim
from exporter.results import ProbeResult, RunRecord
from exporter.runner import Runtime, run_probe

DOMAIN = "example.test"


def rsa_key(
    bits: int, fmt: serialization.PublicFormat = serialization.PublicFormat.SubjectPublicKeyInfo
) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.DER, fmt)).decode()


KEY_2048 = rsa_key(2048)
KEY_1024 = rsa_key(1024)
# cryptography refuses to generate keys under 1024 bits; build a 512-bit public key directly.
KEY_512 = base64.b64encode(
    rsa.RSAPublicNumbers(65537, (1 << 511) | 0x1F3)
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


def big_key(
    bits: int, fmt: serialization.PublicFormat = serialization.PublicFormat.SubjectPublicKeyInfo
) -> str:
    """A public key of ``bits`` bits built from its numbers (generating one takes minutes)."""
    n = (1 << (bits - 1)) | 0x1F3
    return base64.b64encode(
        rsa.RSAPublicNumbers(65537, n).public_key().public_bytes(serialization.Encoding.DER, fmt)
    ).decode()


def healthy(server: DnsServer, domain: str = DOMAIN) -> None:
    server.add_txt(domain, "v=spf1 ip4:192.0.2.0/24 -all")
    server.add_txt(f"_dmarc.{domain}", f"v=DMARC1; p=reject; rua=mailto:dmarc@{domain}")
    server.add_txt(f"s1._domainkey.{domain}", f"v=DKIM1; k=rsa; p={KEY_2048}")
    server.add(domain, "MX", f"10 mx1.{domain}.")
    server.add(domain, "MX", f"20 mx2.{domain}.")
    server.add(f"mx1.{domain}", "A", "192.0.2.25")
    server.add(f"mx2.{domain}", "AAAA", "2001:db8::25")


async def probe(
    server: DnsServer,
    domain: str = DOMAIN,
    selectors: tuple[str, ...] = ("s1",),
    lifetime: float = 1.0,
) -> RunRecord:
    config = parse_config(
        {
            "global": {"nameservers": [server.address], "timeout": "10s", "dnssec": False},
            "domains": [{"domain": domain, "dkim_selectors": list(selectors)}],
        }
    )
    deps = Runtime(
        make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime), config
    )
    (target,) = PROBES["dns"].targets(config)
    return await run_probe(PROBES["dns"], target, deps)


def metrics(rec: RunRecord) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(exposition([rec])):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(rec: RunRecord, name: str, **labels: str | None) -> float | None:
    """The value of a series in the exposition; ``domain`` defaults to DOMAIN, and
    ``domain=None`` is for series without a domain label (probe_success, finding)."""
    labels.setdefault("domain", DOMAIN)
    wanted = tuple(sorted((k, v) for k, v in labels.items() if v is not None))
    return metrics(rec).get(("deliverability_" + name, wanted))


def codes(result: ProbeResult) -> set[str]:
    return {f.code for f in result.findings}


async def test_healthy_domain_has_no_findings(dns_server: DnsServer) -> None:
    healthy(dns_server)
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert codes(rec.result) == set()
    assert value(rec, "dmarc_records") == 1
    assert value(rec, "dmarc_valid") == 1
    assert value(rec, "dmarc_pct") == 100
    assert value(rec, "dmarc_policy", policy="reject") == 1
    assert value(rec, "dmarc_policy", policy="none") == 0
    assert value(rec, "dmarc_subdomain_policy", policy="reject") == 1
    assert value(rec, "dkim_key_valid", selector="s1") == 1
    assert value(rec, "dkim_key_bits", selector="s1") == 2048
    assert value(rec, "mx_records") == 2
    assert value(rec, "mx_valid") == 1
    for record in ("spf", "dmarc", "mx", "dkim:s1"):
        assert value(rec, "dns_record_checksum", record=record) is not None
    assert value(rec, "probe_success", probe="dns", target=DOMAIN, domain=None) == 1


async def test_checksum_changes_only_when_record_text_changes(dns_server: DnsServer) -> None:
    healthy(dns_server)
    first = value(await probe(dns_server), "dns_record_checksum", record="dmarc")
    again = value(await probe(dns_server), "dns_record_checksum", record="dmarc")
    dns_server.set_records(
        f"_dmarc.{DOMAIN}", [("TXT", '"v=DMARC1; p=none; rua=mailto:d@example.test"')]
    )
    changed = value(await probe(dns_server), "dns_record_checksum", record="dmarc")
    assert first == again
    assert changed != first


# ----- DMARC -----------------------------------------------------------------------------------


async def test_dmarc_missing(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.remove(f"_dmarc.{DOMAIN}")
    rec = await probe(dns_server)
    assert rec.success
    assert "dmarc_missing" in codes(rec.result)
    assert value(rec, "dmarc_records") == 0
    assert value(rec, "dmarc_valid") == 0
    assert value(rec, "dmarc_policy", policy="none") == 0
    finding = {"probe": "dns", "target": DOMAIN, "code": "dmarc_missing", "domain": None}
    assert value(rec, "finding", severity="critical", **finding) == 1
    assert value(rec, "finding", severity="warning", **finding) is None


@pytest.mark.parametrize(
    ("record", "code", "policy"),
    [
        ("v=DMARC1; p=none; rua=mailto:d@example.test", "dmarc_policy_none", "none"),
        ("v=DMARC1; p=reject; pct=50; rua=mailto:d@example.test", "dmarc_pct_partial", "reject"),
        ("v=DMARC1; p=reject; pct=50; rua=mailto:d@example.test", "dmarc_removed_tag", "reject"),
        ("v=DMARC1; p=reject; t=y; rua=mailto:d@example.test", "dmarc_testing_mode", "reject"),
        ("v=DMARC1; p=reject; t=x; rua=mailto:d@example.test", "dmarc_invalid_tag", "reject"),
        ("v=DMARC1; p=reject; psd=q; rua=mailto:d@example.test", "dmarc_invalid_tag", "reject"),
        ("v=DMARC1; p=quarantine", "dmarc_no_rua", "quarantine"),
        (
            "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.test",
            "dmarc_subdomain_policy_weaker",
            "reject",
        ),
        ("v=DMARC1; p=reject; adkim=x; rua=mailto:d@example.test", "dmarc_invalid_tag", "reject"),
        ("v=DMARC1; p=reject; pct=150; rua=mailto:d@example.test", "dmarc_invalid_tag", "reject"),
        ("v=DMARC1; p=reject; fo=2; rua=mailto:d@example.test", "dmarc_invalid_tag", "reject"),
        ("v=DMARC1; p=reject; rua=d@example.test", "dmarc_invalid_tag", "reject"),
        (
            "v=DMARC1; p=reject; rua=mailto:reports@elsewhere.test",
            "dmarc_report_destination_unauthorized",
            "reject",
        ),
    ],
)
async def test_dmarc_findings(dns_server: DnsServer, record: str, code: str, policy: str) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", record)
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert code in codes(rec.result)
    assert value(rec, "dmarc_policy", policy=policy) == 1
    assert value(rec, "dmarc_valid") == 1


async def test_dmarc_external_destination_authorized(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [])
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; rua=mailto:reports@elsewhere.test")
    dns_server.add_txt(f"{DOMAIN}._report._dmarc.elsewhere.test", "v=DMARC1")
    rec = await probe(dns_server)
    assert codes(rec.result) == set()


async def test_dmarc_multiple_records(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    rec = await probe(dns_server)
    assert "dmarc_multiple_records" in codes(rec.result)
    assert value(rec, "dmarc_records") == 2
    assert value(rec, "dmarc_valid") == 0


async def test_dmarc_invalid_policy_without_rua_is_invalid(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [("TXT", '"v=DMARC1; p=block"')])
    rec = await probe(dns_server)
    assert "dmarc_invalid" in codes(rec.result)
    assert value(rec, "dmarc_valid") == 0


async def test_dmarc_invalid_policy_with_rua_acts_as_none(dns_server: DnsServer) -> None:
    # RFC 9989 4.10.1: an invalid p but a valid rua -> receivers act as p=none.
    healthy(dns_server)
    dns_server.set_records(
        f"_dmarc.{DOMAIN}", [("TXT", '"v=DMARC1; p=block; rua=mailto:d@example.test"')]
    )
    rec = await probe(dns_server)
    assert {"dmarc_invalid", "dmarc_policy_none"} <= codes(rec.result)
    assert value(rec, "dmarc_valid") == 0
    assert value(rec, "dmarc_policy", policy="none") == 1


async def test_dmarc_without_p_acts_as_none(dns_server: DnsServer) -> None:
    # RFC 9989 4.7: a record without p is treated as p=none (RFC 7489 required p).
    healthy(dns_server)
    dns_server.set_records(f"_dmarc.{DOMAIN}", [("TXT", '"v=DMARC1; rua=mailto:d@example.test"')])
    rec = await probe(dns_server)
    assert {"dmarc_policy_missing", "dmarc_policy_none"} <= codes(rec.result)
    assert "dmarc_invalid" not in codes(rec.result)
    assert value(rec, "dmarc_valid") == 1
    assert value(rec, "dmarc_policy", policy="none") == 1


async def test_non_dmarc_txt_at_dmarc_name_is_ignored(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.add_txt(f"_dmarc.{DOMAIN}", "google-site-verification=abc")
    rec = await probe(dns_server)
    assert value(rec, "dmarc_records") == 1
    assert codes(rec.result) == set()


async def test_subdomain_inherits_org_sp(dns_server: DnsServer) -> None:
    sub = f"mail.{DOMAIN}"
    healthy(dns_server, sub)
    dns_server.remove(f"_dmarc.{sub}")
    dns_server.add_txt(
        f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.test"
    )
    rec = await probe(dns_server, domain=sub)
    assert rec.success, rec.result.error
    assert "dmarc_inherited" in codes(rec.result)
    assert "dmarc_missing" not in codes(rec.result)
    assert value(rec, "dmarc_records", domain=sub) == 0
    assert value(rec, "dmarc_policy", domain=sub, policy="quarantine") == 1
    assert value(rec, "dmarc_subdomain_policy", domain=sub, policy="quarantine") == 1


async def test_subdomain_without_any_dmarc(dns_server: DnsServer) -> None:
    sub = f"mail.{DOMAIN}"
    healthy(dns_server, sub)
    dns_server.remove(f"_dmarc.{sub}")
    rec = await probe(dns_server, domain=sub)
    assert "dmarc_missing" in codes(rec.result)
    assert ("_dmarc.example.test", "TXT") in dns_server.queries


# ----- DKIM ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "code", "valid", "bits"),
    [
        (f"v=DKIM1; k=rsa; p={KEY_1024}", "dkim_key_weak", 1, 1024),
        (f"v=DKIM1; k=rsa; p={KEY_512}", "dkim_key_invalid", 0, 512),
        ("v=DKIM1; k=rsa; p=", "dkim_key_revoked", 0, 0),
        ("v=DKIM1; k=rsa; p=!!notbase64!!", "dkim_key_invalid", 0, None),
        ("v=DKIM1; k=rsa; p=AAAA", "dkim_key_invalid", 0, None),
        (f"v=DKIM1; k=dsa; p={KEY_2048}", "dkim_key_invalid", 0, None),
        (f"v=DKIM2; p={KEY_2048}", "dkim_key_invalid", 0, None),
        (f"v=DKIM1; t=y; p={KEY_2048}", "dkim_testing_mode", 1, 2048),
        # Over 4096 bits receivers need not verify; over 16384 none can (and we do not parse it).
        (f"v=DKIM1; k=rsa; p={big_key(8192)}", "dkim_key_too_long", 1, 8192),
        (f"v=DKIM1; k=rsa; p={big_key(16384)}", "dkim_key_too_long", 1, 16384),
        (
            f"v=DKIM1; k=rsa; p={big_key(16392, serialization.PublicFormat.PKCS1)}",
            "dkim_key_invalid",
            0,
            None,
        ),
        (f"v=DKIM1; k=rsa; p={big_key(60000)}", "dkim_key_invalid", 0, None),
    ],
)
async def test_dkim_findings(
    dns_server: DnsServer, record: str, code: str, valid: int, bits: int | None
) -> None:
    healthy(dns_server)
    dns_server.set_records(f"s1._domainkey.{DOMAIN}", [])
    dns_server.add_txt(f"s1._domainkey.{DOMAIN}", record)
    rec = await probe(dns_server)
    assert rec.success, rec.result.error
    assert code in codes(rec.result)
    assert value(rec, "dkim_key_valid", selector="s1") == valid
    assert value(rec, "dkim_key_bits", selector="s1") == bits


async def test_dkim_key_missing(dns_server: DnsServer) -> None:
    healthy(dns_server)
    rec = await probe(dns_server, selectors=("s1", "gone"))
    assert rec.success
    assert [f.subject for f in rec.result.findings if f.code == "dkim_key_missing"] == ["gone"]
    assert value(rec, "dkim_key_valid", selector="gone") == 0
    assert value(rec, "dkim_key_valid", selector="s1") == 1


async def test_dkim_multiple_records(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.add_txt(f"s1._domainkey.{DOMAIN}", f"v=DKIM1; p={KEY_1024}")
    rec = await probe(dns_server)
    assert "dkim_multiple_records" in codes(rec.result)
    assert value(rec, "dkim_key_valid", selector="s1") == 0


async def test_dkim_ed25519_and_pkcs1_and_cname(dns_server: DnsServer) -> None:
    healthy(dns_server)
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    dns_server.add_txt(
        f"ed._domainkey.{DOMAIN}", f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    )
    pkcs1 = rsa_key(2048, serialization.PublicFormat.PKCS1)
    dns_server.add_txt(f"p1._domainkey.{DOMAIN}", f"v=DKIM1; p={pkcs1}")
    # ESPs publish selectors as CNAMEs to their own zone; the split 255-byte strings are joined.
    dns_server.add(f"esp._domainkey.{DOMAIN}", "CNAME", "s1.dkim.esp.test.")
    dns_server.add_txt("s1.dkim.esp.test", f"v=DKIM1; k=rsa; p={KEY_2048}")
    rec = await probe(dns_server, selectors=("ed", "p1", "esp"))
    assert codes(rec.result) == set(), rec.result.findings
    assert value(rec, "dkim_key_bits", selector="ed") == 256
    assert value(rec, "dkim_key_bits", selector="p1") == 2048
    assert value(rec, "dkim_key_valid", selector="esp") == 1


def test_dkim_absurd_key_sizes_are_refused() -> None:
    with pytest.raises(dkim.DkimKeyError, match=r"p= is 10052 characters: a key over 16384 bits"):
        dkim.parse_key(f"v=DKIM1; p={big_key(60000)}")
    pkcs1 = big_key(16392, serialization.PublicFormat.PKCS1)
    assert len(pkcs1) <= dkim.MAX_P_CHARS  # refused by its size once loaded, not by its length
    with pytest.raises(dkim.DkimKeyError, match="RSA key of 16392 bits: over 16384"):
        dkim.parse_key(f"v=DKIM1; p={pkcs1}")


def test_dkim_parse_key_rejects_garbage() -> None:
    for text in ["", "p", "v=DKIM1; v=DKIM1; p=", "k=rsa; v=DKIM1; p=abc", "=x; p="]:
        with pytest.raises(dkim.DkimKeyError):
            dkim.parse_key(text)


# ----- MX --------------------------------------------------------------------------------------


async def test_mx_missing(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.records[DOMAIN] = [r for r in dns_server.records[DOMAIN] if r[0] != "MX"]
    rec = await probe(dns_server)
    assert "mx_missing" in codes(rec.result)
    assert value(rec, "mx_records") == 0
    assert value(rec, "mx_valid") == 0


async def test_null_mx(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.records[DOMAIN] = [r for r in dns_server.records[DOMAIN] if r[0] != "MX"]
    dns_server.add(DOMAIN, "MX", "0 .")
    rec = await probe(dns_server)
    assert codes(rec.result) == {"mx_null"}
    assert value(rec, "mx_valid") == 1


async def test_null_mx_mixed(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.add(DOMAIN, "MX", "0 .")
    rec = await probe(dns_server)
    assert "mx_null_mixed" in codes(rec.result)
    assert value(rec, "mx_valid") == 0


async def test_mx_host_problems(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.add(DOMAIN, "MX", f"30 alias.{DOMAIN}.")
    dns_server.add(f"alias.{DOMAIN}", "CNAME", f"mx1.{DOMAIN}.")
    dns_server.add(DOMAIN, "MX", f"40 nowhere.{DOMAIN}.")
    dns_server.add(DOMAIN, "MX", "50 192.0.2.99.")
    rec = await probe(dns_server)
    found = {(f.code, f.subject) for f in rec.result.findings}
    assert ("mx_host_is_cname", f"alias.{DOMAIN}") in found
    assert ("mx_host_unresolvable", f"nowhere.{DOMAIN}") in found
    assert ("mx_host_is_ip", "192.0.2.99") in found
    assert value(rec, "mx_records") == 5
    assert value(rec, "mx_valid") == 0


# ----- could not tell ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["timeout", "servfail", "refused"])
async def test_dns_failure_is_not_a_missing_record(dns_server: DnsServer, failure: str) -> None:
    healthy(dns_server)
    getattr(dns_server, failure).add(f"_dmarc.{DOMAIN}")
    getattr(dns_server, failure).add(f"s1._domainkey.{DOMAIN}")
    rec = await probe(dns_server, lifetime=0.5)
    assert not rec.success
    assert "DMARC" in (rec.result.error or "")
    assert "DKIM selector s1" in (rec.result.error or "")
    assert not {"dmarc_missing", "dkim_key_missing"} & codes(rec.result)
    assert value(rec, "dmarc_valid") is None
    assert value(rec, "dkim_key_valid", selector="s1") is None
    # The parts that answered still publish.
    assert value(rec, "mx_valid") == 1
    assert value(rec, "probe_success", probe="dns", target=DOMAIN, domain=None) == 0


async def test_mx_host_timeout_is_not_unresolvable(dns_server: DnsServer) -> None:
    healthy(dns_server)
    dns_server.timeout.add(f"mx2.{DOMAIN}")
    rec = await probe(dns_server, lifetime=0.5)
    assert not rec.success
    assert "mx_host_unresolvable" not in codes(rec.result)
    assert value(rec, "mx_valid") is None


async def test_one_cycle_asks_each_question_once(dns_server: DnsServer) -> None:
    healthy(dns_server)
    # mx1 is both an MX host and, through a CNAME, an alias target: still one query per name.
    dns_server.add(DOMAIN, "MX", f"30 mx1.{DOMAIN}.")
    await probe(dns_server, selectors=("s1", "s1x"))
    assert len(dns_server.queries) == len(set(dns_server.queries))
