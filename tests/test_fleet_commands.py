"""`traderagent run --workers N` and `traderagent worker`: the refusals, and the supervisor
(traderagent/fleet/supervisor.py) restarting a child that dies, stopping the fleet when one refuses
to start, forwarding the stop to every child."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from traderagent.cli import main
from traderagent.fleet.supervisor import Supervisor

# a child that logs each start; its first run dies (code 1), later ones run until SIGTERM, logged
CHILD = """
import pathlib, signal, sys
log = pathlib.Path(sys.argv[1])
runs = log.read_text().count("start") if log.exists() else 0
with log.open("a") as f:
    f.write("start\\n")
if runs == 0:
    sys.exit(1)
def stop(*_):
    with log.open("a") as f:
        f.write("terminated\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with log.open("a") as f:
    f.write("ready\\n")
while True:
    signal.pause()
"""


def _sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "TRADERAGENT_MODE"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("argv", [["run", "--workers", "2"], ["worker", "--workers", "3"]])
def test_several_workers_on_sqlite_are_refused_naming_database_url(monkeypatch, tmp_path, capsys, argv):
    _sqlite_env(monkeypatch, tmp_path)
    assert main(argv) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith(f"traderagent: --workers {argv[-1]}: a fleet's console and workers share one PostgreSQL "
                           "database: set DATABASE_URL"), line


def test_a_slot_outside_the_fleet_is_refused(capsys):
    assert main(["worker", "--slot", "2", "--workers", "2"]) == 2
    assert capsys.readouterr().err.strip() == "traderagent: --slot must be from 0 to 1 (--workers 2)"


async def _until(check, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"no {what} within 30 s"
        await asyncio.sleep(0.05)  # polling the children's log files


async def test_the_supervisor_restarts_a_child_that_dies_and_forwards_the_stop(tmp_path):
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    sup = Supervisor({f"worker {i}": [sys.executable, "-c", CHILD, str(log)] for i, log in enumerate(logs)})
    run = asyncio.create_task(sup.run())
    await _until(lambda: all(log.exists() and "ready" in log.read_text() for log in logs), "restarted children")
    assert not run.done()
    sup.stop()  # what SIGTERM / SIGINT to the supervisor do
    assert await asyncio.wait_for(run, 30) == 0
    for log in logs:  # died once, restarted, stopped by the forwarded signal
        assert log.read_text().split() == ["start", "start", "ready", "terminated"]


async def test_a_child_refusing_to_start_stops_the_fleet(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("start\n")  # its first run is behind it: this one waits for the stop
    refusing = [sys.executable, "-c", "import pathlib, sys, time\n"  # once worker 0 is up, it refuses
                f"while 'ready' not in pathlib.Path({str(log)!r}).read_text():\n    time.sleep(0.05)\nsys.exit(2)"]
    sup = Supervisor({"worker 0": [sys.executable, "-c", CHILD, str(log)], "worker 1": refusing})
    assert await asyncio.wait_for(sup.run(), 30) == 2
    assert log.read_text().split() == ["start", "start", "ready", "terminated"]  # stopped, not restarted
