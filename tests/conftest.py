"""Shared fixtures: a real loopback DNS server, and a probe context pointed at it."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from dnsserver import DnsServer

from exporter.config import Config, parse_config
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.network import Network
from exporter.probes.base import NO_RESOURCES, NoResources, ProbeContext
from exporter.results import ProbeResult


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on uvloop, the event loop the daemon runs on
    (:func:`exporter.runner.run_event_loop`)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throw-away certificate authority (trustme) for the module's TLS servers."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The CA's certificate as a PEM file, for ``ca_file`` settings."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A fresh in-process authoritative DNS server on 127.0.0.1 (UDP+TCP, free port)."""
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


def make_ctx(
    server: DnsServer, *, timeout: float = 10.0, lifetime: float = 1.0, config: Config | None = None
) -> ProbeContext[NoResources]:
    """A probe context whose DNS client asks only ``server``."""
    resolver = make_resolver([server.address], attempt_timeout=lifetime, lifetime=lifetime)
    return ProbeContext(
        dns=DnsClient(resolver),
        net=Network(resolver),
        timeout=timeout,
        log=logging.getLogger("test"),
        config=config or parse_config({"global": {"nameservers": [server.address]}}),
        resources=NO_RESOURCES,
    )


def exposed_value(text: str, name: str, **labels: str) -> float:
    """The one sample of ``name`` with ``labels`` in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    (match,) = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return float(match)


def sample_value(result: ProbeResult, metric: str, **labels: str) -> float | None:
    """The value of the one sample of ``metric`` whose labels include ``labels`` (None: none)."""
    found = [
        s.value
        for s in result.samples
        if s.metric == metric and all(dict(s.labels).get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (metric, found)
    return found[0] if found else None
