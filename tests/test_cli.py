"""`traderagent` argument checks and output into a closed pipe, for every subcommand."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from traderagent.cli import main


@pytest.mark.parametrize("argv,message", [
    (["sim", "--speed", "-3"], "argument --speed: must be a number > 0, got '-3'"),
    (["sim", "--speed", "0"], "argument --speed: must be a number > 0, got '0'"),
    (["sim", "--speed", "nan"], "argument --speed: must be a number > 0, got 'nan'"),
    (["sim", "--speed", "fast"], "argument --speed: must be a number > 0, got 'fast'"),
    (["sim", "--error-rate", "1.5"], "argument --error-rate: must be a probability from 0 to 1, got '1.5'"),
    (["run", "--ticks", "-1"], "argument --ticks: must be a whole number >= 0, got '-1'"),
    (["run", "--ticks", "2.5"], "argument --ticks: must be a whole number >= 0, got '2.5'"),
    (["run", "--workers", "0"], "argument --workers: must be a whole number >= 1, got '0'"),
    (["worker", "--workers", "-2"], "argument --workers: must be a whole number >= 1, got '-2'"),
])
def test_out_of_range_arguments_are_refused_naming_the_option(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.splitlines()[-1] == f"traderagent {argv[0]}: error: {message}"


def test_accepted_values_reach_the_subcommand():
    from traderagent.cli import build_parser

    assert build_parser().parse_args(["sim", "--speed", "0.5", "--error-rate", "1"]).speed == 0.5
    assert build_parser().parse_args(["run", "--ticks", "0"]).ticks == 0


@pytest.mark.parametrize("argv", [
    ["audit", "{tmp}", "--json"],
    ["backtest", "--strategy", "trend_follower", "--data", "{candles}/XRPUSDT-perp-5m.csv", "--json"],
    ["backtest", "--strategy", "trend_follower", "--data", "{candles}/XRPUSDT-perp-5m.csv"],
])
def test_output_into_a_closed_pipe_ends_quietly(candles_dir, tmp_path, argv):
    """`traderagent audit --json | head`: the reader left before anything was printed. No BrokenPipeError
    traceback; the exit code a shell gives any tool a closed pipe stopped (128 + SIGPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "traderagent",
                               *(a.format(tmp=tmp_path, candles=candles_dir) for a in argv)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


def test_the_sim_command_never_imports_the_exchange_client():
    """The simulator is an independent implementation of ByBit's side: its command-line edge loads no
    traderagent.api module either, so a bug shared with the client cannot hide."""
    probe = ("import sys, traderagent.commands.sim; "
             "print(sorted(m for m in sys.modules if m.startswith('traderagent.api')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
