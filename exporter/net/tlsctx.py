"""Client TLS contexts that verify (system roots plus an optional ``ca_file``), and the check
every ``ca_file`` passes before OpenSSL opens it. Small on purpose: the reports and round-trip
probes need a context without the SMTP client or pyOpenSSL."""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import stat


def check_ca_file(path: str) -> None:
    """Raise OSError unless ``path`` is a regular file. OpenSSL opens a FIFO and waits for a
    writer: on the event loop that freezes the daemon, in a thread it holds a worker forever."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")


async def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context (system roots, plus ``ca_file``), built off the event loop
    (loading the system store reads files). Raises OSError when ``ca_file`` cannot be read or
    is no regular file, ``ssl.SSLError`` when it holds no certificate."""

    def build() -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if ca_file:
            check_ca_file(ca_file)
            ctx.load_verify_locations(cafile=ca_file)
        return ctx

    return await asyncio.to_thread(build)
