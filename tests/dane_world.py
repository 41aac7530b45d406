"""A DANE world on loopback: the DNSSEC lab's zones plus zones with TLSA records made from the
certificates of real SMTP servers (aiosmtpd) listening on port 25 of their own loopback
addresses (127.0.16.x), as ``mx_of`` probes them. Used by tests/probes/test_tls_dane.py and
tests/monitoring/test_dnssec_e2e.py.

* ``dane.test`` (signed by knot): one domain per case, each with one MX host ``mx.<domain>``:
  ``ee311`` and ``ee301`` (DANE-EE), ``ta211`` (DANE-TA on the CA, which the server sends),
  ``nomatch``, ``rollover`` (current and next key), ``expired`` (DANE-EE on an expired
  certificate), ``twoaddr`` (two addresses, one with a certificate no record matches), ``pkix``
  (usages 0 and 1 only); ``cname-ee``, ``cname-orig`` and ``cname-ta``, whose MX host is a
  CNAME to ``relay-*.dane.test`` (TLSA at the target, at the alias only, DANE-TA with a
  certificate naming only the target); and, with a postfix, ``submission`` (TLSA at its port);
* ``daneinsecure.test`` (unsigned) and ``danebogus.test`` (the TLSA signature expired).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import trustme
from aiosmtpd.controller import Controller
from cryptography import x509
from dnssec_lab import DnssecLab, LabZone, lab_zones
from dnssec_signer import LabKey, SignSpec, tamper_with

from exporter.net import dane


class HasStarttlsPort(Protocol):
    """A running SMTP server with STARTTLS whose certificate is ``dir / "cert.pem"``."""

    dir: Path
    starttls_port: int


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
    alias: str | None = None
    """The name the domain's MX record names: a CNAME to ``name`` (RFC 7672 §2.2.2)."""
    alias_records: list[str] = field(default_factory=list)
    """TLSA records at the alias's own name."""

    @property
    def exchange(self) -> str:
        """The MX record's exchange: the alias when there is one."""
        return self.alias or self.name


@dataclass
class World:
    lab: DnssecLab
    ca_file: str
    hosts: dict[str, Mx]
    postfix: HasStarttlsPort | None = None


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
    # MX hosts that are CNAMEs (RFC 7672 §2.2.2): TLSA at the target, at the alias only, and
    # DANE-TA with a certificate naming only the target.
    c = CA.issue_cert("relay-ee.dane.test")
    out["cname-ee"] = Mx("relay-ee.dane.test", [c], [tlsa(3, 1, 1, leaf_of(c))],
                         alias="mx.cname-ee.dane.test")  # fmt: skip
    c = CA.issue_cert("relay-orig.dane.test")
    out["cname-orig"] = Mx("relay-orig.dane.test", [c], [], alias="mx.cname-orig.dane.test",
                           alias_records=[tlsa(3, 1, 1, leaf_of(c))])  # fmt: skip
    c = CA.issue_cert("relay-ta.dane.test")
    out["cname-ta"] = Mx("relay-ta.dane.test", [c], [tlsa(2, 1, 1, ca_cert)], chain_with_ca=True,
                         alias="mx.cname-ta.dane.test")  # fmt: skip
    # ... and one whose CNAME leads into an unsigned zone: the chain is not secure, so the
    # TLSA records at the target are not looked up.
    c = CA.issue_cert("relay.daneinsecure.test")
    out["cname-insecure"] = Mx("relay.daneinsecure.test", [c], [tlsa(3, 1, 1, leaf_of(c))],
                               alias="mx.cname-insecure.dane.test")  # fmt: skip
    c = leaf("daneinsecure.test")
    out["insecure"] = Mx("mx.daneinsecure.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    c = leaf("danebogus.test")
    out["bogus"] = Mx("mx.danebogus.test", [c], [tlsa(3, 1, 1, leaf_of(c))])
    return out


def _zone_records(mxs: list[Mx], relative_to: str) -> str:
    """The records of ``relative_to``: the domain's MX (and alias), the host's addresses and
    TLSA records, each in the zone its name is in."""
    lines = []
    for mx in mxs:
        if mx.exchange.endswith("." + relative_to):
            exchange = mx.exchange.removesuffix("." + relative_to)
            domain = exchange.removeprefix("mx.")
            owner = domain if domain != "mx" else "@"
            lines.append(f"{owner} MX 10 {mx.exchange}.")
            if mx.alias is not None:
                lines.append(f"{exchange} CNAME {mx.name}.")
            lines += [f"_25._tcp.{exchange} TLSA {r}" for r in mx.alias_records]
        if mx.name.endswith("." + relative_to):
            host = mx.name.removesuffix("." + relative_to)
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


@contextlib.contextmanager
def dane_world(tmp: Path, postfix: HasStarttlsPort | None = None) -> Iterator[World]:
    """Start the lab and the SMTP servers (``postfix`` already running, when given)."""
    hosts = scenarios()
    addresses = iter(loopback_25(sum(len(m.certs) for m in hosts.values())))
    for mx in hosts.values():
        mx.addresses = [next(addresses) for _ in mx.certs]
    with contextlib.ExitStack() as stack:
        submission = ""
        if postfix is not None:
            leaf = x509.load_pem_x509_certificate((postfix.dir / "cert.pem").read_bytes())
            submission = (
                f"submission A 127.0.0.1\n_{postfix.starttls_port}._tcp.submission TLSA "
                f"{tlsa(3, 1, 1, leaf)}\n"
            )
        signed = [m for k, m in hosts.items() if k not in ("insecure", "bogus")]
        bogus_spec = SignSpec(
            keys=[LabKey.generate()], tamper=tamper_with({("_25._tcp.mx", "TLSA"): "expired"})
        )
        zones = [
            *lab_zones(),
            LabZone("dane.test.", "nsec", extra=_zone_records(signed, "dane.test") + submission,
                    body=False),
            LabZone("daneinsecure.test.", "unsigned",
                    extra=_zone_records([hosts["insecure"], hosts["cname-insecure"]],
                                        "daneinsecure.test"), body=False),
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
