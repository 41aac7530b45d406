"""Log lines: one line per record in logfmt and JSON whatever a remote server put in a field."""

from __future__ import annotations

import json
import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from exporter.logs import JsonFormatter, LogfmtFormatter

_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')


def _record(reason: str) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "exporter.probe.queue", "levelname": "WARNING", "levelno": logging.WARNING,
         "msg": "probe failed", "reason": reason}
    )  # fmt: skip


def _parse_logfmt(line: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    end = 0
    for m in _PAIR.finditer(line):
        assert m.start() == end, f"unparsed text at {end}: {line[end : m.start()]!r}"
        value = m.group(2)
        fields[m.group(1)] = json.loads(value) if value.startswith('"') else value
        end = m.end()
    assert end == len(line), f"unparsed tail: {line[end:]!r}"
    return fields


def test_a_remote_servers_control_characters_do_not_reach_the_terminal() -> None:
    """A deferral reason with a carriage return and a terminal escape: the line a log viewer
    shows starts with our timestamp, and the escape is written as text."""
    reason = "host said 550\rts=2020-01-01 level=info msg=forged \x1b[2J\x9b"
    line = LogfmtFormatter().format(_record(reason))
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line), repr(line)
    assert "\\r" in line and "\\u001b[2J" in line and "\\u009b" in line
    assert _parse_logfmt(line)["reason"] == reason


@given(st.text())
def test_logfmt_and_json_lines_are_one_line_and_read_back(reason: str) -> None:
    line = LogfmtFormatter().format(_record(reason))
    assert line.splitlines() == [line]
    fields = _parse_logfmt(line)
    assert fields["reason"] == reason
    assert fields["level"] == "warn" and fields["msg"] == "probe failed"
    doc = JsonFormatter().format(_record(reason))
    assert doc.splitlines() == [doc]
    assert json.loads(doc)["reason"] == reason
