"""Logging in the Prometheus style: ``--log.level`` debug/info/warn/error, ``--log.format``
logfmt or json. Structured fields are passed with ``extra={...}`` and rendered as key=value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from exporter.redact import redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip
_STD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": {"WARNING": "warn"}.get(record.levelname, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STD and not key.startswith("_"):
            out[key] = value
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    # Every line leaves through here: no registered secret, nor credential material, in any field.
    return {k: redact(v) if isinstance(v, str) else _redacted(v) for k, v in out.items()}


def _redacted(value: Any) -> Any:
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


_NEEDS_QUOTES = re.compile(r'[\s"=\x00-\x1f\x7f-\x9f\u2028\u2029]')
"""Characters a bare logfmt value cannot hold: whitespace of any kind, quotes, ``=`` and control
characters (a server's ``\\r`` or terminal escape must not start a line or move the cursor)."""
_NOT_ESCAPED_BY_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def _logfmt_value(value: Any) -> str:
    """The value bare, or quoted with JSON's escapes (as go-logfmt writes it) plus ``\\uXXXX``
    for DEL, the C1 controls and the Unicode line separators: one line, no control character."""
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return _NOT_ESCAPED_BY_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # APScheduler logs every job execution at INFO; keep it for debug.
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if level == "debug" else logging.WARNING
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # botocore logs whole requests (headers included, so session tokens) at DEBUG: keep it and
    # its HTTP stack quiet whatever --log.level says.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)
