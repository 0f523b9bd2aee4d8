"""``pochta domain``, ``pochta user`` and ``pochta alias``.

Design note
-----------
Thin wrappers over ``pochta.accounts.Accounts``: every refusal is the
``AccountsError``/``AddressError`` raised there, which ``pochta.cli.main``
prints as one ``pochta: <message>`` line with exit status 1. Safe to run while
``pochta serve`` is up (the accounts database is SQLite in WAL mode).

``user add`` creates the Maildir and default mailboxes through the store; if
that fails the new account is removed again, so no user exists without a
mailbox. ``user del`` removes the account first (no more logins or mail), then
the store's index rows; the Maildir files stay for backup.

Passwords are generated (and printed once, on one stdout line) unless
``--password-stdin`` is given, which reads one line (its newline stripped) so
that scripts never put a password on a command line.
"""

from __future__ import annotations

import sys

import click

from pochta.accounts import AccountsError, User, generate_password, parse_domain
from pochta.cli import CliContext, pass_ctx

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
    """Make NAME a local domain (IDN names are stored as A-labels)."""
    added = ctx.accounts().add_domain(name)
    click.echo(f"domain {added} added")


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
    """Remove domain NAME; it must have no users or aliases left."""
    ctx.accounts().del_domain(name)
    click.echo(f"domain {parse_domain(name)} deleted")


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
    created = accounts.add_user(address, password)
    try:
        _create_mailboxes(ctx, created)
    except BaseException:
        accounts.del_user(created.address)
        raise
    if password_stdin:
        click.echo(f"user {created.address} added")
    else:
        _echo_password(created.address, password)


def _create_mailboxes(ctx: CliContext, created: User) -> None:
    ctx.with_store(lambda store: store.create_user(created.address))


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
    removed = ctx.accounts().del_user(address)
    ctx.with_store(lambda store: store.delete_user(removed.address))
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
    """Manage aliases: extra addresses (or @domain catch-alls) for local users."""


@alias.command("add")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("target")
@pass_ctx
def alias_add(ctx: CliContext, alias_name: str, target: str) -> None:
    """Deliver mail for ALIAS (an address, or @DOMAIN for all others) to TARGET."""
    added = ctx.accounts().add_alias(alias_name, target)
    click.echo(f"alias {added.alias} -> {added.target} added")


@alias.command("list")
@pass_ctx
def alias_list(ctx: CliContext) -> None:
    """Print every alias as 'alias -> target', one per line."""
    for row in ctx.accounts().list_aliases():
        click.echo(f"{row.alias} -> {row.target}")


@alias.command("del")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("target", required=False)
@pass_ctx
def alias_del(ctx: CliContext, alias_name: str, target: str | None) -> None:
    """Delete ALIAS (only its row to TARGET, if given)."""
    removed = ctx.accounts().del_alias(alias_name, target)
    click.echo(f"{removed} alias row{'s' if removed != 1 else ''} deleted")


COMMANDS: tuple[click.Group, ...] = (domain, user, alias)
