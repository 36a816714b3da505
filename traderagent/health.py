"""The health endpoint: ``GET /health`` on 127.0.0.1 (``TRADERAGENT_HEALTH_PORT``; 0, the default, keeps it off).

For systemd, Docker's HEALTHCHECK or an uptime monitor: HTTP 200 when every check passes, 503
otherwise, with a JSON body saying which check failed and why::

    {"ok": false, "checks": {"scheduler": {"ok": true, "detail": "last tick 2 s ago (limit 15 s)"},
                             "exchange": {"ok": true, "detail": "answers (linear)"},
                             "telegram": {"ok": false, "detail": "not connected to Telegram"}}}

The checks are the desk's (`Desk.health`: do the ticks run, does the exchange answer) and, when a
Telegram frontend runs, whether it delivers. A desk so stuck that its event loop is blocked does
not answer at all, which every monitor also counts as a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from traderagent.control import Desk
from traderagent.results import Check, Health
from traderagent.utils.plain import json_safe

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(self, desk: Desk, telegram: Callable[[], Check] | None = None, *, port: int = 0,
                 host: str = "127.0.0.1", exchange_timeout: float = 5.0) -> None:
        self.desk = desk
        self.exchange_timeout = exchange_timeout
        self.telegram = telegram
        self.port = port
        self.host = host
        self._runner: web.AppRunner | None = None

    async def health(self) -> Health:
        desk = await self.desk.health(self.exchange_timeout)
        if self.telegram is None:
            return desk
        return Health({**desk.checks, "telegram": self.telegram()})

    async def _handle(self, request: web.Request) -> web.Response:
        report = await self.health()
        body = {"ok": report.ok, "checks": json_safe(dict(report.checks))}
        return web.json_response(body, status=200 if report.ok else 503)

    async def start(self) -> int:
        """Listen; returns the port (``port=0`` in tests: any free one)."""
        app = web.Application()
        app.router.add_get("/health", self._handle)
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = self._runner.addresses[0][1]  # the bound port when port=0
        log.info("health endpoint on http://%s:%d/health", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
