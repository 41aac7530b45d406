"""``deliverability-exporter demo``: started as a real process, its metrics scraped and its status
page fetched; and the lab servers it is made of (DNS, SMTP with STARTTLS, certificates)."""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from dnssec_lab import delv_status
from prometheus_client.parser import text_string_to_metric_families

from exporter.demo import (
    BLACKLIST_ZONE,
    DOMAINS,
    LISTED_IP,
    SIGNED,
    STALE_DS,
    lab_zones,
    start_lab,
)
from exporter.dnssec import Validator, parse_trust_anchors
from exporter.findings import CATALOGUE
from exporter.lab.certs import LabCA
from exporter.lab.dns import LabDnsServer, zone_text
from exporter.lab.dnssec import sign_hierarchy
from exporter.lab.imap import LabImapServer, LabMailbox
from exporter.lab.reportmail import demo_report_mail
from exporter.net.dnsraw import RawDns
from exporter.net.imap import ImapClient
from exporter.probes import PROBES
from exporter.reports.mime import parse_message
from exporter.runner import Runtime, run_probe

ROOT = Path(__file__).resolve().parents[1]

# ----- the demo process -----------------------------------------------------------------------


class Demo:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "demo", "--web.listen-address", "127.0.0.1:0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.banner: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_banner(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "the demo exited early"
                continue
            self.banner.append(line)
            if line.startswith("The first results appear"):
                text = "".join(self.banner)
                m = re.search(r"Status page\s+(http://127\.0\.0\.1:\d+/)", text)
                assert m is not None, text
                return m.group(1)
        raise AssertionError("no banner from the demo: " + "".join(self.banner))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode


@pytest.fixture
def demo() -> Iterator[Demo]:
    d = Demo()
    try:
        yield d
    finally:
        d.stop()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


def findings_of(metrics: str) -> set[tuple[str, str, str]]:
    out = set()
    for fam in text_string_to_metric_families(metrics):
        for s in fam.samples:
            if s.name == "deliverability_finding" and s.value == 1:
                out.add((s.labels["probe"], s.labels["target"], s.labels["code"]))
    return out


def expected_findings(banner: str) -> set[tuple[str, str, str]]:
    want = {
        ("dns", "weak.example", "dmarc_policy_none"),
        ("dns", "weak.example", "dmarc_no_rua"),
        ("dns", "weak.example", "dkim_key_weak"),
        ("dns", "weak.example", "mx_host_is_cname"),
        ("dns", "broken.example", "dmarc_missing"),
        ("dns", "broken.example", "dkim_key_missing"),
        ("dns", "broken.example", "mx_host_unresolvable"),
        ("dns", "weak.example", "baseline_drift"),
        ("dns", "broken.example", "sending_ip_ptr_mismatch"),
        ("dns", "broken.example", "sender_requirement_unmet"),
        ("dns", "app.platform.example", "dmarc_inherited"),
        ("dns", "app.platform.example", "dmarc_testing_mode"),
        ("dns", "weak.example", "dnssec_unsigned"),
        ("dns", "broken.example", "dnssec_bogus"),
    }
    if "spf_all_pass" in CATALOGUE:
        want.add(("dns", "broken.example", "spf_all_pass"))
    if "spf_too_many_lookups" in CATALOGUE:
        want.add(("dns", "broken.example", "spf_too_many_lookups"))
    if "dnsbl" in PROBES:
        want.add(("dnsbl", LISTED_IP, "ip_listed"))
    if "tls" in PROBES:
        m = re.search(r"(mail\.weak\.example:\d+)", banner)
        assert m is not None, banner
        want.add(("tls", m.group(1), "tls_cert_expiring"))
    if "mta_sts" in PROBES:
        assert "MTA-STS policy hosts: https://mta-sts.<domain>/ on 127." in banner, banner
        want |= {
            ("mta_sts", "weak.example", "mta_sts_testing_mode"),
            ("mta_sts", "weak.example", "mta_sts_mx_not_covered"),
            ("mta_sts", "weak.example", "mta_sts_max_age_short"),
            ("mta_sts", "weak.example", "mta_sts_cert_expiring"),
            ("mta_sts", "weak.example", "tlsrpt_missing"),
            ("mta_sts", "broken.example", "mta_sts_record_duplicate"),
            ("mta_sts", "broken.example", "mta_sts_policy_redirect"),
            ("mta_sts", "broken.example", "tlsrpt_invalid"),
        }
    if "queue" in PROBES:
        # redis-server is installed by scripts/test: the demo's queue targets must be there
        assert "Mail queues on the lab Redis" in banner, banner
        want.add(("queue", "app-mail", "queue_oldest_too_old"))
        want.add(("queue", "app-mail", "queue_no_workers"))
        want.add(("tls", m.group(1), "dane_tlsa_insecure"))
    if "reports" in PROBES:
        for code in ("dmarc_report_new_failing_source", "dmarc_report_failure_share_high",
                     "tlsrpt_failure_sessions", "reports_invalid_messages"):  # fmt: skip
            want.add(("reports", "dmarc-reports", code))
    return want


def test_demo_serves_metrics_findings_and_the_status_page(demo: Demo) -> None:
    base = demo.wait_banner()
    banner = "".join(demo.banner)
    assert "deliverability-exporter check --nameserver 127.0.0.1:" in banner
    want = expected_findings(banner)
    must_run = {
        ("dns", d)
        for d in ("healthy.example", "weak.example", "broken.example", "app.platform.example")
    }
    if "mta_sts" in PROBES:
        must_run.add(("mta_sts", "healthy.example"))
    if "tls" in PROBES:
        m = re.search(r"(mail\.healthy\.example:\d+)", banner)
        assert m is not None
        must_run.add(("tls", m.group(1)))
    if "queue" in PROBES:
        must_run |= {("queue", "app-mail"), ("queue", "celery-mail")}
    if "reports" in PROBES:
        must_run.add(("reports", "dmarc-reports"))
    deadline = time.monotonic() + 40
    seen: set[tuple[str, str, str]] = set()
    success: dict[tuple[str, str], float] = {}
    while time.monotonic() < deadline:
        metrics = get(base + "metrics")
        seen = findings_of(metrics)
        success = {
            (s.labels["probe"], s.labels["target"]): s.value
            for fam in text_string_to_metric_families(metrics)
            for s in fam.samples
            if s.name == "deliverability_probe_success"
        }
        if want <= seen and must_run <= set(success):
            break
        time.sleep(0.5)
    if not (want <= seen and must_run <= set(success)):
        # Say what the probes saw, to tell a lab problem from a probe problem.
        missing = want - seen
        pages = [get(base + f"target?probe={p}&name={t}") for p, t, _ in missing]
        raise AssertionError(
            f"missing findings: {missing}; not run: {must_run - set(success)}\n"
            + "\n".join(" ".join(re.sub("<[^>]+>", " ", x).split()) for x in pages)
        )
    # The healthy domain and its TLS server ran to completion and have no findings.
    assert all(success[k] == 1 for k in must_run if "healthy" in k[1])
    assert not [f for f in seen if f[1] in ("healthy.example", "127.0.0.1")]
    assert not [f for f in seen if f[0] == "tls" and "healthy" in f[1]]
    if "queue" in PROBES:
        assert success[("queue", "app-mail")] == success[("queue", "celery-mail")] == 1
        assert not [f for f in seen if f[1] == "celery-mail"]

    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(get(base + "metrics"))
        for s in fam.samples
    }

    def status(domain: str) -> str:
        (found,) = [
            dict(labels)["status"]
            for (name, labels), v in values.items()
            if name == "deliverability_dnssec_status" and dict(labels)["domain"] == domain and v
        ]
        return found

    assert [status(d) for d in DOMAINS] == ["secure", "insecure", "bogus", "insecure"]
    if "tls" in PROBES:
        healthy_tls = next(t for _, t in must_run if t.startswith("mail.healthy"))
        assert values[("deliverability_dane_valid", (("target", healthy_tls),))] == 1
    page = get(base)
    for name in ("healthy.example", "weak.example", "broken.example"):
        assert name in page
    assert "dmarc_missing" in page
    assert "Publish a TXT record at _dmarc.&lt;domain&gt;" in page  # the fix, escaped
    if "reports" in PROBES:
        assert success[("reports", "dmarc-reports")] == 1
        reports = get(base + "target?probe=reports&name=dmarc-reports")
        assert "DMARC sources of the last 7 days: healthy.example" in reports
        assert "203.0.113.66" in reports and "mail.healthy.example" in reports  # PTR via lab DNS
    detail = get(base + "target?probe=dns&name=broken.example")
    assert "Recent runs" in detail and "dmarc_missing" in detail
    assert "Ready for Gmail bulk senders: no — " in detail
    assert "FCrDNS fails for 192.0.2.99" in detail
    healthy = get(base + "target?probe=dns&name=healthy.example")
    assert "Ready for Gmail bulk senders: yes" in healthy
    assert demo.stop() == 0


# ----- the lab servers ------------------------------------------------------------------------


async def test_demo_without_redis_server_runs_without_queues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer's machine may lack redis-server: the lab starts without queue targets."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server to be found
    lab = await start_lab(tmp_path)
    try:
        assert lab.redis is None and "queues" not in lab.config_data
        assert lab.notes == ["redis-server not found: no queue targets (Debian/Ubuntu: apt-get"
                             " install redis-server)"]  # fmt: skip
    finally:
        await lab.stop()


async def test_lab_queues_seen_by_the_queue_probe(tmp_path: Path) -> None:
    lab = await start_lab(tmp_path)
    try:
        assert lab.redis is not None
        config = lab.config()
        rt = Runtime.for_config(config)
        try:
            results = {t.name: (await run_probe(PROBES["queue"], t, rt)).result
                       for t in PROBES["queue"].targets(config)}  # fmt: skip
        finally:
            await rt.aclose()
        depth = {(n, dict(s.labels)["queue"]): s.value for n, r in results.items()
                 for s in r.samples if s.metric == "queue_depth"}  # fmt: skip
        assert depth == {
            ("app-mail", "mail"): 3,
            ("app-mail", "reports"): 12,
            ("celery-mail", "celery"): 0,
            ("celery-mail", "emails"): 7,
        }
        app = results["app-mail"]
        assert {(f.code, f.subject, f.severity) for f in app.findings} == {
            ("queue_oldest_too_old", "reports", "critical"),
            ("queue_no_workers", "reports", "warning"),
        }
        assert [s.value for s in app.samples if s.metric == "queue_workers"] == [1]
    finally:
        await lab.stop()


async def ask(
    server: LabDnsServer, name: str, rdtype: str, *, tcp: bool = False
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", timeout=5, port=server.port)
    return await dns.asyncquery.udp(query, "127.0.0.1", timeout=5, port=server.port)


async def test_lab_dns_answers_like_an_authoritative_server() -> None:
    big = "v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(200)) + " -all"
    raw = big.encode()
    chunks = " ".join(f'"{raw[i : i + 255].decode()}"' for i in range(0, len(raw), 255))
    server = await LabDnsServer(
        [
            zone_text(
                "lab.example",
                [
                    "www A 127.0.0.1",
                    "alias CNAME www.lab.example.",
                    "a.b.deep A 127.0.0.2",
                    f"big TXT {chunks}",
                ],
            )
        ]
    ).start()
    try:
        resp = await ask(server, "alias.lab.example", "A")
        assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA
        assert [r.to_text() for r in resp.answer] == [
            "alias.lab.example. 300 IN CNAME www.lab.example.",
            "www.lab.example. 300 IN A 127.0.0.1",
        ]
        nx = await ask(server, "nothing.lab.example", "A")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == 6  # SOA
        nodata = await ask(server, "www.lab.example", "MX")
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
        ent = await ask(server, "b.deep.lab.example", "A")  # an empty non-terminal exists
        assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
        refused = await ask(server, "example.org", "A")
        assert refused.rcode() == dns.rcode.REFUSED
        truncated = await ask(server, "big.lab.example", "TXT")
        assert truncated.flags & dns.flags.TC and not truncated.answer
        whole = await ask(server, "big.lab.example", "TXT", tcp=True)
        assert b"".join(whole.answer[0][0].strings).decode() == big
    finally:
        await server.stop()


async def test_lab_serves_the_demo_blacklist_per_rfc_5782() -> None:
    server = await LabDnsServer(lab_zones()).start()
    try:
        listed = await ask(server, f"2.0.0.127.{BLACKLIST_ZONE}", "A")
        assert [r.to_text() for r in listed.answer[0]] == ["127.0.0.2"]
        clean = await ask(server, f"1.0.0.127.{BLACKLIST_ZONE}", "A")
        assert clean.rcode() == dns.rcode.NXDOMAIN
    finally:
        await server.stop()


async def _delv(anchor: Path, server: LabDnsServer, name: str, rdtype: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "delv", "-a", str(anchor), "+root=.", "@127.0.0.1", "-p", str(server.port), name, rdtype,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return delv_status(out.decode())


async def test_lab_dnssec_is_what_delv_and_the_validator_say(tmp_path: Path) -> None:
    """The demo's signed hierarchy, served by the in-process server, judged by delv (BIND) and
    by the exporter's validator alike."""
    signed = sign_hierarchy(lab_zones(), SIGNED, STALE_DS)
    ds = signed.root_ds[0].split(" DS ")[1].split()
    anchor = tmp_path / "delv.conf"
    anchor.write_text(f'trust-anchors {{ . static-ds {" ".join(ds[:3])} "{ds[3]}"; }};\n')
    server = await LabDnsServer(signed.zones).start()
    try:
        validator = Validator(
            RawDns([server.address]).query, parse_trust_anchors("\n".join(signed.root_ds), "lab")
        )
        questions = [
            ("healthy.example", "MX", "secure"),
            ("mail.healthy.example", "AAAA", "secure"),  # proven absent
            ("nothing.healthy.example", "A", "secure"),  # proven absent
            ("weak.example", "MX", "insecure"),
            (f"1.0.0.127.{BLACKLIST_ZONE}", "A", "insecure"),
            ("broken.example", "MX", "bogus"),
        ]
        for name, rdtype, expected in questions:
            mine = (await validator.validate(name, rdtype)).status.value
            theirs = await _delv(anchor, server, name, rdtype)
            assert (name, mine, theirs) == (name, expected, expected)
    finally:
        await server.stop()


def test_lab_certificates_verify_with_the_lab_ca() -> None:
    ca = LabCA()
    issued = ca.issue("mail.lab.example", "127.0.0.1", days=5)
    leaf = x509.load_pem_x509_certificate(issued.cert_pem)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.cert]))
        .build_server_verifier(x509.DNSName("mail.lab.example"))
    )
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca.cert
    remaining = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 5.9 < remaining.total_seconds() / 86400 < 6.1  # from yesterday to 5 days ahead


async def test_lab_smtp_offers_starttls_and_refuses_mail(tmp_path: Path) -> None:
    lab = await start_lab(tmp_path)
    try:
        if "tls" not in PROBES:
            assert not lab.smtp
            return
        server = lab.smtp["mail.healthy.example"]
        import ssl

        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "lab-ca.pem"))
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=server.port,
            start_tls=False,
            tls_context=client_ctx,
            timeout=10,
        )
        await smtp.connect()
        try:
            await smtp.ehlo(hostname="probe.test")
            assert smtp.supports_extension("starttls")
            code, _ = await smtp.execute_command(b"MAIL", b"FROM:<a@b.example>")
            assert code == 530
            await smtp.starttls(server_hostname="mail.healthy.example")
            await smtp.ehlo(hostname="probe.test")
            assert not smtp.supports_extension("starttls")
            ssl_object = smtp.transport.get_extra_info("ssl_object") if smtp.transport else None
            assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            code, _ = await smtp.execute_command(b"MAIL", b"FROM:<a@b.example>")
            assert code == 554
        finally:
            await smtp.quit()
        config = lab.config()
        assert [t.target for t in config.tls] == [
            f"{host}:{s.port}" for host, s in lab.smtp.items()
        ]
        assert config.global_.nameservers == [lab.dns.address]
    finally:
        await lab.stop()


async def test_lab_policy_hosts_answer_over_tls_on_443(tmp_path: Path) -> None:
    """The demo's MTA-STS policy hosts: one certificate per host by SNI, a policy or a redirect,
    found through the lab DNS (as the probe finds them)."""
    from exporter.net.certs import trust_store
    from exporter.net.dnsclient import DnsClient, make_resolver
    from exporter.net.https import https_get

    lab = await start_lab(tmp_path)
    try:
        if "mta_sts" not in PROBES:
            assert lab.policy is None
            return
        assert lab.policy is not None and lab.policy.port == 443
        client = DnsClient(make_resolver([lab.dns.address], attempt_timeout=1, lifetime=2))
        trust = trust_store(str(tmp_path / "lab-ca.pem"), system=False)
        answers = {}
        for domain in ("healthy.example", "weak.example", "broken.example"):
            deadline = asyncio.get_running_loop().time() + 10
            answers[domain] = await https_get(
                f"mta-sts.{domain}",
                "/.well-known/mta-sts.txt",
                addresses=client.addresses,
                deadline=deadline,
                trust=trust,
            )
        healthy, weak, broken = answers.values()
        assert (healthy.status, healthy.media_type) == (200, "text/plain")
        assert b"mode: enforce" in healthy.body
        assert healthy.verdict is not None and healthy.verdict.valid
        assert weak.certificate is not None and healthy.certificate is not None
        days_left = (weak.certificate.not_after - time.time()) / 86400
        assert 4.9 < days_left < 5.1  # the weak domain's own certificate, picked by SNI
        assert (broken.status, broken.location) == (301, "https://www.broken.example/mta-sts.txt")
        assert lab.config().mta_sts is not None
    finally:
        await lab.stop()


async def test_lab_imap_serves_the_report_mailbox() -> None:
    mailbox = LabMailbox()
    for message in demo_report_mail():
        mailbox.append("INBOX", message)
    server = await LabImapServer("u@lab.example", "pw", mailbox).start()
    try:
        client = await ImapClient.open("127.0.0.1", server.port, security="none",
                                       server_hostname="127.0.0.1", ssl_context=None,
                                       op_timeout=5)  # fmt: skip
        await client.login("u@lab.example", "pw")
        assert await client.ensure_folder("Done") is True
        assert await client.ensure_folder("Done") is False
        await client.select("INBOX")
        uids = await client.uid_search("UNDELETED")
        assert len(uids) == 4
        sizes = await client.fetch_sizes(uids)
        raw = await client.fetch_message(uids[0], 1 << 20)
        assert raw is not None and len(raw) == sizes[uids[0]]
        assert parse_message(raw).dmarc[0].domain == "healthy.example"
        await client.move(uids[:1], "Done")
        assert await client.uid_search("ALL") == uids[1:]
        assert len(mailbox.folders["Done"]) == 1
        await client.logout()
    finally:
        await server.stop()
