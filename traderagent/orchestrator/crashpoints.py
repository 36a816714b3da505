"""Test-only crash points in the order path (for the crash-recovery tests).

`TRADERAGENT_CRASH_AT` arms points, comma-separated, each ``NAME`` or ``NAME@N`` (``after_write_ahead``,
``after_send``, ``after_fill_booked``, ``before_liquidation_booked``): the N-th pass (default the first) of an armed point writes
``CRASHPOINT NAME`` to stderr and kills the process with ``os._exit(137)`` -- exactly what a SIGKILL
leaves behind: no cleanup, no flush. A count, not a probability or a timer, so the test knows the
process dies there however slow the machine. With `TRADERAGENT_CRASH_ACTION=mark` the N-th pass
writes ``CRASHMARK NAME`` and the process goes on: the test then knows the desk is trading and
SIGKILLs it itself.
Unset (always, outside tests) a pass costs one dict lookup.

This is the one module besides config.py that reads the environment: it is a test harness hook,
deliberately kept out of Settings so no production setting can ever enable it by accident.
"""

from __future__ import annotations

import os


def _armed(spec: str) -> dict[str, int]:
    """``"a@3,b"`` -> {"a": 3, "b": 1}: passes left until each point fires."""
    armed = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        armed[name] = int(nth or 1)
    return armed


_ARMED = _armed(os.environ.get("TRADERAGENT_CRASH_AT", ""))
_MARK_ONLY = os.environ.get("TRADERAGENT_CRASH_ACTION") == "mark"


def crash_point(name: str) -> None:
    """Die here (like SIGKILL) when the test harness armed this point and this is its N-th pass."""
    left = _ARMED.get(name)
    if left is None:
        return
    if left > 1:
        _ARMED[name] = left - 1
        return
    del _ARMED[name]
    os.write(2, f"{'CRASHMARK' if _MARK_ONLY else 'CRASHPOINT'} {name}\n".encode())
    if not _MARK_ONLY:
        os._exit(137)
