"""The root of errors that the ``pochta`` command reports as one line.

Any exception deriving from ``UserFacingError`` has a message a user can act
on (it names the key, file, address or mailbox at fault); the CLI prints it
alone, never a traceback.
"""


class UserFacingError(Exception):
    """An error whose ``str()`` is a complete, one-line explanation."""
