"""Shared fixtures: a real loopback DNS server, and a probe context pointed at it."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from dnsserver import DnsServer

from exporter.config import Config, parse_config
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.network import Network
from exporter.probes.base import NO_RESOURCES, NoResources, ProbeContext


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on uvloop, the event loop the daemon runs on
    (:func:`exporter.runner.run_event_loop`)."""
    return {"uvloop": uvloop.new_event_loop}


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
