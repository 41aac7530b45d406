"""Trust anchors: the built-in IANA root keys and the ``global.dnssec_trust_anchors`` file."""

from __future__ import annotations

from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.dnssec.anchors import (
    DNSKEY,
    TrustAnchorError,
    load_trust_anchors,
    parse_trust_anchors,
)

# The two root KSKs as published in the root zone (IANA root.zone, the copy in the public
# repository takonomura/iana-root-files, data/root.zone at commit 000e665a, serial 2025100501).
ROOT_KSKS = {
    20326: (
        "257 3 8 AwEAAaz/tAm8yTn4Mfeh5eyI96WSVexTBAvkMgJzkKTOiW1vkIbzxeF3+/4RgWOq"
        "7HrxRixHlFlExOLAJr5emLvN7SWXgnLh4+B5xQlNVz8Og8kvArMtNROxVQuCaSnIDdD5LKyW"
        "bRd2n9WGe2R8PzgCmr3EgVLrjyBxWezF0jLHwVN8efS3rCj/EWgvIWgb9tarpVUDK/b58Da+"
        "sqqls3eNbuv7pr+eoZG+SrDK6nWeL3c6H5Apxz7LjVc1uTIdsIXxuOLYA4/ilBmSVIzuDWfd"
        "RUfhHdY6+cn8HFRm+2hM8AnXGXws9555KrUB5qihylGa8subX2Nn6UwNR1AkUTV74bU="
    ),
    38696: (
        "257 3 8 AwEAAa96jeuknZlaeSrvyAJj6ZHv28hhOKkx3rLGXVaC6rXTsDc449/cidltpkyG"
        "wCJNnOAlFNKF2jBosZBU5eeHspaQWOmOElZsjICMQMC3aeHbGiShvZsx4wMYSjH8e7Vrhbu6"
        "irwCzVBApESjbUdpWWmEnhathWu1jo+siFUiRAAxm9qyJNg/wOZqqzL/dL/q8PkcRU5oUKEp"
        "Uge71M3ej2/7CPqpdVwuMoTvoB+ZOT4YeGyxMvHmbrxlFzGOHOijtzN+u1TQNatX2XBuzZNQ"
        "1K+s2CXkPIZo7s6JgZyvaBevYtxPvYLw4z9mR7K2vaF18UYH9Z9GNUUeayffKC73PYc="
    ),
}


def key(text: str) -> DNSKEY:
    rd = dns.rdata.from_text("IN", "DNSKEY", text)
    assert isinstance(rd, DNSKEY)
    return rd


def test_built_in_anchors_are_the_iana_root_ksks() -> None:
    anchors = load_trust_anchors(None)
    assert sorted(ds.key_tag for ds in anchors.ds) == [20326, 38696]
    for tag, text in ROOT_KSKS.items():
        ksk = key(text)
        assert dns.dnssec.key_id(ksk) == tag
        assert anchors.trusts(ksk)
        made = dns.dnssec.make_ds(dns.name.root, ksk, "SHA256")
        assert made in anchors.ds
    assert anchors.describe() == "built-in IANA root anchors (key tags 20326, 38696)"


def test_file_of_ds_and_dnskey_lines(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    path.write_text(
        "; unbound's root.key style, with and without TTL and class\n"
        ". 172800 IN DNSKEY " + ROOT_KSKS[38696] + "\n"
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
    )
    anchors = load_trust_anchors(str(path))
    assert anchors.source == str(path)
    assert len(anchors.ds) == 1 and len(anchors.dnskeys) == 1
    assert anchors.trusts(key(ROOT_KSKS[38696]))  # by the DNSKEY itself
    assert anchors.trusts(key(ROOT_KSKS[20326]))  # by its DS
    other_flags = key("256" + ROOT_KSKS[20326][3:])  # the flags are part of the DS digest
    assert not anchors.trusts(other_flags)
    not_a_zone_key = key("0" + ROOT_KSKS[38696][3:])
    assert not anchors.trusts(not_a_zone_key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f: no DS or DNSKEY record for '.'"),
        ("; only a comment\n", "f: no DS or DNSKEY record for '.'"),
        ("example. IN DS 1 8 1 " + "AA" * 20 + "\n", "f: example. DS: only anchors for the root"),
        (". IN A 192.0.2.1\n", "f: . A: a trust anchor is a DS or DNSKEY record"),
        (". IN DS 1 8 2 ZZ\n", "f:1: Non-hexadecimal digit found"),
        (". IN DS 1 8 1 " + "AA" * 20 + "\n. IN DS 1 8 2 AA\n", "f:2: digest length"),
        (". IN DNSKEY ( 257 3 8\n AwEAAa== )\n. IN DS 1 8 2 ZZ\n", "f:3: Non-hexadecimal"),
        ('\n\ntrust-anchors { . static-ds 1 8 2 "AA"; };\n', "f:3:"),
        ("$INCLUDE /etc/passwd\n", "f:1:"),
        (". CH DS 1 8 2 AA\n", "f:1:"),
    ],
)
def test_bad_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TrustAnchorError) as info:
        parse_trust_anchors(text, "f")
    assert str(info.value).startswith(message)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TrustAnchorError, match="No such file"):
        load_trust_anchors(str(tmp_path / "missing"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe. IN DS")
    with pytest.raises(TrustAnchorError, match="not UTF-8"):
        load_trust_anchors(str(binary))
    big = tmp_path / "big"
    big.write_bytes(b";" * (2 << 20))
    with pytest.raises(TrustAnchorError, match="larger than"):
        load_trust_anchors(str(big))


LINES = st.one_of(
    st.text(max_size=80),
    st.sampled_from([
        ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
        ". DNSKEY " + ROOT_KSKS[20326],
        "$TTL 300", "$ORIGIN example.", "( . IN DS 1 2 3 AA", ")", "@ IN DS 1 8 2 aa",
        ". 10 IN DNSKEY 257 3 8 AA==", ". IN DS 1 8 2", "\\# 3 abcdef", ". TYPE43 \\# 4 00010802",
    ]),
)  # fmt: skip


@given(st.lists(LINES, max_size=6))
def test_parser_only_raises_its_own_error(lines: list[str]) -> None:
    try:
        anchors = parse_trust_anchors("\n".join(lines), "f")
    except TrustAnchorError as exc:
        assert str(exc).startswith("f")
    else:
        assert anchors.ds or anchors.dnskeys
