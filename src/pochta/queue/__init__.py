"""The outbound queue: durable spool, retries with backoff, DSN bounces.

See ``runner.py`` for the design note on retries and bounces.
"""

from pochta.queue.dsn import build_dsn
from pochta.queue.outcome import Outcome
from pochta.queue.spool import QueuedMessage, QueuedRecipient, Spool

__all__ = ["Outcome", "QueuedMessage", "QueuedRecipient", "Spool", "build_dsn"]
