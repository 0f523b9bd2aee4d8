"""MTA-STS policies (RFC 8461): ``GET https://mta-sts.<domain>/.well-known/mta-sts.txt``.

Design note
-----------
A sending MTA that finds ``_mta-sts.<domain> TXT "v=STSv1; id=..."`` fetches
the policy from ``mta-sts.<domain>`` over HTTPS (RFC 8461 §3.3) and from then
on requires TLS with a valid certificate to the listed MX hosts. A wrong
policy in ``enforce`` mode makes mail to the domain bounce, so Pochta is
careful about the mode:

* By default the policy is generated: ``mode: testing`` (failures are only
  reported, RFC 8461 §5), ``mx:`` this server's ``hostname``, ``max_age``
  one day. Settings have no MTA-STS key yet (a ``[mta_sts]`` section can come
  later); until then an operator switches a domain to ``enforce`` with a file:
* ``data_dir/mta-sts/<domain>.txt`` (domain in lower-case A-label form), if
  present, is served instead -- checked with :func:`parse_policy` (the
  RFC 8461 §3.2 grammar) and re-serialized with CRLF line ends. A file that
  does not parse is not served: the request gets 500 and the log says why,
  and senders keep their cached policy (RFC 8461 §3.3), which is safer than
  publishing a broken one.

The domain is the request's ``Host`` minus the ``mta-sts.`` prefix; other
hosts and unknown domains are 404. The policy file is read in a worker
thread; its name comes from a canonical domain (letters, digits, ``-`` and
``.``, no empty label), so it cannot leave ``data_dir/mta-sts/``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from pochta.web.common import context, domain_from_host, local_domain_or_none, plain

__all__ = [
    "DEFAULT_MAX_AGE",
    "MAX_MAX_AGE",
    "PATH",
    "Policy",
    "PolicyError",
    "handle_mta_sts",
    "parse_policy",
]

log = logging.getLogger("pochta.web.mtasts")

PATH = "/.well-known/mta-sts.txt"
#: Seconds senders may cache the generated (testing) policy.
DEFAULT_MAX_AGE = 86400
#: RFC 8461 §3.2: max_age is at most 31557600 (about one year).
MAX_MAX_AGE = 31_557_600
#: RFC 8461 §3.3: a policy body larger than 64 KiB is refused by senders.
MAX_POLICY_BYTES = 64 * 1024
MODES = ("enforce", "testing", "none")

# RFC 8461 §3.2: sts-policy-field = key ":" *WSP value; an extension's name
# is (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
_FIELD_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*")
_SECONDS = re.compile(r"[0-9]{1,10}")
# mx pattern: a domain name, optionally with a leading "*." wildcard label.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_MX_RE = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}")


class PolicyError(ValueError):
    """A policy text that does not follow RFC 8461 §3.2."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A parsed STSv1 policy."""

    mode: str
    max_age: int
    mx: tuple[str, ...]

    def text(self) -> str:
        """The policy as served: CRLF-terminated ``key: value`` lines (RFC 8461 §3.2)."""
        lines = ["version: STSv1", f"mode: {self.mode}"]
        lines += [f"mx: {mx}" for mx in self.mx]
        lines.append(f"max_age: {self.max_age}")
        return "".join(line + "\r\n" for line in lines)


def parse_policy(text: str) -> Policy:
    """Parse an STSv1 policy body; raise :class:`PolicyError` naming the problem.

    RFC 8461 §3.2: fields in any order; unknown keys are ignored; of a
    repeated field other than ``mx`` the first counts; ``mx`` may repeat
    and is required unless mode is ``none``.
    """
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError("longer than 64 KiB")
    lines = [line for line in re.split(r"\r?\n", text) if line.strip()]
    fields: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        match = _FIELD_RE.fullmatch(line)
        if match is None:
            raise PolicyError(f"line {number} is not 'key: value'")
        fields.append((match.group(1), match.group(2)))
    values: dict[str, str] = {}
    mx: list[str] = []
    for key, value in fields:
        if key == "mx":
            host = value.lower().rstrip(".")
            if not _MX_RE.fullmatch(host):
                raise PolicyError(f"mx {value!r} is not a host name or *.pattern")
            mx.append(host)
        elif key in ("mode", "max_age", "version"):
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        raise PolicyError("'version: STSv1' is missing")
    mode = values.get("mode")
    if mode not in MODES:
        raise PolicyError(f"mode must be one of {', '.join(MODES)}")
    age = values.get("max_age", "")
    if not _SECONDS.fullmatch(age) or int(age) > MAX_MAX_AGE:
        raise PolicyError(f"max_age must be a number of seconds 0..{MAX_MAX_AGE}")
    if mode != "none" and not mx:
        raise PolicyError("at least one mx line is needed unless mode is none")
    return Policy(mode, int(age), tuple(mx))


def policy_path(data_dir: Path, domain: str) -> Path:
    """Where an operator puts the policy of ``domain`` to override the generated one."""
    return data_dir / "mta-sts" / f"{domain}.txt"


def _read_policy(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except FileNotFoundError:
        return None
    return data.decode("utf-8")


async def handle_mta_sts(request: web.Request) -> web.Response:
    """GET ``/.well-known/mta-sts.txt`` on ``mta-sts.<domain>`` (RFC 8461 §3.3)."""
    ctx = context(request)
    host = request.headers.get("Host", "").lower()
    if not host.startswith("mta-sts."):
        return plain(404, "MTA-STS policies are served on mta-sts.<domain>")
    domain = local_domain_or_none(ctx, domain_from_host(request, ("mta-sts.",)))
    if domain is None:
        return plain(404, "no policy for that domain")
    path = policy_path(ctx.settings.data_dir, domain)
    try:
        text = await asyncio.to_thread(_read_policy, path)
        policy = (
            Policy("testing", DEFAULT_MAX_AGE, (ctx.settings.hostname,))
            if text is None
            else parse_policy(text)
        )
    except (OSError, UnicodeDecodeError, PolicyError) as exc:
        log.error("mta-sts policy not served domain=%s file=%s problem=%s", domain, path, exc)
        return plain(500, "the policy of this domain is being fixed")
    return web.Response(text=policy.text(), content_type="text/plain", charset="utf-8")
