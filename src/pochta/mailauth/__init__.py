"""Sender authentication: SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), DMARC
(RFC 7489), ARC (RFC 8617) and the ``Authentication-Results`` header (RFC 8601).

Every check takes a :class:`pochta.dns.Resolver` and never blocks the event
loop on DNS; CPU work (RSA/Ed25519) runs in a worker thread.
"""
