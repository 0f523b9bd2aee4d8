"""The web admin at ``/admin/``: domains, users, aliases, the queue, DNS records
and message traces, for the users ``[admin] users`` names.

Design note
-----------
What the ``pochta`` command does, in a browser, with the same code under it
(``pochta.accounts.manage``, the spool, ``pochta.dns.zone``,
``pochta.observe.trace``), served by the HTTP(S) listeners of ``pochta.web``.
Off (every path a 404) while ``[admin] users`` is empty.

Security, since these pages can add users and read the queue:

* Sign-in is with a listed user's mail password, through the server's
  ``LoginGuard`` (the same slowing and lockout as IMAP, POP3 and
  submission). A wrong password and an unlisted user get the same answer.
  Over plain HTTP it is refused unless ``allow_plaintext_without_tls`` (as
  for the mail protocols), except that nothing else is served either.
* A session is a random 256-bit token in a cookie (``HttpOnly``,
  ``SameSite=Strict``, ``Path=/admin``, ``Secure`` over HTTPS) naming
  server-side state; it ends after 30 minutes unused or 12 hours in all,
  at sign-out, when the user's password changes or the account goes, and
  when the server restarts.
* Every change is a POST that carries the session's CSRF token (compared in
  constant time) and, when the browser sends one, an ``Origin`` of this
  very host; changes answer with a redirect (POST/redirect/GET).
* Pages are Jinja2 templates with autoescaping on; ``Cache-Control:
  no-store`` (a generated password is shown once) and a CSP that allows
  only this site's stylesheet and forms.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from pochta.accounts import AddressError, generate_password, manage, parse_address, parse_domain
from pochta.accounts.login import LoginGuard, TooManyFailures
from pochta.config import Settings
from pochta.dns.check import CheckLine, check, summary
from pochta.dns.resolver import Resolver
from pochta.dns.zone import records
from pochta.errors import UserFacingError
from pochta.mailauth.keys import DKIMKeyStore
from pochta.observe.trace import KEEP_DAYS, describe, find
from pochta.queue.runner import QueueRunner
from pochta.store.interface import Store, StoreError
from pochta.web.common import CONTEXT

__all__ = ["ADMIN", "AdminServices", "AdminSite"]

log = logging.getLogger("pochta.web")

#: A session unused this long (seconds) is gone.
IDLE_TIMEOUT = 30 * 60.0
#: And any session after this long.
MAX_AGE = 12 * 3600.0
#: Sessions kept at once (the oldest go first): bounds memory under abuse.
MAX_SESSIONS = 1000
COOKIE = "pochta_admin"
#: Longest form field accepted (an address is at most 320 octets).
MAX_FIELD = 1000
#: Longest form body accepted.
MAX_FORM = 16 * MAX_FIELD
#: Shortest new password a user may choose on the password page.
MIN_PASSWORD = 10
#: Queued messages listed on one page.
QUEUE_PAGE = 500
#: Shortest trace search: a queue id or a Message-ID, never a fragment that
#: would match every line of 30 days of trace files.
MIN_TRACE_ID = 8
#: Each page's path and the ``AdminSite`` method that shows it (also the
#: only places the redirect after sign-in may lead).
PAGES = {
    "/admin/": "home",
    "/admin/domains": "domains",
    "/admin/users": "users",
    "/admin/aliases": "aliases",
    "/admin/queue": "queue",
    "/admin/dns": "dns",
    "/admin/trace": "trace",
}

ADMIN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
}

STYLE = """\
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1b1b1b; }
header { background: #24364b; color: #fff; padding: .6em 1.2em; display: flex;
  gap: 1.2em; align-items: center; flex-wrap: wrap; }
header a { color: #fff; text-decoration: none; }
header form { margin-left: auto; }
main { padding: 1em 1.2em; max-width: 70em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { border-bottom: 1px solid #ddd; padding: .3em .8em .3em 0; text-align: left;
  vertical-align: top; }
form.inline { display: inline; }
input[type=text], input[type=password], input[type=email] { padding: .25em; min-width: 16em; }
.flash { background: #eef6e8; border: 1px solid #9c6; padding: .5em .8em; }
.error { background: #fbeaea; border: 1px solid #d88; padding: .5em .8em; }
pre { background: #f4f4f4; padding: .8em; overflow-x: auto; }
"""


@dataclass(frozen=True)
class AdminServices:
    """What the web admin acts on: the server's own objects."""

    store: Store
    guard: LoginGuard
    queue: QueueRunner
    keys: DKIMKeyStore
    data_dir: Path
    #: For the DNS check page (the server's resolver: ``[dns].nameservers``).
    resolver: Resolver


@dataclass
class _Session:
    user: str
    csrf: str
    created: float
    seen: float
    #: The user's credential stamp at sign-in: a new password (or the
    #: account's deletion) ends the session.
    stamp: str | None
    #: One-shot messages for the next page: (kind, text), kind "flash" or "error".
    messages: list[tuple[str, str]] = field(default_factory=list)


#: A page: (site, request, session) -> the response.
Page = Callable[["AdminSite", web.Request, _Session], Awaitable[web.StreamResponse]]
#: A change: (site, request, session, the POSTed form) -> the notice to show
#: next; a refusal raises (UserFacingError, StoreError, ValueError).
Change = Callable[["AdminSite", web.Request, _Session, dict[str, str]], Awaitable[str]]


class AdminSite:
    """Routes, sessions and templates of the web admin."""

    def __init__(self, settings: Settings, services: AdminServices) -> None:
        self.settings = settings
        self.services = services
        self.sessions: dict[str, _Session] = {}
        self.admins = frozenset(_canonical(u) for u in settings.admin.users)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("pochta.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    # --- wiring -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Every user's password page; the admin's pages if ``[admin] users``."""
        app[ADMIN] = self
        r = app.router
        r.add_get("/admin/style.css", self.style)
        r.add_get("/account/password", self.password_form)
        r.add_post("/account/password", self.password_change)
        if not self.settings.admin.users:
            return
        r.add_get("/admin", _redirect_to("/admin/"))
        r.add_get("/admin/login", self.login_form)
        r.add_post("/admin/login", self.login)
        for path, name in PAGES.items():
            page: Page = getattr(AdminSite, name)
            r.add_get(path, self._page(page))
        r.add_post("/admin/logout", self._signed_in_post(self._logout))
        # path -> (change, the page it returns to)
        changes: dict[str, tuple[Change, str]] = {
            "/admin/domains/add": (AdminSite.domain_add, "/admin/domains"),
            "/admin/domains/delete": (AdminSite.domain_delete, "/admin/domains"),
            "/admin/domains/rotate": (AdminSite.dkim_rotate, "/admin/domains"),
            "/admin/domains/remove-key": (AdminSite.dkim_remove, "/admin/domains"),
            "/admin/users/add": (AdminSite.user_add, "/admin/users"),
            "/admin/users/delete": (AdminSite.user_delete, "/admin/users"),
            "/admin/users/password": (AdminSite.user_password, "/admin/users"),
            "/admin/aliases/add": (AdminSite.alias_add, "/admin/aliases"),
            "/admin/aliases/delete": (AdminSite.alias_delete, "/admin/aliases"),
            "/admin/queue/flush": (AdminSite.queue_flush, "/admin/queue"),
            "/admin/queue/retry": (AdminSite.queue_retry, "/admin/queue"),
            "/admin/queue/delete": (AdminSite.queue_delete, "/admin/queue"),
        }
        for path, (change, back) in changes.items():
            r.add_post(path, self._signed_in_post(self._changer(change, back)))

    def _page(self, page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                target = urllib.parse.quote(request.path_qs, safe="/?=&")
                raise _with_headers(web.HTTPSeeOther(f"/admin/login?next={target}"))
            return await page(self, request, session)

        return run

    def _signed_in_post(
        self,
        handler: Callable[[web.Request, _Session, dict[str, str]], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A POST of a signed-in session with its CSRF token and a same-site Origin."""

        async def run(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                raise _with_headers(web.HTTPForbidden(text="sign in first"))
            form = await _form(request)
            _check_origin(request)
            if not hmac.compare_digest(form.get("csrf", ""), session.csrf):
                raise _with_headers(web.HTTPForbidden(text="stale form; reload the page"))
            return await handler(request, session, form)

        return run

    def _changer(
        self, change: Change, back: str
    ) -> Callable[[web.Request, _Session, dict[str, str]], Awaitable[web.StreamResponse]]:
        """Run ``change``; its notice (or its refusal, never a 500) shows on ``back``."""

        async def run(
            request: web.Request, session: _Session, form: dict[str, str]
        ) -> web.StreamResponse:
            try:
                session.messages.append(("flash", await change(self, request, session, form)))
            except (UserFacingError, StoreError, ValueError) as exc:
                session.messages.append(("error", str(exc)))
            except (OSError, sqlite3.Error) as exc:  # the disk, not the operator
                log.exception("admin change %s failed by=%s", request.path, session.user)
                session.messages.append(("error", f"not done: storage error ({exc})"))
            raise _with_headers(web.HTTPSeeOther(back))

        return run

    # --- sessions -------------------------------------------------------------------

    def _session(self, request: web.Request) -> _Session | None:
        token = request.cookies.get(COOKIE, "")
        session = self.sessions.get(token) if token else None
        if session is None:
            return None
        now = time.monotonic()
        accounts = request.app[CONTEXT].accounts
        if (
            now - session.seen > IDLE_TIMEOUT
            or now - session.created > MAX_AGE
            or session.stamp is None
            or accounts.credential_stamp(session.user) != session.stamp
        ):
            del self.sessions[token]
            return None
        session.seen = now
        return session

    def _new_session(self, user: str, stamp: str | None) -> str:
        now = time.monotonic()
        for token in [t for t, s in self.sessions.items() if now - s.seen > IDLE_TIMEOUT]:
            del self.sessions[token]
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]
        token = secrets.token_urlsafe(32)
        self.sessions[token] = _Session(user, secrets.token_urlsafe(32), now, now, stamp)
        return token

    def _secure_enough(self, request: web.Request) -> bool:
        return request.secure or self.settings.auth.allow_plaintext_without_tls

    # --- rendering ------------------------------------------------------------------

    def render(
        self, template: str, session: _Session | None, status: int = 200, **values: Any
    ) -> web.Response:
        notices, user, csrf = [], "", ""
        if session is not None:
            notices, session.messages = session.messages, []
            user, csrf = session.user, session.csrf
        body = self.templates.get_template(template).render(
            user=user,
            csrf=csrf,
            notices=notices,
            hostname=self.settings.hostname,
            min_password=MIN_PASSWORD,
            **values,
        )
        return web.Response(
            text=body, status=status, content_type="text/html", headers=ADMIN_HEADERS
        )

    async def style(self, request: web.Request) -> web.Response:
        return web.Response(
            text=STYLE,
            content_type="text/css",
            headers={
                "Cache-Control": "max-age=3600",
                "Content-Security-Policy": "default-src 'none'",
            },
        )

    # --- a user's own password (no session: the current password is asked) --------

    async def password_form(self, request: web.Request) -> web.Response:
        return self.render(
            "admin/password.html", None, secure=self._secure_enough(request), error="", done=""
        )

    async def password_change(self, request: web.Request) -> web.Response:
        """Change one's own password, proving the current one through the
        login guard (slowed and locked out like any sign-in)."""
        form = await _form(request)
        _check_origin(request)
        if not self._secure_enough(request):
            return self.render("admin/password.html", None, 403, secure=False, error="", done="")
        address, current = form.get("address", "").strip(), form.get("current", "")
        new, again = form.get("new", ""), form.get("again", "")

        def refused(error: str, status: int = 400) -> web.Response:
            return self.render(
                "admin/password.html", None, status, secure=True, error=error, done=""
            )

        if len(new) < MIN_PASSWORD:
            return refused(f"The new password needs at least {MIN_PASSWORD} characters.")
        if new != again:
            return refused("The two new passwords differ.")
        if new == current:
            return refused("The new password is the current one.")
        accounts = request.app[CONTEXT].accounts
        peer = request.remote or ""
        try:
            user = await self.services.guard.authenticate(accounts, address, current, peer)
        except TooManyFailures as exc:
            return refused(
                f"Too many failed attempts; try again in {int(exc.retry_after) + 1} s.", 401
            )
        if user is None:
            return refused("Wrong address or password.", 401)
        try:
            await asyncio.to_thread(accounts.set_password, user.address, new)
        except UserFacingError as exc:
            return refused(str(exc))
        log.info("password changed by its user user=%s ip=%s", user.address, peer)
        return self.render(
            "admin/password.html",
            None,
            secure=True,
            error="",
            done=f"The password of {user.address} is changed; use the new one in your mail apps.",
        )

    # --- sign-in --------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render(
            "admin/login.html",
            None,
            next=_local_next(request.query.get("next", "")),
            secure=self._secure_enough(request),
            error="",
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        _check_origin(request)
        next_path = _local_next(form.get("next", ""))
        if not self._secure_enough(request):
            return self.render(
                "admin/login.html", None, 403, next=next_path, secure=False, error=""
            )
        address, password = form.get("address", "").strip(), form.get("password", "")
        accounts = request.app[CONTEXT].accounts
        peer = request.remote or ""
        error = "Wrong address or password."
        user = None
        if address and password:
            try:
                user = await self.services.guard.authenticate(accounts, address, password, peer)
            except TooManyFailures as exc:
                error = f"Too many failed sign-ins; try again in {int(exc.retry_after) + 1} s."
        stamp = accounts.credential_stamp(user.address) if user is not None else None
        if user is None or stamp is None or _canonical(user.address) not in self.admins:
            log.info("admin sign-in refused address=%r ip=%s", address[:100], peer)
            return self.render(
                "admin/login.html", None, 401, next=next_path, secure=True, error=error
            )
        log.info("admin sign-in user=%s ip=%s", user.address, peer)
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.HTTPSeeOther(next_path or "/admin/")
        response.set_cookie(
            COOKIE,
            self._new_session(user.address, stamp),
            path="/admin",
            httponly=True,
            secure=request.secure,
            samesite="Strict",
        )
        raise _with_headers(response)

    async def _logout(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> web.StreamResponse:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.HTTPSeeOther("/admin/login")
        response.del_cookie(COOKIE, path="/admin")
        raise _with_headers(response)

    # --- pages ----------------------------------------------------------------------

    async def home(self, request: web.Request, session: _Session) -> web.Response:
        accounts = request.app[CONTEXT].accounts
        messages = await asyncio.to_thread(self.services.queue.spool.messages)
        waiting = sum(1 for m in messages for r in m.recipients if r.state == "queued")
        return self.render(
            "admin/home.html",
            session,
            domains=len(accounts.list_domains()),
            users=len(accounts.list_users()),
            aliases=len(accounts.list_aliases()),
            queued=len(messages),
            waiting=waiting,
        )

    async def domains(self, request: web.Request, session: _Session) -> web.Response:
        accounts = request.app[CONTEXT].accounts
        keys = self.services.keys

        def row(name: str) -> tuple[str, int, list[Any]]:
            try:
                published: list[Any] = keys.published(name)
            except UserFacingError as exc:  # a damaged key store: say so on the page
                session.messages.append(("error", f"DKIM keys of {name}: {exc}"))
                published = []
            return name, len(accounts.list_users(name)), published

        rows = await asyncio.to_thread(lambda: [row(n) for n in accounts.list_domains()])
        return self.render("admin/domains.html", session, domains=rows)

    async def users(self, request: web.Request, session: _Session) -> web.Response:
        accounts = request.app[CONTEXT].accounts
        domain = request.query.get("domain", "")[:MAX_FIELD]
        try:
            found = accounts.list_users(domain or None)
        except UserFacingError as exc:
            session.messages.append(("error", str(exc)))
            found = accounts.list_users()
        return self.render("admin/users.html", session, users=found, domain=domain)

    async def aliases(self, request: web.Request, session: _Session) -> web.Response:
        rows = request.app[CONTEXT].accounts.list_aliases()
        return self.render("admin/aliases.html", session, aliases=rows)

    async def queue(self, request: web.Request, session: _Session) -> web.Response:
        messages = await asyncio.to_thread(self.services.queue.spool.messages)
        return self.render(
            "admin/queue.html",
            session,
            messages=messages[:QUEUE_PAGE],
            more=max(0, len(messages) - QUEUE_PAGE),
            now=time.time(),
            when=_when,
        )

    async def dns(self, request: web.Request, session: _Session) -> web.Response:
        accounts = request.app[CONTEXT].accounts
        domain = request.query.get("domain", "")[:MAX_FIELD]
        lines: list[str] = []
        checked: list[CheckLine] = []
        if domain:
            if domain in accounts.list_domains():
                lines = records(self.settings, domain)
                if request.query.get("check"):
                    keys = await asyncio.to_thread(self.services.keys.published, domain)
                    checked = await check(self.settings, domain, self.services.resolver, keys)
            else:
                session.messages.append(("error", f"{domain} is not one of this server's domains"))
        return self.render(
            "admin/dns.html",
            session,
            domain=domain,
            domains=accounts.list_domains(),
            lines=lines,
            checked=checked,
            summary=summary(checked) if checked else "",
        )

    async def trace(self, request: web.Request, session: _Session) -> web.Response:
        wanted = request.query.get("id", "").strip()[:MAX_FIELD]
        events: list[str] = []
        if wanted and len(wanted.strip("<>")) < MIN_TRACE_ID:
            session.messages.append(("error", "give a whole Message-ID or queue id"))
        elif wanted:
            found = await asyncio.to_thread(
                find, self.services.data_dir / "trace", wanted, days=KEEP_DAYS
            )
            events = [describe(e) for e in found]
            if not events:
                session.messages.append(("error", f"no trace of {wanted} in {KEEP_DAYS} days"))
        return self.render("admin/trace.html", session, wanted=wanted, events=events)

    # --- changes --------------------------------------------------------------------

    async def domain_add(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        accounts = request.app[CONTEXT].accounts
        # An RSA key is made and written with fsync: off the event loop.
        added, keys = await asyncio.to_thread(
            manage.add_domain, accounts, self.services.keys, form.get("domain", "")
        )
        self._audit(session, "domain add", added)
        selectors = ", ".join(k.selector for k in keys)
        return f"Domain {added} added (DKIM selectors {selectors}); publish its DNS records."

    async def domain_delete(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        accounts = request.app[CONTEXT].accounts
        removed = await asyncio.to_thread(
            manage.del_domain, accounts, self.services.keys, form.get("domain", "")
        )
        self._audit(session, "domain del", removed)
        return f"Domain {removed} deleted."

    async def dkim_rotate(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        domain = self._local_domain(request, form)
        keys = await asyncio.to_thread(self.services.keys.rotate, domain)
        self._audit(session, "dkim rotate", domain)
        selectors = ", ".join(k.selector for k in keys)
        return (
            f"New DKIM keys for {domain}: {selectors}. Publish their records (DNS records page); "
            "the old keys stay published until you remove them."
        )

    async def dkim_remove(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        domain = self._local_domain(request, form)
        selector = form.get("selector", "")
        await asyncio.to_thread(self.services.keys.remove, domain, selector)
        self._audit(session, "dkim remove", f"{domain} {selector}")
        return (
            f"DKIM key {selector} of {domain} removed; delete {selector}._domainkey.{domain} TXT."
        )

    def _local_domain(self, request: web.Request, form: dict[str, str]) -> str:
        domain = parse_domain(form.get("domain", ""))
        if not request.app[CONTEXT].accounts.is_local_domain(domain):
            raise ValueError(f"{domain} is not one of this server's domains")
        return domain

    async def user_add(self, request: web.Request, session: _Session, form: dict[str, str]) -> str:
        accounts = request.app[CONTEXT].accounts
        password = form.get("password", "") or generate_password()
        created = await manage.add_user(
            accounts, self.services.store, form.get("address", ""), password
        )
        self._audit(session, "user add", created.address)
        if form.get("password"):
            return f"User {created.address} added."
        return f"User {created.address} added; password (shown once): {password}"

    async def user_delete(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        accounts = request.app[CONTEXT].accounts
        address = _not_yourself(session, form, "delete the account you are signed in with")
        removed = await manage.del_user(accounts, self.services.store, address)
        self._audit(session, "user del", removed.address)
        return f"User {removed.address} deleted; mail kept in {removed.maildir}."

    async def user_password(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        accounts = request.app[CONTEXT].accounts
        # The new password would end this session before it is shown.
        address = _not_yourself(session, form, "set your own password here (use /account/password)")
        password = generate_password()
        await asyncio.to_thread(accounts.set_password, address, password)
        found = accounts.get_user(address)
        address = found.address if found is not None else address
        self._audit(session, "user passwd", address)
        return f"New password for {address} (shown once): {password}"

    async def alias_add(self, request: web.Request, session: _Session, form: dict[str, str]) -> str:
        accounts = request.app[CONTEXT].accounts
        added = accounts.add_alias(form.get("alias", ""), form.get("target", ""))
        self._audit(session, "alias add", f"{added.alias} -> {added.target}")
        remote = " (forwarded to another domain)" if added.remote else ""
        return f"Alias {added.alias} -> {added.target} added{remote}."

    async def alias_delete(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        accounts = request.app[CONTEXT].accounts
        alias, target = form.get("alias", ""), form.get("target", "") or None
        removed = accounts.del_alias(alias, target)
        self._audit(session, "alias del", f"{alias} -> {target or '*'}")
        return f"{removed} alias row{'s' if removed != 1 else ''} deleted."

    async def queue_flush(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        count = await asyncio.to_thread(self.services.queue.spool.retry, None)
        self.services.queue.wake()
        self._audit(session, "queue flush", str(count))
        return f"{count} recipients due now."

    async def queue_retry(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        qid = form.get("qid", "")
        spool = self.services.queue.spool
        if not await asyncio.to_thread(spool.messages, qid):
            raise ValueError(f"no queued message {qid}")
        count = await asyncio.to_thread(spool.retry, qid)
        self.services.queue.wake()
        self._audit(session, "queue retry", qid)
        return f"{qid}: {count} recipients due now."

    async def queue_delete(
        self, request: web.Request, session: _Session, form: dict[str, str]
    ) -> str:
        qid = form.get("qid", "")
        if not await asyncio.to_thread(self.services.queue.spool.delete, qid):
            raise ValueError(f"no queued message {qid}")
        self.services.queue.trace.record("dropped", qid, reason=f"web admin {session.user}")
        self._audit(session, "queue delete", qid)
        return f"{qid}: deleted."

    def _audit(self, session: _Session, action: str, what: str) -> None:
        log.info("admin %s %s by=%s", action, what, session.user)


ADMIN = web.AppKey("admin", AdminSite)


def _not_yourself(session: _Session, form: dict[str, str], action: str) -> str:
    """The form's ``address``, unless it is the signed-in admin's own."""
    address = form.get("address", "")
    if _canonical(address) == _canonical(session.user):
        raise ValueError(f"you cannot {action}")
    return address


def _canonical(address: str) -> str:
    try:
        return parse_address(address).key
    except AddressError:
        return address.lower()


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _local_next(target: str) -> str:
    """A redirect target after sign-in: only one of this admin's pages, with
    its query (no open redirect, no path tricks)."""
    parts = urllib.parse.urlsplit(target[:MAX_FIELD])
    if parts.scheme or parts.netloc or parts.path not in PAGES:
        return "/admin/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _form(request: web.Request) -> dict[str, str]:
    """The urlencoded form of a POST, every field bounded; 400 otherwise."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise _with_headers(web.HTTPBadRequest(text="expected a form"))
    if (request.content_length or 0) > MAX_FORM:
        too_large = web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length or 0)
        raise _with_headers(too_large)
    try:
        # Bounded by aiohttp's client_max_size (1 MiB) when chunked, then here.
        body = await request.read()
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise _with_headers(web.HTTPBadRequest(text="malformed form")) from None
    if len(body) > MAX_FORM or any(len(v) > MAX_FIELD for _, v in pairs):
        raise _with_headers(web.HTTPBadRequest(text="form field too long"))
    return {k: v for k, v in pairs}


def _check_origin(request: web.Request) -> None:
    """A browser's POST from another site is refused (with the CSRF token, a
    second line of defence; the sign-in form has no token yet)."""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or an old one: the CSRF token decides
        return
    if origin != f"{request.scheme}://{request.host}":  # "null" included
        raise _with_headers(web.HTTPForbidden(text="cross-site request refused"))


def _with_headers(exc: web.HTTPException) -> web.HTTPException:
    for name, value in ADMIN_HEADERS.items():
        exc.headers.setdefault(name, value)
    return exc


def _redirect_to(path: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise _with_headers(web.HTTPMovedPermanently(path))

    return handler
