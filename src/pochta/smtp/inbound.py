"""Inbound SMTP: the MX that accepts mail for our own domains (port 25).

The transaction, RFC 5321 §3.3:

* MAIL: the reverse-path must parse (null ``<>`` allowed, bounces use it,
  RFC 5321 §4.5.5); SIZE above the limit is refused at once with 552 5.3.4
  (RFC 1870 §6) by aiosmtpd, enhanced code added by ``PochtaSMTP``.
* RCPT: accepted only for a local user or alias. Unknown user at a local
  domain → 550 5.1.1; any other domain → 554 5.7.1: we are never an open
  relay. More than ``[limits].recipients`` → 452 4.5.3 (RFC 5321
  §4.5.3.1.10; the client sends the rest in another transaction). An alias
  whose targets include remote addresses is a local address like any other
  (we accept responsibility for it, RFC 5321 §3.4); its remote targets are
  remembered per transaction with the alias's domain, which seals.
* DATA: refused whole if it has a bare CR or LF (smuggling defence) or is
  over the size limit; otherwise Return-Path and Received are prepended and
  the message is handed to the store, which answers only once the message
  is fsynced and indexed. Copies for remote targets go, ARC-sealed, into
  the outbound queue's spool, durable as well (``pochta.smtp.forward``).
  Only then do we say 250. If the store or the spool fails we say 451 4.3.0
  and the client keeps the message: mail is never lost (a retry may
  duplicate the half that did succeed, never lose it).

LMTP (RFC 2033) recipients are local mailboxes: nothing is forwarded there.
An alias with only remote targets is an unknown user over LMTP (550 5.1.1);
a mixed one delivers to its local users only.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING

from pochta.accounts import AddressError, parse_address, parse_domain
from pochta.observe.trace import NO_TRACE, Trace, message_id
from pochta.smtp import codes
from pochta.smtp.forward import ROUTING_LOOP, Forwarder, looping
from pochta.smtp.handler import BaseHandler
from pochta.smtp.policy import new_queue_id, return_path_header
from pochta.smtp.protocol import PochtaEnvelope, PochtaSession, PochtaSMTP
from pochta.smtp.srs import SRS, is_srs
from pochta.store.deliver import deliver_to, deliver_to_users
from pochta.store.interface import Recipient

if TYPE_CHECKING:
    from pochta.accounts import Accounts
    from pochta.mailauth.keys import DKIMKeyStore
    from pochta.queue.runner import QueueRunner
    from pochta.smtp.checks import SenderChecks
    from pochta.store.interface import Store

log = logging.getLogger("pochta.smtp.inbound")


class InboundHandler(BaseHandler):
    """aiosmtpd handler hooks for the MX (and LMTP) listener."""

    def __init__(
        self,
        *,
        hostname: str,
        accounts: Accounts,
        store: Store,
        max_recipients: int,
        max_message_size: int,
        checks: SenderChecks | None = None,
        queue: QueueRunner | None = None,
        dkim: DKIMKeyStore | None = None,
        trace: Trace = NO_TRACE,
        srs: SRS | None = None,
    ) -> None:
        super().__init__(
            hostname=hostname, max_recipients=max_recipients, max_message_size=max_message_size
        )
        self.accounts = accounts
        self.store = store
        #: Where each message's hops and verdicts are recorded (``pochta trace``).
        self.trace = trace
        #: Sender verification and spam checks; None turns them off.
        self.checks = checks
        #: Forwarding to remote alias targets; None (no queue) turns it off,
        #: and an alias with only remote targets is then an unknown user.
        self.forwarder = (
            Forwarder(
                hostname=hostname,
                queue=queue,
                dkim=dkim,
                srs=srs,
                is_local_domain=accounts.is_local_domain,
            )
            if queue is not None
            else None
        )
        #: Bounces to the SRS senders of forwarded mail are sent on (``srs.py``).
        self.srs = srs
        #: Per transaction: remote target -> the alias domain that reached it
        #: first (its key seals). Keyed weakly: RSET or a new MAIL drops the
        #: envelope and its entry with it.
        self._remote: weakref.WeakKeyDictionary[PochtaEnvelope, dict[str, str]] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_MAIL(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """RFC 5321 §4.1.1.2 MAIL: check the reverse-path syntax."""
        if address != "<>":
            try:
                parse_address(address)
            except AddressError:
                return str(codes.BAD_SENDER_ADDRESS)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(codes.SENDER_OK)

    async def handle_RCPT(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """RFC 5321 §4.1.1.3 RCPT: local users and aliases only."""
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(codes.TOO_MANY_RECIPIENTS)
        srs_local, at, srs_domain = address.rpartition("@")
        if self.srs is not None and at and is_srs(srs_local):
            # A bounce (or reply) to the SRS sender of mail we forwarded goes
            # on to the address it stands for, before any catch-all alias;
            # one we did not make (or too old) is an unknown user. Checked
            # before parse_address: SRS local parts may pass 64 octets.
            try:
                domain = parse_domain(srs_domain)
            except AddressError:
                return str(codes.BAD_ADDRESS)
            if not self.accounts.is_local_domain(domain):
                return str(codes.RELAY_DENIED)
            original = self.srs.reverse(address)
            if original is None or self.forwarder is None or server.lmtp:
                return str(codes.UNKNOWN_USER)
            users: tuple[str, ...] = ()
            forwards: tuple[str, ...] = (original,)
            resolution = None
        else:
            try:
                domain = parse_address(address).domain
            except AddressError:
                return str(codes.BAD_ADDRESS)
            resolution = self.accounts.resolve(address)
            if not resolution.local_domain:
                return str(codes.RELAY_DENIED)
            users = tuple(resolution.users)
            forwards = (
                tuple(resolution.remote) if self.forwarder is not None and not server.lmtp else ()
            )
        if not users and not forwards:
            return str(codes.UNKNOWN_USER)
        if self.checks is not None and not server.lmtp:
            mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
            refusal = await self.checks.at_rcpt(
                session.peer_ip, mail_from, address, envelope.greylisted
            )
            if refusal is not None:
                return str(refusal)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        for user in users:
            envelope.users[user] = None
        if forwards:
            remote = self._remote.setdefault(envelope, {})
            for target in forwards:
                remote.setdefault(target, domain)
        elif resolution is not None and resolution.remote:
            log.info(
                "rcpt=<%s> remote targets %s not forwarded over %s",
                address,
                ",".join(resolution.remote),
                "LMTP" if server.lmtp else "a server without a queue",
            )
        return str(codes.RECIPIENT_OK)

    async def handle_DATA(
        self, server: PochtaSMTP, session: PochtaSession, envelope: PochtaEnvelope
    ) -> str:
        """RFC 5321 §4.1.1.4 DATA: check, add trace headers, store durably, then 250."""
        data = envelope.original_content
        assert data is not None  # aiosmtpd sets it before calling this hook
        queue_id = new_queue_id()
        self._trace_received(server, session, envelope, queue_id, data)
        refusal = self.check_data(data)
        if refusal is not None:
            return self._refuse(queue_id, str(refusal))
        targets = self._forward_targets(envelope)
        if targets and looping(data):
            # RFC 5321 §6.3: a message that has been through this many hops
            # is looping (perhaps through a remote target forwarding back).
            log.warning("from=<%s> refused: routing loop (Received fields)", envelope.mail_from)
            return self._refuse(queue_id, str(ROUTING_LOOP))
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        rcpts: list[str] = envelope.rcpt_tos
        return_path = return_path_header(mail_from)
        received = self.received(server, session, rcpts, queue_id)
        if self.checks is not None and not server.lmtp:
            return await self._judged_delivery(
                session, envelope, queue_id, return_path, received, data, targets
            )
        message = return_path + received + data
        with self.delivering():
            try:
                if envelope.users:
                    self.trace.stored(
                        queue_id, await deliver_to_users(self.store, message, envelope.users)
                    )
            except Exception:
                log.exception("queue_id=%s store failed; told the client to retry", queue_id)
                return self._refuse(queue_id, str(codes.LOCAL_ERROR))
            # No sender checks ran: there are no verdicts of ours to seal.
            if not await self._forward(queue_id, mail_from, targets, received + data, False):
                return self._refuse(queue_id, str(codes.LOCAL_ERROR))
        log.info(
            "queue_id=%s from=<%s> to=%s size=%d result=stored",
            queue_id,
            mail_from,
            ",".join(f"<{r}>" for r in rcpts),
            len(message),
        )
        return f"{codes.QUEUED} {queue_id}"

    async def _judged_delivery(
        self,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        queue_id: str,
        return_path: bytes,
        received: bytes,
        data: bytes,
        targets: dict[str, list[str]],
    ) -> str:
        """DATA on the MX with sender checks: judge, then store each copy where it goes.

        Copies for remote targets (``targets``: alias domain -> addresses)
        are forwarded unless the judgement refused the message.
        """
        assert self.checks is not None
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        with self.delivering():
            try:
                judgement = await self.checks.at_data(
                    ip=session.peer_ip,
                    helo=session.host_name or "",
                    mail_from=mail_from,
                    recipients=envelope.rcpt_tos,
                    users=list(envelope.users),
                    message=data,
                )
            except Exception:
                log.exception(
                    "queue_id=%s sender checks failed; told the client to retry", queue_id
                )
                return self._refuse(queue_id, str(codes.LOCAL_ERROR))
            log.info("queue_id=%s checks %s", queue_id, judgement.summary)
            self.trace.record("checks", queue_id, verdicts=judgement.summary)
            if judgement.refusal is not None:
                return self._refuse(queue_id, str(judgement.refusal))
            # Copies with the same headers and mailbox share one store call.
            groups: dict[bytes, list[Recipient]] = {}
            for user, copy in judgement.copies.items():
                groups.setdefault(copy.headers, []).append(Recipient(user, copy.mailbox))
            try:
                for extra, recipients in groups.items():
                    # Return-Path first (RFC 5321 §4.4); Authentication-Results
                    # and Received-SPF above our Received (RFC 8601 §5, RFC
                    # 7208 §9.1).
                    message = return_path + extra + judgement.headers + received
                    message += judgement.message
                    self.trace.stored(queue_id, await deliver_to(self.store, message, recipients))
            except Exception:
                log.exception("queue_id=%s store failed; told the client to retry", queue_id)
                return self._refuse(queue_id, str(codes.LOCAL_ERROR))
            # Our Authentication-Results on top, as RFC 8617 §5.1 needs for
            # the seal; the same trace fields local copies get, without the
            # per-user X-Spam ones and without Return-Path (RFC 5321 §4.4:
            # only the final delivery adds it).
            forwarded = judgement.headers + received + judgement.message
            if not await self._forward(queue_id, mail_from, targets, forwarded, True):
                return self._refuse(queue_id, str(codes.LOCAL_ERROR))
        if envelope.greylisted:
            await self.checks.delivered(session.peer_ip)
        log.info(
            "queue_id=%s from=<%s> to=%s size=%d result=stored mailboxes=%s",
            queue_id,
            mail_from,
            ",".join(f"<{r}>" for r in envelope.rcpt_tos),
            len(return_path) + len(received) + len(judgement.message),
            ",".join(f"{u}:{c.mailbox}" for u, c in judgement.copies.items()),
        )
        return f"{codes.QUEUED} {queue_id}"

    def _forward_targets(self, envelope: PochtaEnvelope) -> dict[str, list[str]]:
        """The transaction's remote targets grouped by alias domain (first come first)."""
        groups: dict[str, list[str]] = {}
        for target, domain in self._remote.pop(envelope, {}).items():
            groups.setdefault(domain, []).append(target)
        return groups

    async def _forward(
        self,
        queue_id: str,
        mail_from: str,
        targets: dict[str, list[str]],
        message: bytes,
        sealable: bool,
    ) -> bool:
        """Spool the copies for remote targets; False (logged) if the spool failed."""
        if not targets or self.forwarder is None:
            return True
        try:
            qids = await self.forwarder.forward(
                queue_id=queue_id,
                mail_from=mail_from,
                targets=targets,
                message=message,
                sealable=sealable,
            )
        except Exception:
            log.exception("queue_id=%s could not be queued for forwarding; retry", queue_id)
            return False
        to = [t for domain_targets in targets.values() for t in domain_targets]
        self.trace.record("forwarded", queue_id, links=qids, to=to)
        return True

    # -- message trace (``pochta trace``) -------------------------------------------

    def _trace_received(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        queue_id: str,
        data: bytes,
    ) -> None:
        self.trace.record(
            "received",
            queue_id,
            mid=message_id(data),
            via="lmtp" if server.lmtp else "smtp",
            client=session.peer_ip,
            helo=session.host_name or "",
            tls=session.tls_info or "none",
            mail_from=envelope.mail_from or "<>",
            to=list(envelope.rcpt_tos),
            size=len(data),
        )

    def _refuse(self, queue_id: str, reply: str) -> str:
        """``reply`` for the client, recorded in the trace first."""
        self.trace.record("refused", queue_id, reply=reply)
        return reply
