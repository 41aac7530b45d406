"""The probe seam: what a probe kind is and what it is handed for a run.

A probe kind (:class:`ProbeKind`) has a ``name``, expands the config into typed targets
(``targets(config) -> list[Target[S]]``), makes the resources that live across its runs
(``resources(config, net) -> R``) and runs one target (``run(target, ctx) -> ProbeResult``).
Probes never import prometheus_client: they return :class:`~exporter.results.Sample` values by
metric name (declared in :mod:`exporter.metrics`) and :class:`~exporter.results.Finding` values
by code (declared in :mod:`exporter.findings`); the runner and the collector do the rest.

Resources (engines, caches, clients, thread pools, memory of earlier runs) are made by the
runtime once per loaded config, handed to every run as ``ctx.resources``, and closed
(``aclose()``) when a reload replaces the config or the daemon stops. Probe modules keep no
mutable state of their own; what must survive a restart goes to ``ctx.store``.

A probe reports trouble as data: ``ProbeResult.error`` set (``probe_success 0``) and findings.
Exceptions that escape are turned into an error by the runner (which logs the traceback), so a
probe catches only the errors the network and the data it reads can raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from exporter.net.dnsclient import DnsClient
from exporter.net.network import Network
from exporter.results import ProbeResult, Target

if TYPE_CHECKING:
    from exporter.config import Config
    from exporter.storage import Store


class Resource(Protocol):
    """What a probe kind keeps across its runs of one config."""

    async def aclose(self) -> None: ...


class NoResources:
    """The resources of a probe kind that keeps nothing across runs."""

    async def aclose(self) -> None:
        return None


NO_RESOURCES = NoResources()

S = TypeVar("S")
R = TypeVar("R", bound=Resource)
R_co = TypeVar("R_co", bound=Resource, covariant=True)


@dataclass
class ProbeContext(Generic[R_co]):
    """What the runner hands a run: a fresh per-run DNS client (``dns``), the config's network
    layer (``net``), the run's timeout, a logger, the config, the store (None in one-shot runs)
    and the probe kind's resources for this config."""

    dns: DnsClient
    net: Network
    timeout: float
    log: logging.Logger
    config: Config
    resources: R_co
    store: Store | None = None


class ProbeKind(Protocol[S, R]):
    """A kind of probe, registered in :data:`exporter.probes.PROBES`."""

    name: str

    def targets(self, config: Config) -> list[Target[S]]: ...

    def resources(self, config: Config, net: Network) -> R: ...

    async def run(self, target: Target[S], ctx: ProbeContext[R]) -> ProbeResult: ...
