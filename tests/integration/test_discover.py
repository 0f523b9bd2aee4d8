"""``pochta discover`` against a real Pochta server, a loopback DNS server and fakes.

Every name resolves through the test DNS server (``--nameserver``) to
127.0.0.1, where the Pochta server listens on free ports; ``--port-map``
sends the standard ports (443, 80, 995, ...) to those. Each scenario
publishes only some records, so each discovery step is shown to find the
settings once the earlier ones have nothing: autoconfig (three URLs),
autodiscover (host and SRV), RFC 6186 SRV, the MX's domain, guessing, and
nothing at all. Login checks use the real submission server for SMTP and a
scripted IMAP server (Pochta's IMAP is not built yet) for IMAP.
"""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner, Result
from tests.conftest import FAST_HASHER, ServerThread
from tests.dnsserver import DNSTestServer

from pochta.accounts import Accounts
from pochta.cli import _register, cli
from pochta.config import load_settings
from pochta.dns import Zones

PASSWORD = "correct horse battery staple"
LOOPBACK = ["127.0.0.1"]

SETTINGS = """\
hostname = "mail.one.test"
data_dir = "data"

[listen]
http = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]
pop3 = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
"""

CERT_NAMES = (
    "mail.one.test",
    "one.test",
    "autoconfig.one.test",
    "autodiscover.one.test",
    "web.one.test",
    "imap.one.test",
    "pop3.one.test",
    "smtp.one.test",
    "autoconfig.provider.test",
    "mail.provider.test",
)


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ------------------------------------------------------------------ scripted IMAP


class FakeIMAP(socketserver.ThreadingTCPServer):
    """An implicit-TLS IMAP server that knows greeting, CAPABILITY, AUTHENTICATE
    PLAIN (with or without SASL-IR), LOGIN and LOGOUT, and one user."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext, capabilities: str, user: str) -> None:
        super().__init__(("127.0.0.1", 0), _FakeIMAPHandler)
        self.context = context
        self.capabilities = capabilities
        self.user = user
        self.commands: list[str] = []


class _FakeIMAPHandler(socketserver.StreamRequestHandler):
    server: FakeIMAP

    def setup(self) -> None:
        self.request = self.server.context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        super().finish()
        self.request.close()  # the TLS socket; the server closes only the raw one

    def send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def check(self, response: str) -> bool:
        try:
            _, user, password = base64.b64decode(response).decode().split("\0")
        except ValueError:
            return False
        return user == self.server.user and password == PASSWORD

    def handle(self) -> None:
        caps = self.server.capabilities
        self.send(f"* OK [CAPABILITY {caps}] fake IMAP ready")
        while line := self.rfile.readline().decode().rstrip("\r\n"):
            tag, _, rest = line.partition(" ")
            command, _, args = rest.partition(" ")
            self.server.commands.append(command.upper())
            if command.upper() == "CAPABILITY":
                self.send(f"* CAPABILITY {caps}")
                self.send(f"{tag} OK done")
            elif command.upper() == "AUTHENTICATE":
                _mechanism, _, initial = args.partition(" ")
                if not initial:
                    self.send("+ ")
                    initial = self.rfile.readline().decode().strip()
                ok = self.check(initial)
                self.send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] no")
            elif command.upper() == "LOGIN":
                user, password = (a.strip('"') for a in args.split(" ", 1))
                ok = user == self.server.user and password == PASSWORD
                self.send(f"{tag} OK logged in" if ok else f"{tag} NO [AUTHENTICATIONFAILED] no")
            elif command.upper() == "LOGOUT":
                self.send("* BYE bye")
                self.send(f"{tag} OK bye")
                return
            else:
                self.send(f"{tag} BAD unknown")


# ------------------------------------------------------------------------ fixtures


@dataclass
class World:
    """A Pochta server, a DNS server, and how to run ``pochta discover`` at them."""

    server: ServerThread
    dns: DNSTestServer
    cafile: Path
    ports: dict[int, int]
    ca: trustme.CA
    extra: list[Callable[[], None]] = field(default_factory=list)

    @property
    def zones(self) -> Zones:
        return self.dns.zones

    def port(self, kind: str) -> int:
        return self.server.address(kind)[1]

    def run(
        self,
        *args: str,
        password: str | None = None,
        cafile: bool = True,
        port_map: dict[int, int] | None = None,
    ) -> Result:
        ports = {**self.ports, **(port_map or {})}
        argv = ["discover", "alice@one.test", "--nameserver", self.dns.hostport, "--timeout", "3"]
        for source, target in ports.items():
            argv += ["--port-map", f"{source}={target}"]
        if cafile:
            argv += ["--cafile", str(self.cafile)]
        if password is not None:
            argv.append("--password-stdin")
        argv += list(args)
        _register()
        return CliRunner().invoke(cli, argv, input=None if password is None else password + "\n")

    def run_json(self, *args: str, **kw: Any) -> tuple[Result, dict[str, Any]]:
        result = self.run("--json", *args, **kw)
        return result, json.loads(result.stdout)


@pytest.fixture
def world(tmp_path: Path, ca: trustme.CA) -> Iterator[World]:
    issued = ca.issue_cert(*CERT_NAMES)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls/cert.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (tmp_path / "tls/key.pem").write_bytes(issued.private_key_pem.bytes())
    (tmp_path / "pochta.toml").write_text(SETTINGS)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    settings = load_settings(tmp_path / "pochta.toml")
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER)
    for domain in ("one.test", "provider.test"):
        accounts.add_domain(domain)
    accounts.add_user("alice@one.test", PASSWORD)
    accounts.close()
    server = ServerThread(settings)
    server.start()
    server.call(lambda: server.server.store.create_user("alice@one.test"))
    dead = dead_port()
    ports = {
        443: server.server.address("https")[1],
        80: server.server.address("http")[1],
        995: server.server.address("pop3s")[1],
        110: server.server.address("pop3")[1],
        465: server.server.address("submissions")[1],
        587: server.server.address("submission")[1],
        993: dead,
        143: dead,
    }
    with DNSTestServer() as dns:
        world = World(server, dns, cafile, ports, ca)
        try:
            yield world
        finally:
            for cleanup in world.extra:
                cleanup()
            server.stop()


def fake_imap(world: World, capabilities: str) -> int:
    issued = world.ca.issue_cert("imap.one.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    issued.configure_cert(context)
    imap = FakeIMAP(context, capabilities, "alice@one.test")
    thread = threading.Thread(target=imap.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def stop() -> None:
        imap.shutdown()
        imap.server_close()
        thread.join(5)

    world.extra.append(stop)
    world.imap = imap  # type: ignore[attr-defined]
    port: int = imap.server_address[1]
    return port


def steps_of(report: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(a["step"], a["method"], a["outcome"]) for a in report["attempts"]]


# ------------------------------------------------------------------- the steps


def test_step1_autoconfig_https(world: World) -> None:
    world.zones.set("autoconfig.one.test", "A", LOOPBACK)
    world.zones.set("mail.one.test", "A", LOOPBACK)
    result, report = world.run_json()
    assert result.exit_code == 0, result.output
    assert (report["step"], report["method"]) == (1, "autoconfig")
    assert report["source"] == (
        "https://autoconfig.one.test/mail/config-v1.1.xml?emailaddress=alice@one.test"
    )
    assert report["incoming"][0] == {
        "protocol": "pop3",
        "hostname": "mail.one.test",
        "port": world.port("pop3s"),
        "security": "ssl",
        "username": "alice@one.test",
        "auth": ["password-cleartext"],
    }
    assert [(s["port"], s["security"]) for s in report["outgoing"]] == [
        (world.port("submissions"), "ssl"),
        (world.port("submission"), "starttls"),
    ]
    assert report["attempts"] == [
        {
            "step": 1,
            "method": "autoconfig",
            "target": report["source"],
            "outcome": "found",
            "detail": "2 incoming, 2 outgoing",
        }
    ]


def test_step1_well_known_then_http(world: World) -> None:
    world.zones.set("one.test", "A", LOOPBACK)
    _, report = world.run_json()
    assert report["source"].startswith("https://one.test/.well-known/autoconfig/mail/")
    assert steps_of(report) == [(1, "autoconfig", "not-found"), (1, "autoconfig", "found")]
    assert "does not exist in DNS" in report["attempts"][0]["detail"]
    # HTTPS down: the plain-http URL of the same order is next.
    world.zones.delete("one.test")
    world.zones.set("autoconfig.one.test", "A", LOOPBACK)
    _, report = world.run_json(port_map={443: dead_port()})
    assert report["source"].startswith("http://autoconfig.one.test/mail/config-v1.1.xml")
    assert report["attempts"][0]["detail"] == "connection refused"


def test_tls_and_dns_problems_are_reported_in_words(world: World) -> None:
    world.zones.set("autoconfig.one.test", "A", LOOPBACK)
    world.zones.fail("one.test", "A", "servfail")
    result, report = world.run_json(cafile=False)  # our test CA is not trusted now
    assert result.exit_code == 0
    details = [a["detail"] for a in report["attempts"]]
    assert details[0].startswith("TLS certificate not accepted: ")
    assert details[1].startswith("DNS lookup failed temporarily")
    assert report["source"].startswith("http://autoconfig.one.test/")
    assert "Traceback" not in result.output


def test_step2_autodiscover_host(world: World) -> None:
    world.zones.set("autodiscover.one.test", "A", LOOPBACK)
    _, report = world.run_json()
    assert (report["step"], report["method"]) == (2, "autodiscover")
    assert report["source"] == "https://autodiscover.one.test/autodiscover/autodiscover.xml"
    assert [(s["protocol"], s["port"], s["security"]) for s in report["incoming"]] == [
        ("pop3", world.port("pop3s"), "ssl")
    ]
    assert report["outgoing"][0]["username"] == "alice@one.test"


def test_step2_autodiscover_srv(world: World) -> None:
    world.zones.set("_autodiscover._tcp.one.test", "SRV", ["0 0 443 web.one.test"])
    world.zones.set("web.one.test", "A", LOOPBACK)
    result, report = world.run_json()
    assert result.exit_code == 0
    assert report["source"] == "https://web.one.test/autodiscover/autodiscover.xml"
    assert steps_of(report)[-2:] == [(2, "autodiscover", "found"), (2, "autodiscover", "found")]
    assert [a["target"] for a in report["attempts"]][-2] == "SRV _autodiscover._tcp.one.test"


def test_step3_rfc6186_srv(world: World) -> None:
    world.zones.set("_imaps._tcp.one.test", "SRV", ["0 0 0 ."])
    world.zones.set("_pop3s._tcp.one.test", "SRV", [f"0 1 {world.port('pop3s')} mail.one.test"])
    world.zones.set(
        "_submission._tcp.one.test", "SRV", [f"0 1 {world.port('submission')} mail.one.test"]
    )
    result, report = world.run_json()
    assert result.exit_code == 0, result.output
    assert (report["step"], report["method"]) == (3, "srv")
    assert report["incoming"] == [
        {
            "protocol": "pop3",
            "hostname": "mail.one.test",
            "port": world.port("pop3s"),
            "security": "ssl",
            "username": "alice@one.test",
            "auth": [],
        }
    ]
    assert report["outgoing"][0]["security"] == "starttls"
    imaps = next(a for a in report["attempts"] if a["target"] == "SRV _imaps._tcp.one.test")
    assert imaps["detail"] == 'target "." (service not offered)'
    assert report["warnings"] == []


def test_step3_warns_about_targets_outside_the_domain(world: World) -> None:
    world.zones.set("_imaps._tcp.one.test", "SRV", ["0 1 993 imap.elsewhere.test"])
    world.zones.set("_submissions._tcp.one.test", "SRV", ["0 1 465 mail.one.test"])
    _, report = world.run_json()
    (warning,) = report["warnings"]
    assert "imap.elsewhere.test" in warning and "RFC 6186" in warning


def test_step4_mx_domain(world: World) -> None:
    world.zones.set("one.test", "MX", ["10 mx1.provider.test"])
    world.zones.set("autoconfig.provider.test", "A", LOOPBACK)
    result, report = world.run_json()
    assert result.exit_code == 0, result.output
    assert (report["step"], report["method"]) == (4, "mx+autoconfig")
    assert report["source"].startswith("https://autoconfig.provider.test/mail/config-v1.1.xml")
    mx = next(a for a in report["attempts"] if a["method"] == "mx")
    assert mx["detail"] == "mx1.provider.test -> trying provider.test"


def test_step5_guessing(world: World) -> None:
    world.zones.set("pop3.one.test", "A", LOOPBACK)
    world.zones.set("smtp.one.test", "A", LOOPBACK)
    result, report = world.run_json()
    assert result.exit_code == 0, result.output
    assert (report["step"], report["method"]) == (5, "probe")
    # The report names the ports a real client would use; --port-map only moved them here.
    assert [
        (s["protocol"], s["hostname"], s["port"], s["security"]) for s in report["incoming"]
    ] == [
        ("pop3", "pop3.one.test", 995, "ssl"),
        ("pop3", "pop3.one.test", 110, "starttls"),
    ]
    assert [(s["port"], s["security"]) for s in report["outgoing"]] == [
        (465, "ssl"),
        (587, "starttls"),
    ]
    assert "PLAIN" in report["outgoing"][0]["auth"]
    probed = {a["target"]: a for a in report["attempts"] if a["method"] == "probe"}
    assert probed["imap.one.test"]["detail"] == "the name does not exist in DNS"
    assert probed["POP3 pop3.one.test:995"]["outcome"] == "found"


def test_step6_nothing_found(world: World) -> None:
    result, report = world.run_json()
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no mail settings found for alice@one.test"
    assert report["found"] is False and report["advice"].startswith("No settings could be")
    assert {a["step"] for a in report["attempts"]} == {1, 2, 3, 4, 5}


def test_text_report(world: World) -> None:
    world.zones.set("_pop3s._tcp.one.test", "SRV", [f"0 1 {world.port('pop3s')} mail.one.test"])
    world.zones.set("_submissions._tcp.one.test", "SRV", ["0 1 465 mail.one.test"])
    result = world.run()
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Discovering mail settings for alice@one.test\n")
    assert "1. Thunderbird autoconfig\n" in out
    assert "2. Outlook autodiscover\n" in out
    assert "3. DNS SRV records (RFC 6186)\n" in out
    assert "Found by step 3 (DNS SRV records (RFC 6186)): SRV records of one.test" in out
    assert (
        f"  incoming  POP3 mail.one.test:{world.port('pop3s')} SSL/TLS, user alice@one.test" in out
    )
    assert "  outgoing  SMTP mail.one.test:465 SSL/TLS, user alice@one.test" in out


# ------------------------------------------------------------------- logins


@pytest.mark.parametrize(
    "capabilities",
    ["IMAP4rev1 AUTH=PLAIN SASL-IR", "IMAP4rev1 AUTH=PLAIN", "IMAP4rev1"],
    ids=["sasl-ir", "plain-continuation", "login-command"],
)
def test_login_check_imap_and_smtp(world: World, capabilities: str) -> None:
    imap_port = fake_imap(world, capabilities)
    world.zones.set("imap.one.test", "A", LOOPBACK)
    world.zones.set("mail.one.test", "A", LOOPBACK)
    world.zones.set("_imaps._tcp.one.test", "SRV", [f"0 1 {imap_port} imap.one.test"])
    world.zones.set("_submissions._tcp.one.test", "SRV", ["0 1 465 mail.one.test"])
    result, report = world.run_json(password=PASSWORD)
    assert result.exit_code == 0, result.output
    logins = {c["protocol"]: c for c in report["logins"]}
    assert logins["imap"]["ok"] and logins["smtp"]["ok"], logins
    expected = "LOGIN" if capabilities == "IMAP4rev1" else "AUTHENTICATE"
    assert expected in world.imap.commands  # type: ignore[attr-defined]
    assert logins["smtp"]["detail"] == "logged in with AUTH PLAIN as alice@one.test"
    assert PASSWORD not in result.output


def test_login_check_wrong_password(world: World) -> None:
    imap_port = fake_imap(world, "IMAP4rev1 AUTH=PLAIN SASL-IR")
    world.zones.set("imap.one.test", "A", LOOPBACK)
    world.zones.set("mail.one.test", "A", LOOPBACK)
    world.zones.set("_imaps._tcp.one.test", "SRV", [f"0 1 {imap_port} imap.one.test"])
    world.zones.set("_submission._tcp.one.test", "SRV", ["0 1 587 mail.one.test"])
    result = world.run(password="wrong password")
    assert result.exit_code == 1
    assert "login check failed for IMAP imap.one.test" in result.stderr
    assert "SMTP mail.one.test:587" in result.stderr
    assert "Login check:" in result.stdout and "FAILED: login refused" in result.stdout
    assert "wrong password" not in result.output


def test_login_check_pop3_when_no_imap(world: World) -> None:
    world.zones.set("autoconfig.one.test", "A", LOOPBACK)
    world.zones.set("mail.one.test", "A", LOOPBACK)
    result, report = world.run_json(password=PASSWORD)
    assert result.exit_code == 0, result.output
    assert [(c["protocol"], c["ok"]) for c in report["logins"]] == [("pop3", True), ("smtp", True)]


def test_bad_arguments_are_one_line_errors(world: World) -> None:
    _register()
    runner = CliRunner()
    bad = runner.invoke(cli, ["discover", "not-an-address"])
    assert bad.exit_code == 1 and bad.stderr.count("\n") == 1
    ports = runner.invoke(cli, ["discover", "a@one.test", "--port-map", "443"])
    assert ports.exit_code == 2 and "PORT=PORT" in ports.stderr
    ns = runner.invoke(cli, ["discover", "a@one.test", "--nameserver", "dns.example"])
    assert ns.exit_code == 2 and "IP address" in ns.stderr


def test_nameservers_from_the_settings_file(world: World, tmp_path: Path) -> None:
    config = tmp_path / "client.toml"
    config.write_text(
        f'hostname = "client.test"\ndata_dir = "client-data"\n'
        f'[dns]\nnameservers = ["{world.dns.hostport}"]\n'
    )
    world.zones.set("autoconfig.one.test", "A", LOOPBACK)
    _register()
    argv = ["--config", str(config), "discover", "alice@one.test", "--json", "--timeout", "3"]
    argv += ["--https-port", str(world.ports[443]), "--cafile", str(world.cafile)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 1
    assert ("autoconfig.one.test", "A") in world.dns.queries
