"""Deployable as documented: the Procfile's command runs without an activated virtualenv, and the
README's systemd unit starts the same command."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from .desk_procs import REPO, desk_env


def _procfile_worker() -> list[str]:
    (line,) = [x for x in (REPO / "Procfile").read_text().splitlines() if x.startswith("worker:")]
    return shlex.split(line.removeprefix("worker:"))


def test_procfile_worker_runs_without_an_activated_virtualenv(tmp_path):
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
    command = _procfile_worker()
    out = subprocess.run([*command, "--ticks", "1"], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Ctrl-C to stop." in out.stdout and "desk stopped" in out.stdout


def test_readme_systemd_unit_starts_the_procfile_command():
    readme = (REPO / "README.md").read_text()
    assert "## Deploy" in readme
    (exec_start,) = re.findall(r"^\s*ExecStart=(.+)$", readme, flags=re.M)
    interpreter, *args = shlex.split(exec_start)
    assert Path(interpreter).name == "python"
    assert ["python", *args] == _procfile_worker()
