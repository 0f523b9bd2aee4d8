"""Anti-spam end to end: DNSBL, greylisting, scoring and Bayes trained over IMAP.

One server (mail.mx.test) hosts four domains, each with the policy its
tests need (``[antispam.domains."x"]`` overrides ``[antispam]``):

============  ===============================================================
plain.test    the ``[antispam]`` defaults plus ``dnsbl = ["bl.test"]``
grey.test     greylisting with a 1-second delay
picky.test    DNSBL hits are scored, not refused; junk at 4, reject at 8
nolist.test   asks no block list
============  ===============================================================

A loopback DNS server lists 127.0.0.66 in bl.test (RFC 5782 §2.1), so the
"listed" client is that source address and every other client (127.0.0.1,
with forward-confirmed reverse DNS) is clean. Score arithmetic in the tests
follows the weights of :mod:`pochta.antispam.score`.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.conftest import FAST_HASHER, ServerThread
from tests.dnsserver import DNSTestServer

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.store.interface import INBOX

JUNK = "Junk"
LISTED_IP = "127.0.0.66"
CLEAN_IP = "127.0.0.1"
BL_REASON = "Listed by the test list; see https://bl.test/lookup"
USERS = (
    "dave@plain.test",
    "erin@plain.test",
    "gina@grey.test",
    "paul@picky.test",
    "nora@nolist.test",
)


@dataclass
class Setup:
    server: ServerThread
    dns: DNSTestServer


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("antispam")
    zones = {
        # RFC 5782 §2.1: the reversed octets below the list's zone; an A
        # record in 127/8 means "listed", a TXT record says why.
        "66.0.0.127.bl.test": {"A": ["127.0.0.2"], "TXT": [BL_REASON]},
        # The clean client has forward-confirmed reverse DNS (iprev pass).
        CLEAN_IP: {"PTR": "client.test"},
        "client.test": {"A": [CLEAN_IP]},
        "spf-fail.test": {"TXT": ["v=spf1 -all"]},
    }
    with DNSTestServer(zones) as dns:
        (root / "pochta.toml").write_text(
            'hostname = "mail.mx.test"\ndata_dir = "data"\n'
            '[listen]\nsmtp = ["127.0.0.1:0"]\nimap = ["127.0.0.1:0"]\n'
            "[auth]\nallow_plaintext_without_tls = true\n"
            f'[dns]\nnameservers = ["{dns.hostport}"]\n'
            '[antispam]\ndnsbl = ["bl.test"]\n'
            '[antispam.domains."grey.test"]\ngreylisting = true\ngreylist_delay = 1\n'
            '[antispam.domains."picky.test"]\n'
            "dnsbl_reject = false\njunk_score = 4\nreject_score = 8\n"
            '[antispam.domains."nolist.test"]\ndnsbl = []\n'
        )
        settings = load_settings(root / "pochta.toml")
        with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as accounts:
            for domain in sorted({u.partition("@")[2] for u in USERS}):
                accounts.add_domain(domain)
            for user in USERS:
                accounts.add_user(user, "pw-" + user)
        server = ServerThread(settings)
        server.start()
        try:
            for user in USERS:
                server.call(lambda u=user: server.server.store.create_user(u))  # type: ignore[misc]
            yield Setup(server, dns)
        finally:
            server.stop()


# --- helpers -----------------------------------------------------------------------


def marker() -> str:
    return uuid.uuid4().hex[:12]


def message(sender: str, subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: {sender}\r\nTo: someone@plain.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{uuid.uuid4().hex}@test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}"
    ).encode()


def connect(mx: Setup, source: str = CLEAN_IP) -> smtplib.SMTP:
    client = smtplib.SMTP(
        *mx.server.address("smtp"),
        local_hostname="client.test",
        source_address=(source, 0),
        timeout=10,
    )
    client.ehlo()
    return client


def send(
    mx: Setup, mail_from: str, rcpts: list[str], data: bytes, source: str = CLEAN_IP
) -> tuple[int, str]:
    """One transaction; every RCPT must be accepted. The reply to DATA."""
    with connect(mx, source) as client:
        code, text = client.mail(mail_from)
        assert code == 250, (code, text)
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
        code, reply = client.data(data)
        return code, reply.decode()


def stored(mx: Setup, user: str) -> list[tuple[str, bytes]]:
    """Every message of ``user`` as (mailbox, octets), INBOX and Junk."""

    async def read() -> list[tuple[str, bytes]]:
        boxes = mx.server.server.store.mailboxes(user)
        out: list[tuple[str, bytes]] = []
        for name in (INBOX, JUNK):
            uids = [info.uid for info in await boxes.messages(name)]
            found = await boxes.read_many(name, uids)
            out.extend((name, found[uid]) for uid in uids)
        return out

    return mx.server.call(read)


def find(mx: Setup, user: str, tag: str) -> tuple[str, bytes] | None:
    """The copy ``user`` got of the message whose Subject holds ``tag``."""
    for mailbox, data in stored(mx, user):
        if tag.encode() in data.split(b"\r\n\r\n", 1)[0]:
            return mailbox, data
    return None


def header(data: bytes, name: str) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    value = parsed[name]
    assert value is not None, name
    return re.sub(r"\r?\n(?=[ \t])", "", str(value))


def score_of(data: bytes) -> float:
    return float(header(data, "X-Spam-Score"))


def reasons(data: bytes) -> dict[str, float]:
    """``tests=`` of X-Spam-Status as {reason: weight}."""
    tests = header(data, "X-Spam-Status").partition("tests=")[2].replace(" ", "")
    if tests == "none":
        return {}
    pairs = (item.rpartition("=") for item in tests.split(","))
    return {name: float(weight) for name, _, weight in pairs}


# --- DNSBL (RFC 5782) ----------------------------------------------------------------


def test_listed_client_is_refused_at_rcpt(mx: Setup) -> None:
    with connect(mx, LISTED_IP) as client:
        client.mail("someone@sender.test")
        code, text = client.rcpt("dave@plain.test")
    reply = text.decode()
    assert code == 554, reply
    assert reply.startswith("5.7.1"), reply
    assert "bl.test" in reply and LISTED_IP in reply
    assert BL_REASON in reply  # the list's TXT reason (RFC 5782 §2.1)


def test_unlisted_client_is_not_refused(mx: Setup) -> None:
    tag = marker()
    code, reply = send(mx, "someone@sender.test", ["dave@plain.test"], message("a@b.test", tag))
    assert code == 250, reply
    found = find(mx, "dave@plain.test", tag)
    assert found is not None and found[0] == INBOX
    assert not any(name.startswith("DNSBL") for name in reasons(found[1]))


# --- Greylisting -----------------------------------------------------------------------


def test_greylisting_defers_the_first_attempt_and_accepts_a_later_retry(mx: Setup) -> None:
    tag = marker()
    sender = f"{tag}@sender.test"  # a triplet never seen before

    def attempt() -> tuple[int, str]:
        with connect(mx) as client:
            client.mail(sender)
            code, text = client.rcpt("gina@grey.test")
            if code == 250:
                code, text = client.data(message(sender, f"grey {tag}"))
        return code, text.decode()

    code, reply = attempt()
    assert code == 451, reply
    assert reply.startswith("4.7.1"), reply
    # Too soon: still deferred.
    code, reply = attempt()
    assert code == 451, reply
    assert find(mx, "gina@grey.test", tag) is None
    time.sleep(1.1)  # greylist_delay = 1
    code, reply = attempt()
    assert code == 250, reply
    found = find(mx, "gina@grey.test", tag)
    assert found is not None and found[0] == INBOX


def test_greylisting_is_per_domain(mx: Setup) -> None:
    """plain.test does not greylist: a first attempt is accepted at once."""
    tag = marker()
    sender = f"{tag}@sender.test"
    code, reply = send(mx, sender, ["dave@plain.test"], message(sender, f"nogrey {tag}"))
    assert code == 250, reply


# --- Scores and per-domain thresholds -------------------------------------------------


def test_enough_bad_signals_are_refused_as_spam(mx: Setup) -> None:
    """picky.test: DNSBL 5 + NO_RDNS 1.5 + SPF_FAIL 3 = 9.5 >= reject_score 8."""
    tag = marker()
    data = message("x@spf-fail.test", f"reject {tag}")
    code, reply = send(mx, "x@spf-fail.test", ["paul@picky.test"], data, source=LISTED_IP)
    assert code == 550, reply
    assert reply.startswith("5.7.1"), reply
    assert "spam" in reply
    assert find(mx, "paul@picky.test", tag) is None


def test_score_over_junk_score_goes_to_junk(mx: Setup) -> None:
    """picky.test: DNSBL 5 + NO_RDNS 1.5 + SPF_NONE 0.5 = 7: junk (4), not reject (8)."""
    tag = marker()
    data = message("x@sender.test", f"junk {tag}")
    code, reply = send(mx, "x@sender.test", ["paul@picky.test"], data, source=LISTED_IP)
    assert code == 250, reply
    found = find(mx, "paul@picky.test", tag)
    assert found is not None
    mailbox, stored_copy = found
    assert mailbox == JUNK
    assert reasons(stored_copy) == {"DNSBL:bl.test": 5.0, "NO_RDNS": 1.5, "SPF_NONE": 0.5}
    assert score_of(stored_copy) == 7.0
    assert header(stored_copy, "X-Spam-Flag") == "YES"
    assert "decision=junk" in header(stored_copy, "X-Spam-Status")


def test_each_recipient_is_scored_by_its_own_domain_policy(mx: Setup) -> None:
    """One message, two policies: picky.test's list does not count for nolist.test.

    paul (picky.test) scores DNSBL 5 + NO_RDNS 1.5 + SPF_FAIL 3 = 9.5, a
    reject; since nora accepts it, the message is taken and paul's copy goes
    to his Junk. nora's domain asks no list: 1.5 + 3 = 4.5, her INBOX.
    """
    tag = marker()
    data = message("x@spf-fail.test", f"two policies {tag}")
    rcpts = ["paul@picky.test", "nora@nolist.test"]
    code, reply = send(mx, "x@spf-fail.test", rcpts, data, source=LISTED_IP)
    assert code == 250, reply
    paul = find(mx, "paul@picky.test", tag)
    nora = find(mx, "nora@nolist.test", tag)
    assert paul is not None and nora is not None
    assert paul[0] == JUNK
    assert "decision=reject" in header(paul[1], "X-Spam-Status")
    assert "DNSBL:bl.test" in reasons(paul[1])
    assert nora[0] == INBOX
    assert reasons(nora[1]) == {"SPF_FAIL": 3.0, "NO_RDNS": 1.5}


# --- Bayes, trained by the user's IMAP moves ---------------------------------------------

SPAMS = [
    ("Cheap pills discount offer", "Buy cheap pills now! Huge discount, limited offer."),
    ("Discount pills, cheap prices", "Limited offer on cheap pills: order now, huge discount."),
    ("Huge pills offer today", "Order cheap discount pills today, limited offer, buy now."),
]
HAMS = [
    ("Minutes of the project meeting", "Attached the minutes; the roadmap review is Thursday."),
    ("Roadmap review agenda", "Agenda for Thursday: quarterly roadmap, minutes, staffing."),
    ("Project staffing for next quarter", "Thursday review moved; please read the minutes."),
]
SPAMMER = "deals@pills-shop.test"
COLLEAGUE = "anna@work.test"
ERIN = "erin@plain.test"


def counts(mx: Setup, user: str) -> tuple[int, int]:
    return mx.server.call(lambda: mx.server.server.bayes.counts(user))


def wait_counts(mx: Setup, user: str, wanted: tuple[int, int], timeout: float = 10) -> None:
    """Training runs as a task after the MOVE reply: poll until it is done."""
    deadline = time.monotonic() + timeout
    while counts(mx, user) != wanted:
        assert time.monotonic() < deadline, (counts(mx, user), wanted)
        time.sleep(0.02)


def uids(imap: imaplib.IMAP4, *criteria: str) -> bytes:
    typ, data = imap.uid("SEARCH", *criteria)
    assert typ == "OK", data
    found = data[0].split()
    assert found, criteria
    return b",".join(found)


def test_moves_over_imap_train_the_users_filter(mx: Setup) -> None:
    tag = marker()
    for subject, body in SPAMS:
        code, reply = send(mx, SPAMMER, [ERIN], message(SPAMMER, f"{subject} {tag}", body))
        assert code == 250, reply
    for subject, body in HAMS:
        code, reply = send(mx, COLLEAGUE, [ERIN], message(COLLEAGUE, f"{subject} {tag}", body))
        assert code == 250, reply
    # Untrained, the filter has no opinion: every message is in INBOX.
    mine = [(box, data) for box, data in stored(mx, ERIN) if tag.encode() in data]
    assert [box for box, _ in mine] == [INBOX] * 6
    before = [score_of(data) for _, data in mine]
    assert not any(r.startswith("BAYES") for _, data in mine for r in reasons(data))

    host, port = mx.server.address("imap")
    with imaplib.IMAP4(host, port, timeout=10) as imap:
        imap.login(ERIN, "pw-" + ERIN)
        imap.select(INBOX)
        # The user flags the spam (into \\Junk: spam, RFC 6154 §2) ...
        typ, data = imap.uid("MOVE", uids(imap, "FROM", SPAMMER), JUNK)
        assert typ == "OK", data
        wait_counts(mx, ERIN, (3, 0))
        # ... then by mistake the ham too, and moves it back out of Junk,
        # which untrains it as spam and trains it as ham.
        typ, data = imap.uid("MOVE", uids(imap, "FROM", COLLEAGUE), JUNK)
        assert typ == "OK", data
        wait_counts(mx, ERIN, (6, 0))
        imap.select(JUNK)
        typ, data = imap.uid("MOVE", uids(imap, "FROM", COLLEAGUE), INBOX)
        assert typ == "OK", data
        wait_counts(mx, ERIN, (3, 3))

    # New mail is now scored by erin's own filter.
    spam = message(SPAMMER, f"Cheap discount pills offer {tag}-new", "Huge offer, buy now!")
    assert send(mx, SPAMMER, [ERIN], spam)[0] == 250
    ham = message(COLLEAGUE, f"Minutes of the roadmap review {tag}-new", "See the minutes.")
    assert send(mx, COLLEAGUE, [ERIN], ham)[0] == 250

    spam_box, spam_copy = next(
        (box, data) for box, data in stored(mx, ERIN) if b"Cheap discount pills" in data
    )
    spam_reasons = reasons(spam_copy)
    assert any(r.startswith("BAYES_9") for r in spam_reasons), spam_reasons
    assert score_of(spam_copy) > max(before)
    # SPF_NONE 0.5 + BAYES_99 5 = 5.5: over the default junk_score of 5.
    assert spam_box == JUNK

    ham_box, ham_copy = next(
        (box, data) for box, data in stored(mx, ERIN) if b"Minutes of the roadmap review" in data
    )
    ham_reasons = reasons(ham_copy)
    assert any(r in ("BAYES_00", "BAYES_05", "BAYES_20") for r in ham_reasons), ham_reasons
    assert score_of(ham_copy) < min(before)
    assert ham_box == INBOX
