"""What the user sees: each round line's clock (elapsed since the command started, the time
left at the pace of the rounds after the first, which carries the start-up), and the learning
curve's colours, and ``--json``'s stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator.console import RoundClock, round_line


def test_the_time_left_follows_the_pace_after_the_first_round():
    clock = RoundClock(num_rounds=5, started_at=100.0)
    assert clock.tick(1, now=120.0) == (20.0, None)  # 20 s of start-up: no estimate yet
    assert clock.tick(2, now=124.0) == (24.0, pytest.approx(12.0))  # 4 s a round, 3 left
    assert clock.tick(5, now=136.0) == (36.0, 0.0)


def test_a_restart_starts_the_pace_again():
    clock = RoundClock(num_rounds=10, started_at=0.0)
    clock.tick(1, now=10.0)
    clock.tick(4, now=16.0)
    assert clock.tick(3, now=60.0) == (60.0, None)  # workers restarted from round 2's checkpoint
    assert clock.tick(4, now=62.0) == (62.0, pytest.approx(12.0))


def test_the_round_line_ends_with_the_clock():
    line = round_line({"round": 2, "val_loss": 0.5}, 5, (3725.0, 75.0))
    assert line == "round 2/5  val 0.5000  1:02:05 elapsed, 1:15 left"
    assert round_line({"round": 1}, 5, (9.4, None)) == "round 1/5  0:09 elapsed"


def test_the_learning_curve_draws_red_in_red_and_blue_in_blue():
    from orchestrator.tracking import curve_colour

    assert curve_colour("red/train_loss") == curve_colour("red/holdout_loss") == "tab:red"
    assert curve_colour("blue/train_loss") == "tab:blue"
    assert curve_colour("val_loss") == curve_colour("train_loss") == "black"


def test_with_json_stdout_holds_only_the_result_even_after_the_command_ends():
    """As the `redblue` process: output after the result (a library's atexit print, a child
    process writing to its inherited stdout) goes to stderr, never after the JSON object."""
    script = """
import atexit, json, subprocess, sys
from orchestrator import console
console.own_process()
console.use_json()
print("a library's print")
subprocess.run([sys.executable, "-c", "print('a child process')"], check=True)
atexit.register(lambda: print("printed at exit"))
console.print_result({"run_id": "abc"}, 0)
console.end_json()
print("after the result")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == {"exit_code": 0, "run_id": "abc"}
    for line in ("a library's print", "a child process", "printed at exit", "after the result"):
        assert line in done.stderr


def test_a_sweeps_trial_lines_count_the_trials_done_and_estimate_the_time_left(monkeypatch):
    import time

    from orchestrator.config import validate
    from orchestrator.sweeps.tracking import SweepTracker, TrialRecord

    space = {"optim.lr": {"grid": [0.01, 0.1]}}
    cfg = validate({"sweep": {"space": space, "num_samples": 2}}, for_sweep=True)
    tracker = SweepTracker(cfg, "parent", "sweep-1")
    now = [100.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    assert tracker._progress([]) == "0/4 trials done, 0:00 elapsed"  # 2 samples of a 2-grid
    for trial_id, status in (("a", "FINISHED"), ("b", "RUNNING")):
        tracker.records[trial_id] = TrialRecord(trial_id, {}, run=None, status=status)  # type: ignore[arg-type]
    now[0] = 130.0
    assert tracker._progress([]) == "1/4 trials done, 0:30 elapsed, 1:30 left"
    now[0] = 140.0  # no trial ended since: the estimate stands
    assert tracker._progress([]) == "1/4 trials done, 0:40 elapsed, 1:30 left"
