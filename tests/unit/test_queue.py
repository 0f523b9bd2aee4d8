"""The outbound queue with a scripted deliverer and a fake clock."""

from __future__ import annotations

import email
import email.policy
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from pochta.config import DeliverySettings
from pochta.observe.trace import NO_TRACE, Trace, find
from pochta.queue import Outcome, Spool
from pochta.queue.runner import QueueRunner

MSG = b"From: alice@one.test\r\nTo: bob@two.test\r\nSubject: hi\r\n\r\nhello\r\n"
OK = Outcome(250, "2.0.0", "OK", "mx.two.test")
LATER = Outcome(451, "4.7.1", "Greylisted, try later", "mx.two.test")
NO = Outcome(550, "5.1.1", "No such user", "mx.two.test")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """Answers each attempt from a list of outcomes per recipient."""

    def __init__(self, answers: dict[str, list[Outcome]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, tuple[str, ...], bytes]] = []

    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes, *, qid: str = ""
    ) -> dict[str, Outcome]:
        self.calls.append((domain, mail_from, tuple(rcpts), data))
        return {r: self.answers[r].pop(0) for r in rcpts}


class Collect:
    """The local deliverer stand-in: keeps what it is given (DSNs)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, tuple[str, ...], bytes]] = []

    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes, *, qid: str = ""
    ) -> dict[str, Outcome]:
        self.got.append((mail_from, tuple(rcpts), data))
        return {r: Outcome(250, "2.0.0", "stored") for r in rcpts}


def make(
    tmp_path: Path, script: Script, *, trace: Trace = NO_TRACE, **settings: object
) -> tuple[QueueRunner, Clock, Collect]:
    clock = Clock()
    local = Collect()
    spool = Spool(tmp_path)
    runner = QueueRunner(
        spool,
        hostname="mail.one.test",
        settings=DeliverySettings(**settings),  # type: ignore[arg-type]
        route=lambda domain: local if domain == "one.test" else script,
        clock=clock,
        trace=trace,
    )
    return runner, clock, local


async def test_enqueue_many_queues_all_copies_or_none(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [OK], "carol@three.test": [OK]})
    runner, _, _ = make(tmp_path, script)
    qids = await runner.enqueue_many(
        [
            ("alice@one.test", ["bob@two.test"], b"A" + MSG),
            ("SRS0=x@one.test", ["carol@three.test"], b"B" + MSG),
        ]
    )
    assert len(set(qids)) == 2
    assert [runner.spool.read(q) for q in qids] == [b"A" + MSG, b"B" + MSG]
    # The second copy of a batch fails (its queue id is taken): the first is
    # not kept either, so a client's retry cannot queue it twice.
    taken = qids[0]
    with pytest.raises(sqlite3.IntegrityError):
        runner.spool.enqueue_many(
            [
                ("NEWID", "a@one.test", ["x@two.test"], MSG),
                (taken, "a@one.test", ["y@two.test"], MSG),
            ]
        )
    assert {m.qid for m in runner.spool.messages()} == set(qids)
    runner.spool.close()


async def test_enqueue_is_durable_and_resumes_after_restart(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [OK]})
    runner, _, _ = make(tmp_path, script)
    qid = await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    assert runner.spool.read(qid) == MSG
    runner.spool.close()
    # "Restart": a new spool on the same directory finds the message due.
    runner2, _, _ = make(tmp_path, script)
    (message,) = runner2.spool.messages()
    assert message.qid == qid and message.recipients[0].state == "queued"
    await runner2.run_once()
    assert script.calls == [("two.test", "alice@one.test", ("bob@two.test",), MSG)]
    assert runner2.spool.messages() == []
    with pytest.raises(FileNotFoundError):
        runner2.spool.read(qid)
    runner2.spool.close()


async def test_temporary_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [LATER, LATER, OK]})
    runner, clock, local = make(tmp_path, script, retry_intervals=(60, 300))
    await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    await runner.run_once()
    (message,) = runner.spool.messages()
    (rcpt,) = message.recipients
    assert rcpt.attempts == 1 and rcpt.next_try == clock.now + 60
    assert rcpt.last_reply == "451 4.7.1 Greylisted, try later"
    await runner.run_once()  # not due yet: nothing happens
    assert len(script.calls) == 1
    clock.now += 60
    await runner.run_once()
    assert runner.spool.messages()[0].recipients[0].next_try == clock.now + 300
    clock.now += 300
    await runner.run_once()
    assert len(script.calls) == 3 and runner.spool.messages() == []
    assert local.got == []  # no bounce
    runner.spool.close()


async def test_permanent_failure_bounces_a_dsn(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [NO], "carol@two.test": [OK]})
    runner, _, local = make(tmp_path, script)
    qid = await runner.enqueue("alice@one.test", ["bob@two.test", "carol@two.test"], MSG)
    await runner.run_once()  # delivery fails for bob, DSN enqueued
    await runner.run_once()  # the DSN goes to alice (local)
    (dsn_from, dsn_to, dsn) = local.got[0]
    assert dsn_from == "" and dsn_to == ("alice@one.test",)
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["Auto-Submitted"] == "auto-replied"
    _human, status, headers = parsed.iter_parts()
    assert status.get_content_type() == "message/delivery-status"
    text = dsn.decode()
    assert "Final-Recipient: rfc822; bob@two.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Remote-MTA: dns; mx.two.test" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in text
    assert "carol@two.test" not in text.split("Content-Type: text/rfc822-headers")[0]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: hi" in text and "hello" not in text.split("text/rfc822-headers")[1]
    assert runner.spool.messages() == []
    assert qid
    runner.spool.close()


async def test_no_bounce_for_a_bounce(tmp_path: Path) -> None:
    script = Script({"alice@two.test": [NO]})
    runner, _, local = make(tmp_path, script)
    await runner.enqueue("", ["alice@two.test"], b"Subject: DSN\r\n\r\nx\r\n")
    await runner.run_once()
    await runner.run_once()
    assert local.got == [] and runner.spool.messages() == []
    runner.spool.close()


async def test_expiry_turns_a_temporary_failure_into_a_bounce(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [LATER, LATER]})
    trace = Trace(tmp_path / "trace")
    runner, clock, local = make(tmp_path, script, trace=trace, retry_intervals=(100,), max_age=150)
    qid = await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    await runner.run_once()
    clock.now += 200
    await runner.run_once()
    await runner.run_once()
    assert len(local.got) == 1 and b"Status: 4.7.1" in local.got[0][2]
    assert runner.spool.messages() == []
    runner.spool.close()
    # The trace says the second 4xx was the end, not another deferral.
    trace.close()
    events = [e for e in find(tmp_path / "trace", qid) if e["qid"] == qid]
    assert [(e["ev"], e.get("attempt"), e.get("expired")) for e in events] == [
        ("deferred", 1, None),
        ("failed", 2, True),
        ("dsn", None, None),
    ]


async def test_delay_notice_is_sent_once(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [LATER] * 5})
    runner, clock, local = make(
        tmp_path, script, retry_intervals=(1000,), delay_notice=500, max_age=10_000
    )
    await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    await runner.run_once()
    clock.now += 600
    await runner.run_once()  # the delay notice is enqueued
    await runner.run_once()  # and delivered locally
    clock.now += 1000
    await runner.run_once()
    await runner.run_once()
    notices = [g for g in local.got if b"Action: delayed" in g[2]]
    assert len(notices) == 1
    assert b"Will-Retry-Until: " in notices[0][2]
    runner.spool.close()


async def test_operator_retry_and_delete(tmp_path: Path) -> None:
    script = Script({"bob@two.test": [LATER, OK]})
    runner, clock, _ = make(tmp_path, script, retry_intervals=(3600,))
    qid = await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    await runner.run_once()
    assert runner.spool.retry(qid, clock.now) == 1
    await runner.run_once()
    assert runner.spool.messages() == []
    qid2 = await runner.enqueue("alice@one.test", ["bob@two.test"], MSG)
    assert runner.spool.delete(qid2)
    assert not runner.spool.delete(qid2)
    with pytest.raises(FileNotFoundError):
        runner.spool.read(qid2)
    runner.spool.close()


async def test_per_domain_concurrency(tmp_path: Path) -> None:
    script = Script({f"u{i}@two.test": [OK] for i in range(5)})
    runner, _, _ = make(tmp_path, script, per_domain=2)
    for i in range(5):
        await runner.enqueue("alice@one.test", [f"u{i}@two.test"], MSG)
    await runner._tick()
    assert len(runner._inflight) == 2
    for _ in range(3):
        await runner.run_once()
    assert runner.spool.messages() == []
    runner.spool.close()


@pytest.mark.parametrize("bad", [b"", b"no header end"])
async def test_dsn_of_odd_messages(tmp_path: Path, bad: bytes) -> None:
    script = Script({"bob@two.test": [NO]})
    runner, _, local = make(tmp_path, script)
    await runner.enqueue("alice@one.test", ["bob@two.test"], bad)
    await runner.run_once()
    await runner.run_once()
    assert local.got and local.got[0][2].endswith(b"--\r\n")
    runner.spool.close()


def test_queue_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pochta.cli import _register, cli

    _register()
    config = tmp_path / "pochta.toml"
    config.write_text('hostname = "mail.one.test"\ndata_dir = "data"\n')
    spool = Spool(tmp_path / "data")
    spool.enqueue("QID1", "alice@one.test", ["bob@two.test"], MSG, now=1.0)
    spool.record("QID1", {"bob@two.test": LATER}, 2.0, (3600,), 10**9)
    spool.close()
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--config", str(config), "queue", *args])
        assert result.exit_code == 0, result.output
        return result.output

    listing = run("list")
    assert "QID1" in listing and "<bob@two.test>  queued  attempts=1" in listing
    assert "451 4.7.1 Greylisted, try later" in listing
    assert "1 recipients due now" in run("flush")
    assert "QID1: 1 recipients due now" in run("retry", "QID1")
    assert "QID1: deleted" in run("delete", "QID1")
    assert run("list").strip() == "queue is empty"
    traced = runner.invoke(cli, ["--config", str(config), "trace", "QID1"])
    assert "dropped" in traced.output and "reason=pochta queue delete" in traced.output
    missing = runner.invoke(cli, ["--config", str(config), "queue", "delete", "QID1"])
    assert missing.exit_code != 0


async def test_spool_group_commits_concurrent_writers(tmp_path: Path) -> None:
    import asyncio

    spool = Spool(tmp_path)
    await asyncio.gather(
        *(
            asyncio.to_thread(spool.enqueue, f"Q{i}", "a@one.test", ["b@two.test"], MSG)
            for i in range(40)
        )
    )
    assert len(spool.messages()) == 40
    assert spool.commits < 40  # several enqueues shared one commit
    spool.close()
