"""Synthetic zones for the scale bench: N customer domains of a hosting provider / ESP.

Every domain ``dNNNNN.bench.test`` has, like a real customer of an email service provider:

* an SPF record with its own sending IP (``198.18.0.0/15``, the RFC 2544 benchmark range) and an
  ``include:`` of one of :data:`ESPS` provider zones, whose records include further records
  (a chain three deep: 6 DNS-querying terms per domain, 4 of them shared by all customers of
  that provider);
* a DMARC record (``p=quarantine`` with ``rua``; every 50th domain ``p=none``);
* two DKIM selectors ``s1`` and ``s2`` (2048-bit RSA; the key is generated once per run);
* an MX pointing at ``mx.dNNNNN.bench.test`` (A 127.0.0.1);
* a PTR record for its sending IP, ``mta.dNNNNN.bench.test``, whose A record points back
  (forward-confirmed reverse DNS, as Gmail requires), in the reverse zone ``198.in-addr.arpa``.

The top-level zone ``test`` is served too (empty): the RFC 9989 DMARC tree walk asks
``_dmarc.bench.test`` and ``_dmarc.test``, and an authoritative server refuses names outside its
zones (a resolver would answer NXDOMAIN).

Blacklists: ``bl.bench.test`` (IP list, RFC 5782 test entries, every 100th sending IP listed with a
TXT reason) and ``dbl.bench.test`` (domain list, every 100th domain listed).

All domains live in one zone (``bench.test``) and each provider in its own zone, so knot loads
10,000 domains from a handful of files in a second or two.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PARENT = "bench.test"
TOP = "test"
REVERSE_ZONE = "198.in-addr.arpa"
IP_LIST = "bl.bench.test"
DOMAIN_LIST = "dbl.bench.test"
ESPS = 5
SELECTORS = ("s1", "s2")
SENDING_NET = ipaddress.IPv4Network("198.18.0.0/15")
LISTED_EVERY = 100
DMARC_NONE_EVERY = 50


@dataclass(frozen=True)
class BenchDomain:
    name: str
    sending_ip: str
    esp: str
    listed: bool


def domain_name(i: int) -> str:
    return f"d{i:05d}.{PARENT}"


def domains(n: int) -> list[BenchDomain]:
    if n > SENDING_NET.num_addresses - 2:
        raise ValueError(f"at most {SENDING_NET.num_addresses - 2} domains")
    return [
        BenchDomain(
            name=domain_name(i),
            sending_ip=str(SENDING_NET[i + 1]),
            esp=f"esp{i % ESPS}.test",
            listed=i % LISTED_EVERY == 7,
        )
        for i in range(n)
    ]


def dkim_txt() -> str:
    """A DKIM key record in zone-file syntax, split into character-strings of 200 bytes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    return "( " + " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200)) + " )"


def _head(origin: str) -> list[str]:
    return [
        f"$ORIGIN {origin}.",
        "$TTL 300",
        f"@ SOA ns.{origin}. hostmaster.{origin}. 1 3600 600 86400 300",
        f"@ NS ns.{origin}.",
        "ns A 127.0.0.1",
    ]


def parent_zone(doms: list[BenchDomain], dkim: str) -> str:
    lines = _head(PARENT)
    for i, d in enumerate(doms):
        label = d.name.removesuffix("." + PARENT)
        policy = "none" if i % DMARC_NONE_EVERY == 3 else "quarantine"
        lines += [
            f'{label} TXT "v=spf1 ip4:{d.sending_ip} include:_spf.{d.esp} ~all"',
            f"{label} MX 10 mx.{label}",
            f"mx.{label} A 127.0.0.1",
            f"mta.{label} A {d.sending_ip}",
            f'_dmarc.{label} TXT "v=DMARC1; p={policy}; rua=mailto:dmarc@{d.name}"',
            *(f"{sel}._domainkey.{label} TXT {dkim}" for sel in SELECTORS),
        ]
    return "\n".join(lines) + "\n"


def esp_zone(esp: str, index: int) -> str:
    net = f"203.0.{113 if index % 2 else 112}.0/24"
    lines = [
        *_head(esp),
        f'_spf TXT "v=spf1 include:_spf1.{esp} include:_spf2.{esp} ~all"',
        f'_spf1 TXT "v=spf1 ip4:{net} include:_spf3.{esp} ~all"',
        f'_spf2 TXT "v=spf1 a:mta.{esp} ~all"',
        f'_spf3 TXT "v=spf1 ip6:2001:db8:{index:x}::/48 ~all"',
        "mta A 192.0.2.25",
    ]
    return "\n".join(lines) + "\n"


def _reverse(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


def reverse_zone(doms: list[BenchDomain]) -> str:
    lines = _head(REVERSE_ZONE)
    for d in doms:
        rev = _reverse(d.sending_ip).removesuffix(".198")
        lines.append(f"{rev} PTR mta.{d.name}.")
    return "\n".join(lines) + "\n"


def ip_list_zone(doms: list[BenchDomain]) -> str:
    lines = [
        *_head(IP_LIST),
        "2.0.0.127 A 127.0.0.2",
        '2.0.0.127 TXT "RFC 5782 test entry"',
    ]
    for d in doms:
        if d.listed:
            rev = _reverse(d.sending_ip)
            lines += [f"{rev} A 127.0.0.2", f'{rev} TXT "bench listing for {d.sending_ip}"']
    return "\n".join(lines) + "\n"


def domain_list_zone(doms: list[BenchDomain]) -> str:
    lines = [*_head(DOMAIN_LIST), "test A 127.0.1.2"]
    for d in doms:
        if d.listed:
            lines.append(f"{d.name}.{DOMAIN_LIST}. A 127.0.1.2")
    return "\n".join(lines) + "\n"


def write_zones(directory: Path, n: int) -> dict[str, Path]:
    """Write every zone file for ``n`` domains into ``directory``; returns zone name -> file."""
    doms = domains(n)
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        TOP: "\n".join(_head(TOP)) + "\n",
        PARENT: parent_zone(doms, dkim_txt()),
        REVERSE_ZONE: reverse_zone(doms),
        IP_LIST: ip_list_zone(doms),
        DOMAIN_LIST: domain_list_zone(doms),
    }
    for k in range(ESPS):
        texts[f"esp{k}.test"] = esp_zone(f"esp{k}.test", k)
    out: dict[str, Path] = {}
    for zone, text in texts.items():
        path = directory / f"{zone}.zone"
        path.write_text(text)
        out[zone] = path
    return out
