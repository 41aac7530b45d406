"""exporter.net.https against real aiohttp HTTPS servers on loopback (trustme certificates), with
host names resolved only by a real in-process DNS server (names no system resolver knows)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from dnsserver import DnsServer
from servers.https import (
    https_server,
    raw_tls_server,
    redirect,
    silent_server,
    text,
)

from exporter.net.certs import trust_store
from exporter.net.dnsclient import DnsClient, make_resolver
from exporter.net.dnsmodel import DnsTempError, NoAddress
from exporter.net.https import (
    HttpsConnectError,
    HttpsProtocolError,
    HttpsResponse,
    HttpsTimeout,
    HttpsTlsError,
    https_get,
    media_type,
)

HOST = "mta-sts.example.test"
PATH = "/.well-known/mta-sts.txt"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def dns(dns_server: DnsServer) -> DnsServer:
    dns_server.add(HOST, "A", "127.0.0.1")
    return dns_server


def client_of(server: DnsServer) -> DnsClient:
    """A DNS client that asks only the test DNS server."""
    return DnsClient(make_resolver([server.address], attempt_timeout=0.5, lifetime=1.0))


async def get(
    dns: DnsServer, port: int, ca_file: str | None, *, within: float = 5.0, **kw: object
) -> HttpsResponse:
    deadline = asyncio.get_running_loop().time() + within
    return await https_get(
        HOST,
        PATH,
        addresses=client_of(dns).addresses,
        deadline=deadline,
        port=port,
        trust=trust_store(ca_file),
        **kw,  # type: ignore[arg-type]
    )


async def test_valid_policy_host(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    cert = ca.issue_cert(HOST)
    async with https_server(cert, {PATH: text(POLICY)}) as server:
        resp = await get(dns, server.port, ca_file)
    assert (resp.status, resp.media_type, resp.body) == (200, "text/plain", POLICY.encode())
    assert not resp.truncated and resp.location is None
    assert resp.verdict is not None and resp.verdict.valid
    assert resp.tls_version == "TLS 1.3"
    assert resp.addresses == ("127.0.0.1",)
    assert server.sni == [HOST]  # SNI is the host name, not the address connected to
    assert server.hits == [PATH]
    leaf = resp.certificate
    assert leaf is not None and leaf.not_after > NOW.timestamp()
    assert resp.content_type.startswith("text/plain")


async def test_untrusted_without_the_ca(ca: trustme.CA, dns: DnsServer) -> None:
    async with https_server(ca.issue_cert(HOST), {PATH: text(POLICY)}) as server:
        resp = await get(dns, server.port, None)
    assert resp.status == 200  # fetched all the same: judged, not refused
    assert resp.verdict is not None
    assert not resp.verdict.valid and not resp.verdict.trusted and resp.verdict.name_ok


async def test_expired_certificate_is_fetched_and_judged(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    not_after = (NOW - dt.timedelta(days=3)).replace(microsecond=0)
    cert = ca.issue_cert(HOST, not_before=NOW - dt.timedelta(days=60), not_after=not_after)
    async with https_server(cert, {PATH: text(POLICY)}) as server:
        resp = await get(dns, server.port, ca_file)
    assert resp.verdict is not None and not resp.verdict.valid
    assert resp.verdict.trusted and resp.verdict.name_ok
    assert resp.certificate is not None and resp.certificate.not_after == not_after.timestamp()
    assert "expired" in resp.verdict.valid_error


async def test_wrong_name(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    async with https_server(ca.issue_cert("www.example.test"), {PATH: text(POLICY)}) as server:
        resp = await get(dns, server.port, ca_file)
    assert resp.verdict is not None
    assert not resp.verdict.valid and not resp.verdict.name_ok and resp.verdict.trusted
    assert HOST in resp.verdict.valid_error


async def test_chain_with_intermediate(dns: DnsServer, tmp_path: Path) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    async with https_server(intermediate.issue_cert(HOST), {PATH: text(POLICY)}) as server:
        resp = await get(dns, server.port, str(tmp_path / "root.pem"))
    assert len(resp.chain) == 2
    assert resp.verdict is not None and resp.verdict.valid


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed(
    ca: trustme.CA, ca_file: str, dns: DnsServer, status: int
) -> None:
    routes = {PATH: redirect("/elsewhere.txt", status), "/elsewhere.txt": text(POLICY)}
    async with https_server(ca.issue_cert(HOST), routes) as server:
        resp = await get(dns, server.port, ca_file)
    assert (resp.status, resp.location) == (status, "/elsewhere.txt")
    assert server.hits == [PATH]
    # The connection was released before the response was handed over; the chain was kept.
    assert resp.verdict is not None and resp.verdict.valid


async def test_not_found(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    async with https_server(ca.issue_cert(HOST), {}) as server:
        resp = await get(dns, server.port, ca_file)
    assert resp.status == 404
    assert resp.certificate is not None


async def test_media_type(ca: trustme.CA, ca_file: str, dns: DnsServer) -> None:
    routes = {PATH: text(POLICY, "Text/HTML; charset=utf-8")}
    async with https_server(ca.issue_cert(HOST), routes) as server:
        resp = await get(dns, server.port, ca_file)
    assert (resp.media_type, resp.content_type) == ("text/html", "Text/HTML; charset=utf-8")


@pytest.mark.parametrize(
    ("size", "cap", "truncated"),
    [(100_000, 65536, True), (65536, 65536, False), (65537, 65536, True), (10, 4, True)],
)
async def test_body_cap(
    ca: trustme.CA, ca_file: str, dns: DnsServer, size: int, cap: int, truncated: bool
) -> None:
    body = bytes(i % 251 for i in range(size))
    async with https_server(ca.issue_cert(HOST), {PATH: text(body)}) as server:
        resp = await get(dns, server.port, ca_file, max_body=cap)
    assert resp.truncated is truncated
    assert resp.body == body[:cap]


async def test_chunked_and_gzip_bodies_are_decoded(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for line in POLICY.splitlines(keepends=True):
            await resp.write(line.encode())
        await resp.write_eof()
        return resp

    async def gzipped(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "text/plain", "Content-Encoding": "gzip"}
        return web.Response(body=gzip.compress(POLICY.encode()), headers=headers)

    for handler in (chunked, gzipped):
        async with https_server(ca.issue_cert(HOST), {PATH: handler}) as server:
            resp = await get(dns, server.port, ca_file)
        assert resp.body == POLICY.encode(), handler


async def test_server_that_never_answers(dns: DnsServer) -> None:
    async with silent_server() as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HttpsTimeout, match=r"within 0\.[0-9] s \(connecting\)"):
            await get(dns, port, None, within=0.5)
        assert loop.time() - started < 3.0


async def test_server_silent_after_the_handshake(ca: trustme.CA, dns: DnsServer) -> None:
    async with silent_server(tls=ca.issue_cert(HOST)) as port:
        with pytest.raises(HttpsTimeout, match=r"waiting for the response") as info:
            await get(dns, port, None, within=0.5)
    assert isinstance(info.value, TimeoutError)


async def test_connection_refused(dns: DnsServer) -> None:
    async with silent_server() as port:
        pass  # closed again: nothing listens on the port now
    with pytest.raises(HttpsConnectError, match="cannot connect") as info:
        await get(dns, port, None)
    assert isinstance(info.value, ConnectionError)


async def test_not_tls(dns: DnsServer) -> None:
    async with raw_tls_server(None, b"220 smtp.example.test ESMTP\r\n") as port:
        with pytest.raises(HttpsTlsError):
            await get(dns, port, None)


async def test_not_http(ca: trustme.CA, dns: DnsServer) -> None:
    async with raw_tls_server(ca.issue_cert(HOST), b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as port:
        with pytest.raises(HttpsProtocolError):
            await get(dns, port, None)


async def test_closed_without_a_response(ca: trustme.CA, dns: DnsServer) -> None:
    async with raw_tls_server(ca.issue_cert(HOST), b"") as port:
        with pytest.raises(HttpsProtocolError, match="closed"):
            await get(dns, port, None)


async def test_host_without_address(dns: DnsServer) -> None:
    dns.remove(HOST)
    dns.add("example.test", "SOA", "ns.example.test. h.example.test. 1 2 3 4 5")
    with pytest.raises(NoAddress):
        await get(dns, 443, None)


async def test_dns_failure_propagates(dns: DnsServer) -> None:
    dns.servfail.add(HOST)
    with pytest.raises(DnsTempError):
        await get(dns, 443, None)


async def test_dns_stall_is_a_timeout(dns: DnsServer) -> None:
    dns.timeout.add(HOST)
    with pytest.raises(HttpsTimeout, match="resolving"):
        await get(dns, 443, None, within=0.3)


async def test_aaaa_only_host_is_connected_over_ipv6(ca: trustme.CA, dns: DnsServer) -> None:
    dns.set_records(HOST, [("AAAA", "::1")])
    try:
        server_cm = https_server(ca.issue_cert(HOST), {PATH: text(POLICY)}, address="::1")
        server = await server_cm.__aenter__()
    except OSError:
        pytest.fail("IPv6 loopback is not available on this machine")
    try:
        resp = await get(dns, server.port, None)
    finally:
        await server_cm.__aexit__(None, None, None)
    assert resp.status == 200 and resp.addresses == ("::1",)


def test_media_type_parsing() -> None:
    assert media_type("text/plain") == "text/plain"
    assert media_type(" TEXT/Plain ; charset=UTF-8") == "text/plain"
    assert media_type("") == ""
