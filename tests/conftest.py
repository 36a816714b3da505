"""Fixtures shared by the whole suite, the skip policy, and where test files live."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

CANDLES = Path(__file__).resolve().parent / "data"
SERVER_ABSENT = "server absent: "  # the one allowed skip reason, see skip_server_absent


@pytest.fixture(scope="session")
def candles_dir() -> Path:
    """The real-candle CSVs committed in tests/data (see its README)."""
    return CANDLES


RAM_DISK = "/dev/shm"


def _ram_disk() -> str | None:
    """RAM_DISK when it can hold the suite's files and run a script from them (test_deploy does)."""
    try:
        fs = os.statvfs(RAM_DISK)
    except OSError:
        return None
    usable = not fs.f_flag & (os.ST_RDONLY | getattr(os, "ST_NOEXEC", 0)) and os.access(RAM_DISK, os.W_OK)
    return RAM_DISK if usable and fs.f_bavail * fs.f_frsize >= 1 << 30 else None


def pytest_configure(config: pytest.Config) -> None:
    """Test files (tmp_path, and the desks the tests start as subprocesses) go to a RAM disk unless TMPDIR
    says otherwise: the desk fsyncs every order's write-ahead row and the simulator its state file, which
    costs milliseconds each on a disk shared with other work, and nothing in RAM. Nothing asserts a
    power loss, so the tests check the same behaviour."""
    if "TMPDIR" not in os.environ and (ram := _ram_disk()):
        os.environ["TMPDIR"] = ram  # inherited by the xdist workers and every subprocess
        tempfile.tempdir = None  # tempfile reads TMPDIR again
    _cache_bytecode()


def _cache_bytecode() -> None:
    """With PYTHONDONTWRITEBYTECODE (set on this machine and in CI), every desk and CLI the suite starts would
    compile the product's sources again (~0.2 s of CPU each), and every xdist worker would rewrite every test
    module's asserts again (~6 s each). The session writes bytecode where Python keeps it (``__pycache__``,
    git-ignored). Not under a PYTHONPYCACHEPREFIX: that hides the installed libraries' own caches, and on a
    fresh clone every process compiled pandas, SQLAlchemy and the rest again until one had cached them
    (~3 CPU s each, workers and their first desks all at once)."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        sys.dont_write_bytecode = False


def skip_server_absent(why: str) -> NoReturn:
    """Skip because an outside server (PostgreSQL) cannot be reached: the only skip the suite allows."""
    pytest.skip(SERVER_ABSENT + why)


def _refuse_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Any skip but a server-absent one becomes a failure: a skipped test checks nothing, and in a
    plain clone of the repository nothing may skip."""
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if SERVER_ABSENT not in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped, and only '{SERVER_ABSENT.strip()}' skips are allowed: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    _refuse_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> pytest.CollectReport:
    """A whole module skipped (`pytest.importorskip` at import) obeys the same rule."""
    report = yield
    _refuse_skip(report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow(seconds)`` run first, longest first; the others keep their order.
    With ``--dist load --maxschedchunk 1`` the workers take the tests in this order, one at a time,
    so the long end-to-end runs start at once and the many short tests fill the gaps beside them,
    instead of a long test starting last and running alone at the end. ``seconds`` is the test's own
    duration on the idle 2-core machine (a rank only, rounded; nothing asserts it)."""
    def cost(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.args[0]) if mark is not None and mark.args else 0.0

    items.sort(key=cost, reverse=True)  # stable: equal costs keep the collection order


# --- exchange simulator (written by the simulator helper) -------------------------------------------
SIM_KEY = "test-key"
SIM_SECRET = "test-secret"


@pytest.fixture
async def sim():
    """A started ByBit V5 simulator (speed 0: prices move only via set_price/step) with account
    ("test-key", "test-secret") holding 100000 USDT."""
    from decimal import Decimal

    from traderagent.sim import ExchangeSimulator, SimConfig

    simulator = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    simulator.add_account(SIM_KEY, SIM_SECRET, balances={"USDT": Decimal("100000")})
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def sim_url(sim) -> str:
    """Base URL of the `sim` fixture's server, e.g. http://127.0.0.1:54321."""
    return sim.base_url


@pytest.fixture
async def fake(monkeypatch):
    """The fake Telegram Bot API server on 127.0.0.1 (tests/fakes/telegram_server.py)."""
    from tests.fakes.telegram_server import FakeTelegram

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # httpx must never route loopback via a proxy
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
