"""Perpetual-futures risk on the desk: position mode and leverage at start, funding booked to the bots,
and the alert when a position's mark price nears its liquidation price.

- **Position mode.** The desk trades one-way only (positionIdx 0). A symbol in hedge mode is refused at
  start with a message naming ByBit's setting; nothing is sent for it.
- **Leverage.** A bot's ``leverage`` (bots file) is set at start; "not modified" counts as success. Bots of
  one account and symbol share one position, hence one leverage: different values refuse them all. Both
  checks run once per account and symbol, however many bots trade it.
- **Funding.** ByBit settles funding on the account's position of a symbol, which the bots trading that
  symbol share (one-way: one net position). Each settlement is split between them by the size of their
  open positions (equally when none is open) and booked as a closed trade row tagged ``funding:<id>`` (the
  transaction log row's id), so every PnL read from the trades (per bot, per day, equity) includes it. The
  log is read from the last settlement booked: what was charged while the desk was down is booked too.
  Desks before the transaction log keyed funding by execution id: a bot such a desk saved starts at the
  newest settlement it booked (``upgraded_funding_since``), so none is booked again under its new id.
- **When funding is read** (``FundingWatch``): once per account for all its symbols (one transaction-log read,
  not one per symbol), and only when a settlement may have been charged since the last read: at the first
  check, when a symbol's ticker announces another next settlement time than at the last read (the one it
  announced has passed), and once more ``lag`` after such a read (the log certainly holds it then). A symbol
  whose ticker announces none (not a perpetual's, or not known) is read at every check.
- **Liquidation** (booked as a trade close): orchestrator/protection.py.
- **Liquidation alert.** Each exchange position whose mark price is within ``liquidation_alert`` (a risk
  rail) of its liquidation price raises one LIQUIDATION_RISK event; the alert re-arms once the distance is
  back above the rail. The positions are those the account's private stream pushes, with the mark price of
  the public ticker stream (``MarketData.positions``; REST when a stream is down).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from traderagent.orchestrator.events import LiquidationNear
from traderagent.ports import ExchangePort, StorePort
from traderagent.results import PositionRisk

ZERO = Decimal(0)
FUNDING_TAG = "funding:"
FUNDING_KEYS = "log"  # the runtime snapshot's funding ids are transaction-log row ids (before: execution ids)
SHARE_PLACES = Decimal("0.00000001")


class PerpSetupError(Exception):
    """A linear symbol the desk cannot trade as set up; the message is for the operator."""


class HedgeModeError(PerpSetupError):
    """The account holds the symbol in hedge mode, which the desk does not trade."""

    def __init__(self, symbol: str) -> None:
        super().__init__(
            f"{symbol} is in hedge mode on ByBit; this desk trades one-way only. Set ByBit → Derivatives → "
            f"Preferences → Position Mode to \"One-Way Mode\" for {symbol} (no open position or order may remain), "
            "then restart TraderAgent.")


async def prepare_linear(client: ExchangePort, symbol: str, leverages: dict[str, Decimal | None]) -> None:
    """Refuse a hedge-mode symbol or bots (name -> leverage) wanting different leverage; set the one wanted."""
    wanted = sorted({lev for lev in leverages.values() if lev is not None})
    if len(wanted) > 1:
        asked = ", ".join(f"{name} {lev}x" for name, lev in sorted(leverages.items()) if lev is not None)
        raise PerpSetupError(f"{symbol}: bots on one account share one position and one leverage, but ask for "
                             f"different ones ({asked}); give them the same leverage in the bots file.")
    if await client.position_mode(symbol) == "hedge":
        raise HedgeModeError(symbol)
    if wanted:
        await client.set_leverage(symbol, wanted[0])


# ------------------------------------------------------------------ exchange positions
def position_risk(row: Mapping[str, Any]) -> PositionRisk:
    """A ``fetch_positions`` row as the operator sees it."""
    mark, liq = row["mark_price"], row.get("liq_price")
    distance = abs(mark - liq) / mark if liq is not None and mark > 0 else None
    return PositionRisk(symbol=row["symbol"], side=row["side"], size=row["size"], entry_price=row["entry_price"],
                        mark_price=mark, liq_price=liq, liq_distance=distance, margin=row.get("margin", ZERO),
                        leverage=row.get("leverage"), unrealized_pnl=row.get("unrealized_pnl", ZERO))


class LiquidationWatch:
    """One alert per position each time its mark comes within ``threshold`` of its liquidation price."""

    def __init__(self) -> None:
        self._alerted: set[tuple[int, str, str]] = set()  # (account, symbol, side)

    def check(self, account: int, positions: Iterable[PositionRisk], threshold: Decimal) -> list[LiquidationNear]:
        alerts, near = [], set()
        for p in positions:
            if p.liq_distance is None or p.liq_distance > threshold:
                continue
            key = (account, p.symbol, p.side)
            near.add(key)
            if key not in self._alerted:
                assert p.liq_price is not None
                alerts.append(LiquidationNear(p.symbol, p.side, p.size, p.mark_price, p.liq_price,
                                              p.liq_distance.quantize(Decimal("0.0001")), threshold))
        self._alerted = {k for k in self._alerted if k[0] != account} | near
        return alerts


# ------------------------------------------------------------------ funding
@dataclass(frozen=True)
class FundingCharge:
    """One bot's share of one funding settlement."""

    exec_id: str  # the settlement's id in the transaction log
    symbol: str
    side: str  # "long" | "short": the position's
    qty: Decimal
    mark: Decimal
    rate: Decimal
    pnl: Decimal  # < 0 paid, > 0 received
    time: dt.datetime

    def trade_row(self) -> dict[str, Any]:
        """A closed trade row with this PnL (the tag makes it findable and one per settlement)."""
        return {"symbol": self.symbol, "side": self.side, "qty": self.qty, "entry_price": self.mark,
                "exit_price": self.mark, "pnl": self.pnl, "fees": ZERO, "opened_at": self.time,
                "closed_at": self.time, "tag": f"{FUNDING_TAG}{self.exec_id}"}


async def upgraded_funding_since(db: StorePort, bot: str, since: int | None) -> int | None:
    """Where a bot saved under other funding ids looks for settlements (epoch ms): after the newest one it
    booked (its trade rows' close time is the settlement's), whatever id that row was booked under."""
    newest = await db.newest_trade_close(bot, FUNDING_TAG)
    if newest is None:
        return since
    if newest.tzinfo is None:  # SQLite keeps no zone; the desk writes UTC
        newest = newest.replace(tzinfo=dt.UTC)
    return max(since or 0, int(newest.timestamp() * 1000) + 1)


class FundingWatch:
    """Whether an account's funding is worth reading now (module docstring, "When funding is read")."""

    def __init__(self, lag_ms: int) -> None:
        self.lag_ms = lag_ms
        self._announced: dict[int, dict[str, int | None]] = {}  # account -> symbol -> next settlement, last read
        self._again: dict[int, int] = {}  # account -> when to read once more (epoch ms)

    def due(self, account: int, announced: Mapping[str, int | None], now_ms: int) -> bool:
        """``announced``: each of the account's symbols' next settlement time (epoch ms) as its ticker says now."""
        last = self._announced.get(account)
        return (last is None or None in announced.values() or self._settled(last, announced)
                or now_ms >= self._again.get(account, now_ms + 1))

    def read(self, account: int, announced: Mapping[str, int | None], now_ms: int) -> None:
        """The account's funding was read (and booked) at ``now_ms`` with these announcements."""
        last = self._announced.get(account)
        if last is None or self._settled(last, announced):
            self._again[account] = now_ms + self.lag_ms
        elif now_ms >= self._again.get(account, now_ms + 1):
            del self._again[account]
        self._announced[account] = dict(announced)

    @staticmethod
    def _settled(last: Mapping[str, int | None], announced: Mapping[str, int | None]) -> bool:
        return any(last.get(symbol) != at for symbol, at in announced.items())


def split(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """``amount`` in parts proportional to ``weights`` (equal when all are 0); the parts add up exactly."""
    total = sum(weights, ZERO)
    shares = [w / total for w in weights] if total else [Decimal(1) / len(weights)] * len(weights)
    parts = [(amount * s).quantize(SHARE_PLACES, rounding=ROUND_DOWN) for s in shares[:-1]]
    return [*parts, amount - sum(parts, ZERO)]


def share_funding(rows: Iterable[Mapping[str, Any]], sizes: Sequence[Decimal]) -> list[list[FundingCharge]]:
    """Each bot's charges (by index of ``sizes``, the bots' open position sizes) from ``fetch_funding``
    rows (``fee`` > 0 paid)."""
    out: list[list[FundingCharge]] = [[] for _ in sizes]
    for row in rows:
        when = dt.datetime.fromtimestamp(row["timestamp"] / 1000, dt.UTC)
        side = "long" if row["side"] == "Buy" else "short"
        for i, pnl in enumerate(split(-row["fee"], sizes)):
            qty = sizes[i] or row["size"]
            out[i].append(FundingCharge(row["id"], row["symbol"], side, qty, row["mark"], row["rate"], pnl, when))
    return out
