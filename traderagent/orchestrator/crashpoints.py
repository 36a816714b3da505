"""Test-only crash points in the order path (for the SIGKILL crash-recovery tests).

`TRADERAGENT_CRASH_AT` names points (comma-separated: ``after_write_ahead``, ``after_send``,
``after_fill_booked``) and `TRADERAGENT_CRASH_PROB` the probability (default 1.0) that passing
such a point kills the process with ``os._exit(137)`` -- exactly what a SIGKILL leaves behind:
no cleanup, no flush. Unset (always, outside tests) it costs one set lookup.

This is the one module besides config.py that reads the environment: it is a test harness hook,
deliberately kept out of Settings so no production setting can ever enable it by accident.
"""

from __future__ import annotations

import os
import random

_POINTS = frozenset(p.strip() for p in os.environ.get("TRADERAGENT_CRASH_AT", "").split(",") if p.strip())
_PROB = float(os.environ.get("TRADERAGENT_CRASH_PROB", "1") or 1)
_rng = random.Random(os.environ.get("TRADERAGENT_CRASH_SEED") or None)


def crash_point(name: str) -> None:
    """Die here (like SIGKILL) when the test harness armed this point."""
    if name in _POINTS and _rng.random() < _PROB:
        os.write(2, f"CRASHPOINT {name}\n".encode())
        os._exit(137)
