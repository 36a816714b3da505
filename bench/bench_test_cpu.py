"""CPU seconds per test (user + sys, the desks and CLIs it starts and waits for included), longest first.

The suite's wall time on the 2-core machine is bounded by its CPU time / 2, and CPU seconds, unlike wall
seconds, compare across a loaded machine. Not counted: a PostgreSQL server's own CPU.

Run: .venv/bin/python bench/bench_test_cpu.py [pytest arguments, default: -m slow tests]
e.g. .venv/bin/python bench/bench_test_cpu.py tests/e2e/test_crash_recovery.py tests/e2e/test_leases.py
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Generator

import pytest


def cpu_seconds() -> float:
    """This process's CPU and that of its children it waited for, the fork server's included (tests/forkserver.py:
    its children are not this process's)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    forkserver = sys.modules.get("tests.forkserver")
    forked = forkserver.CPU_SECONDS[0] if forkserver is not None else 0.0
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + forked


class TestCPU:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        before = cpu_seconds()
        try:
            return (yield)
        finally:
            self.cpu[item.nodeid] = cpu_seconds() - before

    def report(self) -> None:
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print(f"\nCPU seconds per test (load {load} at the end):")
        for nodeid, seconds in sorted(self.cpu.items(), key=lambda kv: -kv[1]):
            print(f"{seconds:7.2f}  {nodeid}")
        print(f"{sum(self.cpu.values()):7.2f}  total of {len(self.cpu)} tests")


def main() -> int:
    plugin = TestCPU()
    code = pytest.main(["-n", "0", "-q", *(sys.argv[1:] or ["-m", "slow", "tests"])], plugins=[plugin])
    plugin.report()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
