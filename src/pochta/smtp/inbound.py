"""Inbound SMTP: the MX that accepts mail for our own domains (port 25).

The transaction, RFC 5321 §3.3:

* MAIL: the reverse-path must parse (null ``<>`` allowed, bounces use it,
  RFC 5321 §4.5.5); SIZE above the limit is refused at once with 552 5.3.4
  (RFC 1870 §6) by aiosmtpd, enhanced code added by ``PochtaSMTP``.
* RCPT: accepted only for a local user or alias. Unknown user at a local
  domain → 550 5.1.1; any other domain → 554 5.7.1: we are never an open
  relay. More than ``[limits].recipients`` → 452 4.5.3 (RFC 5321
  §4.5.3.1.10; the client sends the rest in another transaction).
* DATA: refused whole if it has a bare CR or LF (smuggling defence) or is
  over the size limit; otherwise Return-Path and Received are prepended and
  the message is handed to the store, which answers only once the message
  is fsynced and indexed. Only then do we say 250. If the store fails we say
  451 4.3.0 and the client keeps the message: mail is never lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pochta.accounts import AddressError, parse_address
from pochta.smtp import codes
from pochta.smtp.handler import BaseHandler
from pochta.smtp.policy import new_queue_id, return_path_header
from pochta.smtp.protocol import PochtaEnvelope, PochtaSession, PochtaSMTP
from pochta.store.deliver import deliver_to, deliver_to_users
from pochta.store.interface import Recipient

if TYPE_CHECKING:
    from pochta.accounts import Accounts
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
    ) -> None:
        super().__init__(
            hostname=hostname, max_recipients=max_recipients, max_message_size=max_message_size
        )
        self.accounts = accounts
        self.store = store
        #: Sender verification and spam checks; None turns them off.
        self.checks = checks

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
        try:
            parse_address(address)
        except AddressError:
            return str(codes.BAD_ADDRESS)
        resolution = self.accounts.resolve(address)
        if not resolution.local_domain:
            return str(codes.RELAY_DENIED)
        if not resolution.users:
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
        for user in resolution.users:
            envelope.users[user] = None
        return str(codes.RECIPIENT_OK)

    async def handle_DATA(
        self, server: PochtaSMTP, session: PochtaSession, envelope: PochtaEnvelope
    ) -> str:
        """RFC 5321 §4.1.1.4 DATA: check, add trace headers, store durably, then 250."""
        data = envelope.original_content
        assert data is not None  # aiosmtpd sets it before calling this hook
        refusal = self.check_data(data)
        if refusal is not None:
            return str(refusal)
        queue_id = new_queue_id()
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        rcpts: list[str] = envelope.rcpt_tos
        return_path = return_path_header(mail_from)
        received = self.received(server, session, rcpts, queue_id)
        if self.checks is not None and not server.lmtp:
            return await self._judged_delivery(
                session, envelope, queue_id, return_path, received, data
            )
        message = return_path + received + data
        with self.delivering():
            try:
                await deliver_to_users(self.store, message, envelope.users)
            except Exception:
                log.exception("queue_id=%s store failed; told the client to retry", queue_id)
                return str(codes.LOCAL_ERROR)
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
    ) -> str:
        """DATA on the MX with sender checks: judge, then store each copy where it goes."""
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
                return str(codes.LOCAL_ERROR)
            log.info("queue_id=%s checks %s", queue_id, judgement.summary)
            if judgement.refusal is not None:
                return str(judgement.refusal)
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
                    await deliver_to(self.store, message, recipients)
            except Exception:
                log.exception("queue_id=%s store failed; told the client to retry", queue_id)
                return str(codes.LOCAL_ERROR)
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
