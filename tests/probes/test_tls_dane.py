"""DANE in the ``tls`` probe against real servers: aiosmtpd and postfix with trustme certificates,
TLSA records computed from those certificates and published in a zone knot signs (or one left
unsigned, or one pre-signed with an expired TLSA signature), every MX address probed.

Each MX host listens on port 25 of its own loopback address (127.0.16.x), as ``mx_of`` needs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from cryptography import x509
from dnssec_lab import DnssecLab, LabZone, lab_zones
from dnssec_signer import LabKey, SignSpec, tamper_with
from test_tls_postfix import Postfix, run_postfix

from exporter.config import parse_config
from exporter.net import dane
from exporter.probes import PROBES
from exporter.results import ProbeResult
from exporter.runner import Runtime, run_probe

PAST = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def loopback_25(count: int) -> list[str]:
    """Loopback addresses whose port 25 is free (``mx_of`` probes port 25)."""
    found: list[str] = []
    for last in range(10, 250):
        address = f"127.0.16.{last}"
        try:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((address, 25))
        except PermissionError:
            pytest.fail("binding port 25 needs root (or CAP_NET_BIND_SERVICE)")
        except OSError:
            continue
        found.append(address)
        if len(found) == count:
            return found
    pytest.fail("not enough free loopback addresses for port 25")


def leaf_of(cert: trustme.LeafCert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())


def tlsa(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> str:
    return f"{usage} {selector} {mtype} {dane.association(cert, selector, mtype).hex()}"


@dataclass
class Mx:
    """One MX host: its addresses, each with a certificate, and its TLSA records."""

    name: str
    certs: list[trustme.LeafCert]
    records: list[str]
    chain_with_ca: bool = False
    addresses: list[str] = field(default_factory=list)


@dataclass
class World:
    lab: DnssecLab
    ca_file: str
    hosts: dict[str, Mx]
    postfix: Postfix


CA = trustme.CA()


def scenarios() -> dict[str, Mx]:
    """Each a domain of dane.test (signed by knot) whose one MX host is mx.<domain>."""
    ca_cert = x509.load_pem_x509_certificate(CA.cert_pem.bytes())

    def leaf(domain: str, **kw: Any) -> trustme.LeafCert:
        return CA.issue_cert(f"mx.{domain}", **kw)

    out: dict[str, Mx] = {}

    def add(
        key: str, zone: str, certs: list[trustme.LeafCert], records: list[str], **kw: Any
    ) -> None:
        out[key] = Mx(f"mx.{key}.{zone}", certs, records, **kw)

    c = leaf("ee311.dane.test")
    add("ee311", "dane.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    c = leaf("ee301.dane.test")
    add("ee301", "dane.test", [c], [tlsa(3, 0, 1, leaf_of(c))])
    c = leaf("ta211.dane.test")
    add("ta211", "dane.test", [c], [tlsa(2, 1, 1, ca_cert)], chain_with_ca=True)
    c, other = leaf("nomatch.dane.test"), leaf("nomatch.dane.test")
    add("nomatch", "dane.test", [c], [tlsa(3, 1, 1, leaf_of(other))])
    c, nxt = leaf("rollover.dane.test"), leaf("rollover.dane.test")
    add("rollover", "dane.test", [c], [tlsa(3, 1, 1, leaf_of(c)), tlsa(3, 1, 1, leaf_of(nxt))])
    c = leaf("expired.dane.test", not_before=PAST, not_after=PAST + dt.timedelta(days=90))
    add("expired", "dane.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    good, bad = leaf("twoaddr.dane.test"), leaf("twoaddr.dane.test")
    add("twoaddr", "dane.test", [good, bad], [tlsa(3, 1, 1, leaf_of(good))])
    c = leaf("pkix.dane.test")
    add("pkix", "dane.test", [c], ["1 1 1 " + "00" * 32, "0 0 1 " + "00" * 32])
    c = leaf("daneinsecure.test")
    out["insecure"] = Mx("mx.daneinsecure.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    c = leaf("danebogus.test")
    out["bogus"] = Mx("mx.danebogus.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    return out


def _zone_records(mxs: list[Mx], relative_to: str) -> str:
    lines = []
    for mx in mxs:
        host = mx.name.removesuffix("." + relative_to)
        domain = host.removeprefix("mx.")
        owner = domain if domain != "mx" else "@"
        lines.append(f"{owner} MX 10 {mx.name}.")
        lines += [f"{host} A {a}" for a in mx.addresses]
        lines += [f"_25._tcp.{host} TLSA {r}" for r in mx.records]
    return "\n".join(lines) + "\n"


def server_context(cert: trustme.LeafCert, with_ca: bool, tmp: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if with_ca:  # DANE-TA: the server sends the trust anchor's certificate too (RFC 7671 §5.2.2)
        chain = tmp / f"chain-{id(cert)}.pem"
        chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems) + CA.cert_pem.bytes())
        key = tmp / f"key-{id(cert)}.pem"
        cert.private_key_pem.write_to_path(str(key))
        ctx.load_cert_chain(str(chain), str(key))
    else:
        cert.configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("dane")
    hosts = scenarios()
    addresses = iter(loopback_25(sum(len(m.certs) for m in hosts.values())))
    for mx in hosts.values():
        mx.addresses = [next(addresses) for _ in mx.certs]
    postfix_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    with contextlib.ExitStack() as stack:
        postfix = stack.enter_context(run_postfix(postfix_after))
        postfix_leaf = x509.load_pem_x509_certificate((postfix.dir / "cert.pem").read_bytes())
        signed = [m for k, m in hosts.items() if k not in ("insecure", "bogus")]
        submission = (
            f"submission A 127.0.0.1\n_{postfix.starttls_port}._tcp.submission TLSA "
            f"{tlsa(3, 1, 1, postfix_leaf)}\n"
        )
        bogus_spec = SignSpec(
            keys=[LabKey.generate()], tamper=tamper_with({("_25._tcp.mx", "TLSA"): "expired"})
        )
        zones = [
            *lab_zones(),
            LabZone("dane.test.", "nsec", extra=_zone_records(signed, "dane.test") + submission,
                    body=False),
            LabZone("daneinsecure.test.", "unsigned",
                    extra=_zone_records([hosts["insecure"]], "daneinsecure.test"), body=False),
            LabZone("danebogus.test.", "presigned", spec=bogus_spec,
                    extra=_zone_records([hosts["bogus"]], "danebogus.test"), body=False),
        ]  # fmt: skip
        lab = DnssecLab(tmp / "lab", zones=zones).start()
        stack.callback(lab.stop)
        for mx in hosts.values():
            for cert, address in zip(mx.certs, mx.addresses, strict=True):
                controller = Controller(
                    Sink(), hostname=address, port=25, server_hostname=mx.name, ready_timeout=5,
                    tls_context=server_context(cert, mx.chain_with_ca, tmp),
                )  # fmt: skip
                controller.start()
                stack.callback(controller.stop)
        ca_file = tmp / "ca.pem"
        CA.cert_pem.write_to_path(str(ca_file))
        yield World(lab, str(ca_file), hosts, postfix)


async def run_tls(world: World, entry: dict[str, Any], ca: bool = True) -> ProbeResult:
    glob = {
        "nameservers": [world.lab.address],
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


def value(result: ProbeResult, metric: str, **labels: str) -> float | None:
    found = [
        s.value
        for s in result.samples
        if s.metric == metric and all(dict(s.labels).get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (metric, found)
    return found[0] if found else None


def codes(result: ProbeResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in result.findings:
        out.setdefault(f.code, []).append(f"{f.subject}: {f.evidence}")
    return out


async def mx_of(world: World, key: str, **kw: Any) -> tuple[ProbeResult, Mx, str]:
    mx = world.hosts[key]
    domain = mx.name.removeprefix("mx.")
    result = await run_tls(world, {"mx_of": domain}, **kw)
    return result, mx, f"{mx.name}:25"


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
    assert value(result, "tls_cipher_info", target=target, cipher=table.rows[0][3]) == 1


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
