"""Strategy contract shared by every strategy, the backtester and the live orchestrator.

Strategies are *pure*: no network, no database, no clock, no randomness. They get pandas
DataFrames of CLOSED candles (DatetimeIndex in UTC, float columns ``open, high, low, close,
volume``; the driver drops the still-forming candle that ByBit's kline endpoint returns) and
Decimals, and return value objects. Every timestamp a strategy emits comes from the frame's
index. Money and quantities are ``Decimal``; floats only inside indicator maths.

Construction
============
``Strategy(params: Mapping | None, *, qty_step, tick_size, allocated_capital, market_type="linear")``
(normally via ``traderagent.strategies.create_strategy``). ``params`` is parsed against the
class's ``PARAMS`` declarations (``params.py``): aliases resolved, values typed, bounds checked, defaults
filled; a bad or unknown parameter raises ``ParamError`` (a ``ValueError``) naming it. Quantities are
rounded DOWN to ``qty_step``; prices to ``tick_size``.

Class attributes every strategy declares
---------------------------------------
* ``timeframes: tuple[str, ...]`` -- frames the strategy consumes, highest first, the entry
  (lowest) timeframe LAST, e.g. ``("4h", "1h", "15m")``. ``analyze_market``/``prepare`` receive the
  frames in exactly that order.
* ``min_candles: int`` -- closed candles of the entry frame (and of each higher frame) needed
  before the first decision. Earlier indices never produce a signal.
* ``history_candles: int`` -- candles the live path prepares on each tick: ``min_candles`` plus the
  unstable period of its recursive indicators (``indicators.unstable_candles``), so that a decision
  on that window equals the backtest's on the whole history.
* ``is_ladder: bool`` -- False for signal strategies (trend, SMC), True for order-ladder
  strategies (grid, DCA) that are driven by order intents.

Two paths to the same decision (both drivers MUST use the per-index path semantics)
=================================================================================
* Cheap per-candle path (backtester): ``prepared = s.prepare(*frames)`` once for the whole
  history (all indicator arrays vectorised with TA-Lib), then ``s.analyze_at(prepared, i)``,
  ``s.signal_at(prepared, i, balance)`` and ``s.on_candle_close(prepared, i)`` per entry-frame
  index ``i``. The value at index ``i`` only depends on candles ``<= i`` (no look-ahead:
  ``signal_at(prepare(df[:i+1]), i, b) == signal_at(prepare(df), i, b)``; tests enforce it).
* Spec path (live orchestrator, one call per tick): ``analyze_market(*frames)``,
  ``generate_signal(df, balance)``, ``update_positions(price, df)`` are thin wrappers that call
  ``prepare`` on the frames given and use the LAST index. Cost: <= 5 ms for 500 candles.

Multi-timeframe rule (SMC): at entry index ``i`` a strategy may only use higher-timeframe candles
whose CLOSE time (open time + timeframe) is ``<=`` the close time of entry candle ``i``; see
``align_higher_timeframe`` below (vectorised, for use inside ``prepare``).

Driving a SIGNAL strategy (``is_ladder = False``), per closed entry candle ``i``
===============================================================================
::

    prepared = s.prepare(*frames)                  # backtest: once; live: per new closed candle
    for i in range(len(prepared)):                 # live: i = last index of the fresh frame
        # 1. intrabar exits of positions opened BEFORE candle i
        for p in s.check_exits(Decimal(close[i]), high=Decimal(high[i]), low=Decimal(low[i]),
                               open_=Decimal(open[i])):
            s.close_position(p.position_id, fill, p.exit_reason, fee=fee, timestamp=...)
            # backtest fill = p.exit_price (stop/TP level, or the open if the bar gapped through;
            # check_exits already chose that); live fill = the market order's average price
        # 2. decisions at the close of candle i (trailing-stop ratchet, reversal exits)
        for p in s.on_candle_close(prepared, i):   # exits to execute at the next price
            s.close_position(p.position_id, fill, p.exit_reason, ...)
        # 3. new entry
        sig = s.signal_at(prepared, i, balance)    # None if no entry or max_positions reached
        if sig is not None:                         # sig.size already risk-sized and rounded
            s.open_position(sig, sig.size, fill, fee=fee, timestamp=...)

* ``signal_candidates(prepared)`` (optional speed hook): a bool array over the entry indices, False
  where ``signal_at`` returns None whatever the positions and balance (a superset of the real
  entries is fine), or None (the default) = every candle is a candidate. A driver replaying history
  (the backtester) may skip ``signal_at`` at non-candidates while flat; the live path never needs it.
* Decisions taken at the close of candle ``i`` (steps 2 and 3) are executed by the backtester at
  ``open[i+1]`` (plus its slippage model), by the live orchestrator immediately with a market
  order. Stop and target levels are absolute (those of the signal), not re-anchored to the fill.
* Live, each tick between candle closes: ``s.update_positions(last_price, df)`` == step 2 for a
  candle not yet seen (detected by the index timestamp; idempotent) + ``check_exits(last_price)``.
  It returns the positions that must exit now, each with ``exit_reason`` and the trigger price in
  ``exit_price``; the driver executes and calls ``close_position`` with the real fill.
* In ``check_exits`` when both stop and target lie inside one bar the STOP wins (pessimistic).

Driving a LADDER strategy (``is_ladder = True``: grid, DCA), per closed candle ``i``
==================================================================================
Order intents: ``OrderIntent(tag, side, order_type, qty, price, reduce_only)``. ``tag`` is
unique among the strategy's live intents ("grid:3:buy", "dca:so2", "dca:tp") and identifies the
order across restarts (the orchestrator stores it in ``orders.tag``). ``order_type``:

* ``"limit"``: rests on the book at ``price``.
* ``"market"``: execute now (price is None).
* ``"stop"``: a stop-market held BY THE DRIVER (not sent to the exchange): when the last price
  crosses ``price`` (sell stop: price <= trigger; buy stop: price >= trigger) the driver sends a
  market order. The backtester triggers it on the bar's low/high and fills at the trigger (or at
  the open if the bar gapped through).

::

    prepared = s.prepare(df)
    for i in range(len(prepared)):
        # 1. fills inside bar i of orders resting BEFORE bar i.  Bar path: open->low->high->close
        #    if close >= open else open->high->low->close. A buy limit fills when low <= price,
        #    a sell limit when high >= price, at the limit price (or at the open if the bar opened
        #    through it). Process fills in path order; after EACH fill call
        #        s.on_order_filled(tag, fill_price, qty, fee)
        #    then re-sync with s.desired_orders(...) (intents no longer desired are cancelled and
        #    cannot fill later in this bar). Orders placed during bar i fill from bar i+1 on.
        # 2. s.on_candle_close(prepared, i)  -> candle counters, start conditions (returns [])
        # 3. intents = s.desired_orders(Decimal(close[i]), balance)
        #    diff against the resting book BY TAG: place missing intents, cancel resting orders
        #    whose tag is absent, cancel+replace when side/price/qty/type changed. Market intents
        #    execute at the next price (backtest: at open[i+1] plus slippage, like every decision
        #    taken at the close of candle i; live: right away) and their fill is reported via
        #    on_order_filled. Follow-up market intents returned by on_order_filled likewise.

Live: each tick the orchestrator confirms fills (fetch_order) -> ``on_order_filled`` (in fill
time order), calls ``on_candle_close(prepare(df), last)`` once per new closed candle, then
``desired_orders(last_price, balance)`` and applies the same tag diff. ``on_order_filled``
returns the follow-up intents to place right away (e.g. the grid counter order); they are also
part of every later ``desired_orders`` result, so a driver that only diffs is still correct.
``desired_orders`` may change state (e.g. the grid pauses when the price leaves its range) but is
idempotent: calling it twice with the same price returns the same intents. When nothing that
matters changed (no fill, same status, the price inside the same level band, same balance) a
ladder returns the very SAME list object as last time, so a driver can skip its diff with an
identity check (``intents is last``). The list is shared: neither the strategy nor a driver may
mutate a list once it was returned (a strategy builds a new list whenever the result changes).

``on_order_filled(tag, fill_price, qty, fee)``: called once per order when it reaches a final
state with a filled quantity > 0 (filled, or cancelled after a partial fill) with the average
fill price and the cumulative filled qty. ``fee`` is the fee in QUOTE currency. On spot, where
ByBit charges buy fees in the base coin, pass ``qty`` = quantity actually received (net of that
fee) and ``fee`` = its quote value: the cost basis ``price*qty + fee`` is then exact.
``timestamp`` (keyword, optional) is the fill time for the trade record; default: the open time
of the last candle passed to ``on_candle_close``.

``balance``: the quote capital currently available to the bot (the orchestrator passes the bot's
allocated capital plus its realised pnl, capped by the free wallet balance). Strategies never
commit more than ``min(balance, allocated_capital)``.

Restart recovery
================
``get_state() -> dict`` (JSON-safe: Decimals as strings) and ``load_state(dict)`` round-trip open
positions, performance history, counters and (ladders) the level/cycle table. The orchestrator
saves it with ``save_bot_progress`` after every fill/close and reconciles with the exchange at start.

Sizing and performance
======================
``position_size(entry, stop, balance)``: ``balance * risk_per_trade / |entry - stop|``, capped so
that the notional ``size * entry <= allocated_capital``, rounded DOWN to ``qty_step``.
Every closed position (signal trade, grid pair, DCA deal) is recorded by ``close_position`` ->
``get_performance()``: trades, wins, losses, win rate, total pnl (net of fees), profit factor, Sharpe
ratio and max drawdown as defined in ``traderagent.metrics``, over the realised equity curve (one point
per closed trade, starting at ``allocated_capital``; the Sharpe ratio is per trade, not annualised).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.metrics import max_drawdown, realised_equity, sharpe_ratio, trade_stats
from traderagent.numbers import to_decimal
from traderagent.strategies.params import Param, parse_params
from traderagent.timeframes import timeframe_ms
from traderagent.utils.plain import json_safe

ZERO = Decimal(0)


class SignalDirection(str, Enum):
    LONG = "long"
    SHORT = "short"


class ExitReason(str, Enum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    BREAKEVEN = "breakeven"
    PARTIAL_CLOSE = "partial_close"
    MANUAL = "manual"
    SIGNAL_REVERSED = "signal_reversed"
    RISK_LIMIT = "risk_limit"
    TIMEOUT = "timeout"
    GRID_PAIR = "grid_pair"  # the counter order of a grid lot filled


# ---------------------------------------------------------------------------- helpers


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """Round DOWN (toward zero for positives) to a multiple of ``step``."""
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=ROUND_FLOOR) * step).quantize(step)


def round_up(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=ROUND_CEILING) * step).quantize(step)


def round_nearest(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return ((value / step).to_integral_value(rounding=ROUND_HALF_EVEN) * step).quantize(step)


def align_higher_timeframe(
    higher_open_ms: np.ndarray, higher_tf: str, entry_open_ms: np.ndarray, entry_tf: str
) -> np.ndarray:
    """For each entry candle, the index of the last higher-tf candle CLOSED by the entry close (-1: none)."""
    higher_close = np.asarray(higher_open_ms, dtype=np.int64) + timeframe_ms(higher_tf)
    entry_close = np.asarray(entry_open_ms, dtype=np.int64) + timeframe_ms(entry_tf)
    return np.searchsorted(higher_close, entry_close, side="right").astype(np.int64) - 1


def last_open_ms(df: pd.DataFrame | None) -> int | None:
    """Open time (epoch ms) of the frame's last candle; None when empty or not indexed by time."""
    if df is None or len(df) == 0 or not isinstance(df.index, pd.DatetimeIndex):
        return None
    return int(df.index[-1:].as_unit("ms").asi8[0])


def _parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# ---------------------------------------------------------------------------- value types


@dataclass
class BaseMarketAnalysis:
    trend: str  # "bullish" | "bearish" | "sideways" | "unknown"
    trend_strength: float  # 0..1
    volatility: float  # ATR / close
    timestamp: datetime | None
    strategy_type: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass
class BaseSignal:
    direction: SignalDirection
    entry_price: Decimal
    stop_loss: Decimal
    take_profit: Decimal | None
    size: Decimal
    confidence: float
    timestamp: datetime | None
    strategy_type: str
    signal_reason: str = ""
    risk_reward_ratio: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def risk_amount(self) -> Decimal:
        """Price distance to the stop (positive when the stop is on the losing side)."""
        if self.direction is SignalDirection.LONG:
            return self.entry_price - self.stop_loss
        return self.stop_loss - self.entry_price

    @property
    def reward_amount(self) -> Decimal:
        if self.take_profit is None:
            return ZERO
        if self.direction is SignalDirection.LONG:
            return self.take_profit - self.entry_price
        return self.entry_price - self.take_profit

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass
class PositionInfo:
    position_id: str
    direction: SignalDirection
    entry_price: Decimal  # average entry (fees excluded)
    current_price: Decimal
    size: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    unrealized_pnl: Decimal
    entry_time: datetime | None
    strategy_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "open"  # "open" | "closed"
    fees: Decimal = ZERO  # quote fees paid so far (entry + exit)
    exit_price: Decimal | None = None  # trigger price while pending exit, fill price once closed
    exit_reason: ExitReason | None = None
    exit_time: datetime | None = None
    realized_pnl: Decimal | None = None  # net of all fees, set when closed
    cost_basis: Decimal | None = None  # exact sum(price*qty) once averaged into (entry_price rounds)

    @property
    def is_long(self) -> bool:
        return self.direction is SignalDirection.LONG

    def gross_pnl_at(self, price: Decimal) -> Decimal:
        cost = self.cost_basis if self.cost_basis is not None else self.entry_price * self.size
        value = price * self.size
        return value - cost if self.is_long else cost - value

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PositionInfo:
        def dec(key: str) -> Decimal | None:
            return to_decimal(data[key]) if data.get(key) is not None else None

        return cls(
            position_id=data["position_id"],
            direction=SignalDirection(data["direction"]),
            entry_price=to_decimal(data["entry_price"]),
            current_price=to_decimal(data["current_price"]),
            size=to_decimal(data["size"]),
            stop_loss=dec("stop_loss"),
            take_profit=dec("take_profit"),
            unrealized_pnl=to_decimal(data.get("unrealized_pnl", "0")),
            entry_time=_parse_ts(data.get("entry_time")),
            strategy_type=data["strategy_type"],
            metadata=dict(data.get("metadata") or {}),
            status=data.get("status", "open"),
            fees=to_decimal(data.get("fees", "0")),
            exit_price=dec("exit_price"),
            exit_reason=ExitReason(data["exit_reason"]) if data.get("exit_reason") else None,
            exit_time=_parse_ts(data.get("exit_time")),
            realized_pnl=dec("realized_pnl"),
            cost_basis=dec("cost_basis"),
        )


@dataclass
class StrategyPerformance:
    total_trades: int = 0
    winning_trades: int = 0
    losing_trades: int = 0
    win_rate: float = 0.0
    total_pnl: Decimal = ZERO
    profit_factor: float | None = None  # None: no losing trade
    sharpe_ratio: float | None = None  # None: undefined (fewer than two trades, or no variance)
    max_drawdown: float = 0.0
    avg_trade_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = json_safe(self)
        for key in ("win_rate", "profit_factor", "sharpe_ratio", "max_drawdown"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


@dataclass(frozen=True)
class OrderIntent:
    """An order a ladder strategy wants resting (limit), executed now (market) or armed (stop)."""

    tag: str
    side: str  # "buy" | "sell"
    order_type: str  # "limit" | "market" | "stop"
    qty: Decimal
    price: Decimal | None
    reduce_only: bool = False

    def __post_init__(self) -> None:
        if self.side not in ("buy", "sell"):
            raise ValueError(f"OrderIntent.side must be buy/sell, got {self.side!r}")
        if self.order_type not in ("limit", "market", "stop"):
            raise ValueError(f"OrderIntent.order_type invalid: {self.order_type!r}")
        if self.order_type != "market" and self.price is None:
            raise ValueError(f"OrderIntent {self.tag}: {self.order_type} order needs a price")

    def to_dict(self) -> dict[str, Any]:
        return json_safe(self)


@dataclass
class PreparedData:
    """Arrays of the entry frame (plus indicator columns) computed once by ``prepare``."""

    open_ms: np.ndarray  # int64 candle open times, UTC ms
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # strategy specific (higher frames, maps)

    def __len__(self) -> int:
        return len(self.close)

    def timestamp(self, i: int) -> datetime | None:
        if len(self.open_ms) == 0:
            return None
        return datetime.fromtimestamp(int(self.open_ms[i]) / 1000, tz=UTC)

    def index(self, i: int) -> int:
        """Normalise negative indices (-1 = last candle)."""
        return i + len(self) if i < 0 else i

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> PreparedData:
        idx = df.index
        if isinstance(idx, pd.DatetimeIndex):
            ts = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
            open_ms = ts.as_unit("ms").asi8.astype(np.int64)
        elif "timestamp_ms" in df.columns:
            open_ms = df["timestamp_ms"].to_numpy(dtype=np.int64)
        else:
            open_ms = np.zeros(0, dtype=np.int64)

        def col(name: str) -> np.ndarray:
            return np.ascontiguousarray(df[name].to_numpy(dtype=np.float64))

        return cls(open_ms, col("open"), col("high"), col("low"), col("close"), col("volume"))


# ---------------------------------------------------------------------------- base class


class BaseStrategy(ABC):
    """Common machinery: parameters, sizing, position book, performance, state."""

    PARAMS: ClassVar[tuple[Param, ...]] = ()  # the one declaration of the parameters (params.py)
    timeframes: tuple[str, ...] = ("1h",)  # an instance may set its own (from a timeframe parameter)
    min_candles: int = 100
    is_ladder: ClassVar[bool] = False

    @property
    def history_candles(self) -> int:
        """Candles live prepares per tick (see the module docstring); without recursive indicators a margin."""
        return self.min_candles + 50

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        qty_step: Decimal | str,
        tick_size: Decimal | str,
        allocated_capital: Decimal | str,
        market_type: str = "linear",
    ) -> None:
        self.params = parse_params(self.PARAMS, params or {}, owner=self.strategy_type)
        self.qty_step = to_decimal(qty_step)
        self.tick_size = to_decimal(tick_size)
        self.allocated_capital = to_decimal(allocated_capital)
        if self.qty_step <= 0 or self.tick_size <= 0:
            raise ValueError("qty_step and tick_size must be positive")
        if self.allocated_capital <= 0:
            raise ValueError("allocated_capital must be positive")
        if market_type not in ("linear", "spot"):
            raise ValueError(f"market_type must be 'linear' or 'spot', got {market_type!r}")
        self.market_type = market_type
        self._positions: dict[str, PositionInfo] = {}
        self._closed: list[PositionInfo] = []
        self._trade_pnls: list[Decimal] = []
        self._trade_fees: list[Decimal] = []
        self._next_id = 1
        self._last_candle_ms: int | None = None
        self._now_ms: int | None = None  # open time of the last candle seen (no clock)
        # ladders: (key, intents) of the last desired_orders call, see _cached_intents
        self._intents_cache: tuple[Any, list[OrderIntent]] | None = None

    # ------------------------------------------------------------ parameters
    # Typed views of ``self.params`` (already parsed and checked against ``PARAMS``).
    def _dec_param(self, name: str) -> Decimal:
        value = self.params[name]
        if not isinstance(value, Decimal):
            raise ValueError(f"parameter {name!r} is required")
        return value

    def _opt_dec_param(self, name: str) -> Decimal | None:
        return None if self.params[name] is None else self._dec_param(name)

    def _int_param(self, name: str) -> int:
        return int(self.params[name])

    def _str_param(self, name: str) -> str:
        return str(self.params[name])

    # ------------------------------------------------------------ abstract API
    @property
    @abstractmethod
    def strategy_type(self) -> str: ...

    @abstractmethod
    def prepare(self, *dataframes: pd.DataFrame) -> PreparedData:
        """Vectorised indicators for whole frames (frames in ``timeframes`` order)."""

    @abstractmethod
    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        """Market analysis at entry index ``i`` using only data <= i."""

    def signal_at(self, prepared: PreparedData, i: int, balance: Decimal) -> BaseSignal | None:
        """Entry signal at the close of candle ``i`` (None for ladder strategies by default)."""
        return None

    def signal_candidates(self, prepared: PreparedData) -> np.ndarray | None:
        """Optional hook: bool array, False where ``signal_at`` can never return a signal (see module doc).

        None (the default): every candle is a candidate.
        """
        return None

    def on_candle_close(self, prepared: PreparedData, i: int) -> list[PositionInfo]:
        """Per-candle bookkeeping at the close of ``i``; returns positions to exit at the next price."""
        return []

    # ------------------------------------------------------------ spec API (live wrappers)
    def analyze_market(self, *dataframes: pd.DataFrame) -> BaseMarketAnalysis:
        prepared = self.prepare(*dataframes)
        return self.analyze_at(prepared, len(prepared) - 1)

    def generate_signal(self, df: pd.DataFrame, balance: Decimal) -> BaseSignal | None:
        if len(df) == 0:
            return None
        prepared = self.prepare(df)
        return self.signal_at(prepared, len(prepared) - 1, to_decimal(balance))

    def update_positions(
        self,
        current_price: Decimal,
        df: pd.DataFrame | None = None,
        *,
        high: Decimal | None = None,
        low: Decimal | None = None,
    ) -> list[PositionInfo]:
        """Live per-tick call: candle-close work for a new closed candle in ``df``, then price exits."""
        to_exit: list[PositionInfo] = []
        if df is not None and len(df):
            last_ms = last_open_ms(df)
            if last_ms is None or last_ms != self._last_candle_ms:
                prepared = self.prepare(df)
                to_exit.extend(self.on_candle_close(prepared, len(prepared) - 1))
                self._last_candle_ms = last_ms
        pending = {p.position_id for p in to_exit}
        for pos in self.check_exits(to_decimal(current_price), high=high, low=low):
            if pos.position_id not in pending:
                to_exit.append(pos)
        return to_exit

    def _see_candle(self, prepared: PreparedData, i: int) -> None:
        """Remember candle i's time as the strategy's notion of 'now' (fill timestamps)."""
        # the ms only: a datetime per candle costs more than a backtest's whole ladder step
        self._now_ms = int(prepared.open_ms[i]) if len(prepared.open_ms) else None

    @property
    def _now(self) -> datetime | None:
        ms = self._now_ms
        return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)

    # ------------------------------------------------------------ ladder API
    def desired_orders(self, price: Decimal, balance: Decimal) -> list[OrderIntent]:
        """Orders that must be resting / sent now (ladder strategies)."""
        return []

    def _cached_intents(
        self, key: Callable[[], Any], build: Callable[[], list[OrderIntent]]
    ) -> list[OrderIntent]:
        """The last list again while ``key()`` (what decides the intents: state, price band, balance) is unchanged.

        ``build`` may change state (idempotently), so the key is taken again AFTER it ran: a later call with
        an equal key finds the state exactly as this call left it and would build the same intents.
        ``on_order_filled``, ``load_state`` and ``reset`` drop the cache. ``key()`` None: do not cache.
        """
        cache = self._intents_cache
        if cache is not None:
            now = key()
            if now is not None and cache[0] == now:
                return cache[1]
        out = build()
        self._intents_cache = (key(), out)
        return out

    def on_order_filled(
        self,
        tag: str,
        fill_price: Decimal,
        qty: Decimal,
        fee: Decimal,
        *,
        timestamp: datetime | None = None,
    ) -> list[OrderIntent]:
        """Book a fill; returns follow-up intents to place right away."""
        raise ValueError(f"{self.strategy_type}: unexpected fill for tag {tag!r}")

    def _fill_inputs(
        self, fill_price: Decimal, qty: Decimal, fee: Decimal, timestamp: datetime | None
    ) -> tuple[Decimal, Decimal, Decimal, datetime | None]:
        """Common start of a ladder's ``on_order_filled``: drop the intents cache (a fill changes the
        state), Decimal inputs, and the fill time (default: the last candle seen)."""
        self._intents_cache = None
        return to_decimal(fill_price), to_decimal(qty), to_decimal(fee), timestamp or self._now

    # ------------------------------------------------------------ sizing / rounding
    @property
    def risk_per_trade(self) -> Decimal:
        return to_decimal(self.params.get("risk_per_trade", "0.01"))

    def round_qty(self, qty: Decimal) -> Decimal:
        return round_down(qty, self.qty_step)

    def round_price(self, price: Decimal) -> Decimal:
        return round_nearest(price, self.tick_size)

    def position_size(self, entry: Decimal, stop: Decimal, balance: Decimal) -> Decimal:
        """Risk-based size, capped by allocated capital (notional), rounded down to qty_step."""
        distance = abs(entry - stop)
        if distance <= 0 or entry <= 0 or balance <= 0:
            return ZERO
        size = balance * self.risk_per_trade / distance
        cap = self.allocated_capital / entry
        return max(self.round_qty(min(size, cap)), ZERO)

    @staticmethod
    def price_of(value: float) -> Decimal:
        """Float candle price -> Decimal without binary noise (12 significant digits)."""
        return Decimal(f"{value:.12g}")

    # ------------------------------------------------------------ position book
    def _new_id(self) -> str:
        pid = f"{self.strategy_type}-{self._next_id}"
        self._next_id += 1
        return pid

    def open_position(
        self,
        signal: BaseSignal,
        size: Decimal,
        fill_price: Decimal,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        size, fill_price = to_decimal(size), to_decimal(fill_price)
        if size <= 0:
            raise ValueError("position size must be > 0")
        pos = PositionInfo(
            position_id=self._new_id(),
            direction=signal.direction,
            entry_price=fill_price,
            current_price=fill_price,
            size=size,
            stop_loss=signal.stop_loss,
            take_profit=signal.take_profit,
            unrealized_pnl=-to_decimal(fee),
            entry_time=timestamp or signal.timestamp,
            strategy_type=self.strategy_type,
            metadata={"initial_stop": str(signal.stop_loss), **signal.metadata},
            fees=to_decimal(fee),
        )
        self._positions[pos.position_id] = pos
        return pos

    def _open_raw(
        self,
        direction: SignalDirection,
        size: Decimal,
        price: Decimal,
        fee: Decimal,
        *,
        metadata: dict[str, Any] | None = None,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Open a position from a fill (ladder strategies)."""
        pos = PositionInfo(
            position_id=self._new_id(),
            direction=direction,
            entry_price=price,
            current_price=price,
            size=size,
            stop_loss=stop_loss,
            take_profit=take_profit,
            unrealized_pnl=-fee,
            entry_time=timestamp,
            strategy_type=self.strategy_type,
            metadata=dict(metadata or {}),
            fees=fee,
        )
        self._positions[pos.position_id] = pos
        return pos

    def _add_to_position(self, position_id: str, qty: Decimal, price: Decimal, fee: Decimal) -> PositionInfo:
        """Average into an open position (DCA safety orders)."""
        pos = self._positions[position_id]
        cost = (pos.cost_basis if pos.cost_basis is not None else pos.entry_price * pos.size) + price * qty
        pos.size += qty
        pos.cost_basis = cost
        pos.entry_price = cost / pos.size
        pos.fees += fee
        return pos

    def get_active_positions(self) -> list[PositionInfo]:
        return list(self._positions.values())

    @property
    def open_positions(self) -> Mapping[str, PositionInfo]:
        """Read-only live view of the open positions by id (no copy: for drivers' per-candle loops)."""
        return MappingProxyType(self._positions)

    @property
    def closed_count(self) -> int:
        """Number of closed position records (``closed_positions`` without the copy)."""
        return len(self._closed)

    def closed_since(self, start: int) -> list[PositionInfo]:
        """Closed position records from number ``start`` on (those booked since ``closed_count`` was start)."""
        return self._closed[start:]

    def get_position(self, position_id: str) -> PositionInfo:
        try:
            return self._positions[position_id]
        except KeyError:
            raise KeyError(f"no open position {position_id!r}") from None

    def check_exits(
        self,
        price: Decimal,
        *,
        high: Decimal | None = None,
        low: Decimal | None = None,
        open_: Decimal | None = None,
    ) -> list[PositionInfo]:
        """Positions whose stop / target lies within [low, high]; exit_price = fill to assume."""
        high = price if high is None else high
        low = price if low is None else low
        out = []
        for pos in self._positions.values():
            pos.current_price = price
            pos.unrealized_pnl = pos.gross_pnl_at(price) - pos.fees
            hit = self._exit_hit(pos, high, low, open_)
            if hit is not None:
                pos.exit_reason, pos.exit_price = hit
                out.append(pos)
        return out

    def _exit_hit(
        self, pos: PositionInfo, high: Decimal, low: Decimal, open_: Decimal | None
    ) -> tuple[ExitReason, Decimal] | None:
        stop_reason = ExitReason(pos.metadata.get("stop_reason", ExitReason.STOP_LOSS.value))
        # a bar that opened beyond the level gapped through it: the fill is the open
        if pos.is_long:
            if pos.stop_loss is not None and low <= pos.stop_loss:
                return stop_reason, open_ if open_ is not None and open_ < pos.stop_loss else pos.stop_loss
            if pos.take_profit is not None and high >= pos.take_profit:
                return ExitReason.TAKE_PROFIT, open_ if open_ is not None and open_ > pos.take_profit else pos.take_profit
        else:
            if pos.stop_loss is not None and high >= pos.stop_loss:
                return stop_reason, open_ if open_ is not None and open_ > pos.stop_loss else pos.stop_loss
            if pos.take_profit is not None and low <= pos.take_profit:
                return ExitReason.TAKE_PROFIT, open_ if open_ is not None and open_ < pos.take_profit else pos.take_profit
        return None

    def close_position(
        self,
        position_id: str,
        exit_price: Decimal,
        reason: ExitReason | str,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Close fully at ``exit_price``; books realised pnl net of entry and exit fees."""
        pos = self.get_position(position_id)
        exit_price, fee = to_decimal(exit_price), to_decimal(fee)
        pos.fees += fee
        del self._positions[position_id]
        self._book_exit(pos, exit_price, reason, timestamp)
        return pos

    def _close_part(
        self,
        position_id: str,
        qty: Decimal,
        exit_price: Decimal,
        reason: ExitReason | str,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Close ``qty`` of a position (all of it when qty >= size); entry fees are split pro rata."""
        pos = self.get_position(position_id)
        if qty >= pos.size:
            return self.close_position(position_id, exit_price, reason, fee=fee, timestamp=timestamp)
        part_fees = pos.fees * qty / pos.size
        part_cost = pos.cost_basis * qty / pos.size if pos.cost_basis is not None else None
        part = PositionInfo(**{f.name: getattr(pos, f.name) for f in fields(pos)})
        part.metadata = dict(pos.metadata)
        part.position_id = f"{pos.position_id}.{len(self._closed) + 1}"
        part.size, part.fees, part.cost_basis = qty, part_fees + fee, part_cost
        pos.size -= qty
        pos.fees -= part_fees
        if pos.cost_basis is not None and part_cost is not None:
            pos.cost_basis -= part_cost
        self._book_exit(part, exit_price, reason, timestamp)
        return part

    def _book_exit(
        self, pos: PositionInfo, exit_price: Decimal, reason: ExitReason | str, timestamp: datetime | None
    ) -> None:
        """Mark a closed record (its fees already include the exit fee) and add it to the history."""
        pos.realized_pnl = pos.gross_pnl_at(exit_price) - pos.fees
        pos.exit_price, pos.exit_reason, pos.exit_time = exit_price, ExitReason(reason), timestamp
        pos.current_price, pos.unrealized_pnl, pos.status = exit_price, ZERO, "closed"
        self._record_closed(pos)

    def _record_closed(self, pos: PositionInfo) -> None:
        self._closed.append(pos)
        self._trade_pnls.append(pos.realized_pnl or ZERO)
        self._trade_fees.append(pos.fees)

    @property
    def closed_positions(self) -> list[PositionInfo]:
        return list(self._closed)

    # ------------------------------------------------------------ performance
    def get_performance(self) -> StrategyPerformance:
        stats = trade_stats(self._trade_pnls)
        if stats.trades == 0:
            return StrategyPerformance()
        equity = realised_equity(self.allocated_capital, self._trade_pnls)
        return StrategyPerformance(
            total_trades=stats.trades,
            winning_trades=stats.wins,
            losing_trades=stats.losses,
            win_rate=stats.win_rate or 0.0,
            total_pnl=stats.total_pnl,
            profit_factor=stats.profit_factor,
            sharpe_ratio=sharpe_ratio(equity),
            max_drawdown=max_drawdown(equity)[0],
            avg_trade_pnl=stats.total_pnl / stats.trades,
            total_fees=sum(self._trade_fees, ZERO),
        )

    # ------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        return {
            "strategy_type": self.strategy_type,
            "next_id": self._next_id,
            "last_candle_ms": self._last_candle_ms,
            "positions": [p.to_dict() for p in self._positions.values()],
            "closed": [p.to_dict() for p in self._closed],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("strategy_type") not in (None, self.strategy_type):
            raise ValueError(f"state belongs to strategy {state.get('strategy_type')!r}, not {self.strategy_type!r}")
        self._next_id = int(state.get("next_id", 1))
        self._last_candle_ms = state.get("last_candle_ms")
        self._intents_cache = None
        self._positions.clear()  # in place: an open_positions view stays live
        for raw in state.get("positions", []):
            pos = PositionInfo.from_dict(raw)
            self._positions[pos.position_id] = pos
        self._closed, self._trade_pnls, self._trade_fees = [], [], []
        for raw in state.get("closed", []):
            self._record_closed(PositionInfo.from_dict(raw))

    def reset(self) -> None:
        """Forget positions and history (a fresh run with the same parameters)."""
        self._positions.clear()
        self._closed.clear()
        self._trade_pnls.clear()
        self._trade_fees.clear()
        self._next_id = 1
        self._last_candle_ms = None
        self._intents_cache = None

    def get_status(self) -> dict[str, Any]:
        return {
            "strategy_type": self.strategy_type,
            "market_type": self.market_type,
            "params": json_safe(self.params),
            "open_positions": [p.to_dict() for p in self._positions.values()],
            "performance": self.get_performance().to_dict(),
        }


def closed_only(df: pd.DataFrame, now_ms: int, timeframe: str) -> pd.DataFrame:
    """Drop a still-forming last candle (driver helper; ``now_ms`` comes from the caller's clock)."""
    last_open = last_open_ms(df)
    if last_open is not None and last_open + timeframe_ms(timeframe) > now_ms:
        return df.iloc[:-1]
    return df


__all__ = [
    "BaseMarketAnalysis",
    "BaseSignal",
    "BaseStrategy",
    "ExitReason",
    "OrderIntent",
    "PositionInfo",
    "PreparedData",
    "SignalDirection",
    "StrategyPerformance",
    "align_higher_timeframe",
    "closed_only",
    "last_open_ms",
    "round_down",
    "round_nearest",
    "round_up",
    "to_decimal",
]
