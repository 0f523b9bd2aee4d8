"""Errors of the accounts database.

Each is a ``UserFacingError``: its message is one line naming the domain,
user or alias at fault ("domain example.test already exists", "no such user
bob@example.test"), so the CLI prints it as it is.
"""

from __future__ import annotations

from pochta.errors import UserFacingError

__all__ = [
    "AccountsError",
    "AliasExists",
    "AliasLoop",
    "AliasNotFound",
    "DomainExists",
    "DomainNotEmpty",
    "DomainNotFound",
    "UserExists",
    "UserNotFound",
]


class AccountsError(UserFacingError):
    """An accounts operation that cannot be done; the message says why."""


class DomainExists(AccountsError):
    """The domain is already local."""


class DomainNotFound(AccountsError):
    """The domain is not one of ours."""


class DomainNotEmpty(AccountsError):
    """The domain still has users or aliases."""


class UserExists(AccountsError):
    """A user with that address exists already."""


class UserNotFound(AccountsError):
    """No user has that address."""


class AliasExists(AccountsError):
    """That alias row (or an alias with a user's address) exists already."""


class AliasNotFound(AccountsError):
    """No alias row matches."""


class AliasLoop(AccountsError):
    """The alias would (directly or through other aliases) point to itself."""
