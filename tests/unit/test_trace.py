"""The message trace store: recording, finding by Message-ID or queue id, links, pruning."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pochta.observe import trace as trace_module
from pochta.observe.trace import NO_TRACE, Trace, describe, find, message_id, normalize_id

DAY = 86400.0


def test_message_id_from_the_header_block_only() -> None:
    msg = b"Subject: x\r\nMessage-ID:  <a.b@example.test>\r\n\r\nMessage-ID: <body@x>\r\n"
    assert message_id(msg) == "<a.b@example.test>"
    assert message_id(b"message-id:<lower@x>\r\n\r\n") == "<lower@x>"
    assert message_id(b"Subject: none\r\n\r\nMessage-ID: <in-body@x>\r\n") is None
    assert message_id(b"X-Message-ID: <not-it@x>\r\n\r\n") is None


def test_normalize_id_adds_brackets_once() -> None:
    assert normalize_id("a@b") == "<a@b>"
    assert normalize_id(" <a@b> ") == "<a@b>"


def test_find_by_message_id_or_queue_id_in_time_order(tmp_path: Path) -> None:
    trace = Trace(tmp_path)
    trace.record("received", "Q1", mid="<m1@x>", client="192.0.2.1")
    trace.record("received", "Q2", mid="<other@x>")
    trace.record("stored", "Q1", user="bob@x", mailbox="INBOX", uid=7)
    trace.close()
    for key in ("<m1@x>", "m1@x", "Q1"):
        events = find(tmp_path, key)
        assert [e["ev"] for e in events] == ["received", "stored"], key
        assert events[1]["uid"] == 7
    assert find(tmp_path, "<nothing@x>") == []
    assert find(tmp_path, "Q3") == []


def test_links_reach_forwarded_copies_and_dsns(tmp_path: Path) -> None:
    trace = Trace(tmp_path)
    trace.record("submitted", "Q1", mid="<m@x>", user="alice@x")
    trace.record("failed", "Q1", to="nobody@y", reply="550 5.1.1 No such user")
    trace.record("dsn", "Q1", links=["D1"], kind="failed")
    trace.record("sent", "D1", relay="local")
    trace.record("stored", "D1", user="alice@x", mailbox="INBOX", uid=1)
    trace.record("forwarded", "Q1", links=["F1"], to=["far@z"])
    trace.record("mx", "F1", domain="z", hosts=["mx.z"])
    trace.record("stored", "UNRELATED", user="carol@x")
    trace.close()
    events = find(tmp_path, "m@x")
    assert [(e["qid"], e["ev"]) for e in events] == [
        ("Q1", "submitted"),
        ("Q1", "failed"),
        ("Q1", "dsn"),
        ("D1", "sent"),
        ("D1", "stored"),
        ("Q1", "forwarded"),
        ("F1", "mx"),
    ]
    # From the DSN's id back to the message it reports on.
    assert {e["qid"] for e in find(tmp_path, "D1")} == {"Q1", "D1", "F1"}


def test_non_ascii_message_id(tmp_path: Path) -> None:
    trace = Trace(tmp_path)
    trace.record("received", "Q1", mid="<письмо@пример.test>")
    trace.close()
    assert [e["qid"] for e in find(tmp_path, "письмо@пример.test")] == ["Q1"]


def test_malformed_lines_and_foreign_files_are_skipped(tmp_path: Path) -> None:
    trace = Trace(tmp_path)
    trace.record("received", "Q1", mid="<m@x>")
    trace.close()
    (day_file,) = tmp_path.glob("*.jsonl")
    with day_file.open("a") as f:
        f.write('not json Q1\n{"qid": ["Q1"]}\n[1, "Q1"]\n{"ev": "x", "qid": "Q1", "t": "soon"}\n')
    (tmp_path / "notes.txt").write_text('{"qid": "Q1", "ev": "stray"}\n')
    events = find(tmp_path, "Q1")
    assert [e["ev"] for e in events] == ["x", "received"]  # no time sorts first
    assert "?" in describe(events[0])


def test_days_are_files_and_old_ones_are_pruned(tmp_path: Path) -> None:
    now = time.time()
    old, recent = tmp_path / "2001-01-01.jsonl", tmp_path / "2001-01-02.jsonl"
    old.write_text(json.dumps({"t": 978307200, "ev": "old", "qid": "Q1"}) + "\n")
    recent.write_text("")
    trace = Trace(tmp_path, keep_days=30)
    assert trace.prune(now) == 2
    assert not old.exists() and not recent.exists()
    trace.record("received", "Q1")  # opening today's file prunes too
    trace.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    # find looks back only as far as asked.
    stale = tmp_path / time.strftime("%Y-%m-%d", time.gmtime(now - 3 * DAY))
    stale.with_suffix(".jsonl").write_text(
        json.dumps({"t": now - 3 * DAY, "ev": "stale", "qid": "Q1"}) + "\n"
    )
    assert [e["ev"] for e in find(tmp_path, "Q1", days=1)] == ["received"]
    assert [e["ev"] for e in find(tmp_path, "Q1", days=7)] == ["stale", "received"]


def test_a_write_failure_pauses_tracing_then_it_tries_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.time()]
    monkeypatch.setattr(trace_module.time, "time", lambda: clock[0])
    (tmp_path / "trace").write_text("not a directory")
    trace = Trace(tmp_path / "trace")
    trace.record("received", "Q1")
    trace.record("stored", "Q1")  # dropped quietly: paused
    assert sum("no tracing for" in r.message for r in caplog.records) == 1
    (tmp_path / "trace").unlink()
    clock[0] += trace_module.RETRY_AFTER - 1
    trace.record("stored", "Q2")  # still paused
    clock[0] += 2
    trace.record("stored", "Q3")
    trace.close()
    assert [e["qid"] for e in find(tmp_path / "trace", "Q3", now=clock[0])] == ["Q3"]
    assert find(tmp_path / "trace", "Q2", now=clock[0]) == []


def test_a_self_referring_value_is_not_recorded(tmp_path: Path) -> None:
    loop: list[object] = []
    loop.append(loop)
    trace = Trace(tmp_path)
    trace.record("stored", "Q1", odd=loop)
    trace.record("stored", "Q2")
    trace.close()
    assert find(tmp_path, "Q1") == [] and len(find(tmp_path, "Q2")) == 1


def test_folded_message_id_and_a_header_block_without_end() -> None:
    assert message_id(b"Message-ID:\r\n <folded@x>\r\n\r\nbody") == "<folded@x>"
    assert message_id(b"Subject: s\r\nMessage-Id: <only-headers@x>\r\n") == "<only-headers@x>"
    # Without a header end, only the first 64 KiB are looked at (it runs on the loop).
    far = b"X: " + b"x" * 70_000 + b"\r\nMessage-ID: <far@x>\r\n"
    assert message_id(far) is None


def test_describe_escapes_what_strangers_wrote() -> None:
    line = describe(
        {"t": 0, "ev": "received", "qid": "Q1", "helo": "\x1b[31mred", "mid": "<a\x9b\u202eb@x>"}
    )
    assert "\x1b" not in line and "\\x1b[31mred" in line
    assert "\x9b" not in line and "\u202e" not in line and "<a\\x9b\\u202eb@x>" in line


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_message_id_never_fails(data: bytes) -> None:
    found = message_id(data)
    assert found is None or (found.startswith("<") and found.endswith(">"))


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(st.text(max_size=80), max_size=8),
    key=st.text(min_size=1, max_size=20).filter(lambda k: k.strip() != ""),
)
def test_find_survives_any_file_content(tmp_path_factory: pytest.TempPathFactory,
                                        lines: list[str], key: str) -> None:  # fmt: skip
    directory = tmp_path_factory.mktemp("trace")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    (directory / f"{day}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8",
                                            errors="surrogatepass")  # fmt: skip
    for event in find(directory, key):
        assert isinstance(event, dict)
        describe(event)


def test_values_that_are_not_json_are_written_as_text(tmp_path: Path) -> None:
    trace = Trace(tmp_path)
    trace.record("stored", "Q1", path=tmp_path, odd="\udcff surrogate")
    trace.close()
    (event,) = find(tmp_path, "Q1")
    assert event["path"] == str(tmp_path) and event["odd"] == "? surrogate"


def test_no_trace_and_events_without_a_queue_id_write_nothing(tmp_path: Path) -> None:
    NO_TRACE.record("received", "Q1")
    NO_TRACE.stored("Q1", [])
    assert NO_TRACE.prune() == 0
    trace = Trace(tmp_path)
    trace.record("mx", "", domain="x.test")  # a deliverer called without a queue id
    trace.close()
    assert list(tmp_path.iterdir()) == []
