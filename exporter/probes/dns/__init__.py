"""The ``dns`` probe: DNS authentication of one monitored domain (SPF, DMARC, DKIM, MX, DNSSEC, the
forward-confirmed reverse DNS of its sending IPs), its readiness for the bulk-sender rules of
Gmail, Yahoo and Microsoft, and its declared baseline (``expect:``).

One target per configured domain. The sub-checks run concurrently over one shared per-cycle
:class:`~exporter.net.dnsclient.DnsClient` (so a name asked by two sub-checks is queried once) and
their results are merged. A sub-check that meets a DNS temporary failure reports an error (so
``probe_success`` is 0 and nothing is claimed about that record) while the others still publish.

Each sub-check lives in its own module with the signature
``async def check(domain: DomainConfig, ctx: DnsContext) -> ProbeResult``. The checks that
judge the whole (:mod:`.readiness`, :mod:`.baseline`) run after them, with the merged result of
the sub-checks as a third argument: they read what was published, so "could not tell" stays so.

Every sub-check but DNSSEC reads only the answers it gets from ``ctx.dns``: when all of the last
run's questions get the same answers again, their result is the one kept (:mod:`.replay`; every
question is still asked each run). DNSSEC runs every time. A new sub-check that reads anything
else (the clock, the store, another network) goes beside DNSSEC, not in :data:`SUBCHECKS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from exporter.config import Config, DomainConfig
from exporter.dnssec import validator_for
from exporter.net.network import Network
from exporter.probes.dns import baseline, dkim, dmarc, dnssec, fcrdns, mx, readiness, replay, spf
from exporter.probes.dns.common import DnsContext, DnsResources, both, gather
from exporter.probes.dns.replay import Replays
from exporter.results import ProbeResult, Target

SubCheck = Callable[[DomainConfig, DnsContext], Awaitable[ProbeResult]]
PostCheck = Callable[[DomainConfig, DnsContext, ProbeResult], Awaitable[ProbeResult]]

SUBCHECKS: tuple[tuple[str, SubCheck], ...] = (
    ("spf", spf.check),
    ("dmarc", dmarc.check),
    ("dkim", dkim.check),
    ("mx", mx.check),
    ("fcrdns", fcrdns.check),
)
"""The sub-checks that read nothing but the DNS answers and the domain's config (replayed)."""
SIGNED: tuple[str, SubCheck] = ("dnssec", dnssec.check)
"""DNSSEC: its own validator, and signature expiry is a matter of time (run every time)."""
POSTCHECKS: tuple[tuple[str, PostCheck], ...] = (
    ("readiness", readiness.check),
    ("baseline", baseline.check),
)


class DnsProbe:
    name = "dns"
    title = "DNS authentication"
    config_key = "domains"

    def targets(self, config: Config) -> list[Target[DomainConfig]]:
        return [Target.of(self.name, d.domain, d, config) for d in config.domains]

    def resources(self, config: Config, net: Network) -> DnsResources:
        return DnsResources(dnssec=validator_for(config.global_), replays=Replays())

    async def run(self, target: Target[DomainConfig], ctx: DnsContext) -> ProbeResult:
        domain = target.settings
        replays: Replays | None = getattr(ctx.resources, "replays", None)
        kept = replays.get(domain.domain) if replays is not None else None
        if kept is not None:
            same, signed = await both(replay.unchanged(kept, ctx.dns), SIGNED[1](domain, ctx))
            if same and kept.same_signed(signed):
                return replay.handout(kept.result)
            pure = kept.pure() if same else await _pure(domain, ctx)
        else:
            pure, signed = await both(_pure(domain, ctx), SIGNED[1](domain, ctx))
        merged = replay.copy(pure)
        merged.merge(signed)
        judged = await gather(*(fn(domain, ctx, merged) for _, fn in POSTCHECKS))
        for result in judged:
            merged.merge(result)
        if replays is not None:
            replays.keep(domain.domain, ctx.dns, pure, signed, merged)
        return replay.handout(merged)


async def _pure(domain: DomainConfig, ctx: DnsContext) -> ProbeResult:
    merged = ProbeResult()
    for result in await gather(*(fn(domain, ctx) for _, fn in SUBCHECKS)):
        merged.merge(result)
    return merged


PROBE = DnsProbe()
