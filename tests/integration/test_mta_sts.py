"""MTA-STS on delivery (pochta.queue.mtasts, pochta.queue.remote), end to end.

Each "MX host" is a real SMTP server (aiosmtpd) on its own loopback address,
with or without STARTTLS and a certificate from a test CA; the policy host
``mta-sts.two.test`` is a real HTTPS server (aiohttp) on 127.0.0.1; names
come from a ``DictResolver``. The deliverer trusts the test CA only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import given
from hypothesis import strategies as st

from pochta.dns.mock import DictResolver
from pochta.queue.mtasts import FetchError, StsPolicies, mx_matches, parse_http_response, sts_id
from pochta.queue.remote import MXDeliverer

MSG = b"From: alice@one.test\r\nTo: bob@two.test\r\nSubject: hi\r\n\r\nhello\r\n"
POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.two.test\r\nmx: *.backup.two.test\r\n"
    "max_age: 86400\r\n"
)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    messages: list[tuple[list[str], bool]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), session.ssl is not None))
        return "250 2.0.0 queued"


@dataclass
class PolicyServer:
    """The HTTPS server of mta-sts.two.test; each test sets what it answers."""

    port: int
    body: str = POLICY
    status: int = 200
    content_type: str = "text/plain"
    location: str = ""
    requests: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.path == "/good":  # where a followed redirect would lead
            return web.Response(text=POLICY, content_type="text/plain")
        headers = {"Location": self.location} if self.location else {}
        return web.Response(
            text=self.body, status=self.status, content_type=self.content_type, headers=headers
        )


@dataclass
class World:
    ca: trustme.CA
    smtp_port: int
    policy: PolicyServer
    tmp_path: Path
    zones: dict[str, dict[str, object]]
    start_mx: Callable[..., Awaitable[Received]]
    made: list[MXDeliverer] = field(default_factory=list)

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def policies(self, **kw: object) -> StsPolicies:
        return StsPolicies(
            DictResolver(self.zones),
            port=self.policy.port,
            context=self.client_context(),
            cache_file=self.tmp_path / "mta-sts-cache.json",
            **kw,  # type: ignore[arg-type]
        )

    def deliverer(self, sts: StsPolicies | None = None) -> MXDeliverer:
        made = MXDeliverer(
            DictResolver(self.zones),
            hostname="mail.one.test",
            port=self.smtp_port,
            timeout=5,
            sts=sts if sts is not None else self.policies(),
            verify_context=self.client_context(),
        )
        self.made.append(made)
        return made


def zones() -> dict[str, dict[str, object]]:
    return {
        "two.test": {"MX": ["10 mx1.two.test", "20 mx2.two.test"]},
        "mx1.two.test": {"A": ["127.0.0.2"]},
        "mx2.two.test": {"A": ["127.0.0.3"]},
        "_mta-sts.two.test": {"TXT": ["v=STSv1; id=20261129a;"]},
        "mta-sts.two.test": {"A": ["127.0.0.1"]},
    }


@pytest.fixture
async def world(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[World]:
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    smtp_port = free_port("127.0.0.2")

    async def start_mx(address: str, *, cert_for: str | None = None) -> Received:
        received = Received()
        context = None
        if cert_for is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(cert_for).configure_cert(context)

        def factory() -> SMTP:
            return SMTP(received, hostname="mx", tls_context=context)

        servers.append(await loop.create_server(factory, address, smtp_port))
        return received

    policy = PolicyServer(free_port("127.0.0.1"))
    app = web.Application()
    app.router.add_get("/.well-known/mta-sts.txt", policy.handle)
    app.router.add_get("/good", policy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    https = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mta-sts.two.test").configure_cert(https)
    site = web.TCPSite(runner, "127.0.0.1", policy.port, ssl_context=https)
    await site.start()
    made = World(ca, smtp_port, policy, tmp_path, zones(), start_mx)
    try:
        yield made
    finally:
        for deliverer in made.made:
            await deliverer.close()
        for server in servers:
            server.close()
            await server.wait_closed()
        await runner.cleanup()


async def send(d: MXDeliverer) -> tuple[int, str, str]:
    out = (await d.deliver("two.test", "alice@one.test", ["bob@two.test"], MSG))["bob@two.test"]
    return out.code, out.enhanced, out.text


# --- enforce --------------------------------------------------------------------------


async def test_enforce_delivers_over_verified_tls(world: World) -> None:
    mx1 = await world.start_mx("127.0.0.2", cert_for="mx1.two.test")
    code, _, _ = await send(world.deliverer())
    assert code == 250
    assert mx1.messages == [(["bob@two.test"], True)]
    assert world.policy.requests == 1


async def test_enforce_refuses_a_host_without_starttls(world: World) -> None:
    mx1 = await world.start_mx("127.0.0.2")  # no TLS at all
    code, enhanced, text = await send(world.deliverer())
    assert (code, enhanced) == (451, "4.7.5")
    assert "MTA-STS" in text and "STARTTLS" in text
    assert mx1.messages == []


async def test_enforce_refuses_a_certificate_for_another_name(world: World) -> None:
    mx1 = await world.start_mx("127.0.0.2", cert_for="imposter.test")
    code, enhanced, text = await send(world.deliverer())
    assert (code, enhanced) == (451, "4.7.5") and "certificate" in text.lower()
    assert mx1.messages == []


async def test_enforce_skips_mx_hosts_the_policy_does_not_name(world: World) -> None:
    world.zones["two.test"] = {"MX": ["10 mx2.two.test", "20 mx1.two.test"]}
    mx2 = await world.start_mx("127.0.0.3", cert_for="mx2.two.test")
    mx1 = await world.start_mx("127.0.0.2", cert_for="mx1.two.test")
    code, _, _ = await send(world.deliverer())
    assert code == 250
    assert mx2.messages == [] and len(mx1.messages) == 1  # mx2 is not in the policy


async def test_a_wildcard_pattern_allows_one_label(world: World) -> None:
    world.zones["two.test"] = {"MX": ["10 a.backup.two.test"]}
    world.zones["a.backup.two.test"] = {"A": ["127.0.0.3"]}
    backup = await world.start_mx("127.0.0.3", cert_for="a.backup.two.test")
    assert (await send(world.deliverer()))[0] == 250
    assert backup.messages == [(["bob@two.test"], True)]


async def test_tlsa_records_none_usable_keep_the_policy_certificate_check(
    world: World,
) -> None:
    # DANE-TA records (not supported, so unusable) require TLS but do not
    # authenticate; the enforce policy's PKIX check must still apply.
    world.zones["_25._tcp.mx1.two.test"] = {"TLSA": [(2, 1, 1, b"\x00" * 32)]}
    mx1 = await world.start_mx("127.0.0.2", cert_for="imposter.test")
    secure = ["two.test", "mx1.two.test", "_25._tcp.mx1.two.test"]
    deliverer = MXDeliverer(
        DictResolver(world.zones, authentic=secure),
        hostname="mail.one.test",
        port=world.smtp_port,
        timeout=5,
        sts=world.policies(),
        verify_context=world.client_context(),
    )
    world.made.append(deliverer)
    code, enhanced, _ = await send(deliverer)
    assert (code, enhanced) == (451, "4.7.5")
    assert mx1.messages == []


# --- testing, none, no policy -------------------------------------------------------------


async def test_testing_mode_delivers_in_plain_text(world: World) -> None:
    world.policy.body = POLICY.replace("enforce", "testing")
    mx1 = await world.start_mx("127.0.0.2")
    assert (await send(world.deliverer()))[0] == 250
    assert mx1.messages == [(["bob@two.test"], False)]


@pytest.mark.parametrize(
    "txt",
    [
        [],
        ["v=STSv1; id=a;", "v=STSv1; id=b;"],  # two records: no policy (§3.1)
        ["v=STSv1; id=not-alphanumeric;"],
        ["v=STSv2; id=abc;"],
    ],
)
async def test_no_usable_txt_record_means_no_policy(world: World, txt: list[str]) -> None:
    world.zones["_mta-sts.two.test"] = {"TXT": txt}
    mx1 = await world.start_mx("127.0.0.2")
    assert (await send(world.deliverer()))[0] == 250
    assert mx1.messages == [(["bob@two.test"], False)]
    assert world.policy.requests == 0


@pytest.mark.parametrize(
    ("status", "content_type", "body", "location"),
    [
        (404, "text/plain", POLICY, ""),
        (301, "text/plain", "", "/good"),  # never followed (§3.3)
        (200, "text/html", POLICY, ""),
        (200, "text/plain", "version: STSv1\r\nmode: enforce\r\n", ""),  # no mx, no max_age
    ],
)
async def test_a_policy_that_cannot_be_fetched_is_not_applied(
    world: World, status: int, content_type: str, body: str, location: str
) -> None:
    world.policy.status, world.policy.content_type = status, content_type
    world.policy.body, world.policy.location = body, location
    mx1 = await world.start_mx("127.0.0.2")
    assert (await send(world.deliverer()))[0] == 250
    assert mx1.messages == [(["bob@two.test"], False)]
    assert world.policy.requests == 1  # the redirect was not followed


async def test_a_policy_host_with_an_untrusted_certificate_changes_nothing(
    world: World,
) -> None:
    policies = world.policies()
    cached = await policies.lookup("two.test")
    assert cached is not None and world.policy.requests == 1
    policies.context = ssl.create_default_context()  # the system's CAs only
    world.zones["_mta-sts.two.test"] = {"TXT": ["v=STSv1; id=new1;"]}
    policies.resolver = DictResolver(world.zones)
    assert await policies.lookup("two.test") == cached  # the new policy is not believed
    assert world.policy.requests == 1  # the handshake failed before any request


async def test_a_policy_host_with_a_certificate_for_another_name_is_not_believed(
    world: World,
) -> None:
    # mta-sts.three.test answers with the certificate of mta-sts.two.test.
    world.zones["mta-sts.three.test"] = {"A": ["127.0.0.1"]}
    world.zones["_mta-sts.three.test"] = {"TXT": ["v=STSv1; id=x1;"]}
    assert await world.policies().lookup("three.test") is None
    assert world.policy.requests == 0


# --- the cache --------------------------------------------------------------------------


async def test_the_cache_outlives_the_txt_record_a_dead_policy_host_and_a_restart(
    world: World,
) -> None:
    clock = [1_000_000.0]
    policies = world.policies(clock=lambda: clock[0])
    policy = await policies.lookup("two.test")
    assert policy is not None and policy.mode == "enforce"
    world.policy.status = 500  # the policy host breaks: the same id is not fetched again
    assert await policies.lookup("two.test") == policy
    world.zones["_mta-sts.two.test"] = {"TXT": ["v=STSv1; id=changed;"]}
    policies.resolver = DictResolver(world.zones)
    assert await policies.lookup("two.test") == policy  # refetch failed: cached one holds
    world.zones["_mta-sts.two.test"] = {"TXT": []}  # an attacker drops the TXT record
    policies.resolver = DictResolver(world.zones)
    assert await policies.lookup("two.test") == policy
    assert world.policy.requests == 2
    # A restart reads the cache file.
    again = world.policies(clock=lambda: clock[0])
    assert await again.lookup("two.test") == policy
    # Until max_age runs out.
    clock[0] += 86400 + 1
    assert await again.lookup("two.test") is None


async def test_a_new_id_fetches_the_new_policy(world: World) -> None:
    policies = world.policies()
    assert (await policies.lookup("two.test")).mode == "enforce"  # type: ignore[union-attr]
    world.policy.body = POLICY.replace("enforce", "none")
    world.zones["_mta-sts.two.test"] = {"TXT": ["v=STSv1; id=20261130;"]}
    policies.resolver = DictResolver(world.zones)
    assert await policies.lookup("two.test") is None  # mode none: no policy
    assert world.policy.requests == 2


async def test_a_policy_is_refreshed_after_a_day_and_a_failed_fetch_waits(
    world: World,
) -> None:
    clock = [1_000_000.0]
    world.policy.body = POLICY.replace("max_age: 86400", "max_age: 604800")
    policies = world.policies(clock=lambda: clock[0])
    policy = await policies.lookup("two.test")
    clock[0] += 86400 + 1  # same id, but a day old: fetched again
    world.policy.status = 503
    assert await policies.lookup("two.test") == policy  # the refresh failed: kept
    assert world.policy.requests == 2
    assert await policies.lookup("two.test") == policy
    assert world.policy.requests == 2  # not asked again for a while
    clock[0] += 301
    world.policy.status = 200
    assert await policies.lookup("two.test") == policy
    assert world.policy.requests == 3


async def test_a_damaged_cache_entry_is_dropped_alone(world: World) -> None:
    import json

    good = world.policies()
    assert await good.lookup("two.test") is not None
    entries = json.loads((world.tmp_path / "mta-sts-cache.json").read_text())
    entries["bad.test"] = {"id": "a", "mode": "bogus", "max_age": 1, "mx": "abc", "expires": 9e99}
    entries["worse.test"] = {"id": "a"}
    (world.tmp_path / "mta-sts-cache.json").write_text(json.dumps(entries))
    world.policy.status = 500
    again = world.policies()
    assert await again.lookup("two.test") is not None  # from the file
    world.zones["_mta-sts.bad.test"] = {"TXT": []}
    again.resolver = DictResolver(world.zones)
    assert await again.lookup("bad.test") is None


async def test_a_connection_kept_from_before_enforce_is_not_reused(world: World) -> None:
    world.policy.body = POLICY.replace("enforce", "testing")
    mx1 = await world.start_mx("127.0.0.2")  # no TLS
    deliverer = world.deliverer()
    assert (await send(deliverer))[0] == 250  # plain text, the connection is kept
    world.policy.body = POLICY
    world.zones["_mta-sts.two.test"] = {"TXT": ["v=STSv1; id=enforcing;"]}
    deliverer.sts.resolver = DictResolver(world.zones)  # type: ignore[union-attr]
    deliverer.resolver = DictResolver(world.zones)
    code, enhanced, _ = await send(deliverer)
    assert (code, enhanced) == (451, "4.7.5")
    assert len(mx1.messages) == 1


async def test_a_cancelled_lookup_does_not_fail_the_others(world: World) -> None:
    policies = world.policies()
    first = asyncio.ensure_future(policies.lookup("two.test"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(policies.lookup("two.test"))
    await asyncio.sleep(0)
    first.cancel()
    policy = await second
    assert policy is not None and policy.mode == "enforce"
    assert world.policy.requests == 1


async def test_concurrent_deliveries_fetch_the_policy_once(world: World) -> None:
    policies = world.policies()
    found = await asyncio.gather(*(policies.lookup("two.test") for _ in range(10)))
    assert all(p is not None and p.mode == "enforce" for p in found)
    assert world.policy.requests == 1


# --- parsers ------------------------------------------------------------------------------


def test_sts_id() -> None:
    assert sts_id(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert sts_id(["v=STSv1;id=abc", "other text"]) == "abc"
    assert sts_id(["v=STSv1; id=abc; ext=1;"]) == "abc"
    for bad in (
        [],
        ["v=STSv1;"],
        ["v=STSv1; id=" + "a" * 33],
        ["v=STSv1; id"],
        ["id=abc; v=STSv1;"],
        ["v=STSv1; id=a", "v=STSv1; id=b"],
    ):
        assert sts_id(bad) is None, bad


def test_mx_matches() -> None:
    patterns = ("mail.example.com", "*.example.net")
    assert mx_matches("mail.example.com", patterns)
    assert mx_matches("MAIL.example.com.", patterns)
    assert mx_matches("mx1.example.net", patterns)
    assert not mx_matches("example.net", patterns)
    assert not mx_matches("a.b.example.net", patterns)
    assert not mx_matches("mail.example.org", patterns)


def test_parse_http_response() -> None:
    ok = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 5\r\n\r\nabcdeXYZ"
    )
    assert parse_http_response(ok) == "abcde"
    assert parse_http_response(b"HTTP/1.0 200 OK\r\nContent-Type: TEXT/PLAIN\r\n\r\nbody") == "body"
    for bad in (
        b"HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: text/plain\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n\xff\xfe",
        b"SMTP 220 hello\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain",
    ):
        with pytest.raises(FetchError):
            parse_http_response(bad)


@given(st.binary(max_size=400))
def test_parse_http_response_never_fails_otherwise(raw: bytes) -> None:
    try:
        parse_http_response(raw)
    except FetchError:
        pass


@given(st.lists(st.text(max_size=60), max_size=4))
def test_sts_id_never_fails(records: list[str]) -> None:
    found = sts_id(records)
    assert found is None or (1 <= len(found) <= 32 and found.isalnum())
