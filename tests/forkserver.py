"""A fork server for the desks and CLIs the tests start: `python -m traderagent ...` without its imports.

A fresh paper `traderagent run --ticks 2` costs ~2.2 CPU seconds, most of them imports (SQLAlchemy, pandas,
aiohttp, Alembic, ...) and the simulator's price paths, and the suite starts about a hundred desks and CLIs
on a 2-core machine whose CPU bounds its time. `popen` (a subprocess.Popen) and `run` (subprocess.run)
instead ask a server process, started once per test process with those modules imported and those paths
built, to fork a child that runs the command as `python -m` or `python script.py` would: its own argv,
sys.path, environment, working directory and standard streams, its own pid (signals and kills reach it),
its exit status as the return code (~0.7 CPU s for that desk).

What differs from a fresh interpreter, and why it does not matter to what the tests check:
- a module already imported is not imported again (the one module reading the environment at import,
  orchestrator/crashpoints.py, is reloaded in the child), and the simulator's price paths of WARM_SEEDS,
  cached per process and the same for every simulator of a seed, are built already;
- the child's parent is the server (nothing in the product looks at its parent), and its hash seed is
  the server's;
- a command whose environment differs from the server's in what the interpreter reads at start-up
  (PYTHON*, locale, TZ; PYTHONPATH may name the repository), or one the server cannot run, is started as
  a plain subprocess.
Its CPU (the server's start, once, and each child's) is counted in `CPU_SECONDS` for
bench/bench_test_cpu.py, which does not see it as its own children's.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PRELOAD = (  # what a desk, the simulator and the CLIs import; each child imports whatever else it needs
    "alembic.command", "traderagent.app", "traderagent.control", "traderagent.database.manager",
    "traderagent.api.bybit_direct_client", "traderagent.api.bybit_streams", "traderagent.bots",
    "traderagent.sim", "traderagent.sim.persist", "traderagent.commands.sim", "traderagent.commands.db",
    "traderagent.orchestrator.scheduler", "traderagent.orchestrator.market_data", "traderagent.orchestrator.risk",
    "traderagent.orchestrator.capital_wiring", "traderagent.orchestrator.lease", "traderagent.health",
    "traderagent.reports", "traderagent.utils.logging_setup", "traderagent.utils.security_audit", "traderagent.cli",
    "traderagent.strategies.smc_adapter", "traderagent.strategies.trend_follower_adapter",
    "traderagent.database.migrations.columns", "aiosqlite", "apscheduler.executors.asyncio", "runpy",
)
WARM_SEEDS = (0, 3)  # the simulators' price paths (cached per process): a paper desk's (seed 0), sim_process.py's
RELOAD = ("traderagent.orchestrator.crashpoints",)  # modules that read the environment when imported
STARTUP_ENV = ("PYTHON", "LANG", "LC_", "TZ")  # variables the interpreter reads at its start (prefixes)
CPU_SECONDS = [0.0]  # the server's and its children's CPU, for bench/bench_test_cpu.py


# --- the client, in the test process -------------------------------------------------------------------

class _Server:
    """The server process of this test process, started on first use; stops when this process exits."""

    def __init__(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(prefix="forkserver-"), "socket")
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=self.env, cwd=REPO, text=True)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().split()  # nothing: it failed (its traceback is on our stderr)
        if ready[:1] == ["ready"]:
            CPU_SECONDS[0] += float(ready[1])
            atexit.register(self.stop)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the server's end-of-file: it exits
        self.proc.wait(10)

    def serves(self, env: Mapping[str, str]) -> bool:
        """Whether a fresh interpreter in ``env`` would start as the server's children do: the same start-up
        variables, and no PYTHONPATH but the repository the server imported the product from."""
        def startup(e: Mapping[str, str]) -> dict[str, str]:
            return {k: v for k, v in e.items() if k.startswith(STARTUP_ENV) and k != "PYTHONPATH"}
        on_path = {p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p}
        return self.proc.poll() is None and startup(env) == startup(self.env) and on_path <= {str(REPO)}


_server: _Server | None = None
_server_lock = threading.Lock()


def _the_server() -> _Server:
    """The server, started on first use. One that could not start (the product does not import, say) is
    not started again: `popen` runs plain subprocesses, whose output then shows what is wrong."""
    global _server
    with _server_lock:
        if _server is None:
            _server = _Server()
        return _server


def _command(args: Sequence[Any]) -> list[str] | None:
    """[module-or-script, args...] when ``args`` is `python -m MODULE ...` or `python SCRIPT ...`."""
    argv = [os.fspath(a) for a in args]
    if len(argv) < 2 or argv[0] != sys.executable:
        return None
    if argv[1] == "-m" and len(argv) > 2:
        return argv[1:]
    return argv[1:] if argv[1].endswith(".py") else None


class ForkedPopen(subprocess.Popen):
    """A Popen whose child the fork server forks; its exit status comes back on the request's socket."""

    def _execute_child(self, args: Any, executable: Any, preexec_fn: Any, close_fds: Any, pass_fds: Any,
                       cwd: Any, env: Any, startupinfo: Any, creationflags: Any, shell: Any,
                       p2cread: int, p2cwrite: int, c2pread: int, c2pwrite: int, errread: int, errwrite: int,
                       *rest: Any) -> None:
        request = {"argv": _command(args), "cwd": os.fspath(cwd or os.getcwd()),
                   "env": dict(os.environ if env is None else env)}
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1,
               errwrite if errwrite != -1 else 2]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(_the_server().path)
            socket.send_fds(self._sock, [json.dumps(request).encode() + b"\n"], fds)
            self._answers = self._sock.makefile("rb", buffering=0)  # unbuffered: a line read ahead would hide
            self.pid = int(self._answers.readline())                 # the exit status from _ready's select
            self._child_created = True
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:
        if wait_flags & os.WNOHANG and not self._ready():
            return 0, 0
        answer = self._answers.readline().split()  # "status utime stime", or nothing: the server died
        self._answers.close()
        self._sock.close()
        if not answer:
            return self.pid, 255 << 8
        CPU_SECONDS[0] += float(answer[1]) + float(answer[2])
        return self.pid, int(answer[0])

    def _ready(self) -> bool:
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            return bool(sel.select(0))

    def _internal_poll(self, _deadstate: Any = None, *_: Any, **__: Any) -> int | None:
        if self.returncode is None and self._waitpid_lock.acquire(False):
            try:
                if self.returncode is None:
                    pid, status = self._try_wait(os.WNOHANG)
                    if pid == self.pid:
                        self._handle_exitstatus(status)
            finally:
                self._waitpid_lock.release()
        return self.returncode


def popen(args: Sequence[Any], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen(args, **kwargs), forked by the fork server when it can run it (see the module)."""
    env = kwargs.get("env")
    plain = _command(args) is None or kwargs.get("pass_fds") or kwargs.get("preexec_fn") or kwargs.get("shell")
    if plain or not _the_server().serves(os.environ if env is None else env):
        return subprocess.Popen(args, **kwargs)
    return ForkedPopen(args, **kwargs)


def run(args: Sequence[Any], *, input: Any = None, timeout: float | None = None, check: bool = False,
        capture_output: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run with `popen`."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


# --- the server process ---------------------------------------------------------------------------------

def _serve(path: str) -> dict[str, Any]:
    """Answer fork requests until stdin ends (exit); returns a request only in a forked child."""
    from traderagent.sim import ExchangeSimulator, SimConfig

    for name in PRELOAD:
        importlib.import_module(name)
    for seed in WARM_SEEDS:
        ExchangeSimulator(SimConfig(seed=seed))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    own = os.times()
    print("ready", own.user + own.system, flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                os.unlink(path)
                raise SystemExit(0)
            if key.data == "accept":
                conn, _ = listener.accept()
                request, fds = _receive(conn)
                pid = os.fork()
                if pid == 0:
                    _close_all(sel, conn)
                    return _become(request, fds)
                for fd in fds:
                    os.close(fd)
                _answer(conn, f"{pid}\n")
                sel.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, conn))
            else:
                pid, conn = key.data
                sel.unregister(key.fileobj)
                os.close(key.fd)
                _, status, usage = os.wait4(pid, 0)
                with conn:
                    _answer(conn, f"{status} {usage.ru_utime} {usage.ru_stime}\n")


def _answer(conn: socket.socket, line: str) -> None:
    """Send ``line`` to a client, which may have gone without waiting for its child (nothing to tell then)."""
    with contextlib.suppress(OSError):
        conn.sendall(line.encode())


def _close_all(sel: selectors.BaseSelector, conn: socket.socket) -> None:
    """In the forked child: close the server's sockets and the other children's pidfds and sockets."""
    for key in list(sel.get_map().values()):
        if isinstance(key.data, tuple):
            os.close(key.fd)
            key.data[1].close()
        elif key.data == "accept":
            key.fileobj.close()
    sel.close()
    conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    while not data.endswith(b"\n"):
        data += conn.recv(1 << 20)
    return json.loads(data), fds


def _become(request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """In the forked child: the request's standard streams, directory and environment."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read from TMPDIR again, as a fresh interpreter would
    for name in RELOAD:
        if name in sys.modules:
            importlib.reload(sys.modules[name])
    return request


def _run(request: dict[str, Any], base_path: list[str]) -> None:
    """Run the request's command as `python -m MODULE args` or `python SCRIPT args` would, with its sys.path:
    the working directory or the script's, PYTHONPATH, then the interpreter's own."""
    import runpy

    argv = request["argv"]
    first = os.getcwd() if argv[0] == "-m" else os.path.dirname(os.path.abspath(argv[0]))
    sys.path[:] = [first, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p), *base_path]
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    BASE_PATH = sys.path[1:]  # started without PYTHONPATH: the interpreter's own entries
    sys.path[0] = str(REPO)  # not this script's directory (tests/): the product, from the repository
    _run(_serve(sys.argv[1]), BASE_PATH)
