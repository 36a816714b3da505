"""Rounding of prices and quantities to an instrument's step (``qty_step``, ``tick_size``).

A step <= 0 leaves the value as it is; the result carries the step's exponent (``quantize``).
Conversion to Decimal is ``traderagent.numbers.to_decimal``.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal


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


__all__ = ["round_down", "round_nearest", "round_up"]
