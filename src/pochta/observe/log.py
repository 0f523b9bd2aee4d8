"""Logging setup for ``pochta serve``: one line per event, key=value fields.

Secrets never reach the log: protocol libraries that log raw command lines
(aiosmtpd logs every line it reads at INFO, AUTH included) are capped at
WARNING.
"""

from __future__ import annotations

import logging
import sys

#: Loggers of libraries that would log client input (and so credentials).
_CHATTY = ("mail.log", "aiosmtpd", "asyncio")


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
