"""``pochta serve``, ``pochta quickstart`` and ``pochta reindex``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pochta.cli import CliContext, pass_ctx
from pochta.errors import UserFacingError

if TYPE_CHECKING:
    from pochta.store.interface import Store

#: The unprivileged ports of DESIGN.md, used by ``quickstart --dev``.
DEV_LISTEN = {
    "smtp": 2525,
    "submission": 2587,
    "submissions": 2465,
    "imap": 2143,
    "imaps": 2993,
    "pop3": 2110,
    "pop3s": 2995,
    "http": 8080,
    "https": 8443,
    "lmtp": 2424,
}
#: The standard ports (RFC 5321, 6409, 8314, 9051, 1939, 8314).
PROD_LISTEN = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "http": 80,
    "https": 443,
}


@click.command()
@pass_ctx
def serve(ctx: CliContext) -> None:
    """Run every configured listener until SIGTERM/SIGINT."""
    from pochta.observe.log import setup_logging
    from pochta.server import Server

    ctx.keep_privileges = True  # it may bind ports below 1024
    settings = ctx.settings()
    setup_logging()
    asyncio.run(Server(settings).serve_forever())


def settings_text(hostname: str, dev: bool, admin: str | None = None) -> str:
    """The settings file quickstart writes; comments explain each choice."""
    ports = DEV_LISTEN if dev else PROD_LISTEN
    host = "127.0.0.1" if dev else "0.0.0.0"
    listen = "\n".join(f'{k:<11} = ["{host}:{p}"]' for k, p in ports.items())
    plaintext = "true" if dev else "false"
    why = "allowed on loopback for development" if dev else "refused"
    verify = "false" if dev else "true"
    verify_why = (
        "off: test mail sent from this machine would be judged by public DNS"
        if dev
        else "SPF, DKIM, DMARC and ARC of mail arriving on port 25"
    )
    return f"""\
# Pochta settings, written by `pochta quickstart`{" --dev" if dev else ""}.
# Reference: README.md ("Configuration"). Relative paths are relative to this file.
hostname = "{hostname}"      # the name in banners, HELO and Received headers
data_dir = "data"            # accounts, index and Maildirs live here

[listen]                     # "addr:port" lists; remove a key to turn a listener off
{listen}

[tls]                        # a self-signed pair; replace it with a CA-issued one
cert = "tls/cert.pem"
key  = "tls/key.pem"

[auth]
# Passwords over unencrypted connections: {why}.
allow_plaintext_without_tls = {plaintext}

[dns]
nameservers = []             # empty = the system resolver

[delivery]
smtp_port = 25               # the port of remote MX hosts

[mailauth]
verify = {verify}               # {verify_why}
sign = true                  # DKIM-sign submitted mail (`pochta domain dkim list DOMAIN`)

[antispam]
dnsbl = []                   # block lists to ask, e.g. ["zen.spamhaus.org"] (mind their terms)
greylisting = false          # 451 the first attempt of an unknown sender
junk_score = 5.0             # at this score a message goes to Junk
reject_score = 15.0          # at this score it is refused
""" + (
        f"""
[admin]
users = ["{admin}"]   # who may sign in to the web admin (/admin/ on http/https)
"""
        if admin
        else ""
    )


@click.command()
@click.argument("address")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Where to write pochta.toml, tls/ and data/ (default: here).",
)
@click.option("--dev", is_flag=True, help="Loopback, unprivileged ports (2525, 2143, ...).")
@click.option("--hostname", default=None, help="Server host name (default: mail.<domain>).")
def quickstart(address: str, directory: Path, dev: bool, hostname: str | None) -> None:
    """Write settings, a TLS certificate and the first user; print how to connect."""
    from pochta.accounts import Accounts, generate_password, parse_address
    from pochta.config import load_settings
    from pochta.mailauth.keys import DKIMKeyStore
    from pochta.store import open_store
    from pochta.tls import write_self_signed

    addr = parse_address(address)
    directory = directory.resolve()
    config = directory / "pochta.toml"
    if config.exists():
        raise UserFacingError(f"{config} already exists; remove it or choose another --dir")
    if hostname is None:
        hostname = "localhost" if dev else f"mail.{addr.domain}"
    directory.mkdir(parents=True, exist_ok=True)
    names = [hostname, "localhost", "127.0.0.1", "::1"] if dev else [hostname]
    write_self_signed(directory / "tls/cert.pem", directory / "tls/key.pem", names)
    config.write_text(settings_text(hostname, dev, admin=str(addr)))
    settings = load_settings(config)

    password = generate_password()
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite")
    try:
        accounts.add_domain(addr.domain)
        user = accounts.add_user(str(addr), password)
    finally:
        accounts.close()
    # The domain's DKIM keys (RFC 6376, RFC 8463) before the summary: its DNS
    # records are read from the key store and must include them.
    DKIMKeyStore(settings.data_dir).create(addr.domain)

    async def make_mailboxes() -> None:
        store = open_store(settings.data_dir)
        await store.open()
        try:
            await store.create_user(user.address)
        finally:
            await store.close()

    asyncio.run(make_mailboxes())
    summary = connect_text(settings_path=config, user=user.address, password=password, dev=dev)
    if dev:
        # Development only: `make run` shows this again on every start.
        path = directory / "CONNECT.txt"
        path.write_text(summary)
        path.chmod(0o600)
    click.echo(summary, nl=False)


def connect_text(*, settings_path: Path, user: str, password: str, dev: bool) -> str:
    ports = DEV_LISTEN if dev else PROD_LISTEN
    host = "127.0.0.1" if dev else "<this server>"
    domain = user.split("@", 1)[1]
    lines = [
        f"Settings:  {settings_path}",
        f"User:      {user}",
        f"Password:  {password}",
        "",
        "Connect a mail client (user name = the address; the certificate is",
        "self-signed, so the client asks once to trust it):",
        f"  IMAP        {host}:{ports['imap']} (STARTTLS)   {host}:{ports['imaps']} (SSL/TLS)",
        f"  POP3        {host}:{ports['pop3']} (STARTTLS)   {host}:{ports['pop3s']} (SSL/TLS)",
        f"  SMTP        {host}:{ports['submission']} (STARTTLS)   "
        f"{host}:{ports['submissions']} (SSL/TLS), password login",
        f"  autoconfig  http://{host}:{ports['http']}/mail/config-v1.1.xml?emailaddress={user}",
        "",
        f"Web admin (domains, users, aliases, queue, DNS records; sign in as {user}):",
        f"  https://{host}:{ports['https']}/admin/"
        + (f"   http://{host}:{ports['http']}/admin/" if dev else ""),
        "",
        "Or send a message to it over SMTP from a script:",
    ]
    if dev:
        lines.append(
            "  python3 -c \"import smtplib; s=smtplib.SMTP('127.0.0.1', "
            f"{ports['smtp']}); s.sendmail('me@example.org', ['{user}'], "
            "'Subject: hi\\r\\n\\r\\nhello\\r\\n')\""
        )
    else:
        lines.append(f"  swaks --server {host}:{ports['smtp']} --to {user}")
    lines += [
        "",
        f"Mail is stored in Maildir under {settings_path.parent / 'data/mail' / domain}.",
        "",
    ]
    if not dev:
        from pochta.config import load_settings
        from pochta.dns.zone import records

        lines += ["Publish in DNS (`pochta dns records` prints this again):"]
        lines += records(load_settings(settings_path), domain)
        lines.append("")
    return "\n".join(line for line in lines if line is not None) + "\n"


@click.command()
@click.argument("address", required=False)
@pass_ctx
def reindex(ctx: CliContext, address: str | None) -> None:
    """Rebuild the index from the Maildir files (all users, or ADDRESS)."""
    accounts = ctx.accounts()
    if address is not None:
        user = accounts.get_user(address)
        if user is None:
            raise UserFacingError(f"no such user {address}")
        users = [user.address]
    else:
        users = [u.address for u in accounts.list_users()]

    async def run(store: Store) -> list[tuple[str, int]]:
        return [(u, await store.reindex(u)) for u in users]

    for user_address, count in ctx.with_store(run):
        click.echo(f"{user_address}: {count} messages")


COMMANDS = (serve, quickstart, reindex)
