"""The simulator's V5 WebSocket side: /v5/public/{linear,spot} (tickers, kline) and /v5/private (auth, order,
execution, position, wallet), with ByBit's acknowledgement and pong shapes (shared docs,
bybit-v5-streams-and-protection.md section 1). ``drop_all`` is the test hook that cuts every socket at once.

As ByBit pushes them: a linear ticker as one snapshot after the subscribe, then deltas of the changed fields
(spot: snapshots only); a kline of every interval the REST endpoint serves, the forming candle at every move and,
when a candle of that interval closes, that candle with ``confirm`` true first; a position (``entryPrice`` where
REST says ``avgPrice``) after every change of a linear order and at every funding, and the wallet after every
order change (margin or coins locked, fills) and funding (no snapshot of either on subscribe).

Pushes are queued per socket and written by that socket's own writer, so the matching engine (synchronous)
can publish without waiting and every socket sees its messages in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from traderagent.sim import wire
from traderagent.sim.market import INTERVALS

if TYPE_CHECKING:
    from traderagent.sim.matching import Account, Execution, Order
    from traderagent.sim.server import ExchangeSimulator

log = logging.getLogger(__name__)

PRIVATE_TOPICS = frozenset({"order", "execution", "position", "wallet"})


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    category: str  # "linear", "spot" or "private"
    conn_id: str = field(default_factory=lambda: secrets.token_hex(10))
    topics: set[str] = field(default_factory=set)
    account: Account | None = None
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    tickers: dict[str, dict] = field(default_factory=dict)  # topic -> the ticker last sent (deltas follow it)

    def push(self, message: dict) -> None:
        self.queue.put_nowait(json.dumps(message, separators=(",", ":")))


class StreamServer:
    """Every open stream socket of one simulator, and the pushes the engine and the replay cause."""

    def __init__(self, sim: ExchangeSimulator, now_ms: Callable[[], int]) -> None:
        self.sim = sim
        self.now_ms = now_ms
        self.sockets: set[_Socket] = set()
        self.pushed = 0  # execution rows pushed (tests: the stream did carry fills)
        self._subscribed = asyncio.Event()  # set at every subscribe (tests wait on it, never sleep)
        self._open = asyncio.Event()  # cleared by ``hold``: new sockets wait (a gap a test controls)
        self._open.set()
        sim.engine.on_change = self.on_order_change

    def add_routes(self, app: web.Application) -> None:
        for category in ("linear", "spot"):
            app.router.add_get(f"/v5/public/{category}", self._handler(category))
        app.router.add_get("/v5/private", self._handler("private"))

    def _handler(self, category: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.WebSocketResponse:
            await self._open.wait()
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            sock = _Socket(ws, category)
            self.sockets.add(sock)
            writer = asyncio.create_task(self._write(sock))
            try:
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT:
                        self._on_request(sock, msg.data)
            finally:
                self.sockets.discard(sock)
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            return ws
        return handle

    @staticmethod
    async def _write(sock: _Socket) -> None:
        while True:
            text = await sock.queue.get()
            try:
                await sock.ws.send_str(text)
            except ConnectionResetError:  # the peer went away mid-push (a desk killed): its handler ends
                return

    async def drop_all(self) -> int:
        """Close every socket without notice, as a maintenance restart does; returns how many."""
        dropped = list(self.sockets)
        for sock in dropped:
            await sock.ws.close()
        return len(dropped)

    def hold(self) -> None:
        """Test hook: new connections wait until ``release`` (with ``drop_all``: a disconnection gap)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def inject(self, text: str, category: str = "private") -> None:
        """Test hook: send ``text`` as is (malformed, unknown, out of order...) to every ``category`` socket."""
        for sock in self.sockets:
            if sock.category == category:
                sock.queue.put_nowait(text)

    async def subscribed(self, topic: str) -> None:
        """Return once some socket is subscribed to ``topic``."""
        while not any(topic in s.topics for s in self.sockets):
            self._subscribed.clear()
            await self._subscribed.wait()

    # --- requests ----------------------------------------------------------------------------------
    def _on_request(self, sock: _Socket, text: str) -> None:
        try:
            req = json.loads(text)
            op = req["op"]
        except (ValueError, KeyError, TypeError):
            sock.push({"success": False, "ret_msg": "Params Error", "conn_id": sock.conn_id})
            return
        req_id = req.get("req_id")
        if op == "ping":
            sock.push(self._pong(sock, req_id))
        elif op == "auth" and sock.category == "private":
            sock.push(self._auth(sock, req.get("args") or [], req_id))
        elif op in ("subscribe", "unsubscribe"):
            reply = self._subscribe(sock, op, req.get("args") or [], req_id)
            if reply is not None:
                sock.push(reply)
        else:
            sock.push(self._ack(sock, op, False, f"error:handler not found,op:{op}", req_id))

    def _pong(self, sock: _Socket, req_id: Any) -> dict:
        if sock.category == "private":
            return {"req_id": req_id or "", "op": "pong", "args": [str(self.now_ms())], "conn_id": sock.conn_id}
        out = {"success": True, "ret_msg": "pong", "conn_id": sock.conn_id, "op": "ping"}
        if sock.category == "linear":
            out["req_id"] = req_id or ""
        return out

    def _auth(self, sock: _Socket, args: list, req_id: Any) -> dict:
        """args = [apiKey, expires (int or str, epoch ms in the future), hex HMAC of "GET/realtime" + expires]."""
        acct = None
        if len(args) == 3:
            key, expires, given = (str(a) for a in args)
            acct = self.sim.engine.accounts.get(key)
            if acct is not None:
                wanted = hmac.new(acct.api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256)
                fresh = expires.isdigit() and int(expires) > self.now_ms()
                if not (fresh and hmac.compare_digest(wanted.hexdigest(), given.lower())):
                    acct = None
        sock.account = acct
        return self._ack(sock, "auth", acct is not None, "" if acct is not None else "Params Error", req_id)

    def _subscribe(self, sock: _Socket, op: str, args: list, req_id: Any) -> dict | None:
        topics = [str(a) for a in args]
        if sock.category == "private":
            if sock.account is None:
                return self._ack(sock, op, False, "Request not authorized", req_id)
            bad = [t for t in topics if t not in PRIVATE_TOPICS]
        else:
            bad = [t for t in topics if not _public_topic(t, self.sim.specs)]
        if bad:
            return self._ack(sock, op, False, f"error:handler not found,topic:{bad[0]}", req_id)
        if op == "unsubscribe":
            sock.topics.difference_update(topics)
            return self._ack(sock, op, True, "", req_id)
        sock.topics.update(topics)
        self._subscribed.set()
        sock.push(self._ack(sock, op, True, "subscribe" if sock.category == "spot" else "", req_id))
        for t in topics:  # a ticker's snapshot follows the acknowledgement
            if t.startswith("tickers."):
                sock.tickers.pop(t, None)
                self._push_ticker(sock, t.split(".", 1)[1])
        return None

    @staticmethod
    def _ack(sock: _Socket, op: str, ok: bool, msg: str, req_id: Any) -> dict:
        out: dict[str, Any] = {"success": ok, "ret_msg": msg, "op": op, "conn_id": sock.conn_id}
        if req_id is not None:
            out["req_id"] = req_id
        return out

    # --- pushes ------------------------------------------------------------------------------------
    def _private(self, acct: Account, topic: str, data: list[dict]) -> None:
        for sock in self.sockets:
            if sock.account is acct and topic in sock.topics:
                sock.push({"id": secrets.token_hex(8), "topic": topic, "creationTime": self.now_ms(), "data": data})

    def on_order_change(self, acct: Account, order: Order, execution: Execution | None) -> None:
        """The engine's hook: an order changed (and, with ``execution``, filled)."""
        if not any(s.account is acct for s in self.sockets):
            return  # nobody listens: ByBit replays nothing on reconnect either
        spec = self.sim.specs[order.symbol]
        self._private(acct, "order", [{**order.to_wire(spec), "category": order.category}])
        if execution is not None:
            self.pushed += 1
            self._private(acct, "execution", [{**execution.to_wire(), "category": order.category}])
        if order.category == "linear":  # ByBit pushes the position after every order change, changed or not
            self._push_position(acct, order.symbol, order.position_idx)
        self._push_wallet(acct)  # the order's margin or locked coin moved, if nothing else

    def on_funding(self, symbol: str) -> None:
        """Funding was settled on ``symbol``: its positions and the wallets changed."""
        for acct in {id(s.account): s.account for s in self.sockets if s.account is not None}.values():
            for pos in [p for p in acct.positions.values() if p.symbol == symbol and p.size]:
                self._push_position(acct, symbol, pos.idx)
            self._push_wallet(acct)

    def _push_position(self, acct: Account, symbol: str, idx: int) -> None:
        row = wire.position(self.sim, acct, self.sim.engine.position(acct, symbol, idx))
        ws_row = {("entryPrice" if k == "avgPrice" else k): v for k, v in row.items()}  # the stream's name
        self._private(acct, "position", [{**ws_row, "category": "linear"}])

    def _push_wallet(self, acct: Account) -> None:
        self._private(acct, "wallet", wire.wallet_balance(self.sim, acct, {"accountType": "UNIFIED"})["list"])

    def on_price(self, symbol: str, *, closed: bool = False) -> None:
        """Push the symbol's ticker and its klines of every subscribed interval; ``closed``: a 1m candle just
        closed, and with it the candle of each interval whose bucket ended."""
        for sock in self.sockets:
            if sock.category == "private":
                continue
            if f"tickers.{symbol}" in sock.topics:
                self._push_ticker(sock, symbol)
            # one order every time: the ticker, then the klines longest first, the 1m candle (the clock) last
            klines = [t for t in sock.topics if t.startswith("kline.") and t.endswith(f".{symbol}")]
            for topic in sorted(klines, key=lambda t: -INTERVALS[t.split(".")[1]]):
                for push in self._kline_pushes(topic, topic.split(".")[1], symbol, closed):
                    sock.push(push)

    def _push_ticker(self, sock: _Socket, symbol: str) -> None:
        """A snapshot the first time (and always on spot), then only the fields that changed (linear)."""
        topic = f"tickers.{symbol}"
        data = wire.tickers(self.sim, None, {"category": sock.category, "symbol": symbol})["list"][0]
        last = sock.tickers.get(topic)
        kind = "snapshot"
        if last is not None and sock.category == "linear":
            kind, delta = "delta", {k: v for k, v in data.items() if last.get(k) != v}
            if not delta:
                return
            data = {"symbol": symbol, **delta}
        sock.tickers[topic] = {**(last or {}), **data}
        sock.push({"topic": topic, "type": kind, "data": data, "cs": self.now_ms(), "ts": self.now_ms()})

    def _kline_pushes(self, topic: str, code: str, symbol: str, closed: bool) -> list[dict]:
        series = self.sim.series[symbol]
        minutes = INTERVALS[code]
        rows = series.klines(minutes, None, None, 2)
        ts = self.now_ms()
        bars = []
        if closed and len(rows) > 1 and int(rows[0][0]) == series.live.ts:  # the live minute opened a new bucket
            bars.append((rows[1], True))
        bars.append((rows[0], False))
        out = []
        for row, confirm in bars:
            start = int(row[0])
            bar = {"start": start, "end": start + minutes * 60_000 - 1, "interval": code, "open": row[1],
                   "close": row[4], "high": row[2], "low": row[3], "volume": row[5], "turnover": row[6],
                   "confirm": confirm, "timestamp": ts}
            out.append({"topic": topic, "type": "snapshot", "ts": ts, "data": [bar]})
        return out


def _public_topic(topic: str, specs: dict) -> bool:
    """``tickers.<symbol>`` or ``kline.<interval>.<symbol>`` of a listed symbol and a served interval."""
    parts = topic.split(".")
    if parts[0] == "tickers" and len(parts) == 2:
        return parts[1] in specs
    return parts[0] == "kline" and len(parts) == 3 and parts[1] in INTERVALS and parts[2] in specs
