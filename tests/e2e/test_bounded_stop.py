"""A bounded stop: after SIGTERM no order leaves the desk, and the desk exits within seconds.

200 grid bots share one rate-limited account, so their first ladders queue thousands of order
sends behind the client's rate limiter. The simulator signals the desk (a real SIGTERM to this
process, handled by `run_desk`) once SIGNAL_AT orders were created on it, by single or batch
requests (the ladders go out in batches). The desk logs its acknowledgement ("stop: no new order
will be sent ...") once the sends already on the wire are answered or abandoned (a busy machine
may leave some unanswered). No create request passes the gate after that instant, and every create
request the simulator received passed the gate (so one arriving after the acknowledgement was
written before it); an order the exchange holds is never written off (FAILED) in the database: its
write-ahead row stays PENDING for the next start's reconciliation. The same log line says how many sends the gate refused or abandoned: more than none, or the run proved
nothing (a stop with no send queued cannot leak one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from traderagent.app import run_desk
from traderagent.config import Settings
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.gate import SendGate
from traderagent.sim import ExchangeSimulator, SimConfig

pytestmark = pytest.mark.slow(30)

CREATES = ("/v5/order/create", "/v5/order/create-batch")
BOTS = 200
SIGNAL_AT = 40
KEY, SECRET = "stop-key", "stop-secret"
SYMBOLS = ("XRPUSDT", "SOLUSDT")  # grids of 10 levels fit a bot's share here


class SignallingSim(ExchangeSimulator):
    """Sends SIGTERM to this process once SIGNAL_AT orders were created on it."""

    signalled_at: float | None = None
    creates_at_signal = 0

    def created(self) -> int:
        """Orders the desk's requests created (not the exchange's own, e.g. a liquidation's close)."""
        return sum(o.create_type == "CreateByUser" for o in self.engine.accounts[KEY].orders)

    async def _handle(self, request: Any, fn: Any, private: bool) -> Any:
        response = await super()._handle(request, fn, private)
        if request.path in CREATES and self.signalled_at is None and (n := self.created()) >= SIGNAL_AT:
            self.signalled_at = time.monotonic()
            self.creates_at_signal = n
            os.kill(os.getpid(), signal.SIGTERM)
        return response


class StopAck(logging.Handler):
    """Reads the simulator's created orders at the very moment the desk acknowledges the stop."""

    def __init__(self, sim: SignallingSim) -> None:
        super().__init__(logging.INFO)
        self.sim = sim
        self.creates: int | None = None
        self.at = 0.0
        self.args: tuple[Any, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("stop: no new order will be sent"):
            self.creates = self.sim.created()
            self.at = time.monotonic()
            self.args = tuple(record.args or ())


def _bots_file(path: Path) -> Path:
    blocks = ["[risk]\nmax_exposure = \"0.5\"\n"]
    for i in range(BOTS):
        blocks.append(f"""
[[bots]]
name = "grid-{i:03d}"
strategy = "grid"
symbol = "{SYMBOLS[i % len(SYMBOLS)]}"
timeframe = "1m"
tick_seconds = 2
[bots.params]
num_levels = 10
range_pct = "0.02"
""")
    path.write_text("".join(blocks))
    return path


async def _written_off(db_path: Path, link_ids: set[str]) -> list[str]:
    """The orders among ``link_ids`` (on the exchange) that the database booked as never placed."""
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    try:
        rows = await db.list_orders(statuses=["FAILED"], limit=100_000)
        return [r.client_order_id for r in rows if r.client_order_id in link_ids]
    finally:
        await db.close()


async def test_no_order_is_sent_after_sigterm_and_the_desk_exits_in_time(tmp_path, monkeypatch):
    wired: list[float] = []  # when each create request passed the gate (the client writes it next)
    on_wire = SendGate.on_wire

    def recorded(gate: SendGate) -> None:
        on_wire(gate)
        wired.append(time.monotonic())

    monkeypatch.setattr(SendGate, "on_wire", recorded)
    sim = SignallingSim(SimConfig(seed=5, speed=1.0))
    sim.add_account(KEY, SECRET, {"USDT": Decimal("10000000")})
    url = await sim.start(host="127.0.0.1", port=0)
    settings = Settings.load(env={
        "TRADERAGENT_MODE": "paper", "BYBIT_BASE_URL": url, "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}", "TRADERAGENT_TOTAL_CAPITAL": "1000000",
        "LOG_LEVEL": "warning"}, env_file=None)
    ack = StopAck(sim)
    control_log = logging.getLogger("traderagent.control")
    level = control_log.level
    control_log.setLevel(logging.INFO)
    control_log.addHandler(ack)
    try:
        code = await asyncio.wait_for(run_desk(settings, bots_arg=str(_bots_file(tmp_path / "bots.toml"))), 900)
        exited = time.monotonic()
    finally:
        control_log.removeHandler(ack)
        control_log.setLevel(level)
        await sim.stop()

    assert code == 0
    assert sim.signalled_at is not None, "the desk never sent SIGNAL_AT orders"
    assert ack.creates is not None, "the desk never acknowledged the stop"
    sent, refused, unanswered = ack.args
    assert refused > 0, "no send was waiting at the stop: this run cannot show a leak"
    late = [t for t in wired if t >= ack.at]
    assert not late, f"{len(late)} create request(s) passed the gate after the stop was acknowledged"
    requests = sum(sim.request_counts[path] for path in CREATES)
    assert requests <= len(wired) == sent, "the exchange received a create request the gate never let through"
    on_exchange = {o["orderLinkId"] for o in sim.orders(KEY, open_only=False)}
    assert await _written_off(tmp_path / "desk.db", on_exchange) == []  # unanswered ones stay PENDING
    final = sim.created()
    print(f"\ncreates: {sim.creates_at_signal} at the signal, {ack.creates} at the acknowledgement "
          f"({unanswered} unanswered), {final} at the end; {refused} sends refused or abandoned; "
          f"exit {exited - sim.signalled_at:.2f} s after the signal")
    assert exited - sim.signalled_at < 10
