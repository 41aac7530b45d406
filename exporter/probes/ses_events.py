"""SES event notifications, as read from an SQS queue: parsed, checked, summarised.

SES reports what happened to each message in two JSON formats (AWS SES developer guide,
"Contents of event data that Amazon SES publishes to Amazon SNS" and "Amazon SNS notification
contents for Amazon SES"):

- event publishing (a configuration set's event destination): ``eventType`` ``Send``,
  ``Delivery``, ``Bounce``, ``Complaint``, ``Reject``, ``DeliveryDelay``, ``Rendering Failure``
  (spelt with a space on the wire), ``Open``, ``Click``, ``Subscription``;
- identity notifications (feedback forwarding to a topic): ``notificationType`` ``Bounce``,
  ``Complaint``, ``Delivery``.

Both carry a ``mail`` object (``messageId``: the SES message id) and one object named after the
type (``bounce``, ``complaint``, ``delivery``, ``deliveryDelay``, ``reject``, ``failure``...).
The queue gets them raw (SNS raw message delivery), wrapped in an SNS envelope (``Type``
``Notification``, the event as the JSON string ``Message``), or wrapped by EventBridge
(``source`` ``aws.ses``, the event as ``detail``), or both (an EventBridge rule to an SNS topic).

What is kept of a recipient is its domain, its DSN status and a summary of the diagnostic code
with every address cut down to its domain: recipients are personal data. An event type this
module does not know is still an event (SES adds types; its label is ``other``); a message that
is not an SES event at all raises :class:`SesEventError`, the only exception :func:`parse` lets
out, and is left in the queue for its redrive policy to move to the dead-letter queue. Setup
messages (SNS subscription confirmations, SES's ``AmazonSnsSubscriptionSucceeded`` and its
"Successfully validated SNS topic" test message) are :class:`NotAnEvent`: nothing to count.

Hand-written because it is a few type checks over ``json``: SES publishes no schema and no
library parses these notifications; pydantic models would be as long and reject what SES adds.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from exporter.probes.mailbox import a_label_domain, domain_of

EVENT_TYPES = ("Send", "Delivery", "Bounce", "Complaint", "Reject", "DeliveryDelay",
               "RenderingFailure")  # fmt: skip
"""The ``event`` label values of SPEC.md, in the order of an email's life."""
OTHER_EVENT_TYPES = ("Open", "Click", "Subscription")
"""Documented SES event types beyond SPEC.md's list, counted under their own names."""
OTHER = "other"
BOUNCE_TYPES = ("Permanent", "Transient", "Undetermined")

# The object that holds the details of each type (event publishing and notifications alike).
_DETAIL_KEY = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "RenderingFailure": "failure",
    "Open": "open",
    "Click": "click",
    "Subscription": "subscription",
}
# Where each type names the recipients it concerns; other types concern mail.destination.
_RECIPIENTS_KEY = {
    "Bounce": "bouncedRecipients",
    "Complaint": "complainedRecipients",
    "DeliveryDelay": "delayedRecipients",
}
# Types that concern every destination of the message (counted once per recipient).
_DESTINATION_TYPES = frozenset({"Send", "Delivery", "Reject", "RenderingFailure"})
_SETUP_NOTIFICATIONS = frozenset({"AmazonSnsSubscriptionSucceeded"})
_VALIDATION_TEXT = "Successfully validated SNS topic for Amazon SES event publishing."
_SNS_SETUP_TYPES = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
MAX_BODY = 1 << 20
"""SQS's largest message (1 MiB); anything larger is not from SQS."""
MAX_ENVELOPES = 3
"""SNS and EventBridge envelopes unwrapped at most (EventBridge to SNS to SQS is two)."""
MAX_TEXT = 160
MAX_RECIPIENTS = 1000
"""SES sends to at most 50 recipients per message; more is not an SES event."""


class SesEventError(ValueError):
    """The message is not an SES event notification (the text says why, never the content)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient an event concerns: its domain only, never its address."""

    domain: str
    status: str = ""
    """The DSN status (``5.1.1``), when the receiver sent one."""
    code: str = ""
    """The diagnostic summary: reply code and enhanced status (``550 5.7.26``), see
    :func:`diagnostic_code`."""
    text: str = ""
    """The diagnostic text after the code, addresses cut to their domain, bounded."""


@dataclass(frozen=True, slots=True)
class SesEvent:
    event: str
    """One of :data:`EVENT_TYPES`, :data:`OTHER_EVENT_TYPES` or ``other``."""
    message_id: str
    """The SES message id (``mail.messageId``)."""
    dedup_key: str
    """Equal for two deliveries of the same event (see :func:`dedup_key`)."""
    recipients: tuple[Recipient, ...]
    """Whom it concerns (bounced, complained, delayed, delivered; else the destinations)."""
    timestamp: datetime | None
    """When it happened (the detail's timestamp, else the mail's); None when not given."""
    bounce_type: str = ""
    """``Permanent``, ``Transient`` or ``Undetermined`` for a bounce (unknown types:
    ``Undetermined``), else ''."""
    bounce_subtype: str = ""
    detail: str = ""
    """What else the type says, bounded: the complaint feedback type, the delay type, the
    reject reason, the rendering error."""
    format: Literal["event", "notification"] = "event"
    """``eventType`` (event publishing) or ``notificationType`` (identity notifications)."""
    envelope: Literal["raw", "sns", "eventbridge"] = "raw"

    @property
    def count(self) -> int:
        """How many the event counts for: one per recipient it concerns, at least one."""
        return max(1, len(self.recipients))


@dataclass(frozen=True, slots=True)
class NotAnEvent:
    """A well-formed message that is not an event (setup and confirmation messages)."""

    reason: str


Parsed = SesEvent | NotAnEvent


# ----- the envelope ------------------------------------------------------------------------------


def parse(body: str | bytes) -> Parsed:
    """Parse one SQS message body; raise :class:`SesEventError` when it is not an SES event."""
    if len(body) > MAX_BODY:
        raise SesEventError(f"message larger than {MAX_BODY} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SesEventError("message body is not UTF-8") from None
    if body.strip().removeprefix("\ufeff") == _VALIDATION_TEXT:  # SNS raw message delivery
        return NotAnEvent("SES event destination validation")
    obj = _load(body, "message body")
    if not isinstance(obj, dict):
        raise SesEventError("message body is not a JSON object")
    envelope: Literal["raw", "sns", "eventbridge"] = "raw"
    for _ in range(MAX_ENVELOPES):
        sns_type = obj.get("Type")
        if isinstance(sns_type, str) and "TopicArn" in obj:
            if sns_type in _SNS_SETUP_TYPES:
                return NotAnEvent(f"SNS {sns_type}")
            if sns_type != "Notification":
                raise SesEventError("SNS message of an unknown Type")
            message = obj.get("Message")
            if not isinstance(message, str):
                raise SesEventError("SNS notification without a Message string")
            if message.strip() == _VALIDATION_TEXT:
                return NotAnEvent("SES event destination validation")
            obj = _load(message, "SNS Message")
            if not isinstance(obj, dict):
                raise SesEventError("SNS Message is not a JSON object")
            envelope = "sns" if envelope == "raw" else envelope
        elif obj.get("source") == "aws.ses" and isinstance(obj.get("detail"), dict):
            obj = obj["detail"]
            envelope = "eventbridge" if envelope == "raw" else envelope
        else:
            return _event(obj, envelope)
    raise SesEventError(f"more than {MAX_ENVELOPES} envelopes")


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text.removeprefix("\ufeff"))  # a byte order mark: some relays add it
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        raise SesEventError(f"{what} is not JSON") from None


# ----- the event ---------------------------------------------------------------------------------


def _event(obj: dict[str, Any], envelope: Literal["raw", "sns", "eventbridge"]) -> Parsed:
    fmt: Literal["event", "notification"]
    if "eventType" in obj:
        raw_type, fmt = obj["eventType"], "event"
    elif "notificationType" in obj:
        raw_type, fmt = obj["notificationType"], "notification"
    else:
        raise SesEventError("neither eventType nor notificationType")
    if not isinstance(raw_type, str) or not raw_type.strip():
        raise SesEventError("the event type is not a string")
    if raw_type in _SETUP_NOTIFICATIONS:
        return NotAnEvent(f"SES {raw_type}")
    event = event_label(raw_type)
    mail = obj.get("mail")
    if not isinstance(mail, dict):
        raise SesEventError(f"{event} event without a mail object")
    message_id = mail.get("messageId")
    if not isinstance(message_id, str) or not message_id.strip():
        raise SesEventError(f"{event} event without mail.messageId")
    detail_key = _DETAIL_KEY.get(event)
    detail = obj.get(detail_key) if detail_key else None
    if detail is not None and not isinstance(detail, dict):
        raise SesEventError(f"{event} event whose {detail_key} is not an object")
    if event in ("Bounce", "Complaint") and detail is None:
        raise SesEventError(f"{event} event without its {detail_key} object")
    detail = detail or {}
    addresses, recipients = _recipients(event, detail, mail)
    bounce_type = subtype = text = ""
    if event == "Bounce":
        bounce_type = _opt_str(detail, "bounceType")
        bounce_type = bounce_type if bounce_type in BOUNCE_TYPES else "Undetermined"
        subtype = _bounded(_opt_str(detail, "bounceSubType"))
    elif event == "Complaint":
        text = _opt_str(detail, "complaintFeedbackType") or _opt_str(detail, "complaintSubType")
    elif event == "DeliveryDelay":
        text = _opt_str(detail, "delayType")
    elif event == "Reject":
        text = _opt_str(detail, "reason")
    elif event == "RenderingFailure":
        text = _opt_str(detail, "errorMessage")
    timestamp = _time(detail.get("timestamp")) or _time(mail.get("timestamp"))
    parts = (_opt_str(detail, "feedbackId"), _opt_str(detail, "timestamp"), *sorted(addresses))
    if event == OTHER:  # two unknown types of one message are two events
        parts = (raw_type, *parts)
    return SesEvent(
        event=event,
        message_id=message_id.strip(),
        dedup_key=dedup_key(message_id.strip(), event, parts),
        recipients=recipients,
        timestamp=timestamp,
        bounce_type=bounce_type,
        bounce_subtype=subtype,
        detail=scrub(text, addresses),
        format=fmt,
        envelope=envelope,
    )


def event_label(raw_type: str) -> str:
    """The ``event`` label of an SES type name: ``Rendering Failure`` -> ``RenderingFailure``;
    a type this module does not know -> ``other`` (label values stay bounded)."""
    name = raw_type.replace(" ", "")
    return name if name in _DETAIL_KEY else OTHER


def _recipients(
    event: str, detail: dict[str, Any], mail: dict[str, Any]
) -> tuple[list[str], tuple[Recipient, ...]]:
    """(the addresses, for the de-dup key only; the recipients, domains only)."""
    key = _RECIPIENTS_KEY.get(event)
    if key is not None:
        entries = detail.get(key)
        if event in ("Bounce", "Complaint") and not isinstance(entries, list):
            raise SesEventError(f"{event} event without {key}")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise SesEventError(f"{event} event whose {key} is not a list")
        if not entries:  # none named: the message's destinations (one unknown, if none)
            entries = mail.get("destination") or [""]
            if not isinstance(entries, list):
                raise SesEventError(f"{event} event whose mail.destination is not a list")
    elif event == "Delivery" and detail.get("recipients"):
        entries = detail["recipients"]
        if not isinstance(entries, list):
            raise SesEventError("Delivery event whose recipients is not a list")
    elif event in _DESTINATION_TYPES:
        entries = mail.get("destination") or []
        if not isinstance(entries, list):
            raise SesEventError(f"{event} event whose mail.destination is not a list")
    else:
        entries = []  # an open, a click: one event, whoever the message was for
    if len(entries) > MAX_RECIPIENTS:
        raise SesEventError(f"{event} event with more than {MAX_RECIPIENTS} recipients")
    addresses: list[str] = []
    out: list[Recipient] = []
    for entry in entries:
        if isinstance(entry, str):
            address, status, diagnostic = entry, "", ""
        elif isinstance(entry, dict):
            if not isinstance(entry.get("emailAddress"), str):
                raise SesEventError(f"{event} recipient without emailAddress")
            address = entry["emailAddress"]
            status, diagnostic = _opt_str(entry, "status"), _opt_str(entry, "diagnosticCode")
        else:
            raise SesEventError(f"{event} recipient is neither an address nor an object")
        addresses.append(address)
        code, text = diagnostic_code(diagnostic, status)
        out.append(Recipient(domain_of(address), _status(status), code, scrub(text, [address])))
    return addresses, tuple(out)


def _opt_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SesEventError(f"{key} is not a string")
    return value


def _time(value: object) -> datetime | None:
    """An ISO 8601 timestamp (``2017-08-05T00:41:02.669Z``; the guide also shows
    ``2018-10-08T14:05:45 +0000``); None when absent or unreadable (it is not essential)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace(" ", "")
    try:
        ts = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def dedup_key(message_id: str, event: str, parts: tuple[str, ...] = ()) -> str:
    """The key two deliveries of one event share: the SES message id and the event type, plus
    what tells apart events of one type for one message (SES may send one bounce notification
    per recipient, and several delays or opens): the feedback id, the event's timestamp and its
    recipients. Hashed, so that no address is stored."""
    digest = hashlib.sha256("\0".join((message_id, event, *parts)).encode("utf-8", "replace"))
    return f"{event}:{digest.hexdigest()[:40]}"


# ----- diagnostic codes --------------------------------------------------------------------------

_DIAG_TYPE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]{0,30}\s*;\s*")
_REPLY = re.compile(r"^\s*([245][0-9][0-9])(?=[\s-]|$)[\s-]*")
_ENHANCED = re.compile(r"(?<![0-9.])([245])\.([0-9]{1,3})\.([0-9]{1,3})(?![0-9]|\.[0-9])")
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
# An address in free text: a local part (any script, or quoted), "@", a domain (any script; an
# internationalised one is shown as A-labels). A local part starts where a run of its characters
# starts (the lookbehind): trying every position inside a long run was quadratic, 36 ms for a
# 2,000-character diagnostic without "@", on the event loop.
_ADDRESS = re.compile(
    r"(?:\"[^\"\r\n]{0,64}\"|(?<![^\s<>\"'(),;:\[\]@])[^\s<>\"'(),;:\[\]@]++)"
    r"@([^\s<>\"'(),;:\[\]@]+)"
)
_SPACE = re.compile(r"\s+")
NO_CODE = "no diagnostic code"


def _status(status: str) -> str:
    status = status.strip()
    return status if _STATUS.fullmatch(status) else ""


def diagnostic_code(diagnostic: str, status: str = "") -> tuple[str, str]:
    """Summarise a DSN ``Diagnostic-Code``: (code, text).

    ``smtp; 550-5.7.26 This mail is unauthenticated...`` -> (``550 5.7.26``, ``This mail is
    unauthenticated...``); without a reply code, the enhanced status code alone (from the text,
    else from the DSN ``status``); without either, ``no diagnostic code``.
    """
    text = _DIAG_TYPE.sub("", diagnostic[:2000], count=1)
    reply = ""
    match = _REPLY.match(text)
    if match is not None:
        reply = match.group(1)
        text = text[match.end() :]
    enhanced = ""
    found = _ENHANCED.search(text[:40])
    if found is not None and (reply == "" or found.group(1) == reply[0]):
        enhanced = ".".join(found.groups())
        if found.start() == 0 or not text[: found.start()].strip():
            text = text[found.end() :]
    if not enhanced:
        enhanced = _status(status)
    code = " ".join(p for p in (reply, enhanced) if p) or NO_CODE
    return code, text.strip()


def scrub(text: str, addresses: Sequence[str] = ()) -> str:
    """Bounded, one line, with every address (ASCII or not, quoted local parts too) cut to
    ``…@domain`` (an internationalised domain as A-labels) and the given addresses' local parts
    removed where they appear alone."""
    text = text[:2000]
    if "@" in text:
        matches = itertools.count()
        text = _ADDRESS.sub(lambda m: _domain_only(m, next(matches)), text)
    for address in addresses:
        for name in _personal_parts(address):
            if len(name.encode("utf-8", "replace")) >= 3:  # bytes: two CJK characters are a name
                text = text.replace(name, "…")
    return _bounded(text)


def _personal_parts(address: str) -> tuple[str, str]:
    """(display name, local part) of ``Name <local@domain>`` or ``local@domain``."""
    text, display = address.strip(), ""
    if "<" in text and text.endswith(">"):
        display = text[: text.rindex("<")].strip().strip('"').strip()
        text = text[text.rindex("<") + 1 : -1]
    return display, text.strip().rpartition("@")[0]


SHOWN_DOMAINS = 60
"""Addresses in one text whose domain is kept (and converted to A-labels, ~15 us each): no more
can fit in :data:`MAX_TEXT` characters; the rest become ``…@…``."""


def _domain_only(match: re.Match[str], index: int) -> str:
    if index >= SHOWN_DOMAINS:
        return "…@…"
    domain = match.group(1).rstrip(".")
    return "…@" + (a_label_domain(domain) or domain.lower()) + match.group(1)[len(domain) :]


def _bounded(text: str) -> str:
    text = _SPACE.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
