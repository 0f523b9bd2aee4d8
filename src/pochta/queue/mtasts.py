"""MTA-STS for the mail we send (RFC 8461 §3-§5): which MX hosts a domain
allows, and that they must be reached over TLS with a valid certificate.

Design note
-----------
Before delivering to a domain, :meth:`StsPolicies.lookup` finds its policy:

1. ``_mta-sts.<domain>`` TXT (§3.1). The records that begin with
   ``v=STSv1`` are kept; unless exactly one remains and it has a valid
   ``id``, the domain publishes no policy.
2. A cached policy with that id, not expired, is used as it is.
3. Otherwise the policy is fetched (§3.3) from
   ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the host name is
   resolved by our resolver (never the system's), the certificate must be
   valid for that name (PKIX, the system's CAs), redirects are not
   followed, only a 200 with ``text/plain`` counts, the body is at most
   64 KiB and the whole fetch at most ``FETCH_TIMEOUT`` seconds. It is
   parsed by ``pochta.web.mtasts.parse_policy`` (the one we serve is made
   by the same code) and cached until ``max_age`` runs out.
4. When the TXT record is gone, or a fetch fails, a cached policy that has
   not expired is still used (§5.1): an attacker who blocks the lookups
   must not switch a domain back to plain text.

The cache is kept in memory and in ``<data_dir>/mta-sts-cache.json``
(rewritten whole, by rename), so a restart is no downgrade window either.
One fetch per domain at a time: deliveries that need the same policy wait
for the first one's fetch.

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
        self._fetching: dict[str, asyncio.Future[Policy | None]] = {}

    async def lookup(self, domain: str) -> Policy | None:
        """The policy to apply to ``domain`` now, or None (see the module note)."""
        domain = domain.lower().rstrip(".")
        pending = self._fetching.get(domain)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Policy | None] = asyncio.get_running_loop().create_future()
        self._fetching[domain] = future
        try:
            policy = await self._lookup(domain)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters re-raise it
            raise
        else:
            future.set_result(policy)
            return policy
        finally:
            del self._fetching[domain]

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
            return _live(cached)
        if cached is not None and cached.id == wanted:
            return _live(cached)
        try:
            policy = await asyncio.wait_for(self._fetch(domain), FETCH_TIMEOUT)
        except (FetchError, PolicyError, OSError, TimeoutError, DNSError) as exc:
            log.warning("mta-sts: policy of %s (id %s) not fetched: %s", domain, wanted, exc)
            return _live(cached)
        self._cache[domain] = _Cached(wanted, policy, now + policy.max_age)
        self._save()
        log.info("mta-sts: policy of %s id=%s mode=%s", domain, wanted, policy.mode)
        return _live(self._cache[domain])

    async def _fetch(self, domain: str) -> Policy:
        host = f"mta-sts.{domain}"
        addresses = await host_addresses(self.resolver, host)
        if not addresses:
            raise FetchError(f"{host} has no address")
        last: Exception = FetchError(f"{host} could not be reached")
        for address in addresses:
            try:
                raw = await self._get(str(address), host)
            except (OSError, ssl.SSLError) as exc:
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
            while raw and len(raw) <= MAX_HEAD + MAX_POLICY_BYTES:
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
            return {
                domain: _Cached(
                    item["id"],
                    Policy(item["mode"], int(item["max_age"]), tuple(item["mx"])),
                    float(item["expires"]),
                )
                for domain, item in items.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("mta-sts: cache %s unreadable, starting empty: %s", self.cache_file, exc)
            return {}

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
            }
            for domain, c in self._cache.items()
            if c.expires > now
        }
        temporary = self.cache_file.with_name(self.cache_file.name + ".tmp")
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(items))
            os.replace(temporary, self.cache_file)
        except OSError as exc:
            log.warning("mta-sts: cache %s not written: %s", self.cache_file, exc)


def _live(cached: _Cached | None) -> Policy | None:
    """A cached policy to apply; mode none is as good as no policy."""
    if cached is None or cached.policy.mode == "none":
        return None
    return cached.policy
