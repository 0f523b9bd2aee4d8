"""HTTP on ``[listen].http`` and ``[listen].https``: account setup and MTA-STS.

Design note
-----------
One aiohttp application in the server's event loop (DESIGN.md, "Chosen
libraries") serves the documents mail clients fetch to configure themselves,
and the MTA-STS policy sending servers fetch:

=================================================  ==================================
path                                               module
=================================================  ==================================
``GET /mail/config-v1.1.xml``, ``GET /.well-known  :mod:`pochta.web.autoconfig`
/autoconfig/mail/config-v1.1.xml``                 (Thunderbird, K-9, Evolution)
``POST /autodiscover/autodiscover.xml`` (and       :mod:`pochta.web.autodiscover`
``/Autodiscover/Autodiscover.xml``), ``GET         (Outlook POX and v2 JSON)
/autodiscover/autodiscover.json...``
``GET /apple/mobileconfig?emailaddress=``          :mod:`pochta.web.mobileconfig`
``GET /.well-known/mta-sts.txt``                   :mod:`pochta.web.mtasts` (RFC 8461)
``/admin/...`` (when ``[admin] users`` is set)     :mod:`pochta.web.admin`
=================================================  ==================================

Hosts and ports in the documents come from the settings
(:mod:`pochta.web.services` states the rule). The HTTP and HTTPS listeners
serve the same routes; ``Server`` binds aiohttp's request-handler factory
with its own listener code (:class:`WebApp` hands it over), so bind errors,
``Server.address("http")`` and graceful stop work as for every protocol.
On stop, :meth:`WebApp.close` lets requests in flight finish (a few
seconds at most) and closes idle keep-alive connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from pochta.accounts import Accounts
from pochta.config import Settings
from pochta.web import autoconfig, autodiscover, mobileconfig, mtasts
from pochta.web.common import CONTEXT, WebContext, security_headers
from pochta.web.services import BoundPorts, Service, advertised_services

if TYPE_CHECKING:
    from pochta.web.admin import AdminServices

__all__ = ["BoundPorts", "Service", "WebApp", "WebContext", "advertised_services", "make_app"]

#: Seconds a stop waits for HTTP requests in flight.
SHUTDOWN_TIMEOUT = 5.0


def make_app(
    settings: Settings,
    accounts: Accounts,
    bound: BoundPorts,
    admin: AdminServices | None = None,
) -> web.Application:
    """The aiohttp application with every route of this package (the web
    admin's only with ``admin``, what it acts on, and ``[admin] users``)."""
    app = web.Application(middlewares=[security_headers])
    app[CONTEXT] = WebContext(settings, accounts, bound)
    for path in autoconfig.PATHS:
        app.router.add_get(path, autoconfig.handle_config_v11)
    for path in autodiscover.POX_PATHS:
        app.router.add_post(path, autodiscover.handle_pox)
        app.router.add_get(path, autodiscover.handle_pox_get)
    for path in autodiscover.JSON_PATHS:
        app.router.add_get(path, autodiscover.handle_json)
    app.router.add_get(mobileconfig.PATH, mobileconfig.handle_mobileconfig)
    app.router.add_get(mtasts.PATH, mtasts.handle_mta_sts)
    if admin is not None:
        # Here, not at the top: pochta.dns.zone imports pochta.web.services,
        # and the admin imports pochta.dns.zone.
        from pochta.web.admin import AdminSite

        AdminSite(settings, admin).add_routes(app)
    return app


class WebApp:
    """The application and its runner, as ``Server`` uses them."""

    def __init__(
        self,
        settings: Settings,
        accounts: Accounts,
        bound: BoundPorts,
        admin: AdminServices | None = None,
    ) -> None:
        self.app = make_app(settings, accounts, bound, admin)
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )

    async def setup(self) -> Callable[[], asyncio.BaseProtocol]:
        """Prepare the runner; returns the protocol factory to bind listeners with."""
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set by setup()
        return server

    async def close(self) -> None:
        """Finish requests in flight, close connections, run cleanup hooks."""
        await self._runner.cleanup()
