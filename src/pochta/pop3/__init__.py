"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595) and SASL (RFC 5034): PLAIN, SCRAM.

The modules, in the order a command meets them:

* ``session``: the asyncio protocol of one connection (framing, TLS,
  timeouts, flow control, dispatch);
* ``parser``: pure bytes-in, command-out parsing;
* ``commands``: the states and the table of commands allowed in each;
* ``auth`` and ``transaction``: the handlers, one small function each;
* ``maildrop``: the INBOX snapshot, UIDL, dot-stuffing, UPDATE;
* ``replies``: status lines, response codes and limits;
* ``service``: what all sessions share (store, accounts, locks, limits).

The server wires ``Pop3Service.factory`` to ``[listen].pop3`` and
``[listen].pop3s``.
"""

from pochta.pop3.service import Pop3Service
from pochta.pop3.session import Pop3Session

__all__ = ["Pop3Service", "Pop3Session"]
