"""Minimal IMAP, POP3 and SMTP clients: greet, list capabilities, STARTTLS, log in.

Design note
-----------
Discovery needs only the first minute of each protocol, so these are small
line-based clients over asyncio streams rather than full libraries:

* **probe** (step 5): connect (TLS first on 993/995/465), read the greeting,
  ask for capabilities (IMAP ``CAPABILITY``, RFC 9051 §6.1.1; POP3 ``CAPA``,
  RFC 2449 §5; SMTP ``EHLO``, RFC 5321 §4.1.1.1), and on the other ports
  upgrade with STARTTLS (RFC 9051 §6.2.1, RFC 2595 §4 ``STLS``, RFC 3207) and
  ask again -- AUTH mechanisms are usually only listed inside TLS. A server
  without TLS is reported, never recommended.
* **login** (``--password-stdin``): the same, then SASL PLAIN (RFC 4616) --
  IMAP ``AUTHENTICATE PLAIN`` (RFC 9051 §6.2.2, with the SASL-IR initial
  response of RFC 4959 when offered) or ``LOGIN`` (§6.2.3) when PLAIN is not
  listed; POP3 ``AUTH PLAIN`` (RFC 5034) or ``USER``/``PASS`` (RFC 1939 §7);
  SMTP ``AUTH PLAIN`` (RFC 4954). Passwords are sent only inside TLS, and
  never appear in a report, an exception or a log line.

Every read and write is bounded by the network's timeout; lines are capped
at :data:`MAX_LINE` octets; any protocol surprise is a :class:`ProtocolError`
with the server's words (shortened) in it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from dataclasses import dataclass

from pochta.discover.model import LoginCheck, Protocol, Security, ServerSetting
from pochta.discover.net import NetError, Network

__all__ = [
    "IMPLICIT_TLS_PORTS",
    "MAX_LINE",
    "ProtocolError",
    "check_login",
    "probe",
]

#: Ports where TLS starts with the first byte (RFC 8314 §3.2, §3.3).
IMPLICIT_TLS_PORTS = frozenset({993, 995, 465})
#: Longest server line accepted (RFC 9051 suggests 8 KiB for commands; ample for replies).
MAX_LINE = 8192


class ProtocolError(Exception):
    """The server said something unexpected or refused; the message quotes it briefly."""


class LoginRefused(ProtocolError):
    """The server rejected the user name or password."""


def _short(text: str, limit: int = 120) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(username: str, password: str) -> str:
    """RFC 4616 PLAIN message, base64: empty authzid, NUL, authcid, NUL, password."""
    return base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")


class _Conn:
    """A line-oriented connection with timeouts."""

    def __init__(
        self, net: Network, host: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.net = net
        self.host = host
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, net: Network, host: str, port: int, *, tls: bool) -> _Conn:
        reader, writer = await net.open(host, port, tls=tls)
        return cls(net, host, reader, writer)

    async def line(self) -> str:
        try:
            data = await asyncio.wait_for(self.reader.readline(), self.net.timeout)
        except TimeoutError:
            raise NetError(f"the server said nothing for {self.net.timeout:g} s") from None
        except ValueError:  # longer than the stream limit
            raise ProtocolError("a reply line was too long") from None
        except OSError as exc:
            raise NetError(f"connection lost ({exc.strerror or exc})") from None
        if not data:
            raise NetError("the server closed the connection")
        if len(data) > MAX_LINE:
            raise ProtocolError("a reply line was too long")
        return data.decode("utf-8", "replace").rstrip("\r\n")

    async def send(self, text: str) -> None:
        self.writer.write(text.encode("utf-8") + b"\r\n")
        try:
            await asyncio.wait_for(self.writer.drain(), self.net.timeout)
        except TimeoutError:
            raise NetError("the server stopped reading") from None
        except OSError as exc:
            raise NetError(f"connection lost ({exc.strerror or exc})") from None

    async def start_tls(self) -> None:
        await self.net.start_tls(self.writer, self.host)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (TimeoutError, OSError):
            pass


# ------------------------------------------------------------------------- IMAP


class _Imap:
    """RFC 9051 client side: tagged commands, untagged data, continuations."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.tags = (f"p{n}" for n in itertools.count(1))
        self.capabilities: set[str] = set()

    async def greeting(self) -> str:
        line = await self.conn.line()
        if line.upper().startswith("* BYE"):
            raise ProtocolError(f"the server refused the connection: {_short(line)}")
        if not (line.upper().startswith("* OK") or line.upper().startswith("* PREAUTH")):
            raise ProtocolError(f"not an IMAP greeting: {_short(line)}")
        self._note_capabilities(line)
        return line

    def _note_capabilities(self, line: str) -> None:
        upper = line.upper()
        if upper.startswith("* CAPABILITY "):
            self.capabilities = set(upper.split()[2:])
        elif "[CAPABILITY " in upper:
            inside = upper.split("[CAPABILITY ", 1)[1].split("]", 1)[0]
            self.capabilities = set(inside.split())

    async def command(self, text: str, *, continuation: str | None = None) -> str:
        """Send a tagged command; returns the tagged OK line or raises."""
        tag = next(self.tags)
        await self.conn.send(f"{tag} {text}")
        while True:
            line = await self.conn.line()
            if line.startswith("+"):
                if continuation is None:
                    await self.conn.send("*")  # cancel an unexpected SASL exchange
                else:
                    await self.conn.send(continuation)
                    continuation = None
                continue
            if line.startswith("* "):
                self._note_capabilities(line)
                continue
            if line.startswith(tag + " "):
                status = line[len(tag) + 1 :].split(" ", 1)[0].upper()
                if status == "OK":
                    return line
                if status == "NO":
                    raise LoginRefused(_short(line[len(tag) + 1 :]))
                raise ProtocolError(_short(line[len(tag) + 1 :]))

    async def login(self, username: str, password: str) -> str:
        if "AUTH=PLAIN" in self.capabilities:
            response = _plain(username, password)
            if "SASL-IR" in self.capabilities:
                await self.command(f"AUTHENTICATE PLAIN {response}")
            else:
                await self.command("AUTHENTICATE PLAIN", continuation=response)
            return "logged in with AUTHENTICATE PLAIN"
        if "LOGINDISABLED" in self.capabilities:
            raise ProtocolError("the server offers neither AUTH=PLAIN nor LOGIN")
        await self._login_command(username, password)
        return "logged in with LOGIN"

    async def _login_command(self, username: str, password: str) -> None:
        # Quoted strings where possible (RFC 9051 §4.3), synchronizing literals otherwise.
        parts = [username, password]
        if all(_quotable(p) for p in parts):
            await self.command("LOGIN " + " ".join(_quote(p) for p in parts))
            return
        tag = next(self.tags)
        data = [p.encode() for p in parts]
        await self.conn.send(f"{tag} LOGIN {{{len(data[0])}}}")
        for index, value in enumerate(data):
            line = await self.conn.line()
            if not line.startswith("+"):
                raise ProtocolError(f"literal refused: {_short(line)}")
            tail = f" {{{len(data[1])}}}" if index == 0 else ""
            self.conn.writer.write(value + tail.encode() + b"\r\n")
        while True:
            line = await self.conn.line()
            if line.startswith(tag + " "):
                if line[len(tag) + 1 :].upper().startswith("OK"):
                    return
                raise LoginRefused(_short(line[len(tag) + 1 :]))

    async def logout(self) -> None:
        try:
            await self.command("LOGOUT")
        except (NetError, ProtocolError):
            pass


def _quotable(text: str) -> bool:
    return bool(text) and not any(ch in "\r\n\0" for ch in text) and len(text) < 1000


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------- POP3


class _Pop3:
    """RFC 1939 client side with CAPA (RFC 2449), STLS (RFC 2595), AUTH (RFC 5034)."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.capabilities: set[str] = set()
        self.sasl: set[str] = set()

    async def greeting(self) -> str:
        line = await self.conn.line()
        if not line.startswith("+OK"):
            raise ProtocolError(f"not a POP3 greeting: {_short(line)}")
        return line

    async def simple(self, command: str) -> str:
        await self.conn.send(command)
        line = await self.conn.line()
        if line.startswith("+OK"):
            return line
        raise ProtocolError(_short(line))

    async def capa(self) -> None:
        try:
            await self.simple("CAPA")
        except ProtocolError:
            self.capabilities, self.sasl = set(), set()
            return
        capabilities: set[str] = set()
        sasl: set[str] = set()
        while True:
            line = await self.conn.line()
            if line == ".":
                break
            words = line.upper().split()
            if words:
                capabilities.add(words[0])
                if words[0] == "SASL":
                    sasl.update(words[1:])
        self.capabilities, self.sasl = capabilities, sasl

    async def login(self, username: str, password: str) -> str:
        try:
            if "PLAIN" in self.sasl:
                await self.simple(f"AUTH PLAIN {_plain(username, password)}")
                return "logged in with AUTH PLAIN"
            await self.simple(f"USER {username}")
            await self.simple(f"PASS {password}")
            return "logged in with USER/PASS"
        except ProtocolError as exc:
            raise LoginRefused(str(exc)) from None

    async def quit(self) -> None:
        try:
            await self.simple("QUIT")
        except (NetError, ProtocolError):
            pass


# ------------------------------------------------------------------------- SMTP


class _Smtp:
    """RFC 5321 client side: greeting, EHLO, STARTTLS (RFC 3207), AUTH (RFC 4954)."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.extensions: dict[str, str] = {}

    async def reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        while True:
            line = await self.conn.line()
            if len(line) < 3 or not line[:3].isdigit():
                raise ProtocolError(f"not an SMTP reply: {_short(line)}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), lines
            if line[3] != "-":
                raise ProtocolError(f"not an SMTP reply: {_short(line)}")

    async def greeting(self) -> str:
        code, lines = await self.reply()
        if code != 220:
            raise ProtocolError(f"greeting {code} {_short(' '.join(lines))}")
        return f"{code} {lines[0]}"

    async def ehlo(self) -> None:
        sock = self.conn.writer.get_extra_info("sockname")
        ip = sock[0] if sock else "127.0.0.1"
        literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
        await self.conn.send(f"EHLO {literal}")
        code, lines = await self.reply()
        if code != 250:
            raise ProtocolError(f"EHLO refused: {code} {_short(' '.join(lines))}")
        self.extensions = {}
        for line in lines[1:]:
            keyword, _, params = line.partition(" ")
            self.extensions[keyword.upper()] = params.upper()

    @property
    def auth(self) -> tuple[str, ...]:
        return tuple(self.extensions.get("AUTH", "").split())

    async def starttls(self) -> None:
        await self.conn.send("STARTTLS")
        code, lines = await self.reply()
        if code != 220:
            raise ProtocolError(f"STARTTLS refused: {code} {_short(' '.join(lines))}")
        await self.conn.start_tls()
        await self.ehlo()

    async def login(self, username: str, password: str) -> str:
        if "PLAIN" not in self.auth:
            raise ProtocolError(
                f"AUTH PLAIN not offered (offered: {' '.join(self.auth) or 'none'})"
            )
        await self.conn.send(f"AUTH PLAIN {_plain(username, password)}")
        code, lines = await self.reply()
        if code == 334:  # the server wants the response on its own line
            await self.conn.send(_plain(username, password))
            code, lines = await self.reply()
        if code == 235:
            return "logged in with AUTH PLAIN"
        message = f"{code} {_short(' '.join(lines))}"
        if code in (535, 534, 454):
            raise LoginRefused(message)
        raise ProtocolError(message)

    async def quit(self) -> None:
        try:
            await self.conn.send("QUIT")
            await self.reply()
        except (NetError, ProtocolError):
            pass


# ------------------------------------------------------------------------ session


@dataclass
class _Session:
    protocol: Protocol
    conn: _Conn
    client: _Imap | _Pop3 | _Smtp
    security: Security

    def mechanisms(self) -> tuple[str, ...]:
        client = self.client
        if isinstance(client, _Imap):
            return tuple(
                sorted(c.split("=", 1)[1] for c in client.capabilities if c.startswith("AUTH="))
            )
        if isinstance(client, _Pop3):
            return tuple(sorted(client.sasl))
        return tuple(sorted(client.auth))

    async def close(self) -> None:
        client = self.client
        if isinstance(client, _Imap):
            await client.logout()
        else:
            await client.quit()
        await self.conn.close()


async def _open(
    net: Network, protocol: Protocol, host: str, port: int, security: Security | None
) -> _Session:
    """Connect, greet, capabilities; STARTTLS when ``security`` asks or (probe) offers.

    ``security=None`` (probing): implicit TLS on the implicit-TLS ports, else
    STARTTLS if offered, else the plain session (reported as such).
    """
    implicit = security == "ssl" or (security is None and port in IMPLICIT_TLS_PORTS)
    conn = await _Conn.open(net, host, port, tls=implicit)
    try:
        client: _Imap | _Pop3 | _Smtp
        if protocol == "imap":
            client = _Imap(conn)
            await client.greeting()
            await client.command("CAPABILITY")
            offered = "STARTTLS" in client.capabilities
        elif protocol == "pop3":
            client = _Pop3(conn)
            await client.greeting()
            await client.capa()
            offered = "STLS" in client.capabilities
        else:
            client = _Smtp(conn)
            await client.greeting()
            await client.ehlo()
            offered = "STARTTLS" in client.extensions
        if implicit:
            return _Session(protocol, conn, client, "ssl")
        if security == "plain" or not offered:
            if security == "starttls":
                raise ProtocolError("STARTTLS is not offered")
            return _Session(protocol, conn, client, "plain")
        if isinstance(client, _Imap):
            await client.command("STARTTLS")
            await conn.start_tls()
            await client.command("CAPABILITY")
        elif isinstance(client, _Pop3):
            await client.simple("STLS")
            await conn.start_tls()
            await client.capa()
        else:
            await client.starttls()
        return _Session(protocol, conn, client, "starttls")
    except BaseException:
        await conn.close()
        raise


async def probe(
    net: Network, protocol: Protocol, host: str, port: int, username: str
) -> ServerSetting:
    """What really answers at ``host:port``: a usable setting, or an exception in words."""
    session = await _open(net, protocol, host, port, None)
    try:
        return ServerSetting(protocol, host, port, session.security, username, session.mechanisms())
    finally:
        await session.close()


async def check_login(net: Network, setting: ServerSetting, password: str) -> LoginCheck:
    """Log in to ``setting`` with ``password``; the outcome in words."""

    def result(ok: bool, detail: str) -> LoginCheck:
        return LoginCheck(setting.protocol, setting.hostname, setting.port, ok, detail)

    if setting.security == "plain":
        return result(False, "not tried: no TLS, the password would travel in clear text")
    try:
        session = await _open(
            net, setting.protocol, setting.hostname, setting.port, setting.security
        )
    except (NetError, ProtocolError) as exc:
        return result(False, f"cannot connect: {exc}")
    try:
        detail = await session.client.login(setting.username, password)
        return result(True, f"{detail} as {setting.username}")
    except LoginRefused as exc:
        return result(False, f"login refused for {setting.username}: {exc}")
    except (NetError, ProtocolError) as exc:
        return result(False, f"login failed: {exc}")
    finally:
        await session.close()
