"""LMTP (RFC 2033) on [listen].lmtp: LHLO, and one reply per recipient after DATA."""

from __future__ import annotations

import socket

from tests.conftest import ServerThread
from tests.integration.test_smtp_inbound import MSG, files


def replies(sock: socket.socket, buf: bytearray, count: int) -> list[bytes]:
    """Read ``count`` complete replies (multi-line ones joined)."""
    out = []
    while len(out) < count:
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "closed"
            buf += chunk
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        if line[3:4] == b" ":
            out.append(line)
    return out


def test_lmtp_one_reply_per_recipient(server: ServerThread) -> None:
    sock = socket.create_connection(server.address("lmtp"), timeout=10)
    buf = bytearray()
    (greeting,) = replies(sock, buf, 1)
    assert greeting.startswith(b"220 ") and b"LMTP" in greeting
    sock.sendall(b"EHLO x\r\n")
    assert replies(sock, buf, 1)[0].startswith(b"500 5.5.1")
    sock.sendall(b"LHLO mta.example.test\r\n")
    assert replies(sock, buf, 1)[0].startswith(b"250 ")
    sock.sendall(
        b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    got = replies(sock, buf, 5)
    assert [r[:3] for r in got] == [b"250", b"250", b"550", b"250", b"354"]
    sock.sendall(MSG + b".\r\n")
    after = replies(sock, buf, 2)  # alice and bob, not the refused one
    assert all(r.startswith(b"250 2.0.0") for r in after), after
    sock.sendall(b"QUIT\r\n")
    assert replies(sock, buf, 1)[0].startswith(b"221")
    sock.close()
    for user in ("alice@example.test", "bob@example.test"):
        (path,) = files(server, user)
        assert b" with LMTP id " in path.read_bytes()
