"""pochta.mime: bytes in, ENVELOPE / BODYSTRUCTURE / offsets out.

Offsets in the first three messages are hand-computed; the running totals are
in the comments next to each line.
"""

from __future__ import annotations

import time

import pytest

from pochta.mime import (
    GROUP_END,
    MAX_DEPTH,
    MAX_PARTS,
    Address,
    Envelope,
    MessageMeta,
    Part,
    analyze,
    count_lines,
    field_spans,
    header_fields,
    parse_address_list,
    part,
    section_span,
    select_fields,
    unfold,
)
from pochta.mime.meta import _analyze
from pochta.mime.params import parse_content_type, parse_disposition, parse_params
from pochta.mime.structure import MAX_PROBES

US_ASCII = (("charset", "us-ascii"),)


def check(data: bytes) -> MessageMeta:
    """Analyze without the safety net, check invariants and the JSON round trip."""
    meta = _analyze(data)
    assert meta == analyze(data)
    assert meta.size == len(data)
    assert meta.body.header_start == 0
    assert meta.body.end == len(data)
    assert MessageMeta.from_json(meta.to_json()) == meta
    return meta


def span(p: Part) -> tuple[int, int, int]:
    return p.header_start, p.body_start, p.end


# --- hand-computed messages ---------------------------------------------------

SIMPLE = (
    b"From: Alice <alice@example.org>\r\n"  # 6 + 6 + 19 + 2 = 33
    b"To: bob@example.test\r\n"  # 4 + 16 + 2 = 22 -> 55
    b"Subject: Hi\r\n"  # 13 -> 68
    b"\r\n"  # -> 70 = body start
    b"Hello Bob,\r\n"  # 12 -> 82
    b"bye\r\n"  # 5 -> 87 = size
)


def test_simple_text_message() -> None:
    meta = check(SIMPLE)
    assert meta.size == 87
    assert meta.lines == 6
    assert meta.header_span == (0, 70)
    assert meta.text_span == (70, 87)
    b = meta.body
    assert (b.type, b.subtype, b.params, b.encoding) == ("text", "plain", US_ASCII, "7BIT")
    assert span(b) == (0, 70, 87)
    assert (b.size, b.lines) == (17, 2)
    assert b.parts == () and b.message is None and b.envelope is None
    alice = (Address("Alice", None, "alice", "example.org"),)
    assert meta.envelope == Envelope(
        subject="Hi",
        from_=alice,
        sender=alice,
        reply_to=alice,
        to=(Address(None, None, "bob", "example.test"),),
    )
    # A non-multipart message's part 1 is its body (RFC 9051 §6.4.5).
    assert part(meta, (1,)) is b
    assert part(meta, (2,)) is None
    assert part(meta, (1, 1)) is None
    assert section_span(meta, ()) == (0, 87)
    assert section_span(meta, (), "HEADER") == (0, 70)
    assert section_span(meta, (), "TEXT") == (70, 87)
    assert section_span(meta, (1,)) == (70, 87)
    assert section_span(meta, (1,), "MIME") == (0, 70)
    assert section_span(meta, (1,), "HEADER") is None


ALTERNATIVE = (
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'  # 14 + 22 + 10 + 4 + 2 = 52
    b"\r\n"  # -> 54 = body start
    b"--b1\r\n"  # 6 -> 60 = part 1 header
    b"Content-Type: text/plain\r\n"  # 26 -> 86
    b"\r\n"  # -> 88 = part 1 body
    b"plain\r\n"  # 7 -> 95; part 1 ends at 93, before the CRLF
    b"--b1\r\n"  # 6 -> 101 = part 2 header
    b"Content-Type: text/html; charset=utf-8\r\n"  # 14 + 10 + 14 + 2 = 40 -> 141
    b"\r\n"  # -> 143 = part 2 body
    b"<p>html</p>\r\n"  # 13 -> 156; part 2 ends at 154
    b"--b1--\r\n"  # 8 -> 164 = size
)


def test_multipart_alternative() -> None:
    meta = check(ALTERNATIVE)
    assert meta.size == 164
    assert meta.lines == 11
    b = meta.body
    assert (b.type, b.subtype, b.params) == ("multipart", "alternative", (("boundary", "b1"),))
    assert span(b) == (0, 54, 164)
    assert b.lines is None
    p1, p2 = b.parts
    assert (p1.type, p1.subtype, p1.params) == ("text", "plain", ())
    assert span(p1) == (60, 88, 93)
    assert (p1.size, p1.lines) == (5, 1)
    assert (p2.type, p2.subtype, p2.params) == ("text", "html", (("charset", "utf-8"),))
    assert span(p2) == (101, 143, 154)
    assert (p2.size, p2.lines) == (11, 1)
    assert ALTERNATIVE[p2.body_start : p2.end] == b"<p>html</p>"
    assert meta.envelope == Envelope()
    assert part(meta, (1,)) is p1
    assert part(meta, (2,)) is p2
    assert part(meta, (3,)) is None
    assert part(meta, (0,)) is None
    assert section_span(meta, (2,), "MIME") == (101, 143)
    assert section_span(meta, (2,)) == (143, 154)


FORWARD = (  # bare LF line ends throughout
    b"Subject: fwd\n"  # 13
    b"Content-Type: multipart/mixed; boundary=o\n"  # 14 + 16 + 11 + 1 = 42 -> 55
    b"\n"  # -> 56 = body start
    b"--o\n"  # 4 -> 60 = part 1 header
    b"Content-Type: message/rfc822\n"  # 14 + 14 + 1 = 29 -> 89
    b"\n"  # -> 90 = part 1 body = encapsulated header
    b"From: x@y.z\n"  # 12 -> 102
    b"Content-Type: multipart/mixed; boundary=i\n"  # 42 -> 144
    b"\n"  # -> 145 = encapsulated body
    b"--i\n"  # 4 -> 149 = part 1.1 header (empty)
    b"\n"  # -> 150 = part 1.1 body
    b"one\n"  # 4 -> 154; part 1.1 ends at 153
    b"--i\n"  # 4 -> 158 = part 1.2 header
    b"Content-Type: application/octet-stream\n"  # 14 + 24 + 1 = 39 -> 197
    b"Content-Transfer-Encoding: base64\n"  # 27 + 6 + 1 = 34 -> 231
    b"\n"  # -> 232 = part 1.2 body
    b"AAEC\n"  # 5 -> 237; part 1.2 ends at 236
    b"--i--\n"  # 6 -> 243; part 1 ends at 242
    b"--o--\n"  # 6 -> 249 = size
)


def test_nested_message_rfc822_with_multipart_and_bare_lf() -> None:
    meta = check(FORWARD)
    assert meta.size == 249
    assert meta.lines == 19
    assert meta.envelope.subject == "fwd"
    top = meta.body
    assert span(top) == (0, 56, 249)
    (fwd,) = top.parts
    assert (fwd.type, fwd.subtype, fwd.params) == ("message", "rfc822", ())
    assert span(fwd) == (60, 90, 242)
    # The [90, 242) body: 11 full lines and "--i--" without its LF.
    assert (fwd.size, fwd.lines) == (152, 12)
    xyz = (Address(None, None, "x", "y.z"),)
    assert fwd.envelope == Envelope(from_=xyz, sender=xyz, reply_to=xyz)
    inner = fwd.message
    assert inner is not None
    assert (inner.type, inner.subtype) == ("multipart", "mixed")
    assert span(inner) == (90, 145, 242)
    one, blob = inner.parts
    assert (one.type, one.subtype, one.params) == ("text", "plain", US_ASCII)
    assert span(one) == (149, 150, 153)
    assert (one.size, one.lines) == (3, 1)
    assert (blob.type, blob.subtype, blob.encoding) == ("application", "octet-stream", "BASE64")
    assert span(blob) == (158, 232, 236)
    assert (blob.size, blob.lines) == (4, None)

    # RFC 9051 §6.4.5: a message/rfc822 part's sub-parts number its body.
    assert part(meta, (1,)) is fwd
    assert part(meta, (1, 1)) is one
    assert part(meta, (1, 2)) is blob
    assert part(meta, (1, 3)) is None
    assert part(meta, (1, 1, 1)) is None
    assert section_span(meta, (1,), "HEADER") == (90, 145)
    assert section_span(meta, (1,), "TEXT") == (145, 242)
    assert section_span(meta, (1,), "MIME") == (60, 90)
    assert section_span(meta, (1, 2), "MIME") == (158, 232)
    assert section_span(meta, (1, 2)) == (232, 236)
    assert section_span(meta, (1, 2), "HEADER") is None
    assert section_span(meta, (), "MIME") is None
    assert section_span(meta, (), "BOGUS") is None
    assert select_fields(FORWARD, 90, 145, [b"FROM"]) == b"From: x@y.z\n\r\n"


# --- more structures -----------------------------------------------------------


def test_multipart_mixed_with_base64_attachment() -> None:
    data = (
        b"From: a@example.org\r\n"
        b'Content-Type: multipart/mixed; boundary="==X=="\r\n'
        b"MIME-Version: 1.0\r\n"
        b"\r\n"
        b"This is a MIME message.\r\n"
        b"--==X==\r\n"
        b'Content-Type: text/plain; charset="UTF-8"; format=flowed\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"caf=C3=A9\r\n"
        b"\r\n"
        b"--==X==  \r\n"
        b'Content-Type: application/pdf; name="q3 report.pdf"\r\n'
        b"Content-Disposition: attachment;\r\n"
        b'\tfilename="q3 report.pdf"; size=6\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-ID: <pdf1@example.org>\r\n"
        b"Content-Description: The report\r\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        b"Content-Language: en, de (German)\r\n"
        b"Content-Location: http://example.org/q3.pdf\r\n"
        b"\r\n"
        b"JVBERi0x\r\n"
        b"LjQK\r\n"
        b"--==X==--\r\n"
        b"epilogue\r\n"
    )
    meta = check(data)
    text, pdf = meta.body.parts
    assert text.params == (("charset", "UTF-8"), ("format", "flowed"))
    assert text.encoding == "QUOTED-PRINTABLE"
    assert data[text.body_start : text.end] == b"caf=C3=A9\r\n"
    assert text.lines == 1  # the CRLF before the delimiter is not in the part
    assert (pdf.type, pdf.subtype) == ("application", "pdf")
    assert pdf.params == (("name", "q3 report.pdf"),)
    assert pdf.encoding == "BASE64"
    assert pdf.disposition == "attachment"
    assert pdf.disposition_params == (("filename", "q3 report.pdf"), ("size", "6"))
    assert pdf.id == "<pdf1@example.org>"
    assert pdf.description == "The report"
    assert pdf.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert pdf.language == ("en", "de")
    assert pdf.location == "http://example.org/q3.pdf"
    assert data[pdf.body_start : pdf.end] == b"JVBERi0x\r\nLjQK"
    assert pdf.lines is None
    assert data[pdf.header_start : pdf.header_start + 13] == b"Content-Type:"


def test_multipart_digest_defaults_to_message_rfc822() -> None:
    data = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\n"
        b"Subject: first\r\nFrom: one@example.org\r\n\r\nbody one\r\n"
        b"--d\r\n"
        b"Content-Type: text/plain\r\n\r\n"
        b"explicit text\r\n"
        b"--d\r\n\r\n"
        b"Subject: third\r\n\r\nbody three\r\n"
        b"--d--\r\n"
    )
    meta = check(data)
    first, second, third = meta.body.parts
    assert (first.type, first.subtype, first.params) == ("message", "rfc822", ())
    assert first.envelope is not None and first.envelope.subject == "first"
    assert first.message is not None
    assert data[first.message.body_start : first.end] == b"body one"
    # A digest child's own children default to text/plain again.
    assert (first.message.type, first.message.params) == ("text", US_ASCII)
    assert (second.type, second.subtype) == ("text", "plain")
    assert third.envelope is not None and third.envelope.subject == "third"
    assert part(meta, (3, 1)) is third.message


def test_message_global_is_a_message() -> None:
    data = b"Content-Type: message/global\r\n\r\nSubject: \xc3\xa9t\xc3\xa9\r\n\r\nx"
    meta = check(data)
    assert meta.body.envelope is not None
    assert meta.body.envelope.subject == "été"
    assert section_span(meta, (1,), "HEADER") == (32, 50)
    assert section_span(meta, (1, 1)) == (50, 51)


def test_top_level_message_rfc822_sections() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nbody"
    meta = check(data)
    assert part(meta, (1,)) is meta.body
    assert part(meta, (1, 1)) is meta.body.message
    assert section_span(meta, (1,), "TEXT") == (len(data) - 4, len(data))


def test_other_message_subtypes_are_leaves() -> None:
    data = b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n"
    meta = check(data)
    assert (meta.body.type, meta.body.subtype) == ("message", "delivery-status")
    assert meta.body.message is None and meta.body.lines is None


# --- envelope ----------------------------------------------------------------


def test_full_envelope_raw_values() -> None:
    data = (
        b"Date: Tue, 1 Oct 2024 09:59:58\r\n +0000\r\n"
        b"Subject: =?utf-8?q?Quarterly_report_=E2=80=94?=\r\n\t=?utf-8?q?_draft?=\r\n"
        b'From: "Doe, John" <john@example.org>\r\n'
        b"Sender: secretary@example.org\r\n"
        b"Reply-To: list@example.org\r\n"
        b"To: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>, b@example.test\r\n"
        b"Cc: <c@example.test>\r\n"
        b"Bcc: \r\n"
        b"In-Reply-To: <a@b> <c@d>\r\n"
        b"Message-ID:\r\n <id@example.org>\r\n"
        b"Subject: second subject is ignored\r\n"
        b"\r\n"
    )
    env = check(data).envelope
    assert env.date == "Tue, 1 Oct 2024 09:59:58 +0000"
    assert env.subject == "=?utf-8?q?Quarterly_report_=E2=80=94?=\t=?utf-8?q?_draft?="
    assert env.from_ == (Address("Doe, John", None, "john", "example.org"),)
    assert env.sender == (Address(None, None, "secretary", "example.org"),)
    assert env.reply_to == (Address(None, None, "list", "example.org"),)
    assert env.to == (
        Address("=?utf-8?q?J=C3=B6rg?=", None, "joerg", "example.de"),
        Address(None, None, "b", "example.test"),
    )
    assert env.cc == (Address(None, None, "c", "example.test"),)
    assert env.bcc == ()
    assert env.in_reply_to == "<a@b> <c@d>"
    assert env.message_id == "<id@example.org>"


def test_missing_headers_give_nil_and_empty_sender_defaults_to_from() -> None:
    env = check(b"From: a@b.c\r\nSender:\r\nSubject:\r\n\r\n").envelope
    a = (Address(None, None, "a", "b.c"),)
    assert env == Envelope(subject="", from_=a, sender=a, reply_to=a)
    assert check(b"X-Only: 1\r\n\r\n").envelope == Envelope()


def test_group_addresses() -> None:
    env = check(
        b"From: a@b.c\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b'Cc: Team: x@example.org, "Y Y" <y@example.org>; z@example.org\r\n'
        b"\r\n"
    ).envelope
    assert env.to == (Address(None, None, "undisclosed-recipients", None), GROUP_END)
    assert env.cc == (
        Address(None, None, "Team", None),
        Address(None, None, "x", "example.org"),
        Address("Y Y", None, "y", "example.org"),
        GROUP_END,
        Address(None, None, "z", "example.org"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("a@b", (("a", "b", None, None),)),
        ("John Q. Public <jqp@x.example>", (("jqp", "x.example", "John Q. Public", None),)),
        ('"Joe \\"Q\\" Doe" <j@x>', (("j", "x", 'Joe "Q" Doe', None),)),
        ("joe@x (Joe Bloggs)", (("joe", "x", "Joe Bloggs", None),)),
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            (("pete", "silly.test", "Pete", None),),
        ),
        ("<@r1.example,@r2.example:u@h>", (("u", "h", None, "@r1.example,@r2.example"),)),
        ('"john doe"@example.org', (('"john doe"', "example.org", None, None),)),
        ("john . doe @ example . org", (("john.doe", "example.org", None, None),)),
        ("a@b,,c@d,", (("a", "b", None, None), ("c", "d", None, None))),
        ("nodomain", (("nodomain", "", None, None),)),
        ("Name Only <>", (("", "", "Name Only", None),)),
        ("<>", ()),
        ("user@[192.0.2.1]", (("user", "[192.0.2.1]", None, None),)),
        ('"unterminated <a@b>', (('"unterminated <a@b>', "", None, None),)),
        ("A <a@b> trailing junk, c@d", (("a", "b", "A", None), ("c", "d", None, None))),
        ("=?utf-8?b?w6k=?= <e@x>", (("e", "x", "=?utf-8?b?w6k=?=", None),)),
    ],
)
def test_address_forms(
    value: str, expected: tuple[tuple[str, str, str | None, str | None], ...]
) -> None:
    got = tuple((a.mailbox, a.host, a.name, a.adl) for a in parse_address_list(value))
    assert got == expected


def test_group_unterminated_and_stray_markers() -> None:
    assert parse_address_list("g: a@b") == (
        Address(None, None, "g", None),
        Address(None, None, "a", "b"),
        GROUP_END,
    )
    assert parse_address_list("; a@b >") == (Address(None, None, "a", "b"),)
    assert parse_address_list(": ;") == (Address(None, None, "", None), GROUP_END)


def test_eight_bit_names_keep_their_octets() -> None:
    data = b"From: \xe9t\xe9 <a@b>\r\n\r\n"
    name = check(data).envelope.from_[0].name
    assert name is not None
    assert name.encode("utf-8", "surrogateescape") == b"\xe9t\xe9"


# --- Content-Type and friends -------------------------------------------------


def test_content_type_parsing() -> None:
    # RFC 2045 §5.1's own example with comments.
    assert parse_content_type("text/plain; charset=us-ascii (Plain text)") == (
        "text",
        "plain",
        (("charset", "us-ascii"),),
    )
    assert parse_content_type('TEXT/HTML ; CHARSET="UTF-8"; Format = flowed ') == (
        "text",
        "html",
        (("charset", "UTF-8"), ("format", "flowed")),
    )
    assert parse_content_type('a/b; x="semi;colon"; y="q\\"q"; x=dup') == (
        "a",
        "b",
        (("x", "semi;colon"), ("y", 'q"q')),
    )
    assert parse_content_type("text") is None
    assert parse_content_type("") is None
    assert parse_content_type("/plain") is None
    assert parse_content_type("text/plain; junk; charset=x; =y") == (
        "text",
        "plain",
        (("charset", "x"),),
    )
    assert parse_disposition("INLINE") == ("inline", ())
    assert parse_disposition(";filename=x") is None


def test_rfc2231_continuations() -> None:
    assert parse_params(
        "; title*0*=us-ascii'en'This%20is%20even%20more%20"
        '; title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2="isn\'t it!"'
    ) == (
        ("title*", "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!"),
    )
    assert parse_params('; name*1="b.pdf"; x=1; name*0="a "') == (("name", "a b.pdf"), ("x", "1"))
    assert parse_params("; name*=utf-8''%E2%82%AC.pdf") == (("name*", "utf-8''%E2%82%AC.pdf"),)
    assert parse_params("; name*0=a; name*1*=%E2%82%AC") == (("name*", "''a%E2%82%AC"),)
    assert parse_params("; name*x=1; name*0=a; name*0=b") == (("name*x", "1"), ("name", "a"))


def test_invalid_content_type_defaults_to_text_plain() -> None:
    meta = check(b"Content-Type: garbage\r\nContent-Transfer-Encoding:\r\n\r\nx")
    assert (meta.body.type, meta.body.subtype, meta.body.params) == ("text", "plain", US_ASCII)
    assert meta.body.encoding == "7BIT"


# --- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "body_start"),
    [
        (b"", 0),
        (b"\r\n", 2),
        (b"\n", 1),
        (b"\r", 1),
        (b"Subject: x", 10),  # no separator: all header
        (b"Subject: x\r\nFrom: a@b\r\n", 23),
        (b"Subject: x\r\nthis is body\r\n", 12),  # a non-field line starts the body
        (b"not a header\r\nSubject: x\r\n\r\n", 0),
        (b" leading fold\r\n\r\n", 0),
        (b"Subject: x\r\n\r", 13),
        (b"Subject : obsolete blank\r\n\r\nbody", 28),
        (b"X\xff\xfe: 8bit name\r\n\xff\r\n\r\n", 16),
    ],
)
def test_header_boundary_cases(data: bytes, body_start: int) -> None:
    meta = check(data)
    assert meta.body.body_start == body_start


def test_multipart_without_boundary_parameter_gets_one_text_child() -> None:
    data = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n"
    meta = check(data)
    (child,) = meta.body.parts
    assert (child.type, child.subtype, child.params) == ("text", "plain", US_ASCII)
    assert span(child) == (33, 33, len(data))
    assert part(meta, (1,)) is child


def test_multipart_boundary_never_found() -> None:
    data = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\njust text\r\n--z\r\n"
    (child,) = check(data).body.parts
    assert data[child.body_start : child.end] == b"just text\r\n--z\r\n"


def test_unterminated_multipart_runs_to_the_end() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
        b"--x\r\n\r\nhi\r\n"
        b"--x\r\nContent-Type: text/html\r\n\r\nunterminated\r\n"
    )
    meta = check(data)
    hi, html = meta.body.parts
    assert data[hi.body_start : hi.end] == b"hi"
    assert html.subtype == "html"
    assert data[html.body_start : html.end] == b"unterminated\r\n"


def test_delimiters_match_strictly() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n"
        b"Content-Type: multipart/alternative; boundary=b1\r\n\r\n"
        b"--b1\r\n\r\ninner\r\n"
        b"--b1--\r\n"
        b" --b not at line start --b\r\n"
        b"--bX is not a delimiter\r\n"
        b"--b-- neither\r\n"
        b"--b \t\r\n"  # transport padding is fine
        b"\r\nsecond\r\n"
        b"--b--"
    )
    meta = check(data)
    alt, second = meta.body.parts
    (inner,) = alt.parts
    assert data[inner.body_start : inner.end] == b"inner"
    assert data[alt.body_start : alt.end].endswith(b"--b-- neither")
    assert data[second.body_start : second.end] == b"second"


def test_empty_parts_and_adjacent_delimiters() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n--b--\r\n"
    meta = check(data)
    first, second = meta.body.parts
    assert first.header_start == first.body_start == first.end
    assert second.size == 0


def test_boundary_with_eight_bit_and_lf_mix() -> None:
    data = (
        b'Content-Type: multipart/mixed; boundary="\xc3\xa9"\n\n--\xc3\xa9\r\n\r\nx\n--\xc3\xa9--'
    )
    (child,) = check(data).body.parts
    assert data[child.body_start : child.end] == b"x"


def test_deep_nesting_is_capped() -> None:
    data = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(100)
    )
    meta = check(data + b"\r\nleaf\r\n")
    depth, p = 0, meta.body
    while p.parts:
        p, depth = p.parts[0], depth + 1
    assert depth == MAX_DEPTH
    assert (p.type, p.subtype) == ("application", "octet-stream")

    nested = check(b"Content-Type: message/rfc822\r\n\r\n" * 100 + b"x")
    depth, p = 0, nested.body
    while p.message is not None:
        p, depth = p.message, depth + 1
    assert depth == MAX_DEPTH
    assert (p.type, p.subtype) == ("application", "octet-stream")


def test_part_budget() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * (
        MAX_PARTS + 50
    )
    meta = check(data)
    assert len(meta.body.parts) == MAX_PARTS - 1  # the root counts too
    assert meta.body.parts[-1].end < len(data)


def test_near_miss_delimiter_budget() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
        + b"--bX\r\n" * (MAX_PROBES + 10)
        + b"--b\r\n\r\nlast\r\n--b--\r\n"
    )
    (only,) = check(data).body.parts
    assert only.end == len(data)


# --- raw header helpers ------------------------------------------------------------

HEADER = (
    b"Received: from a\r\n\tby b; Tue, 1 Oct 2024\r\n"
    b"subject: Hi\r\n"
    b"X-Empty:\r\n"
    b"Received: from c\r\n"
    b"\r\n"
    b"body: not a header\r\n"
)


def test_header_fields() -> None:
    assert header_fields(HEADER, 0, len(HEADER)) == [
        (b"Received", b" from a\r\n\tby b; Tue, 1 Oct 2024"),
        (b"subject", b" Hi"),
        (b"X-Empty", b""),
        (b"Received", b" from c"),
    ]
    spans = field_spans(HEADER, 0, len(HEADER))
    assert [name for name, _, _ in spans] == [b"received", b"subject", b"x-empty", b"received"]
    assert b"".join(HEADER[s:e] for _, s, e in spans) + b"\r\n" == HEADER[:-20]
    assert unfold(b" from a\r\n\tby b\r\n") == b"from a\tby b"


def test_select_fields() -> None:
    end = len(HEADER) - 20
    assert (
        select_fields(HEADER, 0, end, ["SUBJECT", b"x-empty"]) == b"subject: Hi\r\nX-Empty:\r\n\r\n"
    )
    assert select_fields(HEADER, 0, end, [b"received", "subject"], exclude=True) == (
        b"X-Empty:\r\n\r\n"
    )
    assert select_fields(HEADER, 0, end, ["nothing"]) == b"\r\n"
    assert select_fields(b"Subject: no eol", 0, 15, ["subject"]) == b"Subject: no eol\r\n\r\n"


def test_count_lines() -> None:
    assert count_lines(b"", 0, 0) == 0
    assert count_lines(b"a", 0, 1) == 1
    assert count_lines(b"a\r\n", 0, 3) == 1
    assert count_lines(b"a\nb", 0, 3) == 2
    assert count_lines(b"a\nb", 2, 1) == 0


# --- JSON ----------------------------------------------------------------------


def test_json_is_compact_ascii_and_versioned() -> None:
    raw = check(FORWARD).to_json()
    assert raw.isascii()
    assert raw.startswith(b"[1,249,19,")
    assert b" " not in raw.replace(b"Hello world", b"")


def test_json_keeps_surrogate_escaped_octets() -> None:
    meta = check(b"Subject: \xff\xfe\r\nFrom: \x80 <a@b>\r\n\r\n")
    again = MessageMeta.from_json(meta.to_json())
    assert again.envelope.subject == meta.envelope.subject
    assert again.envelope.subject is not None
    assert again.envelope.subject.encode("utf-8", "surrogateescape") == b"\xff\xfe"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{}",
        b"[2,0,0,[],[]]",
        b"[1,0,0]",
        b'[1,"0",0,[null,null,[],0,0,[],[],[],null,null],[0,0,0]]',
        b"[1,0,0,[null,null,[],0,0,[],[],[],null,null],[0,0]]",
        b"[1,0,0,[null,null,[[1,2,3,4]],0,0,[],[],[],null,null],[0,0,0]]",
        b"[1,0,0,[null,null,[],0,0,[],[],[],null,null],[0,0,0,null]]",
        b'[1,0,0,[null,null,[],0,0,[],[],[],null,null],[0,0,0,"t","s",[["a"]]]]',
        b"\xff",
    ],
)
def test_from_json_rejects_garbage(raw: bytes) -> None:
    with pytest.raises(ValueError):
        MessageMeta.from_json(raw)


def test_json_of_the_empty_message() -> None:
    raw = (
        b"[1,0,0,[null,null,[],0,0,[],[],[],null,null],"
        b'[0,0,0,"text","plain",[["charset","us-ascii"]],"7BIT",0]]'
    )
    assert check(b"").to_json() == raw
    assert MessageMeta.from_json(raw) == check(b"")
    # Trailing defaults may be left out; lines then defaults to None.
    short = MessageMeta.from_json(b"[1,0,0,[null,null,[],0,0,[],[],[],null,null],[0,0,0]]")
    assert short.body.lines is None


# --- hostile input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"To: " + b'"a\\' * 70_000 + b"\r\n\r\n",  # unterminated quotes, escapes
        b"To: " + b"[a\\" * 70_000 + b"\r\n\r\n",  # unterminated domain literals
        b'Content-Type: text/plain; a="\\' + b';a="\\' * 40_000 + b"\r\n\r\n",
        b"From: " + b"(" * 200_000 + b"\r\n\r\n",
        b"".join(
            b"Content-Type: multipart/mixed; boundary=%s\n\n--%s\n" % (b"a" * i, b"a" * i)
            for i in range(1, 40)
        )
        + b"--"
        + b"a" * 40
        + b"X\n" * 20_000,
    ],
)
def test_hostile_input_stays_linear(data: bytes) -> None:
    started = time.perf_counter()
    check(data)
    assert time.perf_counter() - started < 2.0  # quadratic would take minutes


def test_analyze_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> tuple[Part, dict[bytes, bytes]]:
        raise RuntimeError("parser bug")

    monkeypatch.setattr("pochta.mime.meta.parse", broken)
    meta = analyze(SIMPLE)
    assert (meta.size, meta.lines) == (87, 6)
    assert meta.envelope == Envelope()
    assert span(meta.body) == (0, 0, 87)
    assert MessageMeta.from_json(meta.to_json()) == meta
