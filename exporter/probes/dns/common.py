"""Helpers shared by the DNS sub-checks, and the ``dns`` probe's per-config resources."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from exporter.net.dnsmodel import DnsTempError
from exporter.probes.base import ProbeContext
from exporter.results import ProbeResult, Sample, sample


class DnsResources:
    """What the ``dns`` probe keeps across the runs of one config (made by the runtime)."""

    async def aclose(self) -> None:
        return None


DnsContext = ProbeContext[DnsResources]
"""The context every DNS sub-check gets."""


def checksum(domain: str, record: str, texts: Iterable[str]) -> Sample:
    """``deliverability_dns_record_checksum``: CRC-32 of the record set's normalized text.

    Normalized: each record's whitespace collapsed, records sorted, joined by newlines, so
    that reordering by the DNS server does not look like an edit.
    """
    normalized = "\n".join(sorted(" ".join(t.split()) for t in texts))
    return sample(
        "dns_record_checksum", zlib.crc32(normalized.encode()), domain=domain, record=record
    )


def dns_failure(what: str, exc: DnsTempError) -> ProbeResult:
    """A sub-check that could not tell: probe_success 0 with the reason, no finding."""
    return ProbeResult(error=f"{what}: DNS lookup failed: {exc}")
