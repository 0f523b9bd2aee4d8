"""DMARC aggregate reports (RFC 7489 §7.2): what we saw of each domain's mail,
sent once a day to the ``rua`` addresses its record names.

Design note
-----------
The MX records each DMARC evaluation whose policy record names a ``rua``
(:meth:`DmarcReports.record`; not for a message answered 4yz, which comes
again): one row per (UTC day, policy domain, From domain, source IP,
disposition, aligned DKIM and SPF, the SPF and DKIM results), counted, in
``<data_dir>/antispam/dmarc-reports.sqlite`` (WAL, ``synchronous=NORMAL``:
a power cut may lose a few counts, never mail), and the domain's record as
last seen that day. :meth:`DmarcReports.send_due`, run by the server every
hour, turns every finished day into one report per domain (Appendix C's
XML, gzipped, off the event loop, at most ``MAX_ROWS`` rows, the most
frequent; attached to a short text message, §7.2.1.1 file name and
Subject; the Report-ID is the domain and day, so a report sent twice after
a crash can be told apart) and queues it for each ``mailto:`` URI of that
record. Each address is marked done on its own: one that failed for now
(the queue, a DNS timeout) is tried again the next hour, for
``RETRY_DAYS``. Reports are sent with the null reverse-path (no bounce
loops) from ``postmaster@`` the server's host name, DKIM-signed when a
signer is given (§7.2.1.1: reports should pass DMARC themselves).

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
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from pathlib import Path

from pochta.dns.records import DNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver
from pochta.mailauth.dkim import DKIMResult
from pochta.mailauth.dmarc import DMARCRecordError, DMARCResult, is_dmarc_record, parse_record
from pochta.mailauth.orgdomain import organizational_domain
from pochta.mailauth.spf import SPFResult

__all__ = ["KEEP_DAYS", "DmarcReports", "Enqueue", "parse_rua"]

log = logging.getLogger("pochta.mailauth.reports")

#: Days of rows (and of "sent" marks) kept.
KEEP_DAYS = 7
#: Days after which an address that keeps failing is given up.
RETRY_DAYS = 2
#: Rows of one report at most (the most frequent; forged mail from many
#: addresses must not make a report of hundreds of megabytes).
MAX_ROWS = 10_000
_DAY = 86400
_SIZE = re.compile(r"([0-9]{1,15})([kmgt]?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

#: Queues a message: (envelope sender, recipients, bytes) -> queue id.
Enqueue = Callable[[str, Sequence[str], bytes], Awaitable[str]]
#: DKIM-signs a message of ours (None: reports go unsigned).
Signer = Callable[[bytes], Awaitable[bytes]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (
    day           INTEGER NOT NULL,  -- UTC day number (days since 1970)
    policy_domain TEXT NOT NULL,
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
CREATE TABLE IF NOT EXISTS policies (
    day           INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    record        TEXT NOT NULL,     -- the DMARC record as last seen that day
    PRIMARY KEY (day, policy_domain)
);
CREATE TABLE IF NOT EXISTS sent (
    day           INTEGER NOT NULL,
    policy_domain TEXT NOT NULL,
    address       TEXT NOT NULL,     -- done with: sent, refused or given up
    PRIMARY KEY (day, policy_domain, address)
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

    @staticmethod
    def wanted(dmarc: DMARCResult) -> bool:
        """Whether this evaluation is to be counted: a verdict under a policy
        record that asks for aggregate reports (cheap: no database)."""
        if not dmarc.policy_domain or not dmarc.record or dmarc.result not in ("pass", "fail"):
            return False
        try:
            return bool(parse_record(dmarc.record).rua)
        except DMARCRecordError:
            return False

    def record(
        self,
        dmarc: DMARCResult,
        *,
        source_ip: str,
        spf: SPFResult,
        dkim: Sequence[DKIMResult],
    ) -> None:
        """Count one evaluation, if its policy record asks for reports."""
        if not self.wanted(dmarc):
            return
        scope = "helo" if spf.identity == "helo" else "mfrom"
        auth = json.dumps(
            {
                "spf": [spf.domain, spf.result, scope],
                "dkim": sorted({(d.domain, d.selector, d.result) for d in dkim if d.domain}),
            }
        )
        day = int(self.clock() // _DAY)
        row = (
            day,
            dmarc.policy_domain,
            dmarc.domain,
            source_ip,
            dmarc.disposition,
            int(dmarc.dkim_aligned),
            int(dmarc.spf_aligned),
            auth,
        )
        try:
            with self._lock:
                db = self._conn()
                db.execute(
                    "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
                    " ON CONFLICT DO UPDATE SET count = count + 1",
                    row,
                )
                db.execute(
                    "INSERT INTO policies VALUES (?, ?, ?)"
                    " ON CONFLICT DO UPDATE SET record = excluded.record",
                    (day, dmarc.policy_domain, dmarc.record),
                )
        except Exception as exc:  # reports are a courtesy: never stop mail for them
            log.warning("dmarc reports: not recorded: %s", exc)

    # --- sending (once a day) -------------------------------------------------------

    async def send_due(self, enqueue: Enqueue, sign: Signer | None = None) -> int:
        """Queue the reports of every finished day not sent yet; how many."""
        today = int(self.clock() // _DAY)
        due = await asyncio.to_thread(self._due, today)
        sent = 0
        for day, domain in due:
            try:
                sent += await self._send(day, domain, enqueue, sign, today)
            except Exception:  # one domain's trouble must not stop the others
                log.exception("dmarc reports: report for %s not sent", domain)
        await asyncio.to_thread(self._prune, today)
        return sent

    def _due(self, today: int) -> list[tuple[int, str]]:
        with self._lock:
            return [
                (int(day), str(domain))
                for day, domain in self._conn().execute(
                    "SELECT day, policy_domain FROM policies WHERE day < ? ORDER BY day",
                    (today,),
                )
            ]

    def _report(self, day: int, domain: str) -> tuple[str, list[tuple[str, ...]]] | None:
        with self._lock:
            db = self._conn()
            found = db.execute(
                "SELECT record FROM policies WHERE day = ? AND policy_domain = ?", (day, domain)
            ).fetchone()
            rows = [
                tuple(str(v) for v in r)
                for r in db.execute(
                    "SELECT header_from, source_ip, disposition, dkim_aligned, spf_aligned,"
                    " auth, count FROM rows WHERE day = ? AND policy_domain = ?"
                    " ORDER BY count DESC, source_ip LIMIT ?",
                    (day, domain, MAX_ROWS),
                )
            ]
        return (str(found[0]), rows) if found is not None and rows else None

    def _done(self, day: int, domain: str) -> set[str]:
        with self._lock:
            return {
                str(a)
                for (a,) in self._conn().execute(
                    "SELECT address FROM sent WHERE day = ? AND policy_domain = ?", (day, domain)
                )
            }

    def _mark(self, day: int, domain: str, address: str) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT OR IGNORE INTO sent VALUES (?, ?, ?)", (day, domain, address)
            )

    def _prune(self, today: int) -> None:
        with self._lock:
            db = self._conn()
            for table in ("rows", "policies", "sent"):
                db.execute(f"DELETE FROM {table} WHERE day < ?", (today - KEEP_DAYS,))

    async def _send(
        self, day: int, domain: str, enqueue: Enqueue, sign: Signer | None, today: int
    ) -> int:
        found = await asyncio.to_thread(self._report, day, domain)
        if found is None:
            return 0
        published, rows = found
        try:
            record = parse_record(published)
        except DMARCRecordError:
            return 0
        addresses = [parsed for uri in record.rua if (parsed := parse_rua(uri)) is not None]
        done = await asyncio.to_thread(self._done, day, domain)
        if all(address in done for address, _ in addresses):
            return 0
        report_id = f"{domain}.{day}"  # the same if sent again after a crash
        # Rows of a busy domain make a large document: built off the loop.
        attachment = await asyncio.to_thread(
            lambda: gzip.compress(
                aggregate_xml(
                    reporter=self.hostname,
                    report_id=report_id,
                    day=day,
                    domain=domain,
                    record_text=published,
                    rows=rows,
                ),
                mtime=0,
            )
        )
        begin, end = day * _DAY, day * _DAY + _DAY - 1
        filename = f"{self.hostname}!{domain}!{begin}!{end}.xml.gz"
        give_up = today - day > RETRY_DAYS
        sent = 0
        for address, limit in addresses:
            if address in done:
                continue
            if limit is not None and len(attachment) > limit:
                log.info("dmarc reports: report for %s larger than %s's limit", domain, address)
                await asyncio.to_thread(self._mark, day, domain, address)
                continue
            try:
                allowed = await self._may_send(domain, address)
            except TemporaryDNSError as exc:
                log.info("dmarc reports: §7.1 check of %s for now failed: %s", address, exc)
                if give_up:
                    await asyncio.to_thread(self._mark, day, domain, address)
                continue
            if not allowed:
                log.info("dmarc reports: %s does not accept reports for %s (RFC 7489 §7.1)",
                         address, domain)  # fmt: skip
                await asyncio.to_thread(self._mark, day, domain, address)
                continue
            message = self._message(domain, report_id, address, filename, attachment)
            if sign is not None:
                message = await sign(message)
            try:
                qid = await enqueue("", [address], message)
            except Exception as exc:
                log.warning("dmarc reports: report for %s to <%s> not queued: %s",
                            domain, address, exc)  # fmt: skip
                if give_up:
                    await asyncio.to_thread(self._mark, day, domain, address)
                continue
            await asyncio.to_thread(self._mark, day, domain, address)
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
        except TemporaryDNSError:
            raise  # ask again in an hour
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
    ET.SubElement(feedback, "version").text = "1.0"
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
    ET.SubElement(policy, "fo").text = ":".join(record.fo)
    for header_from, ip, disposition, dkim_ok, spf_ok, auth, count in rows:
        entry = ET.SubElement(feedback, "record")
        row = ET.SubElement(entry, "row")
        ET.SubElement(row, "source_ip").text = ip
        ET.SubElement(row, "count").text = count
        evaluated = ET.SubElement(row, "policy_evaluated")
        ET.SubElement(evaluated, "disposition").text = disposition
        ET.SubElement(evaluated, "dkim").text = "pass" if dkim_ok == "1" else "fail"
        ET.SubElement(evaluated, "spf").text = "pass" if spf_ok == "1" else "fail"
        found = json.loads(auth)
        spf_domain, spf_result, scope = found["spf"]
        ids = ET.SubElement(entry, "identifiers")
        ET.SubElement(ids, "envelope_from").text = spf_domain if scope == "mfrom" else ""
        ET.SubElement(ids, "header_from").text = header_from
        results = ET.SubElement(entry, "auth_results")
        for dkim_domain, selector, result in found["dkim"]:
            dkim = ET.SubElement(results, "dkim")
            ET.SubElement(dkim, "domain").text = dkim_domain
            ET.SubElement(dkim, "result").text = result
            ET.SubElement(dkim, "selector").text = selector
        spf = ET.SubElement(results, "spf")
        ET.SubElement(spf, "domain").text = spf_domain
        ET.SubElement(spf, "scope").text = scope
        ET.SubElement(spf, "result").text = spf_result
    return bytes(ET.tostring(feedback, encoding="utf-8", xml_declaration=True))
