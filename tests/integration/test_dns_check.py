"""``pochta dns check`` against a real DNS server on loopback.

The zone served is built from the very lines ``pochta dns records`` prints
(parsed as zone-file text), plus the host's A/AAAA and PTR records that the
output only mentions in comments. So the test proves the round trip: paste
what ``records`` says, and ``check`` is satisfied; take one record away, and
``check`` names exactly that one and exits 1. The addresses are documentation
addresses (RFC 5737, RFC 3849) that only appear as DNS data: nothing connects
to them.

No server is started: the listeners only decide which SRV records are real.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.conftest import TLSFiles
from tests.dnsserver import DNSTestServer

from pochta.cli import _register, cli
from pochta.config import load_settings
from pochta.dns import TXT
from pochta.errors import UserFacingError
from pochta.mailauth.keys import DKIMKeyStore

DOMAIN = "example.test"
HOST = "mail.example.test"
V4, V6 = "192.0.2.25", "2001:db8::25"

SETTINGS = """\
hostname = "mail.example.test"
data_dir = "data"

[listen]
smtp = ["127.0.0.1:25"]
imaps = ["127.0.0.1:993"]
submission = ["127.0.0.1:587"]
https = ["127.0.0.1:443"]

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[dns]
nameservers = ["{nameserver}"]
"""


@dataclass
class Setup:
    config: Path
    dns: DNSTestServer

    def run(self, *args: str) -> Result:
        _register()
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])


@pytest.fixture
def setup(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Setup]:
    with DNSTestServer() as dns:
        config = tmp_path / "pochta.toml"
        config.write_text(SETTINGS.format(nameserver=dns.hostport))
        found = Setup(config, dns)
        added = found.run("domain", "add", DOMAIN)
        assert added.exit_code == 0, added.output
        # A rotated domain: two active keys and two retired ones, all published.
        keys = DKIMKeyStore(load_settings(config).data_dir)
        keys.create(DOMAIN, now=1_700_000_000)
        keys.rotate(DOMAIN)
        yield found


def parse_txt(rdata: str) -> TXT:
    """Zone-file TXT rdata (one or more quoted strings, maybe in parentheses)."""
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', rdata)
    return TXT(tuple(re.sub(r"\\(.)", r"\1", s).encode() for s in strings))


def publish(dns: DNSTestServer, zone_text: str) -> int:
    """Serve every record line of ``zone_text``; returns how many there were."""
    rrsets: dict[tuple[str, str], list[object]] = {}
    for line in zone_text.splitlines():
        if not line or line.startswith(";"):
            continue
        owner, ttl, klass, rtype, rdata = line.split("\t", 4)
        assert owner.endswith(".") and ttl == "3600" and klass == "IN", line
        value = parse_txt(rdata) if rtype == "TXT" else rdata
        rrsets.setdefault((owner, rtype), []).append(value)
    for (owner, rtype), values in rrsets.items():
        dns.zones.set(owner, rtype, values)
    # What the comments ask for: the host's addresses and reverse DNS.
    dns.zones.set(HOST, "A", V4)
    dns.zones.set(HOST, "AAAA", V6)
    for address in (V4, V6):
        dns.zones.set(address, "PTR", HOST)
    return sum(len(values) for values in rrsets.values())


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.startswith("ok      ")]


def test_published_records_pass_and_a_removed_one_is_named(setup: Setup) -> None:
    printed = setup.run("dns", "records", DOMAIN)
    assert printed.exit_code == 0, printed.output
    count = publish(setup.dns, printed.stdout)
    # MX, 2 SPF, 4 DKIM, DMARC, 2 client CNAMEs, 7 SRV, the mta-sts CNAME, 2 TXT.
    assert count == 20
    lines = printed.stdout.splitlines()
    assert any('( "v=DKIM1; k=rsa; p=' in line for line in lines)
    assert f"_imaps._tcp.{DOMAIN}.\t3600\tIN\tSRV\t0 1 993 {HOST}." in printed.stdout

    ok = setup.run("dns", "check", DOMAIN)
    assert ok.exit_code == 0, ok.output
    assert problems(ok.stdout) == []
    assert "ok      MX example.test → mail.example.test\n" in ok.stdout
    assert f"ok      PTR {V4} → {HOST}\n" in ok.stdout
    assert ok.stderr == ""
    total = len(ok.stdout.splitlines())

    # The real command line, so exit status and stderr are what a shell sees.
    setup.dns.zones.delete(f"_dmarc.{DOMAIN}", "TXT")
    run = subprocess.run(
        [sys.executable, "-m", "pochta", "--config", str(setup.config), "dns", "check", DOMAIN],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    (line,) = problems(run.stdout)
    assert line.startswith('MISSING _dmarc.example.test TXT: expected "v=DMARC1; p=reject;')
    assert "found no such name" in line
    assert run.stderr == f"1 of {total} records missing or wrong\n"


def test_a_removed_dkim_selector_is_named(setup: Setup) -> None:
    printed = setup.run("dns", "records", DOMAIN)
    publish(setup.dns, printed.stdout)
    retired = DKIMKeyStore(load_settings(setup.config).data_dir).published(DOMAIN)[-1]
    assert not retired.active
    setup.dns.zones.delete(retired.record_name)
    result = setup.run("dns", "check", DOMAIN)
    assert result.exit_code == 1
    (line,) = problems(result.stdout)
    assert line.startswith(f"MISSING {retired.record_name} TXT: expected ")


def test_dns_failures_are_error_lines(setup: Setup) -> None:
    publish(setup.dns, setup.run("dns", "records", DOMAIN).stdout)
    setup.dns.zones.fail(f"_mta-sts.{DOMAIN}", "TXT", "servfail")
    result = setup.run("dns", "check", DOMAIN)
    assert result.exit_code == 1
    (line,) = problems(result.stdout)
    assert line.startswith("ERROR   _mta-sts.example.test TXT: ")
    assert "SERVFAIL" in line
    assert result.stderr.endswith("0 of 23 records missing or wrong, 1 could not be looked up\n")


def test_only_local_domains(setup: Setup) -> None:
    result = setup.run("dns", "check", "other.test")
    assert result.exit_code == 1
    assert isinstance(result.exception, UserFacingError)
    assert str(result.exception) == (
        "other.test is not one of this server's domains (pochta domain add)"
    )
    assert setup.dns.queries == []
