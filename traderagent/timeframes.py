"""The one timeframe table (layer 0): candle interval names, their length, and ByBit V5's kline codes.

Names are ``<count><unit>`` with unit m, h, d or w (``"15m"``, ``"4h"``, ``"1d"``). ``TIMEFRAMES`` lists the
intervals ByBit serves (and the simulator replays) with ByBit's ``interval`` code. A backtest may also
resample to any other whole length (``"10m"``); ``timeframe_ms`` and ``timeframe_name`` handle those.
ByBit's month interval ("M") has no fixed length, so it is not offered.
"""

from __future__ import annotations

import re
from functools import lru_cache

MINUTE_MS = 60_000
UNIT_MS = {"m": MINUTE_MS, "h": 60 * MINUTE_MS, "d": 1440 * MINUTE_MS, "w": 10080 * MINUTE_MS}

# name -> ByBit V5 kline interval code; the length follows from the name
TIMEFRAMES: dict[str, str] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120", "4h": "240",
    "6h": "360", "12h": "720", "1d": "D", "1w": "W",
}
_NAME_OF_CODE = {code: name for name, code in TIMEFRAMES.items()}


class TimeframeError(ValueError):
    """An interval that is not a timeframe; the message names it and shows valid ones."""


@lru_cache(maxsize=256)  # read on every tick of every bot; a name's length never changes
def timeframe_ms(timeframe: str) -> int:
    """'15m' -> 900000. ByBit's codes are accepted too ('15', '60', 'D')."""
    tf = str(timeframe).strip()
    match = re.fullmatch(r"(\d+)([mhdw])", _NAME_OF_CODE.get(tf, tf))
    if not match or int(match.group(1)) == 0:
        raise TimeframeError(f"unknown timeframe {timeframe!r} (use e.g. {', '.join(TIMEFRAMES)})")
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def timeframe_minutes(timeframe: str) -> int:
    return timeframe_ms(timeframe) // MINUTE_MS


def timeframe_name(ms: int) -> str:
    """900000 -> '15m': the largest unit that divides the length."""
    for unit in ("w", "d", "h", "m"):
        if ms > 0 and ms % UNIT_MS[unit] == 0:
            return f"{ms // UNIT_MS[unit]}{unit}"
    raise TimeframeError(f"a timeframe of {ms} ms is not a whole number of minutes")


def derived_from(timeframe: str, source_ms: int) -> int:
    """``timeframe`` in ms when its candles can be built from candles of ``source_ms`` (a whole multiple);
    else a TimeframeError saying what data is needed."""
    want = timeframe_ms(timeframe)
    if want < source_ms:
        raise TimeframeError(f"needs {timeframe_name(want)} candles; the data is {timeframe_name(source_ms)}, "
                             f"which is coarser: give {timeframe_name(want)} or finer data")
    if want % source_ms:
        raise TimeframeError(f"needs {timeframe_name(want)} candles, which cannot be built from "
                             f"{timeframe_name(source_ms)} data")
    return want


def bybit_interval(timeframe: str) -> str:
    """ByBit's kline ``interval`` for a timeframe name or code ('1h' or '60' -> '60')."""
    tf = str(timeframe).strip()
    if tf in _NAME_OF_CODE:
        return tf
    if tf not in TIMEFRAMES:
        raise TimeframeError(f"unsupported kline interval {timeframe!r} (ByBit serves {', '.join(TIMEFRAMES)})")
    return TIMEFRAMES[tf]
