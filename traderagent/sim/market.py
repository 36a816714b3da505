"""Instrument specs and price paths for the simulator.

Every symbol has one 1-minute base series shared by its linear and spot markets:
- ``realized``: completed candles (the history the kline endpoint serves), int64 tick counts so that
  prices are exact Decimals (ticks * tickSize) without per-candle Decimal objects;
- ``live``: the current, still-forming candle;
- ``future``: the path still to replay (floats, multiplied by ``scale`` and rounded to ticks when used).

Real candles come from compact CSVs in ``sim/data`` (5m candles from the same Freqtrade test data as tests/data, rescaled to
USDT levels). Each 5m candle is bridged into five 1m candles whose resample gives the 5m candle back exactly,
so 1m and 3m klines exist too. History before the real data is a seeded random walk that ends at the first
real open; when the replay runs out of real data it continues with a seeded walk.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import numpy as np

from traderagent.timeframes import MINUTE_MS, TIMEFRAMES, timeframe_minutes

DATA_DIR = Path(__file__).resolve().parent / "data"
WEEK_OFFSET_MS = 4 * 86_400_000  # epoch was a Thursday; ByBit weeks start on Monday
INTERVALS = {code: timeframe_minutes(code) for code in TIMEFRAMES.values()}  # ByBit code -> minutes
_TS = TypeVar("_TS", np.ndarray, int)  # a bucketed timestamp keeps its shape: array or scalar
SIGMA = 0.0008  # per-minute log-return volatility of the synthetic walk


@dataclass(frozen=True)
class SymbolSpec:
    """One tradable symbol (the same instrument rules are used by linear and spot unless noted)."""

    symbol: str
    base_coin: str
    qty_step: Decimal
    tick_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_qty: Decimal
    max_mkt_qty: Decimal
    price_level: Decimal  # the price at the start of the replay (the path is rescaled to it)
    base_precision: Decimal  # spot qty step
    quote_coin: str = "USDT"
    categories: tuple[str, ...] = ("linear", "spot")
    max_leverage: Decimal = Decimal("100")
    source: str | None = None  # 5m CSV in sim/data; None -> seeded random walk
    source_offset: int = 0  # rotate the source rows (lets two symbols share one file)
    symbol_id: int = 0
    quote_precision: Decimal = Decimal("0.0000001")
    spot_min_amt: Decimal = Decimal("5")
    spot_max_amt: Decimal = Decimal("8000000")
    spot_max_limit_qty: Decimal | None = None
    spot_max_mkt_qty: Decimal | None = None

    @property
    def price_decimals(self) -> int:
        return max(0, -int(self.tick_size.as_tuple().exponent))

    @property
    def qty_decimals(self) -> int:
        return max(0, -int(self.qty_step.normalize().as_tuple().exponent))


def _d(x: str) -> Decimal:
    return Decimal(x)


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("BTCUSDT", "BTC", _d("0.001"), _d("0.10"), _d("0.001"), _d("5"), _d("1190"), _d("500"),
               _d("60000"), _d("0.000001"), source="BTCUSDT-5m.csv", symbol_id=5,
               spot_max_limit_qty=_d("83"), spot_max_mkt_qty=_d("41.5")),
    SymbolSpec("ETHUSDT", "ETH", _d("0.01"), _d("0.01"), _d("0.01"), _d("5"), _d("7240"), _d("3620"),
               _d("3000"), _d("0.00001"), source="ETHUSDT-5m.csv", symbol_id=6,
               spot_max_limit_qty=_d("2600"), spot_max_mkt_qty=_d("1300")),
    SymbolSpec("XRPUSDT", "XRP", _d("1"), _d("0.0001"), _d("1"), _d("5"), _d("4000000"), _d("1000000"),
               _d("1.2"), _d("0.01"), source="XRPUSDT-5m.csv", symbol_id=7,
               spot_max_limit_qty=_d("1000000"), spot_max_mkt_qty=_d("500000")),
    SymbolSpec("SOLUSDT", "SOL", _d("0.1"), _d("0.01"), _d("0.1"), _d("5"), _d("79770"), _d("39880"),
               _d("150"), _d("0.001"), source="ETHUSDT-5m.csv", source_offset=2880, symbol_id=8,
               spot_max_limit_qty=_d("40000"), spot_max_mkt_qty=_d("20000")),
)


def load_source(name: str, offset: int = 0) -> np.ndarray:
    """Read a compact 5m CSV -> float array (n, 5): open, high, low, close, volume."""
    with open(DATA_DIR / name, newline="") as fh:
        rows = [[float(x) for x in r[1:6]] for r in csv.reader(fh) if r and r[0][0].isdigit()]
    arr = np.asarray(rows, dtype=np.float64)
    return np.roll(arr, -offset, axis=0) if offset else arr


def bridge_to_minutes(c5: np.ndarray) -> np.ndarray:
    """Split 5m candles into 1m candles that touch open, low/high and close (bullish: low first)."""
    o, h, lo, c, v = (c5[:, i] for i in range(5))
    bull = c >= o
    x1 = np.where(bull, lo, h)
    x2 = (o + c) / 2
    x3 = np.where(bull, h, lo)
    x4 = (x3 + c) / 2
    closes = np.stack([x1, x2, x3, x4, c], axis=1)
    opens = np.stack([o, x1, x2, x3, x4], axis=1)
    out = np.empty((len(c5) * 5, 5))
    out[:, 0] = opens.ravel()
    out[:, 3] = closes.ravel()
    out[:, 1] = np.maximum(out[:, 0], out[:, 3])
    out[:, 2] = np.minimum(out[:, 0], out[:, 3])
    out[:, 4] = np.repeat(v / 5, 5)
    return out


def random_walk(rng: np.random.Generator, n: int, start: float) -> np.ndarray:
    """Seeded 1m OHLCV walk starting at ``start`` (float array (n, 5))."""
    rets = rng.normal(0.0, SIGMA, n)
    closes = start * np.exp(np.cumsum(rets))
    opens = np.concatenate(([start], closes[:-1]))
    hi = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0, SIGMA / 2, n)))
    lo = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0, SIGMA / 2, n)))
    vol = 50_000.0 / start * rng.lognormal(0.0, 0.5, n)
    return np.stack([opens, hi, lo, closes, vol], axis=1)


def backward_walk(rng: np.random.Generator, n: int, end_price: float) -> np.ndarray:
    """A walk of n candles whose last close is ``end_price`` (history synthesized before real data)."""
    if n <= 0:
        return np.empty((0, 5))
    walk = random_walk(rng, n, 1.0)
    factor = end_price / walk[-1, 3]
    walk[:, :4] *= factor
    walk[:, 4] /= factor
    return walk


@functools.lru_cache(maxsize=16)
def _base_path(spec: SymbolSpec, history: int, source: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history ticks (n, 4), history volume (n, 1), future float path (m, 5)); cached because every test
    builds a simulator and the arrays are copied by the series (the future is never written)."""
    rng = np.random.default_rng([seed, spec.symbol_id, 7])
    level = float(spec.price_level)
    if source == "real" and spec.source:
        real = bridge_to_minutes(load_source(spec.source, spec.source_offset))
        in_history = min(len(real) // 4, history) // 5 * 5  # keep real 5m candles on 5m buckets
        real[:, :4] *= level / real[in_history, 0]
        warm = backward_walk(rng, history - in_history, real[0, 0])
        path = np.concatenate([warm, real])
    else:
        path = backward_walk(rng, history, level)
        path = np.concatenate([path, random_walk(rng, 20_000, path[-1, 3])])
    ticks = np.maximum(np.rint(path[:history, :4] / float(spec.tick_size)), 1).astype(np.int64)
    future = path[history:].copy()
    future.flags.writeable = False
    return ticks, path[:history, 4:5].copy(), future


class _Grow:
    """Append-only column arrays with capacity doubling (amortised O(1) append)."""

    def __init__(self, cols: int, data: np.ndarray | None = None, dtype: type = np.int64) -> None:
        n = 0 if data is None else len(data)
        self.a: np.ndarray = np.zeros((n + 4096, cols), dtype=dtype)
        if n:
            self.a[:n] = data
        self.n = n

    def append(self, row: tuple[float, ...]) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n] = row
        self.n += 1

    def extend(self, rows: np.ndarray) -> None:
        while self.n + len(rows) > len(self.a):
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    def view(self) -> np.ndarray:
        return self.a[: self.n]


@dataclass
class _Resampled:
    ts: _Grow
    px: _Grow  # o, h, l, c ticks
    vol: _Grow
    first_base: _Grow  # base index where each bucket starts
    used: int = 0  # base candles consumed


@dataclass
class Candle:
    ts: int
    o: int
    h: int
    l: int  # noqa: E741
    c: int
    v: float


def _path_between(row: np.ndarray, start: float, end: float) -> list[float]:
    """Prices passed between fractions ``start`` and ``end`` of a candle's path (both ends included).
    The path is open -> low -> high -> close for a rising candle and open -> high -> low -> close for a
    falling one (the usual intra-bar assumption), walked at constant speed."""
    o, h, lo, c = (float(x) for x in row[:4])
    vertices = [o, lo, h, c] if c >= o else [o, h, lo, c]
    legs = [abs(b - a) for a, b in zip(vertices, vertices[1:], strict=False)]
    total = sum(legs)
    if total == 0:
        return [o]

    def at(f: float) -> tuple[float, int]:  # price at fraction f, index of the vertex reached before it
        d = f * total
        for i, leg in enumerate(legs):
            if d <= leg or i == len(legs) - 1:
                t = min(1.0, d / leg) if leg else 1.0
                return vertices[i] + (vertices[i + 1] - vertices[i]) * t, i
            d -= leg
        return c, len(legs) - 1

    p0, i0 = at(start)
    p1, i1 = at(end)
    return [p0, *vertices[i0 + 1:i1 + 1], p1]


@dataclass
class PriceSeries:
    """The 1m price path of one symbol (see the module docstring)."""

    spec: SymbolSpec
    t0: int  # open time of realized[0]
    px: _Grow  # realized o, h, l, c in ticks
    vol: _Grow  # realized volume
    future: np.ndarray  # float (m, 5)
    rng: np.random.Generator
    cur: int = 0
    scale: float = 1.0
    live: Candle = field(default=None)  # type: ignore[assignment]
    progress: float = 0.0  # how far (0..1) the live candle has travelled along its replay path
    version: int = 0
    _cache: dict[int, _Resampled] = field(default_factory=dict)
    _stats: tuple[int, dict[str, Decimal]] | None = None

    @classmethod
    def build(cls, spec: SymbolSpec, *, history: int, source: str, seed: int, now_ms: int) -> PriceSeries:
        ticks, vol, future = _base_path(spec, history, source, seed)
        t0 = now_ms // (5 * MINUTE_MS) * (5 * MINUTE_MS) - history * MINUTE_MS  # replay starts on a 5m bucket
        rng = np.random.default_rng([seed, spec.symbol_id, 11])  # for extending the path later
        s = cls(spec, t0, _Grow(4, ticks), _Grow(1, vol, np.float64), future, rng)
        s.live = s._fresh_live()
        return s

    # --- replay -----------------------------------------------------------------------------------
    def _future_row(self) -> np.ndarray:
        if self.cur >= len(self.future):
            last = float(self.future[-1, 3])
            self.future = np.concatenate([self.future[-1:], random_walk(self.rng, 20_000, last)])
            self.cur = 1
        return self.future[self.cur]

    def _ticks(self, x: float) -> int:
        return max(1, round(x * self.scale / float(self.spec.tick_size)))

    def _fresh_live(self) -> Candle:
        o = self._ticks(float(self._future_row()[0]))
        return Candle(self.t0 + self.px.n * MINUTE_MS, o, o, o, o, 0.0)

    @property
    def price_ticks(self) -> int:
        return self.live.c

    @property
    def price(self) -> Decimal:
        return self.spec.tick_size * self.live.c

    def set_price(self, price: Decimal) -> None:
        """Move the market now; the rest of the path continues from here."""
        t = max(1, int((price / self.spec.tick_size).to_integral_value()))
        if self.live.c > 0:
            self.scale *= t / self.live.c
        lv = self.live
        lv.c, lv.h, lv.l = t, max(lv.h, t), min(lv.l, t)
        self.version += 1

    def advance(self, fraction: float) -> tuple[int, int] | None:
        """Move the live candle to ``fraction`` (0..1) of its replay path, as a real market moves within
        a minute; returns the (low, high) ticks traversed, or None when it has not moved on."""
        if fraction <= self.progress:
            return None
        row = self._future_row()
        passed = _path_between(row, self.progress, min(fraction, 1.0))
        ticks = [self._ticks(x) for x in passed]
        lv = self.live
        lv.c, lv.h, lv.l = ticks[-1], max(lv.h, *ticks), min(lv.l, *ticks)
        lv.v = float(row[4]) * min(fraction, 1.0)
        self.progress = fraction
        self.version += 1
        return min(ticks), max(ticks)

    def step(self) -> tuple[int, int]:
        """Complete the live candle with the rest of its replay path; returns the (low, high) ticks
        traversed from where the live candle stood to the next candle's open."""
        row = self._future_row()
        rest = [self._ticks(x) for x in _path_between(row, self.progress, 1.0)]
        lv = self.live
        sc = rest[-1]
        self.px.append((lv.o, max(lv.h, *rest), min(lv.l, *rest), sc))
        self.vol.append((float(row[4]),))
        self.cur += 1
        self.live = self._fresh_live()
        self.progress = 0.0
        self.version += 1
        nxt = self.live.o
        return min(*rest, nxt), max(*rest, nxt)

    def fast_forward(self, n: int) -> None:
        """Complete ``n`` candles at once, as ``n`` calls of ``step()`` would (without matching, and
        with the live candle starting afresh): how a saved replay position is restored."""
        tick = float(self.spec.tick_size)
        while n > 0:
            self._future_row()  # extends the path when it has run out, as step() does
            k = min(n, len(self.future) - self.cur)
            rows = self.future[self.cur:self.cur + k]
            self.px.extend(np.maximum(np.rint(rows[:, :4] * self.scale / tick), 1).astype(np.int64))
            self.vol.extend(rows[:, 4:5])
            self.cur += k
            n -= k
        self.live = self._fresh_live()
        self.progress = 0.0
        self.version += 1

    # --- klines -------------------------------------------------------------------------------------
    def _bucket(self, ts: _TS, minutes: int) -> _TS:
        size = minutes * MINUTE_MS
        off = WEEK_OFFSET_MS if minutes == 10080 else 0
        return (ts - off) // size * size + off

    def _resampled(self, minutes: int) -> _Resampled:
        r = self._cache.get(minutes)
        if r is None:
            r = _Resampled(_Grow(1), _Grow(4), _Grow(1, dtype=np.float64), _Grow(1))
            self._cache[minutes] = r
        n = self.px.n
        if r.used == n:
            return r
        # the last bucket may be incomplete: drop it and recompute from its first base candle
        i0 = 0
        if r.ts.n:
            i0 = int(r.first_base.a[r.ts.n - 1, 0])
            for g in (r.ts, r.px, r.vol, r.first_base):
                g.n -= 1
        ts = self.t0 + np.arange(i0, n, dtype=np.int64) * MINUTE_MS
        b = self._bucket(ts, minutes)
        starts = np.flatnonzero(np.concatenate(([True], b[1:] != b[:-1])))
        px, vol = self.px.view()[i0:n], self.vol.view()[i0:n, 0]
        ends = np.concatenate((starts[1:], [len(b)])) - 1
        rows = np.stack([px[starts, 0], np.maximum.reduceat(px[:, 1], starts),
                         np.minimum.reduceat(px[:, 2], starts), px[ends, 3]], axis=1)
        r.ts.extend(b[starts].reshape(-1, 1))
        r.px.extend(rows)
        r.vol.extend(np.add.reduceat(vol, starts).reshape(-1, 1))
        r.first_base.extend((starts + i0).reshape(-1, 1))
        r.used = n
        return r

    def klines(self, minutes: int, start: int | None, end: int | None, limit: int) -> list[list[str]]:
        """Rows [start, o, h, l, c, volume, turnover] as strings, newest first (first row still forming)."""
        if minutes == 1:  # evenly spaced: a read of the newest rows (every push) builds only those
            first = max(0, self.px.n - limit - 1) if start is None and end is None else 0
            ts = self.t0 + np.arange(first, self.px.n, dtype=np.int64) * MINUTE_MS
            hist_ts, hist_px, hist_v = ts, self.px.view()[first:], self.vol.view()[first:, 0]
        else:
            r = self._resampled(minutes)
            hist_ts, hist_px, hist_v = r.ts.view()[:, 0], r.px.view(), r.vol.view()[:, 0]
        lv = self.live
        live_b = int(self._bucket(lv.ts, minutes)) if minutes > 1 else lv.ts
        forming: tuple[int, int, int, int, int, float]
        n_hist = len(hist_ts)
        if n_hist and int(hist_ts[-1]) == live_b:
            o, h, lo, _ = (int(x) for x in hist_px[-1])
            forming = (live_b, o, max(h, lv.h), min(lo, lv.l), lv.c, float(hist_v[-1]) + lv.v)
            n_hist -= 1
        else:
            forming = (live_b, lv.o, lv.h, lv.l, lv.c, lv.v)
        hi_idx = n_hist if end is None else int(np.searchsorted(hist_ts[:n_hist], end, side="right"))
        lo_idx = 0 if start is None else int(
            np.searchsorted(hist_ts[:n_hist], self._bucket(start, minutes), side="left"))
        out: list[list[str]] = []
        if (end is None or forming[0] <= end) and (start is None or forming[0] >= self._bucket(start, minutes)):
            out.append(self._fmt_row(*forming))
        i = hi_idx - 1
        while len(out) < limit and i >= lo_idx:
            o, h, lo, c = (int(x) for x in hist_px[i])
            out.append(self._fmt_row(int(hist_ts[i]), o, h, lo, c, float(hist_v[i])))
            i -= 1
        return out[:limit]

    def _fmt_row(self, ts: int, o: int, h: int, lo: int, c: int, v: float) -> list[str]:
        tick, qd = self.spec.tick_size, self.spec.qty_decimals
        close = tick * c
        return [str(ts), str(tick * o), str(tick * h), str(tick * lo), str(close),
                f"{v:.{qd}f}", f"{v * float(close):.4f}"]

    # --- ticker statistics -------------------------------------------------------------------------
    def stats(self) -> dict[str, Decimal]:
        """24h high/low/volume/turnover and the prices 24h and 1h ago (cached per price version)."""
        if self._stats and self._stats[0] == self.version:
            return self._stats[1]
        tick = self.spec.tick_size
        px, vol = self.px.view()[-1440:], self.vol.view()[-1440:, 0]
        lv = self.live
        v24 = float(vol[1:].sum()) + lv.v if len(vol) else lv.v
        turnover = float((vol[1:] * px[1:, 3]).sum()) * float(tick)
        st = {
            "high": tick * max(int(px[:, 1].max()) if len(px) else lv.h, lv.h),
            "low": tick * min(int(px[:, 2].min()) if len(px) else lv.l, lv.l),
            "prev24h": tick * int(px[0, 0]) if len(px) else self.price,
            "prev1h": tick * int(px[-60, 0]) if len(px) >= 60 else self.price,
            "volume": Decimal(f"{v24:.{self.spec.qty_decimals}f}"),
            "turnover": Decimal(f"{turnover:.4f}") if math.isfinite(turnover) else Decimal(0),
        }
        self._stats = (self.version, st)
        return st
