"""pochta.smtp.srs: rewriting forwarded senders and reversing bounces."""

from __future__ import annotations

import stat
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pochta.smtp.srs import SRS, is_srs

DAY = 86400.0
NOW = 20_000 * DAY + 3600


def srs(key: bytes = b"k" * 32, now: float = NOW) -> SRS:
    clock = [now]
    made = SRS(key, clock=lambda: clock[0])
    made.clock_cell = clock  # type: ignore[attr-defined]
    return made


def test_round_trip() -> None:
    s = srs()
    rewritten = s.forward("alice@example.org", "forwarder.test")
    local, _, domain = rewritten.partition("@")
    assert domain == "forwarder.test" and is_srs(local)
    assert local.startswith("SRS0=") and local.endswith("=example.org=alice")
    assert s.reverse(rewritten) == "alice@example.org"
    # Some servers lower-case the local part on the way back.
    assert s.reverse(rewritten.lower()) == "alice@example.org"


def test_odd_local_parts_survive() -> None:
    s = srs()
    for sender in ("a=b=c@x.test", "user+tag@x.test", "UPPER@X.TEST", "ünï@x.test"):
        assert s.reverse(s.forward(sender, "f.test")) == sender
    # What could not come back unchanged is not rewritten at all.
    for sender in ('"quoted name"@x.test', "a@bücher.test"):
        assert s.forward(sender, "f.test") == sender


def test_the_hash_covers_where_the_fields_meet() -> None:
    s = srs()
    rewritten = s.forward("galice@example.org", "f.test")
    local, _, domain = rewritten.partition("@")
    hashed, stamp = local[5:13], local[14:16]
    # The same characters split differently between domain and local part.
    moved = f"SRS0={hashed}={stamp}=example.orgg=alice@{domain}"
    assert s.reverse(moved) is None


def test_null_sender_and_non_addresses_are_left_alone() -> None:
    s = srs()
    assert s.forward("", "f.test") == ""
    assert s.forward("postmaster", "f.test") == "postmaster"


def test_only_our_key_and_an_intact_hash_reverse() -> None:
    rewritten = srs().forward("alice@example.org", "f.test")
    assert srs(key=b"other key 123456").reverse(rewritten) is None
    local, _, domain = rewritten.partition("@")
    hashed = local[5:13]
    assert len(hashed) == 8 and hashed.isalnum()
    other = ("B" if hashed[0] == "A" else "A") + hashed[1:]
    tampered = local.replace(hashed, other, 1)
    assert srs().reverse(f"{tampered}@{domain}") is None
    changed_target = rewritten.replace("=alice@", "=mallory@")
    assert srs().reverse(changed_target) is None
    for junk in (
        "SRS0=@f.test",
        "SRS0=abcd=AA@f.test",
        "SRS2=a=b=c=d@f.test",
        "nosrs@f.test",
        "SRS0=AAAAAAAA=AA=x y.test=a@f.test",
    ):
        assert srs().reverse(junk) is None


def test_addresses_expire_after_21_days() -> None:
    s = srs()
    rewritten = s.forward("alice@example.org", "f.test")
    s.clock_cell[0] = NOW + 21 * DAY  # type: ignore[attr-defined]
    assert s.reverse(rewritten) == "alice@example.org"
    s.clock_cell[0] = NOW + 22 * DAY  # type: ignore[attr-defined]
    assert s.reverse(rewritten) is None
    # The day counter wraps at 1024 days; freshness is modulo that too.
    late = srs(now=1023 * DAY + 10)
    early = late.forward("a@b.test", "f.test")
    late.clock_cell[0] = 1025 * DAY  # type: ignore[attr-defined]
    assert late.reverse(early) == "a@b.test"


def test_a_second_forwarder_makes_srs1_and_bounces_go_to_the_first() -> None:
    first, second = srs(key=b"first key 123456"), srs(key=b"second key 12345")
    once = first.forward("alice@example.org", "first.test")
    twice = second.forward(once, "second.test")
    assert twice.startswith("SRS1=") and twice.endswith("@second.test")
    assert "=first.test==" in twice
    back = second.reverse(twice)
    assert back == once  # the first forwarder's address
    assert first.reverse(back or "") == "alice@example.org"
    # A third forwarder keeps naming the first one: the address does not grow.
    thrice = srs(key=b"third key 123456").forward(twice, "third.test")
    assert thrice.startswith("SRS1=") and "=first.test==" in thrice
    assert len(thrice.partition("@")[0]) == len(twice.partition("@")[0])


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_key_of, [str(tmp_path)] * 16)
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert [p.name for p in tmp_path.iterdir()] == ["srs.key"]  # no temporary files left


def _key_of(directory: str) -> bytes:
    SRS.load(Path(directory))
    return (Path(directory) / "srs.key").read_bytes()


def test_the_key_is_made_once_and_private(tmp_path: Path) -> None:
    made = SRS.load(tmp_path)
    path = tmp_path / "srs.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    again = SRS.load(tmp_path)
    rewritten = made.forward("a@b.test", "f.test")
    assert again.reverse(rewritten) == "a@b.test"


@given(st.text(max_size=120))
def test_reverse_never_raises(text: str) -> None:
    result = srs().reverse(text)
    assert result is None or "@" in result


@given(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
        lambda t: "@" not in t
    ),
    st.from_regex(r"[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True),
)
def test_any_sender_round_trips(local: str, domain: str) -> None:
    s = srs()
    sender = f"{local}@{domain}"
    rewritten = s.forward(sender, "f.test")
    if is_srs(local) or rewritten == sender:  # another forwarder's, or not embeddable
        return
    assert s.reverse(rewritten) == sender
