"""Strategy contract shared by every strategy, the backtester and the live orchestrator.

Strategies are *pure*: no network, no database, no clock, no randomness. They get pandas
DataFrames of CLOSED candles (DatetimeIndex in UTC, float columns ``open, high, low, close,
volume``; the driver drops the still-forming candle that ByBit's kline endpoint returns) and
Decimals, and return value objects. Every timestamp a strategy emits comes from the frame's
index. Money and quantities are ``Decimal``; floats only inside indicator maths.

This module holds the contract and ``BaseStrategy``; beside it ``types.py`` (the value types),
``numeric.py`` (rounding to a step), ``frames.py`` (candle-frame time helpers) and ``book.py`` (the
position book, a base of ``BaseStrategy``). The names of all of them are importable from here too.

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
``align_higher_timeframe`` in ``frames.py`` (vectorised, for use inside ``prepare``).

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
* ``exit_candidates(prepared)`` (optional speed hook, same form): False where ``on_candle_close`` does
  nothing at all. With it, a replaying driver jumps over the candles of an open position up to the next
  exit candidate, entry candidate or stop/target touch.
* Decisions taken at the close of candle ``i`` (steps 2 and 3) are executed by the backtester at
  ``open[i+1]`` (plus its slippage model), by the live orchestrator immediately with a market
  order. Stop and target levels are absolute (those of the signal), not re-anchored to the fill.
* Live, each tick between candle closes: ``s.update_positions(last_price, df, high=, low=)`` == step 2
  for a candle not yet seen (detected by the index timestamp; idempotent) + ``check_exits(last_price,
  high=, low=)`` over the high and low traded SINCE THE PREVIOUS CHECK (the orchestrator reads them from the
  exchange's 1m candles, ``orchestrator/market_data.traded_since``): the same rule and code as the
  backtest's candle range, so a wick through a stop between two ticks exits live as it does in the backtest.
  It returns the positions that must exit now, each with ``exit_reason`` and the trigger price in
  ``exit_price``; the driver executes and calls ``close_position`` with the real fill.
* In ``check_exits`` when both stop and target lie inside one bar the STOP wins (pessimistic).
* Live, the positions' ``stop_loss`` and ``take_profit`` are also held BY THE EXCHANGE (orchestrator/protection.py):
  whenever a strategy changes them (a trailing ratchet) the driver moves them there, and a stop the exchange
  executed is booked through ``close_position`` with the exchange's fill. A strategy changes nothing for it.

Driving a LADDER strategy (``is_ladder = True``: grid, DCA), per closed candle ``i``
==================================================================================
Order intents: ``OrderIntent(tag, side, order_type, qty, price, reduce_only)``. ``tag`` is
unique among the strategy's live intents ("grid:3:buy", "dca:so2", "dca:tp") and identifies the
order across restarts (the orchestrator stores it in ``orders.tag``). ``order_type``:

* ``"limit"``: rests on the book at ``price``.
* ``"market"``: execute now (price is None).
* ``"stop"``: a stop-market held BY THE DRIVER (not sent to the exchange): when the price traded
  since the driver's previous check reaches ``price`` (sell stop: low <= trigger; buy stop: high >=
  trigger) the driver sends a market order. The backtester triggers it on the bar's low/high and fills at the trigger (or at
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
positions, the closed records kept, the performance totals, counters and (ladders) the level/cycle
table. The orchestrator saves it with ``save_bot_progress`` after every fill/close and reconciles with
the exchange at start; once a close's trade row is stored it lets the book forget the record
(``forget_closed``), so neither the state nor its snapshot grows with the bot's history.

Sizing and performance
======================
``position_size(entry, stop, balance)``: ``balance * risk_per_trade / |entry - stop|``, capped so
that the notional ``size * entry <= allocated_capital``, rounded DOWN to ``qty_step``.
Every closed position (signal trade, grid pair, DCA deal) is recorded by ``close_position`` ->
``get_performance()``: trades, wins, losses, win rate, total pnl (net of fees), profit factor, Sharpe
ratio and max drawdown as defined in ``traderagent.metrics``, over the realised equity curve (one point
per closed trade, starting at ``allocated_capital`` as it was at the first close; the Sharpe ratio is per
trade, not annualised), kept as running totals (``TradeTally``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.metrics import TradeTally
from traderagent.numbers import ZERO, to_decimal
from traderagent.strategies.book import PositionBook
from traderagent.strategies.frames import align_higher_timeframe, closed_only, last_open_ms
from traderagent.strategies.numeric import round_down, round_nearest, round_up
from traderagent.strategies.params import Param, parse_params
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    BaseSignal,
    ExitReason,
    OrderIntent,
    PositionInfo,
    PreparedData,
    SignalArrays,
    SignalDirection,
    StrategyPerformance,
)
from traderagent.utils.plain import json_safe


class BaseStrategy(PositionBook):
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
        super().__init__()  # the position book
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

    def signal_arrays(self, prepared: PreparedData) -> SignalArrays | None:
        """Optional hook: the whole decision as arrays (``SignalArrays``: one fixed-size position, no stop or
        target), or None (the default). The backtester then books the entries and exits straight from the
        arrays, without the per-candle calls; they must equal what ``signal_at``/``on_candle_close`` decide."""
        return None

    def exit_candidates(self, prepared: PreparedData) -> np.ndarray | None:
        """Optional hook: bool array, False where ``on_candle_close`` can neither exit nor change a position
        (stop, target, any state), whatever the positions are (see module doc).

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

    def chart_levels(self) -> dict[str, list[Decimal]]:
        """Horizontal price levels worth drawing on a backtest chart, by label (a grid's levels); {} for none."""
        return {}

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

    def intents_token(self) -> object | None:
        """An object that stays the same (``is``) exactly while the intents ``desired_orders`` built last
        stand (state, price band and balance unchanged), for drivers that derive tables from them; None when
        nothing is cached (the state just changed, or the strategy does not cache)."""
        return self._intents_cache

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

    # ------------------------------------------------------------ performance
    def get_performance(self) -> StrategyPerformance:
        tally = self._tally
        stats = tally.stats
        if stats.trades == 0:
            return StrategyPerformance()
        return StrategyPerformance(
            total_trades=stats.trades,
            winning_trades=stats.wins,
            losing_trades=stats.losses,
            win_rate=stats.win_rate or 0.0,
            total_pnl=stats.total_pnl,
            profit_factor=stats.profit_factor,
            sharpe_ratio=tally.sharpe,
            max_drawdown=tally.drawdown,
            avg_trade_pnl=stats.total_pnl / stats.trades,
            total_fees=tally.total_fees,
        )

    # ------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        return {
            "strategy_type": self.strategy_type,
            "next_id": self._next_id,
            "last_candle_ms": self._last_candle_ms,
            "positions": [p.to_dict() for p in self._positions.values()],
            "closed": [p.to_dict() for p in self._closed],  # those kept (see forget_closed)
            "closed_base": self._closed_base,
            "tally": self._tally.to_dict(),
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
        self._closed, self._closed_base, self._tally = [], int(state.get("closed_base", 0)), TradeTally()
        for raw in state.get("closed", []):
            self._record_closed(PositionInfo.from_dict(raw))
        if "tally" in state:  # the totals of every record, forgotten ones included (older states kept them all)
            self._tally = TradeTally.from_dict(state["tally"])

    def reset(self) -> None:
        """Forget positions and history (a fresh run with the same parameters)."""
        self._positions.clear()
        self._closed.clear()
        self._closed_base = 0
        self._tally = TradeTally()
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


# the contract's names stay importable from here (the value types, helpers and the base class)
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
