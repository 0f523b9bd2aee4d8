"""Accounts: local domains, users, aliases, password hashes, address parsing.

``address`` parses and canonicalizes mail addresses (RFC 5321 §4.1.2);
``registry`` keeps domains, users and aliases in one SQLite file and answers
the two questions the protocol servers ask: "who receives mail for this
address?" (``Accounts.resolve``) and "is this the right password?"
(``Accounts.authenticate``). Protocol code imports from here, never from the
submodules, and never touches the SQL.
"""

from pochta.accounts.address import (
    Address,
    AddressError,
    parse_address,
    parse_domain,
    split_subaddress,
)
from pochta.accounts.errors import (
    AccountsError,
    AliasExists,
    AliasLoop,
    AliasNotFound,
    DomainExists,
    DomainNotEmpty,
    DomainNotFound,
    UserExists,
    UserNotFound,
)
from pochta.accounts.passwords import generate_password
from pochta.accounts.registry import MAX_ALIAS_DEPTH, Accounts, Alias, Resolution, User

__all__ = [
    "MAX_ALIAS_DEPTH",
    "Accounts",
    "AccountsError",
    "Address",
    "AddressError",
    "Alias",
    "AliasExists",
    "AliasLoop",
    "AliasNotFound",
    "DomainExists",
    "DomainNotEmpty",
    "DomainNotFound",
    "Resolution",
    "User",
    "UserExists",
    "UserNotFound",
    "generate_password",
    "parse_address",
    "parse_domain",
    "split_subaddress",
]
