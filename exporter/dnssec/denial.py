"""Denial of existence: what validated NSEC (RFC 4034/4035) and NSEC3 (RFC 5155) records prove.

Pure functions over records that the caller has already validated. Three questions:

* :func:`ds_denial` — at a name below a secure zone, is there a delegation without DS (an
  *insecure* delegation, also an NSEC3 opt-out span), no zone cut at all, or no such name?
  This is how an unsigned zone is *proven* insecure rather than assumed.
* :func:`negative_proof` — does an NXDOMAIN or NODATA answer come with a proof (wildcards
  included)?
* :func:`wildcard_proof` — does a wildcard-expanded answer prove that the name itself does not
  exist?

Why hand-written: dnspython validates signatures and hashes NSEC3 names (``nsec3_hash``, used
here) but has no denial-of-existence logic.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar, cast

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rrset

NSEC3_MAX_ITERATIONS = 150
"""Above this many extra NSEC3 hash iterations a proof counts as insecure (RFC 9276 §3.2: the
validator's limit; 150 is unbound's)."""

MAX_NSEC3_HASHES = 128
"""NSEC3 hashes computed for one proof at most: enough for the deepest name (127 labels) with
one parameter set; records of many salts each hashing every ancestor burned seconds of CPU per
answer (CVE-2023-50868)."""
TOO_MANY_HASHES = (
    f"more than {MAX_NSEC3_HASHES} NSEC3 hashes needed (NSEC3 records of many parameter sets)"
)
COSTLY = f"NSEC3 with more than {NSEC3_MAX_ITERATIONS} iterations"
"""The ``how`` of an INSECURE proof that was not checked for its cost."""

_DS, _NS, _SOA, _CNAME, _DNAME = (
    dns.rdatatype.DS,
    dns.rdatatype.NS,
    dns.rdatatype.SOA,
    dns.rdatatype.CNAME,
    dns.rdatatype.DNAME,
)


@dataclass(frozen=True)
class Nsec:
    owner: dns.name.Name
    next: dns.name.Name
    types: frozenset[int]


@dataclass(frozen=True)
class Nsec3:
    owner_hash: bytes
    next_hash: bytes
    types: frozenset[int]
    opt_out: bool
    algorithm: int
    iterations: int
    salt: bytes


class Denial(Enum):
    INSECURE = "insecure"
    """Nothing is proven either way, and rightly so: a delegation without DS for a DS question,
    or a name inside an NSEC3 opt-out span, where unsigned delegations need no NSEC3."""
    NODATA = "nodata"
    """The name exists (or is an empty non-terminal) and has no such records; for a DS question:
    the name is not a delegation."""
    NXDOMAIN = "nxdomain"
    UNPROVEN = "unproven"


@dataclass(frozen=True)
class Proof:
    kind: Denial
    how: str
    """What proved it (``NSEC``, ``NSEC3``, ``NSEC3 opt-out``) or why nothing does."""

    @property
    def proven(self) -> bool:
        return self.kind is not Denial.UNPROVEN


def _types(windows: Iterable[tuple[int, bytes]]) -> frozenset[int]:
    out: set[int] = set()
    for window, bitmap in windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(window * 256 + i * 8 + bit)
    return frozenset(out)


def nsecs_of(rrsets: Iterable[dns.rrset.RRset]) -> list[Nsec]:
    out = []
    for rrset in rrsets:
        for rd in rrset:
            nsec = cast(dns.rdtypes.ANY.NSEC.NSEC, rd)
            out.append(Nsec(rrset.name, nsec.next, _types(nsec.windows)))
    return out


def nsec3_problem(owner: dns.name.Name, n3: dns.rdtypes.ANY.NSEC3.NSEC3) -> str | None:
    """Why an NSEC3 record is ignored (RFC 5155 §8.1, §8.2), or None when it is usable: its
    owner must be a hashed name, its hash SHA-1, its only flag opt-out."""
    hashed = owner_hash(owner)
    if hashed is None:
        return "its owner name is not an NSEC3 hash"
    if n3.algorithm != 1:
        return f"hash algorithm {n3.algorithm} is not SHA-1"
    if n3.flags & ~1:
        return f"unknown flags 0x{n3.flags:02x}, RFC 5155 §8.2"
    if len(n3.next) != len(hashed):
        return "its next hashed owner is not a SHA-1 hash"
    return None


def nsec3s_of(rrsets: Iterable[dns.rrset.RRset]) -> list[Nsec3]:
    """The usable NSEC3 records (:func:`nsec3_problem`); others are ignored."""
    out = []
    for rrset in rrsets:
        owner = owner_hash(rrset.name)
        if owner is None:
            continue
        for rd in rrset:
            n3 = cast(dns.rdtypes.ANY.NSEC3.NSEC3, rd)
            if nsec3_problem(rrset.name, n3) is not None:
                continue
            out.append(
                Nsec3(
                    owner,
                    n3.next,
                    _types(n3.windows),
                    bool(n3.flags & 1),
                    n3.algorithm,
                    n3.iterations,
                    n3.salt,
                )
            )
    return out


def owner_hash(owner: dns.name.Name) -> bytes | None:
    """The hash in an NSEC3 owner name's first label (None when it is not base32hex)."""
    if not owner.labels:
        return None
    try:
        raw = base64.b32hexdecode(owner.labels[0].upper())
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 20 else None


def nsec3_hash(name: dns.name.Name, n3: Nsec3) -> bytes:
    text = dns.dnssec.nsec3_hash(name, n3.salt, n3.iterations, n3.algorithm)
    return base64.b32hexdecode(text)


Ordered = TypeVar("Ordered", bytes, dns.name.Name)


def covers(owner: Ordered, nxt: Ordered, value: Ordered) -> bool:
    """``owner`` < ``value`` < ``nxt`` in canonical order; the last record of a chain (whose
    next is the first) covers everything after its owner and before the first."""
    if owner < nxt:
        return bool(owner < value < nxt)
    return bool(value > owner or value < nxt)


def _is_cut(types: frozenset[int]) -> bool:
    """A delegation point (or DNAME): its NSEC says nothing about the names below it."""
    return _DNAME in types or (_NS in types and _SOA not in types)


def nsec_covers(n: Nsec, name: dns.name.Name, zone: dns.name.Name) -> bool:
    if not name.is_subdomain(zone) or name == n.owner:
        return False
    if _is_cut(n.types) and name.is_subdomain(n.owner):
        return False
    return covers(n.owner, n.next, name)


def _ancestors(name: dns.name.Name, zone: dns.name.Name) -> list[dns.name.Name]:
    """The proper ancestors of ``name`` down to ``zone``, nearest first."""
    out = []
    cur = name
    while cur != zone and len(cur) > len(zone):
        cur = cur.parent()
        out.append(cur)
    return out


def _child_toward(ancestor: dns.name.Name, name: dns.name.Name) -> dns.name.Name:
    return name.split(len(ancestor) + 1)[1]


class TooManyHashes(Exception):
    """A proof needs more than :data:`MAX_NSEC3_HASHES` NSEC3 hashes."""


class _Hasher:
    """NSEC3 lookups for one set of records, hashing each name once per parameter set, at most
    :data:`MAX_NSEC3_HASHES` times."""

    def __init__(self, records: Sequence[Nsec3]) -> None:
        self.records = records
        self._hashes: dict[tuple[dns.name.Name, int, bytes], bytes] = {}

    def _hash(self, name: dns.name.Name, n3: Nsec3) -> bytes:
        key = (name, n3.iterations, n3.salt)
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= MAX_NSEC3_HASHES:
                raise TooManyHashes
            h = self._hashes[key] = nsec3_hash(name, n3)
        return h

    def matching(self, name: dns.name.Name) -> Nsec3 | None:
        return next((n for n in self.records if n.owner_hash == self._hash(name, n)), None)

    def covering(self, name: dns.name.Name) -> Nsec3 | None:
        return next(
            (n for n in self.records if covers(n.owner_hash, n.next_hash, self._hash(name, n))),
            None,
        )

    def closest_encloser(
        self, name: dns.name.Name, zone: dns.name.Name
    ) -> tuple[dns.name.Name, Nsec3] | None:
        """RFC 5155 §8.3: the nearest ancestor with a matching NSEC3 whose next closer name is
        covered; returns (closest encloser, the NSEC3 covering the next closer name)."""
        for ce in _ancestors(name, zone):
            match = self.matching(ce)
            if match is None:
                continue
            if _is_cut(match.types):
                return None  # from above a zone cut: proves nothing below it
            cover = self.covering(_child_toward(ce, name))
            return (ce, cover) if cover is not None else None
        return None


def too_costly(records: Sequence[Nsec3]) -> bool:
    """Any record over the limit (as unbound): nothing is hashed with its parameters then."""
    return any(n.iterations > NSEC3_MAX_ITERATIONS for n in records)


def ds_denial(
    name: dns.name.Name, zone: dns.name.Name, nsecs: Sequence[Nsec], nsec3s: Sequence[Nsec3]
) -> Proof:
    """What the (validated) NSEC/NSEC3 records of ``zone`` say about a DS at ``name``."""
    for n in nsecs:
        if n.owner == name:
            return _at_name(n.types, name, zone, "NSEC")
    for n in nsecs:
        if nsec_covers(n, name, zone) and n.next.is_subdomain(name) and n.next != name:
            return Proof(Denial.NODATA, "NSEC (empty non-terminal)")
    for n in nsecs:
        if nsec_covers(n, name, zone):
            return Proof(Denial.NXDOMAIN, "NSEC")
    if not nsec3s:
        return Proof(Denial.UNPROVEN, "no NSEC or NSEC3 record about it")
    if too_costly(nsec3s):
        return Proof(Denial.INSECURE, COSTLY)
    hasher = _Hasher(nsec3s)
    try:
        match = hasher.matching(name)
        if match is not None:
            return _at_name(match.types, name, zone, "NSEC3")
        enclosure = hasher.closest_encloser(name, zone)
    except TooManyHashes:
        return Proof(Denial.UNPROVEN, TOO_MANY_HASHES)
    if enclosure is None:
        return Proof(Denial.UNPROVEN, "no NSEC3 closest encloser proof")
    if enclosure[1].opt_out:
        return Proof(Denial.INSECURE, "NSEC3 opt-out")
    return Proof(Denial.NXDOMAIN, "NSEC3")


def _at_name(types: frozenset[int], name: dns.name.Name, zone: dns.name.Name, how: str) -> Proof:
    if _DS in types:
        return Proof(Denial.UNPROVEN, f"the {how} record at {name} lists a DS")
    if _SOA in types and name != zone:
        return Proof(Denial.UNPROVEN, f"the {how} record at {name} is the child zone's")
    if _NS in types:
        return Proof(Denial.INSECURE, how)
    return Proof(Denial.NODATA, how)


def negative_proof(
    name: dns.name.Name,
    rdtype: int,
    nxdomain: bool,
    zone: dns.name.Name,
    nsecs: Sequence[Nsec],
    nsec3s: Sequence[Nsec3],
) -> Proof:
    """Whether the records prove that ``name`` does not exist (``nxdomain``) or has no
    ``rdtype`` records: NXDOMAIN or NODATA when proven, INSECURE in an NSEC3 opt-out span,
    UNPROVEN otherwise."""
    if nsecs:
        proof = _nsec_negative(name, rdtype, nxdomain, zone, nsecs)
        if proof.proven or not nsec3s:
            return proof
    if not nsec3s:
        return Proof(Denial.UNPROVEN, "no NSEC or NSEC3 record in the answer")
    if too_costly(nsec3s):
        return Proof(Denial.INSECURE, COSTLY)
    try:
        return _nsec3_negative(name, rdtype, nxdomain, zone, _Hasher(nsec3s))
    except TooManyHashes:
        return Proof(Denial.UNPROVEN, TOO_MANY_HASHES)


def _parent_side(types: frozenset[int], rdtype: int) -> bool:
    """A parent's record at a delegation (NS without SOA) says nothing about the child's types,
    only about DS (RFC 4035 §5.4, RFC 6840 §4.4): replayed as a NODATA proof for the child's
    MX it would deny the child's mail routing."""
    return _NS in types and _SOA not in types and rdtype != _DS


def _lacks(types: frozenset[int], rdtype: int) -> bool:
    return rdtype not in types and _CNAME not in types


def _nsec_negative(
    name: dns.name.Name, rdtype: int, nxdomain: bool, zone: dns.name.Name, nsecs: Sequence[Nsec]
) -> Proof:
    if not nxdomain:
        for n in nsecs:
            if n.owner == name:
                if _parent_side(n.types, rdtype):
                    return Proof(Denial.UNPROVEN, f"the NSEC record at {name} is its parent's")
                ok = _lacks(n.types, rdtype)
                return Proof(Denial.NODATA if ok else Denial.UNPROVEN, "NSEC")
    cover = next((n for n in nsecs if nsec_covers(n, name, zone)), None)
    if cover is None:
        return Proof(Denial.UNPROVEN, f"no NSEC record covers {name}")
    if cover.next.is_subdomain(name):  # an empty non-terminal: the name exists
        kind = Denial.UNPROVEN if nxdomain else Denial.NODATA
        return Proof(kind, "NSEC (empty non-terminal)")
    encloser = _nsec_encloser(name, cover)
    wild = dns.name.Name((b"*", *encloser.labels))
    if nxdomain:
        ok = any(nsec_covers(n, wild, zone) for n in nsecs)
        return Proof(Denial.NXDOMAIN if ok else Denial.UNPROVEN, "NSEC")
    ok = any(n.owner == wild and _lacks(n.types, rdtype) for n in nsecs)
    return Proof(Denial.NODATA if ok else Denial.UNPROVEN, "NSEC (wildcard)")


def _nsec_encloser(name: dns.name.Name, cover: Nsec) -> dns.name.Name:
    """RFC 4035 §5.4: the longest ancestor of ``name`` shared with the covering NSEC's ends."""
    common = max(
        name.fullcompare(cover.owner)[2],
        name.fullcompare(cover.next)[2],
    )
    return name.split(common)[1]


def _nsec3_negative(
    name: dns.name.Name, rdtype: int, nxdomain: bool, zone: dns.name.Name, hasher: _Hasher
) -> Proof:
    match = hasher.matching(name)
    if match is not None:  # the name exists
        if _parent_side(match.types, rdtype):
            return Proof(Denial.UNPROVEN, f"the NSEC3 record of {name} is its parent's")
        ok = not nxdomain and _lacks(match.types, rdtype)
        return Proof(Denial.NODATA if ok else Denial.UNPROVEN, "NSEC3")
    enclosure = hasher.closest_encloser(name, zone)
    if enclosure is None:
        return Proof(Denial.UNPROVEN, f"no NSEC3 closest encloser proof for {name}")
    encloser, next_closer = enclosure
    wild = dns.name.Name((b"*", *encloser.labels))
    if nxdomain:  # RFC 5155 §8.4: opt-out does not weaken a name error proof
        if hasher.covering(wild) is None:
            return Proof(Denial.UNPROVEN, f"no NSEC3 record covers {wild}")
        return Proof(Denial.NXDOMAIN, "NSEC3")
    wild_match = hasher.matching(wild)
    if wild_match is not None and _lacks(wild_match.types, rdtype):
        return Proof(Denial.NODATA, "NSEC3 (wildcard)")
    if rdtype == _DS and next_closer.opt_out:
        return Proof(Denial.INSECURE, "NSEC3 opt-out")
    return Proof(Denial.UNPROVEN, f"no NSEC3 record matches {name}")


def wildcard_proof(
    name: dns.name.Name,
    labels: int,
    zone: dns.name.Name,
    nsecs: Sequence[Nsec],
    nsec3s: Sequence[Nsec3],
) -> Denial:
    """An answer expanded from a wildcard (RRSIG ``labels`` fewer than the owner's): NXDOMAIN
    when ``name`` itself is proven absent, INSECURE when only an NSEC3 opt-out span covers it
    (an unsigned delegation could be hiding there: BIND and unbound say insecure) or when the
    NSEC3 records take more than :data:`NSEC3_MAX_ITERATIONS`, else UNPROVEN (RFC 4035 §5.3.4,
    RFC 5155 §8.8)."""
    encloser = name.split(labels + 1)[1]  # the wildcard's parent (labels + the root label)
    if len(encloser) >= len(name):
        return Denial.UNPROVEN
    # Not only the name: the next closer name must not exist, or a name below an existing
    # one (q.e.wild with e.wild present) would pass as an expansion of *.wild.
    next_closer = _child_toward(encloser, name)
    if any(nsec_covers(n, next_closer, zone) for n in nsecs):
        return Denial.NXDOMAIN
    if not nsec3s:
        return Denial.UNPROVEN
    if too_costly(nsec3s):
        return Denial.INSECURE
    try:
        cover = _Hasher(nsec3s).covering(next_closer)
    except TooManyHashes:
        return Denial.UNPROVEN
    if cover is None:
        return Denial.UNPROVEN
    return Denial.INSECURE if cover.opt_out else Denial.NXDOMAIN
