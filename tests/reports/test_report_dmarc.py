"""The DMARC aggregate report parser on real reporters' samples, their quirks, and hostile XML."""

from __future__ import annotations

import gzip

import pytest
from reportmail import report_mail
from reportsamples import sample

from exporter.reports.archive import Limits, gunzip, unzip
from exporter.reports.dmarc import DmarcReportError, parse_aggregate
from exporter.reports.mime import parse_message


def _report(records: str = "", metadata: str | None = None, published: str | None = None) -> str:
    metadata = (
        "<org_name>Reporter</org_name><email>dmarc@reporter.test</email>"
        "<report_id>r-1</report_id><date_range><begin>100</begin><end>200</end></date_range>"
        if metadata is None
        else metadata
    )
    published = "<domain>example.test</domain><p>reject</p>" if published is None else published
    return (
        f"<feedback><report_metadata>{metadata}</report_metadata>"
        f"<policy_published>{published}</policy_published>{records}</feedback>"
    )


def _record(ip: str = "192.0.2.1", count: str = "3", evaluated: str = "", extra: str = "") -> str:
    evaluated = evaluated or "<disposition>none</disposition><dkim>pass</dkim><spf>fail</spf>"
    return (
        f"<record><row><source_ip>{ip}</source_ip><count>{count}</count>"
        f"<policy_evaluated>{evaluated}</policy_evaluated></row>"
        f"<identifiers><header_from>example.test</header_from></identifiers>{extra}</record>"
    )


def test_rfc7489_plain_xml_with_empty_org_name_takes_the_email_domain() -> None:
    report = parse_aggregate(sample("_example.com_1538204542_1538463818.xml"))
    assert report.reporter == "accurateplastics.com"
    assert report.key == ("accurateplastics.com", "example.com:1538463741")
    assert (report.begin, report.end, report.domain, report.schema) == (
        1538413632,
        1538413632,
        "example.com",
        "rfc7489",
    )
    (record,) = report.records
    assert (record.source_ip, record.count, record.disposition) == ("12.20.127.122", 1, "none")
    assert (record.dkim, record.spf, record.dmarc, record.header_from) == (
        "fail",
        "fail",
        "fail",
        "example.com",
    )


def test_gzip_and_zip_samples() -> None:
    fastmail = parse_aggregate(
        gunzip(sample("fastmail.com_example.com_1516060800_1516147199_102675056.xml.gz"), Limits())
    )
    assert fastmail.key == ("FastMail Pty Ltd", "102675056")
    assert fastmail.domain == "indemed.com"
    assert fastmail.records[0].spf_results[0].result == "softfail"
    ((name, xml),) = unzip(
        sample("estadocuenta1.infonacot.gob.mx_example.com_1536853302_1536939702_2940.xml.zip"),
        Limits(),
    )
    assert name.endswith("2940.xml")
    zipped = parse_aggregate(xml)
    assert zipped.key == ("XYZ Corporation", "2940")
    assert zipped.records[0].source_ip == "148.243.137.254"
    assert zipped.records[0].dkim_results == () and zipped.records[0].spf_results == ()


def test_microsoft_report_with_xsd_namespaces() -> None:
    report = parse_aggregate(sample("protection.outlook.com_example.com_1711756800_1711843200.xml"))
    assert report.key == ("Outlook.com", "cfeafefe4129445e8c81018bd9177197")
    assert report.end == 1711843200
    assert report.records[0].envelope_from == "example.com"
    assert report.records[0].dmarc == "fail"


def test_empty_reason_is_no_reason_and_dkim_pass_is_dmarc_pass() -> None:
    report = parse_aggregate(sample("empty_reason.xml"))
    (record,) = report.records
    assert record.reasons == ()
    assert (record.count, record.dkim, record.spf, record.dmarc) == (2, "pass", "fail", "pass")
    assert record.dkim_results[0].scope == "example"


def test_rfc9990_namespace_and_pass_disposition_counted_as_none() -> None:
    report = parse_aggregate(sample("rfc9990-sample.xml"))
    assert report.schema == "rfc9990"
    assert report.key == ("Sample Reporter", "3v98abbp8ya9n3va8yr8oa3ya")
    (record,) = report.records
    assert (record.count, record.disposition, record.dmarc) == (123, "none", "pass")


def test_not_well_formed_sample_is_refused() -> None:
    with pytest.raises(DmarcReportError, match="not well-formed"):
        parse_aggregate(sample("invalid_xml.xml"))


@pytest.mark.parametrize(
    "payload",
    [
        # XXE: an external entity reading a local file
        '<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        "<feedback><report_metadata><org_name>&xxe;</org_name></report_metadata></feedback>",
        # billion laughs
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<feedback>&lol2;</feedback>",
        # an external DTD
        '<?xml version="1.0"?><!DOCTYPE feedback SYSTEM "http://192.0.2.1/x.dtd"><feedback/>',
        # a parameter entity
        '<!DOCTYPE feedback [<!ENTITY % p SYSTEM "file:///etc/hostname"> %p;]><feedback/>',
        # an external DTD named by a public identifier
        '<!DOCTYPE feedback PUBLIC "-//X//DTD X//EN" "http://192.0.2.1/x.dtd"><feedback/>',
        # an entity declared after harmless declarations, used or not
        '<!DOCTYPE feedback [<!ELEMENT feedback ANY><!ENTITY e "x">]><feedback/>',
        # an unparsed entity (NOTATION)
        '<!DOCTYPE feedback [<!NOTATION n SYSTEM "n"><!ENTITY u SYSTEM "u" NDATA n>]><feedback/>',
    ],
)
def test_dtds_and_entities_are_refused(payload: str) -> None:
    with pytest.raises(DmarcReportError, match="refused XML"):
        parse_aggregate(payload.encode())


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE feedback>",
        "<!DOCTYPE feedback []>",
        "<!DOCTYPE feedback [<!ELEMENT feedback ANY>]>",
        "<!DOCTYPE feedback [\n  <!-- no entities here -->\n  <!ELEMENT feedback ANY>\n"
        '  <!ATTLIST feedback version CDATA "1.0">\n  <?pi data?>\n]>',
    ],
)
def test_a_doctype_that_declares_no_entities_is_accepted(doctype: str) -> None:
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n' + doctype + "\n" + _report(_record())
    report = parse_aggregate(xml.encode())
    assert report.key == ("Reporter", "r-1")
    assert [r.count for r in report.records] == [3]


def test_records_are_counted_by_disposition_and_alignment() -> None:
    xml = _report(
        _record("192.0.2.1", "5")
        + _record("2001:DB8::1", "7", "<disposition>quarantine</disposition><dkim>fail</dkim>"
                  "<spf>pass</spf>")
        + _record("198.51.100.9", "11", "<disposition>Reject</disposition><dkim>FAIL</dkim>"
                  "<spf>softfail</spf><reason><type>local_policy</type></reason>")
    )  # fmt: skip
    report = parse_aggregate(xml.encode())
    assert [(r.source_ip, r.count, r.disposition, r.dmarc) for r in report.records] == [
        ("192.0.2.1", 5, "none", "pass"),
        ("2001:db8::1", 7, "quarantine", "pass"),
        ("198.51.100.9", 11, "reject", "fail"),
    ]
    assert report.records[2].reasons == ("local_policy",)
    assert report.policy == "reject"


def test_records_without_usable_source_or_count_are_skipped_and_counted() -> None:
    xml = _report(
        _record("not-an-ip") + _record(count="-1") + _record(count="lots") + _record(count="2.0")
    )
    report = parse_aggregate(xml.encode())
    assert report.skipped_records == 3
    assert [r.count for r in report.records] == [2]


def test_a_fractional_count_is_skipped_not_truncated() -> None:
    """``12.5`` messages is not a count: it was read as 12 without a word."""
    xml = _report(_record(count="12.5") + _record(count="7.000") + _record(count="0.9"))
    report = parse_aggregate(xml.encode())
    assert [r.count for r in report.records] == [7]
    assert report.skipped_records == 2
    meta = "<report_id>x</report_id><date_range><begin>100.25</begin><end>200.5</end></date_range>"
    assert parse_aggregate(_report(_record(), metadata=meta).encode()).end == 200  # a time may


@pytest.mark.parametrize(
    ("quirk", "transform"),
    [
        ("namespace of the 2012 schema", lambda x: x.replace(
            "<feedback>", '<feedback xmlns="http://dmarc.org/dmarc-xml/0.1">')),
        ("upper-case element names", lambda x: x.replace("<record>", "<RECORD>").replace(
            "</record>", "</RECORD>").replace("source_ip>", "Source_IP>")),
        ("junk before and after", lambda x: "\r\n\x00 garbage " + x + "\r\n\x00\x00--"),
        ("BOM and declaration", lambda x: '\ufeff<?xml version="1.0" encoding="UTF-8"?>\n' + x),
        ("unknown encoding declared", lambda x: '<?xml version="1.0" encoding="x-nope"?>' + x),
        ("control characters", lambda x: x.replace("Reporter", "Rep\x01orter")),
        ("identities (2012 draft)", lambda x: x.replace("identifiers>", "identities>")),
        ("embedded xs:schema", lambda x: x.replace(
            "<report_metadata>",
            '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="a"/>'
            "</xs:schema><report_metadata>")),
        ("undeclared xs:schema prefix", lambda x: x.replace(
            "<report_metadata>", '<xs:schema><xs:element name="a"/></xs:schema><report_metadata>')),
        ("whitespace in values", lambda x: x.replace(
            "<count>3</count>", "<count>\n  3\n</count>").replace("r-1", "  r-1 ")),
    ],
)  # fmt: skip
def test_quirks_of_real_reporters_are_tolerated(quirk: str, transform: object) -> None:
    assert callable(transform)
    report = parse_aggregate(transform(_report(_record())).encode())
    assert report.key == ("Reporter", "r-1"), quirk
    assert [(r.source_ip, r.count) for r in report.records] == [("192.0.2.1", 3)], quirk


def test_latin1_bytes_under_a_utf8_declaration() -> None:
    xml = '<?xml version="1.0" encoding="UTF-8"?>' + _report(_record()).replace(
        "Reporter", "Réseau"
    )
    report = parse_aggregate(xml.encode("latin-1"))
    assert report.reporter == "Réseau"


def test_declared_encoding_is_honoured_and_utf16_with_bom() -> None:
    xml = '<?xml version="1.0" encoding="windows-1252"?>' + _report(_record()).replace(
        "Reporter", "Büro €"
    )
    assert parse_aggregate(xml.encode("cp1252")).reporter == "Büro €"
    assert parse_aggregate(_report(_record()).encode("utf-16")).key == ("Reporter", "r-1")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize(
    "declaration",
    [
        '<?xml version="1.0" encoding="UTF-16"?>\n',
        "<?xml version='1.0' encoding='utf-16le'?>",
        '<?xml version="1.0" encoding="UTF-8"?>',  # a declaration that lies
        '<?xml version="1.0"?>\r\n',
        "",
        "\r\n  ",  # whitespace before the root
    ],
)
def test_utf16_without_bom_is_detected_from_its_byte_pattern(codec: str, declaration: str) -> None:
    xml = declaration + _report(_record()).replace("Reporter", "Réseau Ω")
    report = parse_aggregate(xml.encode(codec))
    assert report.key == ("Réseau Ω", "r-1")
    assert [r.count for r in report.records] == [3]


def test_utf16_without_bom_through_the_message() -> None:
    xml = ('<?xml version="1.0" encoding="UTF-16"?>' + _report(_record())).encode("utf-16-le")
    for name, data in (("r.xml", xml), ("r.xml.gz", gzip.compress(xml))):
        found = parse_message(report_mail([(name, "application/octet-stream", data)]))
        assert [r.key for r in found.dmarc] == [("Reporter", "r-1")], found.problems
    for inline_type in ("text/xml", "text/plain"):
        inline = report_mail(body=xml, inline_type=inline_type)
        assert [r.key for r in parse_message(inline).dmarc] == [("Reporter", "r-1")], inline_type


def test_missing_report_id_gets_a_content_hash() -> None:
    meta = "<org_name>R</org_name><date_range><begin>1</begin><end>2</end></date_range>"
    one = parse_aggregate(_report(_record(), metadata=meta).encode())
    again = parse_aggregate(_report(_record(), metadata=meta).encode())
    other = parse_aggregate(_report(_record(count="4"), metadata=meta).encode())
    assert one.report_id.startswith("sha256:")
    assert one.report_id == again.report_id != other.report_id


def test_reporter_falls_back_to_unknown() -> None:
    meta = "<report_id>x</report_id><date_range><end>2</end></date_range>"
    report = parse_aggregate(_report(metadata=meta).encode())
    assert report.key == ("unknown", "x")
    assert report.begin == report.end == 2


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (_report(published="<p>none</p>"), "no <policy_published><domain>"),
        (_report(metadata="<org_name>R</org_name><report_id>1</report_id>"), "date_range"),
        ("<feedback><policy_published><domain>a</domain></policy_published></feedback>",
         "no <report_metadata>"),
        ("<feedback><report_metadata/></feedback>", "no <policy_published>"),
        ("<html><body>not a report</body></html>", "not <feedback>"),
        ("", "no XML"),
        ("just text", "no XML"),
        ("<feedback><report_metadata>", "not well-formed"),
    ],
)  # fmt: skip
def test_unusable_documents_are_refused(xml: str, message: str) -> None:
    with pytest.raises(DmarcReportError, match=message):
        parse_aggregate(xml.encode())


def test_a_large_report_is_parsed_whole() -> None:
    records = "".join(
        _record(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "1") for i in range(20_000)
    )
    xml = _report(records).encode()
    assert len(xml) > 3_000_000
    report = parse_aggregate(gzip.decompress(gzip.compress(xml)))
    assert len(report.records) == 20_000
    assert sum(r.count for r in report.records) == 20_000
    assert len({r.source_ip for r in report.records}) == 20_000


def test_latin1_bytes_without_a_declaration_and_two_declarations() -> None:
    xml = _report(_record()).replace("Reporter", "Société")
    assert parse_aggregate(xml.encode("latin-1")).reporter == "Société"
    twice = '<?xml version="1.0"?>\n<?xml version="1.0" encoding="bogus"?>' + _report(_record())
    assert parse_aggregate(twice.encode()).key == ("Reporter", "r-1")


@pytest.mark.parametrize(
    "payload",
    [
        b"<?xml" + b" " * 3_000_000,  # an unclosed declaration
        b'<feedback a="' + b"x" * 3_000_000,  # an unclosed attribute
        b"<feedback>" + b"<xs:schema " * 100_000,  # unclosed schema blocks
        b"<feedback>" + b"<record>" * 200_000,  # deep nesting, never closed
    ],
)
def test_pathological_documents_are_refused(payload: bytes) -> None:
    with pytest.raises(DmarcReportError, match="not well-formed"):
        parse_aggregate(payload)


def test_internationalised_domains_are_kept_as_a_labels() -> None:
    """A reporter writing U-labels (``bücher.de``) and one writing A-labels
    (``xn--bcher-kva.de``) report on one domain: one spelling, the one the config uses."""
    extra = (
        "<auth_results><dkim><domain>Bücher.DE</domain><result>pass</result>"
        "<selector>s1</selector></dkim><spf><domain>例子.广告</domain><result>pass</result>"
        "</spf></auth_results>"
    )
    xml = _report(
        _record(extra=extra).replace("<header_from>example.test", "<header_from>BÜCHER.de"),
        published="<domain>Bücher.DE.</domain><p>reject</p>",
    )
    report = parse_aggregate(xml.encode())
    assert report.domain == "xn--bcher-kva.de"
    (record,) = report.records
    assert record.header_from == "xn--bcher-kva.de"
    assert record.dkim_results[0].domain == "xn--bcher-kva.de"
    assert record.spf_results[0].domain == "xn--fsqu00a.xn--4rr70v"
    odd = parse_aggregate(_report(published="<domain>☃.example</domain>").encode())
    assert odd.domain == "☃.example"  # not a valid IDN: kept as written, still a report
