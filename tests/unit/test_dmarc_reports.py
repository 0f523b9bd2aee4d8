"""pochta.mailauth.reports: DMARC aggregate reports (RFC 7489 §7.2)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pochta.dns.mock import DictResolver
from pochta.mailauth.dkim import DKIMResult
from pochta.mailauth.dmarc import DMARCResult
from pochta.mailauth.reports import DmarcReports, parse_rua
from pochta.mailauth.spf import SPFResult

DAY = 86400
NOW = 20_000 * DAY + 3600
RECORD = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"


def dmarc(
    record: str = RECORD,
    result: str = "fail",
    disposition: str = "quarantine",
    domain: str = "example.org",
) -> DMARCResult:
    return DMARCResult(
        result=result,  # type: ignore[arg-type]
        domain=domain,
        policy_domain="example.org",
        policy="quarantine",
        disposition=disposition,  # type: ignore[arg-type]
        spf_aligned=False,
        dkim_aligned=result == "pass",
        record=record,
        reason="",
    )


SPF = SPFResult("fail", "mailfrom", "example.org", "a@example.org", "", "")  # type: ignore[arg-type]
DKIM = (DKIMResult("pass", "example.org", "s1", "rsa-sha256", "", "abc"),)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    async def __call__(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> str:
        self.sent.append((mail_from, list(rcpts), data))
        return f"Q{len(self.sent)}"


def reports(tmp_path: Path, zones: dict[str, dict[str, object]] | None = None) -> DmarcReports:
    clock = [float(NOW)]
    made = DmarcReports(
        tmp_path / "dmarc.sqlite",
        hostname="mx.receiver.test",
        resolver=DictResolver(zones or {}),
        clock=lambda: clock[0],
    )
    made.clock_cell = clock  # type: ignore[attr-defined]
    return made


def a_day_after(
    tmp_path: Path, record: str, zones: dict[str, dict[str, object]] | None = None
) -> DmarcReports:
    """A log with one message under ``record``, the day after it came."""
    log = reports(tmp_path, zones)
    log.record(dmarc(record=record), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    return log


def report_of(data: bytes) -> tuple[email.message.EmailMessage, ET.Element]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    (attachment,) = list(message.iter_attachments())
    name = attachment.get_filename()
    assert name is not None and name.endswith(".xml.gz")
    assert name.startswith("mx.receiver.test!example.org!")
    return message, ET.fromstring(gzip.decompress(attachment.get_content()))


def test_a_day_is_reported_once_the_day_is_over(tmp_path: Path) -> None:
    log = reports(tmp_path)
    for _ in range(3):
        log.record(dmarc(), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.record(dmarc(result="pass", disposition="none"), source_ip="192.0.2.2", spf=SPF, dkim=DKIM)
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 0  # the day is not over
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    assert asyncio.run(log.send_due(outbox)) == 1
    assert asyncio.run(log.send_due(outbox)) == 0  # once
    ((mail_from, rcpts, data),) = outbox.sent
    assert mail_from == "" and rcpts == ["dmarc@example.org"]
    message, feedback = report_of(data)
    assert message["Subject"].startswith("Report Domain: example.org Submitter: mx.receiver.test")
    assert feedback.findtext("report_metadata/org_name") == "mx.receiver.test"
    begin = int(feedback.findtext("report_metadata/date_range/begin") or 0)
    assert begin == (NOW // DAY) * DAY
    assert feedback.findtext("policy_published/p") == "quarantine"
    assert feedback.findtext("policy_published/domain") == "example.org"
    rows = {r.findtext("row/source_ip"): r for r in feedback.findall("record")}
    assert rows["192.0.2.1"].findtext("row/count") == "3"
    assert rows["192.0.2.1"].findtext("row/policy_evaluated/disposition") == "quarantine"
    assert rows["192.0.2.1"].findtext("row/policy_evaluated/spf") == "fail"
    assert rows["192.0.2.2"].findtext("row/policy_evaluated/dkim") == "pass"
    assert rows["192.0.2.1"].findtext("identifiers/header_from") == "example.org"
    assert rows["192.0.2.1"].findtext("auth_results/dkim/selector") == "s1"
    assert rows["192.0.2.1"].findtext("auth_results/spf/result") == "fail"
    # The elements Appendix C's schema requires.
    assert feedback.findtext("version") == "1.0"
    assert feedback.findtext("policy_published/fo") == "0"
    assert rows["192.0.2.1"].findtext("identifiers/envelope_from") == "example.org"
    assert rows["192.0.2.1"].findtext("auth_results/spf/scope") == "mfrom"
    day = NOW // DAY
    assert feedback.findtext("report_metadata/report_id") == f"example.org.{day}"
    log.close()


def test_mail_of_a_subdomain_is_reported_to_the_organizational_domain(tmp_path: Path) -> None:
    log = reports(tmp_path)
    log.record(dmarc(domain="news.example.org"), source_ip="192.0.2.9", spf=SPF, dkim=DKIM)
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 1
    _, feedback = report_of(outbox.sent[0][2])
    assert feedback.findtext("policy_published/domain") == "example.org"
    assert feedback.findtext("record/identifiers/header_from") == "news.example.org"
    log.close()


def test_the_record_last_seen_that_day_is_the_one_reported(tmp_path: Path) -> None:
    log = reports(tmp_path)
    old = "v=DMARC1; p=none; rua=mailto:old@example.org"
    new = "v=DMARC1; p=reject; rua=mailto:new@example.org"
    log.record(dmarc(record=old), source_ip="192.0.2.200", spf=SPF, dkim=DKIM)
    log.record(dmarc(record=new), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    outbox = Outbox()
    asyncio.run(log.send_due(outbox))
    assert [rcpts for _, rcpts, _ in outbox.sent] == [["new@example.org"]]
    _, feedback = report_of(outbox.sent[0][2])
    assert feedback.findtext("policy_published/p") == "reject"
    log.close()


def test_an_address_that_failed_is_tried_again_alone(tmp_path: Path) -> None:
    record = "v=DMARC1; p=none; rua=mailto:a@example.org,mailto:b@example.org"
    log = a_day_after(tmp_path, record)
    outbox = Outbox()

    async def flaky(mail_from: str, rcpts: Sequence[str], data: bytes) -> str:
        if rcpts == ["b@example.org"]:
            raise OSError("disk full")
        return await outbox(mail_from, rcpts, data)

    assert asyncio.run(log.send_due(flaky)) == 1
    assert asyncio.run(log.send_due(outbox)) == 1  # b now, and a not again
    assert [rcpts for _, rcpts, _ in outbox.sent] == [["a@example.org"], ["b@example.org"]]
    assert asyncio.run(log.send_due(outbox)) == 0
    log.close()


def test_a_dns_timeout_in_the_outside_check_waits_for_the_next_hour(tmp_path: Path) -> None:
    record = "v=DMARC1; p=none; rua=mailto:r@other.test"
    log = reports(tmp_path)
    resolver = DictResolver({"example.org._report._dmarc.other.test": {"TXT": ["v=DMARC1"]}})
    resolver.zones.fail("example.org._report._dmarc.other.test", "TXT", "servfail")
    log.resolver = resolver
    log.record(dmarc(record=record), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 0
    resolver.zones.fail("example.org._report._dmarc.other.test", "TXT", None)
    assert asyncio.run(log.send_due(outbox)) == 1
    log.close()


def test_no_rua_or_no_verdict_is_not_recorded(tmp_path: Path) -> None:
    log = reports(tmp_path)
    log.record(dmarc(record="v=DMARC1; p=reject"), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.record(dmarc(result="temperror"), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    log.clock_cell[0] += DAY  # type: ignore[attr-defined]
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 0 and outbox.sent == []
    log.close()


def test_an_outside_address_must_agree_to_get_reports(tmp_path: Path) -> None:
    record = "v=DMARC1; p=none; rua=mailto:a@reports.test,mailto:b@other.test"
    authorized = {"example.org._report._dmarc.reports.test": {"TXT": ["v=DMARC1"]}}
    log = a_day_after(tmp_path, record, authorized)
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 1
    assert [rcpts for _, rcpts, _ in outbox.sent] == [["a@reports.test"]]
    log.close()


def test_a_size_limit_is_respected(tmp_path: Path) -> None:
    record = "v=DMARC1; p=none; rua=mailto:small@example.org!1,mailto:big@example.org!10m"
    log = a_day_after(tmp_path, record)
    outbox = Outbox()
    assert asyncio.run(log.send_due(outbox)) == 1
    assert [rcpts for _, rcpts, _ in outbox.sent] == [["big@example.org"]]
    log.close()


def test_old_rows_are_pruned(tmp_path: Path) -> None:
    log = reports(tmp_path)
    log.record(dmarc(), source_ip="192.0.2.1", spf=SPF, dkim=DKIM)
    day = NOW // DAY
    log.clock_cell[0] += 30 * DAY  # type: ignore[attr-defined]
    outbox = Outbox()
    asyncio.run(log.send_due(outbox))  # the old day is sent (late), then pruned
    assert log._report(day, "example.org") is None
    assert log._done(day, "example.org") == set()
    log.close()


def test_parse_rua() -> None:
    assert parse_rua("mailto:d@example.org") == ("d@example.org", None)
    assert parse_rua("mailto:d@example.org!10m") == ("d@example.org", 10 << 20)
    assert parse_rua("MAILTO:d@example.org!512") == ("d@example.org", 512)
    for bad in ("https://x.test/r", "mailto:nobody", "mailto:a@b!x", "mailto:a b@c"):
        assert parse_rua(bad) is None


@given(st.text(max_size=80))
def test_parse_rua_never_raises(text: str) -> None:
    found = parse_rua(text)
    assert found is None or "@" in found[0]
