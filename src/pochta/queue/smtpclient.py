"""A small SMTP client for delivery, with PIPELINING.

Why our own: aiosmtplib (DESIGN.md's choice for delivery) reads exactly one
reply per command written and drops replies that arrive unasked, so it
cannot pipeline (RFC 2920), and an MTA that sends MAIL, RCPT and DATA one
round trip at a time wastes most of each connection waiting. This client
does only what delivery needs: greeting, EHLO (HELO fallback), STARTTLS,
MAIL/RCPT/DATA — in one write when the server offers PIPELINING — RSET
and QUIT.

Replies are parsed per RFC 5321 §4.2 (multi-line ``ddd-``, last ``ddd ``).
Every read has a timeout; a lost connection or a malformed reply raises
``SMTPClientError`` and the caller treats it as a temporary failure.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; be lenient.
MAX_REPLY_LINE = 4096
#: Lines in one multi-line reply before we give up on the server.
MAX_REPLY_LINES = 200


class SMTPClientError(Exception):
    """The connection failed or the server spoke something that is not SMTP."""


class TLSRequired(SMTPClientError):
    """TLS was required (an MTA-STS policy) and the server did not offer
    STARTTLS, or its certificate did not verify."""


@dataclass(frozen=True, slots=True)
class SMTPReply:
    code: int
    text: str  # lines joined with "\n", without the codes


class SMTPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.tls = False

    @classmethod
    async def connect(
        cls,
        address: str,
        port: int,
        *,
        local_hostname: str,
        tls_context: ssl.SSLContext | None,
        timeout: float,  # noqa: ASYNC109 - also the per-read timeout kept by the client
        require_tls: bool = False,
        server_hostname: str | None = None,
    ) -> tuple[SMTPClient, SMTPReply]:
        """Connect, read the greeting, EHLO, and STARTTLS when offered.

        Returns the client and the greeting; a greeting other than 2yz is
        returned without further talk (the caller decides what it means).
        ``require_tls``: no STARTTLS, or a failed handshake (``tls_context``
        then verifies the certificate for ``server_hostname``), raises
        TLSRequired instead of going on in plain text.
        """
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, limit=MAX_REPLY_LINE * 4), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise SMTPClientError(f"cannot connect: {exc}") from exc
        client = cls(reader, writer, timeout)
        try:
            greeting = await client.reply()
            if greeting.code // 100 != 2:
                return client, greeting
            await client.ehlo(local_hostname)
            if tls_context is not None and "starttls" in client.extensions:
                started = await client.command("STARTTLS")
                if started.code == 220:
                    try:
                        await asyncio.wait_for(
                            writer.start_tls(tls_context, server_hostname=server_hostname),
                            timeout,
                        )
                    except (OSError, TimeoutError, ssl.SSLError) as exc:
                        failure = TLSRequired if require_tls else SMTPClientError
                        raise failure(f"TLS handshake failed: {exc}") from exc
                    client.tls = True
                    await client.ehlo(local_hostname)  # RFC 3207 §4.2: forget and ask again
            if require_tls and not client.tls:
                raise TLSRequired("the server does not offer STARTTLS")
        except BaseException:
            client.close()
            raise
        return client, greeting

    def peer_certificate(self) -> bytes | None:
        """The server's TLS certificate (DER), None before STARTTLS."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return None
        der = ssl_object.getpeercert(binary_form=True)
        return bytes(der) if der else None

    async def ehlo(self, hostname: str) -> None:
        reply = await self.command(f"EHLO {hostname}")
        self.extensions = {}
        if reply.code == 250:
            for line in reply.text.split("\n")[1:]:
                keyword, _, value = line.partition(" ")
                self.extensions[keyword.lower()] = value
            return
        reply = await self.command(f"HELO {hostname}")  # RFC 5321 §4.1.4 fallback
        if reply.code != 250:
            raise SMTPClientError(f"HELO refused: {reply.code} {reply.text}")

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    async def reply(self) -> SMTPReply:
        lines: list[str] = []
        code = 0
        for _ in range(MAX_REPLY_LINES):
            try:
                raw = await asyncio.wait_for(self._reader.readline(), self.timeout)
            except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
                raise SMTPClientError(f"reading a reply failed: {exc}") from exc
            if not raw:
                raise SMTPClientError("connection closed by the server")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise SMTPClientError(f"not an SMTP reply: {line[:80]!r}")
            code = int(line[:3])
            lines.append(line[4:])
            if line[3:4] != "-":
                return SMTPReply(code, "\n".join(lines))
        raise SMTPClientError("reply has too many lines")

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise SMTPClientError("connection closed")
        self._writer.write(data)

    async def command(self, line: str, encoding: str = "ascii") -> SMTPReply:
        self.write(line.encode(encoding) + b"\r\n")
        return await self.reply()

    async def transaction(
        self,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        options: Sequence[str],
        encoding: str,
    ) -> tuple[SMTPReply, list[SMTPReply], SMTPReply | None]:
        """MAIL, RCPT for each recipient, DATA and the message.

        Returns the MAIL reply, one reply per RCPT, and the final reply after
        the message (None when no message was sent: MAIL or every RCPT was
        refused, or DATA did not get 354). With PIPELINING (RFC 2920 §3.1)
        the commands up to DATA go out in one write.
        """
        params = "".join(f" {option}" for option in options)
        commands = [f"MAIL FROM:<{mail_from}>{params}", *(f"RCPT TO:<{r}>" for r in rcpts)]
        if self.supports("pipelining"):
            self.write(("\r\n".join([*commands, "DATA"]) + "\r\n").encode(encoding))
            mail = await self.reply()
            replies = [await self.reply() for _ in rcpts]
            go = await self.reply()
        else:
            mail = await self.command(commands[0], encoding)
            if mail.code // 100 != 2:
                return mail, [mail for _ in rcpts], None
            replies = [await self.command(c, encoding) for c in commands[1:]]
            if not any(r.code // 100 == 2 for r in replies):
                await self.command("RSET")
                return mail, replies, None
            go = await self.command("DATA")
        accepted = mail.code // 100 == 2 and any(r.code // 100 == 2 for r in replies)
        if go.code != 354:
            if mail.code // 100 == 2 and go.code != 421:
                # The transaction is still open there (its MAIL was taken,
                # even with every RCPT refused): the next MAIL on this kept
                # connection would be "nested" (RFC 5321 §4.1.4). If the
                # server is gone meanwhile, the replies above still stand.
                try:
                    await self.command("RSET")
                except SMTPClientError:
                    self.close()
            elif go.code == 421:
                self.close()
            return mail, replies, go if accepted else None
        if not accepted:
            # RFC 2920 §3.1: DATA was accepted although nobody is to receive
            # it; end it empty and throw the transaction away.
            self.write(b".\r\n")
            await self.reply()
            await self.command("RSET")
            return mail, replies, None
        body = data if data.endswith(b"\r\n") else data + b"\r\n"
        body = body.replace(b"\r\n.", b"\r\n..")  # RFC 5321 §4.5.2 transparency
        if body.startswith(b"."):
            body = b"." + body
        self.write(body + b".\r\n")
        return mail, replies, await self.reply()

    async def quit(self) -> None:
        try:
            await self.command("QUIT")
        except SMTPClientError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

    @property
    def is_connected(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()
