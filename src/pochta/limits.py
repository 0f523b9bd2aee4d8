"""Limits shared by every protocol server: open connections, events per hour.

Each protocol answers a refusal in its own words (SMTP ``421 4.7.0``, POP3
``-ERR [SYS/TEMP]``, IMAP ``* BYE``); the counting is the same, so it lives
here once.
"""

from __future__ import annotations

import time
from collections import Counter, deque


class ConnectionLimiter:
    """Counts open sessions overall and per client address.

    ``acquire`` says whether one more session may start; every successful
    ``acquire`` must be paired with one ``release``.
    """

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.open = 0
        self._by_ip: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self.open >= self.total or self._by_ip[ip] >= self.per_ip:
            return False
        self.open += 1
        self._by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open -= 1
        self._by_ip[ip] -= 1
        if self._by_ip[ip] <= 0:
            del self._by_ip[ip]


class HourlyLimit:
    """Counts events per key over the last hour (a sliding window).

    ``take(key, n)`` records ``n`` events and says whether the key stays
    within ``limit``; refused events are not recorded.
    """

    WINDOW = 3600.0

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._events: dict[str, deque[tuple[float, int]]] = {}
        self._counts: Counter[str] = Counter()

    def take(self, key: str, n: int = 1, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        events = self._events.setdefault(key, deque())
        while events and events[0][0] <= now - self.WINDOW:
            self._counts[key] -= events.popleft()[1]
        if self._counts[key] + n > self.limit:
            return False
        events.append((now, n))
        self._counts[key] += n
        return True
