"""``pochta discover ADDRESS``: what a mail client would find for an address.

Runs the client-side algorithm of :mod:`pochta.discover.steps` (autoconfig,
autodiscover, SRV, the MX's domain, guessing) and prints each attempt and the
settings found; ``--json`` prints the same as one JSON object. With
``--password-stdin`` it reads one line (the password) and logs in to the
IMAP (else POP3) and SMTP servers found, to prove the settings work.

Exit status: 0 when settings were found (and every login check passed), 1
otherwise, with one line on stderr saying which.

Name servers: ``--nameserver`` (repeatable, ``addr`` or ``addr:port``); else
``[dns].nameservers`` of the settings file when one is given or found; else
the system's. Options for tests and for checking a zone before it is public:
``--port-map 443=18443`` (repeatable) sends connections for a standard port
to another one while the report keeps the standard port; ``--http-port`` and
``--https-port`` are short for ``--port-map 80=N`` and ``--port-map 443=N``;
``--cafile`` trusts an extra CA (a test CA, a self-signed certificate).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from pathlib import Path

import click

from pochta.cli import CliContext, pass_ctx

__all__ = ["COMMANDS", "discover"]


def _parse_port_map(values: tuple[str, ...]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for value in values:
        left, eq, right = value.partition("=")
        if not eq or not left.isdigit() or not right.isdigit():
            raise click.BadParameter(f"{value!r} is not PORT=PORT", param_hint="--port-map")
        source, target = int(left), int(right)
        if not (1 <= source <= 65535 and 1 <= target <= 65535):
            raise click.BadParameter(f"{value!r}: ports are 1-65535", param_hint="--port-map")
        mapping[source] = target
    return mapping


def _read_password() -> str:
    line = sys.stdin.readline()
    line = line[:-1] if line.endswith("\n") else line
    line = line[:-1] if line.endswith("\r") else line
    if not line:
        raise click.ClickException("no password on stdin (expected one non-empty line)")
    return line


@click.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin and log in to the servers found.",
)
@click.option(
    "--nameserver",
    "nameservers",
    multiple=True,
    metavar="ADDR[:PORT]",
    help="Name server to ask (repeatable); default: [dns].nameservers, else the system's.",
)
@click.option(
    "--port-map",
    "port_maps",
    multiple=True,
    metavar="PORT=PORT",
    help="Connect to the second port whenever the first is meant (repeatable; for tests).",
)
@click.option("--http-port", type=click.IntRange(1, 65535), help="Same as --port-map 80=N.")
@click.option("--https-port", type=click.IntRange(1, 65535), help="Same as --port-map 443=N.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=10.0,
    show_default=True,
    help="Seconds for each lookup, connection or request.",
)
@click.option(
    "--step-timeout",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds for each step in all.",
)
@click.option(
    "--cafile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust the CA certificates in this PEM file.",
)
@pass_ctx
def discover(
    ctx: CliContext,
    address: str,
    as_json: bool,
    password_stdin: bool,
    nameservers: tuple[str, ...],
    port_maps: tuple[str, ...],
    http_port: int | None,
    https_port: int | None,
    timeout: float,
    step_timeout: float,
    cafile: Path | None,
) -> None:
    """Find the IMAP/POP3/SMTP settings of ADDRESS the way mail clients do."""
    from pochta.accounts import AddressError, parse_address
    from pochta.config import find_settings_path, parse_hostport
    from pochta.discover import Network
    from pochta.discover import discover as run_discovery
    from pochta.dns import StubResolver

    try:
        parsed = parse_address(address)
    except AddressError as exc:
        raise click.ClickException(str(exc)) from None
    port_map = _parse_port_map(port_maps)
    if http_port is not None:
        port_map[80] = http_port
    if https_port is not None:
        port_map[443] = https_port
    if nameservers:
        try:
            servers = tuple(parse_hostport(ns, 53) for ns in nameservers)
            for server in servers:
                ipaddress.ip_address(server.host)
        except ValueError as exc:
            raise click.BadParameter(
                f"{exc} (an IP address is needed)", param_hint="--nameserver"
            ) from None
    elif ctx.config_path is not None or find_settings_path().exists():
        servers = ctx.settings().dns.nameservers
    else:
        servers = ()
    password = _read_password() if password_stdin else None
    resolver = StubResolver(servers, timeout=min(timeout, 3.0), lifetime=timeout)
    net = Network(resolver, port_map=port_map, timeout=timeout, cafile=cafile)
    report = asyncio.run(run_discovery(parsed, net, password=password, step_timeout=step_timeout))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render(), nl=False)
    if report.found is None:
        raise click.ClickException(f"no mail settings found for {parsed}")
    failed = [check for check in report.logins if not check.ok]
    if failed:
        names = ", ".join(f"{c.protocol.upper()} {c.hostname}:{c.port}" for c in failed)
        raise click.ClickException(f"login check failed for {names}")


COMMANDS = (discover,)
