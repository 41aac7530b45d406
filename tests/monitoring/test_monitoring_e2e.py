"""End to end: the real exporter against defective loopback servers, scraped by a real
Prometheus with the bundled rules (``for:`` divided by 360 in a copy), paging through a real
Alertmanager with the bundled routing into a webhook receiver; and every dashboard panel queried
against that Prometheus.

The loopback world (all on 127.0.0.1): one authoritative DNS server (tests/dnsserver.py) serving
a healthy domain, one domain per defect, one whose answers time out ("could not tell"), and two
blacklist zones; two STARTTLS SMTP servers (aiosmtpd with trustme certificates), one healthy and
one whose certificate expires in 5 days; an HTTPS server on port 443 of a loopback address as the
MTA-STS policy host of good.test (a policy listing its MX) and of lookups.test (an enforce policy
that does not list its MX); a redis-server with a healthy RQ mail queue (a job waiting, a worker
registered the way RQ's worker does). Halfway, the DMARC policy of weakened.test is lowered from
reject to none, as a careless DNS edit would.

Not run here, so their dashboard panels are listed in ``NOT_EXERCISED``: the ``ses`` probe (it
needs the moto server and its front, covered by tests/probes/test_ses.py), the ``roundtrip``
probe (postfix and dovecot, covered by tests/probes/test_roundtrip.py) and the ``reports`` probe
(dovecot: its dashboard row is queried against a real Prometheus in
tests/monitoring/test_reports_dashboard.py); their alert rules are covered by promtool unit
tests. DNSSEC and DANE (``global.dnssec: false`` here: the DNS server is not signed) have their
own end-to-end test against a signed hierarchy: tests/monitoring/test_dnssec_e2e.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
import trustme
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from dnsserver import DnsServer
from monitoring_support import DASHBOARDS, DEPLOY
from promstack import RUNBOOK_BASE_URL, Daemon, PromStack, free_port, get, wait_for
from servers.https import ThreadedHttpsServer

from exporter.lab.redis import LabRedis

pytestmark = pytest.mark.slow

HEALTHY_IP = "192.0.2.10"
LISTED_IP = "192.0.2.66"
INCLUDES = 11  # one include more than SPF's limit of 10 lookups


def dkim_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def dmarc(domain: str, policy: str) -> str:
    return f"v=DMARC1; p={policy}; rua=mailto:dmarc@{domain}"


def zone() -> DnsServer:
    dns = DnsServer()
    key = dkim_key()
    for d in ("good.test", "nodmarc.test", "nodkim.test", "plusall.test", "lookups.test",
              "weakened.test"):  # fmt: skip
        dns.add(d, "MX", f"10 mx.{d}.")
        dns.add(f"mx.{d}", "A", "192.0.2.25")
        if d != "nodmarc.test":
            dns.add_txt(f"_dmarc.{d}", dmarc(d, "reject"))
        if d != "nodkim.test":
            dns.add_txt(f"s1._domainkey.{d}", key)
    for d in ("good.test", "nodmarc.test", "nodkim.test", "weakened.test"):
        dns.add_txt(d, f"v=spf1 ip4:{HEALTHY_IP} -all")
    dns.add_txt("plusall.test", "v=spf1 +all")
    # the healthy sending IP is forward-confirmed (Gmail's FCrDNS rule)
    dns.add("10.2.0.192.in-addr.arpa", "PTR", "out.good.test.")
    dns.add("out.good.test", "A", HEALTHY_IP)
    includes = " ".join(f"include:i{n}.lookups.test" for n in range(INCLUDES))
    dns.add_txt("lookups.test", f"v=spf1 {includes} -all")
    for n in range(INCLUDES):
        dns.add_txt(f"i{n}.lookups.test", f"v=spf1 ip4:198.51.100.{n} -all")
    # could not tell: every name of timeout.test goes unanswered
    dns.timeout |= {
        "timeout.test", "_dmarc.timeout.test", "s1._domainkey.timeout.test",
        "timeout.test.dbl.test",
    }  # fmt: skip
    # blacklists: RFC 5782 self-test entries, and one listed sending IP
    dns.add("2.0.0.127.bl.test", "A", "127.0.0.2")
    dns.add("test.dbl.test", "A", "127.0.0.2")
    dns.add("66.2.0.192.bl.test", "A", "127.0.0.2")
    dns.add_txt("66.2.0.192.bl.test", "listed for the end-to-end test")
    # MTA-STS and TLS-RPT: good.test's policy lists its MX, lookups.test's does not
    for d in ("good.test", "lookups.test"):
        dns.add_txt(f"_mta-sts.{d}", "v=STSv1; id=20250101T000000")
        dns.add_txt(f"_smtp._tls.{d}", f"v=TLSRPTv1; rua=mailto:tls@{d}")
    return dns


def policies() -> dict[tuple[str, str], tuple[int, str, bytes]]:
    path = "/.well-known/mta-sts.txt"
    policy = "version: STSv1\nmode: enforce\nmx: {}\nmax_age: 604800\n"
    return {
        ("mta-sts.good.test", path): (200, "text/plain", policy.format("mx.good.test").encode()),
        ("mta-sts.lookups.test", path): (
            200,
            "text/plain",
            policy.format("mx.other.test").encode(),
        ),
    }


def smtp_server(cert: trustme.LeafCert) -> tuple[Controller, int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    port = free_port()
    controller = Controller(
        Sink(), hostname="127.0.0.1", port=port, server_hostname="127.0.0.1",
        tls_context=ctx, ready_timeout=5,
    )  # fmt: skip
    controller.start()
    return controller, port


def exporter_config(
    dns: DnsServer, ca_file: Path, good_tls: str, expiring_tls: str, redis_url: str
) -> dict[str, Any]:
    domain = {"dkim_selectors": ["s1"], "sending_ips": [HEALTHY_IP]}
    return {
        "global": {
            "interval": "2s",
            "timeout": "10s",
            "nameservers": [dns.address],
            "dnssec": False,
            "allow_short_intervals": True,
        },
        "domains": [
            {
                "domain": "good.test",
                **domain,
                "expect": {"dmarc_policy": "reject", "mx": ["mx.good.test"]},
            },
            {"domain": "nodmarc.test", **domain},
            {"domain": "nodkim.test", **domain},
            {"domain": "weakened.test", **domain, "expect": {"dmarc_policy": "reject"}},
            {"domain": "lookups.test"},
            {"domain": "plusall.test", "sending_ips": [LISTED_IP]},
            {"domain": "timeout.test", "dkim_selectors": ["s1"]},
        ],
        "blacklists": {"ip_zones": ["bl.test"], "domain_zones": ["dbl.test"], "interval": "2s"},
        "tls": [
            {"target": good_tls, "server_name": "mail.good.test", "ca_file": str(ca_file)},
            {"target": expiring_tls, "server_name": "mail.expiring.test", "ca_file": str(ca_file)},
        ],
        "mta_sts": {"interval": "2s", "ca_file": str(ca_file)},
        "queues": [{"name": "app-mail", "kind": "rq", "redis_url": redis_url, "queues": ["mail"]}],
    }


def healthy_rq_queue(url: str) -> rq.Worker:
    """One job waiting in RQ's 'mail' queue and a live worker registered for it."""
    connection = redis.Redis.from_url(url)
    rq.Queue("mail", connection=connection).enqueue("os.getcwd")
    worker = rq.Worker(["mail"], connection=connection, name="e2e-worker")
    worker.register_birth()
    return worker


@dataclass
class Lab:
    dns: DnsServer
    prom: PromStack
    exporter_port: int
    good_tls: str
    expiring_tls: str
    seconds_to_all_alerts: float


EXPECTED_PAGES = {
    ("EmailDeliverabilitySPFTooManyLookups", "lookups.test"),
    ("EmailDeliverabilitySPFAllowsAnySender", "plusall.test"),
    ("EmailDeliverabilityDMARCRecordMissing", "nodmarc.test"),
    ("EmailDeliverabilityDKIMKeyInvalid", "nodkim.test"),
    ("EmailDeliverabilityDMARCPolicyWeakened", "weakened.test"),
    # the bulk-sender rules: no DMARC, no DKIM key, SPF broken, a sending IP without PTR
    ("EmailDeliverabilitySenderRequirementUnmet", "nodmarc.test"),
    ("EmailDeliverabilitySenderRequirementUnmet", "nodkim.test"),
    ("EmailDeliverabilitySenderRequirementUnmet", "lookups.test"),
    ("EmailDeliverabilitySenderRequirementUnmet", "plusall.test"),
    ("EmailDeliverabilityBlacklisted", LISTED_IP),
    ("EmailDeliverabilityTLSCertificateExpiring", "EXPIRING"),
    ("EmailDeliverabilityMTASTSMXNotCovered", "lookups.test"),
}
EXPECTED_TICKETS = {
    ("EmailDeliverabilityProbeFailing", "timeout.test"),
    ("EmailDeliverabilityWarningFinding", "weakened.test"),
    # p=none where the baseline expects reject
    ("EmailDeliverabilityBaselineDrift", "weakened.test"),
}
EXPECTED_CHANGES = {("EmailDeliverabilityDNSRecordChanged", "weakened.test")}


def subject(labels: dict[str, str]) -> str:
    return labels.get("domain") or labels.get("target") or labels.get("zone") or ""


def seen(lab: Lab, path: str) -> set[tuple[str, str]]:
    out = set()
    for p, labels in lab.prom.webhook.alerts():
        if p == path:
            name = subject(labels).replace(lab.expiring_tls, "EXPIRING")
            out.add((labels["alertname"], name))
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("monitoring-e2e")
    started = time.monotonic()
    ca = trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=5)
    good_smtp, good_port = smtp_server(ca.issue_cert("mail.good.test"))
    expiring_smtp, expiring_port = smtp_server(ca.issue_cert("mail.expiring.test", not_after=soon))
    dns = zone().start()
    policy_host = ThreadedHttpsServer.on_443(
        ca.issue_cert("mta-sts.good.test", "mta-sts.lookups.test"), policies()
    )
    dns.add("mta-sts.good.test", "A", policy_host.address)
    dns.add("mta-sts.lookups.test", "A", policy_host.address)
    redis_server = LabRedis().start()
    worker = healthy_rq_queue(redis_server.url)
    good_tls, expiring_tls = f"127.0.0.1:{good_port}", f"127.0.0.1:{expiring_port}"
    config = workdir / "config.yml"
    config.write_text(
        yaml.safe_dump(exporter_config(dns, ca_file, good_tls, expiring_tls, redis_server.url))
    )
    exporter_port = free_port()
    exporter = Daemon("exporter", [
        sys.executable, "-m", "exporter", "--config.file", str(config),
        "--web.listen-address", f"127.0.0.1:{exporter_port}", "--log.level", "warn",
        "--storage.path", str(workdir / "data"),
    ], workdir)  # fmt: skip
    prom: PromStack | None = None
    try:
        wait_for("exporter healthy", lambda: get(f"http://127.0.0.1:{exporter_port}/-/healthy"))
        prom = PromStack(workdir, f"127.0.0.1:{exporter_port}")
        lab = Lab(dns, prom, exporter_port, good_tls, expiring_tls, 0.0)
        # Once Prometheus has stored the strong policy, weaken it (a careless edit).
        wait_for(
            "p=reject of weakened.test scraped",
            lambda: prom.query(
                'deliverability_dmarc_policy{domain="weakened.test", policy="reject"} == 1'
            ),
        )
        dns.set_records("_dmarc.weakened.test", [("TXT", f'"{dmarc("weakened.test", "none")}"')])
        wait_for(
            "every expected alert notified",
            lambda: (
                seen(lab, "/page") >= EXPECTED_PAGES
                and seen(lab, "/tickets") >= EXPECTED_TICKETS
                and seen(lab, "/changes") >= EXPECTED_CHANGES
            ),
            timeout=90,
        )
        lab.seconds_to_all_alerts = time.monotonic() - started
        # Give wrong alerts, if any, a few more evaluations to show up.
        time.sleep(3)
        yield lab
    except BaseException:
        logs = prom.logs() if prom else ""
        print(f"{logs}\n--- exporter\n{exporter.log()}", file=sys.stderr)
        raise
    finally:
        if prom is not None:
            prom.stop()
        exporter.stop()
        dns.stop()
        policy_host.stop()
        worker.register_death()
        redis_server.stop()
        good_smtp.stop()
        expiring_smtp.stop()


# ----- alerts -----------------------------------------------------------------------------------


def test_expected_alerts_page_ticket_and_inform(lab: Lab) -> None:
    pages = seen(lab, "/page")
    assert pages == EXPECTED_PAGES, f"unexpected pages: {pages - EXPECTED_PAGES}"
    assert seen(lab, "/tickets") >= EXPECTED_TICKETS
    assert seen(lab, "/changes") == EXPECTED_CHANGES
    print(f"\nall expected alerts notified {lab.seconds_to_all_alerts:.1f}s after start")


def test_every_notified_alert_has_the_conventions(lab: Lab) -> None:
    severity_of = {"/page": "critical", "/tickets": "warning", "/changes": "info"}
    for path, alert in lab.prom.webhook.received:
        labels, annotations = alert["labels"], alert["annotations"]
        assert labels["severity"] == severity_of[path], (path, labels)
        # The runbook base URL is the one external label set in prometheus.yml.
        assert annotations["runbook_url"] == (
            f"{RUNBOOK_BASE_URL}#{labels['alertname'].lower()}"
        ), annotations
        assert subject(labels) and subject(labels) in annotations["description"], alert


def test_healthy_targets_raise_nothing(lab: Lab) -> None:
    # the healthy domain, its sending IP, the healthy mail server, the blacklist zones
    healthy = {"good.test", HEALTHY_IP, lab.good_tls, "bl.test", "dbl.test", "app-mail"}
    notified = [labels for _, labels in lab.prom.webhook.alerts()]
    assert notified
    for labels in notified:
        assert subject(labels) not in healthy, labels
    for alert in lab.prom.rule_alerts():  # pending ones too
        assert subject(alert["labels"]) not in healthy, alert


def test_could_not_tell_never_pages(lab: Lab) -> None:
    for path, labels in lab.prom.webhook.alerts():
        if subject(labels) == "timeout.test":
            assert path == "/tickets" and labels["severity"] == "warning", labels
    failing = lab.prom.query('deliverability_probe_success{target="timeout.test"} == 0')
    assert failing, "the timeout domain should be 'could not tell'"


def test_container_healthcheck_script(lab: Lab) -> None:
    """deploy/healthcheck.py (the image's HEALTHCHECK) against the real exporter."""
    import subprocess

    script = str(DEPLOY / "healthcheck.py")
    env = {"HEALTHCHECK_PORT": str(lab.exporter_port), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, script], env=env, timeout=30, check=False)
    assert ok.returncode == 0
    env["HEALTHCHECK_PORT"] = str(free_port())  # nothing listens there
    down = subprocess.run([sys.executable, script], env=env, timeout=30, check=False)
    assert down.returncode == 1


# ----- dashboards -------------------------------------------------------------------------------

REPORTS_METRICS = (
    "dmarc_report_|tlsrpt_sessions_|tlsrpt_failure_sessions_|report_last_|reports_invalid_"
)
NOT_EXERCISED = re.compile(
    rf"deliverability_(ses_|roundtrip_|dnssec_|dane_|{REPORTS_METRICS})|_tls_address_success"
)
"""Panels whose every query reads metrics of probes this test does not run (module docstring),
or DNSSEC and DANE metrics (this world's DNS server is not signed: tests/monitoring/
test_dnssec_e2e.py queries those panels against a signed one)."""


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def substitute(expr: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr.replace("$1", ""), expr
    # A stat's fallback for "nothing active" would hide a missing metric: query without it.
    return expr.removesuffix(" or vector(0)")


def variable_values(lab: Lab, dashboard: dict[str, Any]) -> dict[str, str]:
    """Resolve the template variables as Grafana does on first load: run each label_values
    query (it must find values), select "All" (the allValue regex) where offered, else a value
    as is (a single-value variable is not regex-quoted)."""
    values: dict[str, str] = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = substitute(var["query"]["query"], values)
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
        assert match, query
        found = lab.prom.label_values(match.group(2), match.group(1))
        assert found, f"variable {var['name']}: {query} returns nothing"
        if var.get("includeAll"):
            values[var["name"]] = var["allValue"]
        else:
            # weakened.test has every kind of data: sending IPs, a DKIM key, findings
            assert var["name"] == "domain" and "weakened.test" in found, (var["name"], found)
            values[var["name"]] = "weakened.test"
    return values


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_dashboard_panel_returns_data(lab: Lab, path: Path) -> None:
    dashboard = json.loads(path.read_text())
    values = variable_values(lab, dashboard)
    empty, skipped = [], []
    for title, expr in panel_queries(dashboard):
        if NOT_EXERCISED.search(expr) and not re.search(
            rf"deliverability_(?!ses_|roundtrip_|dnssec_|dane_|tls_address_success|{REPORTS_METRICS})\w+",
            expr,
        ):
            skipped.append(title)
            continue
        if not lab.prom.query(substitute(expr, values)):
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    expected_skips = {
        "deliverability-overview": 27,  # 6 SES, 6 SES events, 3 round trip, 6 DNSSEC, 6 reports
        "deliverability-domain": 0,
    }[path.stem]
    assert len(set(skipped)) == expected_skips, skipped
