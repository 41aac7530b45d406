"""Report documents and report mail for tests: aggregate XML and TLS-RPT JSON built from a few
parameters, archives, bombs, and whole MIME messages carrying them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from email.message import EmailMessage
from email.policy import SMTP

RFC9990_NS = "urn:ietf:params:xml:ns:dmarc-2.0"


def aggregate_xml(
    report_id: str = "r-1",
    reporter: str = "Reporter",
    domain: str = "example.test",
    records: list[tuple[str, int, str, str, str]] | None = None,
    end: int = 1_700_086_400,
    namespace: str = "",
) -> bytes:
    """A DMARC aggregate report; records are (source_ip, count, disposition, dkim, spf)."""
    rows = records if records is not None else [("192.0.2.1", 3, "none", "pass", "fail")]
    body = "".join(
        f"<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>"
        f"<disposition>{disposition}</disposition><dkim>{dkim}</dkim><spf>{spf}</spf>"
        f"</policy_evaluated></row><identifiers><header_from>{domain}</header_from></identifiers>"
        f"<auth_results><spf><domain>{domain}</domain><result>{spf}</result></spf></auth_results>"
        "</record>"
        for ip, count, disposition, dkim, spf in rows
    )
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<feedback{xmlns}><version>1.0</version>'
        f"<report_metadata><org_name>{reporter}</org_name><email>dmarc@{reporter.lower()}.test"
        f"</email><report_id>{report_id}</report_id><date_range><begin>{end - 86400}</begin>"
        f"<end>{end}</end></date_range></report_metadata><policy_published><domain>{domain}"
        f"</domain><p>reject</p></policy_published>{body}</feedback>\n"
    ).encode()


def tlsrpt_json(
    report_id: str = "t-1",
    reporter: str = "Sender Inc.",
    domain: str = "example.test",
    success: int = 10,
    failures: dict[str, int] | None = None,
) -> bytes:
    details = [
        {"result-type": kind, "failed-session-count": n, "sending-mta-ip": "198.51.100.1"}
        for kind, n in (failures or {}).items()
    ]
    doc = {
        "organization-name": reporter,
        "date-range": {
            "start-datetime": "2024-09-03T00:00:00Z",
            "end-datetime": "2024-09-03T23:59:59Z",
        },
        "contact-info": "tlsrpt@sender.test",
        "report-id": report_id,
        "policies": [
            {
                "policy": {"policy-type": "sts", "policy-domain": domain},
                "summary": {
                    "total-successful-session-count": success,
                    "total-failure-session-count": sum((failures or {}).values()),
                },
                "failure-details": details,
            }
        ],
    }
    return json.dumps(doc).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def zip_bomb(size: int = 64 << 20) -> bytes:
    """A zip whose one XML member inflates to ``size`` bytes from about 1/1000 of that."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("report.xml", "w", force_zip64=True) as member,
    ):
        member.write(b"<feedback>")
        block = b" " * (1 << 20)
        for _ in range(size >> 20):
            member.write(block)
    return buf.getvalue()


def gzip_bomb(size: int = 64 << 20) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as out:
        out.write(b"<feedback>")
        block = b" " * (1 << 20)
        for _ in range(size >> 20):
            out.write(block)
    return buf.getvalue()


XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b"<feedback><report_metadata><org_name>&xxe;</org_name><report_id>x</report_id>"
    b"<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
    b"<policy_published><domain>example.test</domain></policy_published></feedback>"
)


def report_mail(
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    body: str | bytes = "This is an aggregate report.",
    subject: str = "Report Domain: example.test",
    inline_type: str = "text/plain",
) -> bytes:
    """A message with a text body and (filename, content type, data) attachments; an empty
    filename makes a part without one."""
    msg = EmailMessage()
    msg["From"] = "reports@reporter.test"
    msg["To"] = "dmarc@example.test"
    msg["Subject"] = subject
    digest = hashlib.sha256(repr((subject, body, attachments)).encode()).hexdigest()[:24]
    msg["Message-ID"] = f"<{digest}@reporter.test>"
    if isinstance(body, bytes):
        maintype, subtype = inline_type.split("/")
        msg.set_content(body, maintype=maintype, subtype=subtype)
    else:
        msg.set_content(body)
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename or None)
    if msg.is_multipart():
        msg.set_boundary(f"=_{digest}")  # not random: the same message every time
    return msg.as_bytes(policy=SMTP)
