"""Limits on hostile report mail, and bounded decompression of gzip and zip attachments.

Every report attachment is untrusted input from anyone who can send mail to the report mailbox,
so nothing here trusts a declared size: gzip and zip data are inflated in 64 KiB steps, and
inflation stops as soon as the output passes :attr:`Limits.document_bytes` or, once it is past
:attr:`Limits.ratio_floor`, as soon as it is more than :attr:`Limits.ratio` times the compressed
input (a zip or gzip "bomb" inflates a few kilobytes into gigabytes; real XML reports compress
10 to 30 times). Zip archives are read with the standard library's :mod:`zipfile` (which also
handles stored, bzip2 and lzma members), one member at a time through its streaming reader;
encrypted members and archives of more than :attr:`Limits.zip_members` entries are refused, from
the end record before :mod:`zipfile` reads the central directory. A gzip file of more than
:attr:`Limits.gzip_members` members is refused. Nested archives are not opened.

The standard library was enough: the decompression libraries on PyPI (``zipfile-deflate64``,
``stream-unzip``) add formats reporters do not use, and none of them caps the output for us.

Errors: :class:`ReportError` and its subclasses, nothing else.
"""

from __future__ import annotations

import io
import lzma
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass

STEP = 64 << 10

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class ReportError(ValueError):
    """Base of every error of :mod:`exporter.reports`: the input is not a usable report."""


class ReportTooLarge(ReportError):
    """A size, count or decompression-ratio limit was reached: the input was refused."""


class ReportTooSlow(ReportTooLarge):
    """Parsing went past its deadline (:attr:`Limits.parse_seconds`): the input was refused."""


def check_deadline(deadline: float | None, seconds: float | None = None) -> None:
    """Raise :class:`ReportTooSlow` once ``deadline`` (``time.monotonic()``) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        took = f" {seconds:.1f} s" if seconds is not None else " its deadline"
        raise ReportTooSlow(f"parsing took over{took}")


class ArchiveError(ReportError):
    """A gzip or zip archive is corrupt, encrypted or otherwise unreadable."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one report message may cost. The defaults leave room for the largest real reports
    (a big mailbox provider's daily aggregate report is a few megabytes of XML)."""

    message_bytes: int = 25 << 20
    """The raw message as fetched from IMAP."""
    mime_parts: int = 200
    """MIME parts walked in one message."""
    mime_depth: int = 8
    """Nesting of multiparts and attached messages."""
    attachments: int = 20
    """Parts examined as possible reports in one message."""
    attachment_bytes: int = 10 << 20
    """One attachment once its transfer encoding (base64...) is undone, still compressed."""
    document_bytes: int = 50 << 20
    """One report once decompressed."""
    total_bytes: int = 100 << 20
    """All the decompressed reports of one message together."""
    ratio: int = 100
    """Decompressed size over compressed size, checked once the output passes ``ratio_floor``."""
    ratio_floor: int = 1 << 20
    zip_members: int = 20
    """Entries in one zip archive."""
    gzip_members: int = 100
    """Members of one gzip file (concatenated gzip streams; reporters send one)."""
    parse_seconds: float | None = None
    """Time to parse the reports of one message (None: no limit). Many tiny records cost CPU
    well beyond what their bytes suggest (400,000 of them in a 3 MB gzip take over 10 s)."""


def sniff_archive(data: bytes) -> str | None:
    """``"gzip"``, ``"zip"`` or None, from the magic bytes (labels and file names lie)."""
    if data.startswith(GZIP_MAGIC):
        return "gzip"
    if data.startswith(ZIP_MAGIC):
        return "zip"
    return None


DIRECTORY_ENTRY_BYTES = 4096
"""Central directory bytes allowed per permitted zip entry (46 bytes of header, the name, the
extra field and the comment: a real report's entry takes about 100)."""


def _check_directory(data: bytes, limits: Limits, name: str) -> None:
    """Refuse, from the end record alone, an archive whose central directory holds more entries
    than :attr:`Limits.zip_members` or is larger than they could take: :mod:`zipfile` reads the
    whole directory (by its size, whatever the count says) before anything can be checked, and
    100,000 entries cost it half a second of CPU and 50 MiB."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if end < 0 or len(data) < end + 22:
        return  # not a zip archive zipfile can open either: its error says why
    entries, size = struct.unpack_from("<HI", data, end + 10)
    locator = end - 20
    if (entries == 0xFFFF or size == 0xFFFFFFFF) and data.startswith(b"PK\x06\x07", locator):
        record = locator - 56  # the zip64 end record comes right before its locator
        if record >= 0 and data.startswith(b"PK\x06\x06", record):
            entries, size = struct.unpack_from("<QQ", data, record + 32)
    if entries > limits.zip_members:
        raise ReportTooLarge(f"{name}: more than {limits.zip_members} entries")
    if size > limits.zip_members * DIRECTORY_ENTRY_BYTES:
        raise ReportTooLarge(
            f"{name}: central directory of {size} bytes, more than {limits.zip_members} entries"
            " could take"
        )


class _Budget:
    """Output accounting for one compressed input: the size and ratio caps of :class:`Limits`."""

    def __init__(self, compressed: int, limits: Limits, name: str) -> None:
        self.compressed = max(compressed, 1)
        self.limits = limits
        self.name = name
        self.size = 0

    def take(self, n: int) -> None:
        self.size += n
        lim = self.limits
        if self.size > lim.document_bytes:
            raise ReportTooLarge(
                f"{self.name}: decompresses to more than {lim.document_bytes} bytes"
            )
        if self.size > lim.ratio_floor and self.size > lim.ratio * self.compressed:
            raise ReportTooLarge(
                f"{self.name}: decompression ratio above {lim.ratio} "
                f"({self.compressed} bytes inflate past {self.size})"
            )


def gunzip(data: bytes, limits: Limits, name: str = "gzip") -> bytes:
    """Inflate gzip data (every member of a multi-member file), within ``limits``.

    The input is fed in :data:`STEP` pieces: handing zlib the whole rest made it copy that rest
    (``unused_data``) at the end of every member, quadratic in the number of members."""
    budget = _Budget(len(data), limits, name)
    out: list[bytes] = []
    view = memoryview(data)
    pos = members = 0
    try:
        while pos < len(data):
            members += 1
            if members > limits.gzip_members:
                raise ReportTooLarge(f"{name}: more than {limits.gzip_members} gzip members")
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            while not inflater.eof:
                piece = view[pos : pos + STEP]
                if not piece:
                    raise ArchiveError(f"{name}: truncated gzip data")
                pos += len(piece)
                pending: bytes | memoryview = piece
                while True:
                    chunk = inflater.decompress(pending, STEP)
                    budget.take(len(chunk))
                    out.append(chunk)
                    pending = inflater.unconsumed_tail
                    if inflater.eof or (not pending and not chunk):
                        break
            pos -= len(inflater.unused_data)  # at the end, unconsumed_tail repeats it
            if not data.startswith(GZIP_MAGIC, pos):
                break  # trailing padding after the last member: ignored, as gzip(1) does
    except zlib.error as exc:
        raise ArchiveError(f"{name}: corrupt gzip data ({exc})") from None
    return b"".join(out)


def unzip(data: bytes, limits: Limits, name: str = "zip") -> list[tuple[str, bytes]]:
    """The (name, content) of every file in a zip archive, within ``limits``.

    Directories are skipped; the total output of all members shares one budget, so an archive
    of many members (or of overlapping members) cannot multiply it.
    """
    budget = _Budget(len(data), limits, name)
    members: list[tuple[str, bytes]] = []
    _check_directory(data, limits, name)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > limits.zip_members:
                raise ReportTooLarge(f"{name}: more than {limits.zip_members} entries")
            for info in infos:
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"{name}: {info.filename!r} is encrypted")
                member = _Budget(info.compress_size, limits, f"{name}:{info.filename}")
                parts: list[bytes] = []
                with archive.open(info) as stream:
                    while chunk := stream.read(STEP):
                        member.take(len(chunk))
                        budget.take(len(chunk))
                        parts.append(chunk)
                members.append((info.filename, b"".join(parts)))
    except ReportError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        lzma.LZMAError,
        struct.error,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
    ) as exc:
        kind = type(exc).__name__
        raise ArchiveError(f"{name}: unreadable zip archive ({kind}: {exc})") from None
    return members
