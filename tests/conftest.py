"""Shared fixtures: a real loopback DNS server, a probe context pointed at it, and for the tests
that talk to AWS, moto on loopback with the front server before it."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).parent))

from awsenv import isolate_aws, moto_server, reset_moto
from dnsserver import DnsServer
from sqsfront import SqsFront

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


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, nothing but loopback (:func:`awsenv.isolate_aws`); modules that talk
    to AWS use it for every test (``pytestmark = pytest.mark.usefixtures("aws_env")``)."""
    isolate_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server for the test module (reset by the fixtures that use it)."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def aws_front_server(moto_url: str) -> Iterator[SqsFront]:
    server = SqsFront(moto_url).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_front(moto_url: str, aws_front_server: SqsFront) -> SqsFront:
    """The front server (SQS errors on the wire, SESv2 GetAccount), reset, over a reset moto."""
    reset_moto(moto_url)
    aws_front_server.reset()
    return aws_front_server
