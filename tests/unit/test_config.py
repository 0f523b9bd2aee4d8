"""Tests for pochta.config: the settings file contract and its one-line errors."""

import ssl
import tempfile
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from pochta.config import (
    AuthSettings,
    ConfigError,
    DeliverySettings,
    DNSSettings,
    HostPort,
    LimitsSettings,
    ListenSettings,
    find_settings_path,
    load_settings,
    parse_hostport,
    parse_settings,
)
from pochta.errors import UserFacingError

# The example from DESIGN.md, "Contracts", verbatim.
FULL = """\
hostname = "mail.example.test"         # the name in banners, HELO, Received
data_dir = "data"                      # everything Pochta writes lives here

[listen]                               # "addr:port" lists; an absent key = off
smtp        = ["127.0.0.1:2525"]       # MX inbound (25 in production)
submission  = ["127.0.0.1:2587"]       # STARTTLS, AUTH required
submissions = ["127.0.0.1:2465"]       # implicit TLS, AUTH required
imap        = ["127.0.0.1:2143"]       # STARTTLS
imaps       = ["127.0.0.1:2993"]
pop3        = ["127.0.0.1:2110"]
pop3s       = ["127.0.0.1:2995"]
http        = ["127.0.0.1:8080"]       # autoconfig, autodiscover, admin
https       = ["127.0.0.1:8443"]       # the same over TLS
lmtp        = ["127.0.0.1:2424"]

[tls]
cert = "tls/cert.pem"                  # quickstart makes a self-signed pair
key  = "tls/key.pem"

[auth]
allow_plaintext_without_tls = false    # true only for local tests

[dns]
nameservers = []                       # e.g. ["127.0.0.1:5353"]; empty = system

[delivery]
smtp_port = 25                         # remote MX port; tests may change it
"""

MINIMAL = 'hostname = "mail.example.test"\n'


@pytest.fixture(scope="session")
def pem() -> dict[str, bytes]:
    """A certificate and key, plus a second certificate that does not match the key."""
    ca = trustme.CA()
    cert = ca.issue_cert("mail.example.test")
    other = ca.issue_cert("other.example.test")
    return {
        "cert": b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        "key": cert.private_key_pem.bytes(),
        "other_cert": other.cert_chain_pems[0].bytes(),
    }


@pytest.fixture
def tls_dir(tmp_path: Path, pem: dict[str, bytes]) -> Path:
    """``tmp_path/tls/{cert,key}.pem``, as the FULL example expects."""
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "cert.pem").write_bytes(pem["cert"])
    (tls / "key.pem").write_bytes(pem["key"])
    (tls / "other.pem").write_bytes(pem["other_cert"])
    return tls


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pochta.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    """The message of the ConfigError that loading ``path`` raises, checked to be one line."""
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: "), message
    return message


# ------------------------------------------------------------------- valid files


def test_full_example_parses(tmp_path: Path, tls_dir: Path) -> None:
    path = write(tmp_path, FULL)
    settings = load_settings(path, environ={})

    assert settings.source == path
    assert settings.hostname == "mail.example.test"
    assert settings.data_dir == tmp_path / "data"
    assert settings.data_dir.is_dir()
    assert list(settings.data_dir.iterdir()) == []  # the write probe was removed
    assert settings.listen == ListenSettings(
        smtp=(HostPort("127.0.0.1", 2525),),
        submission=(HostPort("127.0.0.1", 2587),),
        submissions=(HostPort("127.0.0.1", 2465),),
        imap=(HostPort("127.0.0.1", 2143),),
        imaps=(HostPort("127.0.0.1", 2993),),
        pop3=(HostPort("127.0.0.1", 2110),),
        pop3s=(HostPort("127.0.0.1", 2995),),
        http=(HostPort("127.0.0.1", 8080),),
        https=(HostPort("127.0.0.1", 8443),),
        lmtp=(HostPort("127.0.0.1", 2424),),
    )
    assert settings.tls is not None
    assert settings.tls.cert == tls_dir / "cert.pem"
    assert settings.tls.key == tls_dir / "key.pem"
    assert settings.auth == AuthSettings(allow_plaintext_without_tls=False)
    assert settings.dns == DNSSettings(nameservers=())
    assert settings.delivery == DeliverySettings(smtp_port=25)
    assert settings.limits == LimitsSettings()

    context = settings.tls_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    settings = parse_settings(MINIMAL, tmp_path / "pochta.toml")
    assert settings.data_dir == tmp_path / "data"
    assert settings.listen == ListenSettings()
    assert settings.tls is None
    assert settings.auth.allow_plaintext_without_tls is False
    assert settings.dns.nameservers == ()
    assert settings.delivery.smtp_port == 25
    assert settings.limits.message_size == 26_214_400
    assert settings.limits.recipients == 100
    assert settings.admin.users == ()  # the web admin is off
    with pytest.raises(ConfigError, match=r"\[tls\]"):
        settings.tls_context()


def test_admin_users_are_lower_case_and_unique(tmp_path: Path) -> None:
    text = MINIMAL + '[admin]\nusers = ["Root@Example.test", "root@example.test", "b@x.test"]\n'
    settings = parse_settings(text, tmp_path / "pochta.toml")
    assert settings.admin.users == ("root@example.test", "b@x.test")


def test_other_values_and_ipv6(tmp_path: Path) -> None:
    text = """
hostname = "Mail.Example.Test"
data_dir = "/ABS"

[listen]
smtp = ["[::1]:0", "127.0.0.1:0", "localhost:2525"]
lmtp = []

[auth]
allow_plaintext_without_tls = true

[dns]
nameservers = ["127.0.0.1:5353", "192.0.2.1", "::1", "[2001:DB8::1]:5353"]

[delivery]
smtp_port = 2525

[limits]
message_size = 1024
recipients = 5
smtp_connections = 3
smtp_connections_per_ip = 1
""".replace("/ABS", str(tmp_path / "abs" / "data"))
    settings = parse_settings(text, tmp_path / "pochta.toml")
    assert settings.hostname == "Mail.Example.Test"
    assert settings.data_dir == tmp_path / "abs" / "data"
    assert settings.data_dir.is_dir()
    assert settings.listen.smtp == (
        HostPort("::1", 0),
        HostPort("127.0.0.1", 0),
        HostPort("localhost", 2525),
    )
    assert settings.listen.lmtp == ()
    assert settings.auth.allow_plaintext_without_tls is True
    assert settings.dns.nameservers == (
        HostPort("127.0.0.1", 5353),
        HostPort("192.0.2.1", 53),
        HostPort("::1", 53),
        HostPort("2001:db8::1", 5353),
    )
    assert [str(ns) for ns in settings.dns.nameservers] == [
        "127.0.0.1:5353",
        "192.0.2.1:53",
        "[::1]:53",
        "[2001:db8::1]:5353",
    ]
    assert settings.delivery.smtp_port == 2525
    assert settings.limits == LimitsSettings(1024, 5, 3, 1)


def test_port_zero_may_repeat(tmp_path: Path) -> None:
    text = MINIMAL + '[listen]\nsmtp = ["127.0.0.1:0"]\nimap = ["127.0.0.1:0"]\n'
    settings = parse_settings(text, tmp_path / "pochta.toml")
    assert settings.listen.imap == (HostPort("127.0.0.1", 0),)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = parse_settings(MINIMAL, tmp_path / "pochta.toml")
    with pytest.raises(AttributeError):
        settings.hostname = "other"  # type: ignore[misc]


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "pochta.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_settings(path, environ={}).hostname == "mail.example.test"


# ----------------------------------------------------------------- path finding


def test_find_settings_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"POCHTA_CONFIG": "/etc/pochta/from-env.toml"}
    assert find_settings_path("/srv/given.toml", env) == Path("/srv/given.toml")
    assert find_settings_path(Path("rel/given.toml"), env) == tmp_path / "rel" / "given.toml"
    assert find_settings_path(None, env) == Path("/etc/pochta/from-env.toml")
    assert find_settings_path(None, {"POCHTA_CONFIG": ""}) == tmp_path / "pochta.toml"
    assert find_settings_path(None, {}) == tmp_path / "pochta.toml"
    assert find_settings_path(None, {"POCHTA_CONFIG": "x.toml"}).is_absolute()


def test_load_settings_from_env_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    env_file = write(elsewhere, MINIMAL)
    settings = load_settings(environ={"POCHTA_CONFIG": str(env_file)})
    assert settings.source == env_file
    assert settings.data_dir == elsewhere / "data"  # relative to the file, not the cwd

    monkeypatch.chdir(tmp_path)
    write(tmp_path, 'hostname = "default.example.test"\n')
    assert load_settings(environ={}).hostname == "default.example.test"
    assert load_settings(environ={}).source == tmp_path / "pochta.toml"


# ------------------------------------------------------------------- bad files

ERROR_CASES = [
    # (file text, expected fragment of the message)
    ("hostname = ", "invalid TOML"),
    ("a = " + "[" * 5000, "invalid TOML"),
    ('hostname = "x"\nhostname = "y"\n', "invalid TOML"),
    (MINIMAL + "hostnme = 1\n", "unknown key hostnme (did you mean hostname?)"),
    (MINIMAL + "[lisen]\n", "unknown section [lisen] (did you mean listen?)"),
    (MINIMAL + '[listen]\nsmpt = ["127.0.0.1:25"]\n', "unknown key [listen].smpt"),
    (MINIMAL + "[listen.extra]\n", "unknown key [listen].extra"),
    (MINIMAL + '[listen]\n"a\\nb" = 1\n', 'unknown key [listen]."a\\nb"'),
    (MINIMAL + "listen = 1\n", "[listen]: must be a table, not an integer"),
    (MINIMAL + "[[listen]]\n", "[listen]: must be a table, not an array"),
    (
        MINIMAL + '[listen]\nsmtp = "127.0.0.1:25"\n',
        '[listen].smtp: must be a list of "addr:port" strings, not a string',
    ),
    (
        MINIMAL + "[listen]\nsmtp = [25]\n",
        '[listen].smtp: must be a list of "addr:port" strings; one item is an integer',
    ),
    (
        MINIMAL + '[listen]\nsmtp = ["127.0.0.1"]\n',
        '[listen].smtp: "127.0.0.1" is not addr:port (no port given)',
    ),
    (
        MINIMAL + '[listen]\nimap = ["127.0.0.1:70000"]\n',
        '[listen].imap: "127.0.0.1:70000" is not addr:port',
    ),
    (MINIMAL + '[listen]\nimap = ["::1:143"]\n', "[listen].imap: "),
    (MINIMAL + '[listen]\nhttp = ["bad_host:80"]\n', "[listen].http: "),
    (MINIMAL + '[listen]\nimaps = ["127.0.0.1:993"]\n', "[listen].imaps: an implicit-TLS"),
    (
        MINIMAL + '[listen]\nhttps = ["127.0.0.1:443"]\n',
        "[listen].https: an implicit-TLS listener needs [tls]",
    ),
    (
        MINIMAL + '[listen]\nsmtp = ["127.0.0.1:25"]\nlmtp = ["127.0.0.1:25"]\n',
        "[listen].lmtp: 127.0.0.1:25 is also in [listen].smtp",
    ),
    (
        MINIMAL + '[listen]\nimap = ["[::1]:143", "[0::0:1]:143"]\n',
        "[listen].imap: [::1]:143 appears twice",
    ),
    ("", "hostname: missing (required)"),
    ("hostname = 42\n", "hostname: must be a string, not an integer"),
    ('hostname = "bad_name.example"\n', 'hostname: "bad_name.example" is not a valid host name'),
    ('hostname = "1.2.3.4"\n', 'hostname: "1.2.3.4" is an IP address'),
    ('hostname = "-x.example"\n', "hostname: "),
    ('hostname = "a\\nb"\n', 'hostname: "a\\nb" is not'),
    ('hostname = "' + "a" * 300 + '"\n', "hostname: "),
    (MINIMAL + "data_dir = 1\n", "data_dir: must be a string, not an integer"),
    (MINIMAL + 'data_dir = ""\n', "data_dir: must not be empty"),
    (MINIMAL + "[tls]\n", "[tls].cert: missing (required)"),
    (MINIMAL + '[tls]\ncert = "tls/cert.pem"\n', "[tls].key: missing (required)"),
    (MINIMAL + '[tls]\ncert = "c"\nkey = "k"\nca = "x"\n', "unknown key [tls].ca"),
    (MINIMAL + "[tls]\ncert = 1\nkey = 2\n", "[tls].cert: must be a string"),
    (
        MINIMAL + "[auth]\nallow_plaintext_without_tls = 1\n",
        "[auth].allow_plaintext_without_tls: must be true or false, not an integer",
    ),
    (MINIMAL + "[auth]\nallow_plain = true\n", "unknown key [auth].allow_plain"),
    (MINIMAL + '[dns]\nnameservers = "127.0.0.1"\n', "[dns].nameservers: must be a list"),
    (
        MINIMAL + '[dns]\nnameservers = ["ns.example.test"]\n',
        '[dns].nameservers: "ns.example.test" is not an IP',
    ),
    (MINIMAL + '[dns]\nnameservers = ["127.0.0.1:0"]\n', "[dns].nameservers: "),
    (MINIMAL + "[delivery]\nsmtp_port = 0\n", "[delivery].smtp_port: 0 is out of range 1..65535"),
    (MINIMAL + "[delivery]\nsmtp_port = 65536\n", "[delivery].smtp_port: "),
    (MINIMAL + "[delivery]\nsmtp_port = true\n", "[delivery].smtp_port: must be an integer"),
    (MINIMAL + '[delivery]\nsmtp_port = "25"\n', "[delivery].smtp_port: must be an integer"),
    (MINIMAL + "[limits]\nrecipients = 0\n", "[limits].recipients: 0 is out of range"),
    (MINIMAL + "[limits]\nmessage_size = -1\n", "[limits].message_size: "),
    (MINIMAL + "[limits]\nmessage_size = 1.5\n", "[limits].message_size: must be an integer"),
    (MINIMAL + "[limits]\nsmtp_connections = 1979-05-27\n", "must be an integer, not a date"),
    (MINIMAL + "[limits]\nconnections = 1\n", "unknown key [limits].connections"),
    (MINIMAL + '[admin]\nusers = "a@example.test"\n', "[admin].users: must be a list"),
    (MINIMAL + '[admin]\nusers = ["nobody"]\n', '[admin].users: "nobody" is not a mail address'),
    (MINIMAL + '[admin]\nusers = ["a b@x.test"]\n', "[admin].users: "),
    (MINIMAL + '[admin]\nusers = ["a@-x"]\n', "[admin].users: "),
    (MINIMAL + "[admin]\npassword = 1\n", "unknown key [admin].password"),
]


@pytest.mark.parametrize(("text", "fragment"), ERROR_CASES)
def test_bad_file_gives_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    message = error_of(write(tmp_path, text))
    assert fragment in message
    assert not (tmp_path / "data").exists()  # text errors never touch the filesystem


def test_error_is_user_facing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings("", tmp_path / "pochta.toml")
    assert isinstance(info.value, UserFacingError)
    assert info.value.key == "hostname"
    assert info.value.source == tmp_path / "pochta.toml"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert error_of(path) == f"{path}: no such file"


def test_missing_default_file_hints_at_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no such file; pass --config FILE") as info:
        load_settings(environ={})
    assert str(info.value).startswith(f"{tmp_path / 'pochta.toml'}: ")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "is a directory" in error_of(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pochta.toml"
    path.write_bytes(b'hostname = "\xff"\n')
    assert "is not UTF-8" in error_of(path)


def test_tls_file_missing(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n')
    message = error_of(path)
    assert message == f"{path}: [tls].cert: {tmp_path / 'tls' / 'cert.pem'}: no such file"


def test_tls_key_missing(tmp_path: Path, tls_dir: Path) -> None:
    path = write(tmp_path, MINIMAL + '[tls]\ncert = "tls/cert.pem"\nkey = "tls/none.pem"\n')
    assert f"[tls].key: {tls_dir / 'none.pem'}: no such file" in error_of(path)


def test_tls_cert_is_directory(tmp_path: Path, tls_dir: Path) -> None:
    path = write(tmp_path, MINIMAL + f'[tls]\ncert = "{tls_dir}"\nkey = "tls/key.pem"\n')
    assert f"[tls].cert: {tls_dir}: is a directory" in error_of(path)


def test_tls_pair_mismatch(tmp_path: Path, tls_dir: Path) -> None:
    path = write(tmp_path, MINIMAL + '[tls]\ncert = "tls/other.pem"\nkey = "tls/key.pem"\n')
    message = error_of(path)
    assert "[tls].cert: " in message
    assert "do not load as a certificate chain" in message


def test_tls_garbage(tmp_path: Path, tls_dir: Path) -> None:
    (tls_dir / "cert.pem").write_text("not a certificate\n")
    path = write(tmp_path, FULL)
    assert "[tls].cert: " in error_of(path)


def test_tls_encrypted_key(tmp_path: Path, tls_dir: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((tls_dir / "key.pem").read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tls_dir / "key.pem").write_bytes(encrypted)
    assert "[tls].key: " in error_of(write(tmp_path, FULL))


def test_tls_context_reports_files_gone(tmp_path: Path, tls_dir: Path) -> None:
    settings = load_settings(write(tmp_path, FULL), environ={})
    (tls_dir / "key.pem").unlink()
    with pytest.raises(ConfigError, match=r"\[tls\]\.cert: "):
        settings.tls_context()


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    message = error_of(write(tmp_path, MINIMAL))
    assert (
        message == f"{tmp_path / 'pochta.toml'}: data_dir: {tmp_path / 'data'} is not a directory"
    )


def test_data_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    message = error_of(write(tmp_path, MINIMAL + 'data_dir = "file/data"\n'))
    assert f"data_dir: {tmp_path / 'file' / 'data'} cannot be created" in message


def test_data_dir_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom chmod proves nothing: make the probe fail instead.
    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    message = error_of(write(tmp_path, MINIMAL + 'data_dir = "out"\n'))
    assert message == f"{tmp_path / 'pochta.toml'}: data_dir: {tmp_path / 'out'} is not writable"


def test_message_stays_one_line_with_odd_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings("", tmp_path / "odd\nname\u2028.toml")
    assert len(str(info.value).splitlines()) == 1
    assert "odd\\nname\\u2028.toml" in str(info.value)


# ------------------------------------------------------------------ host:port


@pytest.mark.parametrize(
    ("text", "default_port", "expected"),
    [
        ("127.0.0.1:25", None, HostPort("127.0.0.1", 25)),
        ("127.0.0.1", 53, HostPort("127.0.0.1", 53)),
        ("0.0.0.0:0", None, HostPort("0.0.0.0", 0)),
        ("[::1]:25", None, HostPort("::1", 25)),
        ("[::1]", 53, HostPort("::1", 53)),
        ("::1", 53, HostPort("::1", 53)),
        ("[::]:993", None, HostPort("::", 993)),
        ("[2001:DB8:0::1]:25", None, HostPort("2001:db8::1", 25)),
        ("[fe80::1%eth0]:25", None, HostPort("fe80::1%eth0", 25)),
        ("Mail.Example.TEST:587", None, HostPort("mail.example.test", 587)),
        ("localhost:65535", None, HostPort("localhost", 65535)),
        ("localhost:00025", None, HostPort("localhost", 25)),
    ],
)
def test_parse_hostport(text: str, default_port: int | None, expected: HostPort) -> None:
    assert parse_hostport(text, default_port) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":25",
        "127.0.0.1:65536",
        "127.0.0.1:+25",
        "127.0.0.1: 25",
        "127.0.0.1:٣",
        " 127.0.0.1:25",
        "[1.2.3.4]:25",
        "[::1]25",
        "[::1:25",
        "::1:25",
        "1.2.3.999:25",
        "bad_host:25",
        "-bad.example:25",
        "a..b:25",
        "host:25:26",
        "[fe80::1%]:25",
        "münchen.example:25",
    ],
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)


def test_hostport_str() -> None:
    assert str(HostPort("127.0.0.1", 25)) == "127.0.0.1:25"
    assert str(HostPort("::1", 25)) == "[::1]:25"
    assert str(HostPort("mail.example.test", 0)) == "mail.example.test:0"


def test_hostport_checks_port() -> None:
    with pytest.raises(ValueError):
        HostPort("localhost", 65536)
    with pytest.raises(ValueError):
        HostPort("localhost", -1)
    with pytest.raises(ValueError):
        parse_hostport("localhost", default_port=70000)


ADDRESS_ALPHABET = "0123456789abcdefABCDEFxyz.:[]%-_ "


@given(
    st.one_of(st.text(), st.text(alphabet=ADDRESS_ALPHABET, max_size=40)),
    st.one_of(st.none(), st.integers(0, 65535)),
)
def test_parse_hostport_only_raises_valueerror_and_round_trips(
    text: str, default_port: int | None
) -> None:
    try:
        parsed = parse_hostport(text, default_port)
    except ValueError:
        return
    assert parse_hostport(str(parsed)) == parsed


@given(st.ip_addresses(), st.integers(0, 65535))
def test_ip_hostport_round_trips(address: object, port: int) -> None:
    hostport = HostPort(str(address), port)
    assert parse_hostport(str(hostport)) == hostport


def test_delivery_queue_settings(tmp_path: Path) -> None:
    from pochta.config import ConfigError, parse_settings

    base = 'hostname = "mail.example.test"\ndata_dir = "data"\n[delivery]\n'
    good = parse_settings(
        base + "retry_intervals = [10, 20]\nmax_age = 3600\ndelay_notice = 0\nper_domain = 2\n",
        tmp_path / "pochta.toml",
    )
    assert good.delivery.retry_intervals == (10, 20)
    assert good.delivery.max_age == 3600 and good.delivery.delay_notice == 0
    assert good.delivery.per_domain == 2 and good.delivery.concurrency == 50
    for bad, key in (
        ("retry_intervals = []", "[delivery].retry_intervals"),
        ('retry_intervals = [1, "x"]', "[delivery].retry_intervals"),
        ("max_age = 0", "[delivery].max_age"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_settings(base + bad + "\n", tmp_path / "pochta.toml")
        assert key in str(info.value) and "\n" not in str(info.value)
