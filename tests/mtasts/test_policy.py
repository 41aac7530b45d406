"""The MTA-STS policy file (RFC 8461 §3.2) and MX matching (§4.1): the grammar's edges, the
canonical form used to notice edits, and hypothesis: only PolicyError escapes, and every policy
the grammar generates parses to what it says."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.mtasts import MAX_AGE_LIMIT, MxPattern, PolicyError, mx_matches, parse_policy

RFC_EXAMPLE = (
    "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    "mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)


def test_rfc_example() -> None:
    policy = parse_policy(RFC_EXAMPLE.encode())
    assert (policy.mode, policy.max_age) == ("enforce", 604800)
    assert [str(p) for p in policy.mx] == [
        "mail.example.com",
        "*.example.net",
        "backupmx.example.com",
    ]
    assert policy.extensions == () and policy.notes == ()


@pytest.mark.parametrize(
    "text",
    [
        RFC_EXAMPLE.replace("\r\n", "\n"),  # LF
        RFC_EXAMPLE.rstrip("\r\n"),  # no terminator after the last line
        RFC_EXAMPLE.replace(": ", ":"),  # no space after the colon
        RFC_EXAMPLE.replace(": ", ":\t \t"),  # spaces and tabs after it
        RFC_EXAMPLE.replace("\r\n", " \t\r\n"),  # and at the ends of lines
        "max_age: 604800\nmx: *.example.net\nmx: backupmx.example.com\n"
        "mx: mail.example.com\nmode: enforce\nversion: STSv1\n",  # any order
        RFC_EXAMPLE.replace("mail.example.com", "MAIL.Example.COM"),  # case of host names
        RFC_EXAMPLE.replace("\r\nmode", "\nmode"),  # mixed terminators
    ],
)
def test_same_policy_written_differently(text: str) -> None:
    policy = parse_policy(text)
    assert policy.canonical() == parse_policy(RFC_EXAMPLE).canonical()
    assert policy.digest() == parse_policy(RFC_EXAMPLE).digest()


def test_canonical_changes_with_meaning() -> None:
    base = parse_policy(RFC_EXAMPLE).digest()
    assert parse_policy(RFC_EXAMPLE.replace("enforce", "testing")).digest() != base
    assert parse_policy(RFC_EXAMPLE.replace("604800", "604801")).digest() != base
    assert parse_policy(RFC_EXAMPLE.replace("backupmx", "backup2")).digest() != base
    assert parse_policy(RFC_EXAMPLE + "note: hello\r\n").digest() != base
    # A repeated mx line changes nothing senders do.
    assert parse_policy(RFC_EXAMPLE + "mx: mail.example.com\r\n").digest() == base


def test_unknown_fields_are_kept_and_ignored() -> None:
    policy = parse_policy(RFC_EXAMPLE + "x-owner: postmaster team ë\r\nfoo.bar-1_: 2\r\n")
    assert policy.extensions == (("x-owner", "postmaster team ë"), ("foo.bar-1_", "2"))


def test_repeated_fields_first_wins() -> None:
    text = RFC_EXAMPLE + "mode: none\r\nmax_age: 99999999999\r\nversion: STSv2\r\n"
    policy = parse_policy(text)
    assert (policy.mode, policy.max_age) == ("enforce", 604800)
    assert len(policy.notes) == 3 and all("repeated" in n for n in policy.notes)


def test_none_mode_needs_no_mx() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n")
    assert policy.mode == "none" and policy.mx == ()


@pytest.mark.parametrize("age", ["0", str(MAX_AGE_LIMIT), "0000000001"])
def test_max_age_bounds(age: str) -> None:
    assert parse_policy(RFC_EXAMPLE.replace("604800", age)).max_age == int(age)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n", "blank"),
        (RFC_EXAMPLE + "\r\n", "line 7 is blank"),
        (RFC_EXAMPLE.replace("mx: *.example.net\r\n", "\r\n"), "line 4 is blank"),
        (RFC_EXAMPLE.replace("version: STSv1\r\n", ""), "no version field"),
        (RFC_EXAMPLE.replace("version: STSv1", "Version: STSv1"), "case-sensitive"),
        (RFC_EXAMPLE.replace("STSv1", "STSv2"), "not STSv1"),
        (RFC_EXAMPLE.replace("STSv1", "stsv1"), "not STSv1"),
        (RFC_EXAMPLE.replace("mode: enforce\r\n", ""), "no mode field"),
        (RFC_EXAMPLE.replace("enforce", "Enforce"), "not enforce, testing or none"),
        (RFC_EXAMPLE.replace("enforce", "reject"), "not enforce, testing or none"),
        (RFC_EXAMPLE.replace("max_age: 604800\r\n", ""), "no max_age field"),
        (RFC_EXAMPLE.replace("604800", str(MAX_AGE_LIMIT + 1)), "over 31557600"),
        (RFC_EXAMPLE.replace("604800", "12345678901"), "1-10 digits"),
        (RFC_EXAMPLE.replace("604800", "-1"), "1-10 digits"),
        (RFC_EXAMPLE.replace("604800", "1w"), "1-10 digits"),
        (RFC_EXAMPLE.replace("604800", "6048 00"), "1-10 digits"),
        ("version: STSv1\nmode: testing\nmax_age: 86400\n", "no mx field"),
        (RFC_EXAMPLE.replace("mx: mail.example.com", "mx: mail.example.com."), "ends with a dot"),
        (RFC_EXAMPLE.replace("*.example.net", "*example.net"), "wildcard"),
        (RFC_EXAMPLE.replace("*.example.net", "*.*.example.net"), "wildcard"),
        (RFC_EXAMPLE.replace("*.example.net", "mail.*.example.net"), "wildcard"),
        (RFC_EXAMPLE.replace("*.example.net", "-mx.example.net"), "not a host name"),
        (RFC_EXAMPLE.replace("*.example.net", "mx_1.example.net"), "not a host name"),
        (RFC_EXAMPLE.replace("*.example.net", "mx.exämple.net"), "not a host name"),
        (RFC_EXAMPLE.replace("*.example.net", "a" * 64 + ".net"), "not a host name"),
        (RFC_EXAMPLE.replace("*.example.net", "mx.example.net mx2.example.net"), "host name"),
        (" " + RFC_EXAMPLE, "whitespace before the field name"),
        (RFC_EXAMPLE.replace("mode:", "mode :"), "whitespace before the colon"),
        ("\ufeff" + RFC_EXAMPLE, "byte-order mark"),
        (RFC_EXAMPLE.replace("mode: enforce", "mode enforce"), "expected 'name: value'"),
        (RFC_EXAMPLE + "note:\r\n", "note has no value"),
        (RFC_EXAMPLE + "note: a\tb\r\n", "control character"),
        (RFC_EXAMPLE + "_x: 1\r\n", "expected 'name: value'"),
        (RFC_EXAMPLE.replace("\r\n", "\r"), "CR not followed by LF"),
        (RFC_EXAMPLE.rstrip("\n"), "CR not followed by LF"),
        (b"version: STSv1\nmode: enforce\xff\n", "not UTF-8"),
    ],
)
def test_invalid_policy(text: str | bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(text)


# ----- MX matching (§4.1) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        (MxPattern("mail.example.com"), "mail.example.com", True),
        (MxPattern("mail.example.com"), "MAIL.Example.com.", True),
        (MxPattern("mail.example.com"), "mail2.example.com", False),
        (MxPattern("mail.example.com"), "x.mail.example.com", False),
        (MxPattern("example.net", True), "mx1.example.net", True),
        (MxPattern("example.net", True), "MX1.EXAMPLE.NET.", True),
        (MxPattern("example.net", True), "example.net", False),  # exactly one label more
        (MxPattern("example.net", True), "a.b.example.net", False),
        (MxPattern("example.net", True), ".example.net", False),
        (MxPattern("example.net", True), "mx1.example.net.evil", False),
        (MxPattern("example.net", True), "mx1example.net", False),
    ],
)
def test_mx_matching(pattern: MxPattern, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches
    assert pattern.matches(host) is matches


def test_policy_covers() -> None:
    policy = parse_policy(RFC_EXAMPLE)
    assert policy.covers("mail.example.com") and policy.covers("mx7.example.net")
    assert not policy.covers("example.net") and not policy.covers("mail.example.org")


# ----- properties ------------------------------------------------------------------------------

PROPS = settings(max_examples=400, deadline=None)
_PIECES = st.sampled_from(
    [
        "version", "mode", "max_age", "mx", ":", ": ", "\t", " ", "\n", "\r\n", "\r", "STSv1",
        "enforce", "testing", "none", "604800", "99999999999", "*.", "mail.example.com", ".", "-",
        "ü", "\x00", "\ufeff", "x-ext", "#",
    ]
)  # fmt: skip
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=120),
    st.lists(_PIECES, max_size=40).map("".join),
)


@PROPS
@given(_BODIES)
@example(b"version: STSv1\nmode: enforce\nmax_age: 1\nmx: a\xed\xa0\x80")
def test_policy_raises_only_its_own_error(body: bytes | str) -> None:
    try:
        policy = parse_policy(body)
    except PolicyError as exc:
        assert str(exc)
        return
    assert policy.mode in ("enforce", "testing", "none")
    assert 0 <= policy.max_age <= MAX_AGE_LIMIT
    assert policy.mx or policy.mode == "none"


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)


@PROPS
@given(
    st.sampled_from(["enforce", "testing", "none"]),
    st.integers(0, MAX_AGE_LIMIT),
    st.lists(st.tuples(st.booleans(), _DOMAIN), min_size=1, max_size=4),
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True).filter(
                lambda n: n not in ("version", "mode", "max_age", "mx")
            ),
            st.from_regex(r"[!-~]([ !-~é]{0,10}[!-~])?", fullmatch=True),
        ),
        max_size=3,
    ),
    st.sampled_from(["\n", "\r\n"]),
    st.sampled_from(["", " ", "\t", " \t "]),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_generated_policies_parse_to_what_they_say(
    mode: str,
    max_age: int,
    mx: list[tuple[bool, str]],
    extensions: list[tuple[str, str]],
    newline: str,
    space: str,
    terminated: bool,
    rnd: object,
) -> None:
    lines = [f"version:{space}STSv1", f"mode:{space}{mode}", f"max_age:{space}{max_age}"]
    lines += [f"mx:{space}{'*.' if w else ''}{d}{space}" for w, d in mx]
    lines += [f"{k}:{space}{v}" for k, v in extensions]
    rnd.shuffle(lines)  # type: ignore[attr-defined]
    text = newline.join(lines) + (newline if terminated else "")
    policy = parse_policy(text.encode())
    assert (policy.mode, policy.max_age) == (mode, max_age)
    assert sorted((p.wildcard, p.domain) for p in policy.mx) == sorted(mx)
    assert sorted(policy.extensions) == sorted(extensions)
    for wildcard, domain in mx:
        host = f"x1.{domain}" if wildcard else domain.upper() + "."
        assert policy.covers(host)
