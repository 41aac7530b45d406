"""A real HTTP server on 127.0.0.1 in front of a moto server, for the ``ses`` probe's tests.

moto does not implement SESv2 ``GetAccount``; this server answers it (``GET /v2/email/account``)
with the documented JSON, and forwards every other request to moto unchanged. A test can also
make any operation answer differently, each in the wire format boto3 expects of that service:

- ``account``: the GetAccount answer (a dict, serialised as JSON);
- ``quota``: an SES v1 GetSendQuota answer (query-protocol XML) instead of moto's fixed one;
- ``identities``: SESv2 GetEmailIdentity answers by identity name (JSON);
- ``faults``: an error (status, AWS error code, message) or a delay for an operation, every time
  or for the first N requests. Errors are written as each protocol writes them: XML
  ``ErrorResponse`` for the query services (SES v1, STS), JSON with ``x-amzn-ErrorType`` for
  SESv2 (rest-json), and for CloudWatch, in the protocol the client chose, JSON with ``__type``
  (awsJson1_0) or a CBOR map with ``__type`` (smithy rpc-v2-cbor; the few bytes of CBOR are
  written by hand below because only a text-to-text map is needed).

Every request is recorded (operation, access key id of its signature, form fields) so a test can
check which credentials signed what. Operation names are ``<service>:<Operation>`` with service
``ses``, ``sesv2``, ``cloudwatch`` or ``sts``.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

QUERY_NS = {
    "ses": "http://ses.amazonaws.com/doc/2010-12-01/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}

HEALTHY_ACCOUNT: dict[str, Any] = {
    "DedicatedIpAutoWarmupEnabled": False,
    "EnforcementStatus": "HEALTHY",
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
    "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
}


@dataclass
class Fault:
    status: int = 400
    code: str = ""
    message: str = ""
    delay: float = 0.0
    """Seconds to wait before answering (then the error, or the normal answer if no code)."""
    times: int | None = None
    """Apply to the first N matching requests only (None: always)."""
    used: int = 0


@dataclass
class Seen:
    operation: str
    access_key: str
    form: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    if n < 24:
        head = bytes([0x60 | n])
    elif n < 256:
        head = bytes([0x78, n])
    else:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    return head + data


def cbor_map(items: dict[str, str]) -> bytes:
    """RFC 8949 encoding of a small map of text strings to text strings."""
    assert len(items) < 24
    out = bytes([0xA0 | len(items)])
    for key, value in items.items():
        out += _cbor_text(key) + _cbor_text(value)
    return out


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class AwsFront:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.account: dict[str, Any] = json.loads(json.dumps(HEALTHY_ACCOUNT))
        self.quota: dict[str, float] | None = None
        self.identities: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, Fault] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Back to a healthy account with no overrides, faults or recorded requests."""
        with self._lock:
            self.account = json.loads(json.dumps(HEALTHY_ACCOUNT))
            self.quota = None
            self.identities = {}
            self.faults = {}
            self.seen = []

    def fail(
        self, operation: str, status: int, code: str, message: str = "", *, times: int | None = None
    ) -> None:
        self.faults[operation] = Fault(status, code, message or f"injected {code}", times=times)

    def slow(self, operation: str, delay: float) -> None:
        self.faults[operation] = Fault(delay=delay)

    def operations(self) -> list[str]:
        with self._lock:
            return [s.operation for s in self.seen]

    def start(self) -> AwsFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                front._handle(self)

            def do_POST(self) -> None:
                front._handle(self)

            def do_PUT(self) -> None:
                front._handle(self)

            def do_DELETE(self) -> None:
                front._handle(self)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    # ----- request handling --------------------------------------------------------------------

    def _identify(
        self, method: str, path: str, headers: dict[str, str], form: dict[str, str]
    ) -> tuple[str, str]:
        auth = headers.get("authorization", "")
        access_key, service = "", ""
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            access_key = scope[0]
            service = scope[3] if len(scope) > 3 else ""
        if path.startswith("/v2/email/"):
            if path == "/v2/email/account":
                return "sesv2:GetAccount", access_key
            if path.startswith("/v2/email/identities/") and method == "GET":
                return "sesv2:GetEmailIdentity", access_key
            return f"sesv2:{method} {path}", access_key
        name = {"monitoring": "cloudwatch", "email": "ses"}.get(service, service)
        if "/operation/" in path:  # smithy rpc-v2-cbor
            return f"{name}:{path.rsplit('/', 1)[1]}", access_key
        if "x-amz-target" in headers:  # awsJson1_0
            return f"{name}:{headers['x-amz-target'].rsplit('.', 1)[1]}", access_key
        return f"{name}:{form.get('Action', '?')}", access_key

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in req.headers.items()}
        form: dict[str, str] = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        path = urlsplit(req.path).path
        operation, access_key = self._identify(req.command, path, headers, form)
        with self._lock:
            self.seen.append(Seen(operation, access_key, form, headers))
            fault = self.faults.get(operation)
            if fault is not None and fault.times is not None:
                if fault.used >= fault.times:
                    fault = None
                else:
                    fault.used += 1
        try:
            if fault is not None and fault.delay and self._stopping.wait(fault.delay):
                return
            if fault is not None and fault.code:
                self._error(req, operation, fault, headers)
            elif operation == "sesv2:GetAccount":
                self._json(req, 200, self.account)
            elif (
                operation == "sesv2:GetEmailIdentity"
                and unquote(path.rsplit("/", 1)[1]) in self.identities
            ):
                self._json(req, 200, self.identities[unquote(path.rsplit("/", 1)[1])])
            elif operation == "ses:GetSendQuota" and self.quota is not None:
                inner = "".join(f"<{k}>{v}</{k}>" for k, v in self.quota.items())
                self._xml(
                    req,
                    200,
                    f'<GetSendQuotaResponse xmlns="{QUERY_NS["ses"]}">'
                    f"<GetSendQuotaResult>{inner}</GetSendQuotaResult>"
                    f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
                    "</ResponseMetadata></GetSendQuotaResponse>",
                )
            else:
                self._forward(req, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def _send(
        self, req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        if not any(k.lower() == "x-amzn-requestid" for k in headers):
            req.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _json(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        data: Any,
        extra: dict[str, str] | None = None,
    ) -> None:
        self._send(
            req,
            status,
            json.dumps(data).encode(),
            {"Content-Type": "application/json", **(extra or {})},
        )

    def _xml(self, req: BaseHTTPRequestHandler, status: int, text: str) -> None:
        self._send(req, status, text.encode(), {"Content-Type": "text/xml"})

    def _error(
        self, req: BaseHTTPRequestHandler, operation: str, fault: Fault, headers: dict[str, str]
    ) -> None:
        # {authorization} and {token} let a test make the server echo the request's credentials
        # in the message, as SignatureDoesNotMatch answers echo the canonical request.
        message = fault.message.replace("{authorization}", headers.get("authorization", ""))
        message = message.replace("{token}", headers.get("x-amz-security-token", ""))
        service = operation.split(":", 1)[0]
        if service == "sesv2":
            self._json(
                req,
                fault.status,
                {"message": message},
                {"x-amzn-ErrorType": f"{fault.code}:http://internal.amazon.com/"},
            )
        elif "smithy-protocol" in headers:
            self._send(
                req,
                fault.status,
                cbor_map({"__type": fault.code, "message": message}),
                {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"},
            )
        elif "x-amz-target" in headers:
            self._send(
                req,
                fault.status,
                json.dumps({"__type": fault.code, "message": message}).encode(),
                {"Content-Type": "application/x-amz-json-1.0"},
            )
        else:
            kind = "Receiver" if fault.status >= 500 else "Sender"
            ns = QUERY_NS.get(service, QUERY_NS["ses"])
            self._xml(
                req,
                fault.status,
                f'<ErrorResponse xmlns="{ns}"><Error><Type>{kind}</Type>'
                f"<Code>{fault.code}</Code><Message>{_xml_escape(message)}</Message>"
                f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>",
            )

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() != "connection"}
            conn.request(req.command, req.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {
                k: v
                for k, v in resp.getheaders()
                if k.lower()
                not in ("connection", "transfer-encoding", "content-length", "server", "date")
            }
            self._send(req, resp.status, data, out)
        finally:
            conn.close()
