"""Bot states and the only transitions between them.

```
            start()            pause()
INITIALIZING ───────► RUNNING ◄────────► PAUSED
     │                 │  ▲   resume/start  │
     │ fail            │  │ start           │ stop()
     ▼                 ▼  │                 ▼
   ERROR ◄──────── (any tick failure)     STOPPED
```
ERROR needs an operator's start (or a stop); STOPPED can be started again.
"""

from __future__ import annotations

from enum import StrEnum


class BotState(StrEnum):
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class IllegalTransition(RuntimeError):
    """A state change the table below does not allow; the message names both states."""

    def __init__(self, current: BotState, target: BotState, bot_name: str = "") -> None:
        who = f"bot {bot_name!r}: " if bot_name else ""
        super().__init__(f"{who}cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


# current -> states it may move to
TRANSITIONS: dict[BotState, frozenset[BotState]] = {
    BotState.INITIALIZING: frozenset({BotState.RUNNING, BotState.PAUSED, BotState.STOPPED, BotState.ERROR}),
    BotState.RUNNING: frozenset({BotState.PAUSED, BotState.STOPPED, BotState.ERROR}),
    BotState.PAUSED: frozenset({BotState.RUNNING, BotState.STOPPED, BotState.ERROR}),
    BotState.STOPPED: frozenset({BotState.RUNNING}),
    BotState.ERROR: frozenset({BotState.RUNNING, BotState.STOPPED}),
}

# states in which a tick does work (PAUSED manages exits only)
TICKING_STATES = frozenset({BotState.RUNNING, BotState.PAUSED})


def is_legal(current: BotState, target: BotState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: BotState, target: BotState, bot_name: str = "") -> None:
    if not is_legal(current, target):
        raise IllegalTransition(current, target, bot_name)
