"""Pure parts of the IMAP session: LIST patterns, SEARCH MODSEQ detection, the
bounded line reader of the connection layer."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.imap.connection import Closed, Connection
from pochta.imap.mailbox import pattern_regex
from pochta.imap.selected import _absent, uses_modseq
from pochta.imap.types import (
    SearchAll,
    SearchAnd,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SequenceSet,
)


@pytest.mark.parametrize(
    ("reference", "pattern", "name", "matches"),
    [
        ("", "*", "a/b/c", True),
        ("", "%", "a/b", False),
        ("", "%", "a", True),
        ("a/", "%", "a/b", True),
        ("", "inbox", "INBOX", True),
        ("", "Inbox/%", "INBOX/x", True),
        ("", "INBOXES", "INBOX", False),
        ("", "a.b", "aXb", False),  # regex metacharacters are literal
        ("", "(x)+", "(x)+", True),
    ],
)
def test_pattern_regex(reference: str, pattern: str, name: str, matches: bool) -> None:
    assert bool(pattern_regex(reference, pattern).fullmatch(name)) is matches


def test_uses_modseq() -> None:
    assert uses_modseq(SearchModSeq(5))
    assert uses_modseq(SearchNot(SearchOr(SearchAll(), SearchAnd((SearchModSeq(1),)))))
    assert not uses_modseq(SearchAnd((SearchAll(), SearchNot(SearchAll()))))


async def test_connection_discards_overlong_lines_and_reads_literals() -> None:
    conn = Connection(lambda _c: None)
    conn.data_received(b"x" * 100 + b"\r\na1 NOOP\r\n")
    assert await conn.read_line(50) is None
    assert await conn.read_line(50) == b"a1 NOOP\r\n"
    conn.data_received(b"abcdef")
    assert await conn.read_exactly(4) == b"abcd"
    with pytest.raises(TimeoutError):
        await conn.read_line(50, silence=0.01)
    conn.eof_received()
    with pytest.raises(Closed):
        await conn.read_line(50)


async def test_connection_silence_counts_from_each_wait() -> None:
    """One timer per connection: a later, shorter wait still times out on time,
    and input during a wait restarts the count for the next wait."""
    loop = asyncio.get_running_loop()
    conn = Connection(lambda _c: None)
    # A long wait first arms the timer far ahead ...
    reader = asyncio.ensure_future(conn.read_line(50, silence=60))
    await asyncio.sleep(0.01)
    conn.data_received(b"a1 NOOP\r\n")
    assert await reader == b"a1 NOOP\r\n"
    # ... a shorter one must not wait for it.
    started = loop.time()
    with pytest.raises(TimeoutError):
        await conn.read_line(50, silence=0.05)
    assert loop.time() - started < 5
    # Input 0.06 s into a 0.1 s wait: the next wait gets its full 0.1 s.
    reader = asyncio.ensure_future(conn.read_line(50, silence=0.1))
    await asyncio.sleep(0.06)
    conn.data_received(b"a2 NOOP\r\n")
    assert await reader == b"a2 NOOP\r\n"
    started = loop.time()
    with pytest.raises(TimeoutError):
        await conn.read_line(50, silence=0.1)
    assert loop.time() - started >= 0.099


async def test_connection_overlong_line_split_across_packets() -> None:
    conn = Connection(lambda _c: None)
    reader = asyncio.ensure_future(conn.read_line(10))
    for _ in range(5):
        conn.data_received(b"y" * 8)
        await asyncio.sleep(0)
    conn.data_received(b"\r\nok\r\n")
    assert await reader is None
    assert await conn.read_line(10) == b"ok\r\n"


@given(
    st.lists(st.integers(1, 60), unique=True).map(sorted),
    st.lists(st.tuples(st.integers(1, 70), st.integers(0, 10)), max_size=6),
)
def test_absent_ranges_match_the_set_difference(
    present: list[int], spans: list[tuple[int, int]]
) -> None:
    """``_absent`` (VANISHED after pruned tombstones) computes, as ranges,
    exactly the numbers of ``within`` missing from ``present``."""
    within = SequenceSet(tuple((lo, lo + n) for lo, n in spans)).bounds(80) if spans else []
    got = _absent(present, within)
    numbers = [n for lo, hi in got for n in range(lo, hi + 1)]
    want = [n for lo, hi in within for n in range(lo, hi + 1) if n not in set(present)]
    assert numbers == want
    assert all(a <= b for a, b in got)
    assert all(got[i][1] < got[i + 1][0] for i in range(len(got) - 1))
