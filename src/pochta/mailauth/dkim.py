"""DKIM signing and verification (RFC 6376; Ed25519 per RFC 8463; RFC 8301 crypto rules).

Design note
-----------
The cryptography and canonicalization are dkimpy's; this module decides what
to sign, keeps DNS and CPU work off the event loop, and turns dkimpy's
True/False/exceptions into the RFC 8601 §2.7.1 result words.

Signing (:func:`sign_message`) uses relaxed/relaxed canonicalization
(RFC 6376 §3.4.2, §3.4.4: survives the header refolding and trailing-space
changes that relays commonly make) and signs the fields RFC 6376 §5.4.1
recommends, each as often as it occurs, plus ``From`` once more than it
occurs (RFC 6376 §8.15): an attacker cannot then add a second From that a
reader might display while the signature still verifies. Fields that are
absent are not listed, so a relay adding e.g. a missing ``Reply-To`` or
``List-*`` does not break us -- except From, which must always be signed
(RFC 6376 §5.4).

Verification (:func:`verify_dkim`) never blocks the loop: the signatures are
parsed in a worker thread, their key records ``<s>._domainkey.<d>`` are
fetched through our asynchronous :class:`~pochta.dns.Resolver`, and dkimpy
then verifies in a worker thread with a ``dnsfunc`` that only answers from
what was fetched. The result of each signature:

========== =============================================================
pass       the signature verifies (RFC 6376 §6.1.3 SUCCESS)
fail       body hash or header signature mismatch (PERMFAIL, crypto)
permerror  malformed signature, From not signed, no key record, revoked
           or unusable key, key/algorithm mismatch (RFC 6376 §6.1.1-2)
temperror  the key could not be fetched now (RFC 6376 §6.1.2 TEMPFAIL)
policy     valid-looking but unacceptable to us: rsa-sha1 or an RSA key
           under 1024 bits (RFC 8301 §3.1, §3.2)
========== =============================================================

``neutral`` (RFC 8601 §2.7.1) is part of the type for callers that build
their own results; this module does not produce it.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dkim
import dkim.canonicalization as dkimpy_canon
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from pochta.dns.records import DNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver
from pochta.mailauth.keys import DKIMKey

__all__ = [
    "SIGNED_FIELDS",
    "DKIMResult",
    "SigningError",
    "sign_message",
    "signed_header_list",
    "verify_dkim",
]

log = logging.getLogger("pochta.mailauth.dkim")

#: dkimpy logs every failed verification at ERROR; we report them as results
#: instead, so its messages go to a logger that does not propagate.
LIB_LOG = logging.getLogger("pochta.mailauth.dkimpy")
LIB_LOG.propagate = False
LIB_LOG.addHandler(logging.NullHandler())

Result = Literal["pass", "fail", "neutral", "policy", "temperror", "permerror"]

#: Fields signed when present (RFC 6376 §5.4.1), besides every ``List-*`` (RFC 2369, 2919).
SIGNED_FIELDS = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

#: RFC 8301 §3.2: verifiers MUST NOT accept RSA keys shorter than this.
MIN_RSA_BITS = 1024

#: Characters of b= reported as ``header.b`` (RFC 6008 §4 asks for at least 8).
HEADER_B_CHARS = 12


class SigningError(Exception):
    """The message could not be signed (dkimpy refused it); the text says why."""


@dataclass(frozen=True, slots=True)
class DKIMResult:
    """The verdict on one DKIM-Signature, ready for Authentication-Results (RFC 8601)."""

    result: Result
    domain: str
    """``d=`` (the signing domain), or "" if the signature could not be parsed."""
    selector: str
    algorithm: str
    reason: str
    """Short, printable: why it is not a pass (or "" for a pass)."""
    header_b: str
    """First characters of ``b=`` to tell signatures apart (RFC 6008 ``header.b``)."""


# --- signing -----------------------------------------------------------------------


def signed_header_list(names: Sequence[bytes]) -> list[bytes]:
    """The ``h=`` list for a message whose header field names are ``names`` (in order).

    Each recommended field once per occurrence, From once more (RFC 6376 §8.15).
    """
    out: list[bytes] = []
    for name in names:
        lower = name.strip().lower()
        text = lower.decode("ascii", "replace")
        if text in SIGNED_FIELDS or text.startswith("list-"):
            out.append(lower)
    out.append(b"from")
    return out


#: OpenSSL key objects for dkimpy's parsed RSA keys, by modulus (a few domains).
_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}
_RSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha1": hashes.SHA1,
}


def _openssl_rsa_sign(digest: Any, key: Mapping[str, int]) -> bytes:
    """dkimpy's ``RSASSA_PKCS1_v1_5_sign`` done by OpenSSL (``cryptography``).

    Why: dkimpy signs with Python's ``pow`` -- 6.5 ms per RSA-2048 signature,
    holding the GIL, so every submitted message stalled the whole server for
    that long and submission topped out near 100 msg/s. OpenSSL takes ~1 ms.
    PKCS#1 v1.5 signatures are deterministic: the bytes are the same as
    dkimpy's (``tests/unit/test_dkim.py`` compares them). ``digest`` is
    dkimpy's hash object (``name``, ``digest()``); ``key`` its parsed
    RSAPrivateKey (RFC 8017 A.1.2 field names).
    """
    private = _RSA_KEYS.get(key["modulus"])
    if private is None:
        numbers = rsa.RSAPrivateNumbers(
            p=key["prime1"],
            q=key["prime2"],
            d=key["privateExponent"],
            dmp1=key["exponent1"],
            dmq1=key["exponent2"],
            iqmp=key["coefficient"],
            public_numbers=rsa.RSAPublicNumbers(key["publicExponent"], key["modulus"]),
        )
        private = _RSA_KEYS.setdefault(key["modulus"], numbers.private_key())
    algorithm = _RSA_HASHES[str(digest.name).lower()]()
    return private.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


#: dkimpy's own RSA signing, kept for the test that compares the two.
PURE_PYTHON_RSA_SIGN = dkim.RSASSA_PKCS1_v1_5_sign
# dkim.DKIM.sign looks these up in its module at call time. It also parses
# the PEM key (ASN.1 in Python, ~0.16 ms) on every signature: a domain has
# two keys, so remember the parsed ones.
dkim.RSASSA_PKCS1_v1_5_sign = _openssl_rsa_sign
dkim.parse_pem_private_key = functools.lru_cache(maxsize=64)(dkim.parse_pem_private_key)

#: dkimpy's relaxed body canonicalization (RFC 6376 §3.4.4), kept for the test.
PURE_RELAXED_BODY = dkimpy_canon.Relaxed.canonicalize_body


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalization, skipping the regexes when idle.

    dkimpy runs two regular expressions over the whole body for every
    signature made or checked (~0.17 ms for 5 KB). They change nothing when
    the body has no tab, no run of spaces and no space before a line end --
    most mail -- and three searches say so; then only the trailing empty
    lines are dealt with, exactly as dkimpy does.
    """
    if b"\t" in body or b"  " in body or b" \r\n" in body:
        return bytes(PURE_RELAXED_BODY(body))
    return bytes(dkimpy_canon.correct_empty_body(dkimpy_canon.strip_trailing_lines(body)))


dkimpy_canon.Relaxed.canonicalize_body = staticmethod(_relaxed_body)


def _sign_sync(message: bytes, keys: Sequence[DKIMKey]) -> bytes:
    try:
        signer = dkim.DKIM(message, logger=LIB_LOG, linesep=b"\r\n")
        include = signed_header_list([name for name, _ in signer.headers])
        fields: list[bytes] = []
        for key in keys:
            fields.append(
                signer.sign(
                    key.selector.encode("ascii"),
                    key.domain.encode("ascii"),
                    key.private_key,
                    signature_algorithm=key.algorithm.encode("ascii"),
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=include,
                )
            )
    except dkim.DKIMException as exc:
        raise SigningError(f"DKIM signing failed: {exc}") from exc
    return b"".join(fields)


async def sign_message(message: bytes, keys: Sequence[DKIMKey]) -> bytes:
    """DKIM-Signature fields (CRLF line ends) to prepend to ``message``, one per key.

    ``message`` is the whole message with CRLF line ends; the RSA/Ed25519
    work runs in a worker thread. Raises :class:`SigningError`.
    """
    if not keys:
        return b""
    return await asyncio.to_thread(_sign_sync, message, list(keys))


# --- verifying ---------------------------------------------------------------------


@dataclass(slots=True)
class _Signature:
    """One DKIM-Signature as far as it could be understood before any DNS."""

    index: int
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    header_b: str = ""
    tags: dict[bytes, bytes] | None = None
    verdict: DKIMResult | None = None
    """Set when the signature was judged without its key (malformed, policy)."""

    @property
    def key_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}".lower()

    def result(self, result: Result, reason: str = "") -> DKIMResult:
        return DKIMResult(result, self.domain, self.selector, self.algorithm, reason, self.header_b)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace").strip()


def _clean_reason(text: str, limit: int = 120) -> str:
    """One short printable line: it goes into Authentication-Results and logs."""
    # dkimpy puts bytes reprs in its messages ("missing b'bh'="): show the text.
    one = " ".join(re.sub(r"""\bb'([^']*)'""", r"\1", str(text)).split())
    return "".join(c if " " <= c <= "~" else "?" for c in one)[:limit]


def _parse_signatures(message: bytes, max_signatures: int) -> tuple[Any, list[_Signature]]:
    """dkimpy's parse of the message and a judgement of each signature's syntax.

    Runs in a worker thread (it reads the whole message).
    """
    try:
        verifier = dkim.DKIM(message, logger=LIB_LOG, minkey=MIN_RSA_BITS)
    except dkim.DKIMException as exc:
        header_end = message.find(b"\r\n\r\n")
        head = message[: header_end if header_end >= 0 else len(message)].lower()
        if re.search(rb"(^|\n)dkim-signature\s*:", head):
            broken = _Signature(0)
            broken.verdict = broken.result("permerror", _clean_reason(f"unparsable message: {exc}"))
            return None, [broken]
        return None, []
    fields = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if len(fields) > max_signatures:
        # RFC 6376 §6.1: a verifier MAY limit the signatures it checks.
        log.info("checking %d of %d DKIM signatures", max_signatures, len(fields))
    out: list[_Signature] = []
    for index, value in enumerate(fields[:max_signatures]):
        out.append(_judge_syntax(index, value))
    return verifier, out


def _judge_syntax(index: int, value: bytes) -> _Signature:
    """Parse one DKIM-Signature value and apply the checks that need no key (RFC 6376 §6.1.1)."""
    sig = _Signature(index)
    try:
        tags: dict[bytes, bytes] = dkim.util.parse_tag_value(value)
    except dkim.util.InvalidTagValueList as exc:
        sig.verdict = sig.result("permerror", _clean_reason(f"malformed signature: {exc}"))
        return sig
    sig.tags = tags
    sig.domain = _text(tags.get(b"d")).lower()
    sig.selector = _text(tags.get(b"s")).lower()
    sig.algorithm = _text(tags.get(b"a")).lower()
    sig.header_b = re.sub(r"\s+", "", _text(tags.get(b"b")))[:HEADER_B_CHARS]
    try:
        dkim.validate_signature_fields(tags)
    except dkim.DKIMException as exc:
        # Missing or malformed tags, t= in the future, x= passed (RFC 6376 §6.1.1).
        sig.verdict = sig.result("permerror", _clean_reason(str(exc)))
        return sig
    except (IndexError, KeyError, ValueError) as exc:
        # dkimpy trips over some i=/d= combinations (i= equal to d=, no "@").
        sig.verdict = sig.result("permerror", _clean_reason(f"malformed signature: {exc!r}"))
        return sig
    signed = [h.strip().lower() for h in tags[b"h"].split(b":")]
    if b"from" not in signed:
        # RFC 6376 §6.1.1: "From field not signed" is PERMFAIL.
        sig.verdict = sig.result("permerror", "From field not signed")
    elif sig.algorithm == "rsa-sha1":
        # RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
        sig.verdict = sig.result("policy", "rsa-sha1 is not accepted (RFC 8301)")
    elif not sig.domain or not sig.selector:
        sig.verdict = sig.result("permerror", "malformed signature: empty d= or s=")
    return sig


async def _fetch_key(resolver: Resolver, name: str) -> bytes | tuple[Result, str]:
    """The key record at ``name``, or the result and reason for not having one."""
    try:
        answer = await resolver.txt(name)
    except TemporaryDNSError as exc:
        return "temperror", f"key lookup: {exc.reason}"
    except DNSError as exc:
        return "permerror", f"key lookup: {exc.reason}"
    if not answer.records:
        # RFC 6376 §6.1.2 step 3: no key record is PERMFAIL (no key for signature).
        return "permerror", "no key for signature"
    # RFC 6376 §3.6.2.2: the strings of one record are concatenated. With
    # several records the verifier may pick one (§6.1.2); the first DKIM-looking one.
    records = [r.joined for r in answer.records]
    for record in records:
        if b"p=" in record:
            return record
    return records[0]


def _key_problem(sig: _Signature, record: bytes) -> DKIMResult | None:
    """Checks of the key record that dkimpy leaves out (RFC 6376 §3.6.1, §6.1.2; RFC 8301)."""
    try:
        key_tags: dict[bytes, bytes] = dkim.util.parse_tag_value(record)
    except dkim.util.InvalidTagValueList as exc:
        return sig.result("permerror", _clean_reason(f"key record syntax error: {exc}"))
    if re.sub(rb"\s+", b"", key_tags.get(b"p", b"-")) == b"":
        return sig.result("permerror", "key revoked")  # RFC 6376 §3.6.1: empty p=
    try:
        _pk, keysize, ktag, _tlsrpt = dkim.evaluate_pk(sig.key_name.encode(), record)
    except (dkim.DKIMException, binascii.Error, ValueError, TypeError) as exc:
        return sig.result("permerror", _clean_reason(f"unusable key: {exc}"))
    services = {v.strip().lower() for v in key_tags.get(b"s", b"*").split(b":")}
    if ktag is None or not services & {b"*", b"email"}:
        # RFC 6376 §3.6.1 s=: a key for another service must not verify mail.
        return sig.result("permerror", "key is not for email (s= tag)")
    wanted = sig.algorithm.split("-", 1)[0].encode()
    if ktag != wanted:
        # RFC 6376 §6.1.2 step 6: "inappropriate key algorithm".
        return sig.result("permerror", f"key is {ktag.decode()}, signature is {sig.algorithm}")
    hashes = key_tags.get(b"h")
    if hashes is not None:
        allowed = {h.strip().lower() for h in hashes.split(b":")}
        if b"sha256" not in allowed:
            return sig.result("permerror", "key does not allow sha256 (h= tag)")
    flags = {f.strip().lower() for f in key_tags.get(b"t", b"").split(b":")}
    if b"s" in flags and sig.tags is not None and b"i" in sig.tags:
        # RFC 6376 §3.6.1 t=s: the i= domain must be exactly d=.
        i_domain = sig.tags[b"i"].rpartition(b"@")[2].strip().lower()
        if i_domain.decode("utf-8", "replace") != sig.domain:
            return sig.result("permerror", "i= is a subdomain of d= but the key has t=s")
    if ktag == b"rsa" and keysize is not None and keysize < MIN_RSA_BITS:
        return sig.result("policy", f"RSA key of {keysize} bits is too short (RFC 8301)")
    return None


def _verify_sync(
    verifier: Any, signatures: Sequence[_Signature], keys: Mapping[str, bytes]
) -> list[DKIMResult]:
    """dkimpy's verification of every signature that has a key; in a worker thread."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        return keys.get(text.rstrip(".").lower())

    results: list[DKIMResult] = []
    for sig in signatures:
        if sig.verdict is not None:
            results.append(sig.verdict)
            continue
        record = keys[sig.key_name]
        problem = _key_problem(sig, record)
        if problem is not None:
            results.append(problem)
            continue
        results.append(_verify_one(verifier, sig, dnsfunc))
    return results


def _verify_one(verifier: Any, sig: _Signature, dnsfunc: Callable[..., bytes | None]) -> DKIMResult:
    try:
        ok = verifier.verify(idx=sig.index, dnsfunc=dnsfunc)
    except dkim.ValidationError as exc:
        # The tags were validated before, so what is left is the body hash.
        return sig.result("fail", _clean_reason(str(exc).split(" (", 1)[0]))
    except dkim.DKIMException as exc:
        return sig.result("permerror", _clean_reason(str(exc)))
    except Exception as exc:  # dkimpy raises plain errors on some malformed input
        return sig.result("permerror", _clean_reason(f"unverifiable: {exc!r}"))
    if ok:
        return sig.result("pass")
    return sig.result("fail", "signature did not verify")


async def verify_dkim(
    resolver: Resolver, message: bytes, *, max_signatures: int = 10
) -> list[DKIMResult]:
    """Verify every DKIM-Signature of ``message`` (at most ``max_signatures``), top first.

    An empty list means the message carries no signature. Key records are
    fetched concurrently through ``resolver``; nothing here blocks the loop.
    """
    verifier, signatures = await asyncio.to_thread(_parse_signatures, message, max_signatures)
    if not signatures:
        return []
    wanted = sorted({s.key_name for s in signatures if s.verdict is None})
    fetched = await asyncio.gather(*(_fetch_key(resolver, name) for name in wanted))
    keys: dict[str, bytes] = {}
    for sig in signatures:
        if sig.verdict is not None:
            continue
        outcome = fetched[wanted.index(sig.key_name)]
        if isinstance(outcome, bytes):
            keys[sig.key_name] = outcome
        else:
            sig.verdict = sig.result(outcome[0], _clean_reason(outcome[1]))
    if verifier is None or not keys:
        return [s.verdict for s in signatures if s.verdict is not None]
    return await asyncio.to_thread(_verify_sync, verifier, signatures, keys)
