"""``pochta dns records DOMAIN``: the zone-file lines to publish for a domain."""

from __future__ import annotations

import click

from pochta.cli import CliContext, pass_ctx
from pochta.errors import UserFacingError


@click.group()
def dns() -> None:
    """DNS records for your domains."""


@dns.command("records")
@click.argument("domain")
@pass_ctx
def records_cmd(ctx: CliContext, domain: str) -> None:
    """Print the records DOMAIN needs, ready to paste into its zone."""
    from pochta.accounts import parse_domain
    from pochta.dns.zone import records

    name = parse_domain(domain)
    if not ctx.accounts().is_local_domain(name):
        raise UserFacingError(f"{name} is not one of this server's domains (pochta domain add)")
    for line in records(ctx.settings(), name):
        click.echo(line)


COMMANDS = (dns,)
