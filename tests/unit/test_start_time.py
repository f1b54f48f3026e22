"""The start of a command, from which ``redblue train`` measures its first step
(orchestrator/training/run.py ``command_started_at``)."""

from __future__ import annotations

import subprocess
import sys
import time

TICK_S = 0.02  # the kernel counts a process's start and the time since boot in 10 ms ticks


def test_a_commands_start_lies_between_its_launch_and_its_first_line() -> None:
    script = (
        "import time; now = time.time()\n"
        "from orchestrator.training.run import command_started_at\n"
        "print(command_started_at(), now)"
    )
    launched = time.time()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    started, first_line = map(float, done.stdout.split())
    assert launched - TICK_S <= started <= first_line + TICK_S, (launched, started, first_line)
