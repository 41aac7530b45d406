"""The mta_sts probe against hostile policy hosts on port 443 of loopback addresses: servers that
send oversized or malformed HTTP, endless or compressed bodies, odd media types, redirects, and
bytes meant for the terminal of whoever runs ``check``. Each must end as a finding (or could not
tell) with a bounded, printable reason, never a crash."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
from conftest import make_ctx
from dnsserver import DnsServer
from probes import test_mta_sts as sts
from probes.test_mta_sts import DOMAIN, ENFORCE, HOST, codes, mode, probe
from probes.test_mta_sts import value as sample
from servers.https import loopback_address, server_context

from exporter.config import parse_config
from exporter.probes.mta_sts import PROBE
from exporter.report import Report, render_text
from exporter.results import ProbeResult, RunRecord, Target

dns = sts.dns  # the fixture: the domain's MX, _mta-sts and _smtp._tls records
Step = Callable[[asyncio.StreamWriter], Awaitable[None]]
BODY = ENFORCE.encode()


def ok(headers: bytes = b"Content-Type: text/plain\r\n", body: bytes = BODY) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


@contextlib.asynccontextmanager
async def scripted_host(
    dns: DnsServer, cert: trustme.LeafCert, answer: bytes | Step
) -> AsyncIterator[None]:
    """A policy host on 443 of a fresh loopback address that reads the request and sends
    ``answer`` (bytes, or a coroutine writing to the stream), then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            if isinstance(answer, bytes):
                writer.write(answer)
                await writer.drain()
            else:
                await answer(writer)
        writer.close()

    for _ in range(20):
        address = loopback_address()
        try:
            srv = await asyncio.start_server(handle, address, 443, ssl=server_context(cert))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        dns.set_records(HOST, [("A", address)])
        try:
            yield
        finally:
            srv.close()
        return
    raise RuntimeError("no free loopback address for port 443")


async def fetch(dns: DnsServer, ca: trustme.CA, ca_file: str, answer: bytes | Step) -> ProbeResult:
    async with scripted_host(dns, ca.issue_cert(HOST), answer):
        return await probe(dns, ca_file, within=3.0)


async def endless_chunks(writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    for _ in range(10_000):  # 160 MB if nobody stops reading
        writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
        await writer.drain()


GZIP_BOMB = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MB in ~64 KB


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (ok(b"Content-Type: text/plain\r\nX-Big: " + b"a" * 200_000 + b"\r\n"),
         "mta_sts_policy_unreachable", "8190 bytes"),
        (ok(b"Content-Type: text/plain\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000))),
         "mta_sts_policy_unreachable", "Too many headers"),
        (endless_chunks, "mta_sts_policy_invalid", "larger than 64 KB"),
        (ok(b"Content-Type: text/plain\r\nContent-Encoding: gzip\r\n", GZIP_BOMB),
         "mta_sts_policy_invalid", "larger than 64 KB"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n" + BODY,
         "mta_sts_policy_unreachable", "Not enough data"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "mta_sts_policy_unreachable", "chunk size"),
        (b"HTTP/1.1 308 Permanent\r\nLocation: https://www." + DOMAIN.encode() + b"/\r\n"
         b"Content-Length: 0\r\n\r\n", "mta_sts_policy_redirect", "308"),
        (ok(b"Content-Type: text/plain\r\n", b"\xef\xbb\xbf" + BODY),
         "mta_sts_policy_invalid", "byte-order mark"),
        (ok(b"Content-Type: text/html\r\nContent-Type: text/plain\r\n"),
         "mta_sts_policy_media_type", "text/html"),
        (ok(b"Content-Type: text/plainx\r\n"), "mta_sts_policy_media_type", "text/plainx"),
        (ok(b""), "mta_sts_policy_media_type", "(none)"),
    ],
)  # fmt: skip
async def test_hostile_answer_is_a_bounded_finding(
    ca: trustme.CA, ca_file: str, dns: DnsServer, answer: bytes | Step, code: str, words: str
) -> None:
    result = await fetch(dns, ca, ca_file, answer)
    assert result.error is None
    assert code in codes(result), result.findings
    evidence = codes(result)[code].evidence
    assert words in evidence and len(evidence) < 600
    assert "connecting" not in evidence  # the handshake was done: the step is named right
    assert sample(result, "mta_sts_policy_valid", domain=DOMAIN) == 0


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "TEXT/Plain", "text/plain;charset=utf-8", 'text/plain ; charset="UTF-8"; x=y'],
)
async def test_media_type_parameters_and_case(
    ca: trustme.CA, ca_file: str, dns: DnsServer, content_type: str
) -> None:
    result = await fetch(dns, ca, ca_file, ok(b"Content-Type: " + content_type.encode() + b"\r\n"))
    assert result.findings == [] and sample(result, "mta_sts_policy_valid", domain=DOMAIN) == 1
    assert mode(result) == "enforce"


async def test_slow_loris_is_could_not_tell_within_the_timeout(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await fetch(dns, ca, ca_file, drip)
    assert loop.time() - started < 3.5
    assert result.error is not None and "no answer within" in result.error
    assert result.findings == [] and mode(result) is None


async def test_terminal_escapes_from_the_server_never_reach_check_output(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    hostile = b"\x1b]0;owned\x07\x1b[2J\x9b31m"
    answer = (
        b"HTTP/1.1 302 Found\r\nLocation: https://x/" + hostile + b"\r\nContent-Length: 0\r\n\r\n"
    )
    result = await fetch(dns, ca, ca_file, answer)
    assert "\x1b]0;owned" in codes(result)["mta_sts_policy_redirect"].evidence  # as seen
    rec = RunRecord(Target("mta_sts", DOMAIN, None, 60.0, 5.0), result, 0.0, 0.1, 0.1)
    text = render_text(Report.of([rec], started=0.0, duration=0.1), verbose=True)
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\x1b]0;owned" in text  # shown, escaped


async def test_domain_too_long_for_the_record_names_has_no_record(dns_server: DnsServer) -> None:
    # _mta-sts.<domain> and _smtp._tls.<domain> cannot exist for a domain of 245+ characters:
    # senders find no record, which is an answer, not a DNS failure.
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53, "test"])
    assert len(domain) == 250
    dns_server.add(domain, "MX", f"10 mx.{DOMAIN}.")
    config = parse_config(
        {
            "global": {"nameservers": [dns_server.address], "timeout": 3.0},
            "domains": [{"domain": domain}],
            "mta_sts": {},
        }
    )
    (target,) = PROBE.targets(config)
    result = await PROBE.run(target, make_ctx(dns_server, config=config, timeout=3.0))
    assert result.error is None
    assert mode(result) == "none" and result.findings == []
    assert not [n for n, _ in dns_server.queries if n.startswith(("_mta-sts.", "_smtp._tls."))]


async def test_record_strings_split_anywhere_are_one_record(dns: DnsServer) -> None:
    dns.set_records(f"_mta-sts.{DOMAIN}", [("TXT", '"v=STS" "v1;" " id=2025" "0101"')])
    dns.set_records(f"_smtp._tls.{DOMAIN}", [("TXT", '"v=TLSRPTv1; rua=mai" "lto:t@example.test"')])
    result = await probe(dns, None, within=2.0)
    assert result.details["mta-sts id"] == "20250101"
    assert sample(result, "tlsrpt_valid", domain=DOMAIN) == 1


async def test_hundreds_of_records_make_a_bounded_finding(dns: DnsServer) -> None:
    dns.set_records(f"_mta-sts.{DOMAIN}", [("TXT", f'"v=STSv1; id={i}"') for i in range(500)])
    dns.set_records(
        f"_smtp._tls.{DOMAIN}",
        [("TXT", f'"v=TLSRPTv1; rua=mailto:t{i}@example.test"') for i in range(500)],
    )
    result = await probe(dns, None, within=3.0)
    found = codes(result)
    for code in ("mta_sts_record_duplicate", "tlsrpt_duplicate"):
        assert "500 records" in found[code].evidence
        assert len(found[code].evidence) < 1000
    assert all(len(v) < 1000 for v in result.details.values())


async def test_one_huge_invalid_record_makes_a_bounded_finding(dns: DnsServer) -> None:
    dns.set_records(f"_mta-sts.{DOMAIN}", [])
    dns.add_txt(
        f"_mta-sts.{DOMAIN}", "v=STSv1; id=1; " + "; ".join(f"x{i}=\x01" for i in range(3000))
    )
    result = await probe(dns, None, within=3.0)
    evidence = codes(result)["mta_sts_record_invalid"].evidence
    assert len(evidence) < 1000 and "..." in evidence


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"HTTP/1.1 302 Found\r\nLocation: https://x/" + b"a" * 8000 + b"\r\n"
         b"Content-Length: 0\r\n\r\n", "mta_sts_policy_redirect"),
        (ok(b"Content-Type: text/html; x=" + b"a" * 8000 + b"\r\n"), "mta_sts_policy_media_type"),
    ],
)  # fmt: skip
async def test_long_headers_make_bounded_evidence(
    ca: trustme.CA, ca_file: str, dns: DnsServer, answer: bytes, code: str
) -> None:
    result = await fetch(dns, ca, ca_file, answer)
    assert len(codes(result)[code].evidence) < 600
    assert all(len(v) < 1000 for v in result.details.values())


async def test_an_mx_line_in_another_case_is_pointed_out(
    ca: trustme.CA, ca_file: str, dns: DnsServer
) -> None:
    # in.mail.example.test is listed only as "MX:", which senders ignore
    body = ENFORCE.replace("mx: *.mail.example.test", "MX: *.mail.example.test")
    result = await fetch(dns, ca, ca_file, ok(body=body.encode()))
    assert "mta_sts_mx_not_covered" in codes(result)
    assert "'MX' is not 'mx'" in result.details["policy note"]
