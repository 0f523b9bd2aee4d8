"""The Bayesian filter: tokenizer, Fisher combination, training and the Junk trainer."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pochta.antispam.bayes import (
    MAX_TOKENS,
    Bayes,
    JunkTrainer,
    _tokens,
    combine,
    decode_header,
    tokens,
)


def message(
    subject: str,
    body: str,
    *,
    sender: str = "Alice Example <alice@one.test>",
    extra: str = "",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@two.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{abs(hash((subject, body)))}@one.test>\r\n{extra}\r\n{body}\r\n"
    ).encode()


SPAM = [
    message(
        "Cheap pills online pharmacy",
        "Buy cheap viagra pills now, discount pharmacy http://pills.spam.test/buy",
        sender="Pharmacy <deals@spam.test>",
    ),
    message(
        "Winner lottery prize",
        "You are the winner of our lottery prize, claim your money http://win.spam.test",
        sender="Lottery <prize@spam.test>",
    ),
    message(
        "Discount pharmacy offer",
        "Limited offer cheap pills viagra discount, click http://pills.spam.test now",
        sender="Deals <offer@spam.test>",
    ),
]
HAM = [
    message("Meeting agenda", "Hi Bob, the meeting agenda for Tuesday is attached. Regards"),
    message("Project status", "The project status report: release scheduled, tests passing"),
    message("Lunch on Tuesday", "Bob, lunch on Tuesday after the meeting? Regards, Alice"),
]
NEW_SPAM = message(
    "Cheap viagra pharmacy",
    "Discount pills, cheap viagra pharmacy offer, claim now http://pills.spam.test/x",
    sender="Offers <sale@spam.test>",
)
NEW_HAM = message("Tuesday meeting", "Hi Bob, agenda for the Tuesday meeting and project report")


@pytest.fixture
async def bayes(tmp_path: Path) -> AsyncIterator[Bayes]:
    filt = Bayes(tmp_path / "antispam" / "bayes.sqlite")
    yield filt
    await filt.close()


async def train_corpus(filt: Bayes, user: str = "bob") -> None:
    for m in SPAM:
        await filt.train(user, m, spam=True)
    for m in HAM:
        await filt.train(user, m, spam=False)


# --- tokenizer -----------------------------------------------------------------------------


def test_header_and_body_tokens() -> None:
    toks = tokens(SPAM[0])
    assert {"subject:cheap", "subject:pills", "subject:pharmacy"} <= toks
    assert {"from:pharmacy", "from:spam.test", "from:deals@spam.test"} <= toks
    assert {"cheap", "viagra", "pills", "discount", "pharmacy"} <= toks
    assert {"url:pills.spam.test", "url:spam.test"} <= toks
    assert "message-id:one.test" in toks
    assert "mime:text/plain" in toks


def test_word_rules() -> None:
    toks = tokens(
        message("x", "ab abc 12345 $100 don't " + "a" * 41 + " " + "b" * 40 + " Mixed_Case")
    )
    assert "ab" not in toks  # shorter than 3
    assert "abc" in toks
    assert "12345" not in toks  # all digits
    assert "$100" in toks
    assert "don't" in toks
    assert "a" * 41 not in toks
    assert "b" * 40 in toks
    assert "mixed_case" in toks


def test_our_own_headers_are_not_tokens() -> None:
    plain = message("hello", "body words here")
    marked = (
        b"X-Spam-Status: Yes, score=20 decision=junk tests=BAYES_99=5.0\r\n"
        b"X-Spam-Score: 20.0\r\n"
        b"Authentication-Results: mx.two.test; spf=fail smtp.mailfrom=one.test\r\n"
        b"Received: from evil.test by mx.two.test\r\n" + plain
    )
    assert tokens(marked) == tokens(plain)


def test_encoded_subject_and_name() -> None:
    raw = (
        b"From: =?utf-8?B?0JDQvdC90LA=?= <anna@one.test>\r\n"
        b"Subject: =?koi8-r?Q?=F0=D2=C9=D7=C5=D4?= =?utf-8?q?_w=C3=B6rld?=\r\n\r\nbody\r\n"
    )
    toks = tokens(raw)
    assert "from:анна" in toks
    assert "subject:привет" in toks
    assert "subject:wörld" in toks


def test_decode_header_joins_split_multibyte_words() -> None:
    # "привет" in UTF-8 split inside a character over two encoded-words (RFC 2047 §6.2).
    raw = "привет".encode()
    first, second = base64.b64encode(raw[:3]), base64.b64encode(raw[3:])
    value = b"=?utf-8?b?" + first + b"?= =?utf-8?b?" + second + b"?="
    assert decode_header(value) == "привет"
    assert decode_header(b"=?unknown-charset?q?abc?= tail") == "abc tail"
    assert decode_header(b"=?base64_codec?q?abc?=") == "abc"


def test_base64_html_with_script_and_style() -> None:
    markup = (
        "<html><head><style>.hidden{color:white}</style>"
        "<script>var trackingcode = 1;</script></head>"
        "<body><p>Visible&nbsp;words &amp; <b>bold</b>text</p>"
        "<!-- hiddencomment --><a href='http://shop.spam.test/x'>click</a>"
        "<img src=cid:1></body></html>"
    )
    raw = (
        b"From: a@one.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(markup.encode())
    )
    toks = tokens(raw)
    assert {"visible", "words", "bold", "text", "click"} <= toks
    assert "boldtext" not in toks  # a tag separates words
    assert "trackingcode" not in toks
    assert "hidden" not in toks
    assert "hiddencomment" not in toks
    assert "url:shop.spam.test" in toks
    assert {"html:a", "html:img", "mime:text/html", "charset:utf-8"} <= toks


def test_quoted_printable_and_charset() -> None:
    raw = (
        b"From: a@one.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=koi8-r\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=F0=D2=C9=D7=C5=D4 soft=\r\nbreak\r\n"
        b'--XX\r\nContent-Type: application/zip; name="invoice.ZIP"\r\n'
        b'Content-Disposition: attachment; filename="invoice.ZIP"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"PK\x03\x04 zipped inside")
        + b"--XX--\r\n"
    )
    toks = tokens(raw)
    assert "привет" in toks
    assert "softbreak" in toks
    assert {"mime:multipart/mixed", "mime:application/zip", "filename:zip"} <= toks
    assert "charset:koi8-r" in toks
    assert "zipped" not in toks  # attachments are not read as text


def test_urls() -> None:
    toks = tokens(
        message(
            "s",
            "see (http://www.shop.example.test:8080/path), http://user@evil.test/ "
            "http://198.51.100.7/login www.plain.test. and https://[2001:db8::1]/x",
        )
    )
    assert {"url:www.shop.example.test", "url:shop.example.test", "url:example.test"} <= toks
    assert "url:evil.test" in toks
    assert "url:ip-address" in toks
    assert "url:www.plain.test" in toks


def test_text_attachment_and_nested_message() -> None:
    raw = (
        b"From: a@one.test\r\nSubject: s\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\n\r\ninnerword\r\n"
        b"--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n"
        b"\r\nattachedword\r\n--B--\r\n"
    )
    toks = tokens(raw)
    assert "innerword" in toks
    assert "attachedword" not in toks
    assert "filename:txt" in toks


def test_bounded_on_huge_messages() -> None:
    words = " ".join(f"word{i:06d}x" for i in range(200_000))
    raw = message("huge", words)
    started = time.perf_counter()
    toks = tokens(raw)
    assert time.perf_counter() - started < 10
    assert len(toks) <= MAX_TOKENS
    assert "subject:huge" in toks
    # Only the first 100 000 characters are read.
    assert "word150000x" not in toks


def test_text_after_a_large_attachment_is_read() -> None:
    raw = (
        b"Subject: s\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n"
        b"--Z\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"x" * 3_000_000)
        + b"--Z\r\nContent-Type: text/plain\r\n\r\nlatecomer words\r\n--Z--\r\n"
    )
    toks = tokens(raw)
    assert {"latecomer", "words", "mime:application/pdf"} <= toks


def test_hostile_html_is_linear() -> None:
    markup = "<a" * 50_000 + "<script>" * 10_000 + "<!--" * 10_000
    raw = b"Content-Type: text/html\r\n\r\n" + markup.encode()
    started = time.perf_counter()
    tokens(raw)
    assert time.perf_counter() - started < 10


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_tokenizer_never_raises_on_bytes(data: bytes) -> None:
    # The inner function, so that the safety net in tokens() hides nothing.
    toks = _tokens(data)
    assert all(isinstance(t, str) and t for t in toks)
    assert len(toks) <= MAX_TOKENS


_FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/alternative; boundary="b"\r\n',
        b"Content-Type: text/html; charset=koi8-r\r\n",
        b'Content-Type: text/plain; charset="x-unknown"\r\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%D0%B0.exe\r\n",
        b"Subject: =?utf-8?B?0J/RgNC40LLQtdGC?= =?bogus?Q?=ZZ?=\r\n",
        b'From: "Name, Odd" <a@b.test>, =?utf-8?q?=E2=80?= <@x>\r\n',
        b"Message-ID: <x@[1.2.3.4]>\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"<html><a href=http://x.test:99/>link</a><script>",
        b"=E2=80=\r\n",
        b"0J/RgNC4====\r\n",
        b"http://a@b@c.test/ www.",
        b"\xff\xfe\x00\r",
    ]
)


@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=20)), max_size=40))
@settings(max_examples=300, deadline=None)
def test_tokenizer_never_raises_on_mime_shapes(pieces: list[bytes]) -> None:
    toks = _tokens(b"".join(pieces))
    assert all(isinstance(t, str) and t for t in toks)


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_decode_header_total(text: str) -> None:
    assert isinstance(decode_header(text.encode("utf-8", "surrogatepass")), str)


# --- combining -----------------------------------------------------------------------------


def test_combine() -> None:
    assert combine([]) == 0.5
    assert combine([0.99] * 20) > 0.99
    assert combine([0.01] * 20) < 0.01
    assert abs(combine([0.99] * 10 + [0.01] * 10) - 0.5) < 1e-9
    # Extreme inputs neither overflow nor underflow.
    assert combine([1.0] * 150) > 0.999
    assert combine([0.0] * 150) < 0.001


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=150))
def test_combine_bounded_and_symmetric(probabilities: list[float]) -> None:
    p = combine(probabilities)
    assert 0.0 <= p <= 1.0
    assert abs(p + combine([1.0 - x for x in probabilities]) - 1.0) < 1e-6


# --- training ------------------------------------------------------------------------------


async def test_no_opinion_until_enough_training(bayes: Bayes) -> None:
    assert await bayes.probability("bob", NEW_SPAM) is None
    for m in SPAM:
        await bayes.train("bob", m, spam=True)
    assert await bayes.probability("bob", NEW_SPAM) is None  # no ham yet
    await bayes.train("bob", HAM[0], spam=False)
    assert await bayes.probability("bob", NEW_SPAM) is None  # 4 < 5 in all
    await bayes.train("bob", HAM[1], spam=False)
    assert await bayes.probability("bob", NEW_SPAM) is not None


async def test_spam_scores_above_ham(bayes: Bayes) -> None:
    await train_corpus(bayes)
    spam = await bayes.probability("bob", NEW_SPAM)
    ham = await bayes.probability("bob", NEW_HAM)
    assert spam is not None and ham is not None
    assert spam > 0.9
    assert ham < 0.1
    # A message with no known tokens is unsure.
    unknown = await bayes.probability("bob", b"Subject: zzqx\r\n\r\nqwertyuiop asdfghjkl\r\n")
    assert unknown == 0.5


async def test_users_are_separate(bayes: Bayes) -> None:
    await train_corpus(bayes, "bob")
    assert await bayes.probability("carol", NEW_SPAM) is None
    # Carol's training is the opposite of Bob's.
    for m in SPAM:
        await bayes.train("carol", m, spam=False)
    for m in HAM:
        await bayes.train("carol", m, spam=True)
    bob = await bayes.probability("bob", NEW_SPAM)
    carol = await bayes.probability("carol", NEW_SPAM)
    assert bob is not None and carol is not None
    assert bob > 0.9 > 0.1 > carol


async def test_training_twice_does_not_double_count(bayes: Bayes) -> None:
    await train_corpus(bayes)
    before = await bayes.probability("bob", NEW_SPAM)
    for m in SPAM:
        await bayes.train("bob", m, spam=True)
    assert await bayes.counts("bob") == (3, 3)
    assert await bayes.probability("bob", NEW_SPAM) == before


async def test_untrain(bayes: Bayes) -> None:
    await train_corpus(bayes)
    before = await bayes.probability("bob", NEW_SPAM)
    extra = message("Cheap pills", "cheap pills viagra pharmacy", sender="x@spam.test")
    await bayes.train("bob", extra, spam=True)
    assert await bayes.counts("bob") == (4, 3)
    # Untraining as the wrong class does nothing.
    await bayes.untrain("bob", extra, spam=False)
    assert await bayes.counts("bob") == (4, 3)
    await bayes.untrain("bob", extra, spam=True)
    assert await bayes.counts("bob") == (3, 3)
    assert await bayes.probability("bob", NEW_SPAM) == before
    # Untraining again, or an unknown user, does nothing.
    await bayes.untrain("bob", extra, spam=True)
    await bayes.untrain("nobody", extra, spam=True)
    assert await bayes.counts("bob") == (3, 3)


async def test_retraining_as_other_class_moves_the_message(bayes: Bayes) -> None:
    await train_corpus(bayes)
    clean = await bayes.probability("bob", NEW_HAM)
    await bayes.train("bob", NEW_HAM, spam=True)  # a mistake...
    assert await bayes.counts("bob") == (4, 3)
    await bayes.train("bob", NEW_HAM, spam=False)  # ...corrected
    assert await bayes.counts("bob") == (3, 4)
    corrected = await bayes.probability("bob", NEW_HAM)
    assert clean is not None and corrected is not None
    assert corrected <= clean


async def test_junk_trainer_moves(bayes: Bayes) -> None:
    trainer = JunkTrainer(bayes)
    await train_corpus(bayes)
    await trainer.moved("bob", [NEW_SPAM], into_junk=True)
    await trainer.moved("bob", [NEW_SPAM], into_junk=True)  # moved again (copy, re-move)
    assert await bayes.counts("bob") == (4, 3)
    # Out of Junk again: untrain spam, train ham.
    await trainer.moved("bob", [NEW_SPAM], into_junk=False)
    assert await bayes.counts("bob") == (3, 4)
    await trainer.moved("bob", [], into_junk=True)
    assert await bayes.counts("bob") == (3, 4)


async def test_junk_trainer_many_messages_in_batches(bayes: Bayes) -> None:
    trainer = JunkTrainer(bayes)
    spam = [message(f"offer {i}", f"cheap pills number{i}x") for i in range(120)]
    await trainer.moved("bob", spam, into_junk=True)
    assert await bayes.counts("bob") == (120, 0)


async def test_junk_trainer_swallows_database_errors(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    filt = Bayes(path)
    try:
        await JunkTrainer(filt).moved("bob", [NEW_SPAM], into_junk=True)  # logged only
        assert await filt.probability("bob", NEW_SPAM) is None
    finally:
        await filt.close()


async def test_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "bayes.sqlite"
    first = Bayes(path)
    await train_corpus(first)
    expected = await first.probability("bob", NEW_SPAM)
    await first.close()
    second = Bayes(path)
    try:
        assert await second.probability("bob", NEW_SPAM) == expected
        await second.train("bob", SPAM[0], spam=True)  # still remembered as trained
        assert await second.counts("bob") == (3, 3)
    finally:
        await second.close()


async def test_concurrent_training_and_scoring(bayes: Bayes) -> None:
    await train_corpus(bayes)
    extra = [message(f"s{i}", f"pills cheap extra{i}x") for i in range(20)]
    results = await asyncio.gather(
        *(bayes.train("bob", m, spam=True) for m in extra),
        *(bayes.probability("bob", NEW_HAM) for _ in range(10)),
        *(bayes.train("bob", extra[0], spam=True) for _ in range(5)),
    )
    assert all(r is None or 0.0 <= r <= 1.0 for r in results)
    assert await bayes.counts("bob") == (23, 3)


async def test_minimums_are_configurable(tmp_path: Path) -> None:
    filt = Bayes(tmp_path / "b.sqlite", min_spam=3, min_ham=3, min_total=6)
    try:
        await filt.train("bob", SPAM[0], spam=True)
        for m in HAM:
            await filt.train("bob", m, spam=False)
        assert await filt.probability("bob", NEW_SPAM) is None
        await filt.train("bob", SPAM[1], spam=True)
        await filt.train("bob", SPAM[2], spam=True)
        assert await filt.probability("bob", NEW_SPAM) is not None
    finally:
        await filt.close()
