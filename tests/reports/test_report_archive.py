"""Bounded decompression: gzip and zip read whole when honest, refused when bombs or corrupt."""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile

import pytest
from reportmail import aggregate_xml, gz, gzip_bomb, zip_bomb, zipped

from exporter.reports.archive import (
    ArchiveError,
    Limits,
    ReportTooLarge,
    gunzip,
    sniff_archive,
    unzip,
)

XML = aggregate_xml()


def test_gzip_round_trip_and_multi_member() -> None:
    assert gunzip(gz(XML), Limits()) == XML
    assert gunzip(gz(b"one ") + gz(b"two"), Limits()) == b"one two"
    assert gunzip(gz(XML) + b"\0\0\0\0", Limits()) == XML  # tape padding


@pytest.mark.parametrize(
    "data",
    [gz(XML)[:-12], gz(XML)[:20], b"\x1f\x8b" + os.urandom(64), gz(XML)[:30] + b"\xff" * 40],
)
def test_corrupt_gzip_is_refused(data: bytes) -> None:
    with pytest.raises(ArchiveError):
        gunzip(data, Limits())


def test_gzip_bomb_is_refused_by_ratio_before_inflating_it() -> None:
    bomb = gzip_bomb(64 << 20)
    assert len(bomb) < 100_000
    with pytest.raises(ReportTooLarge, match="ratio"):
        gunzip(bomb, Limits())


def test_gzip_over_the_size_cap_is_refused() -> None:
    data = os.urandom(3 << 20)  # incompressible: the ratio is no help, the size cap is
    with pytest.raises(ReportTooLarge, match="more than 2097152 bytes"):
        gunzip(gz(data), Limits(document_bytes=2 << 20))
    assert gunzip(gz(data), Limits(document_bytes=3 << 20)) == data


def test_zip_members() -> None:
    archive = zipped({"a.xml": XML, "dir/b.json": b"{}"})
    assert sniff_archive(archive) == "zip" and sniff_archive(gz(XML)) == "gzip"
    assert sniff_archive(XML) is None
    assert unzip(archive, Limits()) == [("a.xml", XML), ("dir/b.json", b"{}")]


def test_zip_bomb_is_refused() -> None:
    bomb = zip_bomb(64 << 20)
    assert len(bomb) < 100_000
    with pytest.raises(ReportTooLarge, match="ratio"):
        unzip(bomb, Limits())


def test_zip_members_share_one_budget() -> None:
    data = os.urandom(600 << 10)
    archive = zipped({f"{i}.xml": data for i in range(4)})
    with pytest.raises(ReportTooLarge, match="more than 2097152"):
        unzip(archive, Limits(document_bytes=2 << 20))


def test_zip_with_too_many_entries_is_refused() -> None:
    with pytest.raises(ReportTooLarge, match="more than 20 entries"):
        unzip(zipped({f"{i}.xml": b"<a/>" for i in range(21)}), Limits())


def test_encrypted_zip_member_is_refused() -> None:
    archive = bytearray(zipped({"a.xml": XML}))
    # set the "encrypted" flag bit in the local header and in the central directory entry
    archive[6] |= 1
    central = archive.rfind(b"PK\x01\x02")
    archive[central + 8] |= 1
    with pytest.raises(ArchiveError, match="encrypted"):
        unzip(bytes(archive), Limits())


@pytest.mark.parametrize("cut", [10, 40, -30, -5])
def test_truncated_zip_is_refused(cut: int) -> None:
    with pytest.raises(ArchiveError):
        unzip(zipped({"a.xml": XML})[:cut], Limits())


def test_zip_with_a_bad_crc_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.xml", XML)
    data = bytearray(buf.getvalue())
    data[data.find(b"<feedback") + 3] ^= 0x20  # flip a byte of the stored member
    with pytest.raises(ArchiveError, match=r"CRC|Bad"):
        unzip(bytes(data), Limits())


def _many_entries(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for i in range(n):
            archive.writestr(f"{i}", b"")
    return buf.getvalue()


def test_a_central_directory_of_a_hundred_thousand_entries_costs_nothing() -> None:
    """zipfile reads the whole central directory before the entry cap could look at it: 100,000
    entries (8 MB) took 7 s of CPU and 52 MiB. Refused from the end record alone now."""
    data = _many_entries(100_000)
    started = time.process_time()
    with pytest.raises(ReportTooLarge, match="more than 20 entries"):
        unzip(data, Limits())
    assert time.process_time() - started < 0.1


def test_an_end_record_that_understates_the_entries_is_bounded_by_the_directory_size() -> None:
    data = bytearray(_many_entries(50_000))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "one entry": zipfile reads by size anyway
    started = time.process_time()
    with pytest.raises(ReportTooLarge, match="central directory"):
        unzip(bytes(data), Limits())
    assert time.process_time() - started < 0.1


def test_gzip_of_a_hundred_thousand_empty_members_costs_nothing() -> None:
    """Each member's rest was copied (``unused_data``): 80,000 empty members (1.6 MB) took 4 s,
    a 10 MB attachment of them minutes. Members are capped and the input read in steps."""
    data = gz(b"") * 100_000
    started = time.process_time()
    with pytest.raises(ReportTooLarge, match="more than 100 gzip members"):
        gunzip(data, Limits())
    assert time.process_time() - started < 0.1
    many = b"".join(gz(b"<a>%d</a>" % i) for i in range(100))
    assert gunzip(many, Limits()) == b"".join(b"<a>%d</a>" % i for i in range(100))
