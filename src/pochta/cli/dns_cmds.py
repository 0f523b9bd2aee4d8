"""``pochta dns records|check DOMAIN``: the records a domain needs, and whether they are there.

``records`` prints zone-file lines to paste; ``check`` looks the same records
up through ``[dns].nameservers`` (or the system's resolvers) and prints one
line per record. ``check`` exits 0 when every record is right, 1 otherwise
with a one-line summary on stderr, so it can gate a deployment script.
"""

from __future__ import annotations

import asyncio

import click

from pochta.cli import CliContext, pass_ctx
from pochta.errors import UserFacingError


@click.group()
def dns() -> None:
    """DNS records for your domains."""


def _local_domain(ctx: CliContext, domain: str) -> str:
    """``domain`` in canonical form, if it is one of ours; else a one-line error."""
    from pochta.accounts import parse_domain

    name = parse_domain(domain)
    if not ctx.accounts().is_local_domain(name):
        raise UserFacingError(f"{name} is not one of this server's domains (pochta domain add)")
    return name


@dns.command("records")
@click.argument("domain")
@pass_ctx
def records_cmd(ctx: CliContext, domain: str) -> None:
    """Print the records DOMAIN needs, ready to paste into its zone."""
    from pochta.dns.zone import records

    name = _local_domain(ctx, domain)
    for line in records(ctx.settings(), name):
        click.echo(line)


@dns.command("check")
@click.argument("domain")
@pass_ctx
def check_cmd(ctx: CliContext, domain: str) -> None:
    """Look up the records DOMAIN needs and say which are missing or wrong."""
    from pochta.dns import StubResolver
    from pochta.dns.check import check, summary
    from pochta.mailauth.keys import DKIMKeyStore

    name = _local_domain(ctx, domain)
    settings = ctx.settings()
    keys = DKIMKeyStore(settings.data_dir).published(name)
    resolver = StubResolver.from_settings(settings.dns)
    lines = asyncio.run(check(settings, name, resolver, keys))
    for line in lines:
        click.echo(line.render())
    if not all(line.ok for line in lines):
        click.echo(summary(lines), err=True)
        click.get_current_context().exit(1)


COMMANDS = (dns,)
