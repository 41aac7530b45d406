"""SES event notifications: both formats, every type, raw and wrapped, and what is not an event.

The fixtures in ``data/ses_events`` follow the shapes of AWS's SES developer guide ("Examples of
event data that Amazon SES publishes to Amazon SNS", "Amazon SNS notification examples for
Amazon SES"): the same fields and nesting, with this project's own values.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.probes import ses_events
from exporter.probes.mailbox import domain_of
from exporter.probes.ses_events import (
    EVENT_TYPES,
    NO_CODE,
    NotAnEvent,
    SesEvent,
    SesEventError,
    dedup_key,
    diagnostic_code,
    event_label,
    parse,
    scrub,
)

DATA = Path(__file__).parent / "data" / "ses_events"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def sns(inner: dict[str, Any] | str) -> str:
    """The SNS envelope SQS receives when raw message delivery is off."""
    envelope = fixture("sns-envelope")
    envelope["Message"] = inner if isinstance(inner, str) else json.dumps(inner)
    return json.dumps(envelope)


def eventbridge(inner: dict[str, Any]) -> str:
    envelope = fixture("eventbridge-envelope")
    envelope["detail"] = inner
    return json.dumps(envelope)


def event(body: str | bytes) -> SesEvent:
    parsed = parse(body)
    assert isinstance(parsed, SesEvent), parsed
    return parsed


# ----- every type, both formats ------------------------------------------------------------------

EXPECTED = {
    # fixture: (event, format, [(domain, status, code)], bounce type, detail)
    "event-bounce": ("Bounce", "event", [("gmail.com", "5.7.26", "550 5.7.26")], "Permanent", ""),
    "event-complaint": ("Complaint", "event", [("outlook.com", "", NO_CODE)], "", "abuse"),
    "event-delivery": ("Delivery", "event", [("yahoo.com", "", NO_CODE)], "", ""),
    "event-send": (
        "Send",
        "event",
        [("icloud.com", "", NO_CODE), ("example.org", "", NO_CODE)],
        "",
        "",
    ),
    "event-reject": ("Reject", "event", [("gmail.com", "", NO_CODE)], "", "Bad content"),
    "event-rendering-failure": (
        "RenderingFailure",
        "event",
        [("hotmail.co.uk", "", NO_CODE)],
        "",
        "Attribute 'firstName' is not present in the rendering data.",
    ),
    "event-delivery-delay": (
        "DeliveryDelay",
        "event",
        [("corp.example.net", "4.4.1", "421 4.4.1")],
        "",
        "TransientCommunicationFailure",
    ),
    "event-open": ("Open", "event", [], "", ""),
    "notification-bounce-dsn": (
        "Bounce",
        "notification",
        [("example.org", "5.1.1", "550 5.1.1")],
        "Permanent",
        "",
    ),
    "notification-bounce-no-dsn": (
        "Bounce",
        "notification",
        [("hotmail.com", "", NO_CODE), ("live.fr", "", NO_CODE)],
        "Transient",
        "",
    ),
    "notification-complaint": (
        "Complaint",
        "notification",
        [("yahoo.com", "", NO_CODE)],
        "",
        "abuse",
    ),
    "notification-complaint-no-feedback": (
        "Complaint",
        "notification",
        [("me.com", "", NO_CODE)],
        "",
        "",
    ),
    "notification-delivery": (
        "Delivery",
        "notification",
        [("googlemail.com", "", NO_CODE)],
        "",
        "",
    ),
}


@pytest.mark.parametrize("wrap", ["raw", "sns", "eventbridge"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_documented_events(name: str, wrap: str) -> None:
    data = fixture(name)
    body = {"raw": json.dumps, "sns": sns, "eventbridge": eventbridge}[wrap](data)
    got = event(body)
    kind, fmt, recipients, bounce_type, detail = EXPECTED[name]
    assert got.event == kind
    assert got.format == fmt
    assert got.envelope == wrap
    assert got.message_id == data["mail"]["messageId"]
    assert [(r.domain, r.status, r.code) for r in got.recipients] == recipients
    assert got.bounce_type == bounce_type
    assert got.detail == detail
    assert got.count == max(1, len(recipients))
    assert got.timestamp is not None and got.timestamp.tzinfo is not None


def test_every_spec_event_type_has_a_fixture() -> None:
    covered = {EXPECTED[name][0] for name in EXPECTED}
    assert set(EVENT_TYPES) <= covered


def test_bounce_details() -> None:
    got = event(json.dumps(fixture("event-bounce")))
    (rcpt,) = got.recipients
    assert rcpt.code == "550 5.7.26"
    assert rcpt.text.startswith("This mail is unauthenticated")
    assert "ada.lovelace" not in rcpt.text and rcpt.text.endswith("<…@gmail.com>")
    assert got.bounce_subtype == "General"
    assert got.timestamp == datetime(2025, 3, 4, 10, 41, 2, 669000, tzinfo=UTC)


def test_rendering_failure_spelling() -> None:
    # The guide's example spells the type with a space; the label has none.
    assert event_label("Rendering Failure") == "RenderingFailure"
    assert event_label("RenderingFailure") == "RenderingFailure"
    data = fixture("event-rendering-failure")
    data["eventType"] = "RenderingFailure"
    assert event(json.dumps(data)).event == "RenderingFailure"


def test_unknown_event_type_is_an_event_labelled_other() -> None:
    data = fixture("event-send")
    data["eventType"] = "Suppression"
    data["suppression"] = {"reason": "new in some future"}
    del data["send"]
    got = event(sns(data))
    assert got.event == "other"
    assert got.count == 1


def test_subscription_event() -> None:
    data = {
        "eventType": "Subscription",
        "mail": {"timestamp": "2025-03-04T10:00:00.000Z", "messageId": "m-sub",
                 "source": "news@shop.example.com", "destination": ["dennis@gmail.com"]},
        "subscription": {"contactList": "Newsletter", "timestamp": "2025-03-04T10:05:00.000Z",
                         "source": "UnsubscribeHeader", "newTopicPreferences": {},
                         "oldTopicPreferences": {}},
    }  # fmt: skip
    got = event(json.dumps(data))
    assert (got.event, got.count) == ("Subscription", 1)


def test_unknown_fields_are_ignored() -> None:
    data = fixture("event-bounce")
    data["bounce"]["somethingNew"] = {"x": [1, 2]}
    data["mail"]["anotherField"] = None
    data["topLevelAddition"] = True
    assert event(json.dumps(data)).event == "Bounce"


def test_unknown_bounce_type_is_undetermined() -> None:
    data = fixture("event-bounce")
    data["bounce"]["bounceType"] = "Squishy"
    assert event(json.dumps(data)).bounce_type == "Undetermined"


def test_no_recipient_named_means_the_destinations() -> None:
    complaint = fixture("notification-complaint")
    complaint["complaint"]["complainedRecipients"] = []  # a feedback loop that redacts them
    got = event(json.dumps(complaint))
    assert [r.domain for r in got.recipients] == ["yahoo.com"] * 3
    complaint["mail"]["destination"] = []
    got = event(json.dumps(complaint))
    assert [r.domain for r in got.recipients] == [""] and got.count == 1
    delivery = fixture("event-delivery")
    delivery["delivery"]["recipients"] = []
    assert [r.domain for r in event(json.dumps(delivery)).recipients] == ["yahoo.com"]


def test_eventbridge_to_sns_to_sqs() -> None:
    """An EventBridge rule whose target is an SNS topic: two envelopes."""
    got = event(sns(eventbridge(fixture("event-bounce"))))
    assert (got.event, got.envelope) == ("Bounce", "sns")
    assert got.dedup_key == event(json.dumps(fixture("event-bounce"))).dedup_key
    nested = fixture("event-send")
    for _ in range(4):
        nested = json.loads(sns(nested))
    with pytest.raises(SesEventError, match="envelopes"):
        parse(json.dumps(nested))


def test_bytes_body() -> None:
    assert event(json.dumps(fixture("event-send")).encode()).event == "Send"


def test_a_byte_order_mark_before_the_json_is_ignored() -> None:
    """Producers other than SNS (a relay function in .NET or PowerShell) write UTF-8 with a
    byte order mark; the event was refused as "not JSON" and left for the dead-letter queue."""
    body = json.dumps(fixture("event-bounce"))
    assert event("\ufeff" + body).event == "Bounce"
    assert event(b"\xef\xbb\xbf" + body.encode()).event == "Bounce"
    envelope = fixture("sns-envelope")
    envelope["Message"] = "\ufeff" + body
    assert event("\ufeff" + json.dumps(envelope)).envelope == "sns"


# ----- setup messages ----------------------------------------------------------------------------


def test_setup_messages_are_not_events() -> None:
    confirmation = json.dumps(fixture("sns-subscription-confirmation"))
    assert parse(confirmation) == NotAnEvent("SNS SubscriptionConfirmation")
    succeeded = fixture("notification-subscription-succeeded")
    assert parse(sns(succeeded)) == NotAnEvent("SES AmazonSnsSubscriptionSucceeded")
    assert parse(json.dumps(succeeded)) == NotAnEvent("SES AmazonSnsSubscriptionSucceeded")
    validation = sns("Successfully validated SNS topic for Amazon SES event publishing.")
    assert parse(validation) == NotAnEvent("SES event destination validation")
    raw = "Successfully validated SNS topic for Amazon SES event publishing."
    assert parse(raw) == NotAnEvent("SES event destination validation")


# ----- not events --------------------------------------------------------------------------------


def _without(name: str, *path: str) -> dict[str, Any]:
    data = fixture(name)
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


INVALID: dict[str, str | bytes] = {
    "not json": "hello",
    "not utf-8": b"\xff\xfe{}",
    "json array": "[1, 2]",
    "no type": json.dumps({"mail": {"messageId": "x"}}),
    "type not a string": json.dumps({"eventType": 3, "mail": {"messageId": "x"}}),
    "empty type": json.dumps({"eventType": " ", "mail": {"messageId": "x"}}),
    "no mail": json.dumps(_without("event-send", "mail")),
    "no message id": json.dumps(_without("event-send", "mail", "messageId")),
    "bounce without bounce": json.dumps(_without("event-bounce", "bounce")),
    "bounce without recipients": json.dumps(
        _without("event-bounce", "bounce", "bouncedRecipients")
    ),
    "complaint without recipients": json.dumps(
        _without("event-complaint", "complaint", "complainedRecipients")
    ),
    "recipient without address": json.dumps(
        {
            "eventType": "Complaint",
            "mail": {"messageId": "x"},
            "complaint": {"complainedRecipients": [{"status": "5.0.0"}]},
        }
    ),
    "recipient neither string nor object": json.dumps(
        {"eventType": "Bounce", "mail": {"messageId": "x"}, "bounce": {"bouncedRecipients": [3]}}
    ),
    "sns without message": json.dumps({"Type": "Notification", "TopicArn": "arn:x"}),
    "sns message not json": sns("{not json"),
    "sns message a list": sns("[]"),
    "sns of an unknown type": json.dumps({"Type": "Other", "TopicArn": "arn:x", "Message": "{}"}),
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "huge": " " * (2 << 20),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_not_an_event(name: str) -> None:
    with pytest.raises(SesEventError):
        parse(INVALID[name])


def test_error_text_never_carries_the_content() -> None:
    secret = "jane.secret@example.org"
    for body in (
        json.dumps({"eventType": "Bounce", "mail": {"messageId": "x"}, "bounce": secret}),
        json.dumps({"Type": secret, "TopicArn": "arn:x", "Message": "{}"}),
        secret,
    ):
        with pytest.raises(SesEventError) as info:
            parse(body)
        assert "jane" not in str(info.value)


# ----- de-duplication ----------------------------------------------------------------------------


def test_the_same_event_twice_has_one_key() -> None:
    data = fixture("event-bounce")
    assert event(json.dumps(data)).dedup_key == event(sns(data)).dedup_key


def test_keys_tell_apart_what_differs() -> None:
    bounce = fixture("notification-bounce-no-dsn")
    keys = {event(json.dumps(bounce)).dedup_key}
    # one notification per recipient, as SES may send them: two events, two keys
    for recipient in bounce["bounce"]["bouncedRecipients"]:
        single = json.loads(json.dumps(bounce))
        single["bounce"]["bouncedRecipients"] = [recipient]
        single["bounce"]["feedbackId"] += recipient["emailAddress"][:1]
        keys.add(event(json.dumps(single)).dedup_key)
    assert len(keys) == 3
    # same message, another type
    delivery = fixture("event-delivery")
    as_send = json.loads(json.dumps(delivery))
    as_send["eventType"] = "Send"
    assert event(json.dumps(delivery)).dedup_key != event(json.dumps(as_send)).dedup_key
    # a later delay of the same message
    delay = fixture("event-delivery-delay")
    later = json.loads(json.dumps(delay))
    later["deliveryDelay"]["timestamp"] = "2025-03-04T01:25:40.095Z"
    assert event(json.dumps(delay)).dedup_key != event(json.dumps(later)).dedup_key


def test_one_bounce_in_both_formats_has_one_key() -> None:
    """A queue fed by event publishing and by identity notifications gets each bounce twice."""
    notification = fixture("notification-bounce-dsn")
    published = json.loads(json.dumps(notification))
    published["eventType"] = published.pop("notificationType")
    assert event(json.dumps(notification)).dedup_key == event(sns(published)).dedup_key


def test_two_unknown_types_of_one_message_have_two_keys() -> None:
    data = fixture("event-send")
    first, second = dict(data, eventType="NewThing"), dict(data, eventType="OtherThing")
    assert event(json.dumps(first)).event == event(json.dumps(second)).event == "other"
    assert event(json.dumps(first)).dedup_key != event(json.dumps(second)).dedup_key


def test_key_holds_no_address() -> None:
    got = event(json.dumps(fixture("event-bounce")))
    assert "@" not in got.dedup_key and "ada" not in got.dedup_key
    assert got.dedup_key.startswith("Bounce:")
    assert dedup_key("m", "Send") == dedup_key("m", "Send")


# ----- diagnostic codes --------------------------------------------------------------------------

DIAGNOSTICS = [
    ("smtp; 550 5.1.1 user unknown", "", ("550 5.1.1", "user unknown")),
    ("smtp; 550-5.7.26 This mail is unauthenticated", "5.7.26",
     ("550 5.7.26", "This mail is unauthenticated")),
    ("smtp; 421-4.7.28 [192.0.2.1 15] Our system has detected an unusual rate", "",
     ("421 4.7.28", "[192.0.2.1 15] Our system has detected an unusual rate")),
    ("smtp; 550 5.7.515 Access denied, sending domain example.com doesn't meet the required", "",
     ("550 5.7.515", "Access denied, sending domain example.com doesn't meet the required")),
    ("X-Postfix; unknown user", "5.0.0", ("5.0.0", "unknown user")),
    ("smtp; 554 Message rejected", "", ("554", "Message rejected")),
    ("", "", (NO_CODE, "")),
    ("", "4.4.7", ("4.4.7", "")),
    ("smtp; 550 4.2.2 odd: another class", "", ("550", "4.2.2 odd: another class")),
    ("smtp;550 5.2.2 mailbox full", "not-a-status", ("550 5.2.2", "mailbox full")),
]  # fmt: skip


@pytest.mark.parametrize(("diagnostic", "status", "expected"), DIAGNOSTICS)
def test_diagnostic_code(diagnostic: str, status: str, expected: tuple[str, str]) -> None:
    assert diagnostic_code(diagnostic, status) == expected


def test_scrub_cuts_addresses_to_their_domain() -> None:
    text = "smtp; 550 5.1.1 <Jane.Doe@Example.ORG>... User unknown jane.doe (jane.doe@example.org)"
    out = scrub(text, ["jane.doe@example.org"])
    assert "jane" not in out.lower()
    assert "…@example.org" in out
    assert len(scrub("x" * 1000)) <= 160
    assert scrub("a\nb\tc\x00d") == "a b c d"


@pytest.mark.parametrize(
    ("text", "address", "locals_", "domain"),
    [
        ("smtp; 550 5.1.1 <用户@例子.广告>: mailbox unavailable", "用户@例子.广告", ["用户"],
         "…@xn--fsqu00a.xn--4rr70v"),
        ("550 5.1.1 josé.müller@Bücher.DE unknown", "josé.müller@bücher.de",
         ["josé", "müller"], "…@xn--bcher-kva.de"),
        ("550 5.1.1 <δοκιμή@παράδειγμα.δοκιμή> does not exist", "δοκιμή@παράδειγμα.δοκιμή",
         ["δοκιμή@", "δοκιμή>"], "…@xn--hxajbheg2az3al.xn--jxalpdlp"),
        ("550 5.1.1 Ünïcødé@example.com", "Ünïcødé@example.com", ["Ünïcødé"], "…@example.com"),
        ('550 5.1.1 "john doe"@example.com unknown', "other@example.com", ["john"],
         "…@example.com"),
        ("550 user 用户 is over quota", "用户@例子.广告", ["用户"], "550 user … is over quota"),
    ],
)  # fmt: skip
def test_scrub_cuts_unicode_addresses_like_ascii_ones(
    text: str, address: str, locals_: list[str], domain: str
) -> None:
    out = scrub(text, [address])
    for local in locals_:
        assert local not in out, out
    assert domain in out, out


FULLWIDTH_USER = "\uff55\uff53\uff45\uff52"  # "user" in full-width letters
FULLWIDTH_EXAMPLE = "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25"


def test_unicode_recipients_keep_their_domain_as_a_labels() -> None:
    data = fixture("event-bounce")
    rcpt = data["bounce"]["bouncedRecipients"][0]
    addresses = ["用户@例子.广告", "Jörg <jörg@Bücher.DE>",
                 FULLWIDTH_USER + "@" + FULLWIDTH_EXAMPLE + ".com", "x@☃.example",
                 "δοκιμή@παράδειγμα.δοκιμή"]  # fmt: skip
    data["bounce"]["bouncedRecipients"] = [
        dict(rcpt, emailAddress=a, diagnosticCode=f"smtp; 550 5.1.1 <{a}> unknown")
        for a in addresses
    ]
    bounce = event(json.dumps(data))
    assert [r.domain for r in bounce.recipients] == [
        "xn--fsqu00a.xn--4rr70v",
        "xn--bcher-kva.de",
        "example.com",
        "",  # not a valid IDN: no domain, rather than a Unicode label
        "xn--hxajbheg2az3al.xn--jxalpdlp",
    ]
    for r in bounce.recipients:
        assert r.domain.isascii(), r
        assert r.text.replace("…", "").isascii() or "☃" in r.text, r
        for local in ("用户", "jörg", FULLWIDTH_USER, "δοκιμή@"):
            assert local not in r.text, r.text


# ----- the parser lets out nothing but its own error ---------------------------------------------


def _any_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    _any_containers,
    max_leaves=20,
)
KEYS = ["eventType", "notificationType", "mail", "messageId", "bounce", "bouncedRecipients",
        "complaint", "complainedRecipients", "emailAddress", "diagnosticCode", "status",
        "bounceType", "delivery", "recipients", "deliveryDelay", "delayedRecipients", "destination",
        "timestamp", "feedbackId", "failure", "errorMessage", "reject", "reason", "Type",
        "TopicArn", "Message", "source", "detail"]  # fmt: skip
TYPES = ["Bounce", "Complaint", "Delivery", "Send", "Reject", "DeliveryDelay", "Rendering Failure",
         "Open", "Notification", "aws.ses", "AmazonSnsSubscriptionSucceeded"]  # fmt: skip


def _event_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)


shaped = st.recursive(
    st.none() | st.integers() | st.sampled_from(TYPES) | st.text(max_size=30)
    | st.sampled_from(["a@gmail.com", "smtp; 550 5.1.1 <a@b.c> x", "2025-03-04T10:41:02Z"]),
    _event_containers,
    max_leaves=30,
)  # fmt: skip

texts = st.text(max_size=40) | st.sampled_from(
    ["a@gmail.com", "Jane <j@outlook.com>", "smtp; 550-5.7.26 x <a@b.c>", "5.1.1", "@", "a@"]
)
recipients = st.lists(
    texts
    | shaped
    | st.fixed_dictionaries(
        {"emailAddress": texts},
        optional={"status": texts | shaped, "diagnosticCode": texts | shaped, "action": texts},
    ),
    max_size=4,
)
details = st.fixed_dictionaries(
    {},
    optional={
        key: recipients | shaped
        for key in ("bouncedRecipients", "complainedRecipients", "delayedRecipients", "recipients")
    }
    | {key: texts | shaped for key in ("bounceType", "bounceSubType", "timestamp", "feedbackId",
                                        "complaintFeedbackType", "delayType", "reason",
                                        "errorMessage")},
)  # fmt: skip
event_like = st.builds(
    lambda field, kind, mail, key, detail: {field: kind, "mail": mail, key: detail},
    st.sampled_from(["eventType", "notificationType"]),
    st.sampled_from(TYPES) | texts,
    st.fixed_dictionaries(
        {"messageId": texts},
        optional={"destination": recipients | shaped, "timestamp": texts | shaped},
    )
    | shaped,
    st.sampled_from(["bounce", "complaint", "delivery", "deliveryDelay", "failure", "reject",
                     "send", "open"]),
    details | shaped,
)  # fmt: skip


def _check(body: str | bytes) -> None:
    try:
        result = parse(body)
    except SesEventError:
        return
    assert isinstance(result, SesEvent | NotAnEvent)
    if isinstance(result, SesEvent):
        assert result.count >= 1 and result.dedup_key


@settings(max_examples=400)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_any_bytes(body: str | bytes) -> None:
    _check(body)


@settings(max_examples=400)
@given(json_values)
def test_parse_any_json(value: Any) -> None:
    _check(json.dumps(value))
    _check(sns(json.dumps(value)))


@settings(max_examples=300)
@given(shaped)
def test_parse_event_shaped_json(value: Any) -> None:
    _check(json.dumps(value))
    if isinstance(value, dict):
        _check(sns(value))
        _check(eventbridge(value))


@settings(max_examples=600)
@given(event_like)
def test_parse_event_like_json(value: dict[str, Any]) -> None:
    _check(json.dumps(value))
    _check(sns(value))


@settings(max_examples=300)
@given(st.sampled_from(sorted(EXPECTED)), st.sampled_from(KEYS), shaped)
def test_parse_documented_events_with_one_field_replaced(name: str, key: str, value: Any) -> None:
    data = fixture(name)
    for target in (data, data.get("mail", {}), *(v for v in data.values() if isinstance(v, dict))):
        if key in target:
            target[key] = value
            break
    else:
        data[key] = value
    _check(json.dumps(data))
    _check(sns(data))


@given(st.text(max_size=300), st.text(max_size=20))
def test_diagnostic_code_any_text(diagnostic: str, status: str) -> None:
    code, _ = diagnostic_code(diagnostic, status)
    assert code


@given(st.text(max_size=300), st.lists(st.text(max_size=30), max_size=3))
def test_scrub_any_text(text: str, addresses: list[str]) -> None:
    out = scrub(text, addresses)
    assert len(out) <= 160 and "\n" not in out


_LETTERS = st.characters(categories=["Lu", "Ll", "Lo", "Nd"])
_LOCALS = st.text(_LETTERS | st.sampled_from(".+-_"), min_size=1, max_size=16).filter(
    lambda t: t.strip(".") == t
)
_LABELS = st.text(_LETTERS, min_size=1, max_size=12)
_DOMAINS = st.lists(_LABELS, min_size=1, max_size=3).map(".".join)


@given(_LOCALS, _DOMAINS, st.sampled_from(["<{}>", "{}", "({})", "to={},", "'{}'"]))
def test_scrub_never_leaves_an_address_in_any_script(local: str, domain: str, shape: str) -> None:
    address = f"{local}@{domain}"
    out = scrub(f"smtp; 550 5.1.1 {shape.format(address)} unknown", [])
    assert f"{local}@" not in out and "…@" in out
    rcpt = domain_of(address)
    assert rcpt.isascii() and (rcpt == "" or "@" not in rcpt)


@given(st.sampled_from(sorted(EXPECTED)), st.sampled_from(["raw", "sns", "eventbridge"]),
       st.booleans())  # fmt: skip
def test_a_byte_order_mark_changes_nothing(name: str, wrap: str, as_bytes: bool) -> None:
    data = fixture(name)
    body = {"raw": json.dumps(data), "sns": sns(data), "eventbridge": eventbridge(data)}[wrap]
    marked = "\ufeff" + body
    assert parse(marked.encode() if as_bytes else marked) == parse(body)


def test_a_megabyte_of_diagnostic_text_parses_in_linear_time() -> None:
    """Parsing runs on the event loop. Diagnostic codes of 2,000 characters without an "@"
    cost the address pattern 36 ms each (it retried at every position): an SQS message of 450
    such recipients held the loop for 16 s."""
    data = fixture("event-bounce")
    rcpt = data["bounce"]["bouncedRecipients"][0]
    data["bounce"]["bouncedRecipients"] = [
        dict(rcpt, emailAddress=f"r{i}@example.org", diagnosticCode="smtp; 550 5.1.1 " + "a" * 1990)
        for i in range(450)
    ]
    body = json.dumps(data)
    assert len(body) < 1 << 20
    started = time.process_time()
    bounce = event(body)
    assert time.process_time() - started < 0.5
    assert bounce.count == 450


_REFERENCE = re.compile(  # the pattern before the lookbehind: same matches, quadratic
    r"(?:\"[^\"\r\n]{0,64}\"|[^\s<>\"'(),;:\[\]@]+)@([^\s<>\"'(),;:\[\]@]+)"
)


@given(st.text(st.sampled_from('ab@" <>.é用\n:'), max_size=120))
def test_the_linear_address_pattern_finds_what_the_quadratic_one_did(text: str) -> None:
    spans = [m.span() for m in ses_events._ADDRESS.finditer(text)]
    assert spans == [m.span() for m in _REFERENCE.finditer(text)]


def test_many_internationalised_addresses_in_diagnostics_cost_little() -> None:
    """Each address in a diagnostic had its domain converted to A-labels (IDNA, ~15 us), though
    only the first 160 characters are kept: 300 recipients with 400 distinct Unicode domains
    each held the event loop for seconds."""
    data = fixture("event-bounce")
    rcpt = data["bounce"]["bouncedRecipients"][0]
    data["bounce"]["bouncedRecipients"] = [
        dict(rcpt, emailAddress=f"r{i}@example.org",
             diagnosticCode=" ".join(f"x@d{i}x{j}é" for j in range(400))[:2000])
        for i in range(300)
    ]  # fmt: skip
    body = json.dumps(data, ensure_ascii=False)
    assert len(body.encode()) < 1 << 20
    started = time.process_time()
    bounce = event(body)
    assert time.process_time() - started < 0.5
    assert bounce.recipients[0].text.startswith("…@xn--d0x0-")
