"""The SPF record grammar: examples from RFC 7208 and property tests on arbitrary text."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.spf.errors import SpfSyntaxError
from exporter.spf.parser import Mechanism, is_spf_record, parse_mechanism, parse_record


def test_record_selection_version_tag() -> None:
    assert is_spf_record("v=spf1")
    assert is_spf_record("V=SpF1 -all")
    assert not is_spf_record("v=spf10")
    assert not is_spf_record("v=spf1mx")
    assert not is_spf_record(" v=spf1 -all")


def test_full_record() -> None:
    rec = parse_record(
        "v=spf1  +a mx/24 ~ptr:Example.com ?ip4:192.0.2.0/24 -ip6:2001:db8::/32"
        " include:_spf.%{d} exists:%{ir}.%{l1r-}.e.example.com redirect=_spf.example.com"
        " exp=explain._spf.%{d} foo.bar-1=%{s}xyz -all "
    )
    kinds = [(m.qualifier, m.kind) for m in rec.mechanisms]
    assert kinds == [
        ("+", "a"), ("+", "mx"), ("~", "ptr"), ("?", "ip4"), ("-", "ip6"), ("+", "include"),
        ("+", "exists"), ("-", "all"),
    ]  # fmt: skip
    assert rec.mechanisms[1].cidr4 == 24 and rec.mechanisms[1].cidr6 == 128
    assert rec.mechanisms[3].network == ipaddress.ip_network("192.0.2.0/24")
    assert rec.redirect is not None and rec.redirect.value.text == "_spf.example.com"
    assert rec.exp is not None and rec.exp.value.letters == {"d"}
    assert [m.name for m in rec.modifiers] == ["redirect", "exp", "foo.bar-1"]
    assert rec.all is not None and rec.all.result == "fail"


def test_dual_cidr_and_names_with_colons() -> None:
    m = parse_mechanism("a:foo:bar/baz.example.com")
    assert m.domain is not None and m.domain.text == "foo:bar/baz.example.com"
    m = parse_mechanism("mx:example.com/24//64")
    assert (m.cidr4, m.cidr6) == (24, 64)
    m = parse_mechanism("A//0")
    assert (m.kind, m.cidr4, m.cidr6, m.domain) == ("a", 32, 0, None)


@pytest.mark.parametrize(
    "term",
    [
        "all.", "all:x", "-all/8", "ptr/0", "ptr:", "a:", "a/33", "a//129", "a/024", "a/24/64",
        "a:museum", "a:museum.", "a:abc.123", "a:example.-com", "a:example.com:8080",
        "include", "include:", "include:a.example.com/24", "exists", "exists:a.example.com/24",
        "ip4", "ip4:1.2.3", "ip4:1.2.3.4:8080", "ip4:1.2.3.4//32", "ip4:1.2.3.4/33",
        "ip4:1.2.3.4/032", "ip4:01.2.3.4", "ip6", "ip6::CAFE::BABE", "ip6:::1/129",
        "ip6:::1//33", "ip6:fe80::1%eth0", "redirect:example.com", "foo", "=all",
        "a:%{x}.example.com", "a:%{c}.example.com", "a:%{d0}", "a:foo%.example.com",
        "a:%(ir).example.com", "exists:foo\x00.example.com", "a:foo\u00e9.example.com",
    ],
)  # fmt: skip
def test_bad_mechanisms(term: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_mechanism(term)


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 ip4:1.2.3.4 -all moo",
        "v=spf1 moo.cow/far_out=man:dog/cat",
        "v=spf1 1up=foo",
        "v=spf1 redirect=a.example.com redirect=a.example.com",
        "v=spf1 exp=a.example.com exp=b.example.com",
        "v=spf1 exp=",
        "v=spf1 redirect=-all",
        "v=spf1 foo=%abc",
        "v=spf1 exp=%{r}.example.com",
        "v=spf1 a:ctrl.example.com\rptr -all",
        "v=spf1 \u0096all",
        "spf1 -all",
    ],
)
def test_bad_records(record: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_record(record)


def test_unknown_modifiers_and_macros_allowed() -> None:
    rec = parse_record("v=spf1 default=+ moo.cow-far_out=man:dog/cat x=%{c}%{t}%{r}%%%_%-")
    assert [m.name for m in rec.modifiers] == ["default", "moo.cow-far_out", "x"]
    assert rec.mechanisms == ()


def test_domain_end_may_be_a_macro_or_toplabel_with_dash() -> None:
    for term in ("a:%{d}", "a:foo%%", "a:foo.example.xn--zckzah", "a:x.123-456", "a:%{d}.com."):
        assert isinstance(parse_mechanism(term), Mechanism)


# ----- properties -------------------------------------------------------------------------------

SPF_ALPHABET = st.sampled_from(
    [*"v=spf1 +-~?:/.%{}_,=", "all", "a", "mx", "ptr", "ip4", "ip6", "include", "exists",
    "redirect", "exp", "%{d}", "%{ir}", "1.2.3.4", "::1", "/24", "//64", "example.com", "\x00",
    "\u00e9", "\t", "\r\n", "%{l2r-}", "%{D}", "0", "99999"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.text())
def test_parse_record_raises_only_its_own_error_on_any_text(text: str) -> None:
    try:
        rec = parse_record(text)
    except SpfSyntaxError:
        return
    assert is_spf_record(text) and text.isascii()
    assert all(m.kind for m in rec.mechanisms)


@settings(max_examples=1500, deadline=None)
@given(st.lists(SPF_ALPHABET, max_size=40).map("".join))
def test_parse_record_on_spf_like_text(body: str) -> None:
    text = "v=spf1 " + body
    try:
        rec = parse_record(text)
    except SpfSyntaxError:
        return
    # What parses re-parses to the same terms when rebuilt from its own term texts.
    rebuilt = " ".join(
        ["v=spf1", *(m.text for m in rec.mechanisms), *(m.text for m in rec.modifiers)]
    )
    again = parse_record(rebuilt)
    assert [m.text for m in again.mechanisms] == [m.text for m in rec.mechanisms]


@settings(max_examples=1000, deadline=None)
@given(st.lists(SPF_ALPHABET | st.characters(), max_size=30).map("".join))
def test_parse_mechanism_raises_only_its_own_error(term: str) -> None:
    try:
        mech = parse_mechanism(term)
    except SpfSyntaxError:
        return
    assert mech.qualifier in "+-~?"
