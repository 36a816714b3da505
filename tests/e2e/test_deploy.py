"""Deployable as documented: the Procfile's commands run without an activated virtualenv (a worker,
and the single-process desk the README gives), the Procfile has a line per worker and the console,
and the README's systemd unit starts the desk through the same interpreter call."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .desk_procs import REPO, desk_env


def _procfile() -> dict[str, list[str]]:
    lines = (REPO / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, command in (line.split(":", 1) for line in lines if line.strip())}


@pytest.mark.slow(13)
def test_procfile_runs_without_an_activated_virtualenv(tmp_path):
    """Only a `python` on PATH, as a platform's runtime provides; no `traderagent` script, no VIRTUAL_ENV."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python.chmod(0o755)
    env = desk_env("", tmp_path / "desk.db", tmp_path / "none.toml", TRADERAGENT_PAPER_SPEED="5")
    for key in ("BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(key, None)
    env["PATH"] = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    worker = _procfile()["worker0"]  # on SQLite: refused in one line, having run through the package
    out = subprocess.run(worker, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "PostgreSQL database: set DATABASE_URL" in out.stderr, out.stderr
    desk = [*worker[:worker.index("worker")], "run", "--ticks", "1"]  # the one-process desk of the README
    out = subprocess.run(desk, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Ctrl-C to stop." in out.stdout and "desk stopped" in out.stdout


def test_procfile_has_a_line_per_worker_and_the_console_and_systemd_runs_the_desk():
    procfile = _procfile()
    workers = [name for name in procfile if name.startswith("worker")]
    assert len(workers) >= 2 and "console" in procfile
    for i, name in enumerate(sorted(workers)):
        assert procfile[name] == ["python", "-m", "traderagent", "worker", "--slot", str(i), "--workers",
                                  str(len(workers))]
    assert procfile["console"] == ["python", "-m", "traderagent", "console"]
    readme = (REPO / "README.md").read_text()
    assert "## Deploy" in readme and "--workers" in readme
    (exec_start,) = re.findall(r"^\s*ExecStart=(.+)$", readme, flags=re.M)
    interpreter, *args = shlex.split(exec_start)
    assert Path(interpreter).name == "python"
    assert args == ["-m", "traderagent", "run"]
