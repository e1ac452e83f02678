"""The signaling server and client: a call's signaling, every refusal, hostile input, TLS, a real process.

Servers bind 127.0.0.1 (port 0, or a free port for the subprocess); every wait has a timeout; each test
checks that no task was left running and that nothing logged a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from holo.cli import main as holo_main
from holo.errors import ConfigError, SignalingError
from holo.net.signaling import MAX_MESSAGE_BYTES, SignalingClient, SignalingRefusal
from holo.net.signaling_server import (
    SignalingServer,
    add_signal_arguments,
    make_server_ssl_context,
    parse_room_spec,
)
from tests.conftest import REPO, free_port

TOKEN = "correct-horse-battery"
WS = aiohttp.WSMsgType
ENDED = (WS.CLOSE, WS.CLOSING, WS.CLOSED, WS.ERROR)


# -- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    """Whatever a test throws at the server, nothing may log an error or a traceback."""
    caplog.set_level(logging.INFO)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert not bad, "logged errors: " + "; ".join(r.getMessage() for r in bad)


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 45.0) -> None:
    """Run a scenario in a fresh event loop, then check it left no task behind."""

    async def guarded() -> None:
        async with asyncio.timeout(timeout_s):
            await coro
        await asyncio.sleep(0)
        leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leaked, f"tasks left running: {leaked}"

    asyncio.run(guarded())


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[SignalingServer]:
    server = SignalingServer(host="127.0.0.1", port=0, **options)
    await server.start()
    assert server.port != 0
    try:
        yield server
    finally:
        await server.stop()


def client(server: SignalingServer, name: str, room: str = "kitchen", token: str = TOKEN) -> SignalingClient:
    return SignalingClient(server.url, room, token, name)


async def refusal_of(
    server: SignalingServer, name: str, room: str = "kitchen", token: str = TOKEN
) -> SignalingRefusal:
    with pytest.raises(SignalingRefusal) as info:
        await client(server, name, room, token).connect()
    return info.value


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def join_message(name: str, room: str = "kitchen", token: str = TOKEN) -> str:
    return json.dumps({"type": "join", "room": room, "token": token, "name": name})


async def raw_join(session: aiohttp.ClientSession, server: SignalingServer, name: str, **kw: Any) -> Any:
    """A bare aiohttp WebSocket that has joined the kitchen (for sending what the client never would)."""
    ws = await session.ws_connect(server.url, **kw)
    await ws.send_str(join_message(name))
    reply = await ws.receive(timeout=5)
    assert reply.type is WS.TEXT and json.loads(reply.data)["type"] == "joined", reply
    return ws


async def until_closed(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Every JSON message the server sends until it closes, and the close code."""
    messages = []
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is WS.TEXT:
                messages.append(json.loads(msg.data))
            elif msg.type in ENDED:
                break
    return messages, ws.close_code


def error_code(messages: list[dict[str, Any]]) -> str | None:
    errors = [m for m in messages if m.get("type") == "error"]
    assert len(errors) <= 1, messages
    return errors[0]["code"] if errors else None


async def check_pair_works(server: SignalingServer, room: str = "fresh") -> None:
    """Two new participants can still meet and signal each other."""
    async with client(server, "ann", room) as ann, client(server, "ben", room) as ben:
        assert ben.joined is not None and ben.joined["offerer"] is True
        assert await ann.recv(5) == {"type": "peer-joined", "peer": "ben"}
        await ben.send_signal({"kind": "offer", "sdp": "v=0"})
        assert await ann.recv(5) == {"type": "signal", "from": "ben", "data": {"kind": "offer", "sdp": "v=0"}}


# -- the happy path --------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_call_signals_both_ways_and_resumes_after_a_peer_leaves() -> None:
    async def scenario() -> None:
        async with serving() as server:
            alice = client(server, "alice")
            joined = await alice.connect()
            assert joined == {
                "type": "joined",
                "room": "kitchen",
                "you": "alice",
                "peers": [],
                "offerer": False,
            }
            await alice.send_signal({"kind": "hello"})  # nobody to hear it: dropped, not an error
            await wait_until(lambda: server.stats.signals_dropped == 1)

            async with client(server, "bob") as bob:
                assert bob.joined == {
                    "type": "joined",
                    "room": "kitchen",
                    "you": "bob",
                    "peers": ["alice"],
                    "offerer": True,
                }
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
                offer = {
                    "kind": "offer",
                    "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
                    "n": [1, 2.5, None, True],
                }
                await bob.send_signal(offer)
                assert await alice.recv(5) == {"type": "signal", "from": "bob", "data": offer}
                await alice.send_signal({"kind": "answer", "sdp": "v=0"})
                assert await bob.recv(5) == {
                    "type": "signal",
                    "from": "alice",
                    "data": {"kind": "answer", "sdp": "v=0"},
                }
                await alice.ping()
                assert await alice.recv(5) == {"type": "pong"}
                assert await alice.recv(timeout_s=0.1) is None  # nothing else is waiting
                assert server.participants("kitchen") == ["alice", "bob"]
            assert await alice.recv(5) == {"type": "peer-left", "peer": "bob"}
            with pytest.raises(SignalingError, match="closed"):
                await bob.recv(1)
            with pytest.raises(SignalingError):
                await bob.send_signal({"too": "late"})

            async with client(server, "carol") as carol:  # a new participant takes the free place
                assert carol.joined is not None
                assert carol.joined["offerer"] is True and carol.joined["peers"] == ["alice"]
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "carol"}
                await alice.send_signal({"kind": "offer"})
                assert await carol.recv(5) == {"type": "signal", "from": "alice", "data": {"kind": "offer"}}
            assert await alice.recv(5) == {"type": "peer-left", "peer": "carol"}

            async with client(server, "bob"):  # bob comes back under the same name
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
            assert await alice.recv(5) == {"type": "peer-left", "peer": "bob"}

            await alice.close()
            await alice.close()  # idempotent
            await wait_until(lambda: server.room_count == 0)  # an empty room is forgotten
            async with client(server, "zed", token="a-brand-new-token"):  # so its token can change
                pass
            assert server.stats.joins == 5
            await wait_until(lambda: server.stats.leaves == 5)
            assert server.stats.signals_forwarded == 3
            assert not server.stats.refusals

    run(scenario())


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_refusals_say_why(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with serving(max_rooms=2) as server:
            async with client(server, "alice") as alice:
                refusal = await refusal_of(server, "mallory", token="not-the-token")
                assert (refusal.code, refusal.close_code) == ("bad-token", 4003)
                assert "'kitchen'" in str(refusal) and "wrong" in str(refusal) and "bad-token" in str(refusal)

                refusal = await refusal_of(server, "alice")
                assert (refusal.code, refusal.close_code) == ("name-taken", 4009)
                assert "'alice'" in str(refusal)

                async with client(server, "bob"):
                    refusal = await refusal_of(server, "carol")
                    assert (refusal.code, refusal.close_code) == ("room-full", 4009)
                    async with client(server, "x", room="hall"):  # the second of two rooms
                        refusal = await refusal_of(server, "y", room="attic")
                        assert (refusal.code, refusal.close_code) == ("server-full", 4013)
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
                assert await alice.recv(5) == {"type": "peer-left", "peer": "bob"}
                assert await alice.recv(0.05) is None  # the refused never showed up
            assert dict(server.stats.refusals) == {
                "bad-token": 1,
                "name-taken": 1,
                "room-full": 1,
                "server-full": 1,
            }

        async with serving(rooms={"kitchen": TOKEN, "hall": "hall-token"}) as server:
            refusal = await refusal_of(server, "alice", room="attic")
            assert (refusal.code, refusal.close_code) == ("no-such-room", 4004)
            assert "'attic'" in str(refusal)
            async with client(server, "alice"):
                pass
            await wait_until(lambda: server.participants("kitchen") == [])
            assert server.room_count == 2  # --room rooms stay, with their tokens
            refusal = await refusal_of(server, "alice", token="first-joiner-cannot-reset")
            assert refusal.code == "bad-token"
            async with client(server, "bob", room="hall", token="hall-token") as bob:
                assert bob.joined is not None and bob.joined["room"] == "hall"

    run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("127.0.0.1:" in w and "'kitchen' is wrong" in w for w in warnings), warnings
    assert any("127.0.0.1:" in w and "no room 'attic'" in w for w in warnings), warnings


@pytest.mark.timeout(60)
def test_client_errors_are_sentences() -> None:
    with pytest.raises(ConfigError, match="ws:// or wss://"):
        SignalingClient("http://127.0.0.1:1/ws", "kitchen", TOKEN, "alice")
    with pytest.raises(ConfigError, match="room name"):
        SignalingClient("ws://127.0.0.1:1/ws", "the kitchen", TOKEN, "alice")
    with pytest.raises(ConfigError, match="token"):
        SignalingClient("ws://127.0.0.1:1/ws", "kitchen", "short", "alice")
    with pytest.raises(ConfigError, match="participant name"):
        SignalingClient("ws://127.0.0.1:1/ws", "kitchen", TOKEN, "a" * 65)

    async def scenario() -> None:
        port = free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        with pytest.raises(SignalingError) as info:
            await SignalingClient(url, "kitchen", TOKEN, "alice").connect()
        assert str(info.value) == f"cannot reach the signaling server at {url}: connection refused"

        with socket.socket() as silent:  # accepts TCP connections but never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            url = f"ws://127.0.0.1:{silent.getsockname()[1]}/ws"
            silent_client = SignalingClient(url, "kitchen", TOKEN, "alice", connect_timeout_s=0.5)
            with pytest.raises(SignalingError, match=r"did not answer within 0\.5 s"):
                await silent_client.connect()

        async with serving() as server:
            with pytest.raises(SignalingError, match="HTTP 404"):
                await SignalingClient(
                    server.url[: -len("/ws")] + "/nope", "kitchen", TOKEN, "alice"
                ).connect()
            async with client(server, "alice") as alice:
                with pytest.raises(SignalingError, match="already used"):
                    await alice.connect()
                with pytest.raises(SignalingError, match=f"at most {MAX_MESSAGE_BYTES}|larger than"):
                    await alice.send_signal({"pad": "x" * 70_000})
                await alice.ping()  # a refused send leaves the connection working
                assert await alice.recv(5) == {"type": "pong"}

    run(scenario())


# -- hostile input ----------------------------------------------------------------------------------------

_DEEP = "[" * 20_000 + "]" * 20_000
BEFORE_JOIN: list[str | bytes] = [
    "not JSON {",
    "[1, 2, 3]",
    '"just a string"',
    json.dumps({"type": "dance"}),
    json.dumps({"room": "kitchen"}),
    json.dumps({"type": 7}),
    json.dumps({"type": "join", "room": "kitchen"}),
    json.dumps({"type": "join", "room": "the kitchen", "token": TOKEN, "name": "a"}),
    json.dumps({"type": "join", "room": "kitchen", "token": "short", "name": "a"}),
    json.dumps({"type": "join", "room": "kitchen", "token": "tab\tinside", "name": "a"}),
    json.dumps({"type": "join", "room": "kitchen", "token": TOKEN, "name": 42}),
    json.dumps({"type": "join", "room": "k" * 65, "token": TOKEN, "name": "a"}),
    json.dumps({"type": "signal", "data": {}}),
    json.dumps({"type": "ping"}),
    '{"type": "join", "room": NaN, "token": "xxxxxxxxxx", "name": "a"}',
    '{"type": "join", "nested": ' + _DEEP + "}",
    b"\x00\x01binary",
]
AFTER_JOIN: list[str | bytes] = [
    join_message("again"),
    json.dumps({"type": "signal"}),
    json.dumps({"type": "signal", "data": [1, 2]}),
    json.dumps({"type": "signal", "data": "sdp"}),
    json.dumps({"type": "hello"}),
    '{"type": "signal", "data": {"x": Infinity}}',
    '{"type": "signal", "data": {"x": ' + _DEEP + "}}",
    "[]",
    b"\x89PNG",
]


@pytest.mark.timeout(60)
def test_garbage_is_refused_and_the_server_carries_on() -> None:
    async def scenario() -> None:
        async with serving() as server, aiohttp.ClientSession() as session:
            async with client(server, "alice") as alice:
                for payload in BEFORE_JOIN:
                    ws = await session.ws_connect(server.url)
                    if isinstance(payload, bytes):
                        await ws.send_bytes(payload)
                    else:
                        await ws.send_str(payload)
                    messages, close_code = await until_closed(ws)
                    assert (error_code(messages), close_code) == ("bad-message", 4000), payload[:80]
                    assert messages[-1]["reason"]
                for payload in AFTER_JOIN:
                    ws = await raw_join(session, server, "mallory")
                    assert await alice.recv(5) == {"type": "peer-joined", "peer": "mallory"}
                    if isinstance(payload, bytes):
                        await ws.send_bytes(payload)
                    else:
                        await ws.send_str(payload)
                    messages, close_code = await until_closed(ws)
                    assert (error_code(messages), close_code) == ("bad-message", 4000), payload[:80]
                    assert await alice.recv(5) == {"type": "peer-left", "peer": "mallory"}

                ws = await session.ws_connect(server.url)  # a text frame that is not UTF-8
                await ws.send_frame(b"\xff\xfe{}", WS.TEXT)
                messages, close_code = await until_closed(ws)
                assert close_code == 1007 and error_code(messages) is None

                await alice.ping()  # the bystander was never disturbed
                assert await alice.recv(5) == {"type": "pong"}

            for path in ("/", "/other", "/ws/x", "/ws.json"):
                async with session.get(server.url.replace("/ws", path)) as response:
                    assert response.status == 404, path
            async with session.get(server.url.replace("ws://", "http://")) as response:
                assert response.status == 426  # /ws without a WebSocket upgrade
            junk = [
                b"\x16\x03\x01\x00\xff" + bytes(300),  # TLS on the plain port
                b"GARBAGE\r\n\r\n",
                b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",
            ]
            for data in junk:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(data)
                answer = await asyncio.wait_for(reader.read(100), 5)
                assert answer.startswith(b"HTTP/1.") and b" 400 " in answer
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

            await check_pair_works(server)
            assert server.stats.refusals["bad-message"] == len(BEFORE_JOIN) + len(AFTER_JOIN) + 1

    run(scenario())


@pytest.mark.timeout(60)
def test_oversized_messages_close_the_connection_and_64_kib_passes() -> None:
    async def scenario() -> None:
        async with serving() as server, aiohttp.ClientSession() as session:
            async with client(server, "alice") as alice:
                ws = await raw_join(session, server, "bob")
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
                base = len(json.dumps({"type": "signal", "data": {"pad": ""}}))
                exactly = json.dumps({"type": "signal", "data": {"pad": "x" * (MAX_MESSAGE_BYTES - base)}})
                assert len(exactly.encode()) == MAX_MESSAGE_BYTES
                await ws.send_str(exactly)
                forwarded = await alice.recv(5)
                assert forwarded is not None and len(forwarded["data"]["pad"]) == MAX_MESSAGE_BYTES - base

                await ws.send_str(json.dumps({"type": "signal", "data": {"pad": "x" * 70 * 1024}}))
                messages, close_code = await until_closed(ws)
                assert (error_code(messages), close_code) == (None, 1009)  # aiohttp closes at once
                assert await alice.recv(5) == {"type": "peer-left", "peer": "bob"}

                ws = await session.ws_connect(server.url)  # too big before joining, and binary
                await ws.send_bytes(b"\0" * 70 * 1024)
                messages, close_code = await until_closed(ws)
                assert (error_code(messages), close_code) == (None, 1009)

            # what the client says when the server closes with 1009 (no error message to read)
            async with client(server, "carol") as carol:
                assert carol._ws is not None
                await carol._ws.send_str("x" * (MAX_MESSAGE_BYTES + 1))
                with pytest.raises(SignalingError, match="larger than its limit"):
                    await carol.recv(5)
            await check_pair_works(server)
            assert server.stats.refusals["too-big"] == 3

    run(scenario())


@pytest.mark.timeout(60)
def test_join_timeout() -> None:
    async def scenario() -> None:
        async with serving(join_timeout_s=0.5) as server, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(server.url)
            start = time.monotonic()
            await ws.ping()  # WebSocket pings do not extend the deadline
            messages, close_code = await until_closed(ws)
            assert (error_code(messages), close_code) == ("join-timeout", 4008)
            assert 0.4 < time.monotonic() - start < 4.0
            assert "0.5 s" in messages[-1]["reason"]
            await check_pair_works(server)

    run(scenario())


@pytest.mark.timeout(60)
def test_rate_limit() -> None:
    async def scenario() -> None:
        async with serving() as server, aiohttp.ClientSession() as session:
            async with client(server, "alice") as alice:
                ws = await raw_join(session, server, "flood")
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "flood"}
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    for _ in range(300):
                        await ws.send_str('{"type": "ping"}')
                messages, close_code = await until_closed(ws)
                assert (error_code(messages), close_code) == ("rate-limit", 4029)
                pongs = [m for m in messages if m["type"] == "pong"]
                assert 90 <= len(pongs) < 100  # the join counted too
                assert await alice.recv(5) == {"type": "peer-left", "peer": "flood"}
                for _ in range(50):  # a polite pace is fine
                    await alice.ping()
                    assert await alice.recv(5) == {"type": "pong"}
            assert server.stats.refusals == {"rate-limit": 1}

    run(scenario())


@pytest.mark.timeout(60)
def test_heartbeat_drops_a_silent_peer_but_not_a_quiet_client() -> None:
    async def scenario() -> None:
        async with serving(heartbeat_s=1.0) as server, aiohttp.ClientSession() as session:
            async with client(server, "alice") as alice:
                zombie = await raw_join(session, server, "zombie", autoping=False)  # never answers pings
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "zombie"}
                assert await alice.recv(10) == {"type": "peer-left", "peer": "zombie"}
                await zombie.close()
                await asyncio.sleep(2.5)  # alice does not read for a while: her reader still answers pings
                await alice.ping()
                assert await alice.recv(5) == {"type": "pong"}
            assert not server.stats.refusals

    run(scenario())


@pytest.mark.timeout(60)
def test_a_peer_that_stops_reading_is_dropped_without_stalling_the_other() -> None:
    async def scenario() -> None:
        async with serving() as server, aiohttp.ClientSession() as session:
            stalled = await raw_join(session, server, "stalled")  # joins, then never reads again
            async with client(server, "alice") as alice:
                pad = "x" * 60_000
                left = None
                start = time.monotonic()
                for i in range(1000):  # about 5 MB/s at 80 messages/s, under the rate limit
                    await alice.send_signal({"pad": pad, "i": i})
                    left = await alice.recv(timeout_s=0)
                    if left is not None:
                        break
                    await asyncio.sleep(0.0125)
                assert left == {"type": "peer-left", "peer": "stalled"}
                assert time.monotonic() - start < 10
                await alice.ping()  # alice was never held up, nor rate-limited
                assert await alice.recv(5) == {"type": "pong"}
            await stalled.close()
            assert not server.stats.refusals
            assert server.stats.signals_dropped > 0  # at least the signal that found stalled's buffer full

    run(scenario())


# -- TLS --------------------------------------------------------------------------------------------------


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holo test signaling")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.timeout(60)
def test_tls(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path)
    trusting = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> None:
        async with serving(ssl_context=make_server_ssl_context(str(cert), str(key))) as server:
            assert server.url.startswith("wss://127.0.0.1:")
            alice = SignalingClient(server.url, "kitchen", TOKEN, "alice", ssl_context=trusting)
            bob = SignalingClient(server.url, "kitchen", TOKEN, "bob", ssl_context=trusting)
            async with alice, bob:
                assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
                await bob.send_signal({"kind": "offer"})
                assert await alice.recv(5) == {"type": "signal", "from": "bob", "data": {"kind": "offer"}}
            with pytest.raises(SignalingError, match="TLS certificate is not trusted"):
                await SignalingClient(server.url, "kitchen", TOKEN, "carol").connect()
            plain = server.url.replace("wss://", "ws://")
            with pytest.raises(SignalingError, match=f"cannot reach the signaling server at {plain}"):
                await SignalingClient(plain, "kitchen", TOKEN, "carol").connect()

    run(scenario())


@pytest.mark.timeout(60)
def test_command_line_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_signal_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.max_rooms, args.room, args.tls_cert) == (
        "0.0.0.0",
        8765,
        1000,
        None,
        None,
    )
    assert parse_room_spec(f"kitchen:{TOKEN}:with:colons") == ("kitchen", f"{TOKEN}:with:colons")
    for spec in ("kitchen", "the kitchen:" + TOKEN, "kitchen:short"):
        with pytest.raises(ConfigError):
            parse_room_spec(spec)

    missing = tmp_path / "missing.pem"
    assert holo_main(["signal", "--port", "0", "--tls-cert", str(missing), "--tls-key", str(missing)]) == 2
    assert f"the TLS certificate file {missing} does not exist" in capsys.readouterr().err
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    assert holo_main(["signal", "--port", "0", "--tls-cert", str(not_pem), "--tls-key", str(not_pem)]) == 2
    assert f"the TLS certificate {not_pem} and key {not_pem} could not be loaded" in capsys.readouterr().err
    assert holo_main(["signal", "--port", "0", "--tls-cert", str(not_pem)]) == 2
    assert "--tls-cert and --tls-key must be given together" in capsys.readouterr().err
    assert holo_main(["signal", "--port", "0", "--room", "kitchen"]) == 2
    assert "ROOM:TOKEN" in capsys.readouterr().err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert holo_main(["signal", "--host", "127.0.0.1", "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# -- a real process ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_end_to_end_with_a_server_process() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    command = [
        sys.executable,
        "-m",
        "holo.cli",
        "-v",
        "signal",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--room",
        f"kitchen:{TOKEN}",
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    terminated_at = 0.0
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, "the server process never accepted connections"
            time.sleep(0.05)

        async def scenario() -> None:
            nonlocal terminated_at
            async with SignalingClient(url, "kitchen", TOKEN, "alice") as alice:
                async with SignalingClient(url, "kitchen", TOKEN, "bob") as bob:
                    assert await alice.recv(5) == {"type": "peer-joined", "peer": "bob"}
                    await bob.send_signal({"kind": "offer", "sdp": "v=0"})
                    assert await alice.recv(5) == {
                        "type": "signal",
                        "from": "bob",
                        "data": {"kind": "offer", "sdp": "v=0"},
                    }
                    await alice.send_signal({"kind": "answer", "sdp": "v=0"})
                    assert await bob.recv(5) == {
                        "type": "signal",
                        "from": "alice",
                        "data": {"kind": "answer", "sdp": "v=0"},
                    }
                assert await alice.recv(5) == {"type": "peer-left", "peer": "bob"}
                with pytest.raises(SignalingRefusal, match="no room 'attic'"):
                    await SignalingClient(url, "attic", TOKEN, "eve").connect()
                terminated_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)  # alice is still connected: she is told, not left hanging
                with pytest.raises(SignalingError, match="shutting down"):
                    await alice.recv(10)

        run(scenario())
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert time.monotonic() - terminated_at < 5.0
    assert out.strip().splitlines() == [f"holo signal: serving {url} (rooms kitchen; Ctrl-C stops)"]
    assert "Traceback" not in err, err
    assert "refused 127.0.0.1:" in err and "no room 'attic'" in err
    assert "alice joined room kitchen" in err
