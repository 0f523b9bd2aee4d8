"""Delivery to other domains: MX lookup, then SMTP to each host in turn.

RFC 5321 §5.1: the MX records of the domain, lowest preference first, hosts
of equal preference in random order; no MX records at all → the domain's own
A/AAAA ("implicit MX"); a null MX (RFC 7505 §3, ``MX 0 .``) → the domain
accepts no mail: fail at once with 556 5.1.10 (RFC 7505 §4.1). Each host's
addresses are tried in turn until one answers; a host that cannot be
reached, or greets with a 4yz/5yz, passes the turn to the next (§5.1: "try
the other MX hosts"). Once a host has taken the transaction its replies
decide: per recipient for RCPT, for all accepted recipients for MAIL and
DATA.

On the connection: EHLO with our hostname; STARTTLS whenever offered
(opportunistic, RFC 7435: certificates are not verified, unless the
domain's MTA-STS policy in mode enforce asks for TLS with a certificate
valid for the MX host and names the MX hosts allowed: ``queue.mtasts``;
or DNSSEC-validated TLSA records of the MX host, DANE: ``queue.dane``);
SIZE respected (a message above the server's limit is
refused before sending, 552 5.3.4); a message that needs SMTPUTF8 (non-ASCII
addresses or header) is bounced when the server lacks it (RFC 6531 §3.2,
553 5.6.7); BODY=8BITMIME is declared for 8-bit data when offered.

DNS timeouts and SERVFAIL are temporary (4.4.3): the queue retries.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Sequence

from pochta.dns.records import DNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver, host_addresses
from pochta.observe.trace import NO_TRACE, Trace
from pochta.queue.dane import DaneError, DanePolicy, dane_policy
from pochta.queue.mtasts import StsPolicies, mx_matches
from pochta.queue.outcome import Outcome, permanent, temporary
from pochta.queue.smtpclient import SMTPClient, SMTPClientError, SMTPReply, TLSRequired
from pochta.web.mtasts import Policy

log = logging.getLogger("pochta.queue.remote")

#: How long a connection waits for the next message to the same domain.
IDLE_SECONDS = 5.0
#: Transactions per connection before it is closed anyway.
MAX_USES = 100
#: Idle connections kept per destination domain.
MAX_IDLE_PER_DOMAIN = 20


async def _quit(client: SMTPClient) -> None:
    await client.quit()


class MXDeliverer:
    def __init__(
        self,
        resolver: Resolver,
        *,
        hostname: str,
        port: int = 25,
        timeout: float = 60.0,
        rng: random.Random | None = None,
        trace: Trace = NO_TRACE,
        sts: StsPolicies | None = None,
        verify_context: ssl.SSLContext | None = None,
    ) -> None:
        self.resolver = resolver
        #: MTA-STS policies of recipient domains (None: not applied).
        self.sts = sts
        #: Verifies MX certificates where a policy asks (system CAs by default).
        self.verify_context = (
            verify_context if verify_context is not None else ssl.create_default_context()
        )
        #: Where lookups and connections are recorded (``pochta trace``).
        self.trace = trace
        self.hostname = hostname
        self.port = port
        self.timeout = timeout
        self.rng = rng or random.Random()
        #: domain -> idle connections (client, host, idle since, transactions
        #: done, secured: opened with TLS required by MTA-STS or DANE)
        self._idle: dict[str, list[tuple[SMTPClient, str, float, int, bool]]] = {}
        self._uses: dict[int, int] = {}
        self._closing: set[asyncio.Future[None]] = set()
        # One client context for every connection: building one per connection
        # would load the system CA bundle each time, which
        # costs more CPU than the whole SMTP transaction. Opportunistic TLS
        # (RFC 7435) does not verify; MTA-STS/DANE will add verification.
        self.tls_context = ssl.create_default_context()
        self.tls_context.check_hostname = False
        self.tls_context.verify_mode = ssl.CERT_NONE

    async def mx_hosts(self, domain: str) -> list[str] | Outcome:
        """The hosts to try, in order, or the outcome that ends the attempt."""
        try:
            answer = await self.resolver.mx(domain)
        except TemporaryDNSError as exc:
            return temporary(f"MX lookup for {domain} failed: {exc}", "4.4.3")
        except DNSError as exc:
            return permanent(f"MX lookup for {domain} failed: {exc}", "5.4.4")
        records = list(answer)
        if any(mx.is_null for mx in records):
            return Outcome(556, "5.1.10", f"Domain {domain} does not accept mail (null MX)")
        if not records:
            if answer.nxdomain:
                return permanent(f"Domain {domain} does not exist", "5.1.2")
            return [domain]  # implicit MX, RFC 5321 §5.1
        by_pref: dict[int, list[str]] = {}
        for mx in records:
            by_pref.setdefault(mx.preference, []).append(mx.exchange)
        hosts: list[str] = []
        for pref in sorted(by_pref):
            same = by_pref[pref]
            self.rng.shuffle(same)
            hosts.extend(h for h in same if h not in hosts)
        return hosts

    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes, *, qid: str = ""
    ) -> dict[str, Outcome]:
        # The policy first: a connection opened before it applied must not
        # carry mail it forbids.
        policy = await self.sts.lookup(domain) if self.sts is not None else None
        reused = await self._reuse(domain, mail_from, rcpts, data, qid, policy)
        if reused is not None:
            return reused
        hosts = await self.mx_hosts(domain)
        if isinstance(hosts, Outcome):
            self.trace.record("mx", qid, domain=domain, error=hosts.reply())
            return dict.fromkeys(rcpts, hosts)
        sts = policy.mode if policy is not None else None
        self.trace.record("mx", qid, domain=domain, hosts=hosts, **({"sts": sts} if sts else {}))
        last = temporary(f"No mail server for {domain} could be reached", "4.4.1")
        tried = False  # a host's own failure says more than a host skipped
        for host in hosts:
            if policy is not None and not mx_matches(host, policy.mx):
                refused = temporary(
                    f"MX host {host} is not allowed by the MTA-STS policy of {domain}", "4.7.5"
                )
                if policy.mode == "enforce":
                    last = last if tried else refused
                    self.trace.record("attempt", qid, host=host, reply=refused.reply())
                    continue
                log.warning("queue_id=%s mta-sts testing: %s", qid, refused.text)
            try:
                addresses = await host_addresses(self.resolver, host)
            except TemporaryDNSError as exc:
                last = temporary(f"Address lookup for {host} failed: {exc}", "4.4.3")
                self.trace.record("attempt", qid, host=host, reply=last.reply())
                continue
            except DNSError as exc:
                last = temporary(f"Address lookup for {host} failed: {exc}", "4.4.4")
                self.trace.record("attempt", qid, host=host, reply=last.reply())
                continue
            try:
                dane = await dane_policy(self.resolver, host, addresses.authentic)
            except DaneError as exc:
                tried = True
                last = temporary(str(exc), "4.4.3", host)
                self.trace.record("attempt", qid, host=host, reply=last.reply())
                continue
            for address in addresses:
                tried = True
                result = await self._attempt(
                    domain, host, str(address), mail_from, rcpts, data, qid, policy, dane
                )
                if isinstance(result, Outcome):
                    last = result
                    self.trace.record(
                        "attempt", qid, host=host, address=str(address), reply=last.reply()
                    )
                    continue
                return result
        return dict.fromkeys(rcpts, last)

    # -- connection reuse ------------------------------------------------------
    # A connection that finished a transaction cleanly waits a few seconds for
    # the next message to the same domain (as Postfix's connection cache
    # does): the TCP and TLS handshakes and EHLO are paid once per burst, not
    # once per message.

    async def _reuse(
        self,
        domain: str,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        qid: str,
        policy: Policy | None,
    ) -> dict[str, Outcome] | None:
        while True:
            idle = self._take_idle(domain, policy)
            if idle is None:
                return None
            client, host, secured = idle
            try:
                result = await self._transaction(client, host, mail_from, rcpts, data)
            except SMTPClientError:
                client.close()  # timed out by the far side meanwhile: open a new one
                continue
            self.trace.record("connection", qid, host=host, tls=client.tls, reused=True)
            self._keep(domain, client, host, secured)
            return result

    def _take_idle(self, domain: str, policy: Policy | None) -> tuple[SMTPClient, str, bool] | None:
        """An idle connection to ``domain`` that ``policy`` (enforce: only
        its MX hosts, only secured connections) allows."""
        pool = self._idle.get(domain)
        now = time.monotonic()
        enforce = policy is not None and policy.mode == "enforce"
        patterns = policy.mx if policy is not None else ()
        while pool:
            client, host, since, uses, secured = pool.pop()
            allowed = not enforce or (secured and mx_matches(host, patterns))
            if allowed and now - since < IDLE_SECONDS and uses < MAX_USES and client.is_connected:
                self._uses[id(client)] = uses
                return client, host, secured
            self._quit_later(client)
        return None

    def _keep(self, domain: str, client: SMTPClient, host: str, secured: bool) -> None:
        uses = self._uses.pop(id(client), 0) + 1
        pool = self._idle.setdefault(domain, [])
        if not client.is_connected or uses >= MAX_USES or len(pool) >= MAX_IDLE_PER_DOMAIN:
            self._quit_later(client)
            return
        pool.append((client, host, time.monotonic(), uses, secured))

    def _quit_later(self, client: SMTPClient) -> None:
        task = asyncio.ensure_future(_quit(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Say QUIT on every idle connection (server stop)."""
        for pool in self._idle.values():
            for client, *_ in pool:
                self._quit_later(client)
        self._idle.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _attempt(
        self,
        domain: str,
        host: str,
        address: str,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        qid: str = "",
        policy: Policy | None = None,
        dane: DanePolicy | None = None,
    ) -> dict[str, Outcome] | Outcome:
        """One SMTP transaction; an Outcome means "try the next address"."""
        # DANE with usable records authenticates by them itself (no PKIX,
        # RFC 7672 §3.1.1) and comes first (RFC 8461 §2); otherwise an
        # MTA-STS policy in mode enforce asks for PKIX, valid for the MX
        # host name (RFC 8461 §4.2). Either requires TLS, as do TLSA
        # records that are all unusable (RFC 7672 §2.2).
        dane_auth = dane is not None and bool(dane.records)
        pkix = policy is not None and policy.mode == "enforce" and not dane_auth
        secured = pkix or dane is not None
        why = (
            f"the DANE TLSA records of {host}" if dane_auth or not pkix else
            f"the MTA-STS policy of {domain}"
        )  # fmt: skip
        try:
            client, greeting = await SMTPClient.connect(
                address,
                self.port,
                local_hostname=self.hostname,
                tls_context=self.verify_context if pkix else self.tls_context,
                timeout=self.timeout,
                require_tls=secured,
                server_hostname=host if secured else None,
            )
        except TLSRequired as exc:
            return temporary(f"{host} [{address}] fails {why}: {exc}", "4.7.5", host)
        except SMTPClientError as exc:
            return temporary(f"Cannot connect to {host} [{address}]: {exc}", "4.4.1", host)
        if greeting.code // 100 != 2:
            client.close()
            return _outcome(greeting, host)
        if dane is not None and dane.records:
            certificate = client.peer_certificate()
            if certificate is None or not dane.matches(certificate):
                client.close()
                return temporary(
                    f"{host} [{address}]: its certificate matches none of its DANE TLSA records",
                    "4.7.5",
                    host,
                )
        try:
            result = await self._transaction(client, host, mail_from, rcpts, data)
        except SMTPClientError as exc:
            # Lost before the final reply: nothing was accepted, try again later.
            client.close()
            outcome = temporary(f"Connection to {host} lost: {exc}", "4.4.2", host)
            return dict.fromkeys(rcpts, outcome)
        self.trace.record(
            "connection", qid, host=host, address=address, tls=client.tls, reused=False
        )
        self._keep(domain, client, host, secured)
        return result

    async def _transaction(
        self,
        client: SMTPClient,
        host: str,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
    ) -> dict[str, Outcome]:
        def everyone(outcome: Outcome) -> dict[str, Outcome]:
            return dict.fromkeys(rcpts, outcome)

        limit = client.extensions.get("size", "")
        if limit.isdigit() and int(limit) and len(data) > int(limit):
            return everyone(
                Outcome(552, "5.3.4", f"Message too big for {host} (limit {limit} bytes)", host)
            )
        options: list[str] = []
        if _needs_smtputf8(mail_from, rcpts, data):
            if not client.supports("smtputf8"):
                return everyone(Outcome(553, "5.6.7", f"{host} does not support SMTPUTF8", host))
            options.append("SMTPUTF8")
        if client.supports("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        if client.supports("size"):
            options.append(f"SIZE={len(data)}")
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        mail, replies, final = await client.transaction(mail_from, rcpts, data, options, encoding)
        if mail.code // 100 != 2:
            return everyone(_outcome(mail, host))
        outcomes = {rcpt: _outcome(reply, host) for rcpt, reply in zip(rcpts, replies, strict=True)}
        if final is not None:
            for rcpt, reply in zip(rcpts, replies, strict=True):
                if reply.code // 100 == 2:
                    outcomes[rcpt] = _outcome(final, host)
        return outcomes


def _needs_smtputf8(mail_from: str, rcpts: Sequence[str], data: bytes) -> bool:
    if not mail_from.isascii() or not all(r.isascii() for r in rcpts):
        return True
    end = data.find(b"\r\n\r\n")
    return not data[: end if end >= 0 else len(data)].isascii()


def _enhanced(message: str, code: int) -> str:
    head = message.split(" ", 1)[0]
    parts = head.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and head[0] == str(code)[0]:
        return head
    return f"{str(code)[0]}.0.0"


def _text(message: str) -> str:
    head, _, rest = message.partition(" ")
    parts = head.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return rest.replace("\n", " ").strip()
    return message.replace("\n", " ").strip()


def _outcome(reply: SMTPReply, host: str) -> Outcome:
    message = reply.text.replace("\n", " ")
    return Outcome(reply.code, _enhanced(message, reply.code), _text(message), host)
