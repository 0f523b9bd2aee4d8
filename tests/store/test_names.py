"""Mailbox names and flags: pure functions, bytes/strings in, values out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.store import DELETED, DRAFT, FLAGGED, SEEN, InvalidMailboxName, StoreError, names
from pochta.store import flags as flagset
from pochta.store.common import user_parts
from pochta.store.files import split_name


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        # RFC 3501 §5.1.3's example, level by level.
        ("~peter", "~peter"),
        ("台北", "&U,BTFw-"),
        ("日本語", "&ZeVnLIqe-"),
        ("&", "&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("a&b ü", "a&-b &APw-"),
        ("😀", "&2D3eAA-"),  # outside the BMP: a UTF-16 surrogate pair
    ],
)
def test_mutf7_vectors(text: str, encoded: str) -> None:
    assert names.mutf7_encode(text) == encoded
    assert names.mutf7_decode(encoded) == text


@pytest.mark.parametrize("bad", ["&", "&U,BTFw", "&!!!-", "ü", "&2D0-"])
def test_mutf7_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        names.mutf7_decode(bad)


@given(st.text())
def test_mutf7_round_trip(text: str) -> None:
    try:
        text.encode("utf-16-be")
    except UnicodeEncodeError:
        return  # lone surrogates are refused by normalize() before encoding
    encoded = names.mutf7_encode(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert names.mutf7_decode(encoded) == text


_level = st.text(min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and "/" not in s and s.upper() != "INBOX"
)


@given(st.lists(_level, min_size=1, max_size=4))
def test_folder_dir_round_trip_and_confinement(levels: list[str]) -> None:
    try:
        name = names.normalize("/".join(levels))
    except InvalidMailboxName:
        return
    folder = names.folder_dir(name)
    assert folder.startswith(".") and folder not in (".", "..")
    assert "/" not in folder and "\0" not in folder
    assert names.name_from_dir(folder) == name


def test_normalize() -> None:
    assert names.normalize("inbox") == "INBOX"
    assert names.normalize("Inbox/Sub") == "INBOX/Sub"
    assert names.normalize("Inboxes") == "Inboxes"
    assert names.normalize("a/", for_create=True) == "a"
    assert names.parents("a/b/c") == ["a", "a/b"]
    assert names.is_inferior("a/b", "a") and not names.is_inferior("ab", "a")


def test_name_from_dir_skips_foreign_dirs() -> None:
    assert names.name_from_dir(".Sent") == "Sent"
    assert names.name_from_dir(".a%2eb") == "a.b"
    assert names.name_from_dir(".a%2Eb") == "a.b"  # accepted, though not canonical
    assert names.name_from_dir("..") is None
    assert names.name_from_dir(".x..y") is None  # empty level
    assert names.name_from_dir(".&bad") is None
    assert names.name_from_dir("cur") is None


def test_flags() -> None:
    assert flagset.normalize(["\\SEEN", "\\recent", "$Junk"]) == {SEEN, "$Junk"}
    for bad in ("\\Bogus", "", "a b", "x]", "é"):
        with pytest.raises(StoreError):
            flagset.normalize([bad])
    every = frozenset({SEEN, FLAGGED, DELETED, DRAFT, "\\Answered"})
    assert flagset.to_letters(every) == "DFRST"
    assert flagset.from_letters("DFRSTPa") == every
    bits, keywords = flagset.split(every | {"$b", "$a"})
    assert keywords == "$a $b"
    assert flagset.from_bits(bits, keywords) == every | {"$a", "$b"}


def test_file_names_and_users() -> None:
    assert split_name("1.M2P3Q4.host,S=5:2,FS") == ("1.M2P3Q4.host,S=5", "FS")
    assert split_name("1.M2P3Q4.host,S=5") == ("1.M2P3Q4.host,S=5", None)
    assert user_parts("alice@example.test") == ("example.test", "alice")
    for bad in ("alice", "@x", "a@", "../x@y", "a@..", "a/b@c", "a@b/c", "a\0@b"):
        with pytest.raises(StoreError):
            user_parts(bad)
