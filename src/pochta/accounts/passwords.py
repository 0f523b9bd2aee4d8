"""Password hashing and generation.

Design note
-----------
Passwords are stored only as argon2id hashes (argon2-cffi ``PasswordHasher``
with its recommended parameters, RFC 9106 §4). Hashing and verifying take
tens of milliseconds of CPU on purpose: callers on an event loop run them in a
worker thread. Tests pass a cheap hasher instead; production code never does.

A password must be non-empty and contain no NUL: SASL PLAIN separates its
fields with NUL (RFC 4616 §2), so such a password could never be typed in.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher

from pochta.accounts.errors import AccountsError

__all__ = ["PASSWORD_ALPHABET", "check_password_text", "default_hasher", "generate_password"]

#: Letters and digits without look-alikes (0/O/o, 1/l/I), safe to read aloud
#: and to paste into any client.
PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
#: 24 characters of a 56-letter alphabet: about 139 bits.
GENERATED_LENGTH = 24


def default_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's recommended (RFC 9106) parameters."""
    return PasswordHasher()


def generate_password() -> str:
    """A random password from ``secrets``: 24 characters, unambiguous alphabet."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(GENERATED_LENGTH))


def check_password_text(password: str) -> None:
    """Refuse passwords nobody could log in with (empty, or with NUL)."""
    if not password:
        raise AccountsError("password must not be empty")
    if "\0" in password:
        raise AccountsError("password must not contain NUL (RFC 4616 §2)")
