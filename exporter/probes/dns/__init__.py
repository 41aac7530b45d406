"""The ``dns`` probe: DNS authentication of one monitored domain (SPF, DMARC, DKIM, MX).

One target per configured domain. The sub-checks run concurrently over one shared per-cycle
:class:`~exporter.net.dnsclient.DnsClient` (so a name asked by two sub-checks is queried once) and
their results are merged. A sub-check that meets a DNS temporary failure reports an error (so
``probe_success`` is 0 and nothing is claimed about that record) while the others still publish.

Each sub-check lives in its own module with the signature
``async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from exporter.config import Config, DomainConfig
from exporter.net.network import Network
from exporter.probes.dns import dkim, dmarc, mx, spf
from exporter.probes.dns.common import DnsContext, DnsResources
from exporter.results import ProbeResult, Target

SubCheck = Callable[[DomainConfig, DnsContext], Awaitable[ProbeResult]]

SUBCHECKS: tuple[tuple[str, SubCheck], ...] = (
    ("spf", spf.check),
    ("dmarc", dmarc.check),
    ("dkim", dkim.check),
    ("mx", mx.check),
)


class DnsProbe:
    name = "dns"

    def targets(self, config: Config) -> list[Target[DomainConfig]]:
        return [Target.of(self.name, d.domain, d, config) for d in config.domains]

    def resources(self, config: Config, net: Network) -> DnsResources:
        return DnsResources()

    async def run(self, target: Target[DomainConfig], ctx: DnsContext) -> ProbeResult:
        domain = target.settings
        results = await asyncio.gather(*(fn(domain, ctx) for _, fn in SUBCHECKS))
        merged = ProbeResult()
        for result in results:
            merged.merge(result)
        return merged


PROBE = DnsProbe()
