"""Property tests for pochta.mime: total on any bytes, exact on generated MIME."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pochta.mime import MessageMeta, Part, analyze, part, section_span
from pochta.mime.address import _parse_full, _parse_simple
from pochta.mime.meta import _analyze

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_part(p: Part, lo: int, hi: int, size: int) -> None:
    assert 0 <= lo <= p.header_start <= p.body_start <= p.end <= hi <= size
    assert p.size == p.end - p.body_start >= 0
    if p.type == "multipart":
        assert p.parts, "a multipart always has a child"
    else:
        assert not p.parts
    if p.type == "message" and p.subtype in ("rfc822", "global"):
        assert p.message is not None and p.envelope is not None
        assert p.message.header_start == p.body_start
        assert p.message.end == p.end
        assert p.lines is not None
        check_part(p.message, p.body_start, p.end, size)
    else:
        assert p.message is None and p.envelope is None
    if p.type == "text":
        assert p.lines is not None
    previous_end = p.body_start
    for child in p.parts:
        check_part(child, previous_end, p.end, size)
        previous_end = child.end


def sections(meta: MessageMeta) -> list[tuple[int, ...]]:
    """Every section number that should resolve, per RFC 9051 §6.4.5."""
    out: list[tuple[int, ...]] = []

    def message(body: Part, prefix: tuple[int, ...]) -> None:
        if body.parts:
            for i, child in enumerate(body.parts, 1):
                node(child, (*prefix, i))
        else:
            node(body, (*prefix, 1))

    def node(p: Part, number: tuple[int, ...]) -> None:
        out.append(number)
        if p.message is not None:
            message(p.message, number)
        for i, child in enumerate(p.parts, 1):
            node(child, (*number, i))

    message(meta.body, ())
    return out


def check_all(data: bytes) -> MessageMeta:
    meta = _analyze(data)  # no safety net: the parser itself must not raise
    assert meta.size == len(data)
    assert meta.body.header_start == 0 and meta.body.end == len(data)
    check_part(meta.body, 0, len(data), len(data))
    assert MessageMeta.from_json(meta.to_json()) == meta
    for number in sections(meta):
        p = part(meta, number)
        assert p is not None
        for text in ("", "MIME", "HEADER", "TEXT"):
            got = section_span(meta, number, text)
            if got is not None:
                assert 0 <= got[0] <= got[1] <= len(data)
    return meta


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check_all(data)
    assert analyze(data) == _analyze(data)


LINE_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/digest; boundary="c"\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; name*0=a; name*1*=%41\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"From: a <b@c>, g: d@e;\r\n",
        b'To: (x) "y\\" z" <@r:q@[1.2]>\n',
        b" folded\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"--b\r\n",
        b"--b--\r\n",
        b"--c\n",
        b"--c--",
        b"body text\r\n",
        b"\xff\x00:\r\n",
    ]
)


@SETTINGS
@given(st.lists(st.one_of(LINE_PIECES, st.binary(max_size=8)), max_size=40))
def test_near_valid_line_soup(pieces: list[bytes]) -> None:
    check_all(b"".join(pieces))


# --- generated well-formed MIME, then damaged ------------------------------------


@dataclass
class Leaf:
    ctype: bytes | None  # None: no Content-Type (default)
    body: bytes


@dataclass
class Multi:
    subtype: bytes
    children: list[Node]
    preamble: bytes
    epilogue: bytes
    terminated: bool


@dataclass
class Message:
    subject: bytes
    inner: Node


Node: TypeAlias = Leaf | Multi | Message

WORDS = st.text(alphabet="abcXYZ 019.,", max_size=12).map(str.encode)


def body_lines(eol: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(WORDS, max_size=4).map(lambda ls: eol.join(ls))


leaves = st.builds(
    Leaf,
    st.sampled_from([None, b"text/plain; charset=utf-8", b"image/png", b"text/html"]),
    st.lists(WORDS, max_size=4).map(lambda ls: b"\n".join(ls)),
)


def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(
            Multi,
            st.sampled_from([b"mixed", b"alternative", b"related"]),
            st.lists(children, min_size=1, max_size=4),
            WORDS,
            WORDS,
            st.booleans(),
        ),
        st.builds(Message, WORDS, children),
    )


nodes: st.SearchStrategy[Node] = st.recursive(leaves, extend, max_leaves=10)


class Renderer:
    def __init__(self, eol: bytes) -> None:
        self.eol = eol
        self.counter = 0

    def entity(self, node: Node) -> bytes:
        """Header block + body of one entity."""
        eol = self.eol
        if isinstance(node, Leaf):
            head = b"" if node.ctype is None else b"Content-Type: " + node.ctype + eol
            return head + eol + node.body.replace(b"\n", eol)
        if isinstance(node, Message):
            head = b"Content-Type: message/rfc822" + eol
            inner = b"Subject: " + node.subject + eol + self.entity(node.inner)
            return head + eol + inner
        self.counter += 1
        boundary = b"=_%d_=" % self.counter
        head = b"Content-Type: multipart/" + node.subtype + b'; boundary="' + boundary + b'"' + eol
        body = b""
        if node.preamble:
            body += node.preamble + eol
        chunks = [b"--" + boundary + eol + self.entity(child) for child in node.children]
        body += eol.join(chunks)
        if node.terminated:
            body += eol + b"--" + boundary + b"--" + eol + node.epilogue
        return head + eol + body


def expect(node: Node, p: Part, data: bytes) -> None:
    if isinstance(node, Leaf):
        ctype = (node.ctype or b"text/plain").split(b";")[0].decode()
        assert f"{p.type}/{p.subtype}" == ctype
        eol = b"\r\n" if b"\r\n" in data else b"\n"
        assert data[p.body_start : p.end] == node.body.replace(b"\n", eol)
    elif isinstance(node, Message):
        assert (p.type, p.subtype) == ("message", "rfc822")
        assert p.envelope is not None
        assert p.envelope.subject == node.subject.decode().strip(" ")
        assert p.message is not None
        expect(node.inner, p.message, data)
    else:
        assert (p.type, p.subtype) == ("multipart", node.subtype.decode())
        assert len(p.parts) == len(node.children)
        for child, got in zip(node.children, p.parts, strict=True):
            expect(child, got, data)


@SETTINGS
@given(nodes, st.sampled_from([b"\r\n", b"\n"]))
def test_generated_mime_is_read_back_exactly(node: Node, eol: bytes) -> None:
    data = b"From: gen@example.org" + eol + Renderer(eol).entity(node)
    meta = check_all(data)
    expect(node, meta.body, data)


@SETTINGS
@given(nodes, st.sampled_from([b"\r\n", b"\n"]), st.data())
def test_damaged_mime_stays_valid(node: Node, eol: bytes, draw: st.DataObject) -> None:
    data = bytearray(Renderer(eol).entity(node))
    for _ in range(draw.draw(st.integers(0, 4))):
        at = draw.draw(st.integers(0, len(data)))
        action = draw.draw(st.sampled_from(["cut", "delete", "insert"]))
        if action == "cut":
            del data[at:]
        elif action == "delete":
            del data[at : at + draw.draw(st.integers(1, 20))]
        else:
            data[at:at] = draw.draw(st.one_of(LINE_PIECES, st.binary(max_size=6)))
    check_all(bytes(data))


# --- the address fast path agrees with the full parser ---------------------------

ATOM = st.text(alphabet="abcxyz0.-_=?+", min_size=1, max_size=8)
NAME = st.one_of(
    st.none(),
    st.lists(ATOM, min_size=1, max_size=3).map(" ".join),
    st.text(alphabet='ab ,;:<>@"\\', max_size=8).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)
ADDRESS = st.builds(
    lambda name, local, domain, spaced: (
        f"{name} <{local}@{domain}>"
        if name is not None
        else (f" {local}@{domain} " if spaced else f"<{local}@{domain}>")
    ),
    NAME,
    ATOM,
    ATOM,
    st.booleans(),
)


@SETTINGS
@given(st.lists(ADDRESS, min_size=1, max_size=4).map(",".join))
def test_address_fast_path_matches_full_parser(value: str) -> None:
    fast = _parse_simple(value)
    assert fast is not None
    assert fast == _parse_full(value)


@SETTINGS
@given(st.text(alphabet='ab <>@,;:."()\\[]\t', max_size=30))
def test_address_parser_total(value: str) -> None:
    fast = _parse_simple(value)
    full = _parse_full(value)
    if fast is not None:
        assert fast == full
