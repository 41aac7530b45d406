"""SMTP submission helpers (aiosmtplib) and the reasons people read when it fails.

Used by the round trip (:mod:`exporter.probes.roundtrip`): connect to an address resolved
through the exporter's DNS client, log in with one mechanism only, and turn aiosmtplib's errors
into one-line reasons (the server's reply code and text, never the credentials).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl

import aiosmtplib


async def tcp_connect(address: str, port: int, limit: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(limit):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def login(client: aiosmtplib.SMTP, username: str, password: str) -> None:
    """One AUTH attempt with the best offered mechanism (``SMTP.login`` would retry a refused
    password with every mechanism, multiplying failed logins towards an account lockout)."""
    offered = client.server_auth_methods
    if "plain" in offered:
        await client.auth_plain(username, password)
    elif "login" in offered:
        await client.auth_login(username, password)
    elif "cram-md5" in offered:
        await client.auth_crammd5(username, password)
    else:
        raise aiosmtplib.SMTPException(
            "the server offers no AUTH mechanism the probe supports (PLAIN, LOGIN, CRAM-MD5)"
            + ("" if offered else " on this connection")
        )


def helo_name(configured: str | None, sender: str) -> str:
    """The EHLO name: the configured one, else this machine's name when it is a FQDN, else the
    sender's domain (no DNS lookup)."""
    if configured:
        return configured
    name = socket.gethostname()
    return name if "." in name else sender.rpartition("@")[2]


def rejection(exc: Exception) -> tuple[int, str, str] | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return first.code, one_line(first.message), "RCPT TO"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return exc.code, one_line(exc.message), "MAIL FROM"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return exc.code, one_line(exc.message), "RCPT TO"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return exc.code, one_line(exc.message), "DATA"
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return exc.code, one_line(exc.message), "the session"
    return None


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()[:300]


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own strerror text repeats the address
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    return exc.reason or type(exc).__name__
