"""exporter/redact.py: registered secrets go in every form they travel in, wherever they stand
in a text; credential material goes even unregistered; other text is left alone."""

from __future__ import annotations

import base64
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from exporter.redact import REDACTED, Redactor, scrub_sasl

SECRET = "s3cr3t-Pa55-c0de"
USER = "probe@example.test"


def redactor(*secrets: str) -> Redactor:
    r = Redactor()
    r.add(secrets)
    return r


def forms(secret: str) -> list[str]:
    data = secret.encode()
    return [
        secret,
        base64.b64encode(data).decode(),
        base64.b64encode(b"\0" + USER.encode() + b"\0" + data).decode(),
        base64.b64encode(b"\0\0" + data).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    ]


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@given(_TEXT, _TEXT, st.sampled_from(forms(SECRET)), st.integers(0, 3))
def test_every_form_of_a_secret_goes_wherever_it_stands(
    before: str, after: str, form: str, cut: int
) -> None:
    r = redactor(SECRET)
    out = r.redact(before + form + after)
    assert SECRET not in out and form not in out
    # An echo that starts in the middle of a base64 string still goes.
    if form != SECRET and len(form) > 24:
        echoed = r.redact(f"{before} {form[cut:]} {after}")
        assert form[cut:] not in echoed


@given(st.text(max_size=300))
def test_redact_never_raises_and_never_adds_a_secret(text: str) -> None:
    out = redactor(SECRET, "another-secret-value").redact(text)
    assert isinstance(out, str)
    assert SECRET not in out


def test_unregistered_credential_material() -> None:
    r = Redactor()
    text = (
        "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/ses/"
        "aws4_request, SignedHeaders=host, Signature=0123abcd\n"
        "X-Amz-Security-Token: FwoGZXIvYXdzEXAMPLETOKEN\nkey ASIAIOSFODNN7EXAMPLE\n"
        "GET /?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2024&X-Amz-Signature=beef HTTP/1.1\n"
        "Cookie: session=abc"
    )
    out = r.redact(text)
    for leak in ("AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE", "FwoGZXIvYXdzEXAMPLETOKEN",
                 "0123abcd", "beef", "session=abc"):  # fmt: skip
        assert leak not in out, (leak, out)
    assert out.startswith("Authorization: " + REDACTED)


def test_plain_text_is_left_alone() -> None:
    r = redactor(SECRET)
    text = "535 5.7.8 Authentication credentials invalid; certificate expired 2024-01-01"
    assert r.redact(text) == text
    dkim = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256))).decode()
    assert r.redact(dkim) == dkim


def test_short_values_are_not_registered() -> None:
    r = redactor("abc")
    assert r.redact("abcdef abc") == "abcdef abc"


def test_a_secret_that_is_not_utf8() -> None:
    raw = b"bad-file-SECRET-\xe9\xff-pw"
    r = redactor(raw.decode("utf-8", "surrogateescape"))
    for shown in (raw.decode("latin-1"), raw.decode("utf-8", "replace"), "bad-file-SECRET-",
                  base64.b64encode(raw).decode()):  # fmt: skip
        assert "bad-file-SECRET-" not in r.redact(f"x {shown} y")


_PIECES = st.sampled_from(
    [
        *forms(SECRET),
        "Cookie: a=b",
        "AKIAIOSFODNN7EXAMPLE1",
        "token",
        "plain",
        "v=DKIM1; p=MIIB",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "auth\tLogin ",
        "Authentication-Results: x; auth=pass",
        "AUTH PLAIN command",
        "authenticate XOAUTH2 dXNlcj1h",
    ]
)


@given(st.lists(st.one_of(_TEXT, _PIECES, st.tuples(_TEXT, _PIECES).map("".join)), max_size=6))
def test_clean_only_when_redact_changes_no_text(texts: list[str]) -> None:
    for r in (Redactor(), redactor(SECRET)):
        if r.clean(texts):
            assert all(r.redact(t) == t for t in texts)


def test_clean_texts() -> None:
    dkim = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256))).decode()
    texts = ["pass via ip4:198.18.0.6", dkim, "", "10 mx.example.com"]
    assert redactor(SECRET).clean(texts) and Redactor().clean(texts)
    assert not Redactor().clean([*texts, "Cookie: a=b"])
    assert not redactor(SECRET).clean([*texts, forms(SECRET)[2]])


def plain(user: bytes, password: bytes, authzid: bytes = b"") -> str:
    return base64.b64encode(authzid + b"\0" + user + b"\0" + password).decode()


def test_sasl_initial_responses_go_unregistered() -> None:
    """A remote server's reply quoting the client's AUTH command (Postfix puts it in a
    deferral reason): the credentials were never read by the exporter, so never registered."""
    r = Redactor()
    token = plain(b"alice", b"secret")
    assert token == "AGFsaWNlAHNlY3JldA=="
    for text, shown in [
        (f"535 5.7.8 AUTH PLAIN {token} rejected", f"535 5.7.8 AUTH PLAIN {REDACTED} rejected"),
        (f"auth login {base64.b64encode(b'alice').decode()}", f"auth login {REDACTED}"),
        ("AUTH XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB5YTI5LnZGOQEB",
         f"AUTH XOAUTH2 {REDACTED}"),
    ]:  # fmt: skip
        assert r.redact(text) == shown
        assert not r.clean([text])
    untouched = "535 5.7.8 authentication failed (in reply to AUTH PLAIN command)"
    assert r.redact(untouched) == untouched


def test_scrub_sasl_finds_plain_and_xoauth2_without_the_command() -> None:
    bare = f"host relay[192.0.2.1] said: 535 5.7.8 {plain(b'alice', b'secret')} is not valid"
    assert scrub_sasl(bare) == f"host relay[192.0.2.1] said: 535 5.7.8 {REDACTED} is not valid"
    xoauth = base64.b64encode(b"user=alice\x01auth=Bearer ya29.token\x01\x01").decode()
    assert scrub_sasl(f"said {xoauth}.") == f"said {REDACTED}."
    dkim = "v=DKIM1; k=rsa; p=" + base64.b64encode(bytes(range(256))).decode()
    link = "host x said: 450 4.7.1 Greylisted, see https://example.com/AbCdEfGh1234"
    for text in ("connect to mx1.example.com[192.0.2.1]:25: Connection timed out", dkim, link):
        assert scrub_sasl(text) == text


@given(
    st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b),
    st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b),
    st.binary(max_size=10).filter(lambda b: b"\0" not in b),
    _TEXT,
    _TEXT,
)
def test_scrub_sasl_removes_every_plain_token(
    user: bytes, password: bytes, authzid: bytes, before: str, after: str
) -> None:
    token = plain(user, password, authzid)
    out = scrub_sasl(f"{before} {token} {after}")
    assert token not in out
    assert isinstance(scrub_sasl(before + after), str)
