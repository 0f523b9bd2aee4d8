"""``pochta queue list|flush|retry ID|delete ID``: the outbound queue, for operators.

These work on the spool files directly, so they work whether or not the
server runs; a running server notices flushes and retries within its poll
interval (``pochta.queue.runner.POLL``, 5 s).
"""

from __future__ import annotations

import datetime as dt
import time

import click

from pochta.cli import CliContext, pass_ctx
from pochta.errors import UserFacingError


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@click.group()
def queue() -> None:
    """Inspect and steer the outbound queue."""


@queue.command("list")
@pass_ctx
def list_(ctx: CliContext) -> None:
    """Every queued message with each recipient's state, attempts, last reply, next try."""
    from pochta.queue import Spool

    spool = Spool(ctx.settings().data_dir)
    try:
        messages = spool.messages()
    finally:
        spool.close()
    if not messages:
        click.echo("queue is empty")
        return
    now = time.time()
    for m in messages:
        age = int(now - m.created)
        sender = m.mail_from or "MAILER-DAEMON"
        click.echo(f"{m.qid}  {m.size} bytes  age {age}s  from <{sender}>")
        for r in m.recipients:
            click.echo(
                f"    <{r.rcpt}>  {r.state}  attempts={r.attempts}  "
                f"next={_when(r.next_try if r.state == 'queued' else None)}  "
                f"last={r.last_reply or '-'}"
            )


@queue.command()
@pass_ctx
def flush(ctx: CliContext) -> None:
    """Make every queued recipient due now."""
    from pochta.queue import Spool

    spool = Spool(ctx.settings().data_dir)
    try:
        count = spool.retry(None)
    finally:
        spool.close()
    click.echo(f"{count} recipients due now")


@queue.command()
@click.argument("qid")
@pass_ctx
def retry(ctx: CliContext, qid: str) -> None:
    """Make one message's queued recipients due now."""
    from pochta.queue import Spool

    spool = Spool(ctx.settings().data_dir)
    try:
        if not spool.messages(qid):
            raise UserFacingError(f"no queued message {qid}")
        count = spool.retry(qid)
    finally:
        spool.close()
    click.echo(f"{qid}: {count} recipients due now")


@queue.command()
@click.argument("qid")
@pass_ctx
def delete(ctx: CliContext, qid: str) -> None:
    """Drop a message without delivering or bouncing it."""
    from pochta.observe.trace import Trace
    from pochta.queue import Spool

    data_dir = ctx.settings().data_dir
    spool = Spool(data_dir)
    try:
        if not spool.delete(qid):
            raise UserFacingError(f"no queued message {qid}")
    finally:
        spool.close()
    # So that `pochta trace` tells why the message stopped here.
    trace = Trace(data_dir / "trace")
    trace.record("dropped", qid, reason="pochta queue delete")
    trace.close()
    click.echo(f"{qid}: deleted")


COMMANDS = (queue,)
