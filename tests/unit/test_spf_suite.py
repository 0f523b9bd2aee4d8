"""The openspf RFC 7208 test suite against ``pochta.mailauth.spf``.

``tests/data/rfc7208-tests.yml`` (see ``tests/data/README.md`` for where it
comes from) is a stream of YAML documents, one scenario each: ``zonedata``
(DNS records by name) and ``tests`` (helo, host, mailfrom, the acceptable
results and sometimes the expected explanation). Every test becomes one
parametrized case here, run through :func:`verify_sender` -- the MAIL FROM
result is what the suite describes; for a null MAIL FROM that is the check
of postmaster@<helo> (RFC 7208 §2.4).

The zone data is loaded into :class:`pochta.dns.Zones` following the
conventions the suite's drivers share (pyspf's ``testspf.py`` is the
reference one):

* ``SPF`` entries stand for TXT records too, but only at names that list no
  ``TXT`` entry at all (the RFC 4408 era duplication); ``TXT: NONE`` is such
  an entry that serves no record. Type SPF itself is never queried (RFC 7208
  §3.1), and ``Resolver`` cannot even ask for it.
* ``TIMEOUT`` makes every lookup at that name time out (a
  ``TemporaryDNSError``), except for the types listed before it, which are
  answered with what precedes it.
* A TXT entry that is a list is one record of several strings (RFC 7208
  §3.3); an empty list is a record with no strings at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
import yaml

from pochta.dns import MX, TXT, DictResolver, Zones
from pochta.dns.mock import Record
from pochta.mailauth.spf import verify_sender

SUITE = Path(__file__).resolve().parent.parent / "data" / "rfc7208-tests.yml"

#: Every type our Resolver can ask that the suite's zone data uses.
TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME")


@dataclass(frozen=True)
class Case:
    scenario: str
    name: str
    helo: str
    host: str
    mailfrom: str
    results: tuple[str, ...]
    explanation: str | None
    zones: Zones


def _record(rtype: str, value: Any) -> Record:
    if rtype == "TXT":
        strings = [value] if isinstance(value, str) else list(value)
        return TXT(tuple(str(s).encode("utf-8") for s in strings))
    if rtype == "MX":
        preference, exchange = value
        return MX(int(preference), str(exchange).rstrip(".").lower())
    if rtype == "A":
        return IPv4Address(str(value))
    if rtype == "AAAA":
        return IPv6Address(str(value))
    return str(value).rstrip(".").lower()  # PTR, CNAME


def build_zones(zonedata: dict[str, list[Any]]) -> Zones:
    """The suite's ``zonedata`` as :class:`Zones` (conventions: module docstring)."""
    zones = Zones()
    for name, entries in zonedata.items():
        has_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        ordered: list[Any] = []
        copies: list[Any] = []
        for entry in entries:
            if isinstance(entry, dict) and "SPF" in entry:
                if not has_txt:
                    copies.append({"TXT": entry["SPF"]})  # served after everything else
                continue
            ordered.append(entry)
        records: dict[str, list[Record]] = {}
        for entry in ordered + copies:
            if entry == "TIMEOUT":
                for rtype in TYPES:
                    if rtype not in records:
                        zones.fail(name, rtype, "timeout")
                break
            ((rtype, value),) = entry.items()
            if value == "NONE":
                continue
            records.setdefault(rtype, []).append(_record(rtype, value))
        for rtype, values in records.items():
            zones.set(name, rtype, values[0] if rtype == "CNAME" else values)
    return zones


def load_cases() -> list[Case]:
    cases: list[Case] = []
    with SUITE.open("rb") as stream:
        for scenario in yaml.safe_load_all(stream):
            zones = build_zones(scenario.get("zonedata") or {})
            for name, test in scenario["tests"].items():
                result = test["result"]
                cases.append(
                    Case(
                        scenario=scenario["description"],
                        name=name,
                        helo=str(test["helo"]),
                        host=str(test["host"]),
                        mailfrom=str(test["mailfrom"]),
                        results=tuple(result) if isinstance(result, list) else (result,),
                        explanation=test.get("explanation"),
                        zones=zones,
                    )
                )
    return cases


CASES = load_cases()


def test_the_whole_suite_is_here() -> None:
    # 2014.04 release plus the 2019.08 additions: a guard against a truncated file.
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_rfc7208(case: Case) -> None:
    resolver = DictResolver(case.zones)
    _, result = await verify_sender(
        resolver,
        case.host,
        case.mailfrom,
        case.helo,
        receiver="receiver.example.org",
        default_explanation="DEFAULT",
    )
    assert result.result in case.results, f"{case.scenario}: {result}"
    if case.explanation is not None:
        assert result.explanation == case.explanation, f"{case.scenario}: {result}"
    assert result.identity == "mailfrom"
