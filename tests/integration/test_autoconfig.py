"""pochta.web against a real server on loopback: every endpoint, read as clients read it.

The server binds every listener to port 0, so the documents advertise the
ports actually bound (the port rule of ``pochta.web.services``); the tests
compare with ``Server.address(kind)``. Requests carry the ``Host`` header a
client would send (``autoconfig.example.test``), over HTTP and HTTPS.
"""

from __future__ import annotations

import http.client
import json
import plistlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from tests.conftest import FAST_HASHER, ServerThread, populate

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.web.autodiscover import OUTLOOK_RESPONSE_NS, REQUEST_NS, RESPONSE_NS
from pochta.web.mtasts import parse_policy

SETTINGS = """\
hostname = "mail.example.test"
data_dir = "data"

[listen]
http = ["127.0.0.1:0"]
https = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]
pop3 = ["127.0.0.1:0"]
pop3s = ["127.0.0.1:0"]

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"
"""

NAMES = (
    "mail.example.test",
    "autoconfig.example.test",
    "autodiscover.example.test",
    "mta-sts.example.test",
    "example.test",
    "127.0.0.1",
)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)


@dataclass
class Web:
    server: ServerThread
    ca: trustme.CA

    def request(
        self,
        method: str,
        path: str,
        host: str,
        body: bytes | None = None,
        *,
        tls: bool = False,
        content_type: str = "text/xml",
    ) -> Response:
        if tls:
            context = ssl.create_default_context()
            self.ca.configure_trust(context)
            _, port = self.server.address("https")
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", port, context=context, timeout=10
            )
        else:
            _, port = self.server.address("http")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=headers)
            reply = conn.getresponse()
            return Response(
                reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
            )
        finally:
            conn.close()

    def get(self, path: str, host: str = "autoconfig.example.test", **kw: bool) -> Response:
        return self.request("GET", path, host, **kw)  # type: ignore[arg-type]

    def port(self, kind: str) -> int:
        return self.server.address(kind)[1]


@pytest.fixture
def web(tmp_path: Path, ca: trustme.CA) -> Iterator[Web]:
    issued = ca.issue_cert(*NAMES)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls/cert.pem").write_bytes(b"".join(b.bytes() for b in issued.cert_chain_pems))
    (tmp_path / "tls/key.pem").write_bytes(issued.private_key_pem.bytes())
    (tmp_path / "pochta.toml").write_text(SETTINGS)
    settings = load_settings(tmp_path / "pochta.toml")
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER)
    populate(accounts)
    accounts.close()
    server = ServerThread(settings)
    server.start()
    try:
        yield Web(server, ca)
    finally:
        server.stop()


# ----------------------------------------------------------------- Thunderbird


def servers(doc: ET.Element, tag: str) -> list[dict[str, str]]:
    """Thunderbird's reading: each server's type attribute and child texts."""
    provider = doc.find("emailProvider")
    assert provider is not None
    found = []
    for element in provider.findall(tag):
        item = {child.tag: (child.text or "") for child in element}
        item["type"] = element.get("type", "")
        found.append(item)
    return found


@pytest.mark.parametrize("tls", [False, True])
@pytest.mark.parametrize(
    "path",
    [
        "/mail/config-v1.1.xml?emailaddress=alice%40example.test",
        "/mail/config-v1.1.xml",
        "/.well-known/autoconfig/mail/config-v1.1.xml",
    ],
)
def test_thunderbird_config(web: Web, path: str, tls: bool) -> None:
    host = "example.test" if path.startswith("/.well-known") else "autoconfig.example.test"
    reply = web.get(path, host, tls=tls)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/xml")
    assert reply.headers["x-content-type-options"] == "nosniff"
    doc = reply.xml()
    assert doc.tag == "clientConfig" and doc.get("version") == "1.1"
    provider = doc.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.test"
    assert provider.findtext("domain") == "example.test"
    incoming = servers(doc, "incomingServer")
    outgoing = servers(doc, "outgoingServer")
    assert [(s["type"], s["socketType"]) for s in incoming] == [
        ("pop3", "SSL"),
        ("pop3", "STARTTLS"),
    ]
    assert [int(s["port"]) for s in incoming] == [web.port("pop3s"), web.port("pop3")]
    assert [(s["type"], s["socketType"], int(s["port"])) for s in outgoing] == [
        ("smtp", "SSL", web.port("submissions")),
        ("smtp", "STARTTLS", web.port("submission")),
    ]
    for item in incoming + outgoing:
        assert item["hostname"] == "mail.example.test"
        assert item["username"] == "%EMAILADDRESS%"
        assert item["authentication"] == "password-cleartext"


def test_thunderbird_address_chooses_the_domain(web: Web) -> None:
    reply = web.get("/mail/config-v1.1.xml?emailaddress=carol%40OTHER.test")
    assert reply.status == 200
    assert reply.xml().findtext("emailProvider/domain") == "other.test"


def test_thunderbird_unknown_user_is_not_revealed(web: Web) -> None:
    known = web.get("/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    unknown = web.get("/mail/config-v1.1.xml?emailaddress=nobody%40example.test")
    assert known.status == unknown.status == 200 and known.body == unknown.body


@pytest.mark.parametrize(
    ("path", "host", "status"),
    [
        ("/mail/config-v1.1.xml?emailaddress=x%40unknown.test", "autoconfig.example.test", 404),
        ("/mail/config-v1.1.xml", "autoconfig.unknown.test", 404),
        ("/mail/config-v1.1.xml", "127.0.0.1", 404),
        ("/mail/config-v1.1.xml?emailaddress=", "autoconfig.example.test", 400),
        ("/mail/config-v1.1.xml?emailaddress=no-at-sign", "autoconfig.example.test", 400),
    ],
)
def test_thunderbird_errors(web: Web, path: str, host: str, status: int) -> None:
    reply = web.get(path, host)
    assert reply.status == status
    assert reply.headers["content-type"].startswith("text/plain")


def test_bad_address_is_never_reflected(web: Web) -> None:
    for path in (
        "/mail/config-v1.1.xml?emailaddress=%3Cscript%3Ealert(1)%3C/script%3E",
        "/apple/mobileconfig?emailaddress=%3Cscript%3E@example.test",
        "/autodiscover/autodiscover.json/v1.0/%3Cscript%3E?Protocol=AutodiscoverV1",
    ):
        reply = web.get(path)
        assert reply.status == 400, path
        assert b"script" not in reply.body, path


# -------------------------------------------------------------------- Outlook

POX_NS = {"r": RESPONSE_NS, "o": OUTLOOK_RESPONSE_NS}


def pox_request(address: str, schema: str = OUTLOOK_RESPONSE_NS) -> bytes:
    root = ET.Element("Autodiscover", xmlns=REQUEST_NS)
    request = ET.SubElement(root, "Request")
    ET.SubElement(request, "EMailAddress").text = address
    ET.SubElement(request, "AcceptableResponseSchema").text = schema
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def pox_error_code(reply: Response) -> str | None:
    return reply.xml().findtext("r:Response/r:Error/r:ErrorCode", namespaces=POX_NS)


@pytest.mark.parametrize(
    "path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"]
)
def test_outlook_pox(web: Web, path: str) -> None:
    reply = web.request(
        "POST", path, "autodiscover.example.test", pox_request("Alice@example.test"), tls=True
    )
    assert reply.status == 200, reply.body
    account = reply.xml().find("o:Response/o:Account", POX_NS)
    assert account is not None
    assert account.findtext("o:AccountType", namespaces=POX_NS) == "email"
    assert account.findtext("o:Action", namespaces=POX_NS) == "settings"
    protocols = {
        p.findtext("o:Type", namespaces=POX_NS): {
            child.tag.split("}")[1]: child.text for child in p
        }
        for p in account.findall("o:Protocol", POX_NS)
    }
    assert set(protocols) == {"POP3", "SMTP"}
    assert protocols["POP3"]["Port"] == str(web.port("pop3s"))
    assert protocols["POP3"]["Encryption"] == "SSL"
    assert protocols["SMTP"]["Port"] == str(web.port("submissions"))
    for protocol in protocols.values():
        assert protocol["Server"] == "mail.example.test"
        assert protocol["LoginName"] == "Alice@example.test"
        assert protocol["SSL"] == "on" and protocol["AuthRequired"] == "on"


def test_outlook_pox_escapes_the_address(web: Web) -> None:
    address = '"a<b>&c"@example.test'
    reply = web.request("POST", "/autodiscover/autodiscover.xml", "x", pox_request(address))
    assert reply.status == 200
    assert b"<b>" not in reply.body and b"&lt;b&gt;&amp;c" in reply.body
    names = reply.xml().findall(".//o:LoginName", POX_NS)
    assert names and all(n.text == address for n in names)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Autodiscover [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Autodiscover xmlns="%s"><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>
""" % REQUEST_NS.encode()

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Autodiscover><Request><EMailAddress>&lol9;</EMailAddress></Request></Autodiscover>
"""


@pytest.mark.parametrize(
    "body",
    [
        XXE,
        BILLION_LAUGHS,
        b"not xml at all",
        b"",
        b"<Autodiscover><Request></Request></Autodiscover>",
        b"<Other><Request><EMailAddress>a@example.test</EMailAddress></Request></Other>",
        pox_request("not an address"),
    ],
    ids=["xxe", "billion-laughs", "not-xml", "empty", "no-address", "wrong-root", "bad-address"],
)
def test_outlook_pox_refuses_bad_bodies(web: Web, body: bytes) -> None:
    reply = web.request("POST", "/autodiscover/autodiscover.xml", "x", body)
    assert reply.status == 400
    assert pox_error_code(reply) == "600"
    assert b"root:" not in reply.body  # nothing of /etc/passwd


def test_outlook_pox_body_size_limit(web: Web) -> None:
    big = pox_request("a@example.test") + b" " * 20000
    assert web.request("POST", "/autodiscover/autodiscover.xml", "x", big).status == 413


def test_outlook_pox_unknown_domain_and_other_schema(web: Web) -> None:
    unknown = web.request("POST", "/autodiscover/autodiscover.xml", "x", pox_request("a@no.test"))
    assert unknown.status == 404 and pox_error_code(unknown) == "500"
    mobile = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
    other = web.request(
        "POST", "/autodiscover/autodiscover.xml", "x", pox_request("alice@example.test", mobile)
    )
    assert other.status == 200 and pox_error_code(other) == "601"


def test_outlook_http_probe_redirects_to_https(web: Web) -> None:
    reply = web.get("/autodiscover/autodiscover.xml", "autodiscover.example.test")
    assert reply.status == 302
    port = web.port("https")
    assert reply.headers["location"] == (
        f"https://mail.example.test:{port}/autodiscover/autodiscover.xml"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/autodiscover/autodiscover.json/v1.0/alice@example.test?Protocol=AutodiscoverV1",
        "/Autodiscover/Autodiscover.json/v1.0/alice@example.test?Protocol=autodiscoverv1",
        "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=AutodiscoverV1",
    ],
)
def test_outlook_json_v2(web: Web, path: str) -> None:
    reply = web.get(path, "autodiscover.example.test")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert json.loads(reply.body) == {
        "Protocol": "AutodiscoverV1",
        "Url": f"https://mail.example.test:{web.port('https')}/autodiscover/autodiscover.xml",
    }


def test_outlook_json_v2_errors(web: Web) -> None:
    base = "/autodiscover/autodiscover.json/v1.0/"
    ews = web.get(base + "alice@example.test?Protocol=EWS")
    assert ews.status == 400 and json.loads(ews.body)["ErrorCode"] == "InvalidProtocol"
    assert web.get(base + "alice@unknown.test?Protocol=AutodiscoverV1").status == 404
    assert web.get(base + "nonsense?Protocol=AutodiscoverV1").status == 400


# ---------------------------------------------------------------------- Apple


def test_apple_mobileconfig(web: Web) -> None:
    reply = web.get("/apple/mobileconfig?emailaddress=alice%40example.test", tls=True)
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/x-apple-aspen-config"
    assert 'filename="example.test.mobileconfig"' in reply.headers["content-disposition"]
    profile = plistlib.loads(reply.body)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    (mail,) = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == "alice@example.test"
    assert mail["EmailAccountType"] == "EmailTypePOP"  # no IMAP listener here
    assert mail["IncomingMailServerHostName"] == "mail.example.test"
    assert mail["IncomingMailServerPortNumber"] == web.port("pop3s")
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerPortNumber"] == web.port("submissions")
    assert mail["IncomingMailServerUsername"] == mail["OutgoingMailServerUsername"]
    again = plistlib.loads(web.get("/apple/mobileconfig?emailaddress=ALICE%40example.test").body)
    assert again["PayloadUUID"] == profile["PayloadUUID"]  # re-download replaces


def test_apple_mobileconfig_errors(web: Web) -> None:
    assert web.get("/apple/mobileconfig").status == 400
    assert web.get("/apple/mobileconfig?emailaddress=x%40unknown.test").status == 404


def test_apple_mobileconfig_escapes(web: Web) -> None:
    reply = web.get("/apple/mobileconfig?emailaddress=%22a%3Cb%3E%22%40example.test")
    assert reply.status == 200
    assert b"<b>" not in reply.body
    assert plistlib.loads(reply.body)["PayloadContent"][0]["EmailAddress"] == '"a<b>"@example.test'


# -------------------------------------------------------------------- MTA-STS


def test_mta_sts_generated_policy_is_testing(web: Web) -> None:
    reply = web.get("/.well-known/mta-sts.txt", "mta-sts.example.test", tls=True)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert text.startswith("version: STSv1\r\n")
    policy = parse_policy(text)
    assert policy.mode == "testing" and policy.mx == ("mail.example.test",)


def test_mta_sts_policy_file_sets_enforce(web: Web) -> None:
    directory = web.server.settings.data_dir / "mta-sts"
    directory.mkdir()
    (directory / "example.test.txt").write_text(
        "version: STSv1\nmode: enforce\nmx: mail.example.test\nmx: *.backup.test\nmax_age: 604800\n"
    )
    reply = web.get("/.well-known/mta-sts.txt", "mta-sts.example.test")
    policy = parse_policy(reply.body.decode())
    assert (policy.mode, policy.max_age) == ("enforce", 604800)
    assert policy.mx == ("mail.example.test", "*.backup.test")
    (directory / "example.test.txt").write_text("version: STSv1\nmode: enforce\n")
    assert web.get("/.well-known/mta-sts.txt", "mta-sts.example.test").status == 500


def test_mta_sts_only_on_policy_hosts_of_local_domains(web: Web) -> None:
    assert web.get("/.well-known/mta-sts.txt", "example.test").status == 404
    assert web.get("/.well-known/mta-sts.txt", "mta-sts.unknown.test").status == 404
    assert web.get("/.well-known/mta-sts.txt", "mta-sts.other.test").status == 200


# ---------------------------------------------------------------------- general


def test_unknown_path_and_headers(web: Web) -> None:
    reply = web.get("/admin/../etc/passwd")
    assert reply.status == 404
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in reply.headers["content-security-policy"]


def test_server_address_for_web_listeners(web: Web) -> None:
    assert web.server.address("http")[0] == "127.0.0.1"
    assert web.port("http") != web.port("https") != 0
