"""The validator against hostile or odd answers: real responses of the knot lab
(tests/dnssec_lab.py), doctored on their way to the validator the way a middlebox, a broken
resolver or an attacker on the path would, and records built to abuse the validator itself."""

from __future__ import annotations

import copy
from collections.abc import Callable

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
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
