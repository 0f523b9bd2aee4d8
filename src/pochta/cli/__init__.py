"""The ``pochta`` command: one module per command group.

Every command takes ``--config FILE`` (else ``$POCHTA_CONFIG``, else
``./pochta.toml``). Errors a user can fix end the command with exit status 1
and one line on stderr, never a traceback: command modules raise
``click.ClickException`` or let a ``ConfigError``/``AccountsError`` escape,
and ``main`` turns those into that one line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from pochta.accounts import Accounts
    from pochta.config import Settings
    from pochta.store.interface import Store

T = TypeVar("T")


@dataclass
class CliContext:
    """Lazily loaded settings and services shared by the commands of one run."""

    config_path: Path | None
    _settings: Settings | None = None
    _accounts: Accounts | None = field(default=None, repr=False)
    #: ``serve`` keeps root (it binds ports below 1024); every other command
    #: acts as the data directory's owner (see ``act_as_data_owner``).
    keep_privileges: bool = False

    def settings(self) -> Settings:
        if self._settings is None:
            from pochta.config import load_settings

            self._settings = load_settings(self.config_path)
            if not self.keep_privileges:
                act_as_data_owner(self._settings.data_dir)
        return self._settings

    def accounts(self) -> Accounts:
        if self._accounts is None:
            from pochta.accounts import Accounts

            self._accounts = Accounts.open(self.settings().data_dir / "accounts.sqlite")
        return self._accounts

    def with_store(self, fn: Callable[[Store], Awaitable[T]]) -> T:
        """Run ``fn`` against an opened store, then close it."""
        from pochta.store import open_store

        async def run() -> T:
            store = open_store(self.settings().data_dir)
            await store.open()
            try:
                return await fn(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def close(self) -> None:
        if self._accounts is not None:
            self._accounts.close()
            self._accounts = None


pass_ctx = click.make_pass_decorator(CliContext)


def act_as_data_owner(data_dir: Path) -> None:
    """Started as root on a data directory another user owns: become that user.

    Why: the server runs as that user; a ``pochta user add`` run with sudo
    would otherwise leave root-owned Maildirs, journal files and a
    root-only ``run/notify/`` behind, which the server then cannot write
    (new mail to that user would be refused). Dovecot's doveadm and
    Postfix's postsuper likewise do their work as the mail owner.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat()
    except OSError:  # not created yet: whoever creates it owns it
        return
    if owner.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Settings file (default: $POCHTA_CONFIG, else ./pochta.toml).",
)
@click.version_option(package_name="pochta")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Pochta: a complete mail system (SMTP, IMAP, POP3, autoconfig)."""
    obj = CliContext(config_path)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def _register() -> None:
    # Imported here so each command module can import ``cli`` from this one.
    from pochta.cli import (
        accounts_cmds,
        discover_cmd,
        dns_cmds,
        queue_cmds,
        server_cmds,
        trace_cmd,
    )

    for group in (
        *accounts_cmds.COMMANDS,
        *server_cmds.COMMANDS,
        *queue_cmds.COMMANDS,
        *discover_cmd.COMMANDS,
        *dns_cmds.COMMANDS,
        *trace_cmd.COMMANDS,
    ):
        cli.add_command(group)


def main() -> None:
    """Console entry point: map known errors to one line on stderr."""
    from pochta.errors import UserFacingError

    _register()
    try:
        rv = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserFacingError as exc:
        click.echo(f"pochta: {exc}", err=True)
        sys.exit(1)
    if isinstance(rv, int) and rv:
        sys.exit(rv)
