"""Fuzzing the mail-protocol parsers with hypothesis: Authentication-Results (RFC 8601) and SMTP
reply lines and EHLO keywords (RFC 5321). Whatever the input, a parser returns a result that
satisfies its invariants or raises its own error (``AuthResError``, ``SmtpProtocolError``)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.net.smtp import Reply, SmtpProtocolError, parse_ehlo, parse_reply_line
from exporter.probes.roundtrip_authres import METHODS, AuthResError, parse, verdicts

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----- Authentication-Results -----------------------------------------------------------------

_AR_TOKENS = st.sampled_from(
    [
        "mx.example.test", "mx.example.test 1", '"quoted id"', ";", " ; ", "none", "spf=pass",
        "dkim=fail", "dmarc=pass", "dkim/1=pass", "spf = softfail", "x-custom=whatever",
        "smtp.mailfrom=a@b.test", "header.d=example.test", "header.i=@example.test",
        "header.b=abc/def+", "policy.dmarc=reject", "reason=\"bad sig\"", "reason=x",
        "(comment)", "(nested (comment))", "(unterminated", ")", '"unterminated', '"a\\"b"',
        "\\", "=", "==", ".", "header.", "\r\n\t", " ", "", "arc=pass", "dmarc=PASS (p=REJECT)",
    ]
)  # fmt: skip
_AR_TEXT = st.lists(_AR_TOKENS | st.text(max_size=8), max_size=25).map(" ".join)


@FUZZ
@given(_AR_TEXT | st.text(max_size=200))
@example("mx.test; spf=pass (" + "(" * 500 + ")" * 500 + ") smtp.mailfrom=a@b")
@example("mx.test; " + "dkim=pass header.d=x " * 300)
@example('mx.test; reason="' + "\\" * 1001)
def test_authentication_results_parser_raises_only_its_own_error(text: str) -> None:
    try:
        parsed = parse(text)
    except AuthResError:
        return
    assert isinstance(parsed.authserv_id, str)
    for r in parsed.results:
        assert r.method == r.method.lower() and r.result == r.result.lower()
        assert r.method and r.result


@FUZZ
@given(st.lists(_AR_TEXT | st.text(max_size=60), max_size=5))
def test_verdicts_never_raise(fields: list[str]) -> None:
    found, parsed = verdicts(fields)
    assert set(found) <= set(METHODS)
    assert (parsed is None) == all(_fails(f) for f in fields)


def _fails(field: str) -> bool:
    try:
        parse(field)
    except AuthResError:
        return True
    return False


# ----- SMTP replies ---------------------------------------------------------------------------

_REPLY = st.builds(
    lambda code, sep, text, end: code + sep + text + end,
    st.sampled_from([b"220", b"250", b"421", b"554", b"999", b"000", b"22", b"2200", b"abc", b""]),
    st.sampled_from([b" ", b"-", b"", b"\t", b"  "]),
    st.binary(max_size=40) | st.text(max_size=40).map(str.encode),
    st.sampled_from([b"\r\n", b"\n", b"", b"\r", b"\r\n\r\n"]),
)


@FUZZ
@given(_REPLY | st.binary(max_size=100))
@example(b"250-" + b"x" * 100_000 + b"\r\n")
def test_smtp_reply_line_parser_raises_only_its_own_error(line: bytes) -> None:
    try:
        code, last, text = parse_reply_line(line)
    except SmtpProtocolError as exc:
        assert "malformed SMTP reply line" in str(exc)
        assert len(str(exc)) < 200  # the shown part of the line is bounded
        return
    assert 0 <= code <= 999
    assert isinstance(last, bool) and isinstance(text, str)


@FUZZ
@given(st.integers(0, 999), st.lists(st.text(max_size=40), max_size=30))
def test_ehlo_keywords_never_raise(code: int, lines: list[str]) -> None:
    keywords = parse_ehlo(Reply(code, tuple(lines)))
    assert all(k == k.upper() and k and " " not in k for k in keywords)
