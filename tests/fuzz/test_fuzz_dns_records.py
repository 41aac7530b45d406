"""Fuzzing the parsers of DNS-published records (SPF, DMARC, DKIM keys) with hypothesis.

The property everywhere: whatever the text, a parser returns a result that satisfies its own
invariants or raises its own error (``SpfSyntaxError``, ``DmarcSyntaxError``, ``DkimKeyError``)
and nothing else. Inputs mix the grammar's own tokens (so that examples get deep into the
parser) with arbitrary text and bytes. SPF evaluation is fuzzed too: a fuzzed record is served by
a real loopback DNS server and ``check_host()`` must return one of the seven RFC 7208 results.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x448
from dnsserver import DnsServer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.probes.dns.dkim import DkimKeyError, parse_key, parse_tags
from exporter.probes.dns.dmarc import POLICIES, DmarcSyntaxError, parse_dmarc
from exporter.spf.errors import SpfSyntaxError
from exporter.spf.evaluate import RESULTS, check_host
from exporter.spf.macro import parse_macro_string
from exporter.spf.parser import MECHANISMS, parse_record

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----- SPF ------------------------------------------------------------------------------------

_SPF_TOKENS = st.sampled_from(
    [
        "all", "-all", "~all", "?all", "+all", "include:", "include:_spf.example.test",
        "a", "a:", "a/24", "a//64", "a:mail.example.test/0//0", "a/33", "a//129", "a/024",
        "mx", "mx:example.test/16", "mx/", "ptr", "ptr:example.test", "exists:%{i}.x.test",
        "ip4:192.0.2.1", "ip4:192.0.2.0/24", "ip4:256.0.0.1", "ip4:1.2.3", "ip4:192.0.2.1/33",
        "ip6:2001:db8::/32", "ip6:::1", "ip6:2001:db8::1//64", "ip6:fe80::1%eth0", "ip6:",
        "redirect=_spf.example.test", "redirect=", "exp=explain.%{d}", "exp=%{", "foo=bar",
        "%{ir}.%{v}._spf.%{d2}", "%{l1r-}", "%{o}", "%{h}", "%{c}", "%{r}", "%{t}", "%{x}",
        "%%", "%_", "%-", "%", "{", "}", ":", "/", "//", "=", ".", "..", "-", "+", "~", "?",
    ]
)  # fmt: skip
_SPF_TEXT = st.lists(
    _SPF_TOKENS | st.text(max_size=12) | st.text("ai:%{}./=-+~?0123456789", max_size=10),
    max_size=20,
).map(lambda parts: "v=spf1 " + " ".join(parts))


@FUZZ
@given(st.one_of(_SPF_TEXT, st.text(max_size=200), _SPF_TEXT.map(lambda t: t.replace(" ", ""))))
@example("v=spf1 ip4:192.0.2.1/0000000000000000000033")
@example("v=spf1 " + "a:" + "x." * 200 + "test")
def test_spf_parser_raises_only_its_own_error(text: str) -> None:
    try:
        record = parse_record(text)
    except SpfSyntaxError:
        return
    assert all(m.kind in MECHANISMS for m in record.mechanisms)
    assert all(0 <= m.cidr4 <= 32 and 0 <= m.cidr6 <= 128 for m in record.mechanisms)
    assert sum(1 for m in record.modifiers if m.name == "redirect") <= 1


@FUZZ
@given(st.text(max_size=60) | st.lists(_SPF_TOKENS, max_size=6).map("".join))
def test_spf_macro_parser_raises_only_its_own_error(text: str) -> None:
    with contextlib.suppress(SpfSyntaxError):
        parse_macro_string(text)


@pytest.fixture(scope="module")
def spf_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    server.add_txt("included.test", "v=spf1 ip4:198.51.100.0/24 -all")
    server.add("mail.fuzz.test", "A", "192.0.2.25")
    server.add("fuzz.test", "MX", "10 mail.fuzz.test.")
    try:
        yield server
    finally:
        server.stop()


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    _SPF_TEXT,
    st.sampled_from(["192.0.2.25", "198.51.100.7", "2001:db8::1", "203.0.113.9"]),
    st.sampled_from(["postmaster@fuzz.test", "fuzz.test", "a.b@fuzz.test", "@fuzz.test", ""]),
)
def test_check_host_on_fuzzed_records(
    spf_server: DnsServer, text: str, ip: str, sender: str
) -> None:
    """A fuzzed record served over real DNS: check_host() always ends in one of its results."""
    spf_server.records.pop("fuzz.test", None)
    spf_server.add("fuzz.test", "MX", "10 mail.fuzz.test.")
    spf_server.add_txt("fuzz.test", text)

    async def run() -> str:
        resolver = make_resolver([spf_server.address], attempt_timeout=1, lifetime=1)
        res = await check_host(DnsClient(resolver), ip, sender, "fuzz.test", domain="fuzz.test")
        return res.result

    assert asyncio.run(run()) in RESULTS


# ----- DMARC ----------------------------------------------------------------------------------

_DMARC_TAG = st.sampled_from(
    [
        "p",
        "sp",
        "np",
        "pct",
        "rua",
        "ruf",
        "adkim",
        "aspf",
        "fo",
        "rf",
        "ri",
        "v",
        "P",
        " p ",
        "",
        "psd",
        "t",
        "T",
    ]
)
_DMARC_VALUE = st.sampled_from(
    [
        "none", "quarantine", "reject", "Reject", "0", "100", "101", "-1", "050", "1:0:d:s",
        "x", "afrf", "afrf:iodef", "86400", "99999999999", "mailto:a@example.test",
        "mailto:a@example.test!10m,mailto:b@other.test", "https://r.test/x", "mailto:", ",,", "",
        "s", "r", "=", ";", "y", "n", "u", "Y",
    ]
) | st.text(max_size=15)  # fmt: skip
_DMARC_TEXT = st.lists(st.tuples(_DMARC_TAG, _DMARC_VALUE), max_size=12).map(
    lambda tags: "v=DMARC1; " + "; ".join(f"{k}={v}" for k, v in tags)
)


@FUZZ
@given(_DMARC_TEXT | st.text(max_size=120) | _DMARC_TEXT.map(lambda t: t.replace(";", "")))
@example("v=DMARC1; pct=\u00b2")  # "²".isdigit() is true, int("²") raises
def test_dmarc_parser_raises_only_its_own_error(text: str) -> None:
    try:
        rec = parse_dmarc(text)
    except DmarcSyntaxError:
        return
    assert rec.policy in (None, *POLICIES)
    assert rec.subdomain_policy in (None, *POLICIES)
    assert rec.nonexistent_policy in (None, *POLICIES)
    assert all(rec.effective(tag) in POLICIES for tag in ("p", "sp", "np"))
    assert rec.psd in ("y", "n", "u")
    assert isinstance(rec.testing, bool)
    assert set(rec.removed) <= {"pct", "rf", "ri"}
    assert 0 <= rec.pct <= 100
    assert all(isinstance(u, str) for u in rec.rua + rec.ruf)


# ----- DKIM -----------------------------------------------------------------------------------


def _der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


_REAL_KEYS = [
    _der(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()),
    _der(ec.generate_private_key(ec.SECP256R1()).public_key()),
    _der(x448.X448PrivateKey.generate().public_key()),
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
]


@st.composite
def _mutated_key(draw: st.DrawFn) -> bytes:
    """A real public key's bytes with a few bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(_REAL_KEYS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


_P_VALUE = st.one_of(
    _mutated_key().map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
    st.text("ABCDEFabcdef0123456789+/= \t", max_size=40),
    st.text(max_size=20),
)
_DKIM_TEXT = st.builds(
    lambda pre, k, t, p, post: "; ".join(x for x in (pre, k, t, f"p={p}", post) if x is not None),
    st.sampled_from([None, "v=DKIM1", "v=DKIM2", "v=", "h=sha256"]),
    st.sampled_from([None, "k=rsa", "k=ed25519", "k=RSA", "k=dsa", "k="]),
    st.sampled_from([None, "t=y", "t=s", "t=y:s", "t=", "t=::"]),
    _P_VALUE,
    st.sampled_from([None, "", "n=notes", "s=email", "p=dup", "=x", "a b=c"]),
)


# The well-formed DER of an X448 key whose algorithm OID is changed to one no one knows:
# cryptography raises UnsupportedAlgorithm (not a ValueError) for it.
_UNKNOWN_OID_KEY = base64.b64encode(
    _REAL_KEYS[2].replace(b"\x06\x03\x2b\x65\x6f", b"\x06\x03\x2b\x65\x63")
).decode()


@FUZZ
@given(_DKIM_TEXT | st.text(max_size=100))
@example(f"v=DKIM1; k=rsa; p={_UNKNOWN_OID_KEY}")
def test_dkim_key_parser_raises_only_its_own_error(text: str) -> None:
    try:
        key = parse_key(text)
    except DkimKeyError:
        return
    assert key.revoked == (key.bits == 0)
    assert key.key_type in ("rsa", "ed25519") or key.revoked


def test_dkim_key_of_an_unknown_algorithm_is_invalid_not_a_crash() -> None:
    """Found by the fuzzer: a DER key with an unknown algorithm OID escaped as
    ``UnsupportedAlgorithm`` and failed the whole dns probe as an internal error."""
    with pytest.raises(DkimKeyError, match="does not hold a DER-encoded RSA public key"):
        parse_key(f"v=DKIM1; k=rsa; p={_UNKNOWN_OID_KEY}")


@FUZZ
@given(st.text(max_size=80))
def test_dkim_tag_list_parser_raises_only_its_own_error(text: str) -> None:
    try:
        tags = parse_tags(text)
    except DkimKeyError:
        return
    assert all(name and "=" not in name for name in tags)
