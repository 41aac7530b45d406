"""Zones pre-signed with dnspython for the DNSSEC lab: correct ones and deliberately broken ones.

knot keeps the signatures of the zones it signs fresh and correct, so the broken cases (an
expired or not-yet-valid signature, a signature that does not verify, an RRset left unsigned, an
NSEC chain with a hole) are signed here with explicit times and served by knot with signing off.
dnspython signs RRsets (``dns.dnssec.sign``) and hashes NSEC3 names (``nsec3_hash``); it builds
no NSEC3 chain (``sign_zone`` only does NSEC), so both chains are built here, NSEC3 with opt-out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.NSEC3PARAM
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

ALGORITHM = dns.dnssec.Algorithm.ECDSAP256SHA256
DAY = 86400
Tamper = Callable[[dns.name.Name, int], str | None]
"""(owner, type) -> None (sign normally), "unsigned", "expired", "future" or "corrupt"."""


PrivateKey = ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey | rsa.RSAPrivateKey


@dataclass
class LabKey:
    private: PrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @classmethod
    def generate(cls, ksk: bool = True, algorithm: int = ALGORITHM) -> LabKey:
        """A key of ``algorithm``: ECDSA P-256 (13), or the prohibited DSA (3, 6) and RSA/MD5 (1)
        that validators must treat as unsupported (RFC 8624 §3.1)."""
        private: PrivateKey
        if algorithm in (dns.dnssec.Algorithm.DSA, dns.dnssec.Algorithm.DSANSEC3SHA1):
            private = dsa.generate_private_key(1024)
        elif algorithm == dns.dnssec.Algorithm.RSAMD5:
            private = rsa.generate_private_key(65537, 1024)
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags=257 if ksk else 256)
        return cls(private, dnskey)

    def ds(self, owner: str, digest: str = "SHA256") -> str:
        """The DS record (rdata text) of this key at ``owner``."""
        policy = dns.dnssec.allow_all_policy  # SHA-1 too
        return dns.dnssec.make_ds(owner, self.dnskey, digest, policy=policy).to_text()


@dataclass
class Nsec3Params:
    iterations: int = 0
    salt: bytes = b""
    opt_out: bool = False
    flags: int = 0
    """Flag bits beyond opt-out (RFC 5155 §8.2: validators ignore such records)."""


@dataclass
class SignSpec:
    """How to sign one zone."""

    keys: list[LabKey]
    nsec3: Nsec3Params | None = None
    tamper: Tamper = lambda name, rdtype: None
    skip_denial: set[str] = field(default_factory=set)
    """Owner names (relative) left out of the NSEC/NSEC3 chain: a hole in the proof."""
    inception: float = field(default_factory=lambda: time.time() - DAY)
    expiration: float = field(default_factory=lambda: time.time() + 14 * DAY)


def _cuts(zone: dns.zone.Zone) -> set[dns.name.Name]:
    origin = zone.origin
    assert origin is not None
    return {
        name
        for name, node in zone.nodes.items()
        if name != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS) is not None
    }


def _occluded(name: dns.name.Name, cuts: set[dns.name.Name]) -> bool:
    return any(name != cut and name.is_subdomain(cut) for cut in cuts)


def _bitmap(types: set[int]) -> list[tuple[int, bytes]]:
    return dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(sorted(types)).windows


def sign(zone_text: str, origin: str, spec: SignSpec) -> str:
    """The zone (zone-file text) with DNSKEYs, NSEC or NSEC3 chain and RRSIGs added."""
    zone = dns.zone.from_text(zone_text, origin=origin, relativize=False)
    apex = zone.origin
    assert apex is not None
    ttl = 300
    keyset = zone.find_rdataset(apex, dns.rdatatype.DNSKEY, create=True)
    for key in spec.keys:
        keyset.add(key.dnskey, ttl)
    cuts = _cuts(zone)
    names = sorted(n for n in zone.nodes if not _occluded(n, cuts))
    skipped = {dns.name.from_text(s, apex) for s in spec.skip_denial}
    if spec.nsec3 is None:
        _nsec_chain(zone, [n for n in names if n not in skipped], cuts, ttl)
    else:
        _nsec3_chain(zone, names, cuts, spec.nsec3, skipped, ttl)
    _sign_all(zone, cuts, spec)
    return zone.to_text(relativize=False)


def _nsec_chain(
    zone: dns.zone.Zone, names: list[dns.name.Name], cuts: set[dns.name.Name], ttl: int
) -> None:
    for i, name in enumerate(names):
        node = zone.nodes[name]
        types = {rds.rdtype for rds in node.rdatasets} | {dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
        if name in cuts and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.DS) is None:
            types = {dns.rdatatype.NS, dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
        nxt = names[(i + 1) % len(names)]
        rd = dns.rdtypes.ANY.NSEC.NSEC(dns.rdataclass.IN, dns.rdatatype.NSEC, nxt, _bitmap(types))
        zone.find_rdataset(name, dns.rdatatype.NSEC, create=True).add(rd, ttl)


def _nsec3_chain(
    zone: dns.zone.Zone,
    names: list[dns.name.Name],
    cuts: set[dns.name.Name],
    params: Nsec3Params,
    skipped: set[dns.name.Name],
    ttl: int,
) -> None:
    apex = zone.origin
    assert apex is not None
    zone.find_rdataset(apex, dns.rdatatype.NSEC3PARAM, create=True).add(
        dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM(
            dns.rdataclass.IN, dns.rdatatype.NSEC3PARAM, 1, 0, params.iterations, params.salt
        ),
        ttl,
    )

    def unsigned_cut(name: dns.name.Name) -> bool:
        node = zone.nodes[name]
        return name in cuts and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.DS) is None

    chained = [n for n in names if not (params.opt_out and unsigned_cut(n))]
    types_of: dict[dns.name.Name, set[int]] = {}
    for name in chained:
        node = zone.nodes[name]
        types = {rds.rdtype for rds in node.rdatasets}
        if not unsigned_cut(name):
            types.add(dns.rdatatype.RRSIG)
        types_of[name] = types
        cur = name
        while cur != apex:  # empty non-terminals get an NSEC3 with no types
            cur = cur.parent()
            types_of.setdefault(cur, set())
    hashed = sorted(
        (
            base64.b32hexdecode(dns.dnssec.nsec3_hash(n, params.salt, params.iterations, 1)),
            n,
        )
        for n in types_of
        if n not in skipped
    )
    for i, (digest, name) in enumerate(hashed):
        nxt = hashed[(i + 1) % len(hashed)][0]
        owner = dns.name.Name((base64.b32hexencode(digest).lower(), *apex.labels))
        rd = dns.rdtypes.ANY.NSEC3.NSEC3(
            dns.rdataclass.IN,
            dns.rdatatype.NSEC3,
            1,
            (1 if params.opt_out else 0) | params.flags,
            params.iterations,
            params.salt,
            nxt,
            _bitmap(types_of[name]),
        )
        zone.find_rdataset(owner, dns.rdatatype.NSEC3, create=True).add(rd, ttl)


def _sign_all(zone: dns.zone.Zone, cuts: set[dns.name.Name], spec: SignSpec) -> None:
    apex = zone.origin
    assert apex is not None
    ksks = [k for k in spec.keys if k.dnskey.flags & 1] or spec.keys
    zsks = [k for k in spec.keys if not k.dnskey.flags & 1] or spec.keys
    for name, node in list(zone.nodes.items()):
        if _occluded(name, cuts):
            continue
        for rdataset in list(node.rdatasets):
            rdtype = rdataset.rdtype
            if rdtype == dns.rdatatype.RRSIG:
                continue
            if name in cuts and rdtype not in (dns.rdatatype.DS, dns.rdatatype.NSEC):
                continue
            action = spec.tamper(name.relativize(apex), rdtype)
            if action == "unsigned":
                continue
            inception, expiration = spec.inception, spec.expiration
            if action == "expired":
                inception, expiration = time.time() - 30 * DAY, time.time() - DAY
            elif action == "future":
                inception, expiration = time.time() + 3 * DAY, time.time() + 30 * DAY
            rrset = dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
            signers = ksks if rdtype == dns.rdatatype.DNSKEY else zsks
            sigs = zone.find_rdataset(name, dns.rdatatype.RRSIG, rdtype, create=True)
            for key in signers:
                sig = dns.dnssec.sign(
                    rrset,
                    key.private,
                    apex,
                    key.dnskey,
                    inception=int(inception),
                    expiration=int(expiration),
                    policy=dns.dnssec.allow_all_policy,  # prohibited algorithms too
                )
                if action == "corrupt":
                    raw = bytearray(sig.signature)
                    raw[len(raw) // 2] ^= 0x55
                    sig = sig.replace(signature=bytes(raw))
                sigs.add(sig, rdataset.ttl)


def tamper_with(rules: dict[tuple[str, str], str], everything: str | None = None) -> Tamper:
    """A tamper function from ``{(relative owner, type): action}``; ``everything`` for the rest."""
    table = {
        (dns.name.from_text(owner, None), dns.rdatatype.from_text(rdtype)): action
        for (owner, rdtype), action in rules.items()
    }

    def tamper(name: dns.name.Name, rdtype: int) -> str | None:
        return table.get((name, rdtype), everything)

    return tamper
