"""Mail hosts on their own loopback addresses, for tests with two servers.

Server A delivers to server B's MX on B's address and the same port (the
stand-in for port 25), found through a loopback DNS server: so both need a
port that is free on each address (:func:`free_port_on`), and
:func:`make_host` writes the settings, a certificate for the host's name
and address, the domains and users, and starts it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

import trustme
from tests.conftest import FAST_HASHER, ServerThread

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.mailauth.keys import DKIMKeyStore


def free_port_on(*hosts: str) -> int:
    """A port free on every one of ``hosts`` (A's port 25 stand-in is B's too)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


def make_host(
    root: Path,
    ca: trustme.CA,
    domain: str,
    ip: str,
    port: int,
    dns: str,
    users: Sequence[str],
    *,
    listeners: Sequence[str] = ("submission",),
    extra_domains: Sequence[str] = (),
    aliases: Sequence[tuple[str, str]] = (),
    dkim: bool = False,
    mailboxes: bool = False,
) -> ServerThread:
    """Start ``mail.<domain>`` on ``ip``: its MX on ``port``, ``listeners`` on free ports.

    Users get the password ``pw-<address>``. ``dkim``: make the domain's
    signing keys as ``pochta domain add`` does (``extra_domains`` get none).
    ``mailboxes``: create the users' Maildirs before the first delivery.
    """
    root.mkdir()
    issued = ca.issue_cert(f"mail.{domain}", ip)
    (root / "cert.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (root / "key.pem").write_bytes(issued.private_key_pem.bytes())
    extra = "".join(f'{name} = ["{ip}:0"]\n' for name in listeners)
    (root / "pochta.toml").write_text(
        f'hostname = "mail.{domain}"\ndata_dir = "data"\n'
        f'[listen]\nsmtp = ["{ip}:{port}"]\n{extra}'
        '[tls]\ncert = "cert.pem"\nkey = "key.pem"\n'
        f'[dns]\nnameservers = ["{dns}"]\n'
        f"[delivery]\nsmtp_port = {port}\nretry_intervals = [1]\n"
    )
    settings = load_settings(root / "pochta.toml")
    with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as accounts:
        for name in (domain, *extra_domains):
            accounts.add_domain(name)
        for user in users:
            accounts.add_user(user, "pw-" + user)
        for alias, target in aliases:
            accounts.add_alias(alias, target)
    if dkim:
        DKIMKeyStore(settings.data_dir).create(domain)
    server = ServerThread(settings)
    server.start()
    if mailboxes:
        for user in users:
            server.call(lambda u=user: server.server.store.create_user(u))  # type: ignore[misc]
    return server
