"""ICE set-up: which local addresses are offered, and which STUN/TURN servers are used.

aiortc gathers host candidates through aioice, which leaves out loopback addresses and, when
given no ICE servers, aiortc itself adds a public STUN server. Holo is explicit instead:

- ``--ice-address ADDR`` (repeatable) offers exactly those local addresses — a machine with several
  network cards picks the one to use, and tests offer ``127.0.0.1``;
- no STUN server unless ``--stun URL`` asks for one (calls across NAT need it; loopback and LAN
  calls do not), TURN with ``--turn URL --turn-user U --turn-pass P``, ``--ice-policy relay`` to
  force every packet through the TURN server.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from holo.errors import ConfigError

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

__all__ = ["offer_addresses", "rtc_configuration"]

logger = logging.getLogger(__name__)

_original_get_host_addresses = None


def offer_addresses(addresses: list[str] | None) -> None:
    """Offer only ``addresses`` as host candidates in this process (None restores aioice's choice)."""
    import aioice.ice

    global _original_get_host_addresses
    if _original_get_host_addresses is None:
        _original_get_host_addresses = aioice.ice.get_host_addresses
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    parsed = []
    for a in addresses:
        try:
            parsed.append(ipaddress.ip_address(a))
        except ValueError:
            raise ConfigError(f"--ice-address {a!r} is not an IP address") from None

    def chosen(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [str(a) for a in parsed if (a.version == 4 and use_ipv4) or (a.version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = chosen
    logger.info("offering ICE host candidates on %s", ", ".join(map(str, parsed)))


def rtc_configuration(
    *,
    stun: list[str] | None = None,
    turn: list[str] | None = None,
    turn_user: str | None = None,
    turn_pass: str | None = None,
    policy: str = "all",
) -> RTCConfiguration:
    from aiortc import RTCConfiguration, RTCIceServer
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    servers = []
    for url in stun or []:
        if not url.startswith(("stun:", "stuns:")):
            raise ConfigError(f"--stun {url!r} must start with stun: (e.g. stun:stun.example.org:3478)")
        servers.append(RTCIceServer(urls=[url]))
    for url in turn or []:
        if not url.startswith(("turn:", "turns:")):
            raise ConfigError(f"--turn {url!r} must start with turn: (e.g. turn:turn.example.org:3478)")
        if not turn_user or turn_pass is None:
            raise ConfigError("--turn needs --turn-user and --turn-pass")
        servers.append(RTCIceServer(urls=[url], username=turn_user, credential=turn_pass))
    if policy not in ("all", "relay"):
        raise ConfigError(f"--ice-policy must be all or relay, got {policy!r}")
    if policy == "relay" and not turn:
        raise ConfigError("--ice-policy relay needs a TURN server (--turn)")
    transport = RTCIceTransportPolicy.RELAY if policy == "relay" else RTCIceTransportPolicy.ALL
    # An explicit empty list: aiortc would otherwise add a public STUN server.
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=transport)
