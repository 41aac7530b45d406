"""The probe registry: one entry per probe kind.

Adding a probe kind: write ``exporter/probes/<kind>.py`` exposing ``PROBE`` (see
:class:`exporter.probes.base.ProbeKind`), its config model in :mod:`exporter.config`, its metrics
in :mod:`exporter.metrics`, its finding codes in :mod:`exporter.findings`, and add it here.
Nothing in the scheduler, the HTTP server or the collector changes.
"""

from __future__ import annotations

from exporter.probes import dns, dnsbl, queue, roundtrip, ses, tls
from exporter.probes.base import ProbeKind

PROBES: dict[str, ProbeKind] = {
    kind.name: kind
    for kind in (
        dns.PROBE,
        dnsbl.PROBE,
        queue.PROBE,
        roundtrip.PROBE,
        ses.PROBE,
        tls.PROBE,
    )
}
