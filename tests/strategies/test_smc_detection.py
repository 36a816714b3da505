"""SMC detection: hand-made frames with known answers, and the no-look-ahead property on real candles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traderagent.strategies.smc import (
    active_zones,
    analyze,
    fair_value_gaps,
    liquidity_pools,
    liquidity_sweeps,
    market_structure,
    open_pools,
    order_blocks,
    swing_highs_lows,
)
from traderagent.strategies.smc.mtf import SMCParams, ZoneTable, _pool_arrays


def frame(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(rows), freq="15min", tz="UTC")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=idx)
    df["volume"] = 1.0
    return df


# swing high pivot 2 (10), swing low pivot 5 (3), bullish BOS on 8, swing high pivot 9 (12), CHoCH down on 12
STRUCTURE_ROWS = [
    (5, 6, 4, 5.5),
    (5.5, 7, 5, 6.5),
    (6.5, 10, 6, 9),
    (9, 9.5, 7, 7.5),
    (7.5, 8, 6.5, 7),
    (7, 7.5, 3, 3.5),
    (3.5, 6, 3.2, 5.8),
    (5.8, 9, 5.5, 8.8),
    (8.8, 11, 8.5, 10.8),
    (10.8, 12, 10, 11.5),
    (11.5, 11.8, 9, 9.5),
    (9.5, 10, 4, 4.5),
    (4.5, 5, 2.5, 2.8),
]


def test_swing_is_reported_on_its_confirmation_candle_only():
    df = frame(STRUCTURE_ROWS)
    sw = swing_highs_lows(df, swing_length=2)
    highs = sw[sw["swing_high"].notna()]
    lows = sw[sw["swing_low"].notna()]
    assert list(highs.index) == [df.index[4], df.index[11]]
    assert highs["swing_high"].tolist() == [10, 12]
    assert highs["swing_high_pos"].tolist() == [2, 9]
    assert list(lows.index) == [df.index[7]]
    assert lows["swing_low"].tolist() == [3]
    assert lows["swing_low_pos"].tolist() == [5]
    # before the confirmation candle closes the pivot is unknown
    assert swing_highs_lows(df.iloc[:4], 2)["swing_high"].isna().all()


def test_swing_length_changes_what_counts_as_a_swing():
    df = frame(STRUCTURE_ROWS)
    sw3 = swing_highs_lows(df, 3)  # pivot 2 lacks 3 earlier candles; pivot 9 is confirmed on the last one
    assert sw3["swing_high_pos"].tolist() == [-1] * 12 + [9]
    assert swing_highs_lows(df, 4)["swing_high"].isna().all()
    with pytest.raises(ValueError):
        swing_highs_lows(df, 0)


def test_bos_then_choch_on_closing_breaks():
    df = frame(STRUCTURE_ROWS)
    st = market_structure(df, swing_highs_lows(df, 2))
    assert st["bos"].tolist() == [0] * 8 + [1] + [0] * 4
    assert st["choch"].tolist() == [0] * 12 + [-1]
    assert st["level"].iloc[8] == 10 and st["swing_pos"].iloc[8] == 2
    assert st["level"].iloc[12] == 3 and st["swing_pos"].iloc[12] == 5
    assert st["trend"].tolist() == [0] * 8 + [1] * 4 + [-1]


def test_wick_break_counts_only_without_close_break():
    rows = [list(r) for r in STRUCTURE_ROWS]
    rows[7] = [5.8, 10.5, 5.5, 9.5]  # wick above 10, close below
    df = frame([tuple(r) for r in rows])
    sw = swing_highs_lows(df, 2)
    assert market_structure(df, sw, close_break=True)["bos"].iloc[7] == 0
    assert market_structure(df, sw, close_break=False)["bos"].iloc[7] == 1


def test_order_block_is_last_opposite_candle_before_the_impulse():
    df = frame(STRUCTURE_ROWS)
    obs = order_blocks(df, market_structure(df, swing_highs_lows(df, 2)))
    bull = obs[obs["direction"] == 1].iloc[0]
    # impulse to the BOS on 8 starts at the low of candle 5, itself the last bearish candle
    assert (bull["origin_pos"], bull["formed_pos"], bull["top"], bull["bottom"]) == (5, 8, 7.5, 3)
    assert bull["mitigated_pos"] == 12  # candle 12 trades below 3
    bear = obs[obs["direction"] == -1].iloc[0]
    # the drop to the CHoCH on 12 starts at the high of candle 9, the last bullish candle
    assert (bear["origin_pos"], bear["formed_pos"], bear["top"], bear["bottom"]) == (9, 12, 12, 10)
    assert bear["mitigated_pos"] == -1
    assert len(active_zones(obs, 11)) == 1 and len(active_zones(obs, 12)) == 1
    assert active_zones(obs, 12)["direction"].tolist() == [-1]


def test_close_mitigation_needs_a_close_beyond_the_zone():
    df = frame(STRUCTURE_ROWS)
    st = market_structure(df, swing_highs_lows(df, 2))
    bull = order_blocks(df, st, close_mitigation=True).query("direction == 1").iloc[0]
    assert bull["mitigated_pos"] == 12  # close 2.8 < 3
    rows = STRUCTURE_ROWS[:12] + [(4.5, 5, 2.5, 3.2)]
    df2 = frame(rows)
    st2 = market_structure(df2, swing_highs_lows(df2, 2))
    assert order_blocks(df2, st2, close_mitigation=True).query("direction == 1").iloc[0]["mitigated_pos"] == -1
    assert order_blocks(df2, st2, close_mitigation=False).query("direction == 1").iloc[0]["mitigated_pos"] == 12


def test_fair_value_gap_and_its_fill():
    df = frame(
        [
            (10, 10.5, 9.5, 10.2),
            (10.2, 12, 10.1, 11.8),
            (11.8, 12.5, 11, 12.3),
            (12.3, 12.4, 10.8, 11),
            (11, 11.2, 10.4, 10.6),
        ]
    )
    gaps = fair_value_gaps(df)
    assert len(gaps) == 1
    g = gaps.iloc[0]
    assert (g["direction"], g["bottom"], g["top"], g["origin_pos"], g["formed_pos"]) == (1, 10.5, 11, 1, 2)
    assert g["mitigated_pos"] == 4  # the low of candle 4 reaches the gap's bottom
    assert len(active_zones(gaps, 3)) == 1 and len(active_zones(gaps, 4)) == 0
    assert fair_value_gaps(df, min_gap_pct=0.1).empty  # gap 0.5 on a close of 11.8 is < 10 %


def test_bearish_fair_value_gap():
    df = frame([(12, 12.5, 11.5, 11.8), (11.8, 11.9, 10, 10.2), (10.2, 11, 9.5, 9.8), (9.8, 11.6, 9.7, 11.4)])
    g = fair_value_gaps(df).iloc[0]
    assert (g["direction"], g["bottom"], g["top"], g["formed_pos"], g["mitigated_pos"]) == (-1, 11, 11.5, 2, 3)


def test_liquidity_sweep_wick_beyond_close_back_inside():
    df = frame(
        [
            (10, 11, 9, 10.5),
            (10.5, 10.8, 8, 8.5),
            (8.5, 9, 5, 6),
            (6, 8, 5.5, 7.5),
            (7.5, 9, 7, 8.5),
            (8.5, 8.8, 4.5, 7),  # wick below the swing low 5, close back above: bullish sweep
            (7, 7.2, 4, 4.2),  # close below 5: a break, not a sweep
        ]
    )
    sw = swing_highs_lows(df, 2)
    sweeps = liquidity_sweeps(df, sw)
    assert sweeps["sweep"].tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert sweeps["level"].iloc[5] == 5
    # a candle breaking by close first leaves nothing to sweep afterwards
    rows = df.iloc[[0, 1, 2, 3, 4, 6]].to_numpy()[:, :4].tolist() + [[4.2, 6, 3.8, 5.5]]
    df2 = frame([tuple(r) for r in rows])
    assert liquidity_sweeps(df2, swing_highs_lows(df2, 2))["sweep"].tolist() == [0] * 7


def test_analyze_liquidity_pools_are_taken_by_wicks():
    df = frame(STRUCTURE_ROWS)
    res = analyze(df, 2)
    pools = res.pools
    assert pools["level"].tolist() == [10, 3, 12]
    assert pools["taken_pos"].tolist() == [8, 12, -1]
    assert open_pools(pools, 11)["level"].tolist() == [3, 12]


# ---------------------------------------------------------------- real candles


def load(candles_dir: Path, name: str, rule: str) -> pd.DataFrame:
    raw = pd.read_csv(candles_dir / name)
    raw.index = pd.to_datetime(raw.pop("timestamp_ms"), unit="ms", utc=True)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    return raw.resample(rule, label="left", closed="left").agg(agg).dropna()


@pytest.mark.parametrize(("name", "rule", "swing_length"), [("ETH_BTC-5m.csv", "15min", 3), ("LTC_BTC-5m.csv", "1h", 5),
                                                           ("XRPUSDT-perp-5m.csv", "5min", 8)])
def test_no_look_ahead_on_real_candles(candles_dir, name, rule, swing_length):
    df = load(candles_dir, name, rule)
    full = analyze(df, swing_length)
    assert (full.structure["bos"] != 0).sum() > 3 and len(full.fvgs) > 3  # the property is not vacuous
    rng = np.random.default_rng(7)
    for i in sorted(rng.integers(2 * swing_length, len(df) - 1, size=12)):
        cut = analyze(df.iloc[: i + 1], swing_length)
        for name_ in ("swings", "structure", "sweeps"):
            pd.testing.assert_frame_equal(getattr(cut, name_), getattr(full, name_).iloc[: i + 1])
        for name_, end in (("order_blocks", "mitigated_pos"), ("fvgs", "mitigated_pos"), ("pools", "taken_pos")):
            expect = getattr(full, name_)
            expect = expect[expect["formed_pos"] <= i].copy()
            expect.loc[expect[end] > i, end] = -1
            got = getattr(cut, name_)
            pd.testing.assert_frame_equal(got.reset_index(drop=True), expect.reset_index(drop=True))


def test_detections_are_consistent_on_real_candles(candles_dir):
    df = load(candles_dir, "ETH_BTC-5m.csv", "1h")
    res = analyze(df, 5)
    h, low, c = df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy()
    st = res.structure
    for t in np.flatnonzero(st["bos"].to_numpy() + st["choch"].to_numpy()):
        d = st["bos"].iloc[t] + st["choch"].iloc[t]
        assert (c[t] > st["level"].iloc[t]) if d > 0 else (c[t] < st["level"].iloc[t])
        assert st["swing_pos"].iloc[t] + 5 <= t  # the broken swing was confirmed before
    for z in res.order_blocks.itertuples():
        assert z.origin_pos < z.formed_pos and z.bottom <= z.top
        if z.mitigated_pos > 0:
            assert (low[z.mitigated_pos] < z.bottom) if z.direction > 0 else (h[z.mitigated_pos] > z.top)
    for z in res.fvgs.itertuples():
        assert z.bottom < z.top


def test_touching_candles_leave_no_gap():
    """A zero-width gap (the third candle's low exactly at the first one's high) is no FVG, either way."""
    bull = frame([(10, 10.5, 9.5, 10.2), (10.2, 12, 10.1, 11.8), (11.8, 12.5, 10.5, 12.3)])
    bear = frame([(12, 12.5, 11.5, 11.8), (11.8, 11.9, 10, 10.2), (10.2, 11.5, 9.5, 9.8)])
    assert fair_value_gaps(bull).empty and fair_value_gaps(bear).empty


@pytest.mark.parametrize(("name", "rule", "swing_length"), [("ETH_BTC-5m.csv", "15min", 3), ("LTC_BTC-5m.csv", "1h", 5),
                                                           ("XRPUSDT-perp-5m.csv", "5min", 2)])
def test_the_analysis_arrays_are_the_detectors_frames(candles_dir, name, rule, swing_length):
    """``analyze`` runs the detectors on arrays and the multi-timeframe analysis reads those (no DataFrame
    per candle): they hold exactly what the public detectors' frames hold, and the zone and pool tables it
    builds from them are the frames' (``SMCResult.zones``, ``pools``) row for row."""
    df = load(candles_dir, name, rule)
    res = analyze(df, swing_length, close_mitigation=swing_length == 5, min_fvg_pct=0.001 if swing_length == 3 else 0)
    swings = swing_highs_lows(df, swing_length)
    structure = market_structure(df, swings)
    frames = {"swings": swings, "structure": structure, "sweeps": liquidity_sweeps(df, swings),
              "order_blocks": order_blocks(df, structure, close_mitigation=swing_length == 5),
              "fvgs": fair_value_gaps(df, min_gap_pct=0.001 if swing_length == 3 else 0),
              "pools": liquidity_pools(df, swings)}
    assert len(res.order_blocks) > 3 and len(res.fvgs) > 3 and len(res.pools) > 3  # not vacuous
    for field, frame_ in frames.items():
        pd.testing.assert_frame_equal(getattr(res, field), frame_, check_exact=True)
    open_ms = df.index.as_unit("ms").asi8
    for ob, fvg in ((True, True), (True, False), (False, True)):
        params = SMCParams(use_order_blocks=ob, use_fvgs=fvg)
        table = ZoneTable.build(res, open_ms, params)
        zones = pd.concat([f for f, on in ((res.order_blocks, ob), (res.fvgs, fvg)) if on], ignore_index=True)
        want = ZoneTable((zones["kind"] == "ob").to_numpy(), zones["direction"].to_numpy(), zones["top"].to_numpy(),
                         zones["bottom"].to_numpy(), zones["formed_pos"].to_numpy(),
                         zones["mitigated_pos"].to_numpy(), open_ms[zones["origin_pos"].to_numpy()])
        for got_, want_ in zip(dataclasses.astuple(table), dataclasses.astuple(want), strict=True):
            assert got_.dtype == want_.dtype and np.array_equal(got_, want_)
    for column, array in zip(("side", "level", "formed_pos", "taken_pos"), _pool_arrays(res), strict=True):
        assert array.dtype == res.pools[column].dtype and np.array_equal(array, res.pools[column].to_numpy())
