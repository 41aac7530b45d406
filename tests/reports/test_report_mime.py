"""Report mail: every attachment format, inline reports, non-reports and hostile attachments."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default

import pytest
from reportmail import (
    XXE,
    aggregate_xml,
    gz,
    gzip_bomb,
    report_mail,
    tlsrpt_json,
    zip_bomb,
    zipped,
)
from reportsamples import sample

from exporter.reports.archive import Limits
from exporter.reports.mime import MessageError, extract, parse_message

XML = aggregate_xml()
JSON = tlsrpt_json(failures={"certificate-expired": 2})


@pytest.mark.parametrize(
    ("filename", "ctype", "data"),
    [
        ("r!example.test!1!2.xml", "text/xml", XML),
        ("r!example.test!1!2.xml", "application/xml", XML),
        ("r!example.test!1!2.xml.gz", "application/gzip", gz(XML)),
        ("r!example.test!1!2.xml.gz", "application/x-gzip", gz(XML)),
        ("r!example.test!1!2.zip", "application/zip", zipped({"r.xml": XML})),
        ("r!example.test!1!2.zip", "application/x-zip-compressed", zipped({"r.xml": XML})),
        ("r.xml.gz", "application/octet-stream", gz(XML)),
        ("r.gz", "application/zip", zipped({"r.xml": XML})),  # mislabelled: bytes decide
        ("", "application/gzip", gz(XML)),  # no file name
    ],
)
def test_dmarc_attachment_formats(filename: str, ctype: str, data: bytes) -> None:
    found = parse_message(report_mail([(filename, ctype, data)]))
    assert [r.key for r in found.dmarc] == [("Reporter", "r-1")], found.problems
    assert found.tlsrpt == () and found.problems == ()


@pytest.mark.parametrize(
    ("filename", "ctype", "data"),
    [
        ("s!example.test!1!2.json", "application/tlsrpt+json", JSON),
        ("s!example.test!1!2.json.gz", "application/tlsrpt+gzip", gz(JSON)),
        ("", "application/tlsrpt+json", JSON),
        ("", "application/tlsrpt+gzip", gz(JSON)),
        ("report.json", "application/json", JSON),
    ],
)
def test_tlsrpt_attachment_formats(filename: str, ctype: str, data: bytes) -> None:
    found = parse_message(report_mail([(filename, ctype, data)]))
    (report,) = found.tlsrpt
    assert report.key == ("Sender Inc.", "t-1")
    assert report.policies[0].failures[0].count == 2
    assert found.dmarc == () and found.problems == ()


def test_inline_xml_body() -> None:
    found = parse_message(report_mail(body=XML, inline_type="text/xml"))
    assert [r.key for r in found.dmarc] == [("Reporter", "r-1")]
    plain = parse_message(report_mail(body=XML.decode()))
    assert [r.key for r in plain.dmarc] == [("Reporter", "r-1")]


def test_rfc9990_report_in_a_zip_beside_a_tls_report() -> None:
    xml = aggregate_xml(report_id="n-1", namespace="urn:ietf:params:xml:ns:dmarc-2.0")
    found = parse_message(
        report_mail([("a.zip", "application/zip", zipped({"a.xml": xml})),
                     ("b.json.gz", "application/tlsrpt+gzip", gz(JSON))])
    )  # fmt: skip
    assert [(r.report_id, r.schema) for r in found.dmarc] == [("n-1", "rfc9990")]
    assert [r.report_id for r in found.tlsrpt] == ["t-1"]


def test_a_zip_with_several_reports_and_macos_litter() -> None:
    archive = zipped(
        {
            "one.xml": aggregate_xml(report_id="1"),
            "two.xml": aggregate_xml(report_id="2"),
            "__MACOSX/._one.xml": b"\0\5\26\7",
        }
    )
    found = parse_message(report_mail([("r.zip", "application/zip", archive)]))
    assert [r.report_id for r in found.dmarc] == ["1", "2"]
    assert found.problems == ()


def test_a_message_without_a_report() -> None:
    found = parse_message(
        report_mail(
            [("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100)],
            body="Hello, do you want to buy DMARC services? <b>cheap</b>",
        )
    )
    assert found.empty and found.problems == ()


@pytest.mark.parametrize(
    ("attachment", "problem"),
    [
        (("r.zip", "application/zip", b"PK\x03\x04" + b"\0" * 60), "unreadable zip"),
        (("r.xml.gz", "application/gzip", gz(XML)[:-20]), "gzip"),
        (("r.zip", "application/zip", zip_bomb()), "ratio"),
        (("r.xml.gz", "application/gzip", gzip_bomb()), "ratio"),
        (("r.xml", "text/xml", XXE), "refused XML: EntitiesForbidden|refused XML: DTDForbidden"),
        (("r.xml", "text/xml", b"<feedback><oops></feedback>"), "not well-formed"),
        (("r.json", "application/tlsrpt+json", b'{"policies": 1}'), "no date-range"),
        (("r.xml", "application/xml", b"%PDF-1.4 ..."), "neither XML nor JSON"),
    ],
)
def test_hostile_or_broken_attachments_are_problems_not_reports(
    attachment: tuple[str, str, bytes], problem: str
) -> None:
    found = parse_message(report_mail([attachment]))
    assert found.empty
    assert len(found.problems) == 1
    assert found.problems[0].startswith(attachment[0])
    assert re.search(problem, found.problems[0]), found.problems


def test_a_broken_attachment_does_not_hide_a_good_one() -> None:
    found = parse_message(
        report_mail([("bad.zip", "application/zip", zip_bomb()), ("good.xml", "text/xml", XML)])
    )
    assert [r.key for r in found.dmarc] == [("Reporter", "r-1")]
    assert len(found.problems) == 1 and "bad.zip" in found.problems[0]


def _forward(raw: bytes) -> bytes:
    outer = EmailMessage()
    outer["Subject"] = "Fwd: report"
    outer.set_content("see attached")
    outer.add_attachment(message_from_bytes(raw, policy=default))
    return outer.as_bytes(policy=SMTP)


def test_a_forwarded_report() -> None:
    forwarded = _forward(report_mail([("r.xml.gz", "application/gzip", gz(XML))]))
    assert b"message/rfc822" in forwarded
    found = parse_message(forwarded)
    assert [r.key for r in found.dmarc] == [("Reporter", "r-1")]
    # the same forwarded base64-encoded, as some clients do
    outer = EmailMessage()
    outer.set_content("see attached")
    outer.add_attachment(
        report_mail([("r.xml", "text/xml", XML)]), maintype="message", subtype="rfc822"
    )
    encoded = outer.as_bytes(policy=SMTP)
    assert b"Content-Transfer-Encoding: base64" in encoded
    assert [r.key for r in parse_message(encoded).dmarc] == [("Reporter", "r-1")]


def test_caps_on_message_size_attachments_and_nesting() -> None:
    with pytest.raises(MessageError, match="over 1000"):
        extract(report_mail([("r.xml", "text/xml", XML)]), Limits(message_bytes=1000))
    many = report_mail(
        [(f"{i}.xml", "text/xml", aggregate_xml(report_id=str(i))) for i in range(5)]
    )
    found = parse_message(many, Limits(attachments=3))
    assert [r.report_id for r in found.dmarc] == ["0", "1", "2"]
    assert found.problems == ("more than 3 attachments: rest ignored",)
    big = parse_message(report_mail([("r.xml", "text/xml", XML)]), Limits(attachment_bytes=100))
    assert big.empty and "over 100: refused" in big.problems[0]
    deep = report_mail([("r.xml", "text/xml", XML)])
    for _ in range(10):
        deep = _forward(deep)
    nested = parse_message(deep)
    assert nested.empty and any("nesting deeper" in p for p in nested.problems)


def test_many_parts_are_capped() -> None:
    boundary = "b"
    parts = "".join(
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(500)
    )
    raw = (
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n{parts}--{boundary}--\r\n'
    ).encode()
    found = parse_message(raw)
    assert found.empty and found.problems == ("more than 200 MIME parts: rest ignored",)


def test_googles_mail_extracts_one_gzip_json_document() -> None:
    (doc,) = extract(sample("google.com_smtp_tls_report.eml")).documents
    assert doc.kind == "tlsrpt" and doc.name.endswith("001.json.gz")
    assert doc.data.startswith(b'{"organization-name":"Google Inc."')


@pytest.mark.parametrize(
    ("filename", "ctype"),
    [
        ("report.eml", "application/octet-stream"),
        ("Report.EML", "application/octet-stream"),
        ("report.eml", "application/eml"),
        ("report.eml", "application/x-eml"),
        ("report.eml", "text/plain"),
        ("forwarded", "message/rfc822"),
        ("", "message/rfc822"),
    ],
)
def test_a_report_mail_attached_as_an_eml_file(filename: str, ctype: str) -> None:
    inner = report_mail(
        [("r.xml.gz", "application/gzip", gz(XML)), ("s.json", "application/tlsrpt+json", JSON)]
    )
    outer = EmailMessage()
    outer["Subject"] = "Fwd: reports"
    outer.set_content("forwarded as an attachment")
    maintype, subtype = ctype.split("/")
    outer.add_attachment(inner, maintype=maintype, subtype=subtype, filename=filename or None)
    found = parse_message(outer.as_bytes(policy=SMTP))
    assert [r.key for r in found.dmarc] == [("Reporter", "r-1")], found.problems
    assert [r.key for r in found.tlsrpt] == [("Sender Inc.", "t-1")]
    assert found.problems == ()


def test_an_eml_attachment_within_an_eml_attachment_and_the_depth_cap() -> None:
    raw = report_mail([("r.xml", "text/xml", XML)])
    for _ in range(3):
        raw = report_mail([("fwd.eml", "application/octet-stream", raw)], body="fwd")
    assert [r.key for r in parse_message(raw).dmarc] == [("Reporter", "r-1")]
    for _ in range(10):
        raw = report_mail([("fwd.eml", "application/octet-stream", raw)], body="fwd")
    deep = parse_message(raw)
    assert deep.empty and any("nesting deeper" in p for p in deep.problems)


def test_an_eml_attachment_that_is_not_a_message_is_a_problem_not_a_crash() -> None:
    for data in (b"", b"\x00\xff" * 100, b"just some words, no headers"):
        found = parse_message(report_mail([("x.eml", "application/octet-stream", data)]))
        assert found.empty


def _raw_attachment(headers: str, data: bytes) -> bytes:
    body = base64.encodebytes(data).decode()
    return (
        "From: reports@reporter.test\r\nTo: dmarc@example.test\r\nSubject: report\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nreport attached\r\n"
        f"--b\r\n{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        # RFC 2047 encoded-words in the parameters (not allowed there, sent all the same)
        ('Content-Type: application/x-download; name="=?utf-8?B?csOpcG9ydC54bWwuZ3o=?="',
         "réport.xml.gz"),
        ("Content-Type: binary/octet-stream\r\nContent-Disposition: attachment;"
         ' filename="=?UTF-8?Q?r=C3=A9port=2Exml=2Egz?="', "réport.xml.gz"),
        ("Content-Type: application/download\r\nContent-Disposition: attachment;\r\n"
         ' filename="=?utf-8?q?very_long_name_?=\r\n =?utf-8?q?report.xml.gz?="',
         "very long name report.xml.gz"),
        ('Content-Type: application/x-download; name="=?utf-8?B?0L7RgtGH0ZHRgi56aXA=?="',
         "отчёт.zip"),
        # RFC 2231: charset, language, percent-encoding, continuations
        ("Content-Type: application/x-download\r\nContent-Disposition: attachment;"
         " filename*=UTF-8'fr'r%C3%A9port.xml.gz", "réport.xml.gz"),
        ("Content-Type: application/x-download; name*=iso-8859-1''r%E9port.zip", "réport.zip"),
        ("Content-Type: application/x-download\r\nContent-Disposition: attachment;\r\n"
         " filename*0*=utf-8''r%C3%A9port;\r\n filename*1*=.xml.gz", "réport.xml.gz"),
        ("Content-Type: application/x-download\r\nContent-Disposition: attachment;\r\n"
         ' filename*0="rep";\r\n filename*1="ort.xml.gz"', "report.xml.gz"),
        # an unknown charset: the name is still recognised by its ASCII suffix
        ('Content-Type: application/x-download; name="=?x-bogus?B?cmVwb3J0LnhtbC5neg==?="',
         "report.xml.gz"),
    ],
)  # fmt: skip
def test_encoded_attachment_names_are_decoded(headers: str, name: str) -> None:
    data = zipped({"r.xml": aggregate_xml()}) if name.endswith(".zip") else gz(aggregate_xml())
    found = extract(_raw_attachment(headers, data))
    want = f"{name}:r.xml" if name.endswith(".zip") else name
    assert [(d.kind, d.name) for d in found.documents] == [("dmarc", want)], found.problems


def test_a_message_past_its_parse_deadline_holds_no_report() -> None:
    raw = report_mail([("a.xml", "text/xml", XML), ("s.json", "application/tlsrpt+json", JSON)])
    assert not parse_message(raw, Limits(parse_seconds=30.0)).empty
    hurried = parse_message(raw, Limits(parse_seconds=0.0))
    assert hurried.empty
    assert hurried.problems == ("a.xml: parsing took over 0.0 s",)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("r.zip", zipped({"inner.xml.gz": gzip_bomb()})),
        ("r.xml.gz", gz(zip_bomb())),
        ("r.zip", zipped({"inner.zip": zipped({"r.xml": XML})})),
    ],
)
def test_nested_archives_are_not_opened(name: str, data: bytes) -> None:
    """One level is inflated (within its caps); an archive inside is a problem, never inflated:
    a bomb inside a small archive stays a few kilobytes."""
    found = extract(report_mail([(name, "application/octet-stream", data)]))
    assert found.documents == ()
    assert len(found.problems) == 1 and "neither XML nor JSON" in found.problems[0]
