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
    [bots.params]
    num_levels = 10

Each bot is validated on its own (``traderagent.utils.config_validator``): a bad bot is refused
with the reason and the others run. ``capital`` is the bot's capital at full deployment: in a
phase deploying 5% of the total it gets 5% of it (share = capital / total capital). Bots with
neither share the rest equally.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from traderagent.utils.config_validator import strategy_params

DEFAULT_TICK_SECONDS = 5.0
_BOT_KEYS = {"name", "strategy", "symbol", "market_type", "timeframe", "timeframes", "capital",
             "allocated_capital", "share", "params", "tick_seconds"}


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

    def to_config(self) -> dict[str, Any]:
        """JSON-safe form stored in bots.config."""
        return {
            "timeframes": list(self.timeframes) if self.timeframes else None,
            "capital": str(self.capital) if self.capital is not None else None,
            "share": str(self.share) if self.share is not None else None,
            "params": _json_safe(self.params),
            "tick_seconds": self.tick_seconds,
        }


@dataclass
class BotsFile:
    bots: list[BotSpec] = field(default_factory=list)
    risk: dict[str, Any] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (bot name or index, reason)
    source: Path | None = None


def _json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _dec(value: Any, what: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what} = {value!r} is not a number") from None
    if not out.is_finite() or out <= 0:
        raise ValueError(f"{what} = {value!r} must be a positive number")
    return out


def spec_from_table(raw: dict[str, Any]) -> BotSpec:
    """One [[bots]] table -> BotSpec (ValueError naming the field on anything malformed)."""
    unknown = sorted(set(raw) - _BOT_KEYS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_BOT_KEYS))})")
    name, strategy, symbol = raw.get("name"), raw.get("strategy"), raw.get("symbol")
    for key, value in (("name", name), ("strategy", strategy), ("symbol", symbol)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} is required")
    timeframes: tuple[str, ...] | None = None
    if "timeframes" in raw:
        if not isinstance(raw["timeframes"], list) or not raw["timeframes"]:
            raise ValueError("timeframes must be a non-empty list")
        timeframes = tuple(str(t) for t in raw["timeframes"])
    elif "timeframe" in raw:
        timeframes = (str(raw["timeframe"]),)
    capital_key = "capital" if "capital" in raw else "allocated_capital" if "allocated_capital" in raw else None
    capital = _dec(raw[capital_key], capital_key) if capital_key else None
    share = _dec(raw["share"], "share") if "share" in raw else None
    if share is not None and share > 1:
        raise ValueError(f"share = {share} must be at most 1 (a fraction of the deployed capital)")
    if share is not None and capital is not None:
        raise ValueError("give either share or capital, not both")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise ValueError("params must be a table ([bots.params])")
    tick = float(_dec(raw.get("tick_seconds", DEFAULT_TICK_SECONDS), "tick_seconds"))
    return BotSpec(name=name, strategy=strategy, symbol=symbol.replace("/", "").split(":")[0],
                   market_type=str(raw.get("market_type", "linear")), timeframes=timeframes, capital=capital,
                   share=share, params=strategy_params(strategy, params), tick_seconds=tick)


def parse_bots(doc: dict[str, Any], *, risk_defaults: dict[str, Any] | None = None,
               total_capital: Decimal | None = None) -> BotsFile:
    """Validate each bot on its own; refused bots are listed with their reasons."""
    from traderagent.utils.config_validator import ConfigValidator

    validator = ConfigValidator()
    out = BotsFile(risk=dict(doc.get("risk") or {}) if isinstance(doc.get("risk"), dict) else {})
    risk_report = validator.validate_bots_config({"risk": out.risk}, risk_defaults=risk_defaults)
    if not risk_report.passed:
        reasons = "; ".join(r.message for r in risk_report.failures if r.severity == "critical")
        out.refused.append(("[risk]", f"{reasons} (the environment's risk settings are used instead)"))
        out.risk = {}
    bots = doc.get("bots", [])
    if not isinstance(bots, list):
        out.refused.append(("[[bots]]", "must be an array of tables"))
        return out
    seen: set[str] = set()
    for index, raw in enumerate(bots):
        label = raw.get("name") if isinstance(raw, dict) and raw.get("name") else f"bots[{index}]"
        reason = _check_one(validator, raw, seen)
        if reason is None:
            try:
                spec = spec_from_table(raw)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            out.refused.append((str(label), reason))
            continue
        seen.add(spec.name)
        out.bots.append(spec)
    return out


def _check_one(validator: Any, raw: Any, seen: set[str]) -> str | None:
    if not isinstance(raw, dict):
        return "must be a table"
    if raw.get("name") in seen:
        return f"name {raw.get('name')!r} is used by another bot"
    table = {k: v for k, v in raw.items() if k not in ("share", "tick_seconds")}
    report = validator.validate_bots_config({"bots": [table]})
    failures = [r.message for r in report.failures if r.severity == "critical"]
    return "; ".join(failures) if failures else None


def load_bots_file(path: str | Path, *, risk_defaults: dict[str, Any] | None = None) -> BotsFile:
    """Read and validate a bots file (FileNotFoundError if absent; ValueError on bad TOML)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    out = parse_bots(doc, risk_defaults=risk_defaults)
    out.source = path
    return out


def demo_bots(tick_seconds: float = 2.0) -> list[BotSpec]:
    """The paper desk's demo set: one bot per strategy, sized for the simulator's symbols."""
    return [
        BotSpec("xrp-grid", "grid", "XRPUSDT", timeframes=("5m",), share=Decimal("0.25"), tick_seconds=tick_seconds,
                params={"num_levels": 11, "range_pct": "0.03", "out_of_range_action": "pause"}),
        BotSpec("sol-dca", "dca", "SOLUSDT", timeframes=("5m",), share=Decimal("0.25"), tick_seconds=tick_seconds,
                params={"base_order": "20", "safety_order": "20", "max_safety_orders": 3,
                        "price_deviation": "0.005", "step_scale": "1.2", "volume_scale": "1.2",
                        "take_profit": "0.004"}),
        BotSpec("btc-trend", "trend_follower", "BTCUSDT", timeframes=("5m",), share=Decimal("0.25"),
                tick_seconds=tick_seconds, params={"ema_fast": 9, "ema_slow": 21, "adx_threshold": 20.0}),
        BotSpec("eth-smc", "smc", "ETHUSDT", timeframes=("1h", "15m", "5m"), share=Decimal("0.25"),
                tick_seconds=tick_seconds, params={}),
    ]
