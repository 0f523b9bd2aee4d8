"""MTA-STS for the mail we send (RFC 8461 §3-§5): which MX hosts a domain
allows, and that they must be reached over TLS with a valid certificate.

Design note
-----------
Before delivering to a domain, :meth:`StsPolicies.lookup` finds its policy:

1. ``_mta-sts.<domain>`` TXT (§3.1). The records that begin with
   ``v=STSv1`` are kept; unless exactly one remains and it has a valid
   ``id``, the domain publishes no policy.
2. A cached policy with that id, not expired and fetched less than
   ``REFRESH`` ago, is used as it is (§5.1: policies are refreshed before
   they expire, so one blocked fetch at the wrong moment is no downgrade).
3. Otherwise the policy is fetched (§3.3) from
   ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the host name is
   resolved by our resolver (never the system's), the certificate must be
   valid for that name (PKIX, the system's CAs), redirects are not
   followed, only a 200 with ``text/plain`` counts, the body is at most
   64 KiB and the whole fetch at most ``FETCH_TIMEOUT`` seconds. It is
   parsed by ``pochta.web.mtasts.parse_policy`` (the one we serve is made
   by the same code) and cached until ``max_age`` runs out. A failed fetch
   is not tried again for ``RETRY_AFTER`` seconds (a black-holed policy
   host must not hold up every delivery to the domain).
4. When the TXT record is gone, or a fetch fails, a cached policy that has
   not expired is still used (§5.1): an attacker who blocks the lookups
   must not switch a domain back to plain text.

The cache is kept in memory and in ``<data_dir>/mta-sts-cache.json``
(rewritten whole: a fresh file, fsync, rename; each entry checked again
when read), so a restart is no downgrade window either. One lookup per
domain at a time: it runs as its own task, which deliveries that need
the same policy share (one caller's cancellation is not the others').

What the deliverer does with a policy (``pochta.queue.remote``): mode
``enforce`` allows only MX hosts that match one of its ``mx`` patterns
(§4.1: ``*.example.com`` stands for exactly one more label), and only
over STARTTLS with a certificate valid for the MX host name (§4.2); a host
that fails is skipped, and when none is left the delivery is a temporary
failure (the queue retries, then bounces at ``max_age``). Mode ``testing``
delivers as without a policy, logging the MX hosts enforce would refuse
(certificates are not checked then, and TLS-RPT reports, RFC 8460, are
not sent). Mode ``none``: no policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pochta.dns.records import DNSError
from pochta.dns.resolver import Resolver, host_addresses
from pochta.web.mtasts import MAX_POLICY_BYTES, Policy, PolicyError, parse_policy

__all__ = [
    "FETCH_TIMEOUT",
    "FetchError",
    "StsPolicies",
    "mx_matches",
    "parse_http_response",
    "sts_id",
]

log = logging.getLogger("pochta.queue.mtasts")

#: Seconds for the whole policy fetch: connect, TLS, request, response.
FETCH_TIMEOUT = 30.0
#: Seconds for one address of the policy host (a dead IPv6 address must
#: leave time for the IPv4 one).
ADDRESS_TIMEOUT = 10.0
#: A cached policy is fetched again after this many seconds, even with the
#: same id (kept if that fails).
REFRESH = 86400.0
#: Seconds before a failed fetch of the same policy id is tried again.
RETRY_AFTER = 300.0
#: Largest response head read before the body.
MAX_HEAD = 16 * 1024

_ID = re.compile(r"[A-Za-z0-9]{1,32}")


class FetchError(Exception):
    """The policy could not be fetched or is not a valid policy."""


def sts_id(records: list[str]) -> str | None:
    """The policy id of ``_mta-sts`` TXT ``records`` (§3.1), or None when
    the domain has no usable record (none, several, or a malformed one)."""
    candidates = [r for r in records if re.match(r"v=STSv1[ \t]*;", r)]
    if len(candidates) != 1:
        return None
    fields: dict[str, str] = {}
    for part in candidates[0].split(";"):
        key, eq, value = part.strip().partition("=")
        if not key:
            continue
        if not eq:
            return None
        fields.setdefault(key, value)
    found = fields.get("id", "")
    return found if _ID.fullmatch(found) else None


def mx_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether MX ``host`` matches one of a policy's ``mx`` patterns (§4.1)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            first, dot, rest = host.partition(".")
            if first and dot and rest == pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def parse_http_response(raw: bytes) -> str:
    """The policy text of a raw HTTP/1.x response to our GET (§3.3):
    status 200, ``text/plain``, a body of at most 64 KiB in UTF-8.
    Raises FetchError naming what is wrong."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise FetchError("the response has no end of head")
    lines = head.split(b"\r\n")
    status = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", lines[0])
    if status is None:
        raise FetchError("the response is not HTTP/1.x")
    code = int(status[1])
    if code != 200:
        # 3xx included: §3.3, senders MUST NOT follow redirects.
        raise FetchError(f"HTTP status {code}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise FetchError("a malformed header line")
        headers[name.strip().lower()] = value.strip()
    media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if media != b"text/plain":
        raise FetchError("the policy is not text/plain")
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        raise FetchError("a chunked response to an HTTP/1.0 request")
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit() or int(length) > len(body):
            raise FetchError("the body is shorter than its Content-Length")
        body = body[: int(length)]
    if len(body) > MAX_POLICY_BYTES:
        raise FetchError("the policy is larger than 64 KiB")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("the policy is not UTF-8") from None


@dataclass(frozen=True, slots=True)
class _Cached:
    id: str
    policy: Policy
    expires: float
    fetched: float


class StsPolicies:
    """Finds, fetches and caches the MTA-STS policies of recipient domains."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        cache_file: Path | None = None,
        port: int = 443,
        context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.cache_file = cache_file
        #: The policy host's HTTPS port (443; tests use another).
        self.port = port
        #: Verifies the policy host's certificate (the system's CAs by default).
        self.context = context if context is not None else ssl.create_default_context()
        self.clock = clock
        self._cache: dict[str, _Cached] = self._load()
        self._lookups: dict[str, asyncio.Task[Policy | None]] = {}
        #: (domain, id) -> when its fetch failed.
        self._failed: dict[tuple[str, str], float] = {}

    async def lookup(self, domain: str) -> Policy | None:
        """The policy to apply to ``domain`` now, or None (see the module note)."""
        domain = domain.lower().rstrip(".")
        task = self._lookups.get(domain)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._guarded(domain))
            self._lookups[domain] = task
            task.add_done_callback(lambda _t: self._lookups.pop(domain, None))
        return await asyncio.shield(task)

    async def _guarded(self, domain: str) -> Policy | None:
        try:
            return await self._lookup(domain)
        except Exception:  # a bug here must not stop deliveries to the domain
            log.exception("mta-sts: lookup for %s failed", domain)
            return _live(self._cache.get(domain), self.clock())

    async def _lookup(self, domain: str) -> Policy | None:
        now = self.clock()
        cached = self._cache.get(domain)
        if cached is not None and cached.expires <= now:
            del self._cache[domain]
            cached = None
        try:
            answer = await self.resolver.txt(f"_mta-sts.{domain}")
            wanted = sts_id([txt.text for txt in answer])
        except DNSError as exc:
            log.info("mta-sts: TXT lookup for %s failed: %s", domain, exc)
            wanted = None
        if wanted is None:
            return _live(cached, now)
        if cached is not None and cached.id == wanted and now - cached.fetched < REFRESH:
            return _live(cached, now)
        failed = self._failed.get((domain, wanted))
        if failed is not None and now - failed < RETRY_AFTER:
            return _live(cached, now)
        try:
            policy = await asyncio.wait_for(self._fetch(domain), FETCH_TIMEOUT)
        except (FetchError, PolicyError, OSError, TimeoutError, DNSError) as exc:
            log.warning("mta-sts: policy of %s (id %s) not fetched: %s", domain, wanted, exc)
            if len(self._failed) > 10_000:
                self._failed.clear()
            self._failed[(domain, wanted)] = now
            return _live(cached, now)
        self._failed.pop((domain, wanted), None)
        self._cache[domain] = _Cached(wanted, policy, now + policy.max_age, now)
        self._save()
        log.info("mta-sts: policy of %s id=%s mode=%s", domain, wanted, policy.mode)
        return _live(self._cache[domain], now)

    async def _fetch(self, domain: str) -> Policy:
        host = f"mta-sts.{domain}"
        addresses = await host_addresses(self.resolver, host)
        if not addresses:
            raise FetchError(f"{host} has no address")
        last: Exception = FetchError(f"{host} could not be reached")
        for address in addresses:
            try:
                raw = await asyncio.wait_for(self._get(str(address), host), ADDRESS_TIMEOUT)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                last = exc
                continue
            return parse_policy(parse_http_response(raw))
        raise last

    async def _get(self, address: str, host: str) -> bytes:
        reader, writer = await asyncio.open_connection(
            address, self.port, ssl=self.context, server_hostname=host
        )
        try:
            # HTTP/1.0: the answer comes whole, never chunked, and ends at EOF.
            writer.write(
                f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
                "User-Agent: Pochta\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            await writer.drain()
            raw = await reader.read(MAX_HEAD + MAX_POLICY_BYTES + 1)
            while raw and len(raw) <= MAX_HEAD + MAX_POLICY_BYTES and not _complete(raw):
                more = await reader.read(MAX_HEAD + MAX_POLICY_BYTES + 1 - len(raw))
                if not more:
                    break
                raw += more
            if len(raw) > MAX_HEAD + MAX_POLICY_BYTES:
                raise FetchError("the response is too large")
            return raw
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    # --- the cache file ------------------------------------------------------------

    def _load(self) -> dict[str, _Cached]:
        if self.cache_file is None:
            return {}
        try:
            items = json.loads(self.cache_file.read_text())
            if not isinstance(items, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("mta-sts: cache %s unreadable, starting empty: %s", self.cache_file, exc)
            return {}
        now = self.clock()
        loaded: dict[str, _Cached] = {}
        for domain, item in items.items():
            # Each entry on its own: one damaged entry must not drop the others.
            try:
                mx = item["mx"]
                if not isinstance(mx, list) or not all(isinstance(m, str) for m in mx):
                    raise ValueError("mx is not a list of names")
                policy = parse_policy(
                    Policy(str(item["mode"]), int(item["max_age"]), tuple(mx)).text()
                )
                expires = min(float(item["expires"]), now + policy.max_age)
                fetched = min(float(item.get("fetched", now)), now)
                if not str(item["id"]).isalnum() or expires != expires:  # NaN
                    raise ValueError("bad id or expiry")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("mta-sts: cache entry for %r dropped: %s", domain, exc)
                continue
            loaded[str(domain)] = _Cached(str(item["id"]), policy, expires, fetched)
        return loaded

    def _save(self) -> None:
        if self.cache_file is None:
            return
        now = self.clock()
        items = {
            domain: {
                "id": c.id,
                "mode": c.policy.mode,
                "max_age": c.policy.max_age,
                "mx": list(c.policy.mx),
                "expires": c.expires,
                "fetched": c.fetched,
            }
            for domain, c in self._cache.items()
            if c.expires > now
        }
        directory = self.cache_file.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".mta-sts-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(items, out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.cache_file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            log.warning("mta-sts: cache %s not written: %s", self.cache_file, exc)


def _live(cached: _Cached | None, now: float) -> Policy | None:
    """A cached policy to apply; mode none is as good as no policy."""
    if cached is None or cached.expires <= now or cached.policy.mode == "none":
        return None
    return cached.policy


def _complete(raw: bytes) -> bool:
    """Whether ``raw`` holds a whole response by its Content-Length (a
    server may keep the connection open after it)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    found = re.search(rb"(?im)^content-length:[ \t]*([0-9]{1,10})[ \t]*$", head)
    return found is not None and len(body) >= int(found[1])
