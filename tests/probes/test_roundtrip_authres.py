"""The Authentication-Results (RFC 8601) parser: examples from the RFC and the wild, and
property tests (it raises only AuthResError; rendering then parsing gives back the results;
comments anywhere CFWS is allowed change nothing)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.probes.roundtrip_authres import (
    RESULTS,
    AuthenticationResults,
    AuthResError,
    MethodResult,
    parse,
    verdicts,
)


def test_rfc8601_appendix_examples() -> None:
    # Appendix B.2: nothing was checked.
    assert parse("example.org 1; none") == AuthenticationResults("example.org", (), 1)
    # B.3: SPF with a comment in the value.
    r = parse("example.com; spf=pass smtp.mailfrom=example.net")
    assert r.results == (MethodResult("spf", "pass", properties={"smtp.mailfrom": "example.net"}),)
    # B.4: several methods, comments, a reason.
    r = parse(
        "example.com;\r\n"
        "          auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n"
        '          spf=pass smtp.mailfrom=example.net reason="sender is authorized"'
    )
    assert [(m.method, m.result) for m in r.results] == [("auth", "pass"), ("spf", "pass")]
    assert r.results[1].reason == "sender is authorized"
    assert r.results[0].properties == {"smtp.auth": "sender@example.net"}


def test_real_world_fields() -> None:
    gmail = (
        "mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=s1"
        " header.b=Ab+c/D=;\r\n       spf=pass (google.com: domain of x@example.com designates"
        " 192.0.2.1 as permitted sender) smtp.mailfrom=x@example.com;\r\n"
        "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.com"
    )
    r = parse(gmail)
    assert r.authserv_id == "mx.google.com"
    assert {m.method: m.result for m in r.results} == {"dkim": "pass", "spf": "pass",
                                                       "dmarc": "pass"}  # fmt: skip
    assert r.results[0].properties["header.b"] == "Ab+c/D="
    outlook = (
        "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; dkim=none (message not"
        " signed) header.d=none;dmarc=fail action=oreject header.from=example.com;"
    )
    # Microsoft omits the authserv-id: the first segment is then a result, which the RFC
    # grammar does not allow; the parser says so rather than guessing.
    with pytest.raises(AuthResError):
        parse(outlook)
    assert parse("mx.example; " + outlook).result_of("dmarc") == "fail"


def test_verdicts_pick_the_topmost_parseable_field_and_any_dkim_pass() -> None:
    fields = [
        "garbage ((",
        "receiver.example; dkim=fail header.d=a.example; dkim=pass header.d=b.example;"
        " spf=softfail smtp.mailfrom=a.example",
        "earlier.hop; dmarc=pass",
    ]
    found, parsed = verdicts(fields)
    assert found == {"dkim": "pass", "spf": "softfail"}
    assert parsed is not None and parsed.authserv_id == "receiver.example"
    assert verdicts([]) == ({}, None)
    assert verdicts(["x; dkim=fail; dkim=neutral"])[0] == {"dkim": "fail"}


@pytest.mark.parametrize(
    "bad",
    ["", ";", "example.com", "example.com;", "example.com; spf", "example.com; spf=",
     'example.com; spf=pass reason="unterminated', "example.com (unclosed; spf=pass",
     "example.com; spf=pass )", "example.com; spf=pass smtp.mailfrom", "a b c; spf=pass",
     "example.com; =pass", "example.com; spf=pass header.d=\"x\"y"],
)  # fmt: skip
def test_malformed_fields_raise_authres_error(bad: str) -> None:
    with pytest.raises(AuthResError):
        parse(bad)


def test_huge_version_numbers_are_not_a_crash() -> None:
    with pytest.raises(AuthResError):
        parse("example.com " + "9" * 5000 + "; spf=pass")
    with pytest.raises(AuthResError):
        parse("example.com; spf/" + "9" * 5000 + "=pass")


# ----- properties -----------------------------------------------------------------------------


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_arbitrary_text_raises_only_authres_error(value: str) -> None:
    try:
        result = parse(value)
    except AuthResError:
        return
    assert isinstance(result, AuthenticationResults)


ALPHABET = st.sampled_from(list(' ;=()"\\./@abcspfdkim0129-\r\n\t'))


@given(st.lists(ALPHABET, max_size=120).map("".join))
@settings(max_examples=300)
def test_structural_characters_raise_only_authres_error(value: str) -> None:
    with contextlib.suppress(AuthResError):
        parse(value)


LOWER = "abcdefghijklmnopqrstuvwxyz"
keyword = st.text(LOWER + "0123456789", min_size=1, max_size=10)
ptoken = st.text(LOWER + "ABCXYZ0123456789@._+/=-", min_size=1, max_size=20)
props = st.dictionaries(
    st.tuples(st.sampled_from(["smtp", "header", "body", "policy"]), keyword).map(".".join),
    ptoken,
    max_size=3,
)
method_results = st.builds(
    MethodResult,
    method=st.sampled_from(["spf", "dkim", "dmarc", "arc", "auth", "iprev"]),
    result=st.sampled_from(RESULTS),
    version=st.none() | st.integers(1, 9),
    reason=st.none()
    | st.text(st.characters(codec="ascii", exclude_characters="\r\n\0"), max_size=20),
    properties=props,
)
comments = st.sampled_from(["", " ", " (a comment) ", "(nested (comment; x=y))", "\r\n\t"])


def render(ar: AuthenticationResults, c: list[str]) -> str:
    def cm(i: int) -> str:
        return c[i % len(c)] if c else ""

    out = f"{ar.authserv_id}{' ' + str(ar.version) if ar.version else ''}"
    if not ar.results:
        return out + f"{cm(0)};{cm(1)}none"
    for i, m in enumerate(ar.results):
        out += f"{cm(i)};{cm(i + 1)}{m.method}"
        if m.version is not None:
            out += f"/{m.version}"
        out += f"{cm(i + 2)}={cm(i + 3)}{m.result}"
        if m.reason is not None:
            quoted = m.reason.replace("\\", "\\\\").replace('"', '\\"')
            out += f' {cm(i)}reason="{quoted}"'
        for k, v in m.properties.items():
            out += f" {cm(i + 1)}{k}={v}"
    return out


@given(
    st.builds(
        AuthenticationResults,
        authserv_id=st.lists(st.text(LOWER, min_size=1, max_size=8), min_size=1, max_size=3).map(
            ".".join
        ),
        results=st.lists(method_results, max_size=5).map(tuple),
        version=st.none() | st.integers(1, 9),
    ),
    st.lists(comments, max_size=4),
)
@settings(max_examples=200)
def test_render_then_parse_round_trips(ar: AuthenticationResults, c: list[str]) -> None:
    assert parse(render(ar, c)) == ar
