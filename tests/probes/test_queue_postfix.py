"""The queue probe's Postfix side: the real ``postqueue -j`` of a real postfix (Debian
``postfix``) on loopback with deferred mail, held mail and mail stuck in maildrop; and the parser
of its output and of deferral reasons.

The running postfix (the shared fixture, tests/servers/mail.py) accepts mail on a free
127.0.0.1 port and relays everything to two places that never take it: the domain ``grey.test``
goes to an aiosmtpd server that answers every RCPT with ``450 4.7.1`` (greylisting), every other
domain to a closed loopback port (connection refused); so mail lands in the deferred queue with
two distinct reasons. ``postsuper -h`` puts one message on hold. A second postfix is stopped,
then receives mail with Postfix's ``sendmail``: it stays in maildrop, as when Postfix is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import smtplib
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st
from servers.mail import POSTFIX_MASTER, MailCerts, Postfix, free_port

from exporter.config import parse_config
from exporter.net.dnsclient import make_resolver
from exporter.probes.queue import PROBE
from exporter.probes.queue_postfix import (
    MAX_REASON_CHARS,
    MAX_REASON_KEYS,
    OTHER,
    QUEUES,
    PostfixQueue,
    PostqueueError,
    PostqueueFormatError,
    QueuedMessage,
    deferral_key,
    list_queue,
    parse_line,
    postqueue_command,
    redact,
)
from exporter.results import ProbeResult, RunRecord, State
from exporter.runner import Runtime, run_probe
from exporter.web import status_page, target_page


class Greylist:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        return f"450 4.7.1 <{address}>: Recipient address rejected: Greylisted"


def send(postfix: Postfix, sender: str, recipients: list[str], n: int = 1) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, ", ".join(recipients), "receipt"
    msg.set_content("Thank you for your order.")
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=10) as smtp:
        for _ in range(n):
            smtp.send_message(msg, sender, recipients)


def listing(postfix: Postfix) -> list[dict[str, Any]]:
    out = subprocess.run(["postqueue", "-c", str(postfix.dir), "-j"], capture_output=True,
                         text=True, timeout=30, check=True).stdout  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def postfix_relaying_nowhere() -> Iterator[Postfix]:
    """The shared postfix fixture, relaying grey.test to a greylisting aiosmtpd server and
    everything else to a closed loopback port: all mail ends up deferred."""
    grey = Controller(Greylist(), hostname="127.0.0.1", port=free_port(), ready_timeout=5)
    grey.start()
    certs_dir = Path(tempfile.mkdtemp(prefix="queue-certs-"))
    closed = free_port()  # nothing listens there: connection refused
    postfix = Postfix(MailCerts(certs_dir))
    (postfix.dir / "transport").write_text(f"grey.test smtp:[127.0.0.1]:{grey.port}\n")
    postfix.main |= {
        "transport_maps": f"texthash:{postfix.dir}/transport",
        "default_transport": f"smtp:[127.0.0.1]:{closed}",
        "relay_transport": f"smtp:[127.0.0.1]:{closed}",
    }
    try:
        yield postfix.start()
    finally:
        postfix.stop()
        grey.stop()
        shutil.rmtree(certs_dir, ignore_errors=True)


def wait_deferred(postfix: Postfix, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = listing(postfix)
        deferred = [m for m in found if m["queue_name"] == "deferred"]
        if len(deferred) == n and all(
            "delay_reason" in r for m in deferred for r in m["recipients"]
        ):
            return found
        time.sleep(0.1)
    raise AssertionError(f"not {n} deferred messages: {listing(postfix)}")


@dataclass
class World:
    postfix: Postfix
    held_id: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if shutil.which("postqueue") is None or not Path(POSTFIX_MASTER).exists():
        pytest.fail("Debian package postfix is not installed (scripts/test installs it)")
    with postfix_relaying_nowhere() as postfix:
        send(postfix, "shop@example.test", ["alice@remote.test"], n=3)
        send(postfix, "shop@example.test", ["bob@grey.test", "carol@grey.test"], n=2)
        queued = wait_deferred(postfix, 5)
        held = next(m["queue_id"] for m in queued
                    if m["recipients"][0]["address"] == "alice@remote.test")  # fmt: skip
        subprocess.run(["postsuper", "-c", str(postfix.dir), "-h", held], check=True,
                       capture_output=True, timeout=30)  # fmt: skip
        yield World(postfix, held)


async def run(entry: dict[str, Any]) -> ProbeResult:
    config = parse_config({"global": {"timeout": "20s"},
                           "queues": [{"name": "mta", "kind": "postfix", **entry}]})  # fmt: skip
    (target,) = PROBE.targets(config)
    rt = Runtime(make_resolver(["127.0.0.1:9"], attempt_timeout=0.5, lifetime=0.5), config)
    try:
        return (await run_probe(PROBE, target, rt)).result
    finally:
        await rt.aclose()


async def recorded(entry: dict[str, Any]) -> tuple[RunRecord, State]:
    """One run as the daemon makes it, recorded in a state the status pages are made from."""
    config = parse_config({"queues": [{"name": "mta", "kind": "postfix", **entry}]})
    (target,) = PROBE.targets(config)
    rt = Runtime.for_config(config)
    try:
        record = await run_probe(PROBE, target, rt)
    finally:
        await rt.aclose()
    state = State()
    state.set_targets([target])
    state.record(record)
    return record, state


def values(result: ProbeResult, metric: str) -> dict[str, float]:
    return {dict(s.labels)["queue"]: s.value for s in result.samples if s.metric == metric}


def codes(result: ProbeResult) -> dict[tuple[str, str], str]:
    return {(f.code, f.subject): f.severity or "" for f in result.findings}


# ----- the real postfix --------------------------------------------------------------------------


async def test_deferred_and_held_mail(world: World) -> None:
    started = time.time()
    result = await run({"postfix_config_dir": str(world.postfix.dir),
                        "thresholds": {"deferred": 3, "deferred_critical": 10}})  # fmt: skip
    assert result.error is None, result.error
    assert values(result, "queue_depth") == {
        "maildrop": 0, "incoming": 0, "active": 0, "deferred": 4, "hold": 1,
    }  # fmt: skip
    ages = values(result, "queue_oldest_age_seconds")
    assert set(ages) == {"deferred", "hold"}
    queued = listing(world.postfix)
    oldest = min(m["arrival_time"] for m in queued if m["queue_name"] == "deferred")
    assert abs(ages["deferred"] - (started - oldest)) < 5
    assert codes(result) == {("postfix_deferred_high", "deferred"): "warning",
                             ("postfix_hold", "hold"): ""}  # fmt: skip
    (deferred_finding,) = [f for f in result.findings if f.code == "postfix_deferred_high"]
    assert "4 messages in the deferred queue" in deferred_finding.evidence
    # 2 held-back + 2 greylisted messages; the grey ones have 2 recipients each
    (table,) = result.tables
    assert table.title == "Top deferral reasons"
    assert table.columns == ("remote host", "status", "recipients", "example")
    assert [row[:3] for row in table.rows] == [
        ("127.0.0.1", "450 4.7.1", "4"),
        ("127.0.0.1", "Connection refused", "2"),
    ]
    assert table.rows[0][3].startswith("host 127.0.0.1[127.0.0.1] said: 450 4.7.1 <…@grey.test>:")
    assert table.rows[1][3].startswith("connect to 127.0.0.1[127.0.0.1]:")
    assert table.note.startswith("6 deferred recipients in all")
    text = repr(result)
    for address in ("bob@grey.test", "carol@grey.test", "alice@remote.test"):
        assert address not in text
    assert result.details["command"].endswith(f"postqueue -c {world.postfix.dir} -j")


async def test_status_page_shows_the_deferral_reasons(world: World) -> None:
    _, state = await recorded({"postfix_config_dir": str(world.postfix.dir)})
    page = target_page(state, "queue", "mta")
    assert page is not None
    assert "<h3>Top deferral reasons</h3>" in page
    assert "<td>450 4.7.1</td><td>4</td>" in page
    assert "&lt;…@grey.test&gt;" in page and "bob@grey.test" not in page
    assert "Top deferral reasons" in status_page(state, True, Path("config.yaml"))


async def test_deferred_thresholds(world: World) -> None:
    d = str(world.postfix.dir)
    critical = await run(
        {"postfix_config_dir": d, "thresholds": {"deferred": 2, "deferred_critical": 4}}
    )
    assert codes(critical)[("postfix_deferred_high", "deferred")] == "critical"
    quiet = await run({"postfix_config_dir": d})  # default: warning from 100
    assert ("postfix_deferred_high", "deferred") not in codes(quiet)
    # deferred and held mail is old by nature: never an age finding
    strict = await run({"postfix_config_dir": d, "thresholds": {"oldest_age": "1ms"}})
    assert not [f for f in strict.findings if f.code == "queue_oldest_too_old"]


@pytest.fixture
def stopped_postfix() -> Iterator[Path]:
    """A postfix that went down (its master stopped), then one message the application handed
    to Postfix's sendmail: it waits in maildrop, as nothing picks it up."""
    certs_dir = Path(tempfile.mkdtemp(prefix="queue-certs-"))
    postfix = Postfix(MailCerts(certs_dir)).start()
    try:
        assert postfix.proc is not None
        postfix.proc.terminate()
        postfix.proc.wait(10)
        subprocess.run(["sendmail", "-C", str(postfix.dir), "-f", "app@example.test",
                        "user@remote.test"], input=b"Subject: reset your password\n\nhello\n",
                       check=True, capture_output=True, timeout=30)  # fmt: skip
        yield postfix.dir
    finally:
        postfix.stop()
        shutil.rmtree(certs_dir, ignore_errors=True)


async def test_mail_stuck_in_maildrop_while_postfix_is_down(stopped_postfix: Path) -> None:
    await asyncio.sleep(1.1)
    result = await run(
        {
            "postfix_config_dir": str(stopped_postfix),
            "thresholds": {"oldest_age": "1s", "oldest_age_critical": "1h"},
        }
    )
    assert result.error is None, result.error
    assert values(result, "queue_depth")["maildrop"] == 1
    assert values(result, "queue_oldest_age_seconds")["maildrop"] >= 1
    assert codes(result) == {("queue_oldest_too_old", "maildrop"): "warning"}
    # root lists a stopped Postfix's queue directly; postqueue says so
    assert "Mail system is down" in result.details["postqueue warnings"]


async def test_missing_or_unusable_postqueue(tmp_path: Path) -> None:
    missing = await run({"postqueue_path": str(tmp_path / "postqueue")})
    assert missing.error is not None and "not found" in missing.error
    assert "postqueue_path" in missing.error and not missing.samples
    not_executable = tmp_path / "postqueue-copy"
    shutil.copy(shutil.which("postqueue") or "", not_executable)
    not_executable.chmod(0o644)
    denied = await run({"postqueue_path": str(not_executable)})
    assert denied.error is not None and "not allowed to run" in denied.error


async def test_postqueue_as_another_user_is_could_not_tell(world: World) -> None:
    """A non-root user may not point postqueue at another configuration directory."""
    if shutil.which("runuser") is None:
        pytest.fail("runuser (util-linux) is needed")
    command = ["runuser", "-u", "nobody", "--", *postqueue_command(None, str(world.postfix.dir))]
    with pytest.raises(PostqueueError) as info:
        await list_queue(command, time_limit=20)
    assert "exited with status 69" in info.value.reason
    assert "postqueue: fatal:" in info.value.reason
    assert "alternate_config_directories" in info.value.fix


def test_postqueue_is_found_in_sbin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = postqueue_command(None, None)
    assert found[0] == shutil.which("postqueue", path="/usr/sbin:/sbin") and found[1:] == ["-j"]
    assert postqueue_command(None, "/etc/postfix-out")[1:] == ["-c", "/etc/postfix-out", "-j"]


# ----- the subprocess edge: deadline, cap, foreign output ----------------------------------------


async def test_slow_command_is_killed_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(PostqueueError) as info:
        await list_queue(["sleep", "30"], time_limit=0.3)
    assert "did not finish within 0.3s" in str(info.value)
    assert time.monotonic() - started < 5


async def test_output_cap() -> None:
    line = json.dumps({"queue_name": "deferred", "arrival_time": 1, "recipients": []})
    with pytest.raises(PostqueueError) as info:
        await list_queue(["yes", line], time_limit=20, max_output=1024 * 1024)
    assert "printed more than 1 MiB" in str(info.value)


async def test_line_cap_and_foreign_output() -> None:
    with pytest.raises(PostqueueError) as info:
        await list_queue(["head", "-c", "300000", "/dev/zero"], time_limit=20, max_line=65536)
    assert "longer than 64 KiB" in str(info.value)
    with pytest.raises(PostqueueError) as info:
        await list_queue(["echo", "Mail queue is empty"], time_limit=20)
    assert "not a queued message" in str(info.value)


async def test_failing_command_reason_and_fix() -> None:
    with pytest.raises(PostqueueError) as info:
        await list_queue(["sh", "-c", "echo 'postqueue: fatal: Queue report unavailable - mail"
                          " system is down' >&2; exit 69"], time_limit=20)  # fmt: skip
    assert info.value.reason.endswith("exited with status 69: postqueue: fatal: Queue report"
                                      " unavailable - mail system is down")  # fmt: skip
    assert "postfix start" in info.value.fix


# ----- parsers -----------------------------------------------------------------------------------

LINE = (
    '{"queue_name": "deferred", "queue_id": "A9F6220C194", "arrival_time": 1796401672,'
    ' "message_size": 297, "forced_expire": false, "sender": "a@example.test", "recipients":'
    ' [{"address": "c@other.test", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:40069:'
    ' Connection refused"}, {"address": "b@remote.test"}]}'
)


def test_parse_line() -> None:
    msg = parse_line(LINE)
    assert msg == QueuedMessage(
        "deferred", 1796401672.0, ("connect to 127.0.0.1[127.0.0.1]:40069: Connection refused",)
    )
    assert parse_line(LINE.encode()) == msg
    for bad in ("", "[]", "{}", '{"queue_name": "Deferred!", "arrival_time": 1}',
                '{"queue_name": "hold", "arrival_time": "yesterday"}',
                '{"queue_name": "hold", "arrival_time": true}',
                '{"queue_name": "hold", "arrival_time": NaN}',
                '{"queue_name": "hold", "arrival_time": 1, "recipients": {}}',
                '{"queue_name": "hold", "arrival_time": 1, "recipients": ["x"]}',
                '{"queue_name": "hold", "arrival_time": 1, "recipients": [{"delay_reason": 4}]}',
                b"\xff\xfe"):  # fmt: skip
        with pytest.raises(PostqueueFormatError):
            parse_line(bad)


@pytest.mark.parametrize(
    ("reason", "key"),
    [
        ("connect to mx1.example.com[192.0.2.1]:25: Connection timed out",
         ("mx1.example.com", "Connection timed out")),
        ("delivery temporarily suspended: connect to mx1.example.com[192.0.2.1]:25: Connection"
         " timed out", ("mx1.example.com", "Connection timed out")),
        ("host gmail-smtp-in.l.google.com[142.250.1.26] said: 421-4.7.28 [192.0.2.9] Our system"
         " has detected an unusual rate of unsolicited mail (in reply to end of DATA command)",
         ("gmail-smtp-in.l.google.com", "421 4.7.28")),
        ("host mx.example.net[198.51.100.7] said: 450 4.2.0 <bob@example.net>: Recipient address"
         " rejected: Greylisted (in reply to RCPT TO command)", ("mx.example.net", "450 4.2.0")),
        ("host mx.example.net[198.51.100.7] said: 452 Too many connections (in reply to MAIL FROM"
         " command)", ("mx.example.net", "452")),
        ("host mx.example.net[198.51.100.7] refused to talk to me: 554 5.7.1 Service unavailable;"
         " Client host blocked", ("mx.example.net", "greeting 554 5.7.1")),
        ("lost connection with mx.example.net[198.51.100.7] while receiving the initial server"
         " greeting", ("mx.example.net", "lost connection while receiving the initial server"
                       " greeting")),
        ("conversation with mx.example.net[198.51.100.7] timed out while sending end of data --"
         " message may be sent more than once",
         ("mx.example.net", "conversation timed out while sending end of data -- message may be"
          " sent more than once")),
        ("Host or domain name not found. Name service error for name=exmaple.com type=MX: Host"
         " not found, try again", ("exmaple.com", "DNS MX: Host not found, try again")),
        ("TLS is required, but was not offered by host mx.example.net[198.51.100.7]",
         ("mx.example.net", "TLS required, but was not offered")),
        ("SASL authentication failed; server smtp.relay.test[203.0.113.5] said: 535 5.7.8"
         " Error: authentication failed", ("smtp.relay.test", "SASL authentication failed 535"
                                           " 5.7.8")),
        ("connect to unknown[192.0.2.44]:25: No route to host", ("192.0.2.44", "No route to host")),
        ("mail transport unavailable", ("", "mail transport unavailable")),
    ],
)  # fmt: skip
def test_deferral_key(reason: str, key: tuple[str, str]) -> None:
    assert deferral_key(reason) == key


def test_redact_keeps_only_domains() -> None:
    assert redact("<bob.smith+x@example.net>: Recipient address rejected") == (
        "<…@example.net>: Recipient address rejected"
    )
    assert (
        redact("user 'a@b.c' unknown; host x[1.2.3.4]") == "user '…@b.c' unknown; host x[1.2.3.4]"
    )


def test_reason_counting_is_bounded() -> None:
    queue = PostfixQueue()
    for i in range(MAX_REASON_KEYS + 50):
        queue.add(QueuedMessage("deferred", 1.0, (f"connect to h{i}.test[192.0.2.1]:25: x",)))
    queue.add(QueuedMessage("active", 5.0, ("not counted: not deferred",)))
    top = queue.top_reasons(3)
    assert (top[0].remote, top[0].status, top[0].recipients) == (*OTHER, 50)
    assert queue.deferred_recipients == MAX_REASON_KEYS + 50
    assert queue.depth["deferred"] == MAX_REASON_KEYS + 50 and queue.depth["active"] == 1
    assert queue.oldest_arrival == {"deferred": 1.0, "active": 5.0}


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parse_line_raises_only_its_own_error(data: bytes | str) -> None:
    with contextlib.suppress(PostqueueFormatError):
        msg = parse_line(data)
        assert msg.queue and all(isinstance(r, str) for r in msg.delay_reasons)


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([*QUEUES, "bogus"]) | st.integers(min_value=-(10**400), max_value=10**400),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["queue_name", "arrival_time", "recipients",
                                       "delay_reason", "address"]), children, max_size=5),
    max_leaves=20,
))  # fmt: skip
def test_parse_line_on_json_shapes(value: object) -> None:
    with contextlib.suppress(PostqueueFormatError):
        msg = parse_line(json.dumps(value))
        # What is accepted is a count postqueue meant: a known queue, a real time.
        assert msg.queue in QUEUES
        assert 0 <= msg.arrival_time <= 2**40


@given(st.text(max_size=400))
def test_deferral_key_never_raises(reason: str) -> None:
    remote, status = deferral_key(reason)
    assert isinstance(remote, str) and len(status) <= 100


# ----- hostile postqueue output: could not tell, never a wrong count ------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"queue_name": "deferred", "arrival_time": Infinity, "recipients": []}',
        '{"queue_name": "deferred", "arrival_time": -Infinity, "recipients": []}',
        '{"queue_name": "deferred", "arrival_time": 1e400, "recipients": []}',
        '{"queue_name": "deferred", "arrival_time": 1' + "0" * 400 + ', "recipients": []}',
        '{"queue_name": "deferred", "arrival_time": -1' + "0" * 400 + ', "recipients": []}',
        '{"queue_name": "bogus", "arrival_time": 1, "recipients": []}',
        '{"queue_name": "deferred", "arrival_time": 1, "recipients": [{"delay_reason": ["x"]}]}',
        '{"queue_name": ["deferred"], "arrival_time": 1}',
        '"deferred"',
        "null",
    ],
)
def test_parse_line_refuses_what_postqueue_never_prints(line: str) -> None:
    with pytest.raises(PostqueueFormatError):
        parse_line(line)


def fake_postqueue(tmp_path: Path, stdout: bytes, status: int = 0, stderr: bytes = b"") -> str:
    """An executable that prints ``stdout`` (and ``stderr``) as a postqueue would, then exits
    with ``status``."""
    (tmp_path / "out").write_bytes(stdout)
    (tmp_path / "err").write_bytes(stderr)
    script = tmp_path / "postqueue"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'out'}\ncat {tmp_path / 'err'} >&2\n"
                      f"exit {status}\n")  # fmt: skip
    script.chmod(0o755)
    return str(script)


GOOD = json.dumps({"queue_name": "deferred", "arrival_time": 1, "recipients": []}).encode()


@pytest.mark.parametrize(
    ("stdout", "why"),
    [
        (GOOD + b"\n" + GOOD[:30], "not JSON"),  # cut mid-object (a killed postqueue)
        (GOOD + b"\n" + b'{"queue_name": "deferred", "arrival_time": 1' + b"0" * 400 + b"}\n",
         "arrival_time"),
        (GOOD + b"\n" + b'{"queue_name": "deferred", "arrival_time": Infinity}\n', "arrival_time"),
        (GOOD + b"\n" + b'{"queue_name": "shadow", "arrival_time": 1}\n', "queue_name"),
        (GOOD + b"\n[" * 100_000 + b"\n", "not JSON"),
        (b"\x00" * 100 + b"\n", "not JSON"),
    ],
)  # fmt: skip
async def test_garbage_from_postqueue_is_could_not_tell(
    tmp_path: Path, stdout: bytes, why: str
) -> None:
    result = await run({"postqueue_path": fake_postqueue(tmp_path, stdout)})
    assert result.error is not None
    assert "printed a line that is not a queued message" in result.error, result.error
    assert why in result.error
    assert not result.samples and not result.findings


@given(
    st.fixed_dictionaries(
        {
            "queue_name": st.sampled_from([*QUEUES, "bogus", "shadow"]) | st.text(max_size=8),
            "arrival_time": st.floats() | st.integers(min_value=-(10**400), max_value=10**400),
        },
        optional={"recipients": st.lists(st.fixed_dictionaries(
            {}, optional={"address": st.text(max_size=5),
                          "delay_reason": st.text(max_size=5) | st.integers()}), max_size=3)},
    )
)  # fmt: skip
def test_parse_line_accepts_only_real_queues_and_times(value: dict[str, object]) -> None:
    with contextlib.suppress(PostqueueFormatError):
        msg = parse_line(json.dumps(value))
        assert msg.queue in QUEUES
        assert 0 <= msg.arrival_time <= 2**40


def test_huge_deferral_reasons_are_cut_and_cost_little_memory() -> None:
    """A hostile (or broken) remote server's replies become Postfix's delay_reason: 2,000
    distinct reasons of 20 KB held 60 MB before they were cut at 2,048 characters."""
    long = "host mx.example[192.0.2.1] said: 450 4.7.1 " + "y" * 30_000
    msg = parse_line(json.dumps({"queue_name": "deferred", "arrival_time": 1,
                                 "recipients": [{"delay_reason": long}]}))  # fmt: skip
    assert msg.delay_reasons == (long[:MAX_REASON_CHARS],)
    tracemalloc.start()
    try:
        queue = PostfixQueue()
        for i in range(2000):
            reason = f"host mx{i}.example[192.0.2.1] said: 450 4.7.1 " + f"x{i} " * 4000
            line = {"queue_name": "deferred", "arrival_time": 1,
                    "recipients": [{"delay_reason": reason}]}  # fmt: skip
            queue.add(parse_line(json.dumps(line)))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 4 * 1024 * 1024, held
    assert queue.deferred_recipients == 2000
    assert all(len(r.example) <= 300 for r in queue.top_reasons())


async def test_auth_credentials_in_deferral_reasons_never_shown(tmp_path: Path) -> None:
    """A relay that answers AUTH with a reply quoting the client's AUTH PLAIN line: the base64
    holds Postfix's SASL user and password (smtp_sasl_password_maps), which the exporter never
    read, so no registered secret covers it."""
    token = "AGFsaWNlAHNlY3JldA=="  # "\0alice\0secret"
    reasons = [
        f"SASL authentication failed; server relay.test[192.0.2.7] said: 535 5.7.8 AUTH PLAIN"
        f" {token} rejected",
        f"host relay.test[192.0.2.7] said: 454 4.7.0 Temporary failure for {token}",
    ]
    lines = [json.dumps({"queue_name": "deferred", "arrival_time": 1,
                         "recipients": [{"address": f"u{i}@x.test", "delay_reason": reason}]})
             for i, reason in enumerate(reasons * 60)]  # fmt: skip
    path = fake_postqueue(tmp_path, "\n".join(lines).encode() + b"\n")
    record, state = await recorded({"postqueue_path": path, "thresholds": {"deferred": 1}})
    assert record.result.error is None and record.result.tables
    shown = [repr(record.result), target_page(state, "queue", "mta") or "",
             status_page(state, True, Path("config.yaml"))]  # fmt: skip
    for text in shown:
        assert "AGFsaWNl" not in text and "secret" not in text
    assert "[redacted]" in shown[1]


def test_control_characters_in_deferral_reasons_never_reach_a_terminal() -> None:
    """``check`` prints the example reasons to a terminal: an escape sequence in a remote
    server's reply (clear screen, set the window title) must arrive as harmless text."""
    queue = PostfixQueue()
    reason = ("host mx.evil.test[192.0.2.9] said: 450 4.7.1 \x1b[2J\x1b]0;pwned\x07 try"
              " \x00later\x7f\x9b31m (in reply to RCPT TO command)")  # fmt: skip
    queue.add(QueuedMessage("deferred", 1.0, (reason,)))
    (top,) = queue.top_reasons()
    assert (top.remote, top.status) == ("mx.evil.test", "450 4.7.1")
    for text in (top.example, top.status, top.remote):
        assert text.isprintable(), repr(text)
    assert "try later" in " ".join(top.example.split()).replace(" ", " ")


@given(st.text(max_size=300))
def test_deferral_texts_are_printable(reason: str) -> None:
    queue = PostfixQueue()
    queue.add(QueuedMessage("deferred", 1.0, (reason,)))
    for r in queue.top_reasons():
        assert r.example.isprintable() and r.status.isprintable() and r.remote.isprintable()


async def test_postqueue_failing_after_printing_counts_nothing(tmp_path: Path) -> None:
    """Valid lines, then a non-zero exit or death by a signal: the listing may be partial, so
    nothing of it is counted."""
    lines = (GOOD + b"\n") * 3
    fatal = b"postqueue: fatal: read error: Connection reset\n"
    failed = await run({"postqueue_path": fake_postqueue(tmp_path, lines, 75, fatal)})
    assert failed.error is not None and "exited with status 75" in failed.error
    assert "read error" in failed.error and not failed.samples
    script = tmp_path / "killed"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'out'}\nkill -9 $$\n")
    script.chmod(0o755)
    killed = await run({"postqueue_path": str(script)})
    assert killed.error is not None and "was killed by signal SIGKILL" in killed.error
    assert not killed.samples


def test_hostile_deferral_reasons_cost_linear_time() -> None:
    """Reasons are remote servers' text: shapes that made the address and host patterns try
    every start position (quadratic: 33 ms for one 2 KB reason) must cost about as much as
    plain text, whatever their number."""
    shapes = ["x" * 2040 + "@!", "host " + "a" * 2040, "a[" * 1020, "b@" * 1020,
              "TLS is required, but " + " host " * 300, "[" + "c" * 2040]  # fmt: skip
    queue = PostfixQueue()
    started = time.process_time()
    for i in range(300):
        reason = f"{i} " + shapes[i % len(shapes)]
        queue.add(QueuedMessage("deferred", 1.0, (reason[:MAX_REASON_CHARS],)))
    assert time.process_time() - started < 1.5
    assert queue.deferred_recipients == 300


@given(st.text(alphabet="ab@[]: .\x00", max_size=300))
def test_redact_and_key_agree_with_a_plain_scan(reason: str) -> None:
    """The linear patterns find what the plain definitions say: every address's local part
    goes (an '@' followed by a letter or digit keeps only what follows)."""
    out = redact(reason)
    for i, ch in enumerate(out):
        if ch == "@" and i + 1 < len(out) and out[i + 1].isalnum() and i > 0:
            assert out[i - 1] in "…" + " <>\"'(),;:@[]\x00" or out[i - 1].isspace(), out
    deferral_key(reason)


def test_a_line_of_millions_of_tiny_objects_is_refused_before_parsing() -> None:
    """16 MiB of ``{},{},...``: within the line cap, but 5.6 million dicts took 408 MiB to
    parse. Postfix lists a recipient as an object of an address and maybe a reason (60+
    bytes); a line of more than 250,000 objects and arrays is not what postqueue prints."""
    n = (16 * 1024 * 1024 - 100) // 3
    line = b'{"queue_name":"deferred","arrival_time":1,"recipients":[' + b",".join(
        [b"{}"] * n) + b"]}"  # fmt: skip
    with pytest.raises(PostqueueFormatError, match="more than 250000 JSON objects and arrays"):
        parse_line(line)
    ok = b'{"queue_name":"deferred","arrival_time":1,"recipients":[' + b",".join(
        [b'{"address":"a@b.test"}'] * 200_000) + b"]}"  # fmt: skip
    assert parse_line(ok).queue == "deferred"


async def test_postqueue_gets_no_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's environment holds secrets (password_env, AWS credentials): postqueue
    needs none of them. It gets PATH, MAIL_CONFIG (postqueue's own) and the locale."""
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2-env-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-env-secret")
    monkeypatch.setenv("MAIL_CONFIG", str(tmp_path))
    script = tmp_path / "postqueue"
    script.write_text(
        "#!/bin/sh\n"
        'if env | grep -q env-secret; then echo "postqueue: fatal: saw a secret" >&2; exit 3; fi\n'
        f'[ "$MAIL_CONFIG" = "{tmp_path}" ] || exit 4\n'
        "echo '" + GOOD.decode() + "'\n"
    )
    script.chmod(0o755)
    result = await run({"postqueue_path": str(script)})
    assert result.error is None, result.error
    assert values(result, "queue_depth")["deferred"] == 1
