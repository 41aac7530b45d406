"""The ``_mta-sts`` record's final delimiter (RFC 8461 §3.1):

    sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    sts-field-delim = *WSP ";" *WSP

so whitespace around the last ``;`` is the grammar's (mox, a strict parser, accepts it too).
"""

from __future__ import annotations

import pytest

from exporter.mtasts import StsRecordError, discover_sts, parse_sts_record


@pytest.mark.parametrize(
    "text",
    ["v=STSv1; id=abc; ", "v=STSv1; id=abc ;", "v=STSv1;id=abc\t;\t", "v=STSv1; id=abc; x=1 ; "],
)
def test_whitespace_around_the_final_delimiter(text: str) -> None:
    assert parse_sts_record(text).id == "abc"
    assert discover_sts([text]).status == "valid"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=STSv1; id=abc ", "whitespace at the end"),
        ("v=STSv1; id=abc;;", "malformed field"),
        ("v=STSv1; id=abc; ;", "malformed field"),
    ],
)
def test_whitespace_without_a_delimiter_is_still_refused(text: str, message: str) -> None:
    with pytest.raises(StsRecordError, match=message):
        parse_sts_record(text)
