"""The web admin (pochta.web.admin) against a real server on loopback.

A browser's requests, made with http.client over HTTP and HTTPS (the
certificate of a test CA is verified): sign-in through the login guard,
the session cookie, CSRF and Origin checks, and each page's change checked
where it lands (the accounts database, the Maildir, the DKIM keys, the
spool, the trace).
"""

from __future__ import annotations

import html
import http.client
import re
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FAST_HASHER, ServerThread, populate

from pochta.accounts import Accounts
from pochta.accounts.login import LoginPolicy
from pochta.config import load_settings
from pochta.mailauth.keys import DKIMKeyStore
from pochta.observe.trace import find
from pochta.smtp.policy import new_queue_id

SETTINGS = """\
hostname = "mail.example.test"
data_dir = "data"

[listen]
http = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[mailauth]
verify = false
"""

ADMIN = '\n[admin]\nusers = ["alice@example.test"]\n'
PASSWORD = "secret-alice@example.test"  # tests.conftest.populate


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    cookies: list[str]
    body: str

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


@dataclass
class Browser:
    """One browser: its cookie, over HTTPS unless told otherwise."""

    server: ServerThread
    ca: trustme.CA
    tls: bool = True
    cookie: str = ""
    csrf: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if self.tls:
            context = ssl.create_default_context()
            self.ca.configure_trust(context)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.server.address("https")[1], context=context, timeout=30
            )
        else:
            conn = http.client.HTTPConnection(
                "127.0.0.1", self.server.address("http")[1], timeout=30
            )
        sent = {"Host": "mail.example.test", **self.extra, **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
        if body is not None:
            sent["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=sent)
            reply = conn.getresponse()
            cookies = reply.headers.get_all("Set-Cookie") or []
            out = Reply(
                reply.status,
                {k.lower(): v for k, v in reply.getheaders()},
                cookies,
                reply.read().decode(),
            )
        finally:
            conn.close()
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            if name == "pochta_admin":
                value = rest.split(";", 1)[0].strip('"')
                self.cookie = f"pochta_admin={value}" if value else ""
        found = re.search(r'name="csrf" value="([^"]+)"', out.body)
        if found:
            self.csrf = found[1]
        return out

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, **fields: str) -> Reply:
        return self.request("POST", path, {"csrf": self.csrf, **fields})

    def sign_in(self, address: str = "alice@example.test", password: str = PASSWORD) -> Reply:
        return self.request(
            "POST", "/admin/login", {"address": address, "password": password, "next": "/admin/"}
        )

    def act(self, path: str, back: str, **fields: str) -> str:
        """POST a change, follow the redirect; the page's notice."""
        reply = self.post(path, **fields)
        assert reply.status == 303, reply.body
        assert reply.location == back
        page = self.get(back)
        notices = re.findall(r'<p class="(?:flash|error)">(.*?)</p>', page.body, re.S)
        assert len(notices) == 1, page.body
        return html.unescape(notices[0])


def make_server(tmp_path: Path, ca: trustme.CA, extra: str) -> ServerThread:
    issued = ca.issue_cert("mail.example.test", "127.0.0.1")
    (tmp_path / "tls").mkdir(exist_ok=True)
    (tmp_path / "tls/cert.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (tmp_path / "tls/key.pem").write_bytes(issued.private_key_pem.bytes())
    (tmp_path / "pochta.toml").write_text(SETTINGS + extra)
    config = load_settings(tmp_path / "pochta.toml")
    accounts = Accounts.open(config.data_dir / "accounts.sqlite", hasher=FAST_HASHER)
    populate(accounts)
    accounts.close()
    keys = DKIMKeyStore(config.data_dir)
    for domain in ("example.test", "other.test"):
        keys.create(domain)
    server = ServerThread(config)
    server.start()
    return server


@pytest.fixture
def admin_server(tmp_path: Path, ca: trustme.CA) -> Iterator[ServerThread]:
    server = make_server(tmp_path, ca, ADMIN)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(admin_server: ServerThread, ca: trustme.CA) -> Browser:
    return Browser(admin_server, ca)


@pytest.fixture
def signed_in(browser: Browser) -> Browser:
    reply = browser.sign_in()
    assert reply.status == 303 and reply.location == "/admin/", reply.body
    assert browser.get("/admin/").status == 200
    return browser


def accounts_of(server: ServerThread) -> Accounts:
    return Accounts.open(server.settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER)


# --- off, sign-in, session ------------------------------------------------------------


def test_off_without_admin_users(tmp_path: Path, ca: trustme.CA) -> None:
    server = make_server(tmp_path, ca, "")
    try:
        browser = Browser(server, ca)
        for path in ("/admin/", "/admin/login", "/admin/users"):
            assert browser.get(path).status == 404
        assert browser.request("POST", "/admin/login", {"address": "a"}).status in (404, 405)
    finally:
        server.stop()


def test_pages_need_a_session(browser: Browser) -> None:
    reply = browser.get("/admin/users?domain=example.test")
    assert reply.status == 303
    assert reply.location == "/admin/login?next=/admin/users?domain=example.test"
    assert browser.get("/admin").location == "/admin/"
    # A change without a session is refused, not redirected.
    assert browser.request("POST", "/admin/users/add", {"address": "x@example.test"}).status == 403
    assert browser.get("/admin/login").status == 200


def test_sign_in_sets_a_strict_cookie_and_safe_headers(browser: Browser) -> None:
    reply = browser.sign_in()
    assert reply.status == 303
    (cookie,) = reply.cookies
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "path", "samesite"} <= attributes
    assert "SameSite=Strict" in cookie and "Path=/admin" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 43  # 256 bits, urlsafe base64
    page = browser.get("/admin/")
    assert page.status == 200
    assert page.headers["cache-control"] == "no-store"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "alice@example.test" in page.body
    assert browser.get("/admin/style.css").headers["content-type"].startswith("text/css")


def test_wrong_password_and_unlisted_user_get_the_same_answer(browser: Browser) -> None:
    wrong = browser.sign_in(password="nope")
    unlisted = browser.sign_in("bob@example.test", "secret-bob@example.test")
    unknown = browser.sign_in("nobody@example.test", "x")
    for reply in (wrong, unlisted, unknown):
        assert reply.status == 401
        assert "Wrong address or password." in reply.body
        assert not reply.cookies
    assert browser.get("/admin/").status == 303


def test_sign_in_is_throttled_by_the_login_guard(
    admin_server: ServerThread, browser: Browser
) -> None:
    admin_server.server.guard.policy = LoginPolicy(
        free_failures=1, refuse_after=3, base_delay=0.01, max_delay=0.01
    )
    for _ in range(3):
        assert browser.sign_in(password="nope").status == 401
    locked = browser.sign_in()  # the right password, too late
    assert locked.status == 401 and "Too many failed sign-ins" in locked.body
    assert not locked.cookies


def test_plain_http_sign_in_is_refused_without_the_plaintext_setting(
    admin_server: ServerThread, ca: trustme.CA
) -> None:
    plain = Browser(admin_server, ca, tls=False)
    form = plain.get("/admin/login")
    assert form.status == 200 and "use this server's HTTPS address" in form.body
    reply = plain.sign_in()
    assert reply.status == 403 and not reply.cookies


def test_plain_http_allowed_with_the_plaintext_setting(tmp_path: Path, ca: trustme.CA) -> None:
    server = make_server(tmp_path, ca, ADMIN + "\n[auth]\nallow_plaintext_without_tls = true\n")
    try:
        plain = Browser(server, ca, tls=False)
        reply = plain.sign_in()
        assert reply.status == 303
        assert "Secure" not in reply.cookies[0]  # the browser would not send it back
        assert plain.get("/admin/").status == 200
    finally:
        server.stop()


def test_sign_out_ends_the_session(signed_in: Browser) -> None:
    old = signed_in.cookie
    reply = signed_in.post("/admin/logout")
    assert reply.status == 303 and reply.location == "/admin/login"
    signed_in.cookie = old  # a copy of the cookie kept elsewhere is worthless now
    assert signed_in.get("/admin/").status == 303


def test_no_open_redirect_after_sign_in(browser: Browser) -> None:
    for target in (
        "//evil.example/x",
        "https://evil.example/",
        "/elsewhere",
        "/admin\\..\\x",
        "/admin/../x",
        "/admin/%2e%2e//evil.example",
        "/admin/users/../../x",
    ):
        form = {"address": "alice@example.test", "password": PASSWORD, "next": target}
        reply = browser.request("POST", "/admin/login", form)
        assert reply.status == 303 and reply.location == "/admin/", target
    reply = browser.request(
        "POST",
        "/admin/login",
        {"address": "alice@example.test", "password": PASSWORD, "next": "/admin/users?domain=x"},
    )
    assert reply.location == "/admin/users?domain=x"


# --- CSRF and malformed requests ------------------------------------------------------------


def test_changes_need_the_csrf_token_and_a_same_site_origin(
    admin_server: ServerThread, signed_in: Browser
) -> None:
    missing = signed_in.request("POST", "/admin/users/add", {"address": "eve@example.test"})
    wrong = signed_in.request(
        "POST", "/admin/users/add", {"address": "eve@example.test", "csrf": "x" * 43}
    )
    foreign = signed_in.request(
        "POST",
        "/admin/users/add",
        {"address": "eve@example.test", "csrf": signed_in.csrf},
        headers={"Origin": "https://evil.example"},
    )
    plain_origin = signed_in.request(  # the same host, but not over HTTPS
        "POST",
        "/admin/users/add",
        {"address": "eve@example.test", "csrf": signed_in.csrf},
        headers={"Origin": "http://mail.example.test"},
    )
    null = signed_in.request(
        "POST",
        "/admin/users/add",
        {"address": "eve@example.test", "csrf": signed_in.csrf},
        headers={"Origin": "null"},
    )
    for reply in (missing, wrong, foreign, plain_origin, null):
        assert reply.status == 403
    assert signed_in.get("/admin/users/add").status == 405  # changes are POSTs only
    accounts = accounts_of(admin_server)
    try:
        assert accounts.get_user("eve@example.test") is None
    finally:
        accounts.close()
    same = signed_in.request(
        "POST",
        "/admin/aliases/add",
        {"alias": "info@example.test", "target": "alice@example.test", "csrf": signed_in.csrf},
        headers={"Origin": "https://mail.example.test"},
    )
    assert same.status == 303


def test_malformed_forms_are_400(signed_in: Browser) -> None:
    not_a_form = signed_in.request(
        "POST", "/admin/users/add", body=b'{"address": 1}', content_type="application/json"
    )
    assert not_a_form.status == 400
    too_long = signed_in.post("/admin/users/add", address="a" * 5000 + "@example.test")
    assert too_long.status in (400, 413)
    bad_bytes = signed_in.request("POST", "/admin/users/add", body=b"address=\xff\xfe&csrf=1")
    assert bad_bytes.status == 400


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=st.binary(max_size=300))
def test_any_form_body_gets_a_clear_answer(signed_in: Browser, body: bytes) -> None:
    reply = signed_in.request("POST", "/admin/aliases/add", body=body)
    assert reply.status in (303, 400, 403), reply.body


# --- the pages' changes ------------------------------------------------------------------


def test_domains_add_and_delete_with_dkim_keys(
    admin_server: ServerThread, signed_in: Browser
) -> None:
    notice = signed_in.act("/admin/domains/add", "/admin/domains", domain="New.Example")
    assert "Domain new.example added" in notice
    keys = DKIMKeyStore(admin_server.settings.data_dir)
    assert keys.published("new.example")
    page = signed_in.get("/admin/domains")
    assert "new.example" in page.body
    dns = signed_in.get("/admin/dns?domain=new.example")
    assert dns.status == 200
    assert "v=DKIM1" in dns.body and "MX" in dns.body
    refused = signed_in.act("/admin/domains/delete", "/admin/domains", domain="example.test")
    assert "example.test" in refused and "users" in refused  # it still has users
    gone = signed_in.act("/admin/domains/delete", "/admin/domains", domain="new.example")
    assert gone == "Domain new.example deleted."
    assert not keys.published("new.example")
    invalid = signed_in.act("/admin/domains/add", "/admin/domains", domain="not a domain")
    assert "not a domain" in invalid or "invalid" in invalid.lower()


def test_users_add_new_password_and_delete(admin_server: ServerThread, signed_in: Browser) -> None:
    notice = signed_in.act("/admin/users/add", "/admin/users", address="dave@example.test")
    found = re.search(r"password \(shown once\): (\S+)", notice)
    assert found, notice
    password = found[1]
    maildir = admin_server.settings.data_dir / "mail/example.test/dave"
    assert (maildir / "cur").is_dir() and (maildir / ".Sent").is_dir()
    accounts = accounts_of(admin_server)
    try:
        assert accounts.authenticate("dave@example.test", password) is not None
        renewed = signed_in.act(
            "/admin/users/password", "/admin/users", address="dave@example.test"
        )
        new_password = renewed.rsplit(" ", 1)[1]
        assert new_password != password
        assert accounts.authenticate("dave@example.test", password) is None
        assert accounts.authenticate("dave@example.test", new_password) is not None
        given_password = signed_in.act(
            "/admin/users/add", "/admin/users", address="erin@example.test", password="chosen-pw-1"
        )
        assert given_password == "User erin@example.test added."  # not echoed
        assert accounts.authenticate("erin@example.test", "chosen-pw-1") is not None
        deleted = signed_in.act("/admin/users/delete", "/admin/users", address="dave@example.test")
        assert deleted.startswith("User dave@example.test deleted")
        assert accounts.get_user("dave@example.test") is None
        assert (maildir / "cur").is_dir()  # the files stay for backup
        itself = signed_in.act("/admin/users/delete", "/admin/users", address="Alice@example.test")
        assert "cannot delete the account you are signed in with" in itself
        assert accounts.get_user("alice@example.test") is not None
        duplicate = signed_in.act("/admin/users/add", "/admin/users", address="bob@example.test")
        assert "bob@example.test" in duplicate and "exists" in duplicate
    finally:
        accounts.close()
    listing = signed_in.get("/admin/users?domain=other.test")
    assert "carol@other.test" in listing.body and "bob@example.test" not in listing.body


def test_aliases_add_and_delete(admin_server: ServerThread, signed_in: Browser) -> None:
    added = signed_in.act(
        "/admin/aliases/add",
        "/admin/aliases",
        alias="sales@example.test",
        target="bob@example.test",
    )
    assert added == "Alias sales@example.test -> bob@example.test added."
    remote = signed_in.act(
        "/admin/aliases/add", "/admin/aliases", alias="out@example.test", target="x@elsewhere.test"
    )
    assert "forwarded" in remote
    accounts = accounts_of(admin_server)
    try:
        assert accounts.resolve("sales@example.test").users
        removed = signed_in.act(
            "/admin/aliases/delete",
            "/admin/aliases",
            alias="sales@example.test",
            target="bob@example.test",
        )
        assert removed == "1 alias row deleted."
        assert not accounts.resolve("sales@example.test").users
    finally:
        accounts.close()


def test_queue_retry_delete_and_trace(admin_server: ServerThread, signed_in: Browser) -> None:
    runner = admin_server.server.queue
    # Stopped, so that the message stays queued (delivery would fail at once:
    # the test DNS server knows no remote.test).
    admin_server.call(runner.stop)
    qid = new_queue_id()
    runner.spool.enqueue(
        qid, "alice@example.test", ["someone@remote.test"], b"Subject: q\r\n\r\nbody\r\n", 0.0
    )
    page = signed_in.get("/admin/queue")
    assert qid in page.body and "someone@remote.test" in page.body
    retried = signed_in.act("/admin/queue/retry", "/admin/queue", qid=qid)
    assert retried.startswith(f"{qid}: ")
    flushed = signed_in.act("/admin/queue/flush", "/admin/queue")
    assert flushed.endswith("recipients due now.")
    deleted = signed_in.act("/admin/queue/delete", "/admin/queue", qid=qid)
    assert deleted == f"{qid}: deleted."
    assert not runner.spool.messages(qid)
    again = signed_in.act("/admin/queue/delete", "/admin/queue", qid=qid)
    assert again == f"no queued message {qid}"
    events = find(admin_server.settings.data_dir / "trace", qid)
    assert any(e.get("ev") == "dropped" for e in events)
    traced = signed_in.get(f"/admin/trace?id={qid}")
    assert traced.status == 200 and "web admin alice@example.test" in traced.body


def test_user_text_is_escaped(signed_in: Browser) -> None:
    probe = "<script>alert(1)</script>"
    page = signed_in.get("/admin/trace?id=" + urllib.parse.quote(probe))
    assert page.status == 200
    assert probe not in page.body and "&lt;script&gt;" in page.body
    dns = signed_in.get("/admin/dns?domain=" + urllib.parse.quote(probe))
    assert probe not in dns.body


def test_a_new_password_ends_the_session(admin_server: ServerThread, signed_in: Browser) -> None:
    accounts = accounts_of(admin_server)
    try:
        accounts.set_password("alice@example.test", "another-secret-1")
    finally:
        accounts.close()
    assert signed_in.get("/admin/").status == 303  # back to the sign-in page
    assert signed_in.sign_in(password="another-secret-1").status == 303
    assert signed_in.get("/admin/").status == 200


def test_own_password_and_short_trace_ids_are_refused(signed_in: Browser) -> None:
    own = signed_in.act("/admin/users/password", "/admin/users", address="ALICE@example.test")
    assert "your own password" in own and own.startswith("you cannot")
    assert signed_in.get("/admin/").status == 200  # still signed in, password unchanged
    short = signed_in.get("/admin/trace?id=a")
    assert short.status == 200 and "give a whole Message-ID or queue id" in short.body


def test_storage_trouble_is_a_notice_not_a_500(
    admin_server: ServerThread, signed_in: Browser
) -> None:
    # The key store cannot take its lock: an OSError deep in the DKIM code.
    lock = admin_server.settings.data_dir / "dkim" / "new.example" / ".lock"
    lock.mkdir(parents=True)
    notice = signed_in.act("/admin/domains/add", "/admin/domains", domain="new.example")
    assert notice.startswith("not done: storage error") or "new.example" in notice
    accounts = accounts_of(admin_server)
    try:
        assert "new.example" not in accounts.list_domains()  # undone with its keys
    finally:
        accounts.close()
    assert signed_in.get("/admin/domains").status == 200


def test_dkim_keys_rotate_and_remove(admin_server: ServerThread, signed_in: Browser) -> None:
    keys = DKIMKeyStore(admin_server.settings.data_dir)
    old = {k.selector for k in keys.active("example.test")}
    rotated = signed_in.act("/admin/domains/rotate", "/admin/domains", domain="example.test")
    assert rotated.startswith("New DKIM keys for example.test")
    new = {k.selector for k in keys.active("example.test")}
    assert new and not new & old
    retired = {k.selector for k in keys.published("example.test") if not k.active}
    assert retired == old
    active_one = next(iter(new))
    refused = signed_in.act(
        "/admin/domains/remove-key", "/admin/domains", domain="example.test", selector=active_one
    )
    assert "is active" in refused
    gone = next(iter(old))
    removed = signed_in.act(
        "/admin/domains/remove-key", "/admin/domains", domain="example.test", selector=gone
    )
    assert removed.startswith(f"DKIM key {gone} of example.test removed")
    assert gone not in {k.selector for k in keys.published("example.test")}
    foreign = signed_in.act("/admin/domains/rotate", "/admin/domains", domain="elsewhere.test")
    assert "not one of this server's domains" in foreign


def test_dns_check_page_looks_the_records_up(signed_in: Browser) -> None:
    page = signed_in.get("/admin/dns?domain=example.test&check=1")
    assert page.status == 200
    # The tests' resolver is an empty loopback server: everything is missing.
    assert "records missing or wrong" in page.body
    assert "<td>missing</td>" in page.body and "MX" in page.body


def test_any_user_changes_their_own_password(
    admin_server: ServerThread, browser: Browser, ca: trustme.CA
) -> None:
    page = browser.get("/account/password")
    assert page.status == 200 and 'name="current"' in page.body
    assert (
        "use this server's HTTPS address"
        in Browser(admin_server, ca, tls=False).get("/account/password").body
    )

    def change(current: str, new: str, again: str | None = None) -> Reply:
        form = {
            "address": "bob@example.test",
            "current": current,
            "new": new,
            "again": new if again is None else again,
        }
        return browser.request("POST", "/account/password", form)

    old = "secret-bob@example.test"  # tests.conftest.populate
    assert change(old, "short").status == 400
    assert change(old, "long-enough-1", "long-enough-2").status == 400
    wrong = change("not the password", "long-enough-1")
    assert wrong.status == 401 and "Wrong address or password." in wrong.body
    done = change(old, "long-enough-1")
    assert done.status == 200 and "is changed" in done.body
    accounts = accounts_of(admin_server)
    try:
        assert accounts.authenticate("bob@example.test", "long-enough-1") is not None
        assert accounts.authenticate("bob@example.test", old) is None
    finally:
        accounts.close()


def test_the_password_page_is_there_without_admins(tmp_path: Path, ca: trustme.CA) -> None:
    server = make_server(tmp_path, ca, "")
    try:
        browser = Browser(server, ca)
        assert browser.get("/account/password").status == 200
        assert browser.get("/admin/").status == 404
    finally:
        server.stop()
