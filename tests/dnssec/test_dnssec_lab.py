"""The validator against a real signed hierarchy (knot), directly and through unbound, compared
with two independent validators: delv (BIND) and unbound's own validation.

The lab (tests/dnssec_lab.py) serves knot-signed zones (NSEC, NSEC3, NSEC3 opt-out), zones
pre-signed with dnspython with one defect each, and unsigned zones below NSEC, NSEC3 and opt-out
parents. Every zone answers the same questions (:data:`dnssec_lab.QUESTIONS`): an apex MX, an A,
an AAAA, a name error, a no-data answer, a wildcard, an in-zone CNAME, an empty non-terminal.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from dnssec_lab import QUESTIONS, DnssecLab, Unbound, lab_zones, resolver_status
from dnsserver import DnsServer

from exporter.dnssec import (
    DnssecUnavailable,
    Status,
    Validator,
    load_trust_anchors,
)
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsraw import RawDns

TLDS = {".", "test.", "nsec3.", "optout."}
CROSS_ZONE = [
    ("ins.secure.test.", "A"),  # CNAME into an unsigned zone
    ("bog.secure.test.", "A"),  # CNAME into a bogus zone
    ("sec3.secure.test.", "A"),  # CNAME into a secure zone under an NSEC3 TLD
]
ALL = [
    (f"{rel}.{zone.name}" if rel else zone.name, rdtype)
    for zone in lab_zones()
    if zone.name not in TLDS
    for rel, rdtype in QUESTIONS
] + CROSS_ZONE

UNBOUND_DIFFERS = {("nx.p3oo.test.", "A")}
"""unbound calls a name error inside an NSEC3 opt-out span insecure; delv, and RFC 5155 §8.4
(which asks for the closest encloser proof and the wildcard proof, nothing about opt-out), call
it secure, as this validator does."""
UNBOUND_USES_SHA1 = "sha1ds.test."
"""unbound uses a SHA-1 DS beside a SHA-256 DS of the same key that matches nothing (secure);
RFC 4509 §3 says to ignore SHA-1 there, as delv and this validator do (bogus)."""


@pytest.fixture(scope="module")
def lab(dnssec_lab: DnssecLab) -> DnssecLab:
    return dnssec_lab


@pytest.fixture(scope="module")
def iterator(lab: DnssecLab) -> Iterator[Unbound]:
    with lab.unbound(validating=False) as resolver:
        yield resolver


@pytest.fixture(scope="module")
def validating(lab: DnssecLab) -> Iterator[Unbound]:
    with lab.unbound(validating=True) as resolver:
        yield resolver


def validator(lab: DnssecLab, server: str, **kw: object) -> Validator:
    raw = RawDns([server], attempt_timeout=2.0, lifetime=5.0)
    return Validator(raw.query, load_trust_anchors(str(lab.anchor_file)), **kw)  # type: ignore[arg-type]


async def verdicts(v: Validator, questions: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    async def one(q: tuple[str, str]) -> str:
        return (await v.validate(*q)).status.value

    results = await asyncio.gather(*(one(q) for q in questions))
    return dict(zip(questions, results, strict=True))


def delv_verdicts(lab: DnssecLab, server: str) -> dict[tuple[str, str], str]:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda q: lab.delv(q[0], q[1], server), ALL))
    return dict(zip(ALL, results, strict=True))


DELV_DIFFERS = "p3flags.test."
"""delv (BIND 9.18) uses NSEC3 records with an unknown flag; RFC 5155 §8.2 says to ignore them,
as unbound and this validator do: their proofs prove nothing (bogus)."""


def differences(mine: dict[tuple[str, str], str], theirs: dict[tuple[str, str], str]) -> list[str]:
    return [f"{q}: mine {mine[q]}, theirs {theirs[q]}" for q in ALL if mine[q] != theirs[q]]


def delv_differences(
    mine: dict[tuple[str, str], str], theirs: dict[tuple[str, str], str]
) -> list[str]:
    """:func:`differences` but for :data:`DELV_DIFFERS`, where the documented disagreement must
    still be what it says."""
    out = []
    for q in ALL:
        if q[0].endswith(DELV_DIFFERS) and mine[q] != theirs[q]:
            if mine[q] != "bogus":
                out.append(f"{q}: mine {mine[q]}, delv {theirs[q]} (expected bogus)")
        elif mine[q] != theirs[q]:
            out.append(f"{q}: mine {mine[q]}, theirs {theirs[q]}")
    return out


async def test_every_zone_matches_delv_directly(lab: DnssecLab) -> None:
    mine = await verdicts(validator(lab, lab.address), ALL)
    assert delv_differences(mine, delv_verdicts(lab, lab.address)) == []
    # The lab exercises all three outcomes, plenty of each.
    assert min(Counter(mine.values())[s] for s in ("secure", "insecure", "bogus")) >= 30


@pytest.mark.parametrize("mode", ["iterator", "validating"])
async def test_every_zone_matches_delv_through_unbound(
    lab: DnssecLab, mode: str, request: pytest.FixtureRequest
) -> None:
    resolver: Unbound = request.getfixturevalue(mode)
    # The same path for both: each asks the resolver (with CD) and validates what comes back.
    mine = await verdicts(validator(lab, resolver.address), ALL)
    assert delv_differences(mine, delv_verdicts(lab, resolver.address)) == []


async def test_matches_unbounds_own_validation(lab: DnssecLab, validating: Unbound) -> None:
    mine = await verdicts(validator(lab, validating.address), ALL)
    theirs = {q: resolver_status(validating.address, *q) for q in ALL}
    sha1 = [q for q in ALL if q[0].endswith(UNBOUND_USES_SHA1)]
    diffs = [
        d
        for d in differences(mine, theirs)
        if not any(str(q) in d for q in [*UNBOUND_DIFFERS, *sha1])
    ]
    assert diffs == []
    for q in UNBOUND_DIFFERS:  # the documented disagreements are still what they say
        assert (mine[q], theirs[q]) == ("secure", "insecure")
    assert {(mine[q], theirs[q]) for q in sha1} == {("bogus", "secure")}


COSTLY = "p3costly.test. uses NSEC3 with more than 150 iterations"
EXPECTED = [
    # (name, type, status, words in the reason)
    ("www.secure.test.", "A", "secure", ""),
    ("x.wild.secure.test.", "A", "secure", ""),
    ("www.p3.test.", "A", "secure", ""),
    ("www.secure.optout.", "A", "secure", ""),  # RSA/SHA-256 under an opt-out TLD
    ("www.secure.nsec3.", "A", "secure", ""),  # Ed25519
    ("www.rsa.test.", "A", "secure", ""),  # RSA/SHA-512, NSEC3
    ("www.p384.test.", "A", "secure", ""),  # ECDSA P-384, SHA-384 DS beside SHA-256
    ("www.privatealg.test.", "A", "insecure", "use only unsupported algorithms: 253 (PRIVATEDNS)"),
    ("www.dsa.test.", "A", "insecure", "use only unsupported algorithms: 3 (DSA)"),
    ("nx.dsa.test.", "A", "insecure", "use only unsupported algorithms: 3 (DSA)"),
    ("www.md5.test.", "A", "insecure", "use only unsupported algorithms: 1 (RSAMD5)"),
    ("www.gostds.test.", "A", "insecure", "use only unsupported digest types: 3 (GOST)"),
    ("www.dsansec3.test.", "A", "insecure", "algorithms: 6 (DSANSEC3SHA1), 253 (PRIVATEDNS)"),
    ("www.unsigned.test.", "A", "insecure", "test. proves unsigned.test. has no DS (NSEC)"),
    ("www.unsigned.p3.test.", "A", "insecure", "has no DS (NSEC3)"),
    ("www.unsigned.nsec3.", "A", "insecure", "has no DS (NSEC3)"),
    ("www.unsigned.p3oo.test.", "A", "insecure", "NSEC3 opt-out"),
    ("nx.p3flags.test.", "A", "bogus", "NSEC3 ignored: unknown flags 0x80, RFC 5155 §8.2)"),
    ("www.unsigned.p3flags.test.", "A", "bogus", "no valid proof that unsigned.p3flags.test."),
    ("www.unsigned.optout.", "A", "insecure", "NSEC3 opt-out"),
    ("x.wild.p3oo.test.", "A", "insecure", "wildcard inside an NSEC3 opt-out span"),
    ("www.p3costly.test.", "A", "secure", ""),
    ("x.wild.p3costly.test.", "A", "insecure", "more than 150 iterations"),
    ("nx.p3costly.test.", "A", "insecure",
     f"{COSTLY}: the proof that nx.p3costly.test. A does not exist is not checked (RFC 9276"),
    ("www.unsigned.p3costly.test.", "A", "insecure",
     f"{COSTLY}: whether unsigned.p3costly.test. has DS records is not checked (RFC 9276"),
    ("ins.secure.test.", "A", "insecure", "unsigned.test."),
    ("www.expired.test.", "A", "bogus",
     "DNSKEY records of expired.test. do not validate with a trusted key (key tags "),
    ("www.stale.test.", "A", "bogus", "www.stale.test. A: signature expired on"),
    ("mx.stale.test.", "AAAA", "secure", ""),
    ("www.future.test.", "A", "bogus", "signature not valid before"),
    ("www.nosig.test.", "A", "bogus", "missing RRSIG: www.nosig.test. A is not signed"),
    ("www.badsig.test.", "A", "bogus", "does not verify"),
    ("www.badkeysig.test.", "A", "bogus",
     "DNSKEY records of badkeysig.test. do not validate with a trusted key"),
    ("www.badds.test.", "A", "bogus", "no DS record of badds.test. matches any of its DNSKEYs"),
    ("www.sha1ds.test.", "A", "bogus", "its SHA-1 DS records are ignored beside SHA-256 ones"),
    ("www.hole.pnsec.test.", "A", "bogus", "no valid proof that hole.pnsec.test. has no DS"),
    ("www.unsigned.p3hole.test.", "A", "bogus", "proves unsigned.p3hole.test. does not exist"),
    ("bog.secure.test.", "A", "bogus", "expired"),
    ("alias.stale.test.", "A", "bogus", "www.stale.test. A: signature expired"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "rdtype", "status", "words"), EXPECTED)
async def test_reasons(lab: DnssecLab, name: str, rdtype: str, status: str, words: str) -> None:
    verdict = await validator(lab, lab.address).validate(name, rdtype)
    assert verdict.status.value == status
    assert words in verdict.reason
    assert (verdict.expiry is not None) == (status == "secure")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [("www.expired.test", r"DNSKEY records of expired\.test\. do not validate with a trusted key "
                          r"\(key tags \d+\): signature expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC "
                          r"\(key tag \d+\)"),
     ("www.badkeysig.test", r"DNSKEY records of badkeysig\.test\. do not validate with a trusted "
                            r"key \(key tags \d+\): signature by key tag \d+ does not verify "
                            r"\(verify failure\)")],
)  # fmt: skip
async def test_reasons_read_as_one_sentence(lab: DnssecLab, name: str, pattern: str) -> None:
    # The RRset was named twice ("... of expired.test. are not signed by a trusted key (N):
    # expired.test. DNSKEY: signature expired ...") and "not signed" was wrong: it is signed.
    verdict = await validator(lab, lab.address).validate(name, "A")
    assert re.fullmatch(pattern, verdict.reason), verdict.reason


async def test_answers_and_negative_kinds(lab: DnssecLab) -> None:
    v = validator(lab, lab.address)
    ok = await v.validate("alias.secure.test", "A")
    assert ok.answer == "ok"
    assert [dns.rdatatype.to_text(r.rdtype) for r in ok.rrsets] == ["CNAME", "A"]
    assert (await v.validate("nx.secure.test", "A")).answer == "nxdomain"
    nodata = await v.validate("www.secure.nsec3", "TXT")
    assert (nodata.answer, nodata.status) == ("nodata", Status.SECURE)


async def test_expiry_is_the_earliest_signature_of_the_zone(lab: DnssecLab) -> None:
    zone = next(z for z in lab.zones if z.name == "pnsec.test.")
    assert zone.spec is not None
    verdict = await validator(lab, lab.address).validate("www.pnsec.test", "A")
    assert verdict.status == Status.SECURE
    assert verdict.expiry == int(zone.spec.expiration)
    assert verdict.zone == "pnsec.test."


class Counting:
    """A query function that counts the questions per (name, type)."""

    def __init__(self, server: str) -> None:
        self.raw = RawDns([server])
        self.asked: Counter[tuple[str, str]] = Counter()

    async def __call__(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        self.asked[(name.to_text(), dns.rdatatype.to_text(rdtype))] += 1
        return await self.raw.query(name, rdtype)


async def test_parent_zones_are_validated_once_across_runs(lab: DnssecLab) -> None:
    counting = Counting(lab.address)
    offset = [0.0]
    v = Validator(
        counting, load_trust_anchors(str(lab.anchor_file)), clock=lambda: time.time() + offset[0]
    )
    children = ["secure.test", "pnsec.test", "p3.test", "stale.test", "unsigned.test"]
    # One "run": all children at once.
    await asyncio.gather(*(v.validate(f"www.{c}", "A") for c in children))
    assert counting.asked[("test.", "DS")] == 1
    assert counting.asked[("test.", "DNSKEY")] == 1
    assert counting.asked[(".", "DNSKEY")] == 1
    # A later run within the TTL (300 s) asks only the answers again.
    before = sum(counting.asked.values())
    await asyncio.gather(*(v.validate(f"mx.{c}", "AAAA") for c in children))
    assert sum(counting.asked.values()) - before == len(children)
    # Past the TTL the chain is worked out again.
    offset[0] = 400.0
    await v.validate("www.secure.test", "A")
    assert counting.asked[("test.", "DS")] == 2
    await v.aclose()


async def test_built_in_anchors_do_not_trust_the_lab_root(lab: DnssecLab) -> None:
    raw = RawDns([lab.address])
    verdict = await Validator(raw.query, load_trust_anchors(None)).validate("www.secure.test", "A")
    assert verdict.status == Status.BOGUS
    assert "no root DNSKEY matches the trust anchors built-in IANA root anchors" in verdict.reason
    assert "20326" in verdict.reason


async def test_resolver_that_strips_signatures_is_could_not_tell(lab: DnssecLab) -> None:
    root_keys = await RawDns([lab.address]).query(dns.name.root, dns.rdatatype.DNSKEY)
    with DnsServer() as server:  # holds the root DNSKEYs without their RRSIGs
        for rrset in root_keys.answer:
            if rrset.rdtype == dns.rdatatype.DNSKEY:
                for rd in rrset:
                    server.add(".", "DNSKEY", rd.to_text())
        v = Validator(RawDns([server.address]).query, load_trust_anchors(str(lab.anchor_file)))
        with pytest.raises(DnssecUnavailable, match="strip DNSSEC signatures") as info:
            await v.validate("www.secure.test", "A")
        assert "global.dnssec: false" in str(info.value)
        server.records.clear()
        with pytest.raises(DnssecUnavailable, match="no DNSKEY records for the root zone"):
            await v.validate("www.secure.test", "A")


async def test_unreachable_nameserver_is_could_not_tell(
    lab: DnssecLab, dns_server: DnsServer
) -> None:
    dns_server.timeout.add("")
    raw = RawDns([dns_server.address], attempt_timeout=0.2, lifetime=0.5)
    v = Validator(raw.query, load_trust_anchors(str(lab.anchor_file)))
    with pytest.raises(DnsTempError, match="timeout"):
        await v.validate("www.secure.test", "A")


async def test_cname_loop_is_could_not_tell(lab: DnssecLab) -> None:
    with pytest.raises(DnsTempError, match="more than 12 CNAMEs"):
        await validator(lab, lab.address).validate("loop.secure.test", "A")
