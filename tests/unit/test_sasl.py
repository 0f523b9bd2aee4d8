"""SASL mechanisms: RFC examples, failure cases and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.sasl import (
    Challenge,
    CheckPassword,
    Login,
    Plain,
    SaslError,
    ScramCredentials,
    ScramSha256,
    Verified,
    b64decode,
    client_final_for_tests,
    scram_credentials,
)

# RFC 7677 §3: user "user", password "pencil".
RFC_SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_lookup(name: str) -> ScramCredentials | None:
    return scram_credentials("pencil", salt=RFC_SALT) if name == "user" else None


def test_scram_rfc7677_example() -> None:
    mech = ScramSha256(rfc_lookup, server_nonce=RFC_SERVER_NONCE)
    assert mech.start(RFC_CLIENT_FIRST) == Challenge(RFC_SERVER_FIRST)
    assert mech.step(RFC_CLIENT_FINAL) == Verified("user", RFC_SERVER_FINAL)


def test_scram_helper_client_matches_rfc() -> None:
    final = client_final_for_tests(
        "pencil", RFC_CLIENT_FIRST.decode()[3:], RFC_SERVER_FIRST.decode()
    )
    assert final.encode() == RFC_CLIENT_FINAL


def test_scram_wrong_password_and_unknown_user_look_alike() -> None:
    for user, password in (("user", "wrong"), ("ghost", "pencil")):
        mech = ScramSha256(rfc_lookup)
        first = f"n=user{'' if user == 'user' else 'x'},r=abc".replace("userx", user)
        challenge = mech.start(f"n,,{first}".encode())
        assert isinstance(challenge, Challenge)
        final = client_final_for_tests(password, first, challenge.data.decode())
        with pytest.raises(SaslError):
            mech.step(final.encode())


def test_scram_refuses_channel_binding_and_tampering() -> None:
    with pytest.raises(SaslError):
        ScramSha256(rfc_lookup).start(b"p=tls-unique,,n=user,r=x")
    mech = ScramSha256(rfc_lookup, server_nonce=RFC_SERVER_NONCE)
    mech.start(RFC_CLIENT_FIRST)
    with pytest.raises(SaslError):
        mech.step(RFC_CLIENT_FINAL.replace(b"r=rOpr", b"r=XOpr"))


def test_credentials_round_trip() -> None:
    creds = scram_credentials("secret")
    assert ScramCredentials.load(creds.dump()) == creds


def test_plain() -> None:
    assert Plain().start(b"\0alice@example.test\0pw") == CheckPassword(
        "alice@example.test", "pw", ""
    )
    assert Plain().start(None) == Challenge(b"")
    assert Plain().step(b"admin\0alice\0pw") == CheckPassword("alice", "pw", "admin")
    for bad in (b"", b"alice\0pw", b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d", b"\0\xff\0pw"):
        with pytest.raises(SaslError):
            Plain().step(bad)


def test_login() -> None:
    mech = Login()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b"alice") == Challenge(b"Password:")
    assert mech.step(b"pw") == CheckPassword("alice", "pw", "")


@given(st.lists(st.binary(max_size=120), min_size=1, max_size=3))
def test_mechanisms_only_raise_sasl_error(messages: list[bytes]) -> None:
    for make in (Plain, Login, lambda: ScramSha256(rfc_lookup)):
        mech = make()
        try:
            mech.start(messages[0])
            for message in messages[1:]:
                mech.step(message)
        except SaslError:
            pass
