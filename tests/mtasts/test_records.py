"""The _mta-sts (RFC 8461 §3.1) and _smtp._tls (RFC 8460 §3) TXT records: the grammar's edges,
what senders make of an RRset, and hypothesis: only the parser's own error escapes."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.mtasts import (
    StsRecordError,
    TlsRptError,
    discover_sts,
    discover_tlsrpt,
    parse_sts_record,
    parse_tlsrpt_record,
)

# ----- _mta-sts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "policy_id"),
    [
        ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),  # RFC 8461 §3.1's example
        ("v=STSv1;id=abc", "abc"),
        ("v=STSv1 ;\tid=abc", "abc"),  # *WSP ";" *WSP
        ("v=STSv1; id=" + "a1" * 16, "a1" * 16),  # 32 characters
        ("v=STSv1; ext=x!y; id=Z9", "Z9"),  # an unknown field before id
        ("v=STSv1; id=a; id=b", "a"),  # a repeat counts once, the first
        ("v=STSv1; id=a; id=not-valid", "a"),  # and is not looked at
    ],
)
def test_valid_sts_record(text: str, policy_id: str) -> None:
    assert parse_sts_record(text).id == policy_id


def test_sts_record_keeps_extensions_and_notes_repeats() -> None:
    record = parse_sts_record("v=STSv1; id=1; foo=bar; id=2")
    assert record.extensions == (("foo", "bar"),)
    assert record.notes and "repeated id" in record.notes[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=STSv1", "no id= field"),
        ("v=STSv1;", "no id= field"),
        ("v=STSv1; ID=abc", "case-sensitive"),
        ("V=STSv1; id=abc", "does not begin with"),
        (" v=STSv1; id=abc", "does not begin with"),
        ("v=STSv2; id=abc", "does not begin with"),
        ("v=STSv10; id=abc", "expected ';'"),
        ("v=STSv1 id=abc", "expected ';'"),
        ("v=STSv1; id=abc ", "whitespace at the end"),
        ("v=STSv1;; id=abc", "malformed field"),
        ("v=STSv1; id=", "has no value"),
        ("v=STSv1; id=a-b", "1 to 32 letters and digits"),
        ("v=STSv1; id=" + "a" * 33, "1 to 32 letters and digits"),
        ("v=STSv1; id=abc; x=a b", "outside printable ASCII"),
        ("v=STSv1; id=abc; x=é", "outside printable ASCII"),
        ("v=STSv1; id=abc; _x=1", "malformed field"),
        ("v=STSv1; id=abc; " + "x" * 33 + "=1", "malformed field"),
    ],
)
def test_invalid_sts_record(text: str, message: str) -> None:
    with pytest.raises(StsRecordError, match=message):
        parse_sts_record(text)


def test_discover_sts() -> None:
    assert discover_sts([]).status == "absent"
    assert discover_sts(["v=spf1 -all", "google-site-verification=x"]).status == "absent"
    found = discover_sts(["v=spf1 -all", "v=STSv1; id=1"])
    assert (found.status, found.record and found.record.id) == ("valid", "1")

    two = discover_sts(["v=STSv1; id=1", "v=STSv1; id=2"])
    assert two.status == "duplicate" and two.record is None and len(two.claims) == 2
    # A duplicate even when one of them is broken: both begin with "v=STSv1;".
    assert discover_sts(["v=STSv1; id=1", "v=STSv1; id=-"]).status == "duplicate"

    bad = discover_sts(["v=STSv1; id=not valid"])
    assert bad.status == "invalid" and bad.text == "v=STSv1; id=not valid"


def test_discover_sts_lookalikes() -> None:
    # Senders discard records that do not begin with "v=STSv1;" ...
    beside = discover_sts(["V=STSv1; id=2", "v=STSv1; id=1", "v=STSv1"])
    assert beside.status == "valid" and beside.ignored == ("V=STSv1; id=2", "v=STSv1")
    # ... so alone, a look-alike is an invalid record, with the reason the parser gives.
    alone = discover_sts(["v=stsv1; id=1"])
    assert alone.status == "invalid" and "does not begin" in alone.error
    bare = discover_sts(["v=STSv1"])
    assert bare.status == "invalid" and "no id= field" in bare.error
    no_semicolon = discover_sts(["v=STSv1 id=1"])
    assert no_semicolon.status == "invalid" and "expected ';'" in no_semicolon.error


# ----- _smtp._tls ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rua"),
    [
        ("v=TLSRPTv1; rua=mailto:reports@example.com", ("mailto:reports@example.com",)),
        ("v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt", ("https://reporting.example.com/v1/tlsrpt",)),
        (
            "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.net:8443/x?y=1 ; ",
            ("mailto:a@example.com", "https://r.example.net:8443/x?y=1"),
        ),
        ("v=TLSRPTv1; rua=MAILTO:tls+rpt@Example.COM;", ("MAILTO:tls+rpt@Example.COM",)),
        ("v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com", ("mailto:tls%2Brpt@example.com",)),
        ("v=TLSRPTv1; rua=https://[2001:db8::1]/r", ("https://[2001:db8::1]/r",)),
        ("v=TLSRPTv1; rua=mailto:a@example.com; rua=bogus", ("mailto:a@example.com",)),
        ("v=TLSRPTv1 ; ext=1; rua=mailto:a@example.com", ("mailto:a@example.com",)),
    ],
)  # fmt: skip
def test_valid_tlsrpt_record(text: str, rua: tuple[str, ...]) -> None:
    assert parse_tlsrpt_record(text).rua == rua


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=TLSRPTv1", "no rua= field"),
        ("v=TLSRPTv1; RUA=mailto:a@example.com", "case-sensitive"),
        ("v=tlsrptv1; rua=mailto:a@example.com", "does not begin with"),
        ("v=TLSRPTv1; rua=http://example.com/r", "only mailto: and https:"),
        ("v=TLSRPTv1; rua=ftp://example.com/r", "only mailto: and https:"),
        ("v=TLSRPTv1; rua=reports@example.com", "only mailto: and https:"),
        ("v=TLSRPTv1; rua=mailto:reports", "one address"),
        ("v=TLSRPTv1; rua=mailto:@example.com", "one address"),
        ("v=TLSRPTv1; rua=mailto:a@localhost", "one address"),
        ("v=TLSRPTv1; rua=https:/relative/path", "https:// URI with a host"),
        ("v=TLSRPTv1; rua=https://", "https:// URI with a host"),
        ("v=TLSRPTv1; rua=https://example.com:99999/", "Port out of range"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,", "empty URI"),
        ("v=TLSRPTv1; rua=mailto:a b@example.com", "may not contain"),
        ("v=TLSRPTv1; rua=mailto:a!b@example.com", "may not contain"),
        ("v=TLSRPTv1; rua=mailto:a%ff@example.com", "not UTF-8"),
        ("v=TLSRPTv1; rua=mailto:a@example.com x", "may not contain"),
        ("v=TLSRPTv1; rua=mailto:a@example.com ", "whitespace at the end"),
    ],
)
def test_invalid_tlsrpt_record(text: str, message: str) -> None:
    with pytest.raises(TlsRptError, match=message):
        parse_tlsrpt_record(text)


def test_discover_tlsrpt() -> None:
    assert discover_tlsrpt(["v=spf1 -all"]).status == "absent"
    ok = discover_tlsrpt(["v=TLSRPTv1; rua=mailto:tls@example.com"])
    assert ok.status == "valid" and ok.record is not None
    dup = discover_tlsrpt(
        ["v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1;rua=mailto:b@example.com"]
    )
    assert dup.status == "duplicate"
    bad = discover_tlsrpt(["v=TLSRPTv1; rua=http://example.com"])
    assert bad.status == "invalid" and "mailto" in bad.error


# ----- properties ------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [*"v=STSv1TLSRPTidrua;:,@./ \t-_*!%ëé\x00\r\n", "mailto:", "https://", "v=STSv1; id="]
)
_TEXTS = st.one_of(st.text(max_size=80), st.lists(_ALPHABET, max_size=30).map("".join))
PROPS = settings(max_examples=400, deadline=None)


@PROPS
@given(_TEXTS)
@example("v=STSv1; id=%")
def test_sts_record_raises_only_its_own_error(text: str) -> None:
    try:
        record = parse_sts_record(text)
    except StsRecordError as exc:
        assert str(exc)
        return
    assert 1 <= len(record.id) <= 32 and record.id.isascii() and record.id.isalnum()


@PROPS
@given(_TEXTS)
@example("v=TLSRPTv1; rua=https://[::1")
@example("v=TLSRPTv1; rua=mailto:%")
def test_tlsrpt_record_raises_only_its_own_error(text: str) -> None:
    try:
        record = parse_tlsrpt_record(text)
    except TlsRptError as exc:
        assert str(exc)
        return
    assert record.rua
    assert all(u.lower().startswith(("mailto:", "https://")) for u in record.rua)


@PROPS
@given(st.lists(_TEXTS, max_size=4))
def test_discovery_never_raises(texts: list[str]) -> None:
    for found in (discover_sts(texts), discover_tlsrpt(texts)):
        assert found.status in ("absent", "valid", "invalid", "duplicate")
        assert (found.record is not None) == (found.status == "valid")
        assert bool(found.error) == (found.status in ("invalid", "duplicate"))


@PROPS
@given(
    st.text("abcXYZ0189", min_size=1, max_size=32),
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True).filter(lambda n: n != "id"),
            st.from_regex(r"[!-:<>-~]{1,12}", fullmatch=True),
        ),
        max_size=3,
    ),
    st.sampled_from([";", "; ", " ;\t", "\t;"]),
    st.booleans(),
)
def test_generated_sts_records_parse(
    policy_id: str, extensions: list[tuple[str, str]], delim: str, final: bool
) -> None:
    """Any record the grammar generates parses, with its id."""
    fields = [f"id={policy_id}", *(f"{k}={v}" for k, v in extensions)]
    text = "v=STSv1" + "".join(delim + f for f in fields) + (";" if final else "")
    record = parse_sts_record(text)
    assert record.id == policy_id and list(record.extensions) == extensions
