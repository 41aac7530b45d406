"""The TLSA matcher: every usage, selector and matching type against trustme certificate chains."""

from __future__ import annotations

import datetime as dt

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from exporter.net import dane
from exporter.net.dane import Tlsa

ROOT = trustme.CA()
INTERMEDIATE = ROOT.create_child_ca()
LEAF = INTERMEDIATE.issue_cert("mx.example.test")
OTHER = trustme.CA().issue_cert("mx.example.test")


def certs(issued: trustme.LeafCert) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p.bytes()) for p in issued.cert_chain_pems]


CHAIN = certs(LEAF)  # leaf, intermediate (the root is not sent, as usual)
ROOT_CERT = x509.load_pem_x509_certificate(ROOT.cert_pem.bytes())
FULL = [*CHAIN, ROOT_CERT]
OTHER_LEAF = certs(OTHER)[0]


def record(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> Tlsa:
    return Tlsa(usage, selector, mtype, dane.association(cert, selector, mtype))


def test_chain_is_followed_issuer_by_issuer() -> None:
    assert dane.issuers(FULL) == FULL[1:]
    assert dane.issuers(CHAIN) == CHAIN[1:]
    # A certificate that did not issue the leaf is not part of its chain.
    assert dane.issuers([CHAIN[0], OTHER_LEAF, ROOT_CERT]) == []
    # Order in the handshake does not matter, signatures do.
    assert dane.issuers([CHAIN[0], ROOT_CERT, CHAIN[1]]) == [CHAIN[1], ROOT_CERT]


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf_only(selector: int, mtype: int) -> None:
    good = record(3, selector, mtype, CHAIN[0])
    assert dane.check([good], CHAIN).valid is True
    assert dane.check([record(3, selector, mtype, CHAIN[1])], CHAIN).valid is False
    assert dane.check([record(3, selector, mtype, OTHER_LEAF)], CHAIN).valid is False


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_matches_an_issuer_of_the_leaf(selector: int, mtype: int) -> None:
    assert dane.check([record(2, selector, mtype, CHAIN[1])], CHAIN).valid is True
    assert dane.check([record(2, selector, mtype, ROOT_CERT)], FULL).valid is True
    # The leaf is not a trust anchor; an unrelated CA in the chain does not count.
    assert dane.check([record(2, selector, mtype, CHAIN[0])], CHAIN).valid is False
    stray = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    assert dane.check([record(2, selector, mtype, stray)], [*CHAIN, stray]).valid is False


def test_dane_ta_full_key_of_an_issuer_left_out() -> None:
    # 2 1 0: the server may omit the trust anchor; its key must have signed the top of the chain.
    assert dane.check([record(2, 1, 0, ROOT_CERT)], CHAIN).valid is True
    assert dane.check([record(2, 1, 1, ROOT_CERT)], CHAIN).valid is False  # a digest: no key
    other_root = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    assert dane.check([record(2, 1, 0, other_root)], CHAIN).valid is False


def test_pkix_usages_and_unknown_parameters_are_unusable() -> None:
    ignored = [
        record(0, 0, 1, ROOT_CERT),
        record(1, 1, 1, CHAIN[0]),
        Tlsa(3, 2, 1, b"x" * 32),
        Tlsa(3, 1, 3, b"x" * 32),
        Tlsa(4, 1, 1, b"x" * 32),
    ]
    result = dane.check(ignored, CHAIN)
    assert result.usable == ()
    assert result.valid is None


def test_result_properties() -> None:
    ee = record(3, 1, 1, CHAIN[0])
    ta = record(2, 0, 1, CHAIN[1])
    stale = record(3, 1, 1, OTHER_LEAF)
    only_ee = dane.check([ee], CHAIN)
    assert (only_ee.valid, only_ee.ee_matched, only_ee.single_ee) == (True, True, True)
    rollover = dane.check([ee, stale], CHAIN)  # current key and next key
    assert (rollover.valid, rollover.single_ee) == (True, False)
    assert rollover.matched == (ee,)
    by_ta = dane.check([ta], CHAIN)
    assert (by_ta.valid, by_ta.ee_matched, by_ta.single_ee) == (True, False, False)
    nothing = dane.check([stale], CHAIN)
    assert (nothing.valid, nothing.matched) == (False, ())
    assert dane.check([ee, ee], CHAIN).usable == (ee,)  # duplicates count once
    assert dane.check([ee], []).valid is False


def test_expired_leaf_still_matches_dane_ee() -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = INTERMEDIATE.issue_cert("mx.example.test", not_before=past, not_after=past)
    chain = certs(old)
    result = dane.check([record(3, 1, 1, chain[0])], chain)
    assert (result.valid, result.ee_matched) == (True, True)


def test_from_rdata_and_names() -> None:
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, "3 1 1 " + "ab" * 32)
    tlsa = Tlsa.from_rdata(rd)  # type: ignore[arg-type]
    assert (tlsa.usage, tlsa.selector, tlsa.mtype, tlsa.data) == (3, 1, 1, b"\xab" * 32)
    assert tlsa.to_text() == "3 1 1 " + "ab" * 32
    assert tlsa.short() == "3 1 1 abababababababab"
    assert dane.tlsa_name("mx.example.test.", 25) == "_25._tcp.mx.example.test."


POSITIONS = st.sampled_from(["leaf", "intermediate", "root", "stranger"])


@given(
    usage=st.integers(0, 255),
    selector=st.integers(0, 255),
    mtype=st.integers(0, 255),
    position=POSITIONS,
    send_root=st.booleans(),
)
def test_matcher_property(
    usage: int, selector: int, mtype: int, position: str, send_root: bool
) -> None:
    """A record computed from a certificate matches exactly when the rules say it should."""
    stranger = OTHER_LEAF
    cert = {"leaf": CHAIN[0], "intermediate": CHAIN[1], "root": ROOT_CERT}.get(position, stranger)
    chain = FULL if send_root else CHAIN
    if selector in dane.SELECTORS and mtype in dane.MATCHING_TYPES:
        data = dane.association(cert, selector, mtype)
    else:
        data = b"\x00" * 32
    rec = Tlsa(usage, selector, mtype, data)
    usable = usage in (2, 3) and selector in (0, 1) and mtype in (0, 1, 2)
    if not usable:
        expected = None
    elif usage == 3:
        expected = position == "leaf"
    elif position == "intermediate":
        expected = True
    elif position == "root":
        expected = send_root or (selector, mtype) == (1, 0)
    else:
        expected = False
    assert dane.check([rec], chain).valid is expected


@given(
    data=st.binary(min_size=0, max_size=80),
    selector=st.sampled_from([0, 1]),
    mtype=st.sampled_from([0, 1, 2]),
)
def test_random_data_never_matches(data: bytes, selector: int, mtype: int) -> None:
    for usage in (2, 3):
        assert dane.check([Tlsa(usage, selector, mtype, data)], FULL).valid is False
