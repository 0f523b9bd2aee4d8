"""DMARC aggregate reports (RFC 7489 §7.2): what we saw of each domain's mail,
sent once a day to the ``rua`` addresses its record names.

Design note
-----------
The MX records each DMARC evaluation whose policy record names a ``rua``
(:meth:`DmarcReports.record`): one row per (UTC day, policy domain, From
domain, source IP, disposition, aligned DKIM and SPF, the SPF and DKIM
results), counted, in ``<data_dir>/antispam/dmarc-reports.sqlite``
(WAL, ``synchronous=NORMAL``: a power cut may lose a few counts, never
mail). :meth:`DmarcReports.send_due`, run by the server every hour, turns
every finished day into one report per domain (Appendix C's XML, gzipped,
attached to a short text message, §7.2.1.1 file name and Subject) and
queues it for each ``mailto:`` URI of the domain's record as published that
day. Reports are sent with the null reverse-path (no bounce loops) from
``postmaster@`` the server's host name.

§7.1: a ``rua`` address outside the policy domain's Organizational Domain
gets the report only if ``<policy domain>._report._dmarc.<its domain>``
publishes ``v=DMARC1`` (else anyone could make us mail reports to a
victim). A size limit on the URI (``mailto:a@b!10m``) is respected: a
report that is larger is not sent to that address. Rows and the record of
what was sent are kept for ``KEEP_DAYS``.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from pathlib import Path

from pochta.dns.records import DNSError
from pochta.dns.resolver import Resolver
from pochta.mailauth.dkim import DKIMResult
from pochta.mailauth.dmarc import DMARCRecordError, DMARCResult, is_dmarc_record, parse_record
from pochta.mailauth.orgdomain import organizational_domain
from pochta.mailauth.spf import SPFResult

__all__ = ["KEEP_DAYS", "DmarcReports", "Enqueue", "parse_rua"]

log = logging.getLogger("pochta.mailauth.reports")

#: Days of rows (and of "sent" marks) kept.
KEEP_DAYS = 7
_DAY = 86400
_SIZE = re.compile(r"([0-9]{1,15})([kmgt]?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: Queues a message: (envelope sender, recipients, bytes) -> queue id.
Enqueue = Callable[[str, Sequence[str], bytes], Awaitable[str]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    day           INTEGER NOT NULL,  -- UTC day number (days since 1970)
    policy_domain TEXT NOT NULL,
    record        TEXT NOT NULL,     -- the DMARC record as published
    header_from   TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    disposition   TEXT NOT NULL,
    dkim_aligned  INTEGER NOT NULL,
    spf_aligned   INTEGER NOT NULL,
    auth          TEXT NOT NULL,     -- JSON: SPF and DKIM results
    count         INTEGER NOT NULL,
    PRIMARY KEY (day, policy_domain, header_from, source_ip, disposition,
                 dkim_aligned, spf_aligned, auth)
);
CREATE TABLE IF NOT EXISTS sent (
    day           INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    PRIMARY KEY (day, policy_domain)
);
"""


def parse_rua(uri: str) -> tuple[str, int | None] | None:
    """``mailto:addr[!size]`` as (address, size limit in octets or None);
    None for any other scheme or a malformed URI (§6.2)."""
    if not uri.lower().startswith("mailto:"):
        return None
    target, bang, size = uri[7:].partition("!")
    if "@" not in target or any(c in target for c in ' ,;<>"\r\n'):
        return None
    limit = None
    if bang:
        found = _SIZE.fullmatch(size)
        if found is None:
            return None
        limit = int(found[1]) * _UNITS[found[2].lower()]
    return target, limit


class DmarcReports:
    """The aggregate-report log of one data directory, and its sender."""

    def __init__(
        self,
        path: Path,
        *,
        hostname: str,
        resolver: Resolver,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.hostname = hostname
        self.resolver = resolver
        self.clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- recording (the MX, once per message) -------------------------------------

    def record(
        self,
        dmarc: DMARCResult,
        *,
        source_ip: str,
        spf: SPFResult,
        dkim: Sequence[DKIMResult],
    ) -> None:
        """Count one evaluation, if its policy record asks for reports."""
        if not dmarc.policy_domain or not dmarc.record or dmarc.result not in ("pass", "fail"):
            return
        try:
            if not parse_record(dmarc.record).rua:
                return
        except DMARCRecordError:
            return
        auth = json.dumps(
            {
                "spf": [spf.domain, spf.result],
                "dkim": sorted({(d.domain, d.selector, d.result) for d in dkim if d.domain}),
            }
        )
        row = (
            int(self.clock() // _DAY),
            dmarc.policy_domain,
            dmarc.record,
            dmarc.domain,
            source_ip,
            dmarc.disposition,
            int(dmarc.dkim_aligned),
            int(dmarc.spf_aligned),
            auth,
        )
        try:
            with self._lock:
                self._conn().execute(
                    "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
                    " ON CONFLICT DO UPDATE SET count = count + 1, record = excluded.record",
                    row,
                )
        except sqlite3.Error as exc:  # reports are a courtesy: never stop mail for them
            log.warning("dmarc reports: not recorded: %s", exc)

    # --- sending (once a day) -------------------------------------------------------

    async def send_due(self, enqueue: Enqueue) -> int:
        """Queue the reports of every finished day not sent yet; how many."""
        today = int(self.clock() // _DAY)
        due = await asyncio.to_thread(self._due, today)
        sent = 0
        for day, domain in due:
            rows = await asyncio.to_thread(self._rows, day, domain)
            try:
                sent += await self._send(day, domain, rows, enqueue)
            except Exception:  # one domain's trouble must not stop the others
                log.exception("dmarc reports: report for %s not sent", domain)
            await asyncio.to_thread(self._mark_sent, day, domain)
        await asyncio.to_thread(self._prune, today)
        return sent

    def _due(self, today: int) -> list[tuple[int, str]]:
        with self._lock:
            return [
                (int(day), str(domain))
                for day, domain in self._conn().execute(
                    "SELECT DISTINCT day, policy_domain FROM rows WHERE day < ?"
                    " AND (day, policy_domain) NOT IN (SELECT day, policy_domain FROM sent)"
                    " ORDER BY day, policy_domain",
                    (today,),
                )
            ]

    def _rows(self, day: int, domain: str) -> list[tuple[str, ...]]:
        with self._lock:
            return [
                tuple(str(v) for v in r)
                for r in self._conn().execute(
                    "SELECT record, header_from, source_ip, disposition, dkim_aligned,"
                    " spf_aligned, auth, count FROM rows WHERE day = ? AND policy_domain = ?"
                    " ORDER BY source_ip",
                    (day, domain),
                )
            ]

    def _mark_sent(self, day: int, domain: str) -> None:
        with self._lock:
            self._conn().execute("INSERT OR IGNORE INTO sent VALUES (?, ?)", (day, domain))

    def _prune(self, today: int) -> None:
        with self._lock:
            db = self._conn()
            db.execute("DELETE FROM rows WHERE day < ?", (today - KEEP_DAYS,))
            db.execute("DELETE FROM sent WHERE day < ?", (today - KEEP_DAYS,))

    async def _send(
        self, day: int, domain: str, rows: list[tuple[str, ...]], enqueue: Enqueue
    ) -> int:
        if not rows:
            return 0
        published = rows[-1][0]  # the record as last seen that day
        try:
            record = parse_record(published)
        except DMARCRecordError:
            return 0
        report_id = f"{day}.{domain}.{secrets.token_hex(4)}"
        xml = aggregate_xml(
            reporter=self.hostname,
            report_id=report_id,
            day=day,
            domain=domain,
            record_text=published,
            rows=rows,
        )
        attachment = gzip.compress(xml, mtime=0)
        begin, end = day * _DAY, day * _DAY + _DAY - 1
        filename = f"{self.hostname}!{domain}!{begin}!{end}.xml.gz"
        sent = 0
        for uri in record.rua:
            parsed = parse_rua(uri)
            if parsed is None:
                continue
            address, limit = parsed
            if limit is not None and len(attachment) > limit:
                log.info("dmarc reports: report for %s larger than %s's limit", domain, address)
                continue
            if not await self._may_send(domain, address):
                log.info("dmarc reports: %s does not accept reports for %s (RFC 7489 §7.1)",
                         address, domain)  # fmt: skip
                continue
            message = self._message(domain, report_id, address, filename, attachment)
            qid = await enqueue("", [address], message)
            log.info("dmarc reports: report for %s of day %d to <%s> queue_id=%s",
                     domain, day, address, qid)  # fmt: skip
            sent += 1
        return sent

    async def _may_send(self, domain: str, address: str) -> bool:
        """§7.1 external destination verification."""
        target = address.rpartition("@")[2].lower().rstrip(".")
        if organizational_domain(target) == organizational_domain(domain):
            return True
        try:
            answer = await self.resolver.txt(f"{domain}._report._dmarc.{target}")
        except DNSError:
            return False
        return any(is_dmarc_record(txt.text) for txt in answer)

    def _message(
        self, domain: str, report_id: str, address: str, filename: str, attachment: bytes
    ) -> bytes:
        message = EmailMessage()
        message["From"] = f"DMARC reports <postmaster@{self.hostname}>"
        message["To"] = address
        message["Subject"] = (
            f"Report Domain: {domain} Submitter: {self.hostname} Report-ID: <{report_id}>"
        )
        message["Date"] = email.utils.formatdate(self.clock(), usegmt=True)
        message["Message-ID"] = email.utils.make_msgid(domain=self.hostname)
        message.set_content(
            f"DMARC aggregate report for {domain} from {self.hostname} (RFC 7489 §7.2).\n"
        )
        message.add_attachment(
            attachment, maintype="application", subtype="gzip", filename=filename
        )
        return bytes(message).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def aggregate_xml(
    *,
    reporter: str,
    report_id: str,
    day: int,
    domain: str,
    record_text: str,
    rows: list[tuple[str, ...]],
) -> bytes:
    """The report of RFC 7489 Appendix C for one domain and one day."""
    record = parse_record(record_text)
    feedback = ET.Element("feedback")
    meta = ET.SubElement(feedback, "report_metadata")
    ET.SubElement(meta, "org_name").text = reporter
    ET.SubElement(meta, "email").text = f"postmaster@{reporter}"
    ET.SubElement(meta, "report_id").text = report_id
    span = ET.SubElement(meta, "date_range")
    ET.SubElement(span, "begin").text = str(day * _DAY)
    ET.SubElement(span, "end").text = str(day * _DAY + _DAY - 1)
    policy = ET.SubElement(feedback, "policy_published")
    ET.SubElement(policy, "domain").text = domain
    ET.SubElement(policy, "adkim").text = record.adkim
    ET.SubElement(policy, "aspf").text = record.aspf
    ET.SubElement(policy, "p").text = record.p
    ET.SubElement(policy, "sp").text = record.subdomain_policy
    ET.SubElement(policy, "pct").text = str(record.pct)
    for _record, header_from, ip, disposition, dkim_ok, spf_ok, auth, count in rows:
        entry = ET.SubElement(feedback, "record")
        row = ET.SubElement(entry, "row")
        ET.SubElement(row, "source_ip").text = ip
        ET.SubElement(row, "count").text = count
        evaluated = ET.SubElement(row, "policy_evaluated")
        ET.SubElement(evaluated, "disposition").text = disposition
        ET.SubElement(evaluated, "dkim").text = "pass" if dkim_ok == "1" else "fail"
        ET.SubElement(evaluated, "spf").text = "pass" if spf_ok == "1" else "fail"
        ids = ET.SubElement(entry, "identifiers")
        ET.SubElement(ids, "header_from").text = header_from
        results = ET.SubElement(entry, "auth_results")
        found = json.loads(auth)
        for dkim_domain, selector, result in found["dkim"]:
            dkim = ET.SubElement(results, "dkim")
            ET.SubElement(dkim, "domain").text = dkim_domain
            ET.SubElement(dkim, "result").text = result
            ET.SubElement(dkim, "selector").text = selector
        spf_domain, spf_result = found["spf"]
        spf = ET.SubElement(results, "spf")
        ET.SubElement(spf, "domain").text = spf_domain
        ET.SubElement(spf, "result").text = spf_result
    return bytes(ET.tostring(feedback, encoding="utf-8", xml_declaration=True))
