"""The chain of trust, walked by the exporter itself: DS -> DNSKEY -> RRSIG down each zone cut.

:class:`Validator` answers "is this answer secure, insecure or bogus, and why" for any name and
type, from the trust anchors, through any resolver: it asks with DO and CD
(:mod:`exporter.net.dnsraw`), so a non-validating resolver passes the signatures along and a
validating one returns even the data it would refuse, and it never looks at the AD bit.

How a verdict is reached (RFC 4033-4035, RFC 5155):

* the root's DNSKEY RRset must contain a key that matches an anchor and be signed by it;
* a zone's state is worked out top-down, one label at a time, from its parent's: the parent
  either has a signed DS RRset for the name (then one DNSKEY of the child must match a DS and
  sign the child's DNSKEY RRset: a secure zone), or proves with NSEC/NSEC3 that there is a
  delegation without DS (insecure, also an NSEC3 opt-out span) or no delegation at all (same
  zone as the parent). Anything else is bogus, with the reason;
* an answer is judged by the zone that signed it (or, unsigned, by the zone its owner name is
  in: an unsigned answer in a secure zone is bogus, "missing RRSIG"); CNAME chains are judged
  link by link; NXDOMAIN and NODATA need a validated NSEC/NSEC3 proof; a wildcard answer needs
  the proof that the name itself does not exist.

Zone states are kept in a :class:`~exporter.dnssec.zonecache.ZoneCache` for as long as the records
behind them may be (TTL, signature expiration, :attr:`Validator.max_ttl`), across the runs of a
config: make one Validator per config and :meth:`Validator.aclose` it when the config goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, cast

import dns.dnssec
import dns.dnssecalgs
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.DNAME
import dns.rdtypes.ANY.NSEC3
import dns.rrset
from dns.dnssectypes import Algorithm, DSDigest

from exporter.dnssec import denial
from exporter.dnssec.anchors import DNSKEY, DS, TrustAnchors, ds_matches
from exporter.dnssec.model import (
    AnswerKind,
    DnssecUnavailable,
    Status,
    Verdict,
    ZoneState,
    worst,
)
from exporter.dnssec.signatures import SigCheck, check_rrset, describe, rrsigs_of
from exporter.dnssec.zonecache import ZoneCache
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsraw import RawQuery

MAX_TTL = 3600.0
"""The longest a zone's state is kept, whatever its TTLs say."""
BOGUS_TTL = 60.0
"""How long a bogus zone is kept: enough for a burst of runs, short enough to see a fix."""
MAX_CHAIN = 12
"""CNAME/DNAME links followed in one answer."""

MAX_DENIAL_RRSETS = 16
"""NSEC/NSEC3 RRsets of one zone checked in one response at most (a proof needs 3 or fewer):
each costs signature verifications, and a flood of them was all checked."""

PROHIBITED = frozenset({Algorithm.RSAMD5, Algorithm.DSA, Algorithm.DSANSEC3SHA1})
"""Key algorithms validators MUST NOT validate (RFC 8624 §3.1; dnspython's default policy)."""

Key = tuple[dns.name.Name, int]
NSEC3 = dns.rdtypes.ANY.NSEC3.NSEC3


class Closable(Protocol):
    async def aclose(self) -> None: ...


@dataclass
class _Part:
    """The judgment of one link of an answer."""

    status: Status
    reason: str
    zone: dns.name.Name
    expiry: float | None = None


def _min(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class _Message:
    """A response's RRsets by (owner, type) and their signatures by (owner, covered type)."""

    def __init__(self, section: list[dns.rrset.RRset]) -> None:
        self.rrsets: dict[Key, dns.rrset.RRset] = {}
        self.sigs: dict[Key, dns.rrset.RRset] = {}
        for rrset in section:
            if rrset.rdclass != dns.rdataclass.IN:
                continue
            if rrset.rdtype == dns.rdatatype.RRSIG:
                self.sigs[(rrset.name, rrset.covers)] = rrset
            else:
                self.rrsets[(rrset.name, rrset.rdtype)] = rrset

    def get(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        rrset = self.rrsets.get((name, rdtype))
        return rrset if rrset is not None and len(rrset) else None

    def sig(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        return self.sigs.get((name, rdtype))

    def of_type(self, rdtype: int) -> list[dns.rrset.RRset]:
        return [r for (_, t), r in self.rrsets.items() if t == rdtype]


def supported(ds: DS) -> bool:
    """A DS this validator can use: a digest and a key algorithm it implements and allows.

    RSA/MD5, DSA and DSA-NSEC3-SHA1 are implemented by dnspython but prohibited (RFC 8624 §3.1,
    dnspython's default policy): a zone whose DS records all use them is insecure, as one of an
    unknown algorithm is (RFC 4035 §5.2, RFC 6840 §5.2), never bogus."""
    return digest_supported(ds.digest_type) and algorithm_supported(ds.algorithm)


def digest_supported(digest_type: int) -> bool:
    policy = dns.dnssec.default_policy
    return digest_type in (1, 2, 4) and policy.ok_to_validate_ds(DSDigest.make(digest_type))


def algorithm_supported(algorithm: int) -> bool:
    try:
        dns.dnssecalgs.get_algorithm_cls(algorithm)
    except dns.exception.UnsupportedAlgorithm:
        return False
    return algorithm not in PROHIBITED


def _unsupported(name: dns.name.Name, ds_set: list[DS]) -> str:
    """Why none of a zone's DS records can be used: their key algorithms, their digest types."""
    algorithms = [
        f"{int(a)} ({dns.dnssec.algorithm_to_text(a)})"
        for a in sorted({ds.algorithm for ds in ds_set if not algorithm_supported(ds.algorithm)})
    ]
    digests = [
        f"{d} ({DSDigest.make(d).name})"
        for d in sorted({ds.digest_type for ds in ds_set if algorithm_supported(ds.algorithm)})
    ]
    if not digests:
        return f"the DS records of {name} use only unsupported algorithms: {', '.join(algorithms)}"
    if not algorithms:
        return f"the DS records of {name} use only unsupported digest types: {', '.join(digests)}"
    listed = [f"algorithm {a}" for a in algorithms] + [f"digest type {d}" for d in digests]
    return (
        f"the DS records of {name} use only unsupported algorithms or digest types: "
        + ", ".join(listed)
    )


class Validator:
    """Validates answers from the trust anchors; one per config (a per-config resource)."""

    def __init__(
        self,
        query: RawQuery,
        anchors: TrustAnchors,
        *,
        clock: Callable[[], float] = time.time,
        max_ttl: float = MAX_TTL,
        bogus_ttl: float = BOGUS_TTL,
        max_entries: int = 100_000,
        owns: Closable | None = None,
    ) -> None:
        self.query = query
        self.owns = owns
        """What :meth:`aclose` closes too (the query function's transport)."""
        self.anchors = anchors
        self.clock = clock
        self.max_ttl = max_ttl
        self.bogus_ttl = bogus_ttl
        self.zones = ZoneCache(clock, max_entries)
        self.queries = 0

    async def aclose(self) -> None:
        self.zones.clear()
        if self.owns is not None:
            await self.owns.aclose()

    # ----- answers ------------------------------------------------------------------------------
    async def validate(self, name: str | dns.name.Name, rdtype: str | int) -> Verdict:
        """The DNSSEC status of the answer to ``name``/``rdtype``.

        Raises :class:`~exporter.net.dnsmodel.DnsTempError` when the DNS could not tell
        (:class:`~exporter.dnssec.model.DnssecUnavailable` when it carries no DNSSEC at all)."""
        qtype = dns.rdatatype.RdataType.make(rdtype)
        try:
            qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
        except dns.name.NameTooLong:
            # e.g. the TLSA name _25._tcp.<host> of a host name near the limit
            raise DnsTempError(
                str(name), dns.rdatatype.to_text(qtype), "a name longer than 255 octets"
            ) from None
        await self.zone_state(dns.name.root)  # DNSSEC must reach us at all
        links: list[dns.rrset.RRset] = []
        parts: list[_Part] = []
        kind: AnswerKind = "ok"
        asked: dns.name.Name | None = qname
        while asked is not None and len(links) <= MAX_CHAIN:
            response = await self._ask(asked, qtype)
            answer = _Message(response.answer)
            authority = _Message(response.authority)
            new_links, final = self._chain(answer, asked, qtype)
            links += new_links
            for rrset in new_links:
                sigs = answer.sig(rrset.name, rrset.rdtype)
                parts.append(await self._judge_rrset(rrset, sigs, authority))
            previous, asked = asked, None
            if final is None:
                break
            if final != previous and not _speaks_of(authority, final):
                asked = final  # an authoritative server does not follow CNAMEs out of its zone
                continue
            kind = "nxdomain" if response.rcode() == dns.rcode.NXDOMAIN else "nodata"
            parts.append(await self._judge_negative(final, qtype, kind == "nxdomain", authority))
        if asked is not None:
            raise DnsTempError(
                qname.to_text(), dns.rdatatype.to_text(qtype), f"more than {MAX_CHAIN} CNAMEs"
            )
        status = worst([p.status for p in parts])
        decisive = next(p for p in parts if p.status == status)
        return Verdict(
            name=qname.to_text(omit_final_dot=True).lower() or ".",
            rdtype=dns.rdatatype.to_text(qtype),
            status=status,
            reason=decisive.reason,
            zone=decisive.zone.to_text(),
            answer=kind,
            rrsets=tuple(r for r in links if r.rdtype != dns.rdatatype.DNAME),
            expiry=_min(*(p.expiry for p in parts)) if status == Status.SECURE else None,
        )

    def _chain(
        self, answer: _Message, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> tuple[list[dns.rrset.RRset], dns.name.Name | None]:
        """The RRsets from ``qname`` to the data (CNAMEs, DNAMEs), and the name left without
        data (None when the chain ends in records of ``qtype``)."""
        links: list[dns.rrset.RRset] = []
        cur = qname
        for _ in range(MAX_CHAIN):
            data = answer.get(cur, qtype)
            if data is not None:
                links.append(data)
                return links, None
            cname = answer.get(cur, dns.rdatatype.CNAME)
            dname = self._dname_for(answer, cur)
            if dname is not None:
                # The CNAME is synthesized (unsigned): the signed DNAME vouches for it.
                links.append(dname)
                target = cast(dns.rdtypes.ANY.DNAME.DNAME, dname[0]).target
                try:
                    cur = cur.relativize(dname.name).concatenate(target)
                except dns.name.NameTooLong:  # YXDOMAIN (RFC 6672 §2.2), passed on as data
                    raise DnsTempError(
                        qname.to_text(),
                        dns.rdatatype.to_text(qtype),
                        f"the DNAME {dname.name} -> {target} makes {cur} longer than 255 octets",
                    ) from None
                continue
            if cname is None or qtype == dns.rdatatype.CNAME:
                break
            links.append(cname)
            cur = cast(dns.rdtypes.ANY.CNAME.CNAME, cname[0]).target
        return links, cur

    @staticmethod
    def _dname_for(answer: _Message, name: dns.name.Name) -> dns.rrset.RRset | None:
        for rrset in answer.of_type(dns.rdatatype.DNAME):
            if name.is_subdomain(rrset.name) and name != rrset.name and len(rrset):
                return rrset
        return None

    async def _judge_rrset(
        self, rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None, authority: _Message
    ) -> _Part:
        owner = rrset.name
        signers = sorted(
            {s.signer for s in rrsigs_of(sigs) if owner.is_subdomain(s.signer)},
            key=len,
            reverse=True,
        )
        if not signers:
            state = await self.zone_state(owner)
            if state.status != Status.SECURE and state.absent != owner:
                return _Part(state.status, state.reason, state.zone)
            # Secure, or the owner is a name the secure zone says does not exist (x.wild, from
            # *.wild): either way an unsigned answer from that zone is what is wrong.
            reason = f"missing RRSIG: {describe(rrset)} is not signed, but {state.zone} is"
            if rrsigs_of(sigs):
                reason = f"{describe(rrset)} is signed by a zone that is not above it"
            return _Part(Status.BOGUS, reason, state.zone)
        # The deepest signer that is a zone: a signature naming another name (not a zone) is
        # left aside, not allowed to hide the zone's own.
        for signer in signers:
            state = await self.zone_state(signer)
            if state.status != Status.SECURE:
                return _Part(state.status, state.reason, state.zone)
            if state.zone == signer:
                break
        else:
            return _Part(
                Status.BOGUS,
                f"{describe(rrset)} is signed by {signers[0]}, which {state.zone} does not "
                "delegate",
                signers[0],
            )
        assert state.keys is not None
        check = check_rrset(rrset, sigs, signer, state.keys, self.clock())
        if not check.ok:
            return _Part(Status.BOGUS, check.reason, signer)
        if check.labels is not None and _expanded(owner, check.labels):
            nsecs, nsec3s, expiry, _ = self._denials(authority, signer, state.keys)
            proof = denial.wildcard_proof(owner, check.labels, signer, nsecs, nsec3s)
            if proof == denial.Denial.INSECURE:
                why = (
                    f"whose NSEC3 proof takes more than {denial.NSEC3_MAX_ITERATIONS} iterations"
                    if denial.too_costly(nsec3s)
                    else "inside an NSEC3 opt-out span"
                )
                reason = f"{describe(rrset)} comes from a wildcard {why}"
                return _Part(Status.INSECURE, reason, signer)
            if proof != denial.Denial.NXDOMAIN:
                return _Part(
                    Status.BOGUS,
                    f"{describe(rrset)} comes from a wildcard without proof that the name "
                    "does not exist",
                    signer,
                )
            return _Part(Status.SECURE, "", signer, _min(check.expiry, expiry, state.keys_expiry))
        return _Part(Status.SECURE, "", signer, _min(check.expiry, state.keys_expiry))

    async def _judge_negative(
        self,
        name: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        nxdomain: bool,
        authority: _Message,
    ) -> _Part:
        what = f"{name} {dns.rdatatype.to_text(qtype)}"
        soas = [r for r in authority.of_type(dns.rdatatype.SOA) if name.is_subdomain(r.name)]
        if not soas:
            raise DnsTempError(
                name.to_text(), dns.rdatatype.to_text(qtype), "negative answer without SOA record"
            )
        soa = soas[0]
        zone = soa.name
        sigs = authority.sig(zone, dns.rdatatype.SOA)
        state = await self.zone_state(zone)
        if state.status != Status.SECURE:
            return _Part(state.status, state.reason, state.zone)
        if state.zone != zone:
            return _Part(Status.BOGUS, f"negative answer for {what} from {zone}, not a zone", zone)
        if not _carries_dnssec(authority):
            raise DnsTempError(
                name.to_text(),
                dns.rdatatype.to_text(qtype),
                f"negative answer from {zone}, a signed zone, without any RRSIG, NSEC or NSEC3 "
                "record: the path strips them",
            )
        assert state.keys is not None
        soa_check = check_rrset(soa, sigs, zone, state.keys, self.clock())
        if not soa_check.ok:
            return _Part(Status.BOGUS, f"negative answer for {what}: {soa_check.reason}", zone)
        nsecs, nsec3s, expiry, failures = self._denials(authority, zone, state.keys)
        proof = denial.negative_proof(name, qtype, nxdomain, zone, nsecs, nsec3s)
        if proof.kind == denial.Denial.INSECURE:
            reason = f"{what}: {proof.how}"
            if proof.how == denial.COSTLY:
                reason = (
                    f"{zone} uses {denial.COSTLY}: the proof that {what} does not exist is not "
                    "checked (RFC 9276 §3.2)"
                )
            return _Part(Status.INSECURE, reason, zone)
        expected = denial.Denial.NXDOMAIN if nxdomain else denial.Denial.NODATA
        if proof.kind != expected:
            detail = failures[0] if failures else proof.how
            return _Part(
                Status.BOGUS,
                f"no valid proof that {what} does not exist ({detail})",
                zone,
            )
        return _Part(Status.SECURE, "", zone, _min(soa_check.expiry, expiry, state.keys_expiry))

    def _denials(
        self, section: _Message, zone: dns.name.Name, keys: dns.rdataset.Rdataset
    ) -> tuple[list[denial.Nsec], list[denial.Nsec3], float | None, list[str]]:
        """The NSEC and NSEC3 records of ``zone`` in a section whose signatures validate,
        their earliest expiry, and why the others did not."""
        now = self.clock()
        nsec_sets: list[dns.rrset.RRset] = []
        nsec3_sets: list[dns.rrset.RRset] = []
        expiry: float | None = None
        failures: list[str] = []
        examined = 0
        for rdtype, out in ((dns.rdatatype.NSEC, nsec_sets), (dns.rdatatype.NSEC3, nsec3_sets)):
            for rrset in section.of_type(rdtype):
                inside = (
                    rrset.name.parent() == zone
                    if rdtype == dns.rdatatype.NSEC3
                    else rrset.name.is_subdomain(zone)
                )
                if not inside:
                    continue
                examined += 1
                if examined > MAX_DENIAL_RRSETS:
                    failures.append(
                        f"more than {MAX_DENIAL_RRSETS} NSEC/NSEC3 RRsets of {zone}: "
                        "the others were not checked"
                    )
                    break
                check = check_rrset(rrset, section.sig(rrset.name, rdtype), zone, keys, now)
                if not check.ok:
                    failures.append(check.reason)
                    continue
                if _expanded(rrset.name, check.labels):
                    # A wildcard's NSEC replayed at another name: its signature still verifies.
                    failures.append(
                        f"{describe(rrset)} ignored: its signature is for a wildcard "
                        f"(RRSIG labels {check.labels}), and NSEC/NSEC3 records are never "
                        "wildcard expansions"
                    )
                    continue
                out.append(rrset)
                expiry = _min(expiry, check.expiry)
                if rdtype == dns.rdatatype.NSEC3:
                    failures += [
                        f"{describe(rrset)} ignored: {problem}"
                        for rd in rrset
                        if (problem := denial.nsec3_problem(rrset.name, cast(NSEC3, rd)))
                    ]
        return denial.nsecs_of(nsec_sets), denial.nsec3s_of(nsec3_sets), expiry, failures

    # ----- the chain of trust ---------------------------------------------------------------------
    async def zone_state(self, name: dns.name.Name) -> ZoneState:
        """The state of the chain of trust at ``name`` (cached; see the module docstring)."""
        return await self.zones.get(name, lambda: self._work_out(name))

    async def _ask(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        self.queries += 1
        return await self.query(name, rdtype)

    def _bogus(self, zone: dns.name.Name, reason: str, until: float | None = None) -> ZoneState:
        cap = self.clock() + self.bogus_ttl
        return ZoneState(Status.BOGUS, zone, reason, until=_min(until, cap) or cap)

    def _until(self, *limits: float | None) -> float:
        return _min(self.clock() + self.max_ttl, *limits) or 0.0

    async def _work_out(self, name: dns.name.Name) -> ZoneState:
        if name == dns.name.root:
            return await self._root()
        parent = await self.zone_state(name.parent())
        if parent.status != Status.SECURE:
            return parent
        assert parent.keys is not None
        zone = parent.zone
        now = self.clock()
        response = await self._ask(name, dns.rdatatype.DS)
        answer, authority = _Message(response.answer), _Message(response.authority)
        ds_set = answer.get(name, dns.rdatatype.DS)
        if ds_set is not None:
            check = check_rrset(ds_set, answer.sig(name, dns.rdatatype.DS), zone, parent.keys, now)
            if not check.ok:
                return self._bogus(name, f"DS records of {name} in {zone}: {check.reason}")
            until = self._until(parent.until, now + ds_set.ttl, check.expiry)
            return await self._secure_zone(name, ds_set, until)
        cname = answer.get(name, dns.rdatatype.CNAME)
        if cname is not None:
            check = check_rrset(
                cname, answer.sig(name, dns.rdatatype.CNAME), zone, parent.keys, now
            )
            if not check.ok:
                return self._bogus(zone, check.reason)
            return replace(parent, until=self._until(parent.until, now + cname.ttl, check.expiry))
        if not _carries_dnssec(authority):
            # Stripped on the way (a middlebox, a resolver that drops the authority section):
            # nothing is proven either way, which is neither bogus nor an unsigned delegation.
            raise DnsTempError(
                name.to_text(),
                "DS",
                "the answer carries neither DS records nor a proof that there are none "
                "(no NSEC, NSEC3 or RRSIG records in its authority section)",
            )
        nsecs, nsec3s, expiry, failures = self._denials(authority, zone, parent.keys)
        proof = denial.ds_denial(name, zone, nsecs, nsec3s)
        ttl = min((r.ttl for r in response.authority), default=0)
        until = self._until(parent.until, now + ttl, expiry)
        if proof.kind == denial.Denial.INSECURE:
            reason = f"unsigned delegation: {zone} proves {name} has no DS ({proof.how})"
            if proof.how == denial.COSTLY:
                reason = (
                    f"{zone} uses {denial.COSTLY}: whether {name} has DS records is not "
                    "checked (RFC 9276 §3.2)"
                )
            return ZoneState(Status.INSECURE, name, reason, until=until)
        if proof.kind == denial.Denial.NODATA:
            return replace(parent, until=until)
        if proof.kind == denial.Denial.NXDOMAIN:
            reason = f"{zone} proves {name} does not exist ({proof.how})"
            return replace(self._bogus(zone, reason), absent=name)
        detail = failures[0] if failures else proof.how
        return self._bogus(zone, f"no valid proof that {name} has no DS in {zone} ({detail})")

    async def _secure_zone(
        self, name: dns.name.Name, ds_set: dns.rrset.RRset, until: float
    ) -> ZoneState:
        usable = [cast(DS, ds) for ds in ds_set if supported(cast(DS, ds))]
        if not usable:
            reason = _unsupported(name, [cast(DS, ds) for ds in ds_set])
            return ZoneState(Status.INSECURE, name, reason, until=until)
        ignored = ""
        if any(ds.digest_type != 1 for ds in usable) and any(ds.digest_type == 1 for ds in usable):
            # RFC 4509 §3: SHA-1 DS records are ignored beside SHA-256 ones (a downgrade).
            usable = [ds for ds in usable if ds.digest_type != 1]
            ignored = "; its SHA-1 DS records are ignored beside SHA-256 ones (RFC 4509 §3)"
        response = await self._ask(name, dns.rdatatype.DNSKEY)
        answer = _Message(response.answer)
        keys = answer.get(name, dns.rdatatype.DNSKEY)
        if keys is None:
            return self._bogus(name, f"{name} has DS records in its parent but no DNSKEY records")
        matched = [k for k in keys if any(ds_matches(name, ds, cast(DNSKEY, k)) for ds in usable)]
        if not matched:
            return self._bogus(name, _no_match(name, usable, keys) + ignored)
        return self._keys_state(name, keys, answer.sig(name, dns.rdatatype.DNSKEY), matched, until)

    def _keys_state(
        self,
        name: dns.name.Name,
        keys: dns.rrset.RRset,
        sigs: dns.rrset.RRset | None,
        trusted: list[object],
        until: float,
    ) -> ZoneState:
        """Secure when the DNSKEY RRset is signed by one of the ``trusted`` keys."""
        trusted_set = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        for key in trusted:
            trusted_set.add(cast(DNSKEY, key))
        check: SigCheck = check_rrset(keys, sigs, name, trusted_set, self.clock())
        if not check.ok:
            tags = ", ".join(str(dns.dnssec.key_id(cast(DNSKEY, k))) for k in trusted)
            detail = check.reason.removeprefix(f"{describe(keys)}: ")
            return self._bogus(
                name,
                f"DNSKEY records of {name} do not validate with a trusted key "
                f"(key tags {tags}): {detail}",
            )
        return ZoneState(
            Status.SECURE,
            name,
            keys=keys,
            keys_expiry=check.expiry,
            until=self._until(until, self.clock() + keys.ttl, check.expiry),
        )

    async def _root(self) -> ZoneState:
        response = await self._ask(dns.name.root, dns.rdatatype.DNSKEY)
        answer = _Message(response.answer)
        keys = answer.get(dns.name.root, dns.rdatatype.DNSKEY)
        if keys is None:
            raise DnssecUnavailable(
                ".",
                "DNSKEY",
                "the nameservers return no DNSKEY records for the root zone; "
                + DnssecUnavailable.FIX,
            )
        sigs = answer.sig(dns.name.root, dns.rdatatype.DNSKEY)
        if not rrsigs_of(sigs):
            raise DnssecUnavailable(
                ".",
                "DNSKEY",
                "the nameservers strip DNSSEC signatures (no RRSIG on the root "
                "DNSKEY records); " + DnssecUnavailable.FIX,
            )
        trusted = [k for k in keys if self.anchors.trusts(cast(DNSKEY, k))]
        if not trusted:
            return self._bogus(
                dns.name.root, f"no root DNSKEY matches the trust anchors {self.anchors.describe()}"
            )
        return self._keys_state(dns.name.root, keys, sigs, trusted, self._until())


def _expanded(owner: dns.name.Name, labels: int | None) -> bool:
    """Whether a signature with ``labels`` makes the RRset at ``owner`` a wildcard expansion
    (RFC 4035 §5.3.4); the labels field of a wildcard's own signature leaves out the "*"."""
    return labels is not None and labels < len(owner) - 1 - int(owner.is_wild())


def _carries_dnssec(section: _Message) -> bool:
    """Whether a section holds any DNSSEC record (RRSIG, NSEC, NSEC3) at all."""
    return bool(
        section.sigs or section.of_type(dns.rdatatype.NSEC) or section.of_type(dns.rdatatype.NSEC3)
    )


def _speaks_of(authority: _Message, name: dns.name.Name) -> bool:
    """Whether a response's authority section is about ``name`` (a SOA of a zone above it)."""
    return any(name.is_subdomain(r.name) for r in authority.of_type(dns.rdatatype.SOA))


def _no_match(name: dns.name.Name, ds: list[DS], keys: dns.rrset.RRset) -> str:
    ds_tags = ", ".join(sorted({str(d.key_tag) for d in ds}))
    key_tags = ", ".join(sorted({str(dns.dnssec.key_id(cast(DNSKEY, k))) for k in keys}))
    return (
        f"no DS record of {name} matches any of its DNSKEYs "
        f"(DS key tags {ds_tags}; DNSKEY key tags {key_tags})"
    )
