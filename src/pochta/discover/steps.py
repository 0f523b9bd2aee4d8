"""The client-side discovery algorithm: the order real mail clients try things in.

Design note
-----------
Given ``user@domain``, :func:`discover` runs these steps in order and stops
at the first that yields at least one incoming and one outgoing server
(DESIGN.md step 1; issue 5):

1. **Thunderbird autoconfig**: ``GET https://autoconfig.<domain>/mail/
   config-v1.1.xml?emailaddress=...``, then ``https://<domain>/.well-known/
   autoconfig/mail/config-v1.1.xml?...``, then both over plain http. Redirects
   are followed (at most 3) and reported.
2. **Outlook autodiscover** (POX, [MS-OXDSCLI] §3.1.5): ``POST
   https://<domain>/autodiscover/autodiscover.xml``, then
   ``https://autodiscover.<domain>/...``, then the targets of the
   ``_autodiscover._tcp.<domain>`` SRV records (RFC 2782 order). HTTP
   redirects of a POST are reported, not followed (Outlook asks the user
   first); ``redirectAddr``/``redirectUrl`` answers are followed once, to
   HTTPS URLs only.
3. **SRV records** (RFC 6186 §3, RFC 8314 §5.1): ``_imaps._tcp``,
   ``_imap._tcp``, ``_pop3s._tcp``, ``_pop3._tcp``, ``_submissions._tcp``,
   ``_submission._tcp``. A target of ``.`` means "not offered" (RFC 6186 §4).
   A target outside the domain found without DNSSEC is reported with a
   warning (RFC 6186 §6: such a redirection may be forged).
4. **The MX's domain**: a hosted domain is usually configured like its
   provider. The most preferred MX host, minus its first label (and its last
   two labels, when that differs), is tried through steps 1-3. Without a
   public-suffix list this is a heuristic; it never tries a one-label name.
5. **Guessing**: ``imap.``, ``mail.`` (IMAP), ``pop3.``, ``pop.``, ``mail.``
   (POP3), ``smtp.``, ``mail.`` (SMTP) on 993/143, 995/110 and 465/587,
   probed concurrently for a real greeting and capabilities, STARTTLS
   included (:mod:`pochta.discover.probe`). Only TLS-protected servers are
   proposed; a cleartext-only one is reported.
6. **Nothing**: the report says so and what to enter by hand.

Each network attempt has ``timeout`` seconds; each step has
``step_timeout`` seconds in all (then it is reported as timed out and the
next step runs). Every attempt, successful or not, is recorded in the
:class:`~pochta.discover.model.Report`. With a password, the preferred
incoming server (IMAP, else POP3) and outgoing server found are logged in to
(:func:`~pochta.discover.probe.check_login`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import aiohttp

from pochta.accounts import Address, AddressError, parse_address
from pochta.discover.documents import DocumentError, parse_config_v11, parse_pox_response
from pochta.discover.model import (
    SECURITY_TEXT,
    Attempt,
    Found,
    Outcome,
    Protocol,
    Report,
    Security,
    ServerSetting,
)
from pochta.discover.net import NetError, Network, describe_http_error
from pochta.discover.probe import ProtocolError, check_login, probe
from pochta.dns import SRV, DNSError, order_srv

__all__ = ["DEFAULT_STEP_TIMEOUT", "DEFAULT_TIMEOUT", "discover"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_STEP_TIMEOUT = 60.0
#: HTTP redirects followed for autoconfig GETs.
MAX_REDIRECTS = 3
#: At most this many autodiscover answers of the redirect kind are followed.
MAX_POX_REDIRECTS = 1
POX_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
POX_RESPONSE_SCHEMA = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)
#: Concurrent port probes in step 5.
PROBE_CONCURRENCY = 8
#: Largest document read from a server.
MAX_DOCUMENT = 256 * 1024

#: RFC 6186 §3 and RFC 8314 §5.1 service labels: (label, protocol, security).
SRV_SERVICES: tuple[tuple[str, Protocol, Security], ...] = (
    ("_imaps._tcp", "imap", "ssl"),
    ("_imap._tcp", "imap", "starttls"),
    ("_pop3s._tcp", "pop3", "ssl"),
    ("_pop3._tcp", "pop3", "starttls"),
    ("_submissions._tcp", "smtp", "ssl"),
    ("_submission._tcp", "smtp", "starttls"),
)

#: Step 5: (host prefix, protocol, port), in the order results are preferred.
GUESSES: tuple[tuple[str, Protocol, int], ...] = (
    ("imap.", "imap", 993),
    ("mail.", "imap", 993),
    ("imap.", "imap", 143),
    ("mail.", "imap", 143),
    ("pop3.", "pop3", 995),
    ("pop.", "pop3", 995),
    ("mail.", "pop3", 995),
    ("pop3.", "pop3", 110),
    ("pop.", "pop3", 110),
    ("mail.", "pop3", 110),
    ("smtp.", "smtp", 465),
    ("mail.", "smtp", 465),
    ("smtp.", "smtp", 587),
    ("mail.", "smtp", 587),
)


def _outcome(exc: BaseException) -> Outcome:
    """A name that does not resolve is "not-found"; a timeout is "timeout"; else "error"."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "not-found"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "error"


class _Run:
    """State of one discovery: the address, the network, the report."""

    def __init__(self, address: Address, net: Network, session: aiohttp.ClientSession) -> None:
        self.address = address
        self.net = net
        self.http = session
        self.report = Report(str(address))
        self.step = 0
        self.username = str(address)

    def note(self, method: str, target: str, outcome: Outcome, detail: str = "") -> None:
        self.report.add(Attempt(self.step, method, target, outcome, detail))

    # ------------------------------------------------------------ step 1

    def autoconfig_urls(self, domain: str) -> list[str]:
        query = "?emailaddress=" + quote(str(self.address), safe="@")
        paths = [
            f"autoconfig.{domain}/mail/config-v1.1.xml",
            f"{domain}/.well-known/autoconfig/mail/config-v1.1.xml",
        ]
        return [f"{scheme}://{path}{query}" for scheme in ("https", "http") for path in paths]

    async def autoconfig(self, domain: str) -> Found | None:
        for url in self.autoconfig_urls(domain):
            found = await self._autoconfig_url(url)
            if found is not None:
                return found
        return None

    async def _autoconfig_url(self, url: str) -> Found | None:
        try:
            async with self.http.get(url, max_redirects=MAX_REDIRECTS) as response:
                redirected = bool(response.history)
                final_url = str(response.url)
                body = await response.content.read(MAX_DOCUMENT)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.note("autoconfig", url, _outcome(exc), describe_http_error(exc, self.net.timeout))
            return None
        via = f" (redirected to {final_url})" if redirected else ""
        if status != 200:
            self.note("autoconfig", url, "not-found", f"HTTP {status}{via}")
            return None
        try:
            incoming, outgoing, notes = parse_config_v11(body, self.address)
        except DocumentError as exc:
            self.note("autoconfig", url, "error", f"not a config-v1.1 document: {exc}{via}")
            return None
        found = Found(self.step, "autoconfig", url, tuple(incoming), tuple(outgoing), tuple(notes))
        if not found.complete:
            self.note(
                "autoconfig", url, "not-found", "document lacks an incoming or outgoing server"
            )
            return None
        self.note(
            "autoconfig", url, "found", f"{len(incoming)} incoming, {len(outgoing)} outgoing{via}"
        )
        return found

    # ------------------------------------------------------------ step 2

    async def autodiscover(self, domain: str) -> Found | None:
        for url in (
            f"https://{domain}/autodiscover/autodiscover.xml",
            f"https://autodiscover.{domain}/autodiscover/autodiscover.xml",
        ):
            found = await self._pox(url, self.address, MAX_POX_REDIRECTS)
            if found is not None:
                return found
        srv_name = f"_autodiscover._tcp.{domain}"
        records, _ = await self._srv("autodiscover", srv_name)
        for record in records:
            port = "" if record.port == 443 else f":{record.port}"
            url = f"https://{record.target}{port}/autodiscover/autodiscover.xml"
            found = await self._pox(url, self.address, MAX_POX_REDIRECTS)
            if found is not None:
                return found
        return None

    @staticmethod
    def _pox_body(address: Address) -> bytes:
        """The POX request Outlook sends ([MS-OXDSCLI] §2.2.3)."""
        root = ET.Element("Autodiscover", xmlns=POX_REQUEST_NS)
        request = ET.SubElement(root, "Request")
        ET.SubElement(request, "EMailAddress").text = str(address)
        ET.SubElement(request, "AcceptableResponseSchema").text = POX_RESPONSE_SCHEMA
        body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        return body

    async def _pox(self, url: str, address: Address, redirects: int) -> Found | None:
        try:
            async with self.http.post(
                url,
                data=self._pox_body(address),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_DOCUMENT)
                status = response.status
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            outcome = _outcome(exc)
            self.note("autodiscover", url, outcome, describe_http_error(exc, self.net.timeout))
            return None
        if 300 <= status < 400:
            self.note(
                "autodiscover",
                url,
                "not-found",
                f"HTTP {status} redirect to {location} (not followed)",
            )
            return None
        if status != 200:
            detail = f"HTTP {status}"
            try:
                answer = parse_pox_response(body, address)
                if answer.error:
                    detail += f", {answer.error}"
            except DocumentError:
                pass
            self.note("autodiscover", url, "not-found", detail)
            return None
        try:
            answer = parse_pox_response(body, address)
        except DocumentError as exc:
            self.note("autodiscover", url, "error", f"not an autodiscover response: {exc}")
            return None
        if answer.error:
            self.note("autodiscover", url, "not-found", answer.error)
            return None
        if answer.redirect_address or answer.redirect_url:
            return await self._pox_redirect(
                url, answer.redirect_address, answer.redirect_url, redirects
            )
        found = Found(self.step, "autodiscover", url, answer.incoming, answer.outgoing)
        if not found.complete:
            self.note(
                "autodiscover", url, "not-found", "answer lacks an incoming or outgoing server"
            )
            return None
        self.note(
            "autodiscover",
            url,
            "found",
            f"{len(answer.incoming)} incoming, {len(answer.outgoing)} outgoing",
        )
        return found

    async def _pox_redirect(
        self, url: str, new_address: str | None, new_url: str | None, redirects: int
    ) -> Found | None:
        if redirects <= 0:
            self.note("autodiscover", url, "not-found", "redirected again; not followed")
            return None
        if new_url is not None:
            if urlsplit(new_url).scheme != "https":
                self.note(
                    "autodiscover", url, "not-found", f"redirect to non-HTTPS {new_url} refused"
                )
                return None
            self.note("autodiscover", url, "not-found", f"redirectUrl to {new_url}")
            return await self._pox(new_url, self.address, redirects - 1)
        assert new_address is not None
        try:
            address = parse_address(new_address)
        except AddressError:
            self.note("autodiscover", url, "error", "redirectAddr to an invalid address")
            return None
        self.note("autodiscover", url, "not-found", f"redirectAddr to {address}")
        return await self._pox(url, address, redirects - 1)

    # ------------------------------------------------------------ step 3

    async def _srv(self, method: str, name: str) -> tuple[list[SRV], bool]:
        """The usable SRV records of ``name`` in RFC 2782 order, and whether DNSSEC-validated."""
        target = f"SRV {name}"
        try:
            answer = await asyncio.wait_for(self.net.resolver.srv(name), self.net.timeout)
        except TimeoutError:
            self.note(method, target, "timeout", f"no DNS answer within {self.net.timeout:g} s")
            return [], False
        except DNSError as exc:
            self.note(method, target, "error", exc.reason)
            return [], False
        if not answer:
            self.note(method, target, "not-found", "no such record")
            return [], False
        ordered = order_srv(answer.records)
        if not ordered:
            self.note(method, target, "not-found", 'target "." (service not offered)')
            return [], False
        targets = ", ".join(f"{r.target}:{r.port}" for r in ordered)
        self.note(method, target, "found", targets + (" (DNSSEC)" if answer.authentic else ""))
        return ordered, answer.authentic

    async def srv_records(self, domain: str) -> Found | None:
        incoming: list[ServerSetting] = []
        outgoing: list[ServerSetting] = []
        warnings: list[str] = []
        for label, protocol, security in SRV_SERVICES:
            records, authentic = await self._srv("srv", f"{label}.{domain}")
            for record in records:
                setting = ServerSetting(
                    protocol, record.target, record.port, security, self.username
                )
                (outgoing if protocol == "smtp" else incoming).append(setting)
                inside = record.target == domain or record.target.endswith("." + domain)
                if not inside and not authentic:
                    warnings.append(
                        f"{label}.{domain} points outside the domain to {record.target} "
                        "without DNSSEC; confirm it is your provider (RFC 6186 §6)"
                    )
        source = f"SRV records of {domain}"
        found = Found(self.step, "srv", source, tuple(incoming), tuple(outgoing), tuple(warnings))
        return found if found.complete else None

    # ------------------------------------------------------------ step 4

    async def mx_domains(self, domain: str) -> list[str]:
        try:
            answer = await asyncio.wait_for(self.net.resolver.mx(domain), self.net.timeout)
        except TimeoutError:
            self.note(
                "mx", f"MX {domain}", "timeout", f"no DNS answer within {self.net.timeout:g} s"
            )
            return []
        except DNSError as exc:
            self.note("mx", f"MX {domain}", "error", exc.reason)
            return []
        hosts = [mx.exchange for mx in sorted(answer) if not mx.is_null]
        if not hosts:
            self.note("mx", f"MX {domain}", "not-found", "no MX records")
            return []
        candidates = []
        labels = hosts[0].split(".")
        for candidate in (".".join(labels[1:]), ".".join(labels[-2:])):
            if candidate.count(".") >= 1 and candidate != domain and candidate not in candidates:
                candidates.append(candidate)
        detail = (
            f"{hosts[0]} -> trying {', '.join(candidates)}"
            if candidates
            else (f"{hosts[0]} is in the domain itself; nothing new to try")
        )
        self.note("mx", f"MX {domain}", "found" if candidates else "not-found", detail)
        return candidates

    # ------------------------------------------------------------ step 5

    async def guess(self, domain: str) -> Found | None:
        semaphore = asyncio.Semaphore(PROBE_CONCURRENCY)
        hosts = sorted({prefix + domain for prefix, _, _ in GUESSES})

        async def lookup(host: str) -> str | None:
            try:
                await self.net.addresses(host)
            except NetError as exc:
                return str(exc)
            return None

        # Resolve each host once: a name that does not exist rules out all its ports.
        problems = dict(zip(hosts, await asyncio.gather(*map(lookup, hosts)), strict=True))
        for host, problem in problems.items():
            if problem is not None:
                self.note("probe", host, "not-found", problem)

        async def one(prefix: str, protocol: Protocol, port: int) -> ServerSetting | str | None:
            """A usable setting, the reason it is not, or None for a host without address."""
            host = prefix + domain
            if problems[host] is not None:
                return None
            async with semaphore:
                try:
                    return await probe(self.net, protocol, host, port, self.username)
                except (NetError, ProtocolError) as exc:
                    return str(exc)

        # Probed concurrently, reported in the order of GUESSES.
        results = await asyncio.gather(*(one(*guess) for guess in GUESSES))
        settings: list[ServerSetting] = []
        for (prefix, protocol, port), result in zip(GUESSES, results, strict=True):
            target = f"{protocol.upper()} {prefix}{domain}:{port}"
            if result is None:
                continue
            if isinstance(result, str):
                self.note("probe", target, "not-found", result)
                continue
            mechanisms = "AUTH " + (" ".join(result.auth) or "none listed")
            if result.security == "plain":
                detail = f"answers without TLS ({mechanisms}); not proposed"
                self.note("probe", target, "not-found", detail)
                continue
            self.note("probe", target, "found", f"{SECURITY_TEXT[result.security]}, {mechanisms}")
            settings.append(result)
        incoming = tuple(s for s in settings if s.incoming)
        outgoing = tuple(s for s in settings if not s.incoming)
        found = Found(self.step, "probe", f"guessed host names of {domain}", incoming, outgoing)
        return found if found.complete else None


async def _step(
    run: _Run, number: int, limit: float, work: Callable[[], Awaitable[Found | None]]
) -> Found | None:
    """Run one step within ``limit`` seconds; a step over time is reported, not raised."""
    run.step = number
    try:
        async with asyncio.timeout(limit):
            return await work()
    except TimeoutError:
        run.note("step", f"step {number}", "timeout", f"gave up after {limit:g} s")
        return None


async def discover(
    address: Address,
    net: Network,
    *,
    password: str | None = None,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
) -> Report:
    """Run the steps for ``address`` and return the report (never raises for network trouble)."""
    domain = address.domain
    async with net.http_session() as session:
        run = _Run(address, net, session)
        found = await _first_found(run, domain, step_timeout)
    run.report.found = found
    if found is not None and password is not None:
        chosen = [
            next((s for s in found.incoming if s.protocol == "imap"), None)
            or (found.incoming[0] if found.incoming else None),
            found.outgoing[0] if found.outgoing else None,
        ]
        for setting in chosen:
            if setting is not None:
                run.report.logins.append(await check_login(net, setting, password))
    return run.report


async def _first_found(run: _Run, domain: str, step_timeout: float) -> Found | None:
    for number, work in (
        (1, lambda: run.autoconfig(domain)),
        (2, lambda: run.autodiscover(domain)),
        (3, lambda: run.srv_records(domain)),
    ):
        found = await _step(run, number, step_timeout, work)
        if found is not None:
            return found

    async def via_mx() -> Found | None:
        for candidate in await run.mx_domains(domain):
            for attempt in (run.autoconfig, run.autodiscover, run.srv_records):
                found = await attempt(candidate)
                if found is not None:
                    return dataclasses.replace(found, method=f"mx+{found.method}")
        return None

    found = await _step(run, 4, step_timeout, via_mx)
    if found is not None:
        return found
    return await _step(run, 5, step_timeout, lambda: run.guess(domain))
