"""RRSIG checks (exporter/dnssec/signatures.py) against keys and signatures built to abuse them:
KeyTrap (CVE-2023-50387), many DNSKEYs sharing one key tag and many signatures naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dns.dnssec
import dns.dnssecalgs.ecdsa
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from exporter.dnssec import signatures
from exporter.dnssec.signatures import MAX_VERIFICATIONS, check_rrset

ZONE = dns.name.from_text("keytrap.test.")
ALG = dns.dnssec.Algorithm.ECDSAP256SHA256
TAG = 4242


def colliding_key(tag: int) -> tuple[ec.EllipticCurvePrivateKey, Any]:
    """A real P-256 key whose DNSKEY has key tag ``tag``: the flags word (zone bit set, revoke
    bit clear) is chosen to make the RFC 4034 checksum come out right."""
    while True:
        private = ec.generate_private_key(ec.SECP256R1())
        zero = dns.dnssec.make_dnskey(private.public_key(), ALG, flags=0)
        rest = dns.dnssec.key_id(zero)  # the checksum without the flags word, folded
        for flags in range(0x0100, 0x10000):
            if not flags & 0x0100 or flags & 0x0080:
                continue
            total = rest + flags
            if (total + (total >> 16)) & 0xFFFF == tag:
                key = dns.dnssec.make_dnskey(private.public_key(), ALG, flags=flags)
                if dns.dnssec.key_id(key) == tag:
                    return private, key


def counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the ECDSA signature verifications actually made."""
    calls = [0]
    real: Callable[..., None] = dns.dnssecalgs.ecdsa.PublicECDSA.verify

    def verify(self: Any, signature: bytes, data: bytes) -> None:
        calls[0] += 1
        real(self, signature, data)

    monkeypatch.setattr(dns.dnssecalgs.ecdsa.PublicECDSA, "verify", verify)
    return calls


def test_colliding_key_tags_cost_at_most_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    rrset = dns.rrset.from_text(f"www.{ZONE}", 300, "IN", "A", "192.0.2.1")
    keys = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for _ in range(20):
        keys.add(colliding_key(TAG)[1])
    outsider, outsider_key = colliding_key(TAG)  # signs, but is not in the zone's DNSKEY set
    sigs = dns.rrset.RRset(rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.A)
    now = time.time()
    for i in range(20):
        sigs.add(
            dns.dnssec.sign(rrset, outsider, ZONE, outsider_key, inception=int(now) - 3600 - i,
                            expiration=int(now) + 86400),
        )  # fmt: skip
    calls = counting(monkeypatch)
    check = check_rrset(rrset, sigs, ZONE, keys, now)
    assert not check.ok
    # 20 signatures x 20 candidate keys were 400 verifications; now the cap, then bogus.
    assert calls[0] <= MAX_VERIFICATIONS == 16
    assert "more than 16 signature verifications" in check.reason
    assert "KeyTrap" in check.reason


def test_a_good_signature_within_the_cap_still_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    rrset = dns.rrset.from_text(f"www.{ZONE}", 300, "IN", "A", "192.0.2.1")
    pairs = [colliding_key(TAG) for _ in range(4)]
    keys = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for _, key in pairs:
        keys.add(key)
    now = time.time()
    private, key = pairs[-1]  # the last candidate: every other one is tried first
    sigs = dns.rrset.RRset(rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.A)
    sigs.add(dns.dnssec.sign(rrset, private, ZONE, key, lifetime=3600))
    calls = counting(monkeypatch)
    check = check_rrset(rrset, sigs, ZONE, keys, now)
    assert check.ok, check.reason
    assert 1 <= calls[0] <= 4
    assert signatures.describe(rrset) == f"www.{ZONE} A"
