"""Client-side account setup: what a mail client finds for an address, step by step.

``pochta discover ADDRESS`` (``pochta.cli.discover_cmd``) and tests call
:func:`discover` with a :class:`Network` (resolver, port map, timeouts, CA
file) and get a :class:`Report` of every attempt and the settings found. The
algorithm and its order are described in :mod:`pochta.discover.steps`; the
server side it talks to is :mod:`pochta.web`.
"""

from pochta.discover.model import Attempt, Found, LoginCheck, Report, ServerSetting
from pochta.discover.net import Network
from pochta.discover.steps import discover

__all__ = ["Attempt", "Found", "LoginCheck", "Network", "Report", "ServerSetting", "discover"]
