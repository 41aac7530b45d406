"""A signed DNS hierarchy for the demo: its own root, signed with dnspython at start.

The demo cannot reach the real root, so it signs a root zone ".", the TLD ``example.`` and the
sample domains that should be signed, puts each child's DS into its parent, and hands the
exporter the root's DS as its trust anchor (``global.dnssec_trust_anchors``). A zone listed in
``stale_ds`` gets a DS in its parent for a key it does not use — a DS left at the registrar after
a key change — so it validates as bogus. Zones not listed as signed are served unsigned (proven
insecure by the parent's NSEC records).

dnspython signs (``dns.dnssec.sign_zone``: RRSIGs and the NSEC chain); :mod:`exporter.lab.dns`
serves the signatures and the NSEC proofs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.rdtypes.ANY.DNSKEY
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = dns.dnssectypes.Algorithm.ECDSAP256SHA256
LIFETIME = 30 * 86400
"""Signatures valid for 30 days from start (the demo never runs that long)."""


@dataclass
class ZoneKey:
    private: ec.EllipticCurvePrivateKey
    dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY

    @classmethod
    def generate(cls) -> ZoneKey:
        private = ec.generate_private_key(ec.SECP256R1())
        return cls(private, dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags=257))

    def ds(self, owner: str) -> str:
        return dns.dnssec.make_ds(owner, self.dnskey, "SHA256").to_text()


@dataclass
class SignedHierarchy:
    zones: list[str]
    """Zone-file texts, signed where asked, with the DS records in their parents."""
    root_ds: list[str]
    """The root's DS records as zone-file lines (the trust anchor file's content)."""


def _origin(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("$ORIGIN "):
            return line.split()[1]
    raise ValueError("zone text without $ORIGIN")


def _parent(origin: str, origins: set[str]) -> str | None:
    """The nearest served zone above ``origin``."""
    name = dns.name.from_text(origin)
    while name != dns.name.root:
        name = name.parent()
        if name.to_text() in origins:
            return name.to_text()
    return None


def sign_hierarchy(
    zones: Iterable[str],
    signed: set[str],
    stale_ds: set[str] = frozenset(),  # type: ignore[assignment]
) -> SignedHierarchy:
    """Sign ``signed`` zones (origins with trailing dot) of ``zones`` (zone-file texts, the root
    among them), children before parents, each parent carrying its children's delegation."""
    texts = {_origin(t): t for t in zones}
    keys = {origin: ZoneKey.generate() for origin in signed}
    extra: dict[str, list[str]] = {origin: [] for origin in texts}
    for origin in texts:
        parent = _parent(origin, set(texts))
        if parent is None:
            continue
        extra[parent].append(f"{origin} NS ns.{origin}")
        if origin in keys:
            key = ZoneKey.generate() if origin in stale_ds else keys[origin]
            extra[parent].append(f"{origin} DS {key.ds(origin)}")
    out: list[str] = []
    now = int(time.time())
    for origin, text in texts.items():
        full = text + "".join(line + "\n" for line in extra[origin])
        if origin not in keys:
            out.append(full)
            continue
        zone = dns.zone.from_text(full, relativize=False)
        key = keys[origin]
        dns.dnssec.sign_zone(
            zone,
            keys=[(key.private, key.dnskey)],
            inception=now - 3600,
            expiration=now + LIFETIME,
        )
        out.append(f"$ORIGIN {origin}\n" + zone.to_text(relativize=False))
    root = keys.get(".")
    root_ds = [f". IN DS {root.ds('.')}"] if root is not None else []
    return SignedHierarchy(out, root_ds)
