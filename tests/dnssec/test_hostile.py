"""The validator against hostile or odd answers: real responses of the knot lab
(tests/dnssec_lab.py), doctored on their way to the validator the way a middlebox, a broken
resolver or an attacker on the path would, and records built to abuse the validator itself."""

from __future__ import annotations

import copy
from collections.abc import Callable

import dns.dnssecalgs.ecdsa
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dnssec_lab import DnssecLab

from exporter.dnssec import Status, Validator, load_trust_anchors
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsraw import RawDns

Edit = Callable[[dns.name.Name, dns.rdatatype.RdataType, dns.message.Message], None]


class Doctored:
    """The lab's real answers, each changed in place by ``edit`` before the validator sees it."""

    def __init__(self, lab: DnssecLab, edit: Edit) -> None:
        self.raw = RawDns([lab.address])
        self.edit = edit

    async def __call__(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.message.Message:
        response = copy.deepcopy(await self.raw.query(name, rdtype))
        self.edit(name, rdtype, response)
        return response


def validator(lab: DnssecLab, edit: Edit) -> Validator:
    doctored = Doctored(lab, edit)
    return Validator(doctored, load_trust_anchors(str(lab.anchor_file)), owns=doctored.raw)


def strip_ds_authority(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    if rdtype == dns.rdatatype.DS:
        msg.authority = []


@pytest.mark.parametrize(
    "name", ["www.unsigned.test", "www.unsigned.p3.test", "www.unsigned.p3oo.test",
             "www.unsigned.nsec3"],
)  # fmt: skip
async def test_ds_answer_stripped_of_its_authority_is_could_not_tell(
    dnssec_lab: DnssecLab, name: str
) -> None:
    # Neither DS records nor a proof that there are none: nothing is proven either way (it
    # was "bogus: no valid proof that unsigned.test. has no DS"), and never "insecure".
    v = validator(dnssec_lab, strip_ds_authority)
    with pytest.raises(DnsTempError, match="neither DS records nor a proof"):
        await v.validate(name, "A")
    # Answers whose chain needs no proof of an absent DS are judged as before.
    assert (await v.validate("www.secure.test", "A")).status == Status.SECURE
    assert (await v.validate("www.badsig.test", "A")).status == Status.BOGUS
    await v.aclose()


def strip_authority_dnssec(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    unsigned = (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
    msg.authority = [r for r in msg.authority if r.rdtype not in unsigned]


@pytest.mark.parametrize("question", [("nx.secure.test", "A"), ("www.secure.test", "TXT"),
                                      ("nx.p3.test", "A"), ("www.unsigned.test", "A")])  # fmt: skip
async def test_authority_stripped_of_dnssec_records_is_could_not_tell(
    dnssec_lab: DnssecLab, question: tuple[str, str]
) -> None:
    # A path that passes the answers' signatures but drops them from the authority section
    # (the unsigned SOA of a negative answer was "bogus: missing RRSIG").
    v = validator(dnssec_lab, strip_authority_dnssec)
    with pytest.raises(DnsTempError, match=r"strips them|neither DS records nor a proof"):
        await v.validate(*question)
    assert (await v.validate("www.secure.test", "A")).status == Status.SECURE
    await v.aclose()


def claim_success(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    if msg.rcode() == dns.rcode.YXDOMAIN:  # RFC 6672 §2.2, passed on as NOERROR
        msg.set_rcode(dns.rcode.NOERROR)


LONG = f"{'q' * 40}.{'r' * 40}"


async def test_names_over_255_octets_are_could_not_tell(dnssec_lab: DnssecLab) -> None:
    v = validator(dnssec_lab, claim_success)
    # The signed DNAME of secure.test expands this name past 255 octets (it was a traceback:
    # dns.name.NameTooLong out of the validator).
    with pytest.raises(DnsTempError, match="longer than 255 octets"):
        await v.validate(f"{LONG}.dn.secure.test", "A")
    # A name too long to ask about at all (a TLSA name built from a long host).
    too_long = ".".join(["a" * 63] * 4) + ".test"
    with pytest.raises(DnsTempError, match="longer than 255 octets"):
        await v.validate(too_long, "TLSA")
    # A short name through the same DNAME is validated as usual.
    verdict = await v.validate("x.dn.secure.test", "A")
    assert (verdict.status, verdict.answer) == (Status.SECURE, "nxdomain")
    await v.aclose()


async def test_wildcard_nsec_replayed_at_another_name_proves_nothing(
    dnssec_lab: DnssecLab,
) -> None:
    # The NSEC record of *.wild.secure.test (RRSIG labels 3) validates at any name below
    # wild.secure.test: a signer's wildcard owner is rebuilt from the labels field. Replayed at
    # \000.wild.secure.test it covered x.wild.secure.test and the wildcard itself: a "secure"
    # NXDOMAIN for a name that exists. NSEC/NSEC3 records are never wildcard expansions
    # (RFC 4035 §5.3.4 and §5.4): one whose RRSIG has fewer labels than its owner is ignored.
    raw = RawDns([dnssec_lab.address])
    negative = await raw.query(dns.name.from_text("nx.secure.test"), dns.rdatatype.A)
    wild_nsec = await raw.query(dns.name.from_text("*.wild.secure.test"), dns.rdatatype.NSEC)
    await raw.aclose()
    forged_owner = dns.name.from_text("\\000.wild.secure.test")
    replayed = []
    for rrset in wild_nsec.answer:
        copied = dns.rrset.RRset(forged_owner, rrset.rdclass, rrset.rdtype, rrset.covers)
        copied.update(rrset)
        replayed.append(copied)
    soa = [r for r in negative.authority if r.rdtype == dns.rdatatype.SOA
           or r.covers == dns.rdatatype.SOA]  # fmt: skip

    def forge(
        name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
    ) -> None:
        if name == dns.name.from_text("x.wild.secure.test") and rdtype == dns.rdatatype.A:
            msg.set_rcode(dns.rcode.NXDOMAIN)
            msg.answer = []
            msg.authority = [*soa, *replayed]

    v = validator(dnssec_lab, forge)
    verdict = await v.validate("x.wild.secure.test", "A")
    assert verdict.status == Status.BOGUS, verdict
    assert "wildcard" in verdict.reason
    await v.aclose()


async def test_the_wildcard_owner_itself_is_no_expansion(dnssec_lab: DnssecLab) -> None:
    # Its RRSIG labels field leaves out the "*": asked by its own name, the wildcard's records
    # are plain data, not an expansion needing a proof that "*.wild.secure.test" does not exist.
    raw = RawDns([dnssec_lab.address])
    v = Validator(raw.query, load_trust_anchors(str(dnssec_lab.anchor_file)), owns=raw)
    verdict = await v.validate("*.wild.secure.test", "A")
    assert (verdict.status, verdict.answer) == (Status.SECURE, "ok"), verdict
    assert dnssec_lab.delv("*.wild.secure.test.", "A") == "secure"
    await v.aclose()


async def test_a_flood_of_nsec_records_costs_a_bounded_number_of_verifications(
    dnssec_lab: DnssecLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300 NSEC RRsets, each a real record and signature moved to another owner (each costs a
    # signature verification that fails) after the real proof: every one was checked.
    def flood(
        name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
    ) -> None:
        if name != dns.name.from_text("nx.secure.test") or rdtype != dns.rdatatype.A:
            return
        nsec = next(r for r in msg.authority if r.rdtype == dns.rdatatype.NSEC)
        sig = next(r for r in msg.authority if r.covers == dns.rdatatype.NSEC)
        for i in range(300):
            owner = dns.name.from_text(f"junk{i}.secure.test")
            for rrset in (nsec, sig):
                copied = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
                copied.update(rrset)
                msg.authority.append(copied)

    v = validator(dnssec_lab, flood)
    await v.validate("www.secure.test", "A")  # the chain of trust, before counting
    calls = [0]
    real = dns.dnssecalgs.ecdsa.PublicECDSA.verify

    def verify(self: object, signature: bytes, data: bytes) -> None:
        calls[0] += 1
        real(self, signature, data)  # type: ignore[arg-type]

    monkeypatch.setattr(dns.dnssecalgs.ecdsa.PublicECDSA, "verify", verify)
    verdict = await v.validate("nx.secure.test", "A")
    assert (verdict.status, verdict.answer) == (Status.SECURE, "nxdomain"), verdict
    assert calls[0] <= 20
    await v.aclose()


def extra_signer(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    # Beside the real RRSIG, a copy naming the owner itself as signer (not a zone).
    for rrset in list(msg.answer):
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset.name == name:
            for rd in list(rrset):
                rrset.add(rd.replace(signer=name))


async def test_a_signature_by_a_name_that_is_no_zone_does_not_hide_the_good_one(
    dnssec_lab: DnssecLab,
) -> None:
    # It was "www.secure.test. A is signed by www.secure.test., which secure.test. does not
    # delegate" (bogus) though the zone's own signature is there and valid, as delv finds.
    v = validator(dnssec_lab, extra_signer)
    for name in ("www.secure.test", "mx.p3.test"):
        verdict = await v.validate(name, "A")
        assert verdict.status == Status.SECURE, verdict
    await v.aclose()


def no_question(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    msg.question = []  # a query function that hands back what a sloppy server sent


async def test_a_response_without_its_question_section_is_judged_all_the_same(
    dnssec_lab: DnssecLab,
) -> None:
    # It was an IndexError out of the validator on any negative or CNAME answer.
    v = validator(dnssec_lab, no_question)
    for name, rdtype, status in [("nx.secure.test", "A", Status.SECURE),
                                 ("alias.secure.test", "A", Status.SECURE),
                                 ("ins.secure.test", "A", Status.INSECURE)]:  # fmt: skip
        assert (await v.validate(name, rdtype)).status == status
    await v.aclose()


async def test_the_parents_nsec_at_a_delegation_proves_no_type_of_the_child(
    dnssec_lab: DnssecLab,
) -> None:
    # test.'s NSEC at secure.test (NS DS RRSIG NSEC: the delegation) lists no MX, but the MX
    # records of secure.test are the child zone's. Served with test.'s SOA as the answer to
    # "secure.test MX" it made a "secure" NODATA: no MX, so senders would use the A record.
    # RFC 4035 §5.4 / RFC 6840 §4.4: such an NSEC proves nothing but the DS (and NS) bits.
    raw = RawDns([dnssec_lab.address])
    nxdomain = await raw.query(dns.name.from_text("secure0.test"), dns.rdatatype.A)
    await raw.aclose()
    cut = dns.name.from_text("secure.test")
    soa = (dns.rdatatype.SOA,)
    proof = [r for r in nxdomain.authority
             if r.rdtype in soa or r.covers in soa or r.name == cut]  # fmt: skip
    assert any(r.rdtype == dns.rdatatype.NSEC and r.name == cut for r in proof)

    def forge(
        name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
    ) -> None:
        if name == cut and rdtype == dns.rdatatype.MX:
            msg.set_rcode(dns.rcode.NOERROR)
            msg.answer = []
            msg.authority = list(proof)

    v = validator(dnssec_lab, forge)
    verdict = await v.validate("secure.test", "MX")
    assert verdict.status == Status.BOGUS, verdict
    assert "the NSEC record at secure.test. is its parent's" in verdict.reason
    await v.aclose()


async def test_a_wildcard_answer_needs_the_next_closer_name_proven_absent(
    dnssec_lab: DnssecLab,
) -> None:
    # e.wild.secure.test exists, so q.e.wild.secure.test is a name error, not an expansion of
    # *.wild.secure.test. The wildcard's signed A records replayed at q.e.wild with the real
    # NSEC (e.wild -> ...) that covers q.e.wild was "secure": NSEC only checked that the name
    # itself is covered, not the next closer name e.wild (RFC 4035 §5.3.4, RFC 5155 §8.8).
    raw = RawDns([dnssec_lab.address])
    wildcard = await raw.query(dns.name.from_text("x.wild.secure.test"), dns.rdatatype.A)
    name = dns.name.from_text("q.e.wild.secure.test")
    error = await raw.query(name, dns.rdatatype.A)
    await raw.aclose()
    assert error.rcode() == dns.rcode.NXDOMAIN
    answer = []
    for rrset in wildcard.answer:
        moved = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype, rrset.covers)
        moved.update(rrset)
        answer.append(moved)
    nsecs = [r for r in error.authority if dns.rdatatype.NSEC in (r.rdtype, r.covers)]

    def forge(
        asked: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
    ) -> None:
        if asked == name and rdtype == dns.rdatatype.A:
            msg.set_rcode(dns.rcode.NOERROR)
            msg.answer = list(answer)
            msg.authority = list(nsecs)

    v = validator(dnssec_lab, forge)
    verdict = await v.validate(name, "A")
    assert verdict.status == Status.BOGUS, verdict
    assert "comes from a wildcard without proof" in verdict.reason
    # The real expansion still validates.
    assert (await v.validate("x.wild.secure.test", "A")).status == Status.SECURE
    await v.aclose()


def strip_answer_signatures(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, msg: dns.message.Message
) -> None:
    if rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
        msg.answer = [r for r in msg.answer if r.rdtype != dns.rdatatype.RRSIG]


@pytest.mark.parametrize("name", ["x.wild.secure.test", "x.wild.p3.test", "www.secure.test"])
async def test_an_unsigned_answer_in_a_signed_zone_is_missing_its_rrsig(
    dnssec_lab: DnssecLab, name: str
) -> None:
    # For a wildcard's name the reason was "secure.test. proves x.wild.secure.test. does not
    # exist (NSEC)": true of the name, but not what is wrong with the answer.
    v = validator(dnssec_lab, strip_answer_signatures)
    verdict = await v.validate(name, "A")
    assert verdict.status == Status.BOGUS
    assert verdict.reason.startswith(f"missing RRSIG: {name}. A is not signed, but "), verdict
    await v.aclose()
