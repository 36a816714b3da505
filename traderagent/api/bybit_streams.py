"""ByBit V5 WebSocket streams: one private connection per account, public connections shared by every bot.

A ``StreamConnection`` is one socket kept alive: auth (private), subscribe, a ping every 20 s, and on a drop a
reconnect with backoff (tenacity) that re-auths and re-sends every subscription. ByBit replays nothing after a
reconnect, so ``on_connected`` runs after every (re)connect: the owner reconciles over REST there.
A malformed, unknown or out-of-order message is logged and skipped; only a refused auth ends the stream
(``on_auth_failed`` names the cause). Wire facts: shared docs, bybit-v5-streams-and-protection.md section 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from ..numbers import ZERO, decimal_or, to_decimal
from ..ports import StreamFill
from .bybit_direct_client import ByBitDirectClient

log = logging.getLogger("traderagent.api.streams")

PING_INTERVAL_S = 20.0  # ByBit's recommendation
HANDSHAKE_TIMEOUT_S = 10.0
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
FILL_TYPES = frozenset({"Trade", "BustTrade", "AdlTrade"})  # not Funding, Settle...: those are no order's fill

Handler = Callable[[dict[str, Any]], Awaitable[None] | None]
Hook = Callable[[], Awaitable[None] | None]


class StreamAuthFailed(Exception):
    """ByBit refused the private stream's auth; retrying cannot help."""


class _Dropped(Exception):
    """The socket closed before it was ready (retried with backoff)."""


def ws_base(rest_url: str) -> str:
    """The stream host of a REST base URL: ``https://api[-testnet|-demo].bybit.com`` -> ``wss://stream…``;
    any other (the simulator) answers streams on its own host and port."""
    scheme, _, host = rest_url.rstrip("/").partition("://")
    if host.startswith("api") and host.endswith("bybit.com"):
        return "wss://" + host.replace("api", "stream", 1)
    return ("wss" if scheme == "https" else "ws") + "://" + host


def stream_session() -> aiohttp.ClientSession:
    """A session for streams to share: each connection holds its socket for good, so the pool has no limit
    (the REST client's session has one: ``connection_limit``)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def _call(fn: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    if fn is not None:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result


class StreamConnection:
    """One V5 WebSocket kept alive (see the module docstring). ``topics`` are re-sent after every reconnect."""

    def __init__(self, session: aiohttp.ClientSession, url: str, on_message: Handler, *,
                 auth: Callable[[], list[Any]] | None = None, on_connected: Hook | None = None,
                 on_auth_failed: Callable[[str], Awaitable[None] | None] | None = None,
                 ping_interval: float = PING_INTERVAL_S) -> None:
        self.session = session
        self.url = url
        self.on_message = on_message
        self.auth = auth
        self.on_connected = on_connected
        self.on_auth_failed = on_auth_failed
        self.ping_interval = ping_interval
        self.topics: list[str] = []
        self.healthy = False
        self.connects = 0
        self.skipped = 0  # messages logged and skipped
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._req_ids = itertools.count(1)
        self._changed = asyncio.Event()  # set whenever ``healthy`` flips

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stream:{self.url}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.healthy = False

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition`` holds, checked whenever the connection comes up or drops."""
        while not condition():
            self._changed.clear()
            await self._changed.wait()

    async def subscribe(self, topics: Iterable[str]) -> None:
        new = [t for t in topics if t not in self.topics]
        self.topics += new
        if new and self.healthy and self._ws is not None:
            await self._send({"op": "subscribe", "args": new})

    # --- the connection loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                async for attempt in AsyncRetrying(retry=retry_if_exception_type((aiohttp.ClientError, OSError,
                                                                                   TimeoutError, _Dropped)),
                                                   wait=wait_exponential(multiplier=0.05, max=15) + wait_random(0, 0.05),
                                                   before_sleep=self._note_retry):
                    with attempt:
                        await self._session_once()
        except StreamAuthFailed as exc:
            log.error("stream %s: auth refused (%s); stream stopped", self.url, exc)
            await _call(self.on_auth_failed, str(exc))

    def _note_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("stream %s: reconnecting after %r", self.url, exc)

    async def _session_once(self) -> None:
        """One socket from connect to close; returns normally after a drop once it had been healthy."""
        async with self.session.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(ws_close=2),
                                           autoping=True) as ws:
            self._ws = ws
            try:
                await self._handshake(ws)
                self.healthy = True
                self.connects += 1
                self._changed.set()
                await _call(self.on_connected)
                pinger = asyncio.create_task(self._ping(ws))
                try:
                    await self._read(ws)
                finally:
                    pinger.cancel()
            finally:
                self._ws = None
                was_healthy, self.healthy = self.healthy, False
                self._changed.set()
        if not was_healthy:
            raise _Dropped(self.url)
        log.warning("stream %s: dropped; reconnecting", self.url)

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self.auth is not None:
            await self._send({"req_id": "auth", "op": "auth", "args": self.auth()})
            reply = await self._reply(ws, "auth")
            if not reply.get("success"):
                raise StreamAuthFailed(str(reply.get("ret_msg") or "auth refused"))
        if self.topics:
            await self._send({"op": "subscribe", "args": list(self.topics)})

    async def _reply(self, ws: aiohttp.ClientWebSocketResponse, op: str) -> dict[str, Any]:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise _Dropped(f"closed during {op}")
                data = self._parse(msg.data)
                if data is not None and data.get("op") == op:
                    return data

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await self._send({"req_id": str(next(self._req_ids)), "op": "ping"})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            # no pong nor push in two ping periods: the link is dead even if TCP has not noticed
            msg = await ws.receive(timeout=2 * self.ping_interval + 5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            data = self._parse(msg.data)
            if data is None:
                continue
            if "topic" in data:
                try:
                    await _call(self.on_message, data)
                except Exception:
                    self.skipped += 1
                    log.exception("stream %s: message on %r skipped", self.url, data.get("topic"))
            elif data.get("success") is False:
                log.warning("stream %s: %s refused: %s", self.url, data.get("op"), data.get("ret_msg"))

    def _parse(self, text: str) -> dict[str, Any] | None:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.skipped += 1
            log.warning("stream %s: malformed message skipped: %.200s", self.url, text)
            return None
        return data

    async def _send(self, payload: dict[str, Any]) -> None:
        if self._ws is not None:
            await self._ws.send_str(orjson.dumps(payload).decode())


# --- private: fills and order changes of one account ----------------------------------------------
def parse_fill(row: dict[str, Any]) -> StreamFill | None:
    """A fill of an order, or None for the execution types that are not (funding, settlement...)."""
    if row.get("execType", "Trade") not in FILL_TYPES:
        return None
    return StreamFill(str(row["execId"]), str(row.get("orderLinkId") or ""), str(row["orderId"]),
                      str(row["symbol"]), str(row["side"]).lower(), to_decimal(row["execPrice"]),
                      to_decimal(row["execQty"]), decimal_or(row.get("execFee"), ZERO),
                      to_decimal(row["orderQty"]), to_decimal(row["leavesQty"]), int(row["execTime"]),
                      int(row.get("seq") or 0), str(row.get("execType", "Trade")))


class PrivateStream:
    """The ``order``, ``execution``, ``position`` and ``wallet`` topics of the account ``client`` trades for.

    ``on_fill(StreamFill)`` for each new fill (a repeated execId or an execution older than the last seen
    of its symbol is logged and skipped); ``on_order(order)``, ``on_position(rows)`` (linear, flat ones with
    size 0) and ``on_wallet(balance)`` in the REST client's shapes (``fetch_positions``, ``fetch_balance``).
    """

    def __init__(self, session: aiohttp.ClientSession, client: ByBitDirectClient, *,
                 on_fill: Callable[[StreamFill], Awaitable[None]],
                 on_order: Callable[[dict[str, Any]], Awaitable[None]],
                 on_position: Callable[[list[dict[str, Any]]], Awaitable[None] | None] | None = None,
                 on_wallet: Callable[[dict[str, dict[str, Any]]], Awaitable[None] | None] | None = None,
                 on_connected: Hook | None = None,
                 on_auth_failed: Callable[[str], Awaitable[None] | None] | None = None,
                 ping_interval: float = PING_INTERVAL_S) -> None:
        self.on_fill = on_fill
        self.on_order = on_order
        self.on_position = on_position
        self.on_wallet = on_wallet
        self._seen: dict[str, None] = {}  # execIds, insertion-ordered for trimming
        self._last_seq: dict[str, int] = {}
        self.conn = StreamConnection(session, ws_base(client.base_url) + "/v5/private", self._on_message,
                                     auth=client.ws_auth_args, on_connected=on_connected,
                                     on_auth_failed=on_auth_failed, ping_interval=ping_interval)
        self.conn.topics = list(PRIVATE_TOPICS)

    @property
    def healthy(self) -> bool:
        return self.conn.healthy

    @property
    def connects(self) -> int:
        """(Re)connects so far: state heard before the latest one may have missed pushes."""
        return self.conn.connects

    def start(self) -> None:
        self.conn.start()

    async def close(self) -> None:
        await self.conn.close()

    async def _on_message(self, msg: dict[str, Any]) -> None:
        topic, rows = msg.get("topic"), msg.get("data")
        if not isinstance(rows, list):
            raise ValueError(f"data is not a list: {rows!r:.100}")
        if topic in ("execution", "execution.linear", "execution.spot"):
            for row in rows:
                await self._one_fill(row)
        elif topic in ("order", "order.linear", "order.spot"):
            for row in rows:
                await self.on_order(ByBitDirectClient.parse_order(row))
        elif topic in ("position", "position.linear"):
            linear = [ByBitDirectClient.parse_position(r) for r in rows if r.get("category", "linear") == "linear"]
            await _call(self.on_position, linear)
        elif topic == "wallet":
            await _call(self.on_wallet, ByBitDirectClient.parse_balance(rows))
        else:
            log.info("stream: unknown topic %r skipped", topic)

    async def _one_fill(self, row: dict[str, Any]) -> None:
        try:
            fill = parse_fill(row)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            self.conn.skipped += 1
            log.warning("stream: malformed execution skipped (%r): %.200s", exc, row)
            return
        if fill is None:
            return
        if fill.exec_id in self._seen or fill.seq and fill.seq <= self._last_seq.get(fill.symbol, 0):
            self.conn.skipped += 1
            log.warning("stream: execution %s repeated or out of order (seq %d), skipped", fill.exec_id, fill.seq)
            return
        self._seen[fill.exec_id] = None
        if len(self._seen) > 10_000:
            del self._seen[next(iter(self._seen))]
        self._last_seq[fill.symbol] = max(fill.seq, self._last_seq.get(fill.symbol, 0))
        await self.on_fill(fill)


# --- public: tickers and klines shared by every bot on a symbol ------------------------------------
class PublicStreams:
    """One public connection per category; ``watch(topic, callback)`` subscribes a topic once, however many
    bots watch it. Ticker deltas are merged into the last snapshot, so a callback always gets whole tickers."""

    def __init__(self, session: aiohttp.ClientSession, rest_url: str, ping_interval: float = PING_INTERVAL_S) -> None:
        self.session = session
        self.base = ws_base(rest_url.replace("api-demo", "api"))  # demo has no public streams: mainnet's serve it
        self.ping_interval = ping_interval
        self._conns: dict[str, StreamConnection] = {}
        self._watchers: dict[str, list[Handler]] = {}
        self._tickers: dict[str, dict[str, Any]] = {}

    async def watch(self, category: str, topic: str, callback: Handler) -> None:
        self._watchers.setdefault(topic, []).append(callback)
        conn = self._conns.get(category)
        if conn is None:
            conn = self._conns[category] = StreamConnection(self.session, f"{self.base}/v5/public/{category}",
                                                            self._on_message, ping_interval=self.ping_interval)
            conn.start()
        await conn.subscribe([topic])

    def connection(self, category: str) -> StreamConnection | None:
        return self._conns.get(category)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._conns.values()))

    async def _on_message(self, msg: dict[str, Any]) -> None:
        topic = str(msg["topic"])
        data = msg["data"]
        if topic.startswith("tickers."):
            merged = self._tickers.setdefault(topic, {}) if msg.get("type") == "delta" else {}
            merged.update(data)
            self._tickers[topic] = merged
            msg = {**msg, "data": merged}
        for callback in self._watchers.get(topic, ()):
            await _call(callback, msg)
