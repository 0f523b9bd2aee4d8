"""pochta.imap.search: every SEARCH key against a small corpus of real messages.

The corpus is analyzed with ``pochta.mime.analyze`` exactly as delivery does;
searches go through the parser, so each case reads like the client's command.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pochta.imap.parser import parse_command
from pochta.imap.search import (
    Matcher,
    Need,
    SearchContext,
    SearchMessage,
    compile_search,
    decode_header_value,
    filter_messages,
    needs,
    search,
)
from pochta.imap.types import Search, SearchKey, SequenceSet
from pochta.mime import analyze
from pochta.store.interface import MessageInfo

UTC = dt.UTC
PLUS10 = dt.timezone(dt.timedelta(hours=10))

# 1: plain text, encoded-word Subject and From, Date in -0800 late in the evening.
PLAIN = (
    b"From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.org>\r\n"
    b"To: Bob <bob@example.test>, carol@example.test\r\n"
    b"Cc: team@example.test\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\r\n"
    b"Date: Sun, 31 Dec 2023 23:30:00 -0800\r\n"
    b"Message-ID: <plain@example.org>\r\n"
    b"X-Mailer: Pochta Test\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the quarterly REPORT is attached.\r\n"
)

# 2: multipart/alternative: quoted-printable UTF-8 text, base64 HTML.
HTML = "<p>Bonjour <b>Zoë</b>, voici le café.</p>"
ALTERNATIVE = (
    b"From: Zoe <zoe@example.fr>\r\n"
    b"To: bob@example.test\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9?= =?utf-8?q?_cr=C3=A8me?=\r\n"
    b"Date: Mon, 1 Jan 2024 09:00:00 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"preamble mentions PREAMBLEWORD\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Un cr=C3=A8me br=C3=BBl=C3=A9e tr=C3=A8s sp=\r\n"
    b"=C3=A9cial.\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + base64.encodebytes(HTML.encode()).replace(b"\n", b"\r\n") + b"--b1--\r\n"
    b"epilogue EPILOGUEWORD\r\n"
)

# 3: multipart/mixed: Latin-1 text, a binary attachment, a forwarded message.
ATTACHMENT = base64.encodebytes(b"SECRETWORD inside a zip\x00\x01").replace(b"\n", b"\r\n")
MIXED = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.test\r\n"
    b"Bcc: hidden@example.test\r\n"
    b"Subject: Fwd: minutes\r\n"
    b"Date: 2 Feb 2024 10:00 +0000\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xfc\xdfe, see the forwarded minutes.\r\n"
    b"--outer\r\n"
    b"Content-Type: application/zip\r\n"
    b'Content-Disposition: attachment; filename="data.zip"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + ATTACHMENT + b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: dave@example.net\r\n"
    b"Subject: =?UTF-8?Q?Protokoll_=C3=84nderungen?=\r\n"
    b"\r\n"
    b"Inner body with BUDGETWORD.\r\n"
    b"--outer--\r\n"
)

# 4: no Date header, bare LF line ends, 8-bit UTF-8 header (RFC 6532).
BARE = "From: ünïcode@example.org\nSubject: Ünïcode straße\n\nkurz\n".encode()

# 5: a damaged encoded word and an unknown charset; garbage base64 body.
BROKEN = (
    b"From: x@example.org\r\n"
    b"Subject: =?x-unknown?Q?Hello_there?= =?utf-8?B?###?= tail\r\n"
    b"Date: not a date\r\n"
    b"Content-Type: text/plain; charset=zlib_codec\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"SGVsbG8gd29ybGQ=!!!\r\nQUJD\r\n"
)

CORPUS = [PLAIN, ALTERNATIVE, MIXED, BARE, BROKEN]
UIDS = [10, 20, 30, 40, 50]
FLAGS = [
    frozenset({"\\Seen", "\\Answered"}),
    frozenset({"\\Flagged", "$Important"}),
    frozenset({"\\Seen", "\\Deleted", "\\Recent"}),
    frozenset({"\\Draft", "\\Recent"}),
    frozenset(),
]
MODSEQS = [5, 7, 9, 11, 13]
INTERNAL = [
    dt.datetime(2024, 1, 1, 7, 30, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
    dt.datetime(2024, 2, 2, 10, 0, tzinfo=UTC),
    dt.datetime(2024, 2, 29, 23, 0, tzinfo=UTC),
    dt.datetime(2024, 3, 1, 0, 30, tzinfo=PLUS10),  # 2024-02-29 14:30 UTC
]


def full(i: int) -> SearchMessage:
    """Message i (0-based) with its meta and data."""
    data = CORPUS[i]
    return SearchMessage(
        i + 1, UIDS[i], FLAGS[i], MODSEQS[i], len(data), INTERNAL[i], analyze(data), data
    )


def bare(i: int) -> SearchMessage:
    """Message i as the index row alone."""
    m = full(i)
    return SearchMessage(m.seq, m.uid, m.flags, m.modseq, m.size, m.internal_date)


MESSAGES = [full(i) for i in range(len(CORPUS))]
CTX = SearchContext(max_seq=5, max_uid=50, saved=frozenset({20, 50}))


def key_of(program: str) -> SearchKey:
    _, command = parse_command(b"t SEARCH CHARSET UTF-8 " + program.encode())
    assert isinstance(command, Search)
    return command.key


def uids(program: str, ctx: SearchContext = CTX) -> list[int]:
    matcher = compile_search(key_of(program), ctx)
    matched, undecided = filter_messages(matcher, MESSAGES)
    assert undecided == []
    return [m.uid for m in matched]


CASES: list[tuple[str, list[int]]] = [
    ("ALL", [10, 20, 30, 40, 50]),
    # flags (RFC 9051 §6.4.4)
    ("SEEN", [10, 30]),
    ("UNSEEN", [20, 40, 50]),
    ("ANSWERED", [10]),
    ("UNANSWERED", [20, 30, 40, 50]),
    ("DELETED", [30]),
    ("UNDELETED", [10, 20, 40, 50]),
    ("DRAFT", [40]),
    ("UNDRAFT", [10, 20, 30, 50]),
    ("FLAGGED", [20]),
    ("UNFLAGGED", [10, 30, 40, 50]),
    ("KEYWORD $Important", [20]),
    ("KEYWORD $IMPORTANT", [20]),  # keywords compare case-insensitively
    ("UNKEYWORD $important", [10, 30, 40, 50]),
    ("KEYWORD $Junk", []),
    ("RECENT", [30, 40]),
    ("NEW", [40]),
    ("OLD", [10, 20, 50]),
    # sizes
    (f"LARGER {len(PLAIN)}", [20, 30]),
    (f"SMALLER {len(PLAIN)}", [40, 50]),
    (f"LARGER {len(PLAIN) - 1} SMALLER {len(PLAIN) + 1}", [10]),
    # sequence sets, UIDs, $ (RFC 5182)
    ("1:2", [10, 20]),
    ("*", [50]),
    ("4:*", [40, 50]),
    ("*:4", [40, 50]),
    ("2,4,9", [20, 40]),
    ("UID 20:40", [20, 30, 40]),
    ("UID 45:*", [50]),
    ("UID 60:*", [50]),  # "*" is the highest UID, so 60:* is 50:60
    ("UID 11:19", []),
    ("$", [20, 50]),
    ("UID $", [20, 50]),
    # MODSEQ (RFC 7162 §3.1.5)
    ("MODSEQ 9", [30, 40, 50]),
    ('MODSEQ "/flags/\\\\seen" all 12', [50]),
    # internal date, disregarding time, in its own offset
    ("ON 1-Jan-2024", [10, 20]),
    ("BEFORE 1-Jan-2024", []),
    ("BEFORE 2-Jan-2024", [10, 20]),
    ("SINCE 29-Feb-2024", [40, 50]),
    ("ON 1-Mar-2024", [50]),
    # sent date: the Date: header's own date (23:30 -0800 is still 31 Dec)
    ("SENTON 31-Dec-2023", [10]),
    ("SENTBEFORE 1-Jan-2024", [10]),
    ("SENTSINCE 1-Jan-2024", [20, 30, 40, 50]),
    ("SENTON 2-Feb-2024", [30]),
    ("SENTON 29-Feb-2024", [40]),  # no Date: the internal date's date
    ("SENTON 1-Mar-2024", [50]),  # unreadable Date: the internal date's date
    # header fields: decoded, unfolded, case-insensitive substring
    ('FROM "jörg"', [10]),
    ('FROM "MÜLLER"', [10]),
    ("FROM joerg@example", [10]),
    ("FROM example.org", [10, 30, 40, 50]),
    ("TO carol", [10]),
    ("TO bob@example.test", [10, 20, 30]),
    ("CC team", [10]),
    ("BCC hidden", [30]),
    ('SUBJECT "grüße"', [10]),
    ('SUBJECT "GRÜSSE"', [10]),  # full case folding: ß is ss
    ('SUBJECT "münchen"', [10]),
    ('SUBJECT "café crème"', [20]),  # adjacent encoded-words join without the blank
    ('SUBJECT "straße"', [40]),  # raw UTF-8 header
    ('SUBJECT "hello there"', [50]),  # unknown charset read as UTF-8
    ("SUBJECT tail", [50]),
    ('SUBJECT ""', [10, 20, 30, 40, 50]),
    ('CC ""', [10]),  # empty string: the messages that have the field
    ("SUBJECT Protokoll", []),  # the forwarded message's header is not the message's
    ('HEADER X-Mailer "pochta test"', [10]),
    ('HEADER x-mailer ""', [10]),
    ("HEADER Message-ID plain@", [10]),
    ("HEADER X-Absent x", []),
    # BODY: decoded text parts; not attachments, preamble or epilogue
    ("BODY quarterly", [10]),
    ("BODY report", [10]),
    ('BODY "crème brûlée"', [20]),  # quoted-printable UTF-8
    ('BODY "spécial"', [20]),  # soft line break joined
    ('BODY "zoë"', [20]),  # base64 HTML part
    ('BODY "grüße"', [30]),  # ISO-8859-1 part
    ("BODY budgetword", [30]),  # inside message/rfc822
    ('BODY "Änderungen"', [30]),  # encapsulated message header counts as body
    ("BODY secretword", []),  # application/zip attachment is not text
    ("BODY preambleword", []),
    ("BODY epilogueword", []),
    ("BODY Bob", [10]),
    ("BODY kurz", [40]),
    ('BODY "hello world"', [50]),  # base64 with junk after the padding
    ('BODY "münchen"', []),  # subject is header, not body
    # TEXT: header, MIME headers and body
    ('TEXT "münchen"', [10]),
    ("TEXT quarterly", [10]),
    ("TEXT data.zip", [30]),  # a MIME header field
    ("TEXT quoted-printable", [20]),
    ("TEXT secretword", []),
    # boolean structure
    ("NOT SEEN", [20, 40, 50]),
    ("OR SEEN FLAGGED", [10, 20, 30]),
    ('OR BODY quarterly SUBJECT "café"', [10, 20]),
    ("(SEEN UNDELETED)", [10]),
    ("SEEN NOT DELETED", [10]),
    ("NOT (OR SEEN DRAFT)", [20, 50]),
    ("OR NOT BODY report UID 10", [10, 20, 30, 40, 50]),
    ('OR (SEEN BODY report) (FROM zoe BODY "café")', [10, 20]),
    ("NOT NOT TEXT hello", [10, 50]),
]


@pytest.mark.parametrize(("program", "expected"), CASES, ids=[c[0] for c in CASES])
def test_search_key(program: str, expected: list[int]) -> None:
    assert uids(program) == expected


def test_internal_dates_in_a_server_time_zone() -> None:
    # In UTC message 5 was received on 29 Feb, message 1 still on 1 Jan.
    ctx = SearchContext(5, 50, tz=UTC)
    assert uids("ON 29-Feb-2024", ctx) == [40, 50]
    # At -08:00, message 1 (07:30 UTC) and 2 (08:00 UTC) fall on different days.
    ctx = SearchContext(5, 50, tz=dt.timezone(dt.timedelta(hours=-8)))
    assert uids("ON 31-Dec-2023", ctx) == [10]
    assert uids("ON 1-Jan-2024", ctx) == [20]


def test_star_and_saved_in_an_empty_context() -> None:
    ctx = SearchContext(max_seq=0, max_uid=0)
    assert uids("*", ctx) == []
    assert uids("UID 1:*", ctx) == []
    assert uids("$", ctx) == []  # nothing saved


@pytest.mark.parametrize(
    ("program", "need"),
    [
        ("ALL", Need.NONE),
        ("SEEN UID 1:* 1:3 LARGER 4 MODSEQ 1 SINCE 1-Jan-2000 $", Need.NONE),
        ("SENTON 1-Jan-2000", Need.META),
        ("FROM x", Need.DATA),
        ("HEADER X-Y z", Need.DATA),
        ("BODY x", Need.META | Need.DATA),
        ("NOT TEXT x", Need.META | Need.DATA),
        ("OR SEEN SENTSINCE 1-Jan-2000", Need.META),
        ("SEEN (FROM x SENTON 1-Jan-2000)", Need.META | Need.DATA),
        ("SUBJECT x", Need.META),  # from the cached envelope, no file read
    ],
)
def test_needs(program: str, need: Need) -> None:
    key = key_of(program)
    assert needs(key) == need
    assert compile_search(key, CTX).need == need


def test_cheap_keys_decide_without_content() -> None:
    views = [bare(i) for i in range(5)]
    matcher = compile_search(key_of("SEEN BODY report"), CTX)
    matched, undecided = filter_messages(matcher, views)
    # UNSEEN messages are decided (False) by the flag; only the seen ones need bodies.
    assert matched == [] and [m.uid for m in undecided] == [10, 30]
    matcher = compile_search(key_of("OR FLAGGED SUBJECT x"), CTX)
    matched, undecided = filter_messages(matcher, views)
    assert [m.uid for m in matched] == [20]
    assert [m.uid for m in undecided] == [10, 30, 40, 50]
    assert compile_search(key_of("NOT BODY x"), CTX)(views[0]) is None
    # Meta alone decides SENT* but not BODY.
    with_meta = SearchMessage(1, 10, frozenset(), 1, 1, INTERNAL[0], analyze(PLAIN))
    assert compile_search(key_of("SENTON 31-Dec-2023"), CTX)(with_meta) is True
    assert compile_search(key_of("BODY hello"), CTX)(with_meta) is None
    # Data alone decides header keys.
    with_data = SearchMessage(1, 10, frozenset(), 1, 1, INTERNAL[0], None, PLAIN)
    assert compile_search(key_of('FROM "jörg"'), CTX)(with_data) is True
    assert compile_search(key_of('TEXT "jörg"'), CTX)(with_data) is None


class CountingLoader:
    """A loader that records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], Need]] = []

    async def __call__(self, views: Sequence[SearchMessage], need: Need) -> Sequence[SearchMessage]:
        self.calls.append(([v.uid for v in views], need))
        return [full(UIDS.index(v.uid)) for v in views]


async def test_search_loads_only_undecided_messages_in_batches() -> None:
    views = [bare(i) for i in range(5)]
    loader = CountingLoader()
    result = await search(key_of("UNDELETED TEXT e"), views, CTX, loader, batch=2)
    assert [m.uid for m in result] == [10, 20, 40, 50]
    assert loader.calls == [([10, 20], Need.META | Need.DATA), ([40, 50], Need.META | Need.DATA)]

    loader = CountingLoader()
    result = await search(key_of("FLAGGED"), views, CTX, loader)
    assert [m.uid for m in result] == [20] and loader.calls == []

    # Without a loader, undecided messages do not match.
    assert await search(key_of("OR SEEN BODY kurz"), views, CTX) == [views[0], views[2]]


async def test_search_with_a_loader_that_cannot_complete() -> None:
    async def lost(views: Sequence[SearchMessage], need: Need) -> Sequence[SearchMessage]:
        return views  # the messages vanished meanwhile

    views = [bare(i) for i in range(5)]
    assert await search(key_of("BODY kurz"), views, CTX, lost) == []


def test_matcher_caches_decoded_content_per_message() -> None:
    matcher: Matcher = compile_search(
        key_of("BODY report TEXT report SUBJECT x HEADER to bob"), CTX
    )
    assert matcher(MESSAGES[0]) is False
    assert compile_search(key_of("BODY report TEXT report"), CTX)(MESSAGES[0]) is True


def test_uid_and_sequence_ranges_use_bisection_on_big_sets() -> None:
    big = SequenceSet(tuple((n, n) for n in range(1, 60_000, 2)))
    _, command = parse_command(f"t UID SEARCH UID {big}".encode())
    assert isinstance(command, Search)
    matcher = compile_search(command.key, SearchContext(5, 60_000))
    assert [m.uid for m in MESSAGES if matcher(m)] == []
    odd = [SearchMessage(1, 59_999, frozenset(), 1, 1, INTERNAL[0])]
    assert matcher(odd[0]) is True


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"plain", "plain"),
        (b"=?UTF-8?B?w6TDtsO8?=", "äöü"),
        (b"=?utf-8?q?a_b?=", "a b"),
        (b"=?UTF-8?Q?a?=  =?UTF-8?Q?b?=", "ab"),  # blanks between words dropped
        (b"=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab"),  # also across folding
        (b"=?UTF-8?Q?a?= x =?UTF-8?Q?b?=", "a x b"),
        (b"=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=", "€"),  # a character split across words
        (b"=?iso-8859-1?q?caf=E9?= =?utf-8?q?_cr=C3=A8me?=", "café crème"),
        (b"=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 language suffix
        (b"=?bogus?q?x?=", "x"),
        (b"=?utf-8?b?###?=", ""),
        (b"=?utf-8?x?y?=", "=?utf-8?x?y?="),
        (b"caf\xc3\xa9", "café"),
        (b"\xff", "\ufffd"),
        (b"  folded\r\n\tvalue ", "folded\tvalue"),
    ],
)
def test_decode_header_value(raw: bytes, text: str) -> None:
    assert decode_header_value(raw) == text


def test_from_info() -> None:
    info = MessageInfo(
        uid=7, flags=frozenset({"\\Seen"}), modseq=3, size=99, internal_date=INTERNAL[0]
    )
    view = SearchMessage.from_info(2, info)
    assert (view.seq, view.uid, view.flags, view.modseq, view.size) == (2, 7, info.flags, 3, 99)
    assert view.meta is None and view.data is None


# --- properties ---------------------------------------------------------------------

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROGRAMS = [
    "BODY x",
    'TEXT "é"',
    'BODY ""',
    "HEADER Subject a",
    'FROM ""',
    "SUBJECT =?",
    "SENTON 1-Jan-2024",
    "SENTSINCE 1-Jan-1970",
    "OR TEXT boundary NOT BODY base64",
]
MIME_BITS = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Type: text/plain; charset=utf-16\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Subject: =?utf-8?b?w6k=?= =?x?q?=FF?=\r\n",
    b"Date: Mon, 31 Feb 99999 25:61 +9999\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"=C3=\r\n",
    b"w6k=\r\n",
]
messages = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.sampled_from(MIME_BITS), st.binary(max_size=20)), max_size=25).map(
        b"".join
    ),
)


@SETTINGS
@given(messages, st.sampled_from(PROGRAMS))
def test_search_is_total_on_any_message(data: bytes, program: str) -> None:
    message = SearchMessage(1, 1, frozenset(), 1, len(data), INTERNAL[0], analyze(data), data)
    assert compile_search(key_of(program), CTX)(message) in (True, False)


@SETTINGS
@given(st.binary(max_size=200))
def test_decode_header_value_is_total(raw: bytes) -> None:
    assert isinstance(decode_header_value(raw), str)


def test_flag_searches_are_fast() -> None:
    import time

    views = [
        SearchMessage(n, n * 2, FLAGS[n % 5], n, 1000 + n, INTERNAL[n % 5])
        for n in range(1, 20_001)
    ]
    matcher = compile_search(
        key_of("UNSEEN UNDELETED UID 100:* SINCE 1-Jan-2024"), SearchContext(20_000, 40_000)
    )
    start = time.perf_counter()
    matched, undecided = filter_messages(matcher, views)
    elapsed = time.perf_counter() - start
    expected = [v for v in views if v.uid >= 100 and not v.flags & {"\\Seen", "\\Deleted"}]
    assert not undecided and matched == expected
    assert elapsed < 1.0, elapsed


def test_search_views_are_renumbered_in_place_after_an_expunge() -> None:
    """The session's cached SEARCH views survive an expunge before them:
    renumbered, the same objects, their loaded meta kept."""
    import dataclasses

    from pochta.imap.selected import Selected

    when = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    view = Selected("INBOX", False, 7, 1)
    for uid in (10, 11, 12):
        view.uids.append(uid)
        view.info[uid] = MessageInfo(uid, frozenset(), 1, 100, when)
    first = view.search_messages()
    assert [(m.seq, m.uid) for m in first] == [(1, 10), (2, 11), (3, 12)]
    meta = analyze(b"Subject: kept\r\n\r\nbody\r\n")
    view.remember([dataclasses.replace(first[2], meta=meta)])
    # UID 10 is expunged; UID 11 is re-flagged (a new row object).
    view.uids.remove(10)
    del view.info[10]
    view.info[11] = MessageInfo(11, frozenset({"\\Seen"}), 2, 100, when)
    second = view.search_messages()
    assert [(m.seq, m.uid, m.flags) for m in second] == [
        (1, 11, frozenset({"\\Seen"})),
        (2, 12, frozenset()),
    ]
    assert second[1].meta is meta  # renumbered, meta kept
