"""SASL mechanisms shared by SMTP submission, IMAP and POP3: PLAIN, LOGIN, SCRAM-SHA-256.

Design note
-----------
A mechanism is a small state machine with no I/O: ``start(initial)`` and
``step(response)`` take the client's decoded bytes and return what the
protocol does next:

* ``Challenge(data)``: send it (SMTP ``334 <base64>``, IMAP ``+ <base64>``,
  POP3 ``+ <base64>``) and feed the answer to ``step``;
* ``CheckPassword(username, password, authzid)``: PLAIN and LOGIN end here;
  the protocol verifies the password (argon2, off the loop, throttled) and
  answers success or failure itself;
* ``Verified(username, final)``: SCRAM verified the proof against stored keys
  (no password ever reaches us); ``final`` is the server-final-message the
  client must see (RFC 4954 §4 / RFC 5802 §3: as a last challenge, or as
  additional data with success).

Anything malformed raises ``SaslError``: the protocol answers its "bad
exchange" reply (SMTP 501 5.5.2 / 535 5.7.8, IMAP NO/BAD, POP3 -ERR). A client
cancels with ``*`` (RFC 4954 §4); protocols check that before calling ``step``.

SCRAM (RFC 5802, SHA-256 per RFC 7677): stored per user are the salt, the
iteration count, StoredKey and ServerKey, made when the password is set
(``scram_credentials``). An unknown user gets a made-up exchange that fails
at the end, so SCRAM does not reveal which users exist (RFC 5802 §5.1 warns).
Channel binding (-PLUS) is not offered; a client asking for it is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

#: RFC 7677 §4: at least 4096 iterations.
SCRAM_ITERATIONS = 4096


class SaslError(Exception):
    """The exchange is malformed or failed; the message is for logs, not clients."""


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class CheckPassword:
    username: str
    password: str
    authzid: str  # "" when none was given (RFC 4616 §2)


@dataclass(frozen=True, slots=True)
class Verified:
    username: str
    final: bytes  # the server-final-message (RFC 5802 §7)


Step = Challenge | CheckPassword | Verified


def b64decode(text: bytes | str) -> bytes:
    """Strict base64 (RFC 4648 §4) as SASL requires; SaslError otherwise."""
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise SaslError("invalid base64") from exc


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaslError(f"{what} is not UTF-8") from exc


class Plain:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` in one message."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")  # RFC 4616 §2: the client then sends the message
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SaslError("PLAIN message needs exactly two NUL separators")
        authzid, authcid, password = (_utf8(p, "PLAIN field") for p in parts)
        if not authcid or not password:
            raise SaslError("empty user name or password")
        return CheckPassword(authcid, password, authzid)


class Login:
    """The LOGIN mechanism (draft-murchison-sasl-login): user name, then password."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial is not None:
            return self.step(initial)
        return Challenge(b"Username:")

    def step(self, response: bytes) -> Step:
        if self._username is None:
            self._username = _utf8(response, "user name")
            if not self._username:
                raise SaslError("empty user name")
            return Challenge(b"Password:")
        password = _utf8(response, "password")
        if not password:
            raise SaslError("empty password")
        return CheckPassword(self._username, password, "")


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def dump(self) -> str:
        """One text field for the accounts database."""
        return "$".join(
            [
                "SCRAM-SHA-256",
                str(self.iterations),
                b64encode(self.salt),
                b64encode(self.stored_key),
                b64encode(self.server_key),
            ]
        )

    @classmethod
    def load(cls, text: str) -> ScramCredentials:
        name, iterations, salt, stored, server = text.split("$")
        if name != "SCRAM-SHA-256":
            raise ValueError(f"not SCRAM-SHA-256 credentials: {name}")
        return cls(b64decode(salt), int(iterations), b64decode(stored), b64decode(server))


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def saslprep(text: str) -> str:
    """A close approximation of SASLprep (RFC 4013): NFKC, non-ASCII spaces mapped.

    Full stringprep tables are not in the standard library; passwords that
    are plain ASCII or already normalised are unaffected.
    """
    mapped = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in text)
    mapped = "".join(ch for ch in mapped if ch not in "\u00ad\u200b\u2060\ufeff")
    return unicodedata.normalize("NFKC", mapped)


def scram_credentials(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> ScramCredentials:
    """What to store when a password is set (RFC 5802 §3)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    out = []
    for item in message.split(","):
        if len(item) < 2 or item[1] != "=":
            raise SaslError(f"malformed {what} attribute {item[:20]!r}")
        out.append((item[0], item[2:]))
    return out


def _saslname(value: str) -> str:
    # RFC 5802 §5.1: "=2C" is ",", "=3D" is "="; any other "=" is an error.
    out = value.replace("=2C", ",").replace("=3D", "=")
    if "=" in value.replace("=2C", "").replace("=3D", ""):
        raise SaslError("bad escape in user name")
    return out


class ScramSha256:
    """RFC 5802 server side with SHA-256 (RFC 7677)."""

    name = "SCRAM-SHA-256"

    def __init__(
        self,
        lookup: Callable[[str], ScramCredentials | None],
        *,
        server_nonce: str | None = None,
    ) -> None:
        self._lookup = lookup
        self._server_nonce = server_nonce or secrets.token_urlsafe(18)
        self._state = "first"
        self._username = ""
        self._credentials: ScramCredentials | None = None
        self._known = False
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")  # RFC 4954 §4: empty challenge, client sends first
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        text = _utf8(response, "SCRAM message")
        if self._state == "first":
            return self._client_first(text)
        if self._state == "final":
            return self._client_final(text)
        raise SaslError("SCRAM exchange already finished")

    def _client_first(self, text: str) -> Step:
        # gs2-header = gs2-cbind-flag "," [ authzid ] ","
        flag, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if flag.startswith("p="):
            raise SaslError("channel binding requested but not offered")
        if flag not in ("n", "y"):
            raise SaslError("bad gs2 header")
        if authzid and not authzid.startswith("a="):
            raise SaslError("bad authzid")
        attrs = _attributes(bare, "client-first")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            raise SaslError("client-first needs n= and r=")
        if attrs[0][1] == "" or attrs[1][1] == "":
            raise SaslError("empty user name or nonce")
        if authzid and _saslname(authzid[2:]) != _saslname(attrs[0][1]):
            raise SaslError("authorization identity differs from the user")
        self._gs2_header = f"{flag},{authzid},"
        self._username = _saslname(attrs[0][1])
        credentials = self._lookup(self._username)
        self._known = credentials is not None
        # An unknown user gets credentials nobody can match (RFC 5802 §5.1).
        self._credentials = credentials or scram_credentials(
            secrets.token_urlsafe(24), salt=hashlib.sha256(self._username.encode()).digest()[:16]
        )
        self._nonce = attrs[1][1] + self._server_nonce
        self._client_first_bare = bare
        self._server_first = (
            f"r={self._nonce},s={b64encode(self._credentials.salt)},"
            f"i={self._credentials.iterations}"
        )
        self._state = "final"
        return Challenge(self._server_first.encode())

    def _client_final(self, text: str) -> Step:
        self._state = "done"
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise SaslError("client-final without proof")
        attrs = dict(_attributes(without_proof, "client-final"))
        expected_binding = b64encode(self._gs2_header.encode())
        if attrs.get("c") != expected_binding:
            raise SaslError("channel binding data mismatch")
        if attrs.get("r") != self._nonce:
            raise SaslError("nonce mismatch")
        assert self._credentials is not None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_signature = _hmac(self._credentials.stored_key, auth_message)
        proof = b64decode(proof_b64)
        if len(proof) != len(client_signature):
            raise SaslError("bad proof length")
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._credentials.stored_key)
        if not (ok and self._known):
            raise SaslError("authentication failed")
        server_signature = _hmac(self._credentials.server_key, auth_message)
        return Verified(self._username, f"v={b64encode(server_signature)}".encode())


def client_final_for_tests(
    password: str, client_first_bare: str, server_first: str, gs2_header: str = "n,,"
) -> str:
    """A SCRAM client's final message (for tests and ``pochta discover``)."""
    attrs = dict(_attributes(server_first, "server-first"))
    salted = hashlib.pbkdf2_hmac(
        "sha256", saslprep(password).encode(), b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = _hmac(salted, b"Client Key")
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c={b64encode(gs2_header.encode())},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = _hmac(stored, auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={b64encode(proof)}"
