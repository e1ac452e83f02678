"""The signaling client: join a room on a Holo signaling server and exchange signals with the peer.

The protocol (JSON text messages over one WebSocket at ``/ws``) is described in
:mod:`holo.net.signaling_server`; the limits and close codes both sides share are defined here.

A background task reads the socket from the moment the room is joined, so the server's heartbeat
pings are answered even while the application is busy elsewhere; what it reads waits in a bounded
queue (``RECV_QUEUE_SIZE`` messages). When the queue is full the reader stops reading (nothing is
dropped) and the server eventually drops a client that never calls :meth:`SignalingClient.recv`.

Typical use::

    async with SignalingClient("wss://example.org:8765/ws", "kitchen", token, "alice") as client:
        if client.joined["offerer"]:
            await client.send_signal({"sdp": offer.sdp, "kind": offer.type})
        while (message := await client.recv(timeout_s=30)) is not None:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import ssl
from types import TracebackType
from typing import Any

import aiohttp

from holo.errors import ConfigError, SignalingError

__all__ = [
    "CLOSE_CODES",
    "MAX_MESSAGE_BYTES",
    "WS_PATH",
    "SignalingClient",
    "SignalingRefusal",
    "name_problem",
    "room_problem",
    "token_problem",
]

logger = logging.getLogger(__name__)

WS_PATH = "/ws"
MAX_MESSAGE_BYTES = 65536  # the largest message either side sends (bytes of UTF-8 JSON)
RECV_QUEUE_SIZE = 256  # server messages read but not yet taken by recv()
HEARTBEAT_S = 10.0  # WebSocket ping interval; a missing pong within half of it drops the connection
CLOSE_TIMEOUT_S = 3.0  # how long a closing side waits for the other's close frame

# Refusal codes in {"type": "error", "code": ...} and the WebSocket close code sent with each.
CLOSE_CODES: dict[str, int] = {
    "bad-message": 4000,
    "bad-token": 4003,
    "no-such-room": 4004,
    "join-timeout": 4008,
    "room-full": 4009,
    "name-taken": 4009,
    "server-full": 4013,
    "rate-limit": 4029,
    "too-big": 1009,
}

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ALPHABET = "1–64 characters of A–Z, a–z, 0–9, '_', '.' and '-'"
TOKEN_MIN_CHARS = 8
TOKEN_MAX_CHARS = 256

# What a close code means when the server closed without an error message first.
_CLOSE_MEANINGS = {
    1000: "the signaling server closed the connection",
    1001: "the signaling server is shutting down",
    1007: "the signaling server received a text message that was not valid UTF-8",
    1009: f"the signaling server received a message larger than its limit ({MAX_MESSAGE_BYTES // 1024} KiB by default)",
    1011: "the signaling server had an internal error",
}


def room_problem(room: object) -> str | None:
    """Why ``room`` is not a valid room name, or None when it is."""
    if isinstance(room, str) and _NAME_RE.fullmatch(room):
        return None
    return f"the room name must be {_ALPHABET}, got {_shorten(room)}"


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid participant name, or None when it is."""
    if isinstance(name, str) and _NAME_RE.fullmatch(name):
        return None
    return f"the participant name must be {_ALPHABET}, got {_shorten(name)}"


def token_problem(token: object) -> str | None:
    """Why ``token`` is not a valid room token, or None when it is (never echoes the token)."""
    if isinstance(token, str) and TOKEN_MIN_CHARS <= len(token) <= TOKEN_MAX_CHARS and token.isprintable():
        return None
    return f"the room token must be {TOKEN_MIN_CHARS}–{TOKEN_MAX_CHARS} printable characters"


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class SignalingRefusal(SignalingError):
    """The server refused this client: its reason sentence, then the protocol's code in parentheses.

    ``code`` is that code (``bad-token``, ``room-full``, ...), ``close_code`` the WebSocket close code.
    """

    def __init__(self, reason: str, *, code: str, close_code: int | None) -> None:
        super().__init__(reason)
        self.code = code
        self.close_code = close_code


class SignalingClient:
    """One participant's connection to a signaling server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        room: str,
        token: str,
        name: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"the signaling server URL must start with ws:// or wss://, got {url!r}")
        for problem in (room_problem(room), token_problem(token), name_problem(name)):
            if problem:
                raise ConfigError(problem)
        self.url = url
        self.room = room
        self.name = name
        self._token = token
        self._ssl_context = ssl_context
        self.connect_timeout_s = connect_timeout_s
        self.joined: dict[str, Any] | None = None  # the server's "joined" message once connected
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=RECV_QUEUE_SIZE)
        self._error: tuple[str, str] | None = None  # (code, reason) of the server's error message
        self._failure: SignalingError | None = None  # why the connection ended
        self._closed = False

    async def __aenter__(self) -> SignalingClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Open the socket and join the room; returns the server's ``joined`` message."""
        if self._session is not None or self._closed:
            raise SignalingError("this signaling client was already used; make a new one to join again")
        self._session = aiohttp.ClientSession()
        join = {"type": "join", "room": self.room, "token": self._token, "name": self.name}
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self._ws = await self._open(self._session)
                await self._ws.send_str(json.dumps(join))
                reply = await self._next()
        except TimeoutError:
            await self._shutdown()
            raise SignalingError(
                f"the signaling server at {self.url} did not answer within {self.connect_timeout_s:g} s"
            ) from None
        except BaseException:
            await self._shutdown()
            raise
        if reply is None or reply.get("type") != "joined":
            await self._shutdown()
            if reply is not None:
                raise SignalingError(f"the signaling server answered the join with {_shorten(reply)}")
            assert self._failure is not None
            raise self._failure
        self.joined = reply
        self._reader = asyncio.create_task(self._read_loop(), name=f"signaling reader {self.name}")
        return reply  # the caller logs the join (holo call: one line per join, which tests count)

    async def send_signal(self, data: dict[str, Any]) -> None:
        """Send ``data`` (any JSON object) to the other participant through the server."""
        ws = self._connected_ws()
        text = json.dumps({"type": "signal", "data": data})
        size = len(text.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise SignalingError(
                f"a signal of {size} bytes is larger than the signaling server accepts ({MAX_MESSAGE_BYTES} bytes)"
            )
        await self._send(ws, text)

    async def ping(self) -> None:
        """Ask the server for a ``pong`` message (arrives through :meth:`recv`)."""
        await self._send(self._connected_ws(), '{"type": "ping"}')

    async def recv(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next server message (signal, peer-joined, peer-left, pong); None after ``timeout_s``.

        Raises SignalingError (with the server's reason) once the connection has ended.
        """
        if self._reader is None or self._closed:
            raise self._failure or SignalingError("this signaling client is not connected")
        try:
            async with asyncio.timeout(timeout_s):
                item = await self._queue.get()
        except TimeoutError:
            return None
        if item is None:
            self._queue.put_nowait(None)  # the slot just freed; later calls raise too
            assert self._failure is not None
            raise self._failure
        return item

    async def close(self) -> None:
        """Say bye and close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._failure = self._failure or SignalingError("this signaling client was closed")
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                await ws.send_str('{"type": "bye"}')
        await self._shutdown()

    # -- internals ----------------------------------------------------------------------------------

    def _connected_ws(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._reader is None or self._closed or self._ws.closed:
            raise self._failure or SignalingError("this signaling client is not connected")
        return self._ws

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        try:
            await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise SignalingError(
                f"lost the connection to the signaling server at {self.url}: {exc}"
            ) from None

    async def _open(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        where = f"cannot reach the signaling server at {self.url}"
        try:
            return await session.ws_connect(
                self.url,
                ssl=self._ssl_context if self._ssl_context is not None else True,
                heartbeat=HEARTBEAT_S,
                timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT_S),
                max_msg_size=4 * MAX_MESSAGE_BYTES,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise SignalingError(
                f"{self.url} is not a Holo signaling server: it answered HTTP {exc.status} "
                "instead of accepting a WebSocket"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise SignalingError(
                f"{where}: its TLS certificate is not trusted ({exc.certificate_error})"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise SignalingError(f"{where}: the TLS handshake failed ({exc})") from None
        except aiohttp.ClientConnectorError as exc:
            raise SignalingError(f"{where}: {_os_reason(exc.os_error)}") from None
        except aiohttp.ClientError as exc:
            raise SignalingError(f"{where}: {exc or type(exc).__name__}") from None

    async def _next(self) -> dict[str, Any] | None:
        """The next JSON object from the server; None once the connection ended (``_failure`` says why)."""
        ws = self._ws
        assert ws is not None
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    obj = json.loads(msg.data)
                except (ValueError, RecursionError):
                    logger.warning("ignored a message from the signaling server that is not JSON")
                    continue
                if not isinstance(obj, dict):
                    logger.warning("ignored a message from the signaling server that is not a JSON object")
                elif obj.get("type") == "error":
                    self._error = (str(obj.get("code")), str(obj.get("reason") or "no reason given"))
                else:
                    return obj
            elif msg.type is aiohttp.WSMsgType.BINARY:
                logger.warning("ignored a binary message from the signaling server")
            else:  # CLOSE, CLOSING, CLOSED or ERROR: the connection is over
                self._failure = self._failure or self._why_closed(ws, msg)
                return None

    def _why_closed(self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> SignalingError:
        close_code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else ws.close_code
        if self._error is not None:
            code, reason = self._error
            return SignalingRefusal(f"{reason} ({code})", code=code, close_code=close_code)
        if msg.type is aiohttp.WSMsgType.CLOSE and msg.extra:
            return SignalingError(f"the signaling server closed the connection: {msg.extra}")
        if msg.type is aiohttp.WSMsgType.ERROR:
            return SignalingError(f"lost the connection to the signaling server at {self.url}: {msg.data}")
        meaning = _CLOSE_MEANINGS.get(close_code or 0)
        if meaning:
            return SignalingError(f"{meaning} (close code {close_code})")
        return SignalingError(
            f"lost the connection to the signaling server at {self.url} (close code {close_code})"
        )

    async def _read_loop(self) -> None:
        try:
            while (obj := await self._next()) is not None:
                await self._queue.put(obj)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            self._failure = self._failure or SignalingError(
                f"lost the connection to the signaling server at {self.url}: {exc}"
            )
        await self._queue.put(None)

    async def _shutdown(self) -> None:
        """Close the socket, stop the reader and close the session, whatever state they are in."""
        if self._ws is not None:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError, TimeoutError):
                await self._ws.close()
        if self._reader is not None:
            # close() above has ended the reader's receive(); it may still wait on a full queue
            self._reader.cancel()
            await asyncio.wait({self._reader})
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)  # wakes a recv() waiting in another task
        if self._session is not None:
            await self._session.close()


def _os_reason(exc: OSError) -> str:
    """``connection refused``, ``cannot resolve the host name (...)``, ... for a failed connect."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__
