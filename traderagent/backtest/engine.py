"""The backtest engine: drives any strategy over candles exactly as base.py's protocol says, with simulated fills.

Design (speed without look-ahead):
- `strategy.prepare(*frames)` once computes every indicator for the whole history (vectorised). Values at
  index i depend only on candles <= i (the strategies' contract); higher-timeframe frames are built here from
  complete buckets only and each strategy aligns them to closed candles (`align_higher_timeframe`).
- The per-candle loop reads plain Python lists (no DataFrame or numpy scalar access per candle) and visits
  only candles where something can happen: a signal strategy that is flat jumps straight to the next
  candidate entry index (`signal_candidates`, see `_candidates`); while a position is open every candle is
  visited (trailing stops, reversal exits) but the strategy's `check_exits` is called only when the candle's
  high/low reaches a stop/target level (compared as floats, a superset of the Decimal test).
- Ladder strategies return the very same `desired_orders` list while nothing changed (base.py), so most
  candles cost an identity check instead of a diff; resting orders are only scanned when the candle's
  low/high reaches the nearest one.
- Money is Decimal (ledger.py); the equity curve is rebuilt as a float array from the ledger's state after
  each fill. Ladder round trips are the strategy's own records, and their pnl is what the ledger realises.

Fill rules (documented in README-style detail in fills.py):
- decisions at the close of candle i (entries, reversal exits, ladder market orders) execute at open[i+1]
  plus slippage, taker fee. The close of candle i is the price the decision was computed from; nobody can
  trade at it any more once it is known, so next-open is the honest price.
- stops/targets of signal positions: `strategy.check_exits` with the candle's open/high/low (stop wins when
  both are inside one candle; gaps fill at the open). Both are held by the exchange live (trading-stop, tpslMode
  Full: a market order on trigger, orchestrator/protection.py), so both fill as the simulator executes them:
  at the level (the open on a gap) plus slippage, with the taker fee.
- ladder orders (grid/DCA): limits rest from the candle after placement; a buy fills when low <= price, a sell
  when high >= price (base.py's rule; `limit_fill="through"` demands a strict cross), at the limit price
  with the maker fee, or at the open (taker) when the candle opened beyond it. Driver-held stop orders trigger
  on low/high and fill like a stop-market. Fills inside a candle follow its path: open -> low -> high -> close
  for an up candle, open -> high -> low -> close for a down candle. Orders placed during a candle (follow-ups)
  can fill from the next candle on.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pandas as pd

from traderagent.backtest.data import index_ms, resample
from traderagent.backtest.fills import FillModel, dec, decs
from traderagent.backtest.ledger import Ledger
from traderagent.backtest.metrics import Fill, Metrics, Trade, compute_metrics
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import (
    ExitReason,
    OrderIntent,
    PositionInfo,
    SignalArrays,
    SignalDirection,
)
from traderagent.timeframes import timeframe_ms, timeframe_name

INF = math.inf
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BacktestConfig:
    balance: Decimal = Decimal("10000")
    taker_fee: Decimal = Decimal("0.00055")
    maker_fee: Decimal = Decimal("0.0002")
    slippage: Decimal = Decimal("0.0002")
    limit_fill: str = "touch"  # "touch": low <= buy price fills (base.py); "through": low < price


@dataclass
class BacktestResult:
    strategy_name: str
    timeframe: str
    tf_ms: int
    times: np.ndarray  # int64 candle open times (ms)
    close: np.ndarray
    equity: np.ndarray  # marked to market at every close
    position: np.ndarray  # net position after each candle
    fills: list[Fill]
    trades: list[Trade]
    metrics: Metrics
    initial_balance: Decimal
    elapsed_s: float
    params: dict = field(default_factory=dict)
    levels: dict[str, list[Decimal]] = field(default_factory=dict)  # the strategy's chart_levels at the end
    ladder: bool = False  # trades are grid pairs / DCA cycles

    @property
    def candles(self) -> int:
        return len(self.close)

    @property
    def final_balance(self) -> Decimal:
        return self.metrics.final_balance

    def to_dict(self, *, trades: bool = True) -> dict:
        out = {
            "strategy": self.strategy_name,
            "timeframe": self.timeframe,
            "candles": self.candles,
            "start": _iso(self.times[0]) if self.candles else None,
            "end": _iso(self.times[-1]) if self.candles else None,
            "initial_balance": str(self.initial_balance),
            "metrics": self.metrics.to_dict(),  # the one metric set: final balance and every figure are here
            "fills": len(self.fills),
            "elapsed_s": round(self.elapsed_s, 4),
            "params": {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.params.items()},
        }
        if trades:
            out["trades"] = [t.to_dict() | {"entry_time": _iso(t.entry_time_ms),
                                            "exit_time": _iso(t.exit_time_ms) if t.closed else None}
                             for t in self.trades]
        return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat()


def build_frames(strategy: BaseStrategy, frame: pd.DataFrame, tf_ms: int) -> list[pd.DataFrame]:
    """Frames in `strategy.timeframes` order: the higher ones resampled from `frame` (complete candles only),
    the entry frame last (the data as given: the caller already chose its timeframe)."""
    frames = []
    for tf in strategy.timeframes[:-1]:
        htf = timeframe_ms(tf)
        frames.append(frame if htf == tf_ms else resample(frame, htf, tf_ms))
    frames.append(frame)
    return frames


def _candidates(mask: np.ndarray | None, start: int, n: int) -> list[int] | None:
    """Indices >= start where a candidate mask (base.py's `signal_candidates` / `exit_candidates`) is set,
    then the sentinel n; None when the strategy gave no mask (every candle is a candidate)."""
    if mask is None:
        return None
    found = np.flatnonzero(np.asarray(mask, dtype=bool))
    return [*found[found >= start].tolist(), n]


def _same(a: OrderIntent, b: OrderIntent) -> bool:
    # the dataclass __eq__ builds tuples in Python; comparing the attribute dicts runs in C
    try:
        return a.__dict__ == b.__dict__
    except AttributeError:  # a slotted intent class
        return a == b


def _level(price: Decimal | None) -> Decimal | None:
    """A stop or target as the trade records it: one at or below zero is none (prices are positive)."""
    return price if price is not None and price > 0 else None


class _Order:
    __slots__ = ("intent", "price", "price_f", "placed", "down")

    def __init__(self, intent: OrderIntent, placed: int) -> None:
        assert intent.price is not None, "market intents never rest in the book"
        self.intent = intent
        self.price = intent.price
        self.price_f = float(intent.price)
        self.placed = placed
        # "down" orders are reached as the price falls: buy limits and sell stops
        self.down = (intent.side == "buy") == (intent.order_type == "limit")


class Backtester:
    _next_report: int  # candle index of the next progress call; set by each run loop
    h: list[float] | np.ndarray  # highs and lows: lists where most candles are read, else the arrays
    l: list[float] | np.ndarray  # noqa: E741
    _report_every: int
    def __init__(self, strategy: BaseStrategy, config: BacktestConfig | None = None,
                 *, progress: Progress | None = None) -> None:
        self.s = strategy
        self.cfg = config or BacktestConfig()
        self.fm = FillModel(taker_fee=self.cfg.taker_fee, maker_fee=self.cfg.maker_fee,
                            slippage=self.cfg.slippage)
        self.ledger = Ledger(self.cfg.balance, shorts=strategy.market_type != "spot")
        self._open = strategy.open_positions  # live read-only view, checked every candle
        self.progress = progress
        self._pos_after: list[float] = []
        self._cash_after: list[float] = []

    # ------------------------------------------------------------------ entry point
    def run(self, frames: Sequence[pd.DataFrame] | pd.DataFrame, tf_ms: int | None = None) -> BacktestResult:
        if isinstance(frames, pd.DataFrame):
            frames = [frames]
        entry = frames[-1]
        tf_ms = tf_ms or timeframe_ms(self.s.timeframes[-1])
        t0 = time.perf_counter()
        prepared = self.s.prepare(*frames)
        self.p = prepared
        # the open and close of signal strategies are read only at fills, so they stay arrays there
        if self.s.is_ladder:
            self.o, self.c = prepared.open.tolist(), prepared.close.tolist()
        else:
            self.o, self.c = prepared.open, prepared.close
        self.ts = prepared.open_ms
        arrays = None if self.s.is_ladder else self.s.signal_arrays(prepared)
        if self.s.is_ladder:
            self._run_ladder()
        elif arrays is not None:
            self._run_arrays(arrays)
        else:
            self._run_signal()
        elapsed = time.perf_counter() - t0
        return self._result(entry, tf_ms, elapsed)

    # ------------------------------------------------------------------ bookkeeping helpers
    def _record(self) -> None:
        self._pos_after.append(float(self.ledger.position))
        self._cash_after.append(float(self.ledger.cash))

    def _fill(self, i: int, side: str, qty: Decimal, price: Decimal, liquidity: str, tag: str,
              reason: str = "") -> Fill:
        fee = self.fm.fee(qty, price, liquidity)
        return Fill(i, int(self.ts[i]), side, qty, price, fee, liquidity, tag, reason)

    def _when(self, i: int) -> datetime:
        return datetime.fromtimestamp(int(self.ts[i]) / 1000, tz=UTC)

    def _balance(self) -> Decimal:
        return self.ledger.initial + self.ledger.realized

    def _tick(self, i: int, n: int) -> None:
        if self.progress is not None and i >= self._next_report:
            self.progress(i, n)
            self._next_report = i + self._report_every

    # ------------------------------------------------------------------ signal strategies
    def _run_signal(self) -> None:
        s, p = self.s, self.p
        n = len(self.c)
        start = max(int(s.min_candles) - 1, 0)
        cand_list = _candidates(s.signal_candidates(p), start, n)
        every = cand_list is None
        if cand_list is None:
            cand_list = [n]
        exit_list = _candidates(s.exit_candidates(p), start, n)
        # plain lists when most candles are visited (a list item is much cheaper than a numpy scalar); a
        # strategy with both candidate hooks is visited at its events only, not worth converting for
        self.h, self.l = (p.high, p.low) if not every and exit_list is not None else (p.high.tolist(), p.low.tolist())
        h, lo = self.h, self.l
        ci = xi = 0
        next_c = cand_list[0]
        self._report_every = max(n // 100, 1)
        self._next_report = 0 if self.progress is not None else n + 1
        pending_entries: list = []
        pending_exits: list[PositionInfo] = []
        lo_trig, hi_trig = -INF, INF
        self._lvl_one: tuple | None = None
        l_pos = l_stop = l_tp = None
        positions = self._open
        on_close, signal_at = s.on_candle_close, s.signal_at
        i = start
        while i < n:
            if pending_exits or pending_entries:
                self._execute_pending(i, pending_exits, pending_entries)
                pending_exits, pending_entries = [], []
                lo_trig, hi_trig = self._levels(lo_trig, hi_trig)
            if positions:
                if lo[i] <= lo_trig or h[i] >= hi_trig:
                    self._check_exits(i)
                exits = on_close(p, i)
                if exits:
                    pending_exits = list(exits)
                if len(positions) == 1:  # inline fast path of _levels: same position, same level objects
                    pos = next(iter(positions.values()))
                    if pos is not l_pos or pos.stop_loss is not l_stop or pos.take_profit is not l_tp:
                        lo_trig, hi_trig = self._levels(lo_trig, hi_trig)
                        l_pos, l_stop, l_tp = pos, pos.stop_loss, pos.take_profit
                else:
                    lo_trig, hi_trig = self._levels(lo_trig, hi_trig)
            while next_c < i:
                ci += 1
                next_c = cand_list[ci]
            if every or next_c == i:
                sig = signal_at(p, i, self._balance())
                if sig is not None and i + 1 < n:
                    pending_entries.append(sig)
            if pending_entries or pending_exits or every or (positions and exit_list is None):
                i += 1
            elif positions and exit_list is not None:  # jump to the next exit or entry candidate or level touch
                while exit_list[xi] <= i:
                    xi += 1
                if next_c <= i:
                    ci += 1
                    next_c = cand_list[ci]
                i = self._first_touch(i + 1, min(exit_list[xi], next_c), lo_trig, hi_trig)
            else:  # flat and nothing queued: jump to the next candle that can produce an entry
                if next_c <= i:
                    ci += 1
                    next_c = cand_list[ci]
                i = next_c
            if i >= self._next_report:
                self._tick(i, n)

    def _run_arrays(self, sa: SignalArrays) -> None:
        """Book a strategy's ``signal_arrays``: from each entry to the next exit, as ``_run_signal`` would
        (decisions at a close execute at the next open), without calling the strategy per candle."""
        n = len(self.c)
        start = max(int(self.s.min_candles) - 1, 0)
        entries, exits = _candidates(sa.entries, start, n), _candidates(sa.exits, start, n)
        assert entries is not None and exits is not None
        long = sa.direction == SignalDirection.LONG
        side_in, side_out = ("buy", "sell") if long else ("sell", "buy")
        reason = sa.exit_reason.value
        fills: list[int] = []  # candles of the fills: entry, exit, entry, ...
        i = start
        while True:
            e = entries[bisect_left(entries, i)]
            if e + 1 >= n:  # no entry left, or decided at the last close: never executed
                break
            fills.append(e + 1)
            x = exits[bisect_left(exits, e + 1)]
            if x + 1 >= n:  # still open at the end
                break
            i = x + 1
            fills.append(i)
        fm, ledger, size = self.fm, self.ledger, sa.size
        opens = decs(np.asarray(self.o)[fills])
        pid = ""
        for k, (i, open_) in enumerate(zip(fills, opens, strict=True)):
            if k % 2 == 0:
                pid = self.s._new_id()  # the position ids the per-candle path gives
                fill = self._fill(i, side_in, size, fm.slipped(side_in, open_), "taker", "entry", "entry")
                ledger.open_keyed(pid, fill, sa.direction.value)
            else:
                fill = self._fill(i, side_out, size, fm.slipped(side_out, open_), "taker", pid, reason)
                ledger.close_keyed(pid, fill, reason)
            self._record()

    def _first_touch(self, i: int, limit: int, lo_t: float, hi_t: float) -> int:
        """First candle in [i, limit) whose low/high reaches a stop/target threshold, else limit."""
        if lo_t == -INF and hi_t == INF:
            return limit
        low, high = self.p.low, self.p.high
        step = 64
        while i < limit:
            k = min(i + step, limit)
            hit = np.flatnonzero((low[i:k] <= lo_t) | (high[i:k] >= hi_t))
            if len(hit):
                return i + int(hit[0])
            i, step = k, step * 4
        return limit

    def _levels(self, lo_t: float, hi_t: float) -> tuple[float, float]:
        """Float thresholds: a candle with low <= lo or high >= hi may hit a stop/target.

        Recomputed only when a position or one of its levels changed (Decimals are immutable, so a moved
        stop is a new object: an identity check detects it).
        """
        positions = self._open
        if len(positions) == 1:
            pos = next(iter(positions.values()))
            one = self._lvl_one
            if one is not None and pos is one[0] and pos.stop_loss is one[1] and pos.take_profit is one[2]:
                return lo_t, hi_t
        key = [(pos, pos.stop_loss, pos.take_profit) for pos in positions.values()]
        self._lvl_one = key[0] if len(key) == 1 else None
        lo_t, hi_t = -INF, INF
        for pos, stop, tp in key:  # a level at or below zero is never reached (prices are positive)
            if pos.is_long:
                if stop is not None and stop > 0:
                    lo_t = max(lo_t, float(stop))
                if tp is not None:
                    hi_t = min(hi_t, float(tp))
            else:
                if stop is not None:
                    hi_t = min(hi_t, float(stop))
                if tp is not None and tp > 0:
                    lo_t = max(lo_t, float(tp))
        return lo_t, hi_t

    def _execute_pending(self, i: int, exits: list[PositionInfo], entries: list) -> None:
        s, fm = self.s, self.fm
        for pos in exits:
            if pos.position_id not in self._open:
                continue
            side = "sell" if pos.is_long else "buy"
            price, liq = fm.market(side, self.o[i])
            self._close(i, pos, side, price, liq, pos.exit_reason or ExitReason.MANUAL)
        for sig in entries:
            side = "buy" if sig.direction.value == "long" else "sell"
            price, liq = fm.market(side, self.o[i])
            fill = self._fill(i, side, sig.size, price, liq, "entry", "entry")
            pos = s.open_position(sig, sig.size, price, fee=fill.fee, timestamp=self._when(i))
            trade = self.ledger.open_keyed(pos.position_id, fill, pos.direction.value)
            trade.stop_loss, trade.take_profit = _level(pos.stop_loss), _level(pos.take_profit)
            self._record()

    def _check_exits(self, i: int) -> None:
        s = self.s
        hits = s.check_exits(dec(self.c[i]), high=dec(self.h[i]), low=dec(self.l[i]), open_=dec(self.o[i]))
        for pos in hits:
            side = "sell" if pos.is_long else "buy"
            reason = pos.exit_reason or ExitReason.STOP_LOSS
            level = pos.exit_price
            assert level is not None, "check_exits sets the fill price to assume"
            # stop or target: a market order when the price reaches the trigger, as the exchange executes it
            self._close(i, pos, side, self.fm.slipped(side, level), "taker", reason)

    def _close(self, i: int, pos: PositionInfo, side: str, price: Decimal, liq: str, reason) -> None:
        reason = ExitReason(reason)
        fill = self._fill(i, side, pos.size, price, liq, pos.position_id, reason.value)
        self.s.close_position(pos.position_id, price, reason, fee=fill.fee, timestamp=self._when(i))
        self.ledger.close_keyed(pos.position_id, fill, reason.value)
        self._record()

    # ------------------------------------------------------------------ ladder strategies
    def _run_ladder(self) -> None:
        s, p = self.s, self.p
        self.h, self.l = p.high.tolist(), p.low.tolist()
        h, lo, c = self.h, self.l, self.c
        n = len(c)
        start = max(int(s.min_candles) - 1, 0)
        self.book: dict[str, _Order] = {}
        self.pending_market: dict[str, OrderIntent] = {}
        self._dirty = True
        self._report_every = max(n // 100, 1)
        self._next_report = 0 if self.progress is not None else n + 1
        self._last_intents: list[OrderIntent] | None = None
        self._last_src: list[OrderIntent] | None = None
        self._entry_idx: dict[str, int] = {}
        self._ladder_closed: list[tuple[PositionInfo, int, int]] = []
        through = self.cfg.limit_fill == "through"
        down_t, up_t = -INF, INF
        for i in range(start, n):
            if self.pending_market:
                self._ladder_market(i)
            if self._dirty:
                down_t, up_t = self._ladder_levels()
            if self.book and (lo[i] <= down_t or h[i] >= up_t):
                self._ladder_fills(i, through)
            s.on_candle_close(p, i)
            intents = s.desired_orders(dec(c[i]), self._balance())
            self._sync(intents, i)
            if i >= self._next_report:
                self._tick(i, n)

    def _attribute(self, i: int, n_closed: int) -> None:
        """Candle indices of the strategy's own round trips (grid pairs, DCA deals) opened/closed by a fill;
        their pnl (the engine's fill prices and fees) is what the ledger counts as realised."""
        for pid in self._open:
            self._entry_idx.setdefault(pid, i)
        for pos in self.s.closed_since(n_closed):
            self._ladder_closed.append((pos, self._entry_idx.pop(pos.position_id, i), i))
            self.ledger.realize(pos.realized_pnl or Decimal(0))

    def _ladder_trades(self) -> list[Trade]:
        """Ladder trades are the strategy's own pairing (a grid buy with ITS counter sell, a whole DCA deal),
        priced with the engine's fills."""
        def trade(pos: PositionInfo, entry: int, exit_: int) -> Trade:
            t = Trade(side=pos.direction.value, qty=pos.size, entry_index=entry, entry_time_ms=int(self.ts[entry]),
                      entry_price=pos.entry_price, fees=pos.fees, tag=pos.position_id,
                      stop_loss=pos.stop_loss, take_profit=pos.take_profit)
            if exit_ >= 0:
                t.exit_index, t.exit_time_ms = exit_, int(self.ts[exit_])
                t.exit_price = pos.exit_price or Decimal(0)
                t.pnl = pos.realized_pnl or Decimal(0)
                t.exit_reason = pos.exit_reason.value if pos.exit_reason else ""
            return t

        out = [trade(pos, e, x) for pos, e, x in self._ladder_closed]
        out += [trade(pos, self._entry_idx.get(pos.position_id, 0), -1) for pos in self.s.get_active_positions()]
        return out

    def _ladder_levels(self) -> tuple[float, float]:
        down_t, up_t = -INF, INF
        for od in self.book.values():
            if od.down:
                down_t = max(down_t, od.price_f)
            else:
                up_t = min(up_t, od.price_f)
        self._dirty = False
        return down_t, up_t

    def _sync(self, intents: list[OrderIntent], i: int) -> None:
        """Diff the desired intents against the book by tag (orders placed now rest from candle i+1)."""
        if intents is self._last_src:  # a ladder returns the very same list while nothing changed (base.py)
            return
        self._last_src = intents
        last = self._last_intents
        if last is not None and len(last) == len(intents) and all(a is b for a, b in zip(last, intents, strict=True)):
            return
        self._last_intents = list(intents)
        want = {it.tag: it for it in intents}
        book = self.book
        for tag in [t for t in book if t not in want]:
            del book[tag]
            self._dirty = True
        for tag in [t for t in self.pending_market if t not in want]:
            del self.pending_market[tag]
        for tag, it in want.items():
            if it.order_type == "market":
                book.pop(tag, None)
                self.pending_market[tag] = it
                continue
            cur = book.get(tag)
            if cur is not None and (cur.intent is it or _same(cur.intent, it)):
                continue
            book[tag] = _Order(it, i)
            self._dirty = True

    def _ladder_market(self, i: int) -> None:
        todo, self.pending_market = self.pending_market, {}
        for it in todo.values():
            price, liq = self.fm.market(it.side, self.o[i])
            self._ladder_execute(i, it, price, liq, sync_price=price)

    def _ladder_fills(self, i: int, through: bool) -> None:
        o, h, lo, c = self.o[i], self.h[i], self.l[i], self.c[i]
        eligible = [od for od in self.book.values() if od.placed < i]
        # orders the open already crossed fill first, at the open
        gapped = [od for od in eligible if (o <= od.price_f if od.down else o >= od.price_f)]
        down = sorted((od for od in eligible if od.down), key=lambda od: -od.price_f)
        up = sorted((od for od in eligible if not od.down), key=lambda od: od.price_f)
        legs = (down, up) if c >= o else (up, down)
        done: set[int] = set()
        for od in gapped:
            self._ladder_hit(i, od, dec(o), gap=True)
            done.add(id(od))
        for leg in legs:
            for od in leg:
                if id(od) in done:
                    continue
                if od.down:
                    reached = lo < od.price_f if (through and od.intent.order_type == "limit") else lo <= od.price_f
                else:
                    reached = h > od.price_f if (through and od.intent.order_type == "limit") else h >= od.price_f
                if not reached:
                    break  # sorted along the path: the rest are farther away
                self._ladder_hit(i, od, od.price, gap=False)

    def _ladder_hit(self, i: int, od: _Order, level: Decimal, *, gap: bool) -> None:
        it = od.intent
        if self.book.get(it.tag) is not od:  # cancelled or replaced by a re-sync earlier in this candle
            return
        del self.book[it.tag]
        self._dirty = True
        if it.order_type == "stop":
            price, liq = self.fm.slipped(it.side, level), "taker"
        else:
            price, liq = level, ("taker" if gap else "maker")
        self._ladder_execute(i, it, price, liq, sync_price=price)

    def _ladder_execute(self, i: int, it: OrderIntent, price: Decimal, liq: str, *, sync_price: Decimal) -> None:
        s = self.s
        fill = self._fill(i, it.side, it.qty, price, liq, it.tag, it.tag)
        self.ledger.fill(fill)
        self._record()
        n_closed = s.closed_count
        follow = s.on_order_filled(it.tag, price, it.qty, fill.fee) or []
        self._attribute(i, n_closed)
        for f in follow:
            if f.order_type == "market":
                self.pending_market[f.tag] = f
            else:
                self.book[f.tag] = _Order(f, i)
                self._dirty = True
        self._last_intents = self._last_src = None
        self._sync(s.desired_orders(sync_price, self._balance()), i)

    # ------------------------------------------------------------------ result
    def _result(self, entry: pd.DataFrame, tf_ms: int, elapsed: float) -> BacktestResult:
        led = self.ledger
        close = self.p.close
        n = len(close)
        fill_idx = np.fromiter((f.index for f in led.fills), dtype=np.int64, count=len(led.fills))
        # after[k]: the state after the first k fills (after[0]: the start); a candle shows that of the fills
        # executed up to it
        done = np.cumsum(np.bincount(fill_idx, minlength=n)[:n]) if n else np.zeros(0, dtype=np.int64)
        position = np.r_[0.0, np.asarray(self._pos_after, dtype=np.float64)][done]
        cash = np.r_[float(led.initial), np.asarray(self._cash_after, dtype=np.float64)][done]
        equity = cash + position * close
        final = led.equity(dec(float(close[-1]))) if n else led.initial
        raw = self._ladder_trades() if self.s.is_ladder else led.trades
        if n:
            self._mark_open(raw, dec(float(close[-1])))
        trades = sorted(raw, key=lambda t: (t.entry_index, t.exit_index if t.closed else n))
        metrics = compute_metrics(trades=trades, equity=equity, position=position, tf_ms=tf_ms,
                                  initial_balance=led.initial, final_balance=final, total_fees=led.fees,
                                  open_qty=led.position)
        times = index_ms(entry) if isinstance(entry.index, pd.DatetimeIndex) else np.asarray(self.p.open_ms)
        return BacktestResult(
            strategy_name=self.s.strategy_type, timeframe=timeframe_name(tf_ms), tf_ms=tf_ms,
            times=times, close=close, equity=equity, position=position, fills=led.fills, trades=trades,
            metrics=metrics, initial_balance=led.initial, elapsed_s=elapsed,
            params=dict(self.s.params), levels=self.s.chart_levels(), ladder=self.s.is_ladder,
        )


    def _mark_open(self, trades: list[Trade], price: Decimal) -> None:
        """An open trade's pnl: its position marked at ``price`` net of the fees it paid (the strategy's own
        position, so a DCA cycle is marked on its exact cost basis)."""
        positions = self.s.open_positions
        for t in trades:
            if t.closed:
                continue
            pos = positions.get(t.tag)
            if pos is not None:
                t.pnl = pos.gross_pnl_at(price) - pos.fees
            elif not self.s.is_ladder:  # booked from signal_arrays: the trade is the position
                value, cost = price * t.qty, t.entry_price * t.qty
                t.pnl = (value - cost if t.side == "long" else cost - value) - t.fees


def run_backtest(strategy: BaseStrategy, frame: pd.DataFrame, tf_ms: int, config: BacktestConfig | None = None,
                 *, progress: Progress | None = None) -> BacktestResult:
    """Backtest `strategy` on `frame` (its entry timeframe, `tf_ms`); higher timeframes are resampled from it."""
    frames = build_frames(strategy, frame, tf_ms)
    return Backtester(strategy, config, progress=progress).run(frames, tf_ms)
