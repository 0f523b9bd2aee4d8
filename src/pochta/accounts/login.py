"""Password logins for every protocol: argon2 off the loop, throttling, a short cache.

Design note
-----------
Purpose
    POP3 today, IMAP and submission later, all check a password the same way:
    ``await guard.authenticate(accounts, address, password, client_ip)``. One
    ``LoginGuard`` per server process is shared by every listener, so an
    attacker cannot reset its counters by switching protocol.

Throttling (Dovecot's ``auth_penalty``, fail2ban's idea, inside the server)
    Failed attempts are counted per client IP (IPv6 per /64, since one host
    commonly owns a whole /64) and per account over a sliding window
    (``LoginPolicy.window``, 10 minutes). With fewer than
    ``free_failures`` (5) recorded on either key, an attempt runs at once.
    From then on each attempt first waits ``base_delay`` doubled per further
    failure (capped at ``max_delay``), so guessing slows down sharply but a
    user who mistyped still gets in. At ``refuse_after`` (10) failures the
    attempt is refused without checking the password at all:
    ``TooManyFailures`` is raised, with ``retry_after`` seconds until the
    oldest counted failure leaves the window. That result is distinct from a
    wrong password (``None``) so protocols can answer "try later" rather than
    "bad password". Only failures count, never attempts in flight: a client
    opening several connections at once (Thunderbird opens up to five) must
    not slow itself down. A burst of parallel guesses is still bounded:
    argon2 runs at most ``max_parallel`` at a time, and each attempt checks
    the count again when its turn comes, so once the allowance is used the
    rest of the burst is refused without hashing. A success clears the account's failures;
    the IP's only age out, so an attacker who owns one account cannot launder
    its guesses against other accounts through its own logins. The trade-off
    of any per-account limit stands: someone failing on purpose can make an
    account wait; refusals last at most ``window`` seconds.

Verification cache (Dovecot's auth cache)
    argon2 costs tens of milliseconds of CPU on purpose. Clients that log in
    every few minutes (POP3 polling, IMAP clients opening several
    connections) would pay it each time. A successful verification is
    remembered for ``cache_ttl`` (5 min), keyed by HMAC-SHA256 under a random
    per-process key of (canonical address, password): the password is never
    stored, and the key cannot be tested offline because the HMAC key exists
    only in this process's memory. Each entry records the account's
    ``Accounts.credential_stamp`` (a digest of its password hash); a hit is
    honoured only if the stamp is unchanged, so ``pochta user passwd`` or a
    deleted user takes effect at the next login. A cache hit still passes the
    throttle first (no oracle for a locked-out account) and still waits any
    delay due (no timing oracle).

Bounds and failure behaviour
    Both tables are LRU-bounded (``max_tracked`` keys, ``cache_size``
    entries): memory stays fixed under a spray of addresses. At most
    ``max_parallel`` argon2 verifications run at once (each takes the hash's
    memory cost, 64 MiB by default), so a burst of logins cannot exhaust
    memory or starve the sessions already logged in. Errors of the
    accounts database propagate (callers answer with a temporary failure).
    Everything here runs on the event loop thread; only argon2 leaves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pochta.accounts.address import AddressError, parse_address
from pochta.accounts.registry import Accounts, User

__all__ = ["LoginGuard", "LoginPolicy", "TooManyFailures"]


class TooManyFailures(Exception):
    """Too many failed logins from this client or for this account; try later.

    Raised instead of checking the password; ``retry_after`` is in seconds.
    """

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """Limits of ``LoginGuard``; the defaults suit a public server."""

    window: float = 600.0
    """Seconds over which failures are counted (10 minutes)."""
    free_failures: int = 5
    """Failures on a key before attempts start to be delayed."""
    refuse_after: int = 10
    """Failures on a key at which attempts are refused outright."""
    base_delay: float = 1.0
    """Delay of the first delayed attempt, doubled for each further failure."""
    max_delay: float = 15.0
    """Longest delay before one attempt."""
    max_tracked: int = 10_000
    """Client IPs and accounts whose failures are remembered (LRU)."""
    cache_ttl: float = 300.0
    """Seconds a successful verification is remembered."""
    cache_size: int = 10_000
    """Remembered verifications (LRU)."""
    max_parallel: int = 2
    """argon2 verifications running at once; more wait their turn. Each one
    takes the hash's memory cost (64 MiB with the default parameters), so
    this bounds the memory a burst of logins can take, and leaves CPU for
    the sessions already logged in."""


@dataclass(slots=True)
class _Cached:
    user: User
    stamp: str
    expires: float


def _ip_key(client_ip: str) -> str:
    """The throttle key of a client: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(client_ip.partition("%")[0])
    except ValueError:
        return "ip:" + client_ip[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return "ip:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "ip:" + str(ip.ipv4_mapped)
    return "ip:" + str(ip)


class LoginGuard:
    """Checks passwords with throttling and a verification cache; see the module note."""

    def __init__(
        self,
        policy: LoginPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy if policy is not None else LoginPolicy()
        self._clock = clock
        self._sleep = sleep
        self._hmac_key = secrets.token_bytes(32)
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[User | None]] = {}
        self._argon2_slots: asyncio.Semaphore | None = None
        #: argon2 verifications run so far (tests and metrics).
        self.verifications = 0

    async def authenticate(
        self, accounts: Accounts, address: str, password: str, client_ip: str
    ) -> User | None:
        """The user if ``password`` is right, None if not.

        Raises ``TooManyFailures`` when this client or account is locked out
        (the password is then not checked at all).
        """
        try:
            canonical: str | None = parse_address(address).key
        except AddressError:
            canonical = None
        keys = (_ip_key(client_ip), "user:" + (canonical or address.lower()[:320]))
        failures = self._check(keys)
        policy = self.policy
        if failures >= policy.free_failures:
            steps = failures - policy.free_failures
            await self._sleep(min(policy.base_delay * 2**steps, policy.max_delay))
        user = await self._verify(accounts, canonical, address, password, keys)
        if user is None:
            for key in keys:
                self._record_failure(key)
        else:
            self._failures.pop(keys[1], None)
        return user

    def _check(self, keys: tuple[str, ...]) -> int:
        """The failures counted on the worse key; TooManyFailures past the limit."""
        now = self._clock()
        failures = max(self._count(key, now) for key in keys)
        if failures >= self.policy.refuse_after:
            raise TooManyFailures(self._retry_after(keys, now))
        return failures

    def failures(self, key: str) -> int:
        """Failures counted now on a key (``"ip:..."`` or ``"user:..."``); for tests."""
        return self._count(key, self._clock())

    # --- verification -----------------------------------------------------------

    async def _verify(
        self,
        accounts: Accounts,
        canonical: str | None,
        address: str,
        password: str,
        keys: tuple[str, ...],
    ) -> User | None:
        digest = None
        if canonical is not None:
            message = f"{canonical}\0{password}".encode("utf-8", "surrogatepass")
            digest = hmac.new(self._hmac_key, message, hashlib.sha256).digest()
            cached = self._cache.get(digest)
            if cached is not None:
                if cached.expires > self._clock() and (
                    accounts.credential_stamp(canonical) == cached.stamp
                ):
                    self._cache.move_to_end(digest)
                    return cached.user
                del self._cache[digest]
        # Several connections of one client log in at once (Thunderbird opens
        # up to five): the first runs argon2, the others wait for its answer
        # instead of each running it (single flight).
        if digest is not None:
            pending = self._pending.get(digest)
            if pending is not None:
                return await asyncio.shield(pending)
            future: asyncio.Future[User | None] = asyncio.get_running_loop().create_future()
            self._pending[digest] = future
            try:
                user = await self._verify_once(accounts, canonical, address, password, keys, digest)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody else must
                raise
            else:
                future.set_result(user)
                return user
            finally:
                del self._pending[digest]
        return await self._verify_once(accounts, canonical, address, password, keys, None)

    async def _verify_once(
        self,
        accounts: Accounts,
        canonical: str | None,
        address: str,
        password: str,
        keys: tuple[str, ...],
        digest: bytes | None,
    ) -> User | None:
        # Read the stamp before verifying: if the password changes meanwhile,
        # the entry carries the old stamp and is never honoured.
        stamp = accounts.credential_stamp(canonical) if canonical is not None else None
        if self._argon2_slots is None:
            self._argon2_slots = asyncio.Semaphore(self.policy.max_parallel)
        async with self._argon2_slots:
            # Checked again once a slot is ours: a burst of parallel guesses
            # waits here, and is refused as soon as the earlier ones have
            # used up the allowance, without spending argon2 on it.
            self._check(keys)
            self.verifications += 1
            user = await asyncio.to_thread(accounts.authenticate, address, password)
        if user is not None and digest is not None and stamp is not None:
            self._cache[digest] = _Cached(user, stamp, self._clock() + self.policy.cache_ttl)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.policy.cache_size:
                self._cache.popitem(last=False)
        return user

    # --- failure bookkeeping ------------------------------------------------------

    def _count(self, key: str, now: float) -> int:
        times = self._failures.get(key)
        if times is None:
            return 0
        horizon = now - self.policy.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return len(times)

    def _record_failure(self, key: str) -> None:
        times = self._failures.get(key)
        if times is None:
            # Only the newest refuse_after failures matter: older ones never
            # change a decision, so the deque stays small.
            times = self._failures[key] = deque(maxlen=self.policy.refuse_after)
            while len(self._failures) > self.policy.max_tracked:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        times.append(self._clock())

    def _retry_after(self, keys: tuple[str, ...], now: float) -> float:
        waits = [0.0]
        for key in keys:
            times = self._failures.get(key)
            if times and len(times) >= self.policy.refuse_after:
                waits.append(times[0] + self.policy.window - now)
        return max(1.0, max(waits))
