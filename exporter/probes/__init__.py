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

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.probes.base import ProbeKind

KINDS: dict[str, tuple[str, str]] = {
    # name: (module exposing PROBE, the config section that enables it)
    "dns": ("exporter.probes.dns", "domains"),
    "dnsbl": ("exporter.probes.dnsbl", "blacklists"),
    "mta_sts": ("exporter.probes.mta_sts", "mta_sts"),
    "queue": ("exporter.probes.queue", "queues"),
    "reports": ("exporter.probes.reports", "reports"),
    "roundtrip": ("exporter.probes.roundtrip", "roundtrip"),
    "ses": ("exporter.probes.ses", "ses"),
    "tls": ("exporter.probes.tls", "tls"),
}
"""The registry: each kind's module and its config section (its ``config_key``)."""


class Registry(Mapping[str, "ProbeKind[Any, Any]"]):
    """:data:`KINDS` as a mapping of name to kind, each kind's module imported on its first use.

    A daemon watching domains and blacklists imports neither the MTA-STS, TLS, round-trip, SES,
    queue nor report probes, nor what only they use (about 60 ms and 4 MB at start,
    bench/README.md); :meth:`configured` names the kinds a config enables without importing
    the others."""

    def __getitem__(self, name: str) -> ProbeKind[Any, Any]:
        module, _ = KINDS[name]
        kind: ProbeKind[Any, Any] = import_module(module).PROBE
        return kind

    def __contains__(self, name: object) -> bool:
        return name in KINDS

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)

    def configured(self, config: Config) -> list[ProbeKind[Any, Any]]:
        """The kinds whose config section is present and not empty, in registry order (a kind
        has no target without its section)."""
        return [self[name] for name, (_, key) in KINDS.items() if getattr(config, key)]


PROBES = Registry()
