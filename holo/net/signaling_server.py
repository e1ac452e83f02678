"""Holo signaling server: introduces the two peers of a call so they can talk WebRTC directly.

Each participant opens one WebSocket at ``/ws`` (every other path is 404) and exchanges JSON text
messages; the server never sees media, only the few messages the peers need to find each other.

Client to server:

* ``{"type": "join", "room": ROOM, "token": TOKEN, "name": NAME}`` — the first message, within
  5 s of connecting. ROOM and NAME are 1–64 characters of ``[A-Za-z0-9_.-]``; TOKEN is 8–256
  printable characters. The first participant to join a room creates it and sets its token (the
  server keeps only a salted SHA-256 of it). A server started with ``--room ROOM:TOKEN`` has only
  those rooms, with those tokens.
* ``{"type": "signal", "data": {...}}`` — any JSON object (SDP offer or answer, ICE candidate, call
  control), forwarded untouched to the other participant. A signal sent while alone is dropped.
* ``{"type": "ping"}`` — answered with ``{"type": "pong"}``.
* ``{"type": "bye"}`` — the server closes the connection normally.

Server to client:

* ``{"type": "joined", "room": ROOM, "you": NAME, "peers": [NAMES], "offerer": BOOL}`` — the join
  worked; ``offerer`` is true for the participant who joined second, who sends the WebRTC offer.
* ``{"type": "peer-joined", "peer": NAME}`` and ``{"type": "peer-left", "peer": NAME}`` — the other
  participant arrived or left (bye, closed socket, or a dead connection found by the WebSocket
  heartbeat). A participant that comes back simply joins again, and the call resumes by itself.
* ``{"type": "signal", "from": NAME, "data": {...}}`` and ``{"type": "pong"}``.
* ``{"type": "error", "code": CODE, "reason": SENTENCE}`` — a refusal, followed by a close with the
  code's WebSocket close code: ``bad-message`` 4000 (not JSON, not an object, missing or invalid
  fields, unknown type, binary, anything before join, a second join), ``bad-token`` 4003,
  ``no-such-room`` 4004, ``join-timeout`` 4008, ``room-full`` and ``name-taken`` 4009,
  ``server-full`` 4013 (``--max-rooms``), ``rate-limit`` 4029 (more than 100 messages in a second)
  and ``too-big`` 1009 (a message over 64 KiB; the WebSocket layer closes at once, without the
  error message). An empty room is forgotten, except the ``--room`` rooms, which keep their token.

Every connection is bounded: a message is at most 64 KiB (never buffered beyond that), at most 100
arrive per second, and a participant may leave at most 1 MiB of what the server sent it unread
before it is disconnected, so a stalled peer never holds up the other's signals. The heartbeat
pings every 10 s and drops a connection whose pong is 5 s late; until then a dead connection keeps
its name, so a client that reconnects after a network failure may be told ``name-taken`` for up to
about 15 s and should retry.

A room holds two participants, which is what a Holo call is. Larger rooms would keep this server
and this protocol: each newcomer would be told every present peer, and every pair would negotiate
its own peer connection through the server (a full mesh), with a ``to`` field on ``signal``
naming the one peer a message is for, and ``from`` on the way out as now; ``offerer`` would become
per pair (the later joiner offers to each earlier one). A mesh sends every cloud N-1 times, so
beyond about four participants an SFU (one media server that receives each stream once and
forwards it to the others) would replace the mesh, and the server would introduce each
participant to the SFU instead of to every peer.

Run it with ``holo signal`` (``--tls-cert``/``--tls-key`` serve ``wss://``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from holo.errors import ConfigError, SignalingError
from holo.net.signaling import (
    CLOSE_CODES,
    CLOSE_TIMEOUT_S,
    HEARTBEAT_S,
    MAX_MESSAGE_BYTES,
    WS_PATH,
    name_problem,
    room_problem,
    token_problem,
)

__all__ = [
    "SignalingServer",
    "SignalingStats",
    "add_signal_arguments",
    "make_server_ssl_context",
    "parse_room_spec",
    "run_signal",
]

logger = logging.getLogger(__name__)

ROOM_CAPACITY = 2
SEND_BUFFER_BYTES = 1 << 20  # unread data a participant may have pending before it is dropped
SEND_TIMEOUT_S = 10.0  # a send that still cannot complete after this long drops its participant
MESSAGE_TYPES = frozenset({"join", "signal", "ping", "bye"})


@dataclass
class SignalingStats:
    """Counters of what the server did, for tests and logs."""

    connections: int = 0  # WebSocket connections accepted
    joins: int = 0
    leaves: int = 0
    signals_forwarded: int = 0
    signals_dropped: int = 0  # signals that reached nobody (sender alone, or the peer being dropped)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)  # by code


class _Refusal(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    address: str
    recent: collections.deque[float]  # arrival times of the last max_messages_per_s messages
    broken: bool = False  # dropped for not reading: send nothing more


@dataclass(eq=False)
class _Participant:
    name: str
    room: _Room
    conn: _Connection


@dataclass(eq=False)
class _Room:
    name: str
    salt: bytes
    token_digest: bytes
    fixed: bool  # a --room room: never forgotten
    members: dict[str, _Participant] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, token: str, *, fixed: bool) -> _Room:
        salt = os.urandom(16)
        return cls(name, salt, _digest(salt, token), fixed)

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_digest, _digest(self.salt, token))


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode("utf-8")).digest()


class SignalingServer:
    """The aiohttp WebSocket server; ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 8765,
        rooms: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_rooms: int = 1000,
        join_timeout_s: float = 5.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_messages_per_s: int = 100,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        """``rooms`` (room → token), when given and not empty, are the only rooms the server has."""
        if max_rooms < 1 or max_messages_per_s < 1 or max_message_bytes < 256:
            raise ConfigError(
                "max_rooms and max_messages_per_s must be at least 1, max_message_bytes at least 256"
            )
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_rooms = max_rooms
        self.join_timeout_s = join_timeout_s
        self.max_message_bytes = max_message_bytes
        self.max_messages_per_s = max_messages_per_s
        self.heartbeat_s = heartbeat_s
        self.stats = SignalingStats()
        self._restricted = bool(rooms)
        self._rooms: dict[str, _Room] = {}
        for room, token in (rooms or {}).items():
            problem = room_problem(room) or token_problem(token)
            if problem:
                raise ConfigError(f"--room {room}: {problem}")
            self._rooms[room] = _Room.create(room, token, fixed=True)
        self._connections: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl_context else 'ws'}://{host}:{self.port}{WS_PATH}"

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def participants(self, room: str) -> list[str]:
        """Names in ``room`` in the order they joined (empty for an unknown room)."""
        found = self._rooms.get(room)
        return list(found.members) if found else []

    async def start(self) -> None:
        """Bind and serve; ``self.port`` is the real port afterwards (also when 0 was asked for)."""
        if self._runner is not None:
            raise SignalingError("the signaling server is already running")
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle, allow_head=False)
        runner = web.AppRunner(
            app, access_log=None, logger=_HttpLog(_http_logger), shutdown_timeout=CLOSE_TIMEOUT_S
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SignalingError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        logger.info("signaling server listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        closing = [_close(ws, 1001, "shutting down") for ws in list(self._connections)]
        await asyncio.gather(*closing, return_exceptions=True)
        await runner.cleanup()
        logger.info("signaling server on %s stopped", self.url)

    # -- one connection -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat_s,
            max_msg_size=self.max_message_bytes + 1,  # aiohttp refuses sizes >= max_msg_size
            compress=False,
            timeout=CLOSE_TIMEOUT_S,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(
                status=426,
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
                text="This is a Holo signaling server: connect with a WebSocket (ws:// or wss://).\n",
            )
        address = _address_of(request)
        try:
            await ws.prepare(request)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            logger.info("WebSocket handshake with %s failed: %s", address, exc)
            return ws
        if request.transport is not None:
            request.transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)
        self.stats.connections += 1
        self._connections.add(ws)
        conn = _Connection(ws, request, address, collections.deque(maxlen=self.max_messages_per_s))
        participant: _Participant | None = None
        try:
            participant = await self._join(conn)
            if participant is not None:
                await self._serve(participant)
        except _Refusal as refusal:
            await self._refuse(conn, refusal)
        finally:
            if participant is not None:
                await self._leave(participant)
            if not ws.closed:
                await _close(ws, 1000, "")
            self._connections.discard(ws)
        return ws

    async def _join(self, conn: _Connection) -> _Participant | None:
        try:
            async with asyncio.timeout(self.join_timeout_s):
                msg = await conn.ws.receive()
        except TimeoutError:
            raise _Refusal(
                "join-timeout", f"no join message arrived within {self.join_timeout_s:g} s of connecting"
            ) from None
        message = self._decode(conn, msg)
        if message is None:
            return None
        if message["type"] != "join":
            raise _Refusal(
                "bad-message", f"the first message must be a join, not a {message['type']} message"
            )
        missing = [key for key in ("room", "token", "name") if key not in message]
        if missing:
            raise _Refusal(
                "bad-message", f"a join needs 'room', 'token' and 'name'; {', '.join(missing)} missing"
            )
        room_name, token, name = message["room"], message["token"], message["name"]
        problem = room_problem(room_name) or name_problem(name) or token_problem(token)
        if problem:
            raise _Refusal("bad-message", f"the join was refused because {problem}")
        assert isinstance(room_name, str) and isinstance(token, str) and isinstance(name, str)
        room = self._rooms.get(room_name)
        if room is None:
            if self._restricted:
                raise _Refusal("no-such-room", f"there is no room {room_name!r} on this server")
            if len(self._rooms) >= self.max_rooms:
                raise _Refusal("server-full", f"the server already has its maximum of {self.max_rooms} rooms")
            room = self._rooms[room_name] = _Room.create(room_name, token, fixed=False)
        elif not room.token_matches(token):
            raise _Refusal("bad-token", f"the token for room {room_name!r} is wrong")
        if name in room.members:
            raise _Refusal("name-taken", f"someone named {name!r} is already in room {room_name!r}")
        if len(room.members) >= ROOM_CAPACITY:
            raise _Refusal("room-full", f"room {room_name!r} already has {ROOM_CAPACITY} participants")
        peers = list(room.members.values())
        participant = _Participant(name, room, conn)
        room.members[name] = participant
        self.stats.joins += 1
        logger.info(
            "%s joined room %s from %s (%d/%d)",
            name,
            room_name,
            conn.address,
            len(room.members),
            ROOM_CAPACITY,
        )
        await self._send(
            participant,
            {
                "type": "joined",
                "room": room_name,
                "you": name,
                "peers": [p.name for p in peers],
                "offerer": bool(peers),
            },
        )
        for peer in peers:
            await self._send(peer, {"type": "peer-joined", "peer": name})
        return participant

    async def _serve(self, participant: _Participant) -> None:
        conn = participant.conn
        while True:
            message = self._decode(conn, await conn.ws.receive())
            if message is None:
                return
            kind = message["type"]
            if kind == "signal":
                data = message.get("data")
                if not isinstance(data, dict):
                    raise _Refusal("bad-message", "a signal message needs 'data', a JSON object")
                await self._forward(participant, data)
            elif kind == "ping":
                await self._send(participant, {"type": "pong"})
            elif kind == "bye":
                await _close(conn.ws, 1000, "goodbye")
                return
            else:
                raise _Refusal(
                    "bad-message",
                    f"already joined room {participant.room.name!r}; a second join is not allowed",
                )

    async def _forward(self, sender: _Participant, data: dict[str, Any]) -> None:
        others = [p for p in sender.room.members.values() if p is not sender]
        if not others:
            self.stats.signals_dropped += 1
            logger.debug("dropped a signal from %s: alone in room %s", sender.name, sender.room.name)
            return
        try:
            text = json.dumps({"type": "signal", "from": sender.name, "data": data})
        except (ValueError, RecursionError):
            raise _Refusal("bad-message", "a signal's data is nested too deeply to forward") from None
        for other in others:
            if await self._send_text(other, text):
                self.stats.signals_forwarded += 1
            else:
                self.stats.signals_dropped += 1

    async def _leave(self, participant: _Participant) -> None:
        room = participant.room
        if room.members.get(participant.name) is not participant:
            return
        del room.members[participant.name]
        self.stats.leaves += 1
        if not room.members and not room.fixed and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
        logger.info("%s left room %s", participant.name, room.name)
        for other in list(room.members.values()):
            await self._send(other, {"type": "peer-left", "peer": participant.name})

    def _decode(self, conn: _Connection, msg: aiohttp.WSMessage) -> dict[str, Any] | None:
        """The message as a JSON object with a known ``type``; None when the peer went away."""
        if msg.type is aiohttp.WSMsgType.ERROR:
            exc = msg.data
            if isinstance(exc, aiohttp.WebSocketError):  # aiohttp has already closed the socket
                if exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                    raise _Refusal("too-big", f"a message was larger than {self.max_message_bytes} bytes")
                raise _Refusal("bad-message", f"the WebSocket stream was malformed ({exc})")
            logger.info("lost the connection to %s: %s", conn.address, exc or type(exc).__name__)
            return None
        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return None  # CLOSE, CLOSING or CLOSED
        now = asyncio.get_running_loop().time()
        recent = conn.recent
        if len(recent) == recent.maxlen and now - recent[0] < 1.0:
            raise _Refusal(
                "rate-limit", f"more than {self.max_messages_per_s} messages arrived within a second"
            )
        recent.append(now)
        if msg.type is aiohttp.WSMsgType.BINARY:
            raise _Refusal("bad-message", "binary messages are not part of the protocol; send JSON text")
        try:
            message = json.loads(msg.data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise _Refusal("bad-message", "a message was not valid JSON (or was nested too deeply)") from None
        if not isinstance(message, dict):
            raise _Refusal(
                "bad-message", f"a message must be a JSON object, not a JSON {type(message).__name__}"
            )
        kind = message.get("type")
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            known = ", ".join(sorted(MESSAGE_TYPES))
            if "type" not in message:
                raise _Refusal("bad-message", f"a message needs a 'type', one of {known}")
            shown = repr(kind) if len(repr(kind)) <= 40 else repr(kind)[:37] + "..."
            raise _Refusal("bad-message", f"message type {shown} is not one of {known}")
        return message

    async def _refuse(self, conn: _Connection, refusal: _Refusal) -> None:
        self.stats.refusals[refusal.code] += 1
        logger.warning("refused %s (%s): %s", conn.address, refusal.code, refusal.reason)
        ws = conn.ws
        if ws.closed:
            return
        error = json.dumps({"type": "error", "code": refusal.code, "reason": refusal.reason})
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError, TimeoutError):
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send_str(error)
        await _close(ws, CLOSE_CODES[refusal.code], refusal.reason)

    async def _send(self, participant: _Participant, message: dict[str, Any]) -> bool:
        return await self._send_text(participant, json.dumps(message))

    async def _send_text(self, participant: _Participant, text: str) -> bool:
        """Send without waiting on a slow reader: one that leaves too much unread is disconnected.

        The connection's write buffer may hold SEND_BUFFER_BYTES (its high-water mark is raised to
        that), so a send never waits for the peer to read and one participant cannot stall the
        other's handler; a peer that falls further behind is dropped (its handler then cleans up).
        """
        conn = participant.conn
        transport = conn.request.transport
        if conn.ws.closed or conn.broken or transport is None or transport.is_closing():
            return False
        unread = transport.get_write_buffer_size()
        if unread + len(text) > SEND_BUFFER_BYTES:
            self._disconnect(participant, f"it left {unread} bytes unread")
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await conn.ws.send_str(text)
            return True
        except (ConnectionError, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            self._disconnect(participant, f"sending to it failed ({exc or type(exc).__name__})")
            return False

    def _disconnect(self, participant: _Participant, why: str) -> None:
        conn = participant.conn
        if not conn.broken:
            conn.broken = True
            logger.info("disconnecting %s (%s): %s", participant.name, conn.address, why)
        if conn.request.transport is not None:
            conn.request.transport.abort()  # close() would wait for the unread data to drain


_http_logger = logging.getLogger(f"{__name__}.http")


class _HttpLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's log of this server's HTTP layer, where a malformed request is one line, not a traceback.

    Junk that is not HTTP (TLS or scanners on a plain port) stays at debug level, as aiohttp has it;
    other malformed requests (oversized headers, bad upgrades, ...) become a warning naming the address.
    Anything else, such as an exception escaping a handler, is logged as aiohttp logs it.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            address = args[0] if args else "an unknown address"
            reason = " ".join(str(exc.message).split())[:200]
            self.logger.log(
                min(level, logging.WARNING), "refused a malformed HTTP request from %s: %s", address, reason
            )
            return
        super().log(level, msg, *args, **kwargs)


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close with ``code`` and ``reason`` (cut to the 123 bytes a close frame holds), never raising."""
    message = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S + 1.0):
            await ws.close(code=code, message=message)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _address_of(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return request.remote or "an unknown address"


# -- command line ---------------------------------------------------------------------------------


def parse_room_spec(text: str) -> tuple[str, str]:
    """``ROOM:TOKEN`` → (room, token), checked like a join."""
    room, sep, token = text.partition(":")
    if not sep:
        raise ConfigError(f"--room must be ROOM:TOKEN, got {text.split(':')[0]!r} without a token")
    problem = room_problem(room) or token_problem(token)
    if problem:
        raise ConfigError(f"--room {room}:…: {problem}")
    return room, token


def make_server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context from PEM files, or a SignalingError sentence naming the bad file."""
    for kind, path in (("certificate", cert_file), ("key", key_file)):
        if not os.path.isfile(path):
            raise SignalingError(f"the TLS {kind} file {path} does not exist")
        if not os.access(path, os.R_OK):
            raise SignalingError(f"the TLS {kind} file {path} is not readable")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SignalingError(
            f"the TLS certificate {cert_file} and key {key_file} could not be loaded: {exc}"
        ) from None
    return context


def add_signal_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``holo signal``."""
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        metavar="H",
        help="address to listen on (default 0.0.0.0: every IPv4 interface)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        metavar="P",
        help="TCP port to listen on (default 8765; 0 picks a free one)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="C",
        help="PEM certificate (chain) file; with --tls-key, serve wss:// (default: plain ws://)",
    )
    parser.add_argument("--tls-key", metavar="K", help="PEM private key file of --tls-cert")
    parser.add_argument(
        "--room",
        action="append",
        default=None,
        metavar="ROOM:TOKEN",
        help="only serve this room, with this token (8–256 printable characters); repeat for several rooms "
        "(default: any room, its token set by whoever joins it first)",
    )
    parser.add_argument(
        "--max-rooms",
        type=int,
        default=1000,
        metavar="N",
        help="refuse to create rooms beyond N at a time (default 1000)",
    )


def run_signal(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (status 130) or SIGTERM (status 0), printing the URL served."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0–65535, got {args.port}")
    if args.max_rooms < 1:
        raise ConfigError(f"--max-rooms must be at least 1, got {args.max_rooms}")
    rooms: dict[str, str] = {}
    for spec in args.room or ():
        room, token = parse_room_spec(spec)
        if room in rooms:
            raise ConfigError(f"--room {room} is given twice")
        rooms[room] = token
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    ssl_context = make_server_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    server = SignalingServer(
        host=args.host, port=args.port, rooms=rooms or None, ssl_context=ssl_context, max_rooms=args.max_rooms
    )
    return asyncio.run(_serve_until_signalled(server))


async def _serve_until_signalled(server: SignalingServer) -> int:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stopped.set()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        await server.start()
        rooms = f"rooms {', '.join(server._rooms)}" if server._restricted else "any room"
        print(f"holo signal: serving {server.url} ({rooms}; Ctrl-C stops)", flush=True)
        await stopped.wait()
    finally:
        await server.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)
    return 130 if received and received[0] == signal.SIGINT else 0
