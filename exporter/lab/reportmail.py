"""The demo mailbox's report mail: DMARC aggregate and TLS-RPT reports of the last day about the
lab's domains, as reporters send them (gzip and zip attachments), and one message that is not a
report. Built fresh on each start, dated now, so the status page's "last 7 days" is populated."""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

SPOOFER = "203.0.113.66"
"""Sends as healthy.example and fails DMARC (first seen today: a new failing source)."""
HEALTHY_SENDER = "198.51.100.10"
WEAK_SENDER = "198.51.100.20"


def _aggregate(reporter: str, report_id: str, domain: str, policy: str, end: int,
               rows: list[tuple[str, int, str, str, str]]) -> bytes:  # fmt: skip
    records = "".join(
        f"<record><row><source_ip>{ip}</source_ip><count>{n}</count><policy_evaluated>"
        f"<disposition>{disp}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>"
        f"</policy_evaluated></row><identifiers><header_from>{domain}</header_from>"
        f"</identifiers><auth_results><dkim><domain>{domain}</domain><selector>s1</selector>"
        f"<result>{dkim}</result></dkim><spf><domain>{domain}</domain><result>{spf}</result>"
        "</spf></auth_results></record>"
        for ip, n, disp, dkim, spf in rows
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feedback><version>1.0</version>'
        f"<report_metadata><org_name>{reporter}</org_name><email>noreply-dmarc@{reporter}"
        f"</email><report_id>{report_id}</report_id><date_range><begin>{end - 86400}</begin>"
        f"<end>{end}</end></date_range></report_metadata><policy_published><domain>{domain}"
        f"</domain><p>{policy}</p></policy_published>{records}</feedback>\n"
    ).encode()


def _mail(sender: str, subject: str, body: str,
          attachment: tuple[str, str, bytes] | None = None) -> bytes:  # fmt: skip
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "dmarc-reports@healthy.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{abs(hash((subject, body)))}@lab.example>"
    msg.set_content(body)
    if attachment is not None:
        name, ctype, data = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        msg.set_boundary(f"=_lab_{abs(hash(name))}")
    return msg.as_bytes(policy=SMTP)


def demo_report_mail(now: float | None = None) -> list[bytes]:
    end = int(now if now is not None else time.time())
    healthy = _aggregate("google.com", "lab-h-1", "healthy.example", "reject", end, [
        (HEALTHY_SENDER, 1200, "none", "pass", "pass"),
        (SPOOFER, 40, "reject", "fail", "fail"),
    ])  # fmt: skip
    weak = _aggregate("Outlook.com", "lab-w-1", "weak.example", "none", end, [
        (WEAK_SENDER, 500, "none", "fail", "pass"),
        ("203.0.113.77", 300, "none", "fail", "fail"),
    ])  # fmt: skip
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"outlook.com!weak.example!{end - 86400}!{end}.xml", weak)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end - 86400))
    tls = json.dumps({
        "organization-name": "Google Inc.", "report-id": "lab-t-1",
        "date-range": {"start-datetime": start, "end-datetime": stamp},
        "contact-info": "smtp-tls-reporting@google.com",
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": "weak.example"},
            "summary": {"total-successful-session-count": 900,
                        "total-failure-session-count": 12},
            "failure-details": [{"result-type": "certificate-expired",
                                 "failed-session-count": 12}],
        }],
    }).encode()  # fmt: skip
    return [
        _mail("noreply-dmarc-support@google.com", "Report domain: healthy.example",
              "This is an aggregate report from google.com.",
              (f"google.com!healthy.example!{end - 86400}!{end}.xml.gz", "application/gzip",
               gzip.compress(healthy, mtime=0))),
        _mail("dmarcreport@microsoft.com", "Report Domain: weak.example",
              "This is a DMARC aggregate report from Microsoft.",
              (f"outlook.com!weak.example!{end}.zip", "application/zip", zipped.getvalue())),
        _mail("noreply-smtp-tls-reporting@google.com", "Report Domain: weak.example",
              "This is an aggregate TLS report from google.com",
              ("google.com!weak.example!001.json.gz", "application/tlsrpt+gzip",
               gzip.compress(tls, mtime=0))),
        _mail("newsletter@vendor.example", "Improve your deliverability today!",
              "Not a report: the exporter moves it to the invalid folder."),
    ]  # fmt: skip
