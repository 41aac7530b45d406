"""Macro expansion (RFC 7208 §7), including the examples of §7.4."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.spf.errors import SpfSyntaxError
from exporter.spf.macro import (
    DOMAIN_LETTERS,
    MacroContext,
    expand,
    expand_domain,
    parse_domain_spec,
    parse_macro_string,
)

V4 = MacroContext(
    sender="strong-bad@email.example.com",
    local_part="strong-bad",
    sender_domain="email.example.com",
    domain="email.example.com",
    ip="192.0.2.3",
    client_ip="192.0.2.3",
    ip_version="in-addr",
    helo="mx.example.org",
    receiver="mx.receiver.example",
    timestamp=1700000000,
    ptr_name="mail.example.com",
)
V6 = MacroContext(
    sender="strong-bad@email.example.com",
    local_part="strong-bad",
    sender_domain="email.example.com",
    domain="email.example.com",
    ip=".".join(ipaddress.IPv6Address("2001:db8::cb01").exploded.replace(":", "").upper()),
    client_ip="2001:db8::cb01",
    ip_version="ip6",
    helo="mx.example.org",
)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [  # RFC 7208 §7.4
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%{c} %{r} %{t} %{p} %{h}", "192.0.2.3 mx.receiver.example 1700000000 mail.example.com"
         " mx.example.org"),
        ("%%%_%-", "% %20"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)  # fmt: skip
def test_rfc_examples(macro: str, expected: str) -> None:
    assert expand(parse_macro_string(macro, allow_space=True), V4) == expected


def test_ipv6_nibbles() -> None:
    ms = parse_macro_string("%{ir}.%{v}._spf.%{d2}")
    assert expand(ms, V6).lower() == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )
    assert expand(parse_macro_string("%{c}"), V6) == "2001:db8::cb01"


def test_multiple_delimiters_and_url_escape() -> None:
    ctx = MacroContext(
        sender="foo-bar+zip+quux@e12.example.com", local_part="foo-bar+zip+quux",
        sender_domain="e12.example.com", domain="e12.example.com", ip="1.2.3.4",
        client_ip="1.2.3.4", ip_version="in-addr", helo="x",
    )  # fmt: skip
    assert expand(parse_macro_string("%{l2r+-}"), ctx) == "bar.foo"
    assert expand(parse_macro_string("%{L}"), ctx) == "foo-bar%2Bzip%2Bquux"


def test_domain_truncated_from_the_left_to_253() -> None:
    long = ".".join(["a" * 60] * 5) + ".example.com"
    ctx = MacroContext(long, "x", long, long, "1.2.3.4", "1.2.3.4", "in-addr", "h")
    name = expand_domain(parse_domain_spec("%{d}"), ctx)
    assert len(name) <= 253 and name.endswith(".example.com") and not name.startswith(".")


@pytest.mark.parametrize("text", ["%", "%x", "%{", "%{d", "%{q}", "%{d0}", "%{dR.x}", "a b"])
def test_bad_macro_strings(text: str) -> None:
    with pytest.raises(SpfSyntaxError):
        parse_macro_string(text)


def test_explanation_only_letters() -> None:
    for letter in "crt":
        with pytest.raises(SpfSyntaxError):
            parse_domain_spec(f"%{{{letter}}}.example.com")
        parse_macro_string(f"%{{{letter}}}", allow_space=True)


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=80))
def test_macro_parsers_raise_only_their_own_error(text: str) -> None:
    for parse in (parse_domain_spec, lambda t: parse_macro_string(t, letters=DOMAIN_LETTERS)):
        try:
            ms = parse(text)
        except SpfSyntaxError:
            continue
        assert isinstance(expand(ms, V4), str)
