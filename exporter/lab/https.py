"""An HTTPS server for the demo's MTA-STS policy hosts (``mta-sts.<domain>``).

aiohttp's web server (a runtime dependency already) on port 443 of a loopback address: senders
fetch a policy only from port 443, and so does the ``mta_sts`` probe. Binding 443 needs root or
``CAP_NET_BIND_SERVICE`` (containers usually allow it); :meth:`LabPolicyServer.start` raises
``OSError`` when no candidate address can be bound, and the demo then runs without policy hosts.
Each host has its own certificate (chosen by SNI) and its own answer: a policy, or a redirect.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

POLICY_PATH = "/.well-known/mta-sts.txt"
CANDIDATES = ("127.0.86.1", "127.0.86.2", "127.0.86.3", "127.86.0.1")
"""Loopback addresses tried in turn (every 127/8 address is local; 127.0.0.1:443 is often taken)."""


@dataclass(frozen=True)
class PolicyPage:
    """What one policy host answers at ``/.well-known/mta-sts.txt``."""

    body: str = ""
    status: int = 200
    content_type: str = "text/plain"
    location: str | None = None


class LabPolicyServer:
    """Serves each host's :class:`PolicyPage` over TLS, with that host's certificate."""

    def __init__(self, hosts: dict[str, tuple[ssl.SSLContext, PolicyPage]]) -> None:
        self.hosts = {name.lower(): value for name, value in hosts.items()}
        self.address = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    def _context(self) -> ssl.SSLContext:
        """The first host's context, switching to the named host's one on SNI."""
        contexts = {name: ctx for name, (ctx, _) in self.hosts.items()}
        default = next(iter(contexts.values()))

        def pick(obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            chosen = contexts.get((name or "").lower())
            if chosen is not None and chosen is not default:
                obj.context = chosen

        default.sni_callback = pick
        return default

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        found = self.hosts.get(request.host.rsplit(":", 1)[0].lower())
        if found is None or request.path != POLICY_PATH:
            return web.Response(status=404, text="not found\n")
        page = found[1]
        headers = {"Content-Type": page.content_type}
        if page.location is not None:
            headers["Location"] = page.location
        return web.Response(status=page.status, body=page.body.encode(), headers=headers)

    async def start(self, addresses: Sequence[str] = CANDIDATES, port: int = 443) -> None:
        """Listen on the first of ``addresses`` that can be bound; OSError when none can."""
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        error: OSError | None = None
        for address in addresses:
            site = web.TCPSite(runner, address, port, ssl_context=self._context())
            try:
                await site.start()
            except OSError as exc:
                error = exc
                continue
            self._runner, self.address, self.port = runner, address, runner.addresses[0][1]
            return
        await runner.cleanup()
        raise error or OSError("no address to listen on")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
