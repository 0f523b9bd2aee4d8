"""Message submission (RFC 6409) on 587 with STARTTLS and 465 with implicit TLS (RFC 8314).

The transaction:

* AUTH first (RFC 6409 §4.3, RFC 4954): PLAIN, LOGIN, SCRAM-SHA-256 — only
  over TLS unless ``allow_plaintext_without_tls`` (then AUTH is neither
  advertised nor accepted: 538 5.7.11). MAIL before AUTH gets 530 5.7.0.
  Password checks go through the shared ``LoginGuard`` (argon2 off the loop,
  failures throttled per client address and account, 454 4.7.0 when
  locked out).
* MAIL: the reverse-path must be one of the user's addresses — the address
  itself, a subaddress, or an alias reaching the user (RFC 6409 §6.1);
  otherwise 553 5.7.1. Per-user messages per hour are limited (450 4.7.1).
* RCPT: any well-formed address, local or remote; recipients per message
  and per user per hour are limited.
* DATA: the shared checks (smuggling, size); every address in From: must
  also belong to the user (553 5.7.1); Date and Message-ID are added when
  missing (RFC 6409 §8.2, §8.3); the message is DKIM-signed with the
  active keys of each From: domain (RFC 6376; ``[mailauth].sign``); a
  Received header; then the queue takes the message durably before 250.

Signing happens here, at the first hop, because here the author is known:
submission checked that the user owns every From: address, so the domain
takes responsibility (RFC 6376 §1) only for mail its own users wrote. It
comes after Date and Message-ID are added so that they are signed too
(RFC 6376 §5.4.1 recommends both); the DKIM-Signature fields go right above
them, below our Received field, which is trace information that later hops
may rewrite and so is never signed (RFC 6376 §5.4.1). A domain without keys
is sent unsigned (logged once); so is a message dkimpy cannot parse --
refusing it would lose the user's mail over a header a verifier may well
accept.
"""

from __future__ import annotations

import email.utils
import logging
import re
import secrets
from typing import TYPE_CHECKING

from pochta import sasl
from pochta.accounts import AddressError, parse_address
from pochta.accounts.login import TooManyFailures
from pochta.errors import UserFacingError
from pochta.mailauth.dkim import SigningError, sign_message
from pochta.mime import header_fields
from pochta.observe.trace import NO_TRACE, Trace, message_id
from pochta.smtp import codes
from pochta.smtp.handler import BaseHandler
from pochta.smtp.policy import HourlyLimit, new_queue_id
from pochta.smtp.protocol import PochtaEnvelope, PochtaSession, PochtaSMTP

if TYPE_CHECKING:
    from pochta.accounts import Accounts
    from pochta.accounts.login import LoginGuard
    from pochta.mailauth.keys import DKIMKey, DKIMKeyStore
    from pochta.queue.runner import QueueRunner

log = logging.getLogger("pochta.smtp.submission")

MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")


class SubmissionHandler(BaseHandler):
    def __init__(
        self,
        *,
        hostname: str,
        accounts: Accounts,
        guard: LoginGuard,
        queue: QueueRunner,
        max_recipients: int,
        max_message_size: int,
        messages_per_hour: int,
        recipients_per_hour: int,
        dkim: DKIMKeyStore | None = None,
        trace: Trace = NO_TRACE,
    ) -> None:
        super().__init__(
            hostname=hostname, max_recipients=max_recipients, max_message_size=max_message_size
        )
        self.accounts = accounts
        #: Where each message's hops are recorded (``pochta trace``).
        self.trace = trace
        self.guard = guard
        self.queue = queue
        self.messages = HourlyLimit(messages_per_hour)
        self.recipients = HourlyLimit(recipients_per_hour)
        #: The DKIM key store; None when ``[mailauth].sign`` is off.
        self.dkim = dkim
        #: Domains already logged as having no DKIM keys (logged once each).
        self._unsigned_domains: set[str] = set()

    # -- AUTH (called by PochtaSMTP.smtp_AUTH) -----------------------------
    def sasl_names(self) -> tuple[str, ...]:
        return MECHANISMS

    def sasl_mechanism(self, name: str) -> sasl.Plain | sasl.Login | sasl.ScramSha256 | None:
        if name == "PLAIN":
            return sasl.Plain()
        if name == "LOGIN":
            return sasl.Login()
        if name == "SCRAM-SHA-256":
            return sasl.ScramSha256(self.accounts.scram_credentials)
        return None

    async def authenticated(
        self, server: PochtaSMTP, session: PochtaSession, step: sasl.Step
    ) -> str:
        """Finish AUTH: check a password, or accept a SCRAM-verified user."""
        if isinstance(step, sasl.Verified):
            user = self.accounts.get_user(step.username)
        elif isinstance(step, sasl.CheckPassword):
            if step.authzid and step.authzid.lower() != step.username.lower():
                return str(codes.AUTH_FAILED)  # no proxy authorisation (RFC 4616 §2)
            try:
                user = await self.guard.authenticate(
                    self.accounts, step.username, step.password, session.peer_ip
                )
            except TooManyFailures:
                log.warning("auth throttled client=%s", session.peer_ip)
                return str(codes.AUTH_THROTTLED)
        else:
            return str(codes.AUTH_FAILED)
        if user is None:
            log.info("auth failed client=%s", session.peer_ip)
            return str(codes.AUTH_FAILED)
        session.authenticated = True
        session.user = user.address
        log.info("auth ok user=%s client=%s", user.address, session.peer_ip)
        return str(codes.AUTH_OK)

    # -- the transaction -----------------------------------------------------
    async def handle_MAIL(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """RFC 6409 §6.1: the sender must be the user's own."""
        user = session.user
        if user is None:
            return str(codes.AUTH_REQUIRED)
        if address == "<>" or not self.accounts.sender_allowed(user, address):
            return str(codes.SENDER_NOT_OWNED)
        if not self.messages.take(user):
            return str(codes.RATE_LIMITED)
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
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(codes.TOO_MANY_RECIPIENTS)
        try:
            parsed = parse_address(address)
        except AddressError:
            return str(codes.BAD_ADDRESS)
        assert session.user is not None  # MAIL came first, and needed it
        if not self.recipients.take(session.user):
            return str(codes.RATE_LIMITED)
        envelope.rcpt_tos.append(str(parsed))
        envelope.rcpt_options.extend(rcpt_options)
        return str(codes.RECIPIENT_OK)

    async def handle_DATA(
        self, server: PochtaSMTP, session: PochtaSession, envelope: PochtaEnvelope
    ) -> str:
        data = envelope.original_content
        assert data is not None and session.user is not None and envelope.mail_from
        # Named in our Received field (and a Message-ID we add); the spool
        # names the queued message itself (``qid`` below, in our 250 reply).
        queue_id = new_queue_id()
        refusal = self.check_data(data)
        if refusal is not None:
            return self._refuse(queue_id, session, data, str(refusal))
        fields = header_block_fields(data)
        senders = [addr for _, addr in email.utils.getaddresses(fields.get(b"from", []))]
        if not senders or not any(senders):
            return self._refuse(queue_id, session, data, str(codes.NO_FROM))
        for sender in senders:
            if not self.accounts.sender_allowed(session.user, sender):
                return self._refuse(queue_id, session, data, str(codes.FROM_NOT_OWNED))
        added = b""
        if b"date" not in fields:  # RFC 6409 §8.2
            added += f"Date: {email.utils.formatdate(localtime=False)}\r\n".encode()
        if b"message-id" not in fields:  # RFC 6409 §8.3
            added += f"Message-ID: <{queue_id}.{secrets.token_hex(6)}@{self.hostname}>\r\n".encode()
        rcpts: list[str] = envelope.rcpt_tos
        signed = added + data
        signatures = await self.dkim_signatures(signed, senders, queue_id)
        message = self.received(server, session, rcpts, queue_id) + signatures + signed
        with self.delivering():
            try:
                qid = await self.queue.enqueue(envelope.mail_from, rcpts, message)
            except Exception:
                log.exception("queue_id=%s could not be queued; told the client to retry", queue_id)
                return self._refuse(queue_id, session, message, str(codes.LOCAL_ERROR))
        # Queued under the spool's id (our 250 reply names it); the
        # Received field and a Message-ID we added carry ``queue_id``,
        # linked so that either finds the message.
        self.trace.record(
            "submitted",
            qid,
            mid=message_id(message),
            links=[queue_id],
            user=session.user,
            client=session.peer_ip,
            tls=session.tls_info or "none",
            mail_from=envelope.mail_from,
            to=rcpts,
            size=len(message),
            dkim=[m.decode("ascii", "replace") for m in _SIGNER.findall(signatures)],
        )
        log.info(
            "queue_id=%s user=%s from=<%s> to=%s size=%d result=queued",
            qid,
            session.user,
            envelope.mail_from,
            ",".join(f"<{r}>" for r in rcpts),
            len(message),
        )
        return f"{codes.QUEUED} {qid}"

    def _refuse(self, queue_id: str, session: PochtaSession, data: bytes, reply: str) -> str:
        """``reply`` for the client, recorded in the trace first."""
        self.trace.record("refused", queue_id, mid=message_id(data), user=session.user, reply=reply)
        return reply

    async def dkim_signatures(self, message: bytes, senders: list[str], queue_id: str) -> bytes:
        """DKIM-Signature fields for ``message`` by the keys of its From: domains, or b""."""
        if self.dkim is None:
            return b""
        keys: list[DKIMKey] = []
        seen: set[str] = set()
        for sender in senders:
            try:
                domain = parse_address(sender).domain
            except AddressError:
                continue
            if domain in seen:
                continue
            seen.add(domain)
            try:
                found = self.dkim.active(domain)
            except UserFacingError as exc:
                log.warning("queue_id=%s DKIM keys of %s unreadable: %s", queue_id, domain, exc)
                continue
            if not found and domain not in self._unsigned_domains:
                self._unsigned_domains.add(domain)
                log.info(
                    "domain %s has no DKIM keys; its mail goes out unsigned "
                    "(pochta domain dkim rotate %s makes them)",
                    domain,
                    domain,
                )
            keys.extend(found)
        if not keys:
            return b""
        try:
            return await sign_message(message, keys)
        except SigningError as exc:
            log.warning("queue_id=%s sent unsigned: %s", queue_id, exc)
            return b""


#: The signing domain of each DKIM-Signature field (RFC 6376 §3.5 d= tag).
_SIGNER = re.compile(rb"[;\s]d=([^;\s]+)")


def header_block_fields(data: bytes) -> dict[bytes, list[str]]:
    """Header fields by lower-cased name, values unfolded and decoded leniently."""
    end = data.find(b"\r\n\r\n")
    fields: dict[bytes, list[str]] = {}
    for name, value in header_fields(data, 0, len(data) if end < 0 else end + 2):
        text = value.replace(b"\r\n", b"").decode("utf-8", "replace").strip()
        fields.setdefault(name.strip().lower(), []).append(text)
    return fields
