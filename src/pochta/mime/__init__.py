"""MIME analysis done once per message at delivery, cached by the store.

PLACEHOLDER API (being implemented): ``analyze(data) -> MessageMeta``;
``MessageMeta.to_json()`` / ``MessageMeta.from_json()`` round-trip it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageMeta:
    size: int

    def to_json(self) -> bytes:
        return json.dumps({"size": self.size}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MessageMeta:
        return cls(size=int(json.loads(raw)["size"]))


def analyze(data: bytes) -> MessageMeta:
    return MessageMeta(size=len(data))
