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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from traderagent.api.bybit_direct_client import klines_to_frame
from traderagent.numbers import to_decimal
from traderagent.ports import ExchangePort
from traderagent.timeframes import timeframe_ms


@dataclass
class _Frame:
    df: pd.DataFrame  # closed candles only
    forming_open_ms: int  # open time of the candle that was still forming when fetched
    limit: int


class _Cached:
    """A value with a TTL whose refresh is shared by concurrent callers."""

    def __init__(self) -> None:
        self.value: Any = None
        self.at = -1e18
        self.task: asyncio.Task[Any] | None = None


class MarketData:
    def __init__(self, client: ExchangePort, *, ttl: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 public: MarketData | None = None) -> None:
        """``public``: another instance whose public data (tickers, candles) this one shares, for
        desks with several accounts; orders and balance stay per account."""
        self.client = client
        self.public = public
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._frames: dict[tuple[str, str], _Frame] = {}
        self._frame_locks: dict[tuple[str, str], asyncio.Lock] = {}
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

    # --- public -------------------------------------------------------------------------------
    async def ticker(self, symbol: str) -> dict[str, Any]:
        if self.public is not None:
            return await self.public.ticker(symbol)
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

    async def free_balance(self, coin: str = "USDT") -> Decimal:
        """Free wallet balance of ``coin`` (cached for a few TTLs: it moves slowly)."""
        bal = await self._shared(("balance",), self.client.fetch_balance, self.ttl * 4)
        return Decimal(bal.get("free", {}).get(coin, 0))

    async def market_time_ms(self, symbol: str) -> int:
        """Open time of the forming 1m candle (the exchange's market clock, minute resolution)."""
        row = await self.forming_minute(symbol)
        return int(row[0]) if row else 0

    async def forming_minute(self, symbol: str) -> list[Any] | None:
        """The forming 1m candle ``[open ms, open, high, low, close, volume]``: the market clock, and the range
        traded in this minute so far."""
        if self.public is not None:
            return await self.public.forming_minute(symbol)
        rows = await self._shared(("clock", symbol), lambda: self.client.fetch_klines(symbol, "1m", limit=1),
                                  self.ttl)
        return rows[-1] if rows else None

    async def minutes(self, symbol: str, count: int) -> list[list[Any]]:
        """The last ``count`` 1m candles, oldest first, the forming one last (shared per symbol and count)."""
        if self.public is not None:
            return await self.public.minutes(symbol, count)
        return await self._shared(("minutes", symbol, str(count)),
                                  lambda: self.client.fetch_klines(symbol, "1m", limit=count), self.ttl)

    async def frames(self, symbol: str, timeframes: tuple[str, ...], candles: int) -> dict[str, pd.DataFrame]:
        """Closed-candle frames for each timeframe (at least ``candles`` rows when the exchange has them)."""
        if self.public is not None:
            return await self.public.frames(symbol, timeframes, candles)
        now = await self.market_time_ms(symbol)
        out: dict[str, pd.DataFrame] = {}
        for tf in timeframes:
            out[tf] = await self._frame(symbol, tf, candles, now)
        return out

    def forming_open_ms(self, symbol: str, tf: str) -> int | None:
        frame = self._frames.get((symbol, tf))
        return frame.forming_open_ms if frame else None

    async def _frame(self, symbol: str, tf: str, candles: int, now_ms: int) -> pd.DataFrame:
        key = (symbol, tf)
        limit = candles + 1  # the client pages back past ByBit's 1000 rows a request
        frame = self._frames.get(key)
        if _fresh(frame, tf, limit, now_ms):
            return frame.df  # type: ignore[union-attr]  # checked by _fresh; no lock on the hot path
        lock = self._frame_locks.setdefault(key, asyncio.Lock())
        async with lock:
            frame = self._frames.get(key)
            if _fresh(frame, tf, limit, now_ms):
                return frame.df  # type: ignore[union-attr]  # another bot fetched it meanwhile
            rows = await self.client.fetch_klines(symbol, tf, limit=max(limit, frame.limit if frame else 0))
            self.requests += 1
            if not rows:
                frame = _Frame(klines_to_frame([]), 0, limit)
            else:
                frame = _Frame(klines_to_frame(rows[:-1]), int(rows[-1][0]), max(limit, frame.limit if frame else 0))
            self._frames[key] = frame
            return frame.df


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
    """The frame holds enough candles and no candle of ``tf`` can have closed since it was fetched."""
    return frame is not None and frame.limit >= limit and now_ms < frame.forming_open_ms + timeframe_ms(tf)
