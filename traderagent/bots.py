"""The bots file (bots.toml): which bots the desk runs. The database keeps their runtime state.

Format (see bots.example.toml; ``traderagent validate`` checks the same file)::

    [risk]                      # optional overrides of RISK_PER_TRADE / MAX_EXPOSURE / MAX_DAILY_LOSS
    max_daily_loss = "0.05"

    [[bots]]
    name = "xrp-grid"           # unique, 1-32 of A-Z a-z 0-9 _ -
    strategy = "grid"           # smc | trend_follower | grid | dca
    symbol = "XRPUSDT"
    market_type = "linear"      # or "spot"
    timeframe = "5m"            # or timeframes = ["1h", "15m", "5m"] (highest first, entry last)
    share = "0.25"              # fraction of the phase's deployed capital; or capital = "2500"
    tick_seconds = 5
    leverage = "3"              # linear only: set on ByBit at start (default: the account's setting)
    [bots.params]
    num_levels = 10

Checked by ``ConfigValidator.check_bots_file`` (``traderagent validate`` runs the same check): a bad
bot is refused with the reason and the others run; a bad ``[risk]`` or shares of capital summing above 1
make the file unusable. ``capital`` is the bot's capital at full deployment: in a phase deploying 5% of
the total it gets 5% of it (share = capital / total capital). Bots with neither share the rest equally.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from traderagent.utils.config_validator import BOT_FIELDS, ConfigValidator, parse_bots_toml
from traderagent.utils.plain import json_safe

DEFAULT_TICK_SECONDS: float = next(p.default for p in BOT_FIELDS if p.name == "tick_seconds")


@dataclass(frozen=True)
class BotSpec:
    name: str
    strategy: str
    symbol: str
    market_type: str = "linear"
    timeframes: tuple[str, ...] | None = None
    capital: Decimal | None = None
    share: Decimal | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tick_seconds: float = DEFAULT_TICK_SECONDS
    leverage: Decimal | None = None  # linear: set on the exchange at start; None leaves the account's own

    def to_config(self) -> dict[str, Any]:
        """JSON-safe form stored in bots.config."""
        return {
            "timeframes": list(self.timeframes) if self.timeframes else None,
            "capital": str(self.capital) if self.capital is not None else None,
            "share": str(self.share) if self.share is not None else None,
            "params": json_safe(self.params),
            "tick_seconds": self.tick_seconds,
            "leverage": str(self.leverage) if self.leverage is not None else None,
        }


@dataclass
class BotsFile:
    bots: list[BotSpec] = field(default_factory=list)
    risk: dict[str, Any] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (bot name or index, reason)
    source: Path | None = None


def parse_bots(doc: dict[str, Any], *, total_capital: Decimal | None = None) -> BotsFile:
    """Validate each bot on its own; refused bots are listed with their reasons. ValueError when the
    file as a whole is unusable (a bad [risk], shares above 1)."""
    check = ConfigValidator().check_bots_file(doc, total_capital=total_capital)
    if check.file_errors:
        raise ValueError("; ".join(check.file_errors))
    return BotsFile(bots=[BotSpec(**bot) for bot in check.bots], risk=dict(check.risk), refused=check.refused)


def load_bots_file(path: str | Path, *, total_capital: Decimal | None = None) -> BotsFile:
    """Read and validate a bots file (FileNotFoundError if absent; ValueError on bad TOML or an unusable file)."""
    path = Path(path)
    try:
        out = parse_bots(parse_bots_toml(path.read_text(encoding="utf-8")), total_capital=total_capital)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    out.source = path
    return out


# The paper desk's demo set: one bot per strategy, sized for the simulator's symbols.
DEMO_BOTS: dict[str, Any] = {"bots": [
    {"name": "xrp-grid", "strategy": "grid", "symbol": "XRPUSDT", "timeframe": "5m", "share": "0.25",
     "params": {"num_levels": 11, "range_pct": "0.03", "out_of_range_action": "pause"}},
    {"name": "sol-dca", "strategy": "dca", "symbol": "SOLUSDT", "timeframe": "5m", "share": "0.25",
     "params": {"base_order": "20", "safety_order": "20", "max_safety_orders": 3, "price_deviation": "0.005",
                "step_scale": "1.2", "volume_scale": "1.2", "take_profit": "0.004"}},
    {"name": "btc-trend", "strategy": "trend_follower", "symbol": "BTCUSDT", "timeframe": "5m", "share": "0.25",
     "params": {"ema_fast": 9, "ema_slow": 21, "adx_threshold": 20.0}},
    {"name": "eth-smc", "strategy": "smc", "symbol": "ETHUSDT", "timeframes": ["1h", "15m", "5m"], "share": "0.25"},
]}


def demo_bots(tick_seconds: float = 2.0) -> list[BotSpec]:
    """The demo set (DEMO_BOTS), checked like any bots file."""
    doc = {"bots": [{**bot, "tick_seconds": tick_seconds} for bot in DEMO_BOTS["bots"]]}
    return parse_bots(doc).bots
