"""The ``tls`` probe: the certificate and TLS of a mail server, as a sending MTA meets them.

Targets (one :class:`~exporter.results.Target` per ``tls`` config entry):

* ``target: host:port`` — Target name and every sample's ``target`` label are ``host:port``.
  STARTTLS unless ``starttls: false`` or the port is 465 (implicit TLS).
* ``mx_of: DOMAIN`` — Target name ``mx:DOMAIN`` (that is the ``target`` of ``probe_success`` and
  of the findings). Each run looks up the domain's MX records, so the probed hosts follow DNS
  changes, and probes every A and AAAA address of every MX host on port 25 with STARTTLS
  (:mod:`exporter.probes.tls_mx`); per-host samples carry ``target="<mx host>:25"`` and report
  the worst address, findings name the host (and the address) in their ``subject``. A domain
  without MX records (or with a null MX) has nothing to probe: the run succeeds with no per-host
  samples (the ``dns`` probe reports the missing MX).

DANE (:mod:`exporter.probes.tls_dane`) is checked for ``mx_of`` hosts and targets with
``dane: true``: the TLSA records at ``_<port>._tcp.<host>``, validated by the exporter's own
DNSSEC validator (the probe's per-config resource), matched against the chain each address
presents.

Each endpoint gets one SMTP conversation up to the TLS handshake
(:mod:`exporter.probes.tls_endpoint`): the chain is fetched without verification and judged
afterwards, so the certificate metrics are present even for an expired, self-signed or misnamed
certificate.

Everything runs under one deadline a little shorter than the target's timeout, so a server that
accepts and never speaks, or stalls mid-handshake, ends the run with an error naming the stalled
step (and whatever was seen before it) rather than the runner's bare timeout.

"Could not tell" (DNS failure, refused or timed-out connection, a temporary SMTP reply) is an
error (``probe_success 0``) and never a finding. A TLS alert during the handshake is a finding
(``tls_handshake_failed``): the server answered, and senders will fail the same way.
"""

from __future__ import annotations

import asyncio

from exporter.config import Config, TlsTargetConfig
from exporter.dnssec import validator_for
from exporter.net.addr import split_host_port
from exporter.net.network import Network
from exporter.probes import tls_dane, tls_mx
from exporter.probes.tls_endpoint import Endpoint, TlsContext, TlsResources, converse, report
from exporter.results import ProbeResult, Target


def _budget(timeout: float) -> float:
    """Our own deadline: a little before the runner's, so we report what we saw."""
    return max(timeout - min(0.5, timeout * 0.1), 0.01)


class TlsProbe:
    name = "tls"
    title = "TLS"
    config_key = "tls"

    def targets(self, config: Config) -> list[Target[TlsTargetConfig]]:
        return [
            Target.of(self.name, e.target if e.target is not None else f"mx:{e.mx_of}", e, config)
            for e in config.tls
        ]

    def resources(self, config: Config, net: Network) -> TlsResources:
        return TlsResources(dnssec=validator_for(config.global_))

    async def run(self, target: Target[TlsTargetConfig], ctx: TlsContext) -> ProbeResult:
        settings = target.settings
        deadline = asyncio.get_running_loop().time() + _budget(ctx.timeout)
        if settings.mx_of is not None:
            return await tls_mx.run_mx(settings.mx_of, settings, ctx, deadline)
        assert settings.target is not None
        host, port = split_host_port(settings.target)
        endpoint = Endpoint(
            host=host,
            port=port,
            label=target.name,
            name=settings.server_name or host,
            starttls=settings.use_starttls,
        )
        outcome = await converse(endpoint, settings, ctx, deadline)
        result = ProbeResult()
        if settings.use_dane:
            result.merge(await tls_dane.check(endpoint, [outcome], ctx, deadline))
        result.merge(report(endpoint, outcome))
        return result


PROBE = TlsProbe()
