"""``pochta domain`` (with ``domain dkim``), ``pochta user`` and ``pochta alias``.

Design note
-----------
Thin wrappers over ``pochta.accounts.Accounts``: every refusal is the
``AccountsError``/``AddressError`` raised there, which ``pochta.cli.main``
prints as one ``pochta: <message>`` line with exit status 1. Safe to run while
``pochta serve`` is up (the accounts database is SQLite in WAL mode).

``user add``/``del`` and ``domain add``/``del`` are ``pochta.accounts.manage``
(shared with the web admin): a user comes with its Maildir and mailboxes, a
domain with its DKIM keys, or neither.

``domain add`` also makes the domain's DKIM keys (RSA and Ed25519, RFC 6376
and RFC 8463) and ``domain del`` deletes them; ``domain dkim rotate|list|
remove`` manage them afterwards (``pochta.mailauth.keys``). The line
``domain X added`` stays the only stdout of ``domain add``, for scripts; the
selectors and the hint to publish them go to stderr, like the other advice
a person reads once.

Passwords are generated (and printed once, on one stdout line) unless
``--password-stdin`` is given, which reads one line (its newline stripped) so
that scripts never put a password on a command line.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

from pochta.accounts import AccountsError, generate_password, manage, parse_domain
from pochta.cli import CliContext, pass_ctx
from pochta.errors import UserFacingError

if TYPE_CHECKING:
    from pochta.mailauth.keys import DKIMKey, DKIMKeyStore

__all__ = ["COMMANDS", "alias", "domain", "user"]


def _read_password_stdin() -> str:
    """One line from stdin without its line ending; empty is refused."""
    line = sys.stdin.readline()
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    if not line:
        raise AccountsError("no password on stdin (expected one non-empty line)")
    return line


def _echo_password(address: str, password: str) -> None:
    click.echo(f"password for {address}: {password}")


# --- pochta domain ---------------------------------------------------------------


@click.group()
def domain() -> None:
    """Manage the domains this server receives mail for."""


@domain.command("add")
@click.argument("name")
@pass_ctx
def domain_add(ctx: CliContext, name: str) -> None:
    """Make NAME a local domain (IDN names are stored as A-labels) with DKIM keys."""
    added, keys = manage.add_domain(ctx.accounts(), _key_store(ctx), name)
    click.echo(f"domain {added} added")
    click.echo(f"DKIM selectors: {_selectors(keys)}", err=True)
    click.echo(f"publish them: `pochta dns records {added}` prints the DNS records", err=True)


@domain.command("list")
@pass_ctx
def domain_list(ctx: CliContext) -> None:
    """Print the local domains, one per line."""
    for name in ctx.accounts().list_domains():
        click.echo(name)


@domain.command("del")
@click.argument("name")
@pass_ctx
def domain_del(ctx: CliContext, name: str) -> None:
    """Remove domain NAME and its DKIM keys; it must have no users or aliases left."""
    removed = manage.del_domain(ctx.accounts(), _key_store(ctx), name)
    click.echo(f"domain {removed} deleted")


# --- pochta domain dkim ----------------------------------------------------------


def _key_store(ctx: CliContext) -> DKIMKeyStore:
    from pochta.mailauth.keys import DKIMKeyStore

    return DKIMKeyStore(ctx.settings().data_dir)


def _selectors(keys: list[DKIMKey]) -> str:
    return ", ".join(f"{k.selector} ({k.algorithm})" for k in keys)


def _local_domain(ctx: CliContext, name: str) -> str:
    domain = parse_domain(name)
    if not ctx.accounts().is_local_domain(domain):
        raise UserFacingError(f"no such domain {domain} (pochta domain add {domain})")
    return domain


@domain.group("dkim")
def dkim() -> None:
    """DKIM signing keys of a domain (RFC 6376): rotate, list, remove."""


@dkim.command("rotate")
@click.argument("name")
@pass_ctx
def dkim_rotate(ctx: CliContext, name: str) -> None:
    """Make new signing keys for NAME; the old ones stay published until removed."""
    domain = _local_domain(ctx, name)
    store = _key_store(ctx)
    old = store.active(domain)
    keys = store.rotate(domain)
    click.echo(f"new DKIM selectors for {domain}: {_selectors(keys)}")
    click.echo(f"publish them first: `pochta dns records {domain}` prints the records")
    for key in old:
        click.echo(
            f"{key.selector} is retired but stays published; once mail signed with it "
            f"is delivered (a few days): pochta domain dkim remove {domain} {key.selector}"
        )


@dkim.command("list")
@click.argument("name")
@pass_ctx
def dkim_list(ctx: CliContext, name: str) -> None:
    """Print NAME's keys, newest first: selector, algorithm, state, creation date."""
    domain = parse_domain(name)
    keys = _key_store(ctx).published(domain)
    if not keys:
        raise UserFacingError(f"{domain} has no DKIM keys (pochta domain dkim rotate {domain})")
    for key in keys:
        state = "active" if key.active else "retired"
        created = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(key.created))
        click.echo(f"{key.selector:<12} {key.algorithm:<15} {state:<8} {created}")


@dkim.command("remove")
@click.argument("name")
@click.argument("selector")
@pass_ctx
def dkim_remove(ctx: CliContext, name: str, selector: str) -> None:
    """Delete NAME's retired key SELECTOR; then drop its record from DNS."""
    domain = parse_domain(name)
    _key_store(ctx).remove(domain, selector)
    click.echo(f"DKIM key {selector} of {domain} removed; delete its DNS record")
    click.echo(f"  {selector}._domainkey.{domain} TXT")


# --- pochta user -----------------------------------------------------------------


@click.group()
def user() -> None:
    """Manage mail users (one mailbox and one password each)."""


@user.command("add")
@click.argument("address")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from one line of stdin instead of generating one.",
)
@pass_ctx
def user_add(ctx: CliContext, address: str, password_stdin: bool) -> None:
    """Create user ADDRESS with its mailboxes; prints a generated password."""
    password = _read_password_stdin() if password_stdin else generate_password()
    accounts = ctx.accounts()
    created = ctx.with_store(lambda store: manage.add_user(accounts, store, address, password))
    if password_stdin:
        click.echo(f"user {created.address} added")
    else:
        _echo_password(created.address, password)


@user.command("list")
@click.argument("domain_name", metavar="[DOMAIN]", required=False)
@pass_ctx
def user_list(ctx: CliContext, domain_name: str | None) -> None:
    """Print the users (of DOMAIN only, if given), one address per line."""
    for found in ctx.accounts().list_users(domain_name):
        click.echo(found.address)


@user.command("del")
@click.argument("address")
@pass_ctx
def user_del(ctx: CliContext, address: str) -> None:
    """Delete user ADDRESS and aliases pointing to it; its Maildir files stay."""
    accounts = ctx.accounts()
    removed = ctx.with_store(lambda store: manage.del_user(accounts, store, address))
    click.echo(f"user {removed.address} deleted (mail kept in {removed.maildir})")


@user.command("passwd")
@click.argument("address")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the new password from one line of stdin instead of generating one.",
)
@pass_ctx
def user_passwd(ctx: CliContext, address: str, password_stdin: bool) -> None:
    """Set a new password for ADDRESS; prints it when generated."""
    password = _read_password_stdin() if password_stdin else generate_password()
    accounts = ctx.accounts()
    accounts.set_password(address, password)
    found = accounts.get_user(address)
    canonical = found.address if found is not None else address
    if password_stdin:
        click.echo(f"password for {canonical} changed")
    else:
        _echo_password(canonical, password)


# --- pochta alias ----------------------------------------------------------------


@click.group()
def alias() -> None:
    """Manage aliases: extra addresses (or @domain catch-alls) for users, or forwarding."""


@alias.command("add")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("target")
@pass_ctx
def alias_add(ctx: CliContext, alias_name: str, target: str) -> None:
    """Deliver mail for ALIAS (an address, or @DOMAIN for all others) to TARGET.

    TARGET is a local user or alias, or an address at another domain: mail
    is then forwarded there.
    """
    added = ctx.accounts().add_alias(alias_name, target)
    click.echo(f"alias {added.alias} -> {added.target} added")
    if added.remote:
        # Advice read once goes to stderr; stdout stays one line for scripts.
        domain = added.alias.rpartition("@")[2]
        click.echo(
            f"{added.target} is remote: mail is forwarded from the smtp listener, its sender "
            f"rewritten with SRS ([mailauth] srs), ARC-sealed with the DKIM key of {domain}",
            err=True,
        )


@alias.command("list")
@pass_ctx
def alias_list(ctx: CliContext) -> None:
    """Print every alias as 'alias -> target', one per line; '(remote)' marks forwarding."""
    for row in ctx.accounts().list_aliases():
        click.echo(f"{row.alias} -> {row.target}" + (" (remote)" if row.remote else ""))


@alias.command("del")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("target", required=False)
@pass_ctx
def alias_del(ctx: CliContext, alias_name: str, target: str | None) -> None:
    """Delete ALIAS (only its row to TARGET, if given)."""
    removed = ctx.accounts().del_alias(alias_name, target)
    click.echo(f"{removed} alias row{'s' if removed != 1 else ''} deleted")


COMMANDS: tuple[click.Group, ...] = (domain, user, alias)
