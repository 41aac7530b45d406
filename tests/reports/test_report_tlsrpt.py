"""The TLS-RPT (RFC 8460) parser on the RFC's example, Google's report and broken reports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from reportsamples import sample

from exporter.reports.mime import parse_message
from exporter.reports.tlsrpt import TlsReportError, parse_tlsrpt


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sample("rfc8460.json"))
    doc.update(changes)
    return doc


def _parse(doc: object) -> Any:
    return parse_tlsrpt(json.dumps(doc).encode())


def test_rfc8460_example() -> None:
    report = parse_tlsrpt(sample("rfc8460.json"))
    assert report.key == ("Company-X", "5065427c-23d3-47ca-b6e0-946ea0e8c4be")
    assert (report.begin, report.end) == (1459468800.0, 1459555199.0)
    (policy,) = report.policies
    assert (policy.policy_type, policy.domain, policy.successful, policy.failed) == (
        "sts",
        "company-y.example",
        5326,
        303,
    )
    assert [(f.result_type, f.count) for f in policy.failures] == [
        ("certificate-expired", 100),
        ("starttls-not-supported", 200),
        ("validation-failure", 3),
    ]
    assert policy.failures[2].detail == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    assert policy.mx_hosts == ("*.mail.company-y.example",)


def test_googles_report_mail() -> None:
    found = parse_message(sample("google.com_smtp_tls_report.eml"))
    assert found.dmarc == () and found.problems == ()
    (report,) = found.tlsrpt
    assert report.key == ("Google Inc.", "2024-09-03T00:00:00Z_cardinalhealth.ca")
    (policy,) = report.policies
    assert (policy.policy_type, policy.domain, policy.successful, policy.failed) == (
        "no-policy-found",
        "cardinalhealth.ca",
        48,
        0,
    )


def test_quirks_are_tolerated() -> None:
    doc = _doc(**{"organization-name": "", "report-id": 12345})
    policy = doc["policies"][0]
    policy["summary"] = {"total-successful-session-count": "7"}
    policy["policy"]["mx-host"] = ["MX1.Example.", "mx2.example"]
    policy["policy"]["policy-domain"] = "Company-Y.Example."
    policy["failure-details"] = [{"result-type": "Something-New", "failed-session-count": 2.0}]
    doc["date-range"] = {"start-datetime": "2016-04-01T00:00:00", "end-datetime": "2016-04-02"}
    report = _parse(doc)
    assert report.key == ("company-x.example", "12345")
    (p,) = report.policies
    assert (p.domain, p.successful, p.failed, p.mx_hosts) == (
        "company-y.example",
        7,
        0,
        ("mx1.example", "mx2.example"),
    )
    assert [(f.result_type, f.count, f.detail) for f in p.failures] == [
        ("other", 2, "something-new")
    ]
    assert report.end == 1459555200.0


def test_missing_report_id_gets_a_content_hash() -> None:
    doc = _doc()
    del doc["report-id"]
    one, again = _parse(doc), _parse(doc)
    doc["policies"][0]["summary"]["total-failure-session-count"] = 1
    assert one.report_id.startswith("sha256:")
    assert one.report_id == again.report_id != _parse(doc).report_id


def _without_domain() -> dict[str, Any]:
    doc = _doc()
    del doc["policies"][0]["policy"]["policy-domain"]
    return doc


def _bad_count() -> dict[str, Any]:
    doc = _doc()
    doc["policies"][0]["failure-details"][0]["failed-session-count"] = -4
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "not a JSON object"),
        (_doc(**{"date-range": None}), "no date-range"),
        (_doc(**{"date-range": {"end-datetime": "yesterday"}}), "end-datetime"),
        (_doc(policies={"a": 1}), "no policies list"),
        (_doc(policies=[["x"]]), "no policy object"),
        (_without_domain(), "no policy-domain"),
        (_doc(policies=[{"policy": {"policy-domain": "a.test"},
                         "summary": {"total-failure-session-count": -1}}]), "failed sessions"),
    ],
)  # fmt: skip
def test_broken_reports_are_refused(doc: object, message: str) -> None:
    with pytest.raises(TlsReportError, match=message):
        _parse(doc)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe\x00", b"[" * 100_000, b"1" * 5000])
def test_non_json_is_refused(raw: bytes) -> None:
    with pytest.raises(TlsReportError):
        parse_tlsrpt(raw)


def test_malformed_failure_details_are_skipped_and_counted() -> None:
    """A failure-details row that cannot be read (not an object, a negative or absurd count)
    costs that row, not the report: its summary still counts."""
    doc = _bad_count()
    details = doc["policies"][0]["failure-details"]
    details += [1, "x", {"result-type": "certificate-expired", "failed-session-count": 10**13},
                {"result-type": "tlsa-invalid", "failed-session-count": True}]  # fmt: skip
    report = _parse(doc)
    assert report.skipped_records == 5
    (policy,) = report.policies
    assert (policy.successful, policy.failed) == (5326, 303)
    assert [(f.result_type, f.count) for f in policy.failures] == [
        ("starttls-not-supported", 200),
        ("validation-failure", 3),
    ]
    assert parse_tlsrpt(sample("rfc8460.json")).skipped_records == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-04-01t00:00:00z", 1459468800.0),
        ("2016-04-01T00:00:00z", 1459468800.0),
        ("2016-04-01t23:59:59Z", 1459555199.0),
        ("2016-04-01 00:00:00Z", 1459468800.0),
        ("2016-04-01t02:00:00+02:00", 1459468800.0),
        ("2016-04-01T00:00:00.123456789z", 1459468800.123456),
        ("2016-04-01T23:59:60Z", 1459555200.0),  # a leap second (RFC 3339 section 5.7)
        ("2016-12-31T23:59:60z", 1483228800.0),
    ],
)
def test_rfc3339_date_times_in_any_case(text: str, expected: float) -> None:
    doc = _doc(**{"date-range": {"start-datetime": text, "end-datetime": text}})
    report = _parse(doc)
    assert report.begin == report.end == pytest.approx(expected, abs=1e-6)


def test_internationalised_domains_are_kept_as_a_labels() -> None:
    doc = _doc()
    policy = doc["policies"][0]
    policy["policy"]["policy-domain"] = "Bücher.DE"
    policy["policy"]["mx-host"] = ["mx.Bücher.de", "*.bücher.de"]
    policy["failure-details"][0]["receiving-mx-hostname"] = "MX.bücher.de."
    (p,) = _parse(doc).policies
    assert p.domain == "xn--bcher-kva.de"
    assert p.mx_hosts == ("mx.xn--bcher-kva.de", "*.xn--bcher-kva.de")
    assert p.failures[0].receiving_mx_hostname == "mx.xn--bcher-kva.de"


def test_a_report_that_is_not_utf8_is_read_as_latin1() -> None:
    """RFC 8259 wants UTF-8; one Latin-1 byte in a free-text field refused the whole report."""
    raw = sample("rfc8460.json").replace(b"Company-X", "Société X".encode("latin-1"))
    report = parse_tlsrpt(raw)
    assert report.reporter == "Société X"
    assert report.policies[0].successful == 5326
