"""The probe registry: one entry per probe kind, and where to start when adding one.

A probe kind is a :class:`~exporter.probes.base.ProbeKind`: it expands the config into typed
targets, makes its per-config resources, and runs one target with a
:class:`~exporter.probes.base.ProbeContext` (network layer in :mod:`exporter.net`, results in
:mod:`exporter.results`). The scheduler (:mod:`exporter.daemon`), the runner
(:mod:`exporter.runner`), the HTTP server and the collector know nothing of any kind.

Checklist for a new probe kind ``<kind>`` (``tests/test_registry.py`` checks the starred items
for every entry of :data:`PROBES`):

1. ``exporter/probes/<kind>.py`` exposing ``PROBE``; network code it needs goes to
   ``exporter/net/`` (never import another probe's module);
2. * its config model in :mod:`exporter.config` (a section of :class:`~exporter.config.Config`);
3. * a registry entry below;
4. * its metrics in :mod:`exporter.metrics` and, for each, a line in README.md's metric tables;
5. * its finding codes in :mod:`exporter.findings` (``probe="<kind>"``), then
   ``python -m exporter.findings > docs/FINDINGS.md``;
6. README (config and troubleshooting) and docs;
7. * alert rules ``alerts/<kind>.rules.yml`` with ``promtool`` tests in
   ``alerts/tests/<kind>.test.yml`` and a RUNBOOK.md section per alert;
8. * a row in ``grafana/dashboards/deliverability-overview.json`` querying its metrics;
9. the offline demo (:mod:`exporter.demo`) shows it;
10. * tests: ``tests/probes/test_<kind>*.py`` against real servers on loopback.
"""

from __future__ import annotations

from typing import Any

from exporter.probes import dns, dnsbl, roundtrip, ses, tls
from exporter.probes.base import ProbeKind

PROBES: dict[str, ProbeKind[Any, Any]] = {
    kind.name: kind
    for kind in (
        dns.PROBE,
        dnsbl.PROBE,
        roundtrip.PROBE,
        ses.PROBE,
        tls.PROBE,
    )
}
