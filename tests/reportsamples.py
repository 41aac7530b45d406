"""The real-world report samples (Apache-2.0, from parsedmarc's test corpus), read where they
live: ``shared/conformance/report-samples`` beside the repository (or beside a parent of the
work tree). They are not copied into the project; when they are missing, :func:`sample` fails
the test with the path it looked at."""

from __future__ import annotations

from pathlib import Path

import pytest

_RELATIVE = Path("shared") / "conformance" / "report-samples"
_HERE = Path(__file__).resolve()


def samples_dir() -> Path:
    for parent in _HERE.parents[1:]:
        if (parent / _RELATIVE).is_dir():
            return parent / _RELATIVE
    return _HERE.parents[1].parent / _RELATIVE


def sample(name: str) -> bytes:
    path = samples_dir() / name
    if not path.is_file():
        pytest.fail(f"report sample missing: {path} (see tests/reportsamples.py)")
    return path.read_bytes()


ALL = (
    "_example.com_1538204542_1538463818.xml",
    "empty_reason.xml",
    "estadocuenta1.infonacot.gob.mx_example.com_1536853302_1536939702_2940.xml.zip",
    "fastmail.com_example.com_1516060800_1516147199_102675056.xml.gz",
    "google.com_smtp_tls_report.eml",
    "invalid_xml.xml",
    "protection.outlook.com_example.com_1711756800_1711843200.xml",
    "rfc8460.json",
    "rfc9990-sample.xml",
)
