"""NSEC and NSEC3 denial of existence: property tests against zones generated at random.

Each example is a zone (hosts, delegations with and without DS, empty non-terminals) with its
complete NSEC or NSEC3 chain built here from first principles (canonical order, RFC 5155 hashes
computed with hashlib); whatever name is asked about, the proof logic must reach the answer the
zone's contents dictate.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC3
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.dnssec import denial
from exporter.dnssec.denial import Denial, Nsec, Nsec3

ZONE = dns.name.from_text("zone.test.")
A, NS, DS, SOA, TXT = (dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.DS, dns.rdatatype.SOA,
                       dns.rdatatype.TXT)  # fmt: skip
LABELS = st.sampled_from(["a", "b", "c", "mx", "www", "0", "z-z"])
RELATIVE = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
KINDS = st.sampled_from(["host", "cut", "cut-ds"])


def rfc5155_hash(name: dns.name.Name, salt: bytes, iterations: int) -> bytes:
    wire = name.canonicalize().to_wire()
    assert wire is not None
    digest = hashlib.sha1(wire + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return digest


class Zone:
    """A zone's names and types, without names hidden below its delegations."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.types: dict[dns.name.Name, set[int]] = {ZONE: {SOA, NS}}
        kinds = {dns.name.from_text(rel, ZONE): kind for rel, kind in entries.items()}
        self.cuts = {n for n, k in kinds.items() if k != "host"}
        for name, kind in kinds.items():
            if self.occluded(name):
                continue
            self.types[name] = {"host": {A}, "cut": {NS}, "cut-ds": {NS, DS}}[kind]
        self.cuts = {n for n in self.cuts if n in self.types}

    def occluded(self, name: dns.name.Name) -> bool:
        return any(name != c and name.is_subdomain(c) for c in self.cuts)

    def ents(self) -> set[dns.name.Name]:
        out = set()
        for name in self.types:
            cur = name
            while cur != ZONE:
                cur = cur.parent()
                if cur not in self.types:
                    out.add(cur)
        return out

    def nsec_chain(self) -> list[Nsec]:
        names = sorted(self.types)
        chain = []
        for i, name in enumerate(names):
            types = self.types[name] | {dns.rdatatype.NSEC, dns.rdatatype.RRSIG}
            chain.append(Nsec(name, names[(i + 1) % len(names)], frozenset(types)))
        return chain

    def nsec3_chain(self, salt: bytes, iterations: int, opt_out: bool) -> list[Nsec3]:
        unsigned = {n for n in self.cuts if DS not in self.types[n]}
        chained = {n: t for n, t in self.types.items() if not (opt_out and n in unsigned)}
        for name in list(chained):
            cur = name
            while cur != ZONE:
                cur = cur.parent()
                chained.setdefault(cur, set())
        hashed = sorted((rfc5155_hash(n, salt, iterations), n) for n in chained)
        return [
            Nsec3(
                h,
                hashed[(i + 1) % len(hashed)][0],
                frozenset(chained[n]),
                opt_out,
                1,
                iterations,
                salt,
            )
            for i, (h, n) in enumerate(hashed)
        ]

    def ds_truth(self, name: dns.name.Name, opt_out: bool) -> Denial:
        """What the zone's contents say about a DS question at ``name``."""
        unsigned = {n for n in self.cuts if DS not in self.types[n]}
        if self.occluded(name):
            # The parent has nothing to say below its delegations, except that an opt-out span
            # (where an unsigned delegation hides) is insecure all the way down.
            below_unsigned = any(name.is_subdomain(c) for c in unsigned)
            return Denial.INSECURE if opt_out and below_unsigned else Denial.UNPROVEN
        if name in unsigned:
            return Denial.INSECURE
        if name in self.types:
            return Denial.UNPROVEN if DS in self.types[name] else Denial.NODATA
        if name in self.ents():
            if opt_out and not any(n.is_subdomain(name) and n not in unsigned for n in self.types):
                return Denial.INSECURE
            return Denial.NODATA
        return Denial.INSECURE if opt_out else Denial.NXDOMAIN


ZONES = st.dictionaries(RELATIVE, KINDS, max_size=8).map(Zone)


def mixed_case(name: dns.name.Name, flips: list[bool]) -> dns.name.Name:
    text = name.to_text()
    chars = [c.upper() if flips[i % len(flips)] else c for i, c in enumerate(text)]
    return dns.name.from_text("".join(chars))


@given(ZONES, RELATIVE, st.lists(st.booleans(), min_size=1, max_size=4))
def test_nsec_ds_denial(zone: Zone, rel: str, flips: list[bool]) -> None:
    name = dns.name.from_text(rel, ZONE)
    proof = denial.ds_denial(mixed_case(name, flips), ZONE, zone.nsec_chain(), [])
    assert proof.kind == zone.ds_truth(name, opt_out=False), proof


@settings(max_examples=150)
@given(ZONES, RELATIVE, st.binary(max_size=4), st.integers(0, 3), st.booleans())
def test_nsec3_ds_denial(zone: Zone, rel: str, salt: bytes, iterations: int, opt_out: bool) -> None:
    name = dns.name.from_text(rel, ZONE)
    chain = zone.nsec3_chain(salt, iterations, opt_out)
    proof = denial.ds_denial(name, ZONE, [], chain)
    assert proof.kind == zone.ds_truth(name, opt_out), proof


@given(ZONES, RELATIVE, st.booleans())
def test_negative_proofs(zone: Zone, rel: str, use_nsec3: bool) -> None:
    name = dns.name.from_text(rel, ZONE)
    if zone.occluded(name) or name in zone.cuts:
        return
    nsecs = [] if use_nsec3 else zone.nsec_chain()
    nsec3s = zone.nsec3_chain(b"", 0, False) if use_nsec3 else []
    exists = name in zone.types or name in zone.ents()
    if exists:
        assert denial.negative_proof(name, TXT, False, ZONE, nsecs, nsec3s).kind == Denial.NODATA
        has_a = A in zone.types.get(name, set())
        expected = Denial.UNPROVEN if has_a else Denial.NODATA
        assert denial.negative_proof(name, A, False, ZONE, nsecs, nsec3s).kind == expected
        assert not denial.negative_proof(name, A, True, ZONE, nsecs, nsec3s).proven
    else:
        proof = denial.negative_proof(name, A, True, ZONE, nsecs, nsec3s)
        assert proof.kind == Denial.NXDOMAIN
        # A NODATA claim for a name that does not exist is not proven by the same records.
        assert denial.negative_proof(name, A, False, ZONE, nsecs, nsec3s).kind != Denial.NODATA


@given(st.binary(min_size=1, max_size=63).filter(lambda b: b"." not in b), st.binary(max_size=8),
       st.integers(0, 20))  # fmt: skip
def test_nsec3_hash_is_rfc5155(label: bytes, salt: bytes, iterations: int) -> None:
    name = dns.name.Name((label, *ZONE.labels))
    n3 = Nsec3(b"", b"", frozenset(), False, 1, iterations, salt)
    assert denial.nsec3_hash(name, n3) == rfc5155_hash(name, salt, iterations)
    owner = dns.name.Name((base64.b32hexencode(rfc5155_hash(name, salt, iterations)), *ZONE.labels))
    assert denial.owner_hash(owner) == rfc5155_hash(name, salt, iterations)


@given(st.sets(st.binary(min_size=20, max_size=20), min_size=1, max_size=8),
       st.binary(min_size=20, max_size=20))  # fmt: skip
def test_a_complete_ring_covers_every_other_hash_once(ring: set[bytes], value: bytes) -> None:
    hashes = sorted(ring)
    covering = [
        i for i, h in enumerate(hashes) if denial.covers(h, hashes[(i + 1) % len(hashes)], value)
    ]
    assert len(covering) == (0 if value in ring else 1)


def test_owner_hash_rejects_what_is_not_a_hash() -> None:
    assert denial.owner_hash(dns.name.from_text("not-base32!.zone.test.")) is None
    assert denial.owner_hash(dns.name.from_text("abc.zone.test.")) is None  # too short
    assert denial.owner_hash(dns.name.root) is None


def test_costly_nsec3_is_insecure() -> None:
    zone = Zone({"a": "host", "*.w": "host"})
    chain = zone.nsec3_chain(b"", denial.NSEC3_MAX_ITERATIONS + 1, False)
    name = dns.name.from_text("nx", ZONE)
    assert denial.ds_denial(name, ZONE, [], chain).kind == Denial.INSECURE
    assert denial.negative_proof(name, A, True, ZONE, [], chain).kind == Denial.INSECURE
    # A wildcard expansion too (RFC 9276 §3.2), and one costly record among cheap ones is
    # enough (as unbound): nothing is hashed with its parameters.
    wild = dns.name.from_text("q.w", ZONE)
    assert denial.wildcard_proof(wild, 3, ZONE, [], chain) == Denial.INSECURE
    cheap = zone.nsec3_chain(b"", denial.NSEC3_MAX_ITERATIONS, False)
    assert denial.wildcard_proof(wild, 3, ZONE, [], cheap) == Denial.NXDOMAIN
    assert denial.wildcard_proof(wild, 3, ZONE, [], [*cheap, chain[0]]) == Denial.INSECURE
    assert denial.negative_proof(name, A, True, ZONE, [], [*cheap, chain[0]]).kind == (
        Denial.INSECURE
    )


def test_wildcards() -> None:
    zone = Zone({"*.w": "host", "x.w": "host"})
    name = dns.name.from_text("q.w", ZONE)
    labels = 3  # *.w.zone.test -> RRSIG labels 3 (w, zone, test)
    assert denial.wildcard_proof(name, labels, ZONE, zone.nsec_chain(), []) == Denial.NXDOMAIN
    assert denial.wildcard_proof(name, labels, ZONE, [], []) == Denial.UNPROVEN
    # The name itself exists: nothing covers it, so the "expansion" is not proven.
    real = dns.name.from_text("x.w", ZONE)
    assert denial.wildcard_proof(real, labels, ZONE, zone.nsec_chain(), []) == Denial.UNPROVEN
    # Below an existing name (x.w), q.x.w is no expansion of *.w: the NSEC covering q.x.w does
    # not prove the next closer name x.w absent (with NSEC3 it never did).
    below = dns.name.from_text("q.x.w", ZONE)
    assert denial.wildcard_proof(below, labels, ZONE, zone.nsec_chain(), []) == Denial.UNPROVEN
    below_chain = zone.nsec3_chain(b"", 0, False)
    assert denial.wildcard_proof(below, labels, ZONE, [], below_chain) == Denial.UNPROVEN
    for opt_out, expected in ((False, Denial.NXDOMAIN), (True, Denial.INSECURE)):
        chain = zone.nsec3_chain(b"\x01", 1, opt_out)
        assert denial.wildcard_proof(name, labels, ZONE, [], chain) == expected
    # A NODATA answer from the wildcard: the name is covered and the wildcard lacks the type.
    proof = denial.negative_proof(name, TXT, False, ZONE, zone.nsec_chain(), [])
    assert proof.kind == Denial.NODATA
    proof3 = denial.negative_proof(name, TXT, False, ZONE, [], zone.nsec3_chain(b"", 0, False))
    assert proof3.kind == Denial.NODATA


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 200), st.binary(max_size=4),
       st.binary(min_size=1, max_size=32), st.booleans())  # fmt: skip
def test_nsec3_records_with_unknown_flags_or_hash_are_ignored(
    flags: int, algorithm: int, iterations: int, salt: bytes, nxt: bytes, hashed_owner: bool
) -> None:
    # RFC 5155 §8.1-8.2: only SHA-1 (1), only the opt-out flag, a hashed owner, a next hash of
    # the same length; anything else is left out, never read as a proof.
    label = base64.b32hexencode(b"\x01" * 20) if hashed_owner else b"www"
    owner = dns.name.Name((label, *ZONE.labels))
    rd = dns.rdtypes.ANY.NSEC3.NSEC3(
        dns.rdataclass.IN, dns.rdatatype.NSEC3, algorithm, flags, iterations, salt, nxt,
        dns.rdtypes.ANY.NSEC3.Bitmap.from_rdtypes([A]).windows,
    )  # fmt: skip
    parsed = denial.nsec3s_of([dns.rrset.from_rdata(owner, 300, rd)])
    usable = flags in (0, 1) and algorithm == 1 and hashed_owner and len(nxt) == 20
    assert len(parsed) == (1 if usable else 0)
    assert (denial.nsec3_problem(owner, rd) is None) == usable
    if usable:
        assert parsed[0].opt_out == bool(flags) and parsed[0].types == frozenset({A})


def test_nsec3_records_of_many_parameter_sets_cost_a_bounded_number_of_hashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CVE-2023-50868: 300 signed NSEC3 records, each of its own salt, at the 150 iterations
    # allowed, and a name 100 labels deep: every ancestor was hashed with every salt (30,300
    # hashes, 5 s of CPU for one answer). Now at most MAX_NSEC3_HASHES, then "unproven".
    real = dns.dnssec.nsec3_hash
    calls = [0]

    def counting(*args: Any, **kw: Any) -> str:
        calls[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(dns.dnssec, "nsec3_hash", counting)
    records = [
        Nsec3(i.to_bytes(2, "big") + b"\0" * 18, i.to_bytes(2, "big") + b"\1" * 18, frozenset(),
              False, 1, 150, i.to_bytes(2, "big"))
        for i in range(300)
    ]  # fmt: skip
    name = dns.name.from_text(".".join(["a"] * 100), ZONE)
    for proof in (
        denial.negative_proof(name, A, True, ZONE, [], records),
        denial.ds_denial(name, ZONE, [], records),
    ):
        assert proof == denial.Proof(Denial.UNPROVEN, denial.TOO_MANY_HASHES)
    assert denial.wildcard_proof(name, 2, ZONE, [], records) == Denial.UNPROVEN
    assert calls[0] <= 3 * denial.MAX_NSEC3_HASHES


def test_the_deepest_name_with_one_parameter_set_is_still_proven() -> None:
    zone = Zone({"a": "host"})
    chain = zone.nsec3_chain(b"\xaa", 10, False)
    name = dns.name.from_text(".".join(["x"] * 120), ZONE)  # 251 octets
    assert denial.negative_proof(name, A, True, ZONE, [], chain).kind == Denial.NXDOMAIN
    assert denial.ds_denial(name, ZONE, [], chain).kind == Denial.NXDOMAIN


@given(ZONES, st.booleans(), st.booleans())
def test_a_parents_record_at_a_delegation_proves_only_the_ds(
    zone: Zone, use_nsec3: bool, opt_out: bool
) -> None:
    # The parent's NSEC/NSEC3 at a delegation lists NS (and DS) only: it says nothing about
    # the child's MX or A, whatever the child holds (RFC 4035 §5.4, RFC 6840 §4.4).
    nsecs = [] if use_nsec3 else zone.nsec_chain()
    nsec3s = zone.nsec3_chain(b"", 0, opt_out) if use_nsec3 else []
    for cut in zone.cuts:
        for rdtype in (A, dns.rdatatype.MX, TXT):
            assert denial.negative_proof(cut, rdtype, False, ZONE, nsecs, nsec3s).kind != (
                Denial.NODATA
            )
        ds = denial.negative_proof(cut, DS, False, ZONE, nsecs, nsec3s)
        chained = not (use_nsec3 and opt_out and DS not in zone.types[cut])
        if DS in zone.types[cut]:
            assert ds.kind == Denial.UNPROVEN
        elif chained:
            assert ds.kind == Denial.NODATA
