"""IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) server.

Modules: :mod:`~pochta.imap.types` (the typed command tree),
:mod:`~pochta.imap.parser` (bytes in, command out, and the literal protocol),
:mod:`~pochta.imap.search` (SEARCH evaluation), :mod:`~pochta.imap.fetch`
(response rendering), and the session and connection on top of them.
"""
