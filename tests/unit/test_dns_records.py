"""``pochta dns records``: the zone lines follow the settings."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pochta.cli import _register, cli
from pochta.config import parse_settings
from pochta.dns.zone import records

BASE = 'hostname = "mail.example.test"\ndata_dir = "data"\n'


def test_records_follow_the_listeners(tmp_path: Path) -> None:
    text = BASE + (
        '[listen]\nsmtp = ["0.0.0.0:25"]\npop3 = ["0.0.0.0:110"]\n'
        'submission = ["0.0.0.0:587"]\n[auth]\nallow_plaintext_without_tls = true\n'
    )
    lines = records(parse_settings(text, tmp_path / "pochta.toml"), "example.test", now=0)
    zone = "\n".join(lines)
    assert "example.test.\t3600\tIN\tMX\t10 mail.example.test." in zone
    assert 'example.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"' in zone
    assert "autoconfig.example.test.\t3600\tIN\tCNAME\tmail.example.test." in zone
    assert "_submission._tcp.example.test.\t3600\tIN\tSRV\t10 1 587 mail.example.test." in zone
    assert "_pop3._tcp.example.test.\t3600\tIN\tSRV\t10 1 110 mail.example.test." in zone
    # Services not offered get RFC 6186's "not available" record.
    assert "_imaps._tcp.example.test.\t3600\tIN\tSRV\t0 0 0 ." in zone
    assert "_submissions._tcp.example.test.\t3600\tIN\tSRV\t0 0 0 ." in zone
    assert '_mta-sts.example.test.\t3600\tIN\tTXT\t"v=STSv1; id=19700101000000"' in zone


def test_cli_prints_records_for_local_domains_only(tmp_path: Path) -> None:
    _register()
    config = tmp_path / "pochta.toml"
    config.write_text(BASE)
    runner = CliRunner()
    added = runner.invoke(cli, ["--config", str(config), "domain", "add", "example.test"])
    assert added.exit_code == 0, added.output
    result = runner.invoke(cli, ["--config", str(config), "dns", "records", "example.test"])
    assert result.exit_code == 0, result.output
    assert "IN\tMX\t10 mail.example.test." in result.output
    other = runner.invoke(cli, ["--config", str(config), "dns", "records", "other.test"])
    assert other.exit_code != 0
