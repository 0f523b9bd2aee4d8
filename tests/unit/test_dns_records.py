"""``pochta dns records`` and ``pochta dns check``: zone lines and their verification.

The check tests build a complete zone from the same :func:`expected` list the
records are rendered from, then break one record at a time and assert that
exactly that record's line changes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import TLSFiles

from pochta.cli import _register, cli
from pochta.config import Settings, parse_settings
from pochta.dns import DictResolver
from pochta.dns.check import CheckLine, check, parse_tags, summary
from pochta.dns.zone import Expected, expected, records, txt_strings
from pochta.mailauth.keys import DKIMKey

BASE = 'hostname = "mail.example.test"\ndata_dir = "data"\n'
FULL = BASE + (
    '[listen]\nsmtp = ["0.0.0.0:25"]\nimaps = ["0.0.0.0:993"]\n'
    'submission = ["0.0.0.0:587"]\nhttps = ["0.0.0.0:443"]\n'
    '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n'
)
DOMAIN = "example.test"
HOST = "mail.example.test"
V4, V6 = "192.0.2.25", "2001:db8::25"
DAY = 86400
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def fake_key(selector: str, algorithm: str, *, active: bool = True, created: float = T0) -> DKIMKey:
    """A key record of realistic size; the private part is never used here."""
    rsa = algorithm == "rsa-sha256"
    # 294 octets is a DER SubjectPublicKeyInfo of RSA-2048 (392 base64 chars);
    # Ed25519 keys are 32 raw octets (RFC 8463 §4).
    raw = bytes((i * 7 + len(selector)) % 256 for i in range(294 if rsa else 32))
    kind = "rsa" if rsa else "ed25519"
    return DKIMKey(
        domain=DOMAIN,
        selector=selector,
        algorithm="rsa-sha256" if rsa else "ed25519-sha256",
        private_key=b"",
        public_txt=f"v=DKIM1; k={kind}; p={base64.b64encode(raw).decode()}",
        active=active,
        created=created,
    )


KEYS = [
    fake_key("20231121r", "rsa-sha256", created=T0 + 7 * DAY),
    fake_key("20231121e", "ed25519-sha256", created=T0 + 7 * DAY),
    fake_key("20231114r", "rsa-sha256", active=False),
    fake_key("20231114e", "ed25519-sha256", active=False),
]


@pytest.fixture
def full(tmp_path: Path, tls_files: TLSFiles) -> Settings:
    return parse_settings(FULL, tmp_path / "pochta.toml")


# ------------------------------------------------------------------ records()


def test_records_follow_the_listeners(tmp_path: Path) -> None:
    text = BASE + (
        '[listen]\nsmtp = ["0.0.0.0:25"]\npop3 = ["0.0.0.0:110"]\n'
        'submission = ["0.0.0.0:587"]\n[auth]\nallow_plaintext_without_tls = true\n'
    )
    lines = records(parse_settings(text, tmp_path / "pochta.toml"), DOMAIN, keys=[], now=0)
    zone = "\n".join(lines)
    assert "example.test.\t3600\tIN\tMX\t10 mail.example.test." in zone
    assert 'example.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"' in zone
    assert 'mail.example.test.\t3600\tIN\tTXT\t"v=spf1 a -all"' in zone
    assert "autoconfig.example.test.\t3600\tIN\tCNAME\tmail.example.test." in zone
    assert "_submission._tcp.example.test.\t3600\tIN\tSRV\t10 1 587 mail.example.test." in zone
    assert "_pop3._tcp.example.test.\t3600\tIN\tSRV\t10 1 110 mail.example.test." in zone
    # Services not offered get RFC 6186's "not available" record.
    assert "_imaps._tcp.example.test.\t3600\tIN\tSRV\t0 0 0 ." in zone
    assert "_submissions._tcp.example.test.\t3600\tIN\tSRV\t0 0 0 ." in zone
    # No https listener: no autodiscover SRV pointing at a port nobody serves.
    assert "_autodiscover._tcp" not in zone
    assert '_mta-sts.example.test.\t3600\tIN\tTXT\t"v=STSv1; id=19700101000000"' in zone
    assert "mta-sts.example.test.\t3600\tIN\tCNAME\tmail.example.test." in zone
    # A and PTR belong to other zones: reminders only, never record lines.
    assert "; mail.example.test. needs A/AAAA records" in zone
    assert any(line.startswith("; and each address a PTR record") for line in lines)
    assert not any("\tPTR\t" in line or "\tA\t" in line for line in lines)


def quoted_strings(rdata: str) -> list[bytes]:
    """The character-strings of a TXT rdata in zone-file syntax (RFC 1035 §5.1)."""
    return [re.sub(r"\\(.)", r"\1", s).encode() for s in re.findall(r'"((?:[^"\\]|\\.)*)"', rdata)]


def txt_line(lines: Sequence[str], owner: str) -> str:
    (line,) = [line for line in lines if line.startswith(owner + "\t")]
    return line


def test_dkim_records_are_split_into_255_octet_strings(full: Settings) -> None:
    lines = records(full, DOMAIN, keys=KEYS, now=0)
    for key in KEYS:
        line = txt_line(lines, f"{key.selector}._domainkey.{DOMAIN}.")
        rdata = line.split("\t")[4]
        strings = quoted_strings(rdata)
        assert b"".join(strings) == key.public_txt.encode()
        assert all(len(s) <= 255 for s in strings)
        if key.algorithm == "rsa-sha256":
            assert len(key.public_txt) > 255 and len(strings) == 2
            assert rdata.startswith("( ") and rdata.endswith(" )")
        else:
            assert len(strings) == 1 and not rdata.startswith("(")


def test_retired_keys_are_marked_with_a_removal_date(full: Settings) -> None:
    lines = records(full, DOMAIN, keys=KEYS, now=0)
    owners = [line.split("\t")[0] for line in lines if "._domainkey." in line and "\t" in line]
    # Active keys first, then the retired ones.
    assert owners == [f"{k.selector}._domainkey.{DOMAIN}." for k in KEYS]
    for key in KEYS:
        index = lines.index(txt_line(lines, f"{key.selector}._domainkey.{DOMAIN}."))
        above = lines[index - 1]
        if key.active:
            assert "retired" not in above
        else:
            # Retired when the next key came (T0 + 7 days), kept a week more.
            assert above.startswith("; retired: remove after 2023-11-28"), above
            assert key.selector in above


def test_retired_keys_stay_longer_when_the_queue_keeps_mail_longer(tmp_path: Path) -> None:
    text = BASE + "[delivery]\nmax_age = 1209600\n"  # 14 days in the queue
    lines = records(parse_settings(text, tmp_path / "pochta.toml"), DOMAIN, keys=KEYS, now=0)
    assert any(line.startswith("; retired: remove after 2023-12-07") for line in lines)


def test_no_keys_says_so(full: Settings) -> None:
    lines = records(full, DOMAIN, keys=[], now=0)
    assert not any("._domainkey." in line for line in lines)
    assert any(line.startswith("; none yet:") for line in lines)


def test_keys_are_read_from_the_key_store_when_not_given(full: Settings) -> None:
    from pochta.mailauth.keys import DKIMKeyStore

    created = DKIMKeyStore(full.data_dir).create(DOMAIN, now=T0)
    lines = records(full, DOMAIN, now=0)
    for key in created:
        line = txt_line(lines, f"{key.selector}._domainkey.{DOMAIN}.")
        assert b"".join(quoted_strings(line.split("\t")[4])) == key.public_txt.encode()


def test_dmarc_reports_go_to_postmaster_by_default(full: Settings) -> None:
    line = txt_line(records(full, DOMAIN, keys=[], now=0), f"_dmarc.{DOMAIN}.")
    assert line.endswith(
        '\tTXT\t"v=DMARC1; p=reject; rua=mailto:postmaster@example.test; adkim=r; aspf=r"'
    )


def test_dmarc_reports_address_from_settings(tmp_path: Path) -> None:
    text = BASE + '[mailauth]\ndmarc_reports = "dmarc@reports.example.net"\n'
    lines = records(parse_settings(text, tmp_path / "pochta.toml"), DOMAIN, keys=[], now=0)
    line = txt_line(lines, f"_dmarc.{DOMAIN}.")
    assert "rua=mailto:dmarc@reports.example.net;" in line
    # Another domain receives the reports: it has to agree (RFC 7489 §7.1).
    above = "\n".join(lines[lines.index(line) - 2 : lines.index(line)])
    assert "example.test._report._dmarc.reports.example.net." in above


def test_txt_strings_split_on_character_boundaries() -> None:
    assert txt_strings("") == [b""]
    assert txt_strings("a" * 255) == [b"a" * 255]
    assert txt_strings("a" * 256) == [b"a" * 255, b"a"]
    # "é" is two octets: a split there would leave half a character in each string.
    pieces = txt_strings("a" * 254 + "é" + "b")
    assert pieces == [b"a" * 254, "éb".encode()]
    assert all(len(p) <= 255 for p in txt_strings("é" * 600))


def test_cli_prints_records_for_local_domains_only(tmp_path: Path) -> None:
    _register()
    config = tmp_path / "pochta.toml"
    config.write_text(BASE)
    runner = CliRunner()
    added = runner.invoke(cli, ["--config", str(config), "domain", "add", DOMAIN])
    assert added.exit_code == 0, added.output
    result = runner.invoke(cli, ["--config", str(config), "dns", "records", DOMAIN])
    assert result.exit_code == 0, result.output
    assert "IN\tMX\t10 mail.example.test." in result.output
    assert "_dmarc.example.test.\t3600\tIN\tTXT" in result.output
    other = runner.invoke(cli, ["--config", str(config), "dns", "records", "other.test"])
    assert other.exit_code != 0


# -------------------------------------------------------------------- check()


def complete_zone(expectations: Sequence[Expected]) -> DictResolver:
    """Every record as printed, plus the host's addresses and their PTR records."""
    data: dict[str, dict[str, list[object]]] = {}
    for record in expectations:
        if record.in_zone:
            data.setdefault(record.name, {}).setdefault(record.rtype, []).append(record.value)
    data.setdefault(HOST, {}).update({"A": [V4], "AAAA": [V6]})
    resolver = DictResolver(data)
    for address in (V4, V6):
        resolver.zones.set(address, "PTR", HOST)
    return resolver


@pytest.fixture
def zone(full: Settings) -> DictResolver:
    return complete_zone(expected(full, DOMAIN, keys=KEYS))


def by_name(lines: Sequence[CheckLine]) -> dict[tuple[str, str], CheckLine]:
    table = {(line.name, line.rtype): line for line in lines}
    assert len(table) == len(lines), "each (name, type) is checked once"
    return table


def not_ok(lines: Sequence[CheckLine]) -> list[tuple[str, str, str]]:
    return [(line.status, line.name, line.rtype) for line in lines if not line.ok]


async def test_complete_zone_is_all_ok(full: Settings, zone: DictResolver) -> None:
    lines = await check(full, DOMAIN, zone, KEYS)
    assert not_ok(lines) == []
    table = by_name(lines)
    # MX, A/AAAA, 2 PTR, 2 SPF, 4 DKIM, DMARC, 2 aliases, 7 SRV, mta-sts name, 2 TXT.
    assert len(lines) == 23
    assert table[(DOMAIN, "MX")].render() == "ok      MX example.test → mail.example.test"
    assert table[(V4, "PTR")].found == HOST
    assert table[(HOST, "A/AAAA")].found == f"{V6}, {V4}"
    assert summary(lines) == "0 of 23 records missing or wrong"


async def test_one_record_removed_is_the_one_line_missing(
    full: Settings, zone: DictResolver
) -> None:
    zone.zones.delete(f"_dmarc.{DOMAIN}")
    lines = await check(full, DOMAIN, zone, KEYS)
    assert not_ok(lines) == [("missing", f"_dmarc.{DOMAIN}", "TXT")]
    (line,) = [line for line in lines if not line.ok]
    assert line.found == "no such name"
    assert line.render().startswith(
        'MISSING _dmarc.example.test TXT: expected "v=DMARC1; p=reject; rua=mailto:postmaster@'
    )
    assert " — without a DMARC policy" in line.render()
    assert summary(lines) == "1 of 23 records missing or wrong"


async def test_one_dkim_selector_removed(full: Settings, zone: DictResolver) -> None:
    retired = f"{KEYS[3].selector}._domainkey.{DOMAIN}"
    zone.zones.delete(retired)
    lines = await check(full, DOMAIN, zone, KEYS)
    assert not_ok(lines) == [("missing", retired, "TXT")]


async def test_wrong_dkim_key(full: Settings, zone: DictResolver) -> None:
    name = f"{KEYS[0].selector}._domainkey.{DOMAIN}"
    zone.zones.set(name, "TXT", fake_key("other", "rsa-sha256").public_txt)
    lines = await check(full, DOMAIN, zone, KEYS)
    assert not_ok(lines) == [("wrong", name, "TXT")]
    assert "not ours" in by_name(lines)[(name, "TXT")].advice
    # Same key, other tag order, whitespace inside p= and no v=: still ours.
    p = parse_tags(KEYS[0].public_txt)["p"]
    spaced = " ".join(p[i : i + 60] for i in range(0, len(p), 60))
    zone.zones.set(name, "TXT", f"k=rsa ; p={spaced}")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    # Right key, wrong algorithm tag: a verifier would not accept it.
    zone.zones.set(name, "TXT", f"v=DKIM1; k=ed25519; p={p}")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", name, "TXT")]
    # A second record beside ours: verifiers may pick either (RFC 6376 §3.6.2.2).
    zone.zones.set(name, "TXT", [KEYS[0].public_txt, "v=DKIM1; p="])
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", name, "TXT")]


async def test_timeout_is_an_error_line_not_a_crash(full: Settings, zone: DictResolver) -> None:
    zone.zones.fail(f"_dmarc.{DOMAIN}", "TXT", "timeout")
    zone.zones.fail(f"_imaps._tcp.{DOMAIN}", "SRV", "servfail")
    lines = await check(full, DOMAIN, zone, KEYS)
    assert not_ok(lines) == [
        ("error", f"_dmarc.{DOMAIN}", "TXT"),
        ("error", f"_imaps._tcp.{DOMAIN}", "SRV"),
    ]
    line = by_name(lines)[(f"_dmarc.{DOMAIN}", "TXT")]
    assert line.render().startswith("ERROR   _dmarc.example.test TXT: expected ")
    assert "timed out" in line.found and "try again" in line.advice
    assert summary(lines) == "0 of 23 records missing or wrong, 2 could not be looked up"


async def test_host_address_failure_spreads_as_errors(full: Settings, zone: DictResolver) -> None:
    for rtype in ("A", "AAAA"):
        zone.zones.fail(HOST, rtype, "servfail")
    lines = await check(full, DOMAIN, zone, KEYS)
    statuses = {(line.name, line.rtype): line.status for line in lines if not line.ok}
    # Without the host's addresses, its PTR records and the aliases cannot be compared.
    assert statuses == {
        (HOST, "A/AAAA"): "error",
        (HOST, "PTR"): "error",
        (f"autoconfig.{DOMAIN}", "CNAME"): "error",
        (f"autodiscover.{DOMAIN}", "CNAME"): "error",
        (f"mta-sts.{DOMAIN}", "CNAME"): "error",
    }


async def test_dmarc_policy_none_is_wrong(full: Settings, zone: DictResolver) -> None:
    name = f"_dmarc.{DOMAIN}"
    zone.zones.set(name, "TXT", "v=DMARC1; p=none; rua=mailto:postmaster@example.test")
    (line,) = [line for line in await check(full, DOMAIN, zone, KEYS) if not line.ok]
    assert (line.status, line.name) == ("wrong", name)
    assert "p=none only monitors" in line.advice
    zone.zones.set(name, "TXT", "v=DMARC1; p=quarantine")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    zone.zones.set(name, "TXT", "v=DMARC1; rua=mailto:postmaster@example.test")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", name, "TXT")]
    # Two DMARC records: receivers apply neither (RFC 7489 §6.6.3).
    zone.zones.set(name, "TXT", ["v=DMARC1; p=reject", "v=DMARC1; p=quarantine"])
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", name, "TXT")]
    # Unrelated TXT records there are ignored.
    zone.zones.set(name, "TXT", ["v=DMARC1; p=reject", "something else"])
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []


@pytest.mark.parametrize(
    ("spf", "status"),
    [
        ("v=spf1 mx -all", "ok"),
        ("v=spf1 a ~all", "ok"),
        ("v=spf1 a:mail.example.test -all", "ok"),
        ("v=spf1 mx:example.test/24 -all", "ok"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "ok"),
        ("v=spf1 ip6:2001:db8::/32 -all", "ok"),
        ("V=SPF1 +MX -ALL", "ok"),
        ("v=spf1 ip4:198.51.100.7 -all", "wrong"),
        ("v=spf1 include:_spf.provider.test -all", "wrong"),
        ("v=spf1 -mx -all", "wrong"),
        ("v=spf1 -all mx", "wrong"),
        ("v=spf1 +all", "wrong"),
        (["v=spf1 mx -all", "v=spf1 a -all"], "wrong"),
        (["google-site-verification=xyz"], "missing"),
    ],
)
async def test_spf_must_authorise_the_host(
    full: Settings, zone: DictResolver, spf: str | list[str], status: str
) -> None:
    zone.zones.set(DOMAIN, "TXT", spf)
    lines = await check(full, DOMAIN, zone, KEYS)
    assert by_name(lines)[(DOMAIN, "TXT")].status == status
    assert len(not_ok(lines)) == (status != "ok")


async def test_host_spf(full: Settings, zone: DictResolver) -> None:
    zone.zones.set(HOST, "TXT", "v=spf1 mx -all")  # the host has no MX: mx names nothing
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", HOST, "TXT")]
    zone.zones.set(HOST, "TXT", f"v=spf1 ip4:{V4} ip6:{V6} -all")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []


async def test_mx(full: Settings, zone: DictResolver) -> None:
    zone.zones.set(DOMAIN, "MX", ["10 mail.example.test", "20 backup.example.net"])
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    zone.zones.set(DOMAIN, "MX", ["20 backup.example.net"])
    (line,) = [line for line in await check(full, DOMAIN, zone, KEYS) if not line.ok]
    assert (line.status, line.rtype, line.found) == ("wrong", "MX", "backup.example.net")
    zone.zones.set(DOMAIN, "MX", ["0 ."])
    (line,) = [line for line in await check(full, DOMAIN, zone, KEYS) if not line.ok]
    assert line.status == "wrong" and "null MX" in line.advice
    zone.zones.delete(DOMAIN, "MX")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("missing", DOMAIN, "MX")]


async def test_ptr_pointing_elsewhere(full: Settings, zone: DictResolver) -> None:
    zone.zones.set(V6, "PTR", "host-25.provider.test")
    zone.zones.delete(V4, "PTR")
    lines = await check(full, DOMAIN, zone, KEYS)
    # IPv6 first, the order host_addresses gives (RFC 6724).
    assert not_ok(lines) == [("wrong", V6, "PTR"), ("missing", V4, "PTR")]
    line = by_name(lines)[(V6, "PTR")]
    assert line.found == "host-25.provider.test" and "reverse DNS" in line.advice


async def test_host_without_addresses(full: Settings, zone: DictResolver) -> None:
    for rtype in ("A", "AAAA"):
        zone.zones.delete(HOST, rtype)
    problems = not_ok(await check(full, DOMAIN, zone, KEYS))
    # The host keeps its SPF TXT, so the aliases find the name but no address.
    assert problems == [
        ("missing", HOST, "A/AAAA"),
        ("missing", f"autoconfig.{DOMAIN}", "CNAME"),
        ("missing", f"autodiscover.{DOMAIN}", "CNAME"),
        ("missing", f"mta-sts.{DOMAIN}", "CNAME"),
    ]


async def test_aliases_compare_addresses(full: Settings, zone: DictResolver) -> None:
    name = f"autoconfig.{DOMAIN}"
    zone.zones.delete(name)
    zone.zones.set(name, "A", V4)  # a copy of the host's address is as good as the CNAME
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    zone.zones.set(name, "A", "198.51.100.80")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [("wrong", name, "CNAME")]


async def test_srv(full: Settings, zone: DictResolver) -> None:
    imaps, pop3 = f"_imaps._tcp.{DOMAIN}", f"_pop3._tcp.{DOMAIN}"
    zone.zones.set(imaps, "SRV", "5 0 993 mail.example.test")  # other priority: fine
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    zone.zones.set(imaps, "SRV", "0 0 0 .")  # says "not offered" but we offer it
    zone.zones.set(pop3, "SRV", "0 1 110 mail.example.test")  # offered, but we do not
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [
        ("wrong", imaps, "SRV"),
        ("wrong", pop3, "SRV"),
    ]
    zone.zones.delete(pop3)
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [
        ("wrong", imaps, "SRV"),
        ("missing", pop3, "SRV"),
    ]


async def test_mta_sts_and_tls_rpt(full: Settings, zone: DictResolver) -> None:
    sts, rpt = f"_mta-sts.{DOMAIN}", f"_smtp._tls.{DOMAIN}"
    zone.zones.set(sts, "TXT", "v=STSv1; id=20250101")  # any id will do
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == []
    zone.zones.set(sts, "TXT", ["v=STSv1; id=1", "v=STSv1; id=2"])
    zone.zones.set(rpt, "TXT", "v=TLSRPTv1;")
    assert not_ok(await check(full, DOMAIN, zone, KEYS)) == [
        ("wrong", sts, "TXT"),
        ("wrong", rpt, "TXT"),
    ]


def test_render_shortens_long_values() -> None:
    line = CheckLine("wrong", "s._domainkey.x.test", "TXT", '"' + "a" * 300 + '"', "nothing", "x")
    text = line.render()
    assert len(text) < 200 and "…" in text
    assert text.startswith('WRONG   s._domainkey.x.test TXT: expected "aaa')
    assert text.endswith(", found nothing — x")


_TAG = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)
_VALUE = st.from_regex(r"[!-:<-~]{0,20}", fullmatch=True)  # printable, no ";" or space


@given(st.dictionaries(_TAG, _VALUE, max_size=6), st.sampled_from(["; ", ";", " ;  "]))
def test_parse_tags_round_trip(tags: dict[str, str], sep: str) -> None:
    """RFC 6376 §3.2 tag-lists: what we write is what we read, whatever the spacing."""
    text = sep.join(f"{name} = {value}" for name, value in tags.items()) + sep
    assert parse_tags(text) == tags


@given(st.text(max_size=200))
def test_parse_tags_takes_any_text(text: str) -> None:
    tags = parse_tags(text)
    for name, value in tags.items():
        assert name and name == name.strip() and ";" not in name + value
