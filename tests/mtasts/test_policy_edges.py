"""The policy grammar's whitespace and line-ending edges (RFC 8461 §3.2), pinned one by one:

sts-policy-record = sts-policy-field *WSP *(sts-policy-term sts-policy-field *WSP)
                    [sts-policy-term]
sts-policy-term   = LF / CRLF
sts-policy-field-delim = ":" *WSP
"""

from __future__ import annotations

import pytest

from exporter.mtasts import PolicyError, parse_policy

FIELDS = ["version: STSv1", "mode: enforce", "max_age: 86400", "mx: mail.example.com"]


@pytest.mark.parametrize("term", ["\n", "\r\n"])
@pytest.mark.parametrize("trailing", ["", " ", "\t", " \t  "])
@pytest.mark.parametrize("final", ["", "\n", "\r\n"])
def test_trailing_whitespace_and_the_final_delimiter(term: str, trailing: str, final: str) -> None:
    # WSP at the end of every line, the last one included, with or without a final LF/CRLF
    text = term.join(f + trailing for f in FIELDS) + final
    policy = parse_policy(text)
    assert (policy.mode, policy.max_age, [str(p) for p in policy.mx]) == (
        "enforce", 86400, ["mail.example.com"],
    )  # fmt: skip


@pytest.mark.parametrize("after", ["version:STSv1", "version:\t \tSTSv1", "version: STSv1\t"])
def test_whitespace_around_values(after: str) -> None:
    text = "\n".join([after, *FIELDS[1:]])
    assert parse_policy(text).mode == "enforce"


@pytest.mark.parametrize("tail", [" ", "\t", "  \t", " \r\n"])
@pytest.mark.parametrize("term", ["\n", "\r\n"])
def test_whitespace_after_the_final_delimiter_is_named(term: str, tail: str) -> None:
    # Not in the grammar ([sts-policy-term] ends the record): refused, and said so plainly
    # rather than as "whitespace before the field name" of a line nobody sees.
    text = term.join(FIELDS) + term + tail
    with pytest.raises(PolicyError, match="whitespace after the last line"):
        parse_policy(text)


def test_an_mx_field_in_another_case_is_named() -> None:
    text = "\n".join([*FIELDS[:3], "MX: mail.example.com"])
    with pytest.raises(PolicyError, match=r"no mx field.*case-sensitive: 'MX' is not 'mx'"):
        parse_policy(text)


def test_a_known_field_in_another_case_beside_the_real_one_is_noted() -> None:
    policy = parse_policy("\n".join([*FIELDS, "Mx: backup.example.com", "MODE: testing"]))
    assert [str(p) for p in policy.mx] == ["mail.example.com"] and policy.mode == "enforce"
    assert any("'Mx' is not 'mx'" in n and "ignored" in n for n in policy.notes), policy.notes
    assert any("'MODE' is not 'mode'" in n for n in policy.notes), policy.notes
