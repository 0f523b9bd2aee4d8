"""Hostile command lines against a live inbound server: always a reply, never a crash.

Every line gets a well-formed reply (three digits, an enhanced code after the
greeting), the session stays usable, and no handler exception leaks into a
reply (aiosmtpd would answer ``500 Error: (SomeError) ...``).
"""

from __future__ import annotations

import re
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import ServerThread

REPLY = re.compile(rb"^([2-5]\d\d)([ -])(.*)$")

VERBS = [b"HELO", b"EHLO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY",
         b"EXPN", b"HELP", b"AUTH", b"STARTTLS", b"BDAT", b"XCLIENT", b""]  # fmt: skip

line_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
lines = st.one_of(
    line_bytes,
    st.tuples(st.sampled_from(VERBS), line_bytes).map(lambda t: t[0] + b" " + t[1]),
    st.tuples(st.sampled_from([b"MAIL FROM:", b"RCPT TO:"]), st.text(max_size=80)).map(
        lambda t: t[0] + b"<" + t[1].encode("utf-8", "surrogatepass") + b">"
    ),
).map(lambda line: line.replace(b"\n", b""))  # one command per line


class Client:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.buf = b""

    def reply(self) -> tuple[int, list[bytes]]:
        out = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                assert chunk, "server closed the connection without a reply"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            match = REPLY.match(line)
            assert match, line
            out.append(match.group(3))
            if match.group(2) == b" ":
                return int(match.group(1)), out

    def send(self, data: bytes) -> tuple[int, list[bytes]]:
        self.sock.sendall(data + b"\r\n")
        return self.reply()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(lines, min_size=1, max_size=8))
def test_any_command_line_gets_a_proper_reply(server: ServerThread, sent: list[bytes]) -> None:
    client = Client(server.address())
    try:
        assert client.reply()[0] == 220
        assert client.send(b"EHLO fuzz.test")[0] == 250
        for line in sent:
            if line.upper().startswith(b"STARTTLS") or line.upper().startswith(b"QUIT"):
                continue  # a TLS handshake or goodbye is not a reply to fuzz
            code, texts = client.send(line)
            for text in texts:
                assert b"Error: (" not in text, text  # no leaked exception
            if code in (221, 421) or b"goodbye" in texts[-1]:
                return
            greeting = line[:4].upper() in (b"HELO", b"EHLO") and code == 250
            if not greeting:  # RFC 2034 §4: the HELO/EHLO reply has no codes
                assert re.match(rb"[245]\.\d{1,3}\.\d{1,3} ", texts[-1] + b" "), (line, texts)
            if code == 354:
                code, _ = client.send(b".")
        assert client.send(b"NOOP")[0] == 250  # still usable
    finally:
        client.sock.close()
