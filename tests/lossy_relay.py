"""A user-space UDP relay that drops and delays datagrams — a lossy link for tests and benchmarks.

This kernel has no netem, so impairment happens in user space: the relay listens on a port and
forwards each client's datagrams to a fixed upstream (e.g. a TURN server), from a socket of its own
per client so the upstream sees distinct clients; replies go back the same way. Datagrams from
clients to the upstream are dropped with probability ``loss_up`` and delayed by ``delay_up_s``;
``loss_down``/``delay_down_s`` apply to the way back. Run it in its own thread with its own loop.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

__all__ = ["LossyRelay"]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._forward(
            data, self.relay._listen, self.client, self.relay.loss_down, self.relay.delay_down_s
        )


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay) -> None:
        self.relay = relay

    def connection_made(self, transport: Any) -> None:
        self.relay._listen = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._from_client(data, addr)


class LossyRelay:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        loss_up: float = 0.0,
        delay_up_s: float = 0.0,
        loss_down: float = 0.0,
        delay_down_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.loss_up, self.delay_up_s = loss_up, delay_up_s
        self.loss_down, self.delay_down_s = loss_down, delay_down_s
        self.rng = random.Random(seed)
        self.port = 0
        self.counts = {"up": 0, "up_dropped": 0, "down": 0, "down_dropped": 0}
        self._listen: Any = None
        self._clients: dict[tuple[str, int], _Upstream] = {}
        self._pending: set[asyncio.Future[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lossy-relay")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the lossy relay did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        transport, _ = self._loop.run_until_complete(
            self._loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=("127.0.0.1", 0))
        )
        self.port = transport.get_extra_info("sockname")[1]
        self._ready.set()
        self._loop.run_forever()

    def _from_client(self, data: bytes, client: tuple[str, int]) -> None:
        up = self._clients.get(client)
        if up is None:
            up = _Upstream(self, client)
            self._clients[client] = up
            self._pending.add(
                asyncio.ensure_future(
                    self._loop.create_datagram_endpoint(lambda: up, remote_addr=self.upstream)
                )
            )
        if up.transport is None:  # the upstream socket is being made; send once it exists
            self._loop.call_soon(self._from_client, data, client)
            return
        self._forward(data, up.transport, None, self.loss_up, self.delay_up_s, direction="up")

    def _forward(
        self,
        data: bytes,
        transport: Any,
        addr: tuple[str, int] | None,
        loss: float,
        delay: float,
        direction: str = "down",
    ) -> None:
        self.counts[direction] += 1
        if self.rng.random() < loss:
            self.counts[f"{direction}_dropped"] += 1
            return
        send = (lambda: transport.sendto(data, addr)) if addr else (lambda: transport.sendto(data))
        if delay > 0:
            self._loop.call_later(delay, send)
        else:
            send()

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
