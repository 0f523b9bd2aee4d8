"""POP3 status lines, response codes and protocol limits, named once.

Design note
-----------
Every reply the server sends starts with ``+OK`` or ``-ERR`` (RFC 1939 §3);
an ``-ERR`` may carry an extended response code in brackets (RFC 2449 §8)
that tells a client what to do without parsing English: ``[IN-USE]`` (the
maildrop is locked by another session), ``[AUTH]`` (the credentials, or the
lack of TLS, are the problem), ``[SYS/TEMP]`` (try again later) and
``[SYS/PERM]`` (RFC 3206). Handlers build replies only from the helpers and
constants here, and tests assert against the same constants.
"""

from __future__ import annotations

#: RFC 2449 §4: a command line is at most 255 octets including CRLF.
MAX_COMMAND_LINE = 255
#: SASL responses (RFC 5034 §4) carry base64 and may exceed the command
#: limit; this bounds them, and is the most any line may buffer.
MAX_SASL_LINE = 8192
#: RFC 1939 §3: an autologout timer, if any, must be at least 10 minutes.
IDLE_TIMEOUT = 600.0
#: Failed logins allowed on one connection before it is closed.
MAX_AUTH_FAILURES_PER_CONNECTION = 3
#: Concurrent POP3 sessions, all listeners together, and per client address.
MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_PER_IP = 50

# Extended response codes (RFC 2449 §8, RFC 3206 §4-§5), without brackets.
IN_USE = "IN-USE"  # RFC 2449 §8.1.1
LOGIN_DELAY = "LOGIN-DELAY"  # RFC 2449 §8.1.2 (not used: we impose no delay)
SYS_TEMP = "SYS/TEMP"  # RFC 3206 §4
SYS_PERM = "SYS/PERM"  # RFC 3206 §4
AUTH = "AUTH"  # RFC 3206 §5

CRLF = b"\r\n"
#: RFC 1939 §3: the line that ends a multi-line response.
TERMINATOR = b".\r\n"


def ok(text: str = "") -> bytes:
    """A positive status line, ``+OK text`` (RFC 1939 §3)."""
    return b"+OK " + text.encode("utf-8", "replace") + CRLF if text else b"+OK" + CRLF


def err(text: str, code: str | None = None) -> bytes:
    """A negative status line, with an RFC 2449 §8 response code when given."""
    prefix = f"-ERR [{code}] " if code else "-ERR "
    return (prefix + text).encode("utf-8", "replace") + CRLF


def multiline(status: bytes, lines: list[bytes]) -> bytes:
    """A status line, then ``lines`` dot-stuffed, then the terminator (RFC 1939 §3).

    For short generated listings (CAPA, LIST, UIDL); message bodies go
    through ``maildrop.dot_stuff``, which avoids a per-line loop.
    """
    body = b"".join((b"." + line if line[:1] == b"." else line) + CRLF for line in lines)
    return status + body + TERMINATOR


# Replies used by more than one handler.
NO_SUCH_MESSAGE = err("no such message")
DELETED_MESSAGE = err("message is marked as deleted")
AUTH_NEEDS_TLS = err("plaintext authentication is disabled without TLS; use STLS first", AUTH)
BAD_LOGIN = err("invalid user name or password", AUTH)
TOO_MANY_CONNECTIONS = err("too many connections; try again later", SYS_TEMP)
SHUTTING_DOWN = err("server shutting down; try again later", SYS_TEMP)
INTERNAL_ERROR = err("internal server error; try again later", SYS_TEMP)
LINE_TOO_LONG = err(f"line too long (at most {MAX_COMMAND_LINE} octets, RFC 2449 §4)")
