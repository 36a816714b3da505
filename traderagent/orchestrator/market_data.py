"""Market data shared by every bot of a desk: one request per symbol, not one per bot.

* ``ticker(symbol)``: cached for ``ttl`` seconds; concurrent callers share one request.
* ``frames(symbol, timeframes, candles)``: CLOSED candles per timeframe (the forming candle
  ByBit returns last is dropped). A timeframe is refetched only when a new candle of it can
  have closed: the market clock (the open time of the forming 1m candle, probed at most once
  per ``ttl``) has reached the close time of the forming candle we saw last. The clock comes
  from the exchange, not from our wall clock, so a simulator replaying faster than real time
  is followed exactly.
* ``forming_minute(symbol)`` / ``minutes(symbol, count)``: the latest 1m candles, from which a bot learns the
  high and low traded since its previous exit check (``traded_since``), not only the last price.
* ``open_orders(symbol)``: the account's resting orders on that symbol, with the monotonic time
  the list was requested (an order sent after that may legitimately be missing from it).

**Streams.** With ``streams`` (the desk's public WebSocket, api/bybit_streams.py) the public data comes from
pushes, and a tick reads it without a request: ``tickers.<symbol>`` replaces the ticker, ``kline.<interval>.
<symbol>`` (each timeframe subscribed at its first read, so every one a bot uses) updates the forming candle and
appends the closed ones (``confirm``). A candle book is served from pushes only while it is *in step*: read over
REST since the connection's latest (re)connect (ByBit replays nothing), every push since applied in order (an
older or repeated candle is skipped, never overwrites; a candle missing before a push puts the book out of step),
and a push heard within ``stale_after``. A book out of step is read again over REST at its next use, which fills
the gap; while the connection is down the REST rules above apply unchanged.

The account's ``positions()`` and ``free_balance()`` come from its private stream (``account_stream``; the
``position`` and ``wallet`` topics, which send no snapshot) merged over a REST read taken since the stream's
latest (re)connect and renewed every ``backstop`` seconds; without a live stream, from REST.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd

from traderagent.api.markets import Candles, add_candle, candle_arrays, candles_frame, parse_ticker
from traderagent.numbers import to_decimal
from traderagent.ports import ExchangePort
from traderagent.timeframes import bybit_interval, timeframe_ms

if TYPE_CHECKING:
    from traderagent.ports import FillStream, PublicStreamsPort

log = logging.getLogger(__name__)

STALE_AFTER_S = 60.0  # a topic silent this long is read over REST again (ByBit pushes klines every 1-60 s)
BACKSTOP_S = 60.0  # the account's positions and wallet are read over REST at least this often


@dataclass
class _Frame:
    """The candles of one symbol and timeframe: the closed ones, oldest first, and the one forming."""

    rows: list[list[Any]]  # closed candles [open ms, o, h, l, c, v], at most limit - 1
    forming: list[Any] | None  # None between a close and the next candle's first push
    open_ms: int  # open time of the candle forming
    limit: int
    gen: int = -1  # the public connection's ``connects`` the book is in step with; -1: REST only
    at: float = 0.0  # clock of its REST read or of the last push applied
    _df: pd.DataFrame | None = None
    _arrays: Candles | None = None  # ``rows`` as arrays, a confirmed candle appended as it comes

    @classmethod
    def read(cls, rows: list[list[Any]], limit: int, gen: int, at: float) -> _Frame:
        """A REST read, oldest first, the forming candle last."""
        if not rows:
            return cls([], None, 0, limit, gen, at)
        return cls(rows[:-1], rows[-1], int(rows[-1][0]), limit, gen, at)

    @property
    def df(self) -> pd.DataFrame:
        if self._df is None:
            if self._arrays is None:
                self._arrays = candle_arrays(self.rows)
            self._df = candles_frame(self._arrays)
        return self._df

    def apply(self, row: list[Any], confirm: bool, tf_ms: int) -> bool:
        """One pushed candle; False when candles are missing before it (the book must be read again)."""
        start = int(row[0])
        if start < self.open_ms:
            return True  # closed already, or older: skipped
        if start > self.open_ms:
            return False
        if confirm:
            keep = max(self.limit - 1, 1)
            self.rows.append(row)
            del self.rows[:-keep]
            if self._arrays is not None:
                self._arrays = add_candle(self._arrays, row, keep)
            self.forming, self.open_ms, self._df = None, start + tf_ms, None
        else:
            self.forming = row
        return True


@dataclass
class _Ticker:
    data: dict[str, Any]  # the stream's ticker, deltas merged
    ts: int
    gen: int
    at: float
    parsed: dict[str, Any] | None = None


@dataclass
class _Pushed:
    """An account's state from its private stream over a REST read: ``items`` by key (position, coin).

    A push replaces an item unless ``newer`` says it is older (positions carry ByBit's ``seq``). A REST read
    replaces them all, except the items pushed while it was under way that are newer than its own."""

    newer: Callable[[Any, Any], bool]
    items: dict[Any, Any] = field(default_factory=dict)
    gen: int = -1  # the private stream's ``connects`` the REST read was taken in
    at: float = -1e18
    pushes: int = 0
    _pushed: dict[Any, int] = field(default_factory=dict)  # key -> ``pushes`` when it was pushed
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def push(self, items: dict[Any, Any]) -> None:
        self.pushes += 1
        for key, item in items.items():
            old = self.items.get(key)
            if old is None or self.newer(item, old):
                self.items[key] = item
                self._pushed[key] = self.pushes

    def read(self, items: dict[Any, Any], since: int, gen: int, at: float) -> None:
        """The REST read started when ``pushes`` was ``since``."""
        for key, n in self._pushed.items():
            if n > since and key in self.items and (key not in items or self.newer(self.items[key], items[key])):
                items[key] = self.items[key]
        self.items, self._pushed, self.gen, self.at = items, {}, gen, at


def _position_key(row: dict[str, Any]) -> tuple[str, int]:
    return row["symbol"], int(row.get("position_idx") or 0)


def _coins(balance: dict[str, dict[str, Decimal]]) -> dict[str, dict[str, Decimal]]:
    """fetch_balance's {"free": {coin: x}, ...} by coin: {coin: {"free": x, ...}}."""
    return {coin: {kind: balance[kind].get(coin, Decimal(0)) for kind in ("free", "used", "total")}
            for coin in balance.get("total", {})}


class _Cached:
    """A value with a TTL whose refresh is shared by concurrent callers."""

    def __init__(self) -> None:
        self.value: Any = None
        self.at = -1e18
        self.task: asyncio.Task[Any] | None = None


class MarketData:
    def __init__(self, client: ExchangePort, *, ttl: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 public: MarketData | None = None, streams: PublicStreamsPort | None = None,
                 stale_after: float = STALE_AFTER_S, backstop: float = BACKSTOP_S) -> None:
        """``public``: another instance whose public data (tickers, candles) this one shares, for
        desks with several accounts; orders and balance stay per account. ``streams``: the public
        WebSocket feeding tickers and candles (module docstring)."""
        self.client = client
        self.public = public
        self.streams = streams
        self.account_stream: FillStream | None = None  # the account's private stream, once the desk opens it
        self.ttl = ttl
        self.clock = clock
        self.stale_after = stale_after
        self.backstop = backstop
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._frames: dict[tuple[str, str], _Frame] = {}
        self._frame_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._tickers: dict[str, _Ticker] = {}
        self._watched: set[tuple[str, ...]] = set()
        self._positions = _Pushed(lambda new, old: new["seq"] >= old["seq"])
        self._wallet = _Pushed(lambda new, old: True)  # no sequence: the latest push stands
        self.requests = 0

    async def _shared(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[Any]], ttl: float) -> Any:
        entry = self._cache.setdefault(key, _Cached())
        if entry.task is None and self.clock() - entry.at < ttl:
            return entry.value
        if entry.task is None:
            started = self.clock()

            async def run() -> Any:
                try:
                    entry.value = await fetch()
                    entry.at = started
                    self.requests += 1
                    return entry.value
                finally:
                    entry.task = None

            entry.task = asyncio.ensure_future(run())
        return await asyncio.shield(entry.task)

    def invalidate(self, *key: str) -> None:
        if key[:1] == ("orders",) and getattr(self.client, "market_type", "linear") == "linear":
            key = ("orders",)
        entry = self._cache.get(tuple(key))
        if entry is not None:
            entry.at = -1e18

    # --- the public stream --------------------------------------------------------------------
    def _public_gen(self) -> int | None:
        """The public connection's (re)connect count while it is up; None: no stream now, REST only."""
        conn = self.streams.connection(self.client.market_type) if self.streams is not None else None
        return conn.connects if conn is not None and conn.healthy else None

    def _in_step(self, gen: int, at: float) -> bool:
        return gen == self._public_gen() and self.clock() - at < self.stale_after

    async def _watch(self, key: tuple[str, ...], topic: str, callback: Callable[[dict[str, Any]], None]) -> None:
        if self.streams is not None and key not in self._watched:
            self._watched.add(key)
            await self.streams.watch(self.client.market_type, topic, callback)

    def _on_ticker(self, msg: dict[str, Any]) -> None:
        gen = self._public_gen()
        if gen is not None:
            symbol = str(msg["topic"]).removeprefix("tickers.")
            self._tickers[symbol] = _Ticker(msg["data"], int(msg.get("ts") or 0), gen, self.clock())

    def _pushed_ticker(self, symbol: str) -> dict[str, Any] | None:
        """The streamed ticker while it is in step, else None."""
        pushed = self._tickers.get(symbol)
        if pushed is None or not self._in_step(pushed.gen, pushed.at):
            return None
        if pushed.parsed is None:
            pushed.parsed = parse_ticker(pushed.data, self.client.market_type, pushed.ts)
        return pushed.parsed

    def _on_kline(self, key: tuple[str, str], msg: dict[str, Any]) -> None:
        frame = self._frames.get(key)
        if frame is None or frame.gen != self._public_gen():
            return  # not in step: its next read goes over REST
        for bar in msg["data"]:
            row = [int(bar["start"]), *(to_decimal(bar[k]) for k in ("open", "high", "low", "close", "volume"))]
            if not frame.apply(row, bar["confirm"] is True, timeframe_ms(key[1])):
                log.info("kline %s %s: a candle missed before %s; read again over REST", *key, row[0])
                frame.gen = -1
                return
            frame.at = self.clock()

    async def _book(self, symbol: str, tf: str, limit: int) -> _Frame | None:
        """``symbol``'s ``tf`` candles kept by the stream (read over REST first when out of step); None while the
        public stream is down."""
        if self.streams is None:
            return None
        key = (symbol, tf)
        if key not in self._watched:  # asked on every tick: no topic name or callback built once watched
            await self._watch(key, f"kline.{bybit_interval(tf)}.{symbol}", lambda msg: self._on_kline(key, msg))
        frame = self._frames.get(key)
        if frame is not None and frame.limit >= limit and self._in_step(frame.gen, frame.at):
            return frame
        gen = self._public_gen()
        if gen is None:
            return None
        return await self._read_frame(symbol, tf, limit, lambda f: f.limit >= limit and self._in_step(f.gen, f.at),
                                      gen)

    # --- public -------------------------------------------------------------------------------
    async def ticker(self, symbol: str) -> dict[str, Any]:
        if self.public is not None:
            return await self.public.ticker(symbol)
        if ("ticker", symbol) not in self._watched:
            await self._watch(("ticker", symbol), f"tickers.{symbol}", self._on_ticker)
        pushed = self._pushed_ticker(symbol)
        if pushed is not None:
            return pushed
        return await self._shared(("ticker", symbol), lambda: self.client.fetch_ticker(symbol), self.ttl)

    async def open_orders(self, symbol: str) -> tuple[list[dict[str, Any]], float]:
        """(this symbol's resting orders, monotonic time the listing started). One request lists
        the account's orders on every symbol (linear: by settle coin), shared by all its bots."""
        started = self.clock()
        key = ("orders",) if self.client.market_type == "linear" else ("orders", symbol)
        fetch_symbol = None if len(key) == 1 else symbol
        orders = await self._shared(key, lambda: self.client.fetch_open_orders(fetch_symbol), self.ttl)
        entry = self._cache[key]
        listed_at = min(entry.at, started) if entry.at > -1e17 else started
        return [o for o in orders if o.get("symbol") == symbol], listed_at

    async def recent_fills(self, symbol: str) -> list[dict[str, Any]]:
        """The account's latest executions on ``symbol`` (one page), shared by its bots."""
        return await self._shared(("fills", symbol), lambda: self.client.fetch_my_trades(symbol, limit=100), self.ttl)

    async def market_time_ms(self, symbol: str) -> int:
        """Open time of the forming 1m candle (the exchange's market clock, minute resolution)."""
        row = await self.forming_minute(symbol)
        return int(row[0]) if row else 0

    async def forming_minute(self, symbol: str) -> list[Any] | None:
        """The forming 1m candle ``[open ms, open, high, low, close, volume]``: the market clock, and the range
        traded in this minute so far."""
        if self.public is not None:
            return await self.public.forming_minute(symbol)
        frame = await self._book(symbol, "1m", 2)
        if frame is not None and frame.forming is not None:
            return frame.forming
        rows = await self._shared(("clock", symbol), lambda: self.client.fetch_klines(symbol, "1m", limit=1),
                                  self.ttl)
        return rows[-1] if rows else None

    async def minutes(self, symbol: str, count: int) -> list[list[Any]]:
        """The last ``count`` 1m candles, oldest first, the forming one last (shared per symbol and count)."""
        if self.public is not None:
            return await self.public.minutes(symbol, count)
        frame = await self._book(symbol, "1m", count)
        if frame is not None and frame.forming is not None:
            return [*frame.rows[max(0, len(frame.rows) - count + 1):], frame.forming]
        return await self._shared(("minutes", symbol, str(count)),
                                  lambda: self.client.fetch_klines(symbol, "1m", limit=count), self.ttl)

    async def frames(self, symbol: str, timeframes: tuple[str, ...], candles: int) -> dict[str, pd.DataFrame]:
        """Closed-candle frames for each timeframe (at least ``candles`` rows when the exchange has them)."""
        if self.public is not None:
            return await self.public.frames(symbol, timeframes, candles)
        out: dict[str, pd.DataFrame] = {}
        now: int | None = None  # the market clock, asked only for what the stream does not keep
        for tf in timeframes:
            frame = await self._book(symbol, tf, candles + 1)  # the client pages back past ByBit's 1000 rows
            if frame is None:
                now = await self.market_time_ms(symbol) if now is None else now
                frame = await self._polled_frame(symbol, tf, candles + 1, now)
            out[tf] = frame.df
        return out

    def forming_open_ms(self, symbol: str, tf: str) -> int | None:
        frame = self._frames.get((symbol, tf))
        return frame.open_ms if frame else None

    async def _polled_frame(self, symbol: str, tf: str, limit: int, now_ms: int) -> _Frame:
        frame = self._frames.get((symbol, tf))
        if _fresh(frame, tf, limit, now_ms):
            return frame  # type: ignore[return-value]  # checked by _fresh; no lock on the hot path
        return await self._read_frame(symbol, tf, limit, lambda f: _fresh(f, tf, limit, now_ms))

    async def _read_frame(self, symbol: str, tf: str, limit: int, done: Callable[[_Frame], bool],
                          gen: int = -1) -> _Frame:
        """Read the candles over REST, once however many bots ask (``done``: another one read them meanwhile)."""
        key = (symbol, tf)
        async with self._frame_locks.setdefault(key, asyncio.Lock()):
            frame = self._frames.get(key)
            if frame is not None and done(frame):
                return frame
            limit = max(limit, frame.limit if frame else 0)
            at = self.clock()
            rows = await self.client.fetch_klines(symbol, tf, limit=limit)
            self.requests += 1
            frame = self._frames[key] = _Frame.read(rows, limit, gen, at)
            return frame

    # --- the account ------------------------------------------------------------------------------
    def on_positions(self, rows: list[dict[str, Any]]) -> None:
        """The private stream's ``position`` rows (``fetch_positions`` shape, flat ones with size 0)."""
        self._positions.push({_position_key(r): r for r in rows})

    def on_wallet(self, balance: dict[str, dict[str, Decimal]]) -> None:
        """The private stream's ``wallet`` push (``fetch_balance`` shape, the coins it names)."""
        self._wallet.push(_coins(balance))

    async def _account(self, state: _Pushed, name: str, read: Callable[[], Awaitable[dict[Any, Any]]],
                       ttl: float) -> dict[Any, Any]:
        """``state``'s items: pushed over a REST read while the private stream is up, else read over REST
        (shared for ``ttl``)."""
        stream = self.account_stream
        if stream is None or not stream.healthy:
            return await self._shared((name,), read, ttl)
        async with state.lock:
            if state.gen != stream.connects or self.clock() - state.at >= self.backstop:
                since, gen, at = state.pushes, stream.connects, self.clock()
                state.read(await read(), since, gen, at)
                self.requests += 1
        return state.items

    async def free_balance(self, coin: str = "USDT") -> Decimal:
        """Free wallet balance of ``coin`` (without a stream, cached for a few TTLs: it moves slowly)."""
        async def read() -> dict[str, dict[str, Decimal]]:
            return _coins(await self.client.fetch_balance())
        coins = await self._account(self._wallet, "balance", read, self.ttl * 4)
        return Decimal(coins.get(coin, {}).get("free", 0))

    async def positions(self) -> list[dict[str, Any]]:
        """The account's open linear positions (``fetch_positions`` rows); the mark price (and so the
        unrealised PnL) from the streamed ticker when there is one, as position pushes follow orders, not
        the mark."""
        async def read() -> dict[tuple[str, int], dict[str, Any]]:
            return {_position_key(r): r for r in await self.client.fetch_positions()}
        rows = await self._account(self._positions, "positions", read, self.ttl)
        public = self.public or self
        out = []
        for row in rows.values():
            ticker = public._pushed_ticker(row["symbol"]) if row["size"] else None
            if ticker is not None and ticker.get("mark"):
                mark = ticker["mark"]
                sign = 1 if row["side"] == "long" else -1
                row = {**row, "mark_price": mark, "unrealized_pnl": (mark - row["entry_price"]) * row["size"] * sign}
            if row["size"]:
                out.append(row)
        return out


@dataclass(frozen=True)
class RangeMark:
    """Where a bot's previous exit check stood: the forming minute then, and its high and low at that moment."""

    minute_ms: int
    high: Decimal
    low: Decimal


def traded_since(minutes: list[list[Any]], mark: RangeMark | None) -> tuple[Decimal | None, Decimal | None, RangeMark | None]:
    """(high, low) traded after ``mark``, from 1m candles oldest first (the forming one last), and the next mark.

    Minutes that opened after the mark count whole. The mark's own minute counts only by the extremes it made
    after the check (a high above, a low below what it had then): its earlier prices may predate a position,
    so they must not trigger its stop. No mark (the first check): nothing before now is known; (None, None).
    """
    if not minutes:
        return None, None, mark
    highs: list[Decimal] = []
    lows: list[Decimal] = []
    if mark is not None:
        for row in minutes:
            ts, high, low = int(row[0]), to_decimal(row[2]), to_decimal(row[3])
            if ts > mark.minute_ms or (ts == mark.minute_ms and high > mark.high):
                highs.append(high)
            if ts > mark.minute_ms or (ts == mark.minute_ms and low < mark.low):
                lows.append(low)
    last = minutes[-1]
    nxt = RangeMark(int(last[0]), to_decimal(last[2]), to_decimal(last[3]))
    return max(highs, default=None), min(lows, default=None), nxt


def _fresh(frame: _Frame | None, tf: str, limit: int, now_ms: int) -> bool:
    """The frame holds enough candles and no candle of ``tf`` can have closed since it was read."""
    return frame is not None and frame.limit >= limit and now_ms < frame.open_ms + timeframe_ms(tf)
