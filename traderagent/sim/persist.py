"""The simulator's exchange state on disk, so that a paper desk resumes where it stopped.

What a real exchange keeps across the desk's restarts is saved: per account the wallet, orders
(open and final), executions and funding rows, positions, leverage and position modes; the engine's id
sequence and random state (so new order ids never repeat old ones); per symbol the replay position,
candle clock and next funding time. API
secrets are not saved: accounts are registered again at start (``add_account``) and the saved state
is attached to them by key.

Open orders are all kept, closed ones only the most recent ``KEEP_CLOSED``: the desk asks the
exchange about its open and just-sent orders only. The file is replaced atomically (write to a
temporary file, fsync, rename), so a kill at any moment leaves the previous or the new state, never
half of one. The server saves before it answers a mutating request and right after a replay step
that filled an order: nothing the desk can have seen is missing after a crash.

The candles replayed so far are not stored: they are the replay path up to the saved position and
are rebuilt from it (``PriceSeries.fast_forward``). A ``set_price`` (a test-harness move, never made
by a paper desk) is therefore not replayed: earlier candles come back at the latest price scale.
"""

from __future__ import annotations

import os
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from traderagent.sim.market import Candle
from traderagent.sim.matching import Account, Book, Engine, Execution, Order, Position, pos_key
from traderagent.sim.perp import Funding, next_funding_ms

if TYPE_CHECKING:
    from traderagent.sim.server import ExchangeSimulator

VERSION = 1
# Closed orders (and their executions) kept across a restart: ByBit's /v5/order/realtime lists the
# most recent 500 too. Bounds the file, and the time of a save, whatever the desk's age.
KEEP_CLOSED = 500


class StateFileError(ValueError):
    """The state file cannot be used; the message names the file and the fix."""


_FRESH = "move it away to start a fresh paper account"


def _decimal_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if str(f.type).startswith("Decimal"))


_ORDER_DEC, _EXEC_DEC, _POS_DEC, _FUND_DEC = (_decimal_fields(c) for c in (Order, Execution, Position, Funding))


def _plain(obj: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip}


def _typed(cls: type, data: dict[str, Any], decimals: frozenset[str], **extra: Any) -> Any:
    return cls(**{k: Decimal(v) if k in decimals and v is not None else v for k, v in data.items()}, **extra)


def _coins(d: dict[str, Any]) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in d.items()}


# ------------------------------------------------------------------ snapshot
def snapshot(sim: ExchangeSimulator) -> dict[str, Any]:
    engine = sim.engine
    return {
        "version": VERSION,
        "port": int(sim.base_url.rsplit(":", 1)[1]) if sim.base_url else None,
        "engine": {"seq": engine._seq, "spot_id": engine._spot_id, "rng": engine._rng.getstate()},
        "accounts": {key: _account(acct) for key, acct in engine.accounts.items()},
        "series": {sym: {"t0": s.t0, "candles": s.px.n, "scale": s.scale, "progress": s.progress,
                         "live": _plain(s.live), "next_funding": sim.next_funding[sym]}
                   for sym, s in sim.series.items()},
    }


def _account(acct: Account) -> dict[str, Any]:
    closed = [o for o in acct.orders if not o.is_open][-KEEP_CLOSED:]
    kept = {o.order_id for o in closed} | set(acct.open_orders) | set(acct.conditionals)
    return {
        "wallet": acct.wallet, "cum_realised": acct.cum_realised, "leverage": acct.leverage,
        "modes": acct.modes,
        "orders": [_plain(o) for o in acct.orders if o.order_id in kept],
        "executions": [{**_plain(e, frozenset({"order"})), "order_id": e.order.order_id}
                       for e in acct.executions if isinstance(e, Execution) and e.order.order_id in kept],
        "funding": [_plain(e) for e in acct.executions if isinstance(e, Funding)][-KEEP_CLOSED:],
        "positions": [_plain(p) for p in acct.positions.values()],
    }


def save(sim: ExchangeSimulator, path: Path) -> None:
    """Write the state atomically (temporary file, fsync, rename)."""
    data = orjson.dumps(snapshot(sim), default=str)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StateFileError(f"cannot write simulator state {path} ({exc.strerror or exc}): "
                             "make its folder writable") from None


# ------------------------------------------------------------------ restore
def load(path: Path) -> dict[str, Any] | None:
    """The saved state (None: no file yet)."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise StateFileError(f"simulator state {path} is unreadable ({exc}): {_FRESH}") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateFileError(f"simulator state {path} is not a version {VERSION} state file: {_FRESH}")
    return data


def restore(sim: ExchangeSimulator, state: dict[str, Any]) -> None:
    """Put ``state`` into a fresh simulator whose accounts are already registered."""
    unknown = set(state["series"]) - set(sim.series)
    if unknown:
        raise StateFileError(f"simulator state names symbols this simulator lacks ({sorted(unknown)}): {_FRESH}")
    engine = sim.engine
    engine._seq, engine._spot_id = state["engine"]["seq"], state["engine"]["spot_id"]
    version, internal, gauss = state["engine"]["rng"]
    engine._rng.setstate((version, tuple(internal), gauss))
    for key, saved in state["accounts"].items():
        acct = engine.accounts.get(key)
        if acct is not None:  # an account no longer configured keeps its state in the file only
            _restore_account(engine, acct, saved)
    for symbol, saved in state["series"].items():
        series = sim.series[symbol]
        series.t0, series.scale = saved["t0"], saved["scale"]
        series.fast_forward(saved["candles"] - series.px.n)
        series.live, series.progress = Candle(**saved["live"]), saved["progress"]
        # a funding time already settled before the save is never charged again
        sim.next_funding[symbol] = saved.get("next_funding") or next_funding_ms(series.live.ts)


def _restore_account(engine: Engine, acct: Account, saved: dict[str, Any]) -> None:
    acct.wallet, acct.cum_realised = _coins(saved["wallet"]), _coins(saved["cum_realised"])
    acct.leverage = _coins(saved["leverage"])
    acct.orders = [_typed(Order, o, _ORDER_DEC) for o in saved["orders"]]
    acct.by_id = {o.order_id: o for o in acct.orders}
    acct.link_ids = {(o.category, o.link_id): o.order_id for o in acct.orders if o.link_id}
    acct.open_orders = {o.order_id: o for o in acct.orders if o.is_open}
    acct.conditionals = {o.order_id: o for o in acct.orders if o.status == "Untriggered"}
    for o in acct.open_orders.values():
        engine.books.setdefault((o.category, o.symbol), Book()).add(o)
    acct.modes = dict(saved.get("modes", {}))
    executions = [_typed(Execution, {k: v for k, v in e.items() if k != "order_id"}, _EXEC_DEC,
                         order=acct.by_id[e["order_id"]]) for e in saved["executions"]]
    funding = [_typed(Funding, f, _FUND_DEC) for f in saved.get("funding", [])]
    acct.executions = sorted(executions + funding, key=lambda e: e.seq)
    acct.positions = {pos_key(p["symbol"], p.get("idx", 0)): _typed(Position, p, _POS_DEC) for p in saved["positions"]}


__all__ = ["StateFileError", "load", "restore", "save", "snapshot"]
