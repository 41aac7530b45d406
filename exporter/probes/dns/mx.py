"""mx sub-check of the dns probe (being written)."""

from __future__ import annotations

from exporter.config import DomainConfig
from exporter.probes.base import ProbeContext, ProbeResult


async def check(domain: DomainConfig, ctx: ProbeContext) -> ProbeResult:
    return ProbeResult()
