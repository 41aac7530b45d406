"""Fuzzing the report parsers with hypothesis: DMARC aggregate XML, TLS-RPT JSON, the archive
readers and the MIME extraction. Whatever the input, each returns a result that satisfies its
invariants or raises its own error (``DmarcReportError``, ``TlsReportError``, ``ReportError``)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.quoprimime
import ipaddress
import json
import random
import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reportmail import XXE, aggregate_xml, gz, report_mail, tlsrpt_json, zipped
from reportsamples import ALL, sample

from exporter.idn import a_label
from exporter.reports.archive import Limits, ReportError, gunzip, unzip
from exporter.reports.dmarc import MAX_COUNT, AggregateReport, DmarcReportError, parse_aggregate
from exporter.reports.mime import MessageError, extract, parse_message
from exporter.reports.tlsrpt import RESULT_TYPES, TlsReport, TlsReportError, parse_tlsrpt

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(
    message_bytes=200_000, document_bytes=100_000, total_bytes=200_000, ratio_floor=10_000
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A document with a few random byte edits (replace, insert, delete, truncate)."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            del data[at:]
    return bytes(data)


_SAMPLE = st.sampled_from(ALL).map(sample)

# ----- DMARC aggregate XML --------------------------------------------------------------------

_XML_TOKENS = st.sampled_from(
    [
        "<feedback>", "</feedback>", '<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">',
        "<report_metadata>", "</report_metadata>", "<org_name>", "</org_name>", "<email>",
        "</email>", "<report_id>", "</report_id>", "<date_range>", "</date_range>", "<begin>",
        "</begin>", "<end>", "</end>", "<policy_published>", "</policy_published>", "<domain>",
        "</domain>", "<p>", "</p>", "<record>", "</record>", "<row>", "</row>", "<source_ip>",
        "</source_ip>", "<count>", "</count>", "<policy_evaluated>", "</policy_evaluated>",
        "<disposition>", "</disposition>", "<dkim>", "</dkim>", "<spf>", "</spf>", "<result>",
        "</result>", "<identifiers>", "</identifiers>", "<header_from>", "</header_from>",
        "<auth_results>", "</auth_results>", "<reason>", "</reason>", "<type>", "</type>",
        "192.0.2.1", "2001:db8::1", "999.1.1.1", "1", "0", "-1", "1.5", "99999999999999999999",
        "pass", "fail", "PASS", "none", "quarantine", "reject", "example.com", " ", "\n", "&amp;",
        "&lt;", "&#x41;", "&#0;", "&xxe;", "<![CDATA[x]]>", "<!-- c -->", '<?xml version="1.0"?>',
        '<?xml version="1.0" encoding="utf-16"?>', '<?xml version="1.0" encoding="bogus"?>',
        "<!DOCTYPE feedback>", '<!ENTITY x "y">', "<xs:schema>", "</xs:schema>", "<a:b>",
        "\ufeff", "\x00", "\x01", "é", "<", ">", "&", "/>",
    ]
)  # fmt: skip
_XML = st.lists(_XML_TOKENS | st.text(max_size=6), max_size=80).map("".join)
_AGGREGATE = st.builds(
    aggregate_xml,
    report_id=st.text(max_size=10),
    records=st.lists(
        st.tuples(
            st.ip_addresses().map(str) | st.text(max_size=5),
            st.integers(-5, 10**10),
            st.sampled_from(["none", "pass", "quarantine", "reject", "", "x"]),
            st.sampled_from(["pass", "fail", "", "PASS"]),
            st.sampled_from(["pass", "fail", "softfail", ""]),
        ),
        max_size=5,
    ),
    end=st.integers(-1, 2**40),
)


def _check_aggregate(report: AggregateReport) -> None:
    assert report.reporter and report.report_id and report.domain
    assert 0 <= report.begin <= report.end
    assert report.schema in ("rfc7489", "rfc9990")
    for r in report.records:
        assert 0 <= r.count <= MAX_COUNT
        assert r.disposition in ("none", "quarantine", "reject")
        assert r.dkim in ("pass", "fail") and r.spf in ("pass", "fail")
        assert r.dmarc == ("pass" if "pass" in (r.dkim, r.spf) else "fail")
        assert str(ipaddress.ip_address(r.source_ip)) == r.source_ip


@settings(FUZZ)
@given(
    _XML.map(lambda s: s.encode("utf-8", "surrogatepass"))
    | st.binary(max_size=400)
    | mutated(_SAMPLE)
    | mutated(_AGGREGATE)
    | _AGGREGATE
)
@example(XXE)
@example(b"<feedback>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</feedback>")
@example(b"\xff\xfe<\x00f\x00")
def test_aggregate_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        report = parse_aggregate(data)
    except DmarcReportError:
        return
    _check_aggregate(report)


_HARMLESS_DECLS = st.sampled_from(
    [
        "<!ELEMENT feedback ANY>", "<!ELEMENT record (row, identifiers)>",
        '<!ATTLIST feedback version CDATA "1.0">', "<!ATTLIST record id ID #IMPLIED>",
        "<!-- a comment -->", "<?pi data?>", "<!NOTATION n SYSTEM \"n\">", " ", "\n",
    ]
)  # fmt: skip
_ENTITY_DECLS = st.sampled_from(
    [
        '<!ENTITY e "x">', '<!ENTITY e SYSTEM "file:///etc/passwd">', '<!ENTITY % p "x">',
        '<!ENTITY % p SYSTEM "http://192.0.2.1/p">', '<!ENTITY u SYSTEM "u" NDATA n>',
    ]
)  # fmt: skip


@settings(FUZZ)
@given(st.lists(_HARMLESS_DECLS, max_size=8), st.none() | st.tuples(st.integers(0, 8),
       _ENTITY_DECLS))  # fmt: skip
def test_a_doctype_is_read_unless_it_declares_an_entity(
    decls: list[str], entity: tuple[int, str] | None
) -> None:
    if entity is not None:
        decls.insert(min(entity[0], len(decls)), entity[1])
    subset = f" [{''.join(decls)}]" if decls else ""
    xml = aggregate_xml().replace(b"<feedback>", f"<!DOCTYPE feedback{subset}><feedback>".encode())
    if entity is None:
        report = parse_aggregate(xml)
        assert report.key == ("Reporter", "r-1") and len(report.records) == 1
    else:
        with pytest.raises(DmarcReportError, match="refused XML"):
            parse_aggregate(xml)


@settings(FUZZ)
@given(
    _AGGREGATE,
    st.sampled_from(["utf-16-le", "utf-16-be", "utf-16", "utf-8-sig"]),
    st.sampled_from(["", " ", "\r\n", "\n\t "]),
)
def test_an_aggregate_report_reads_the_same_in_any_unicode_encoding(
    xml: bytes, codec: str, lead: str
) -> None:
    try:
        want = parse_aggregate(xml)
    except DmarcReportError:
        return
    text = lead + xml.decode("utf-8").replace('encoding="UTF-8"', 'encoding="UTF-16"')
    got = parse_aggregate(text.encode(codec, "surrogatepass"))
    if want.report_id.startswith("sha256:"):  # made from the bytes, which differ
        got = dataclasses.replace(got, report_id=want.report_id)
    assert got == want


_IDN_LABELS = st.text(st.characters(categories=["Lu", "Ll", "Lo", "Nd"]), min_size=1, max_size=12)


@settings(FUZZ)
@given(st.lists(_IDN_LABELS, min_size=1, max_size=3).map(".".join))
def test_a_report_domain_has_one_spelling(domain: str) -> None:
    """Whatever the script and case, the policy domain is its A-label form, the same as the
    A-label form written by another reporter; a name that is not a valid IDN is kept."""
    xml = aggregate_xml(domain="x").replace(b"<domain>x<", f"<domain>{domain}<".encode())
    report = parse_aggregate(xml)
    expected = a_label(domain.lower())
    assert report.domain == (expected or domain.lower().strip())[:253]
    if expected is not None:
        assert report.domain.isascii()
        again = aggregate_xml(domain="x").replace(b"<domain>x<", f"<domain>{expected}<".encode())
        assert parse_aggregate(again).domain == report.domain
    doc = json.loads(tlsrpt_json(domain=domain))
    assert parse_tlsrpt(json.dumps(doc).encode()).policies[0].domain == report.domain


# ----- TLS-RPT JSON ---------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "organization-name", "date-range", "start-datetime", "end-datetime", "contact-info",
        "report-id", "policies", "policy", "policy-type", "policy-domain", "mx-host", "summary",
        "total-successful-session-count", "total-failure-session-count", "failure-details",
        "result-type", "failed-session-count", "sending-mta-ip", "receiving-ip",
    ]
)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=True)
    | st.text(max_size=10)
    | st.sampled_from(["2024-09-03T00:00:00Z", "2024-09-03", "10", "certificate-expired", "sts"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=30,
)  # fmt: skip


@st.composite
def _patched_report(draw: st.DrawFn) -> bytes:
    """The RFC 8460 example with one value somewhere replaced by an arbitrary JSON value."""
    doc: Any = json.loads(tlsrpt_json(failures={"certificate-expired": 3, "x-new": 1}))
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if not isinstance(child, dict | list) or not child or draw(st.booleans()):
            node[key] = draw(_JSON)
            break
        node = child
    return json.dumps(doc).encode()


def _check_tls(report: TlsReport) -> None:
    assert report.reporter and report.report_id
    assert report.begin <= report.end
    assert report.skipped_records >= 0
    for policy in report.policies:
        assert policy.domain and policy.successful >= 0 and policy.failed >= 0
        for failure in policy.failures:
            assert failure.count >= 0
            assert failure.result_type in RESULT_TYPES | {"other"}


@settings(FUZZ)
@given(
    _JSON.map(lambda v: json.dumps(v).encode())
    | _patched_report()
    | mutated(st.just(tlsrpt_json(failures={"validation-failure": 1})))
    | st.binary(max_size=300)
)
@example(b"[" * 100_000 + b"]" * 100_000)
@example(b'{"date-range": {"end-datetime": "9999-12-31T23:59:59-23:59"}, "policies": []}')
def test_tlsrpt_parser_raises_only_its_own_error(data: bytes) -> None:
    try:
        report = parse_tlsrpt(data)
    except TlsReportError:
        return
    _check_tls(report)


_DETAIL_ROWS = st.lists(
    st.tuples(st.booleans(), _JSON)
    .map(lambda t: {"result-type": "validation-failure", "failed-session-count": t[1]}
         if t[0] else t[1]),
    max_size=6,
)  # fmt: skip


@settings(FUZZ)
@given(_DETAIL_ROWS)
def test_every_failure_details_row_is_either_read_or_counted_as_skipped(rows: list[Any]) -> None:
    doc = json.loads(tlsrpt_json())
    doc["policies"][0]["failure-details"] = rows
    report = parse_tlsrpt(json.dumps(doc).encode())
    (policy,) = report.policies
    assert len(policy.failures) + report.skipped_records == len(rows)
    assert (policy.successful, policy.failed) == (10, 0)  # the summary is always counted


@settings(FUZZ)
@given(
    st.lists(
        st.tuples(
            st.ip_addresses().map(str) | st.sampled_from(["", "x", "1.2.3", "::g"]),
            st.integers(-(10**12), 10**12),
        ),
        max_size=8,
    )
)
def test_every_aggregate_row_is_either_read_or_counted_as_skipped(
    rows: list[tuple[str, int]],
) -> None:
    xml = aggregate_xml(records=[(ip, n, "none", "pass", "pass") for ip, n in rows])
    report = parse_aggregate(xml)
    assert len(report.records) + report.skipped_records == len(rows)
    assert all(0 <= r.count <= MAX_COUNT for r in report.records)


@settings(FUZZ)
@given(st.integers(0, 10**6), st.text("0123456789", max_size=4))
def test_a_count_is_read_whole_or_skipped_never_truncated(whole: int, fraction: str) -> None:
    text = f"{whole}.{fraction}" if fraction else str(whole)
    xml = aggregate_xml(records=[("192.0.2.1", 0, "none", "pass", "pass")]).replace(
        b"<count>0</count>", f"<count>{text}</count>".encode()
    )
    report = parse_aggregate(xml)
    if fraction.strip("0"):
        assert (report.records, report.skipped_records) == ((), 1)
    else:
        assert [r.count for r in report.records] == [whole]


@settings(FUZZ)
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-11:00"]),
    st.sampled_from(["", ".0", ".5", ".123456789"]),
    st.booleans(),
)
def test_rfc3339_date_times_are_read_in_every_allowed_spelling(
    when: datetime, sep: str, zone: str, fraction: str, leap: bool
) -> None:
    second = "60" if leap else f"{when.second:02d}"
    text = f"{when:%Y-%m-%d}{sep}{when:%H:%M}:{second}{fraction}{zone}"
    doc = json.loads(tlsrpt_json())
    doc["date-range"] = {"start-datetime": text, "end-datetime": text}
    report = parse_tlsrpt(json.dumps(doc).encode())
    offset = 0 if zone in ("Z", "z") else (1 if zone[0] == "-" else -1) * (
        int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)  # fmt: skip
    naive = when.replace(second=59 if leap else when.second, microsecond=0, tzinfo=UTC)
    want = naive.timestamp() + offset + (1 if leap else 0) + float("0" + fraction)
    assert report.end == pytest.approx(want, abs=1e-5)


def _not_utf8(text: str) -> bool:
    try:
        text.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False  # Latin-1 bytes that happen to be UTF-8 too ("Â\xa0") read as UTF-8


_LATIN1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=("Cc",))


@settings(FUZZ)
@given(st.text(_LATIN1, min_size=1, max_size=30).filter(lambda t: t.strip() and _not_utf8(t)))
def test_a_latin1_tls_report_reads_like_its_utf8_twin(reporter: str) -> None:
    utf8 = json.dumps(json.loads(tlsrpt_json(reporter=reporter)), ensure_ascii=False)
    assert parse_tlsrpt(utf8.encode("latin-1")) == parse_tlsrpt(utf8.encode())


# ----- archives and MIME ----------------------------------------------------------------------

_DOCS = st.sampled_from([aggregate_xml(), tlsrpt_json(), XXE, b"", b"<feedback/>"]) | st.binary(
    max_size=200
)
_NAME_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_ARCHIVES = (
    _DOCS.map(gz)
    | st.dictionaries(
        st.text(_NAME_CHARS, max_size=8).map(lambda n: n + ".xml"), _DOCS, max_size=3
    ).map(zipped)
    | st.sampled_from(ALL).map(sample)
)


@settings(FUZZ)
@given(mutated(_ARCHIVES) | st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b))
def test_archive_readers_raise_only_their_own_error(data: bytes) -> None:
    for read in (gunzip, unzip):
        try:
            read(data, SMALL)  # type: ignore[operator]
        except ReportError:
            continue


@settings(FUZZ)
@given(
    st.lists(st.tuples(st.integers(0, 200_000), st.integers(0, 2**32), st.booleans()),
             min_size=1, max_size=6),
    st.binary(max_size=8).filter(lambda b: not b.startswith(b"\x1f\x8b")),
)  # fmt: skip
def test_multi_member_gzip_reads_every_member_across_step_boundaries(
    members: list[tuple[int, int, bool]], padding: bytes
) -> None:
    """Members of any size (across the 64 KiB input steps), compressible or not, then padding."""
    docs = [
        (b"<a/>" * (size // 4)) if text else random.Random(seed).randbytes(size)
        for size, seed, text in members
    ]
    data = b"".join(gz(d) for d in docs) + padding
    assert gunzip(data, Limits(ratio=10**6)) == b"".join(docs)


_PART_TYPES = st.sampled_from(
    [
        "application/gzip", "application/zip", "text/xml", "application/xml", "text/plain",
        "application/tlsrpt+json", "application/tlsrpt+gzip", "application/octet-stream",
        "image/png", "message/rfc822", "multipart/mixed", "text/html", "application/eml",
    ]
)  # fmt: skip
_NAMES = st.sampled_from(
    ["", "r.xml", "r.xml.gz", "r.zip", "r.json", "r.json.gz", "x.pdf", "fwd.eml"]
) | st.text(_NAME_CHARS, max_size=12)
_MAILS = st.just(report_mail([("r.xml", "text/xml", aggregate_xml())])) | st.just(
    sample("google.com_smtp_tls_report.eml")
)
_PARTS = st.lists(
    st.tuples(_NAMES, _PART_TYPES, _DOCS | _ARCHIVES | mutated(_ARCHIVES) | mutated(_MAILS)),
    max_size=4,
)


_FILE_STEMS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs"), blacklist_characters='"\\'),
    min_size=1,
    max_size=30,
)


@settings(FUZZ)
@given(_FILE_STEMS, st.sampled_from([".xml", ".xml.gz", ".zip"]),
       st.sampled_from(["rfc2047-b", "rfc2047-q", "rfc2231"]))  # fmt: skip
def test_encoded_file_names_are_decoded_and_their_suffix_recognised(
    stem: str, suffix: str, encoding: str
) -> None:
    name = stem + suffix
    if encoding == "rfc2231":
        value = "filename*=utf-8''" + urllib.parse.quote(name, safe="")
    elif encoding == "rfc2047-b":
        value = f'filename="=?utf-8?b?{base64.b64encode(name.encode()).decode()}?="'
    else:
        value = f'filename="{email.quoprimime.header_encode(name.encode(), "utf-8")}"'
    xml = aggregate_xml()
    data = gz(xml) if suffix == ".xml.gz" else zipped({"r.xml": xml}) if suffix == ".zip" else xml
    body = base64.encodebytes(data).decode()
    raw = (
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: application/x-download\r\nContent-Disposition: attachment;"
        f" {value}\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b--\r\n"
    ).encode()
    found = extract(raw)
    shown = "".join(c for c in name if c.isprintable())
    want = shown + (":r.xml" if suffix == ".zip" else "")
    assert [(d.kind, d.name) for d in found.documents] == [("dmarc", want)], found.problems


def _mail(parts: list[tuple[str, str, bytes]], body: str) -> bytes:
    return report_mail(parts, body=body)


def _check_message(raw: bytes) -> None:
    try:
        found = parse_message(raw, SMALL)
    except MessageError:
        return
    # out of time: nothing half counted, and the only way out is still a MessageError
    hurried = parse_message(raw, dataclasses.replace(SMALL, parse_seconds=0.0))
    assert hurried.empty
    if found.dmarc or found.tlsrpt:
        assert len(hurried.problems) == 1 and "parsing took over" in hurried.problems[0]
    for report in found.dmarc:
        _check_aggregate(report)
    for tls in found.tlsrpt:
        _check_tls(tls)
    assert all(isinstance(p, str) and p for p in found.problems)


@settings(FUZZ)
@given(
    st.builds(_mail, _PARTS, st.text(max_size=40))
    | mutated(st.builds(_mail, _PARTS, st.text(max_size=40)))
    | mutated(st.just(sample("google.com_smtp_tls_report.eml")))
    | st.binary(max_size=400)
)
@example(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\n" * 5000)
@example(b"Content-Type: application/gzip; name*=utf-8''%FF%FE\r\n\r\n\x1f\x8b")
@example(
    b'Content-Type: text/plain; charset="bogus"\r\nContent-Transfer-Encoding: base64\r\n\r\n==='
)
def test_message_extraction_raises_only_its_own_error(raw: bytes) -> None:
    _check_message(raw)
    with contextlib.suppress(MessageError):
        extract(raw, SMALL)
