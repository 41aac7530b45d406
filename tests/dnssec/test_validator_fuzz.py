"""The validator against answers nobody signed off on: real responses of the knot lab, mutated at
random (RRsets dropped, records removed, signatures and keys altered, rcodes changed). Whatever
arrives, the outcome is a verdict or "could not tell" (DnsTempError), never another exception;
and a mutation can only make a secure answer less secure, never a bogus one secure."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from dnssec_lab import DnssecLab
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.dnssec import Status, Validator, Verdict, load_trust_anchors
from exporter.net.dnsmodel import DnsTempError
from exporter.net.dnsraw import RawDns

Key = tuple[dns.name.Name, dns.rdatatype.RdataType]
QUESTIONS = [
    ("www.secure.test", "A"),  # secure, NSEC
    ("nx.secure.test", "A"),  # name error, NSEC
    ("x.wild.secure.test", "A"),  # wildcard
    ("www.p3.test", "TXT"),  # no data, NSEC3
    ("www.unsigned.p3oo.test", "A"),  # opt-out
    ("www.unsigned.test", "A"),  # insecure, NSEC
    ("www.expired.test", "A"),  # bogus
]


@pytest.fixture(scope="module")
def recorded(dnssec_lab: DnssecLab) -> tuple[dict[Key, dns.message.Message], dict[str, Status]]:
    """Every response the validator needed for :data:`QUESTIONS`, and its verdicts on them."""
    raw = RawDns([dnssec_lab.address])
    seen: dict[Key, dns.message.Message] = {}

    async def record(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        seen[(name, rdtype)] = response = await raw.query(name, rdtype)
        return response

    async def run() -> dict[str, Status]:
        v = Validator(record, load_trust_anchors(str(dnssec_lab.anchor_file)))
        out = {q[0]: (await v.validate(*q)).status for q in QUESTIONS}
        await raw.aclose()
        return out

    verdicts = asyncio.run(run())
    return seen, verdicts


def mutator(data: st.DataObject) -> Callable[[dns.message.Message], dns.message.Message]:
    def mutate(msg: dns.message.Message) -> dns.message.Message:
        out = copy.deepcopy(msg)
        if data.draw(st.booleans()):
            return out
        if data.draw(st.integers(0, 9)) == 0:
            out.set_rcode(data.draw(st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN])))
        if data.draw(st.integers(0, 9)) == 0:
            out.question = []
        for section in (out.answer, out.authority):
            for rrset in list(section):
                action = data.draw(
                    st.sampled_from(["keep", "keep", "drop", "shrink", "corrupt", "move"])
                )
                if action == "drop":
                    section.remove(rrset)
                elif action == "shrink" and len(rrset) > 1:
                    rrset.remove(next(iter(rrset)))
                elif action == "corrupt":
                    section[section.index(rrset)] = _corrupt(rrset, data)
                elif action == "move":  # replayed at another owner (a wildcard's NSEC, say)
                    section[section.index(rrset)] = _moved(rrset, data)
        return out

    return mutate


def _moved(rrset: dns.rrset.RRset, data: st.DataObject) -> dns.rrset.RRset:
    """The RRset (its signatures with it, when they are moved too) at a child or a sibling."""
    label = data.draw(st.sampled_from([b"\x00", b"a", b"zz", b"*"]))
    parent = rrset.name if data.draw(st.booleans()) or len(rrset.name) < 2 else rrset.name.parent()
    try:
        owner = dns.name.Name((label, *parent.labels))
    except dns.name.NameTooLong:
        return rrset
    moved = dns.rrset.RRset(owner, rrset.rdclass, rrset.rdtype, rrset.covers)
    moved.update(rrset)
    return moved


def _corrupt(rrset: dns.rrset.RRset, data: st.DataObject) -> dns.rrset.RRset:
    """One record of the RRset with a byte of its wire form changed (it may no longer parse:
    then the RRset is left out, as a resolver would drop an unreadable record)."""
    rdatas = list(rrset)
    i = data.draw(st.integers(0, len(rdatas) - 1))
    wire = bytearray(rdatas[i].to_digestable())
    if not wire:
        return rrset
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] ^= data.draw(st.integers(1, 255))
    try:
        rdatas[i] = dns.rdata.from_wire(rrset.rdclass, rrset.rdtype, bytes(wire), 0, len(wire))
    except Exception:
        del rdatas[i]
    new = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
    for rd in rdatas:
        try:
            new.add(rd, rrset.ttl)
        except dns.exception.DNSException:  # e.g. an RRSIG now covering another type
            continue
    return new


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_answers_give_a_verdict_or_could_not_tell(
    dnssec_lab: DnssecLab,
    recorded: tuple[dict[Key, dns.message.Message], dict[str, Status]],
    data: st.DataObject,
) -> None:
    responses, clean = recorded
    mutate = mutator(data)

    async def query(name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        found = responses.get((name, rdtype))
        if found is None:  # a question the clean run never asked (a CNAME chased elsewhere)
            raise DnsTempError(name.to_text(), dns.rdatatype.to_text(rdtype), "not recorded")
        return mutate(found)

    async def run() -> None:
        v = Validator(query, load_trust_anchors(str(dnssec_lab.anchor_file)))
        for name, rdtype in QUESTIONS:
            try:
                verdict = await v.validate(name, rdtype)
            except DnsTempError:
                continue
            assert isinstance(verdict, Verdict)
            # Tampering never turns a bogus answer secure, nor an insecure one secure.
            if clean[name] != Status.SECURE:
                assert verdict.status != Status.SECURE, (name, verdict)

    asyncio.run(run())
