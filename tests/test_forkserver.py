"""The fork server (tests/forkserver.py) starts a command as a fresh interpreter would: what the child sees
(argv, sys.path, working directory, environment, standard streams, an environment-reading module) and what
its parent gets back (output, exit status, a kill) are those of a plain subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests import forkserver

PROBE = """
import json, os, sys
from traderagent.orchestrator import crashpoints
print(json.dumps({"argv": sys.argv, "path": sys.path, "cwd": os.getcwd(), "env": os.environ.get("PROBE"),
                  "armed": crashpoints._ARMED, "stdin": sys.stdin.read(), "main": __name__}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(forkserver.REPO), "PROBE": "seen",
            "TRADERAGENT_CRASH_AT": "after_send@2", **extra}


def _both(args: list[str], cwd: Path, **extra: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    kwargs = dict(cwd=cwd, env=_env(**extra), input="on stdin", capture_output=True, text=True, timeout=60)
    return forkserver.run(args, **kwargs), subprocess.run(args, **kwargs)


def test_a_forked_script_sees_and_returns_what_a_fresh_one_does(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    with forkserver.popen([sys.executable, str(script)], env=_env(), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL) as proc:
        assert isinstance(proc, forkserver.ForkedPopen)
    forked, fresh = _both([sys.executable, str(script), "--flag", "x"], tmp_path, PROBE_EXIT="3")
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == 3 and '"armed": {"after_send": 2}' in fresh.stdout and "on stdin" in fresh.stdout


def test_a_forked_module_sees_what_a_fresh_one_does(tmp_path: Path) -> None:
    (tmp_path / "probe_module.py").write_text(PROBE)
    forked, fresh = _both([sys.executable, "-m", "probe_module", "arg"], tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == 0 and str(tmp_path) in fresh.stdout


def test_a_kill_reaches_the_forked_child_and_is_its_return_code(tmp_path: Path) -> None:
    (tmp_path / "wait.py").write_text("import sys\nprint('up', flush=True)\nsys.stdin.read()\n")
    with forkserver.popen([sys.executable, str(tmp_path / "wait.py")], env=_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as proc:
        assert isinstance(proc, forkserver.ForkedPopen) and proc.stdout.readline() == "up\n"
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL


def test_a_different_interpreter_start_up_runs_as_a_plain_subprocess(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("")
    with forkserver.popen([sys.executable, str(tmp_path / "ok.py")], env=_env(PYTHONHASHSEED="7")) as other:
        assert type(other) is subprocess.Popen
    with forkserver.popen([sys.executable, "-c", "pass"], env=_env()) as inline:
        assert type(inline) is subprocess.Popen
