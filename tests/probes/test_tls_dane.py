"""DANE in the ``tls`` probe against real servers: aiosmtpd and postfix with trustme certificates,
TLSA records computed from those certificates and published in a zone knot signs (or one left
unsigned, or one pre-signed with an expired TLSA signature), every MX address probed. The world
is tests/dane_world.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from dane_world import Mx, World, dane_world
from dnssec_lab import DnssecLab
from test_tls import value
from test_tls_postfix import run_postfix

from exporter.config import parse_config
from exporter.probes import PROBES
from exporter.results import ProbeResult
from exporter.runner import Runtime, run_probe


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    postfix_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    with (
        run_postfix(postfix_after) as postfix,
        dane_world(tmp_path_factory.mktemp("dane"), postfix) as built,
    ):
        yield built


async def run_tls(
    world: World, entry: dict[str, Any], ca: bool = True, nameserver: str | None = None
) -> ProbeResult:
    glob = {
        "nameservers": [nameserver or world.lab.address],
        "dnssec_trust_anchors": str(world.lab.anchor_file),
        "timeout": "20s",
    }
    config = parse_config(
        {"global": glob, "tls": [{**entry, **({"ca_file": world.ca_file} if ca else {})}]}
    )
    runtime = Runtime.for_config(config)
    try:
        (target,) = PROBES["tls"].targets(config)
        return (await run_probe(PROBES["tls"], target, runtime)).result
    finally:
        await runtime.aclose()


def codes(result: ProbeResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in result.findings:
        out.setdefault(f.code, []).append(f"{f.subject}: {f.evidence}")
    return out


async def mx_of(world: World, key: str, **kw: Any) -> tuple[ProbeResult, Mx, str]:
    mx = world.hosts[key]
    domain = mx.exchange.removeprefix("mx.")
    result = await run_tls(world, {"mx_of": domain}, **kw)
    return result, mx, f"{mx.exchange}:25"


@pytest.mark.parametrize("key", ["ee311", "ee301", "ta211", "rollover"])
async def test_matching_tlsa(world: World, key: str) -> None:
    result, mx, target = await mx_of(world, key)
    assert result.error is None, result.error
    assert value(result, "dane_tlsa_records", target=target) == len(mx.records)
    assert value(result, "dane_valid", target=target) == 1
    assert value(result, "tls_address_success", target=target, address=mx.addresses[0]) == 1
    assert "dane_no_match" not in codes(result)
    # One DANE-EE record alone: the next key change breaks delivery unless it is pre-published.
    assert ("dane_single_ee" in codes(result)) == (key in ("ee311", "ee301"))
    (table,) = [t for t in result.tables if t.title == f"DANE {target}"]
    ((address, matched, outcome),) = table.rows
    assert (address, outcome) == (mx.addresses[0], "match")
    assert matched.startswith(mx.records[0][:6])


async def test_no_record_matches_is_critical(world: World) -> None:
    result, mx, target = await mx_of(world, "nomatch")
    assert value(result, "dane_valid", target=target) == 0
    assert value(result, "tls_cert_valid", target=target) == 1  # fine for the Web PKI...
    assert value(result, "tls_address_success", target=target, address=mx.addresses[0]) == 0
    (finding,) = [f for f in result.findings if f.code == "dane_no_match"]
    assert finding.subject == f"{target} [{mx.addresses[0]}]"
    assert "leaf sha256" in finding.evidence and mx.addresses[0] in finding.evidence


async def test_every_address_is_probed_and_the_failing_one_named(world: World) -> None:
    result, mx, target = await mx_of(world, "twoaddr")
    good, bad = mx.addresses
    assert value(result, "tls_address_success", target=target, address=good) == 1
    assert value(result, "tls_address_success", target=target, address=bad) == 0
    assert value(result, "dane_valid", target=target) == 0  # the worst address
    (finding,) = [f for f in result.findings if f.code == "dane_no_match"]
    assert bad in finding.subject and good not in finding.subject
    (table,) = [t for t in result.tables if t.title == f"TLS addresses of {target}"]
    assert [row[0] for row in table.rows] == [good, bad]
    cipher = table.rows[0][1].split()[-1]
    assert value(result, "tls_cipher_info", target=target, cipher=cipher) == 1
    assert "DANE match" in table.rows[0][2] and "no DANE match" in table.rows[1][2]


async def test_dane_ee_ignores_an_expired_certificate(world: World) -> None:
    result, mx, target = await mx_of(world, "expired")
    assert value(result, "dane_valid", target=target) == 1
    assert value(result, "tls_cert_valid", target=target) == 0
    # DANE senders deliver: the address counts as working.
    assert value(result, "tls_address_success", target=target, address=mx.addresses[0]) == 1
    assert "tls_cert_expired" in codes(result)  # senders without DANE refuse it
    note = result.details[f"{target} DANE {mx.addresses[0]}"]
    assert "DANE senders ignore the certificate's names and dates" in note


async def test_pkix_usages_are_not_usable(world: World) -> None:
    result, _, target = await mx_of(world, "pkix")
    assert value(result, "dane_tlsa_records", target=target) == 0
    assert value(result, "dane_valid", target=target) is None
    assert "RFC 7672" in result.details[f"{target} DANE"]


@pytest.mark.parametrize(("key", "code"), [("insecure", "dane_tlsa_insecure"),
                                           ("bogus", "dane_tlsa_bogus")])  # fmt: skip
async def test_tlsa_outside_a_secure_zone_is_a_warning(world: World, key: str, code: str) -> None:
    result, _, target = await mx_of(world, key)
    assert value(result, "dane_tlsa_records", target=target) == 0
    assert value(result, "dane_valid", target=target) is None
    (evidence,) = codes(result)[code]
    assert "3 1 1" in evidence
    assert all(f.severity is None for f in result.findings if f.code == code)  # warning


async def test_no_tlsa_records(world: World, dnssec_lab: DnssecLab) -> None:
    result = await run_tls(world, {"mx_of": "secure.test"})  # its MX host has no TLSA record
    assert value(result, "dane_tlsa_records", target="mx.secure.test:25") == 0
    assert "no TLSA records" in result.details["mx.secure.test:25 DANE"]


async def test_postfix_with_dane_true(world: World) -> None:
    assert world.postfix is not None
    port = world.postfix.starttls_port
    entry = {"target": f"submission.dane.test:{port}", "dane": True}
    result = await run_tls(world, entry, ca=False)
    target = f"submission.dane.test:{port}"
    assert value(result, "dane_tlsa_records", target=target) == 1
    assert value(result, "dane_valid", target=target) == 1
    # Its certificate names mail.example.test and its CA is not trusted: only DANE vouches.
    assert value(result, "tls_cert_valid", target=target) == 0
    assert "dane_single_ee" in codes(result)


async def test_dane_off_without_dnssec(world: World) -> None:
    config = parse_config({
        "global": {"nameservers": [world.lab.address], "dnssec": False},
        "tls": [{"mx_of": "ee311.dane.test", "ca_file": world.ca_file}],
    })  # fmt: skip
    runtime = Runtime.for_config(config)
    try:
        (target,) = PROBES["tls"].targets(config)
        result = (await run_probe(PROBES["tls"], target, runtime)).result
    finally:
        await runtime.aclose()
    assert result.error is None
    assert value(result, "dane_tlsa_records", target="mx.ee311.dane.test:25") is None
    assert "global.dnssec is false" in result.details["mx.ee311.dane.test:25 DANE"]


@pytest.mark.parametrize(
    ("key", "where"),
    [("cname-ee", "_25._tcp.relay-ee.dane.test."),
     ("cname-orig", "_25._tcp.mx.cname-orig.dane.test."),
     ("cname-ta", "_25._tcp.relay-ta.dane.test.")],
)  # fmt: skip
async def test_mx_host_behind_a_secure_cname(world: World, key: str, where: str) -> None:
    # RFC 7672 §2.2.2: TLSA at the CNAME's target first, then at the MX host name itself; a
    # DANE-TA match needs the leaf to name either (the target's name here: §3.2.3).
    result, mx, target = await mx_of(world, key)
    assert result.error is None, result.error
    assert value(result, "dane_tlsa_records", target=target) == 1
    assert value(result, "dane_valid", target=target) == 1
    assert "dane_no_match" not in codes(result)
    assert value(result, "tls_address_success", target=target, address=mx.addresses[0]) == 1
    assert where in result.details[f"{target} DANE"]


async def test_tlsa_records_behind_an_insecure_cname_are_not_looked_up(world: World) -> None:
    # The CNAME leads into an unsigned zone: senders do not use the target's TLSA records
    # (RFC 7672 §2.2.2), so no dane_tlsa_insecure finding about them either.
    # Through a resolver: knot alone does not follow the CNAME into the other zone.
    with world.lab.unbound(validating=False) as resolver:
        result = await run_tls(
            world, {"mx_of": "cname-insecure.dane.test"}, nameserver=resolver.address
        )
    target = "mx.cname-insecure.dane.test:25"
    assert result.error is None, result.error
    assert value(result, "tls_handshake_success", target=target) == 1
    assert value(result, "dane_tlsa_records", target=target) == 0
    assert "dane_tlsa_insecure" not in codes(result)
    assert (
        "no TLSA records at _25._tcp.mx.cname-insecure.dane.test."
        in (result.details[f"{target} DANE"])
    )


async def test_tlsa_name_too_long_is_could_not_tell(world: World) -> None:
    host = ".".join(["a" * 60] * 4) + ".dane.test"  # 254 octets: _25._tcp. makes it too long
    result = await run_tls(world, {"target": f"{host}:25", "dane": True}, ca=False)
    assert result.error is not None
    assert "TLSA lookup could not tell" in result.error
    assert "longer than 255 octets" in result.error
