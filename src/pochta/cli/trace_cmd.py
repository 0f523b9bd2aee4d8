"""``pochta trace MESSAGE_ID``: each hop, lookup and verdict of one message.

Reads the server's trace files (:mod:`pochta.observe.trace`) of the last 30
days. The argument is a Message-ID (with or without its angle brackets) or a
queue id (the id in our ``250`` replies, ``Received`` fields and log lines);
events of forwarded copies and DSNs about the message are followed. Prints
one line per event, oldest first; ``--json`` prints the events as JSON lines.

Exit status: 0 when events were found, 1 (one line on stderr) otherwise.
"""

from __future__ import annotations

import json

import click

from pochta.cli import CliContext, pass_ctx

__all__ = ["COMMANDS", "trace"]


@click.command()
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option(
    "--days",
    type=click.IntRange(1, 3650),
    default=None,
    help="How many days back to look (default: all that is kept, 30).",
)
@pass_ctx
def trace(ctx: CliContext, message_id: str, as_json: bool, days: int | None) -> None:
    """Show what happened to one message (by Message-ID or queue id)."""
    from pochta.observe.trace import KEEP_DAYS, describe, find

    if not message_id.strip():
        raise click.UsageError("give a Message-ID or a queue id")
    directory = ctx.settings().data_dir / "trace"
    events = find(directory, message_id, days=days or KEEP_DAYS)
    if not events:
        raise click.ClickException(
            f"no trace of {message_id} in the last {days or KEEP_DAYS} days ({directory})"
        )
    for event in events:
        click.echo(json.dumps(event, ensure_ascii=False) if as_json else describe(event))


COMMANDS = [trace]
