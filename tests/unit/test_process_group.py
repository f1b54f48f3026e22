"""The workers' process group: its rendezvous store listens on the master's address only (torch
alone binds it to every interface); what loads torch where: not Ray Train's controller, not
the driver before Ray starts; and the controller's checkpoint snapshot, written whole."""

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.training.process_group import master_address

SETUP = """
import json, os, sys
import psutil
import torch.distributed as dist
from orchestrator.training.process_group import setup_process_group
setup_process_group("gloo", 0, 1, sys.argv[1], timeout_s=60)
dist.all_reduce(__import__("torch").ones(1))
listening = [c.laddr.ip for c in psutil.Process().net_connections("inet") if c.status == "LISTEN"]
dist.destroy_process_group()
print(json.dumps(listening))
"""


def last_line(script: str, *args: str) -> str:
    """The last line a fresh Python prints running ``script`` in the repository."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_master_address_from_either_init_method(monkeypatch):
    assert master_address("tcp://127.0.0.1:29500") == ("127.0.0.1", 29500)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "1234")
    assert master_address("env://") == ("10.0.0.7", 1234)


def test_the_store_listens_on_the_master_address_only():
    from orchestrator.environment import free_port

    url = f"tcp://127.0.0.1:{free_port()}"
    listening = set(json.loads(last_line(SETUP, url)))
    assert listening == {"127.0.0.1"}, listening


def test_what_ray_trains_controller_unpickles_imports_no_torch():
    """The controller process unpickles the backend config and the train function by their
    modules; torch there would be about 2 s of imports before any worker starts."""
    check = (
        "import sys\n"
        "from ray import cloudpickle\n"
        "from orchestrator.training.process_group import BoundTorchConfig\n"
        "from orchestrator.training.worker import train_worker\n"
        "cloudpickle.loads(cloudpickle.dumps((BoundTorchConfig(), train_worker)))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n"
    )
    assert last_line(check) == "[]"


def test_the_driver_checks_a_run_before_importing_torch_or_mlflow():
    """`redblue train` checks the config and data, then starts Ray while a thread imports torch,
    Ray Train and MLflow (about 2.5 s): none of them may load before, on the start's path."""
    check = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.checked_config import checked\n"
        "import orchestrator.training.run\n"
        "checked(Path('configs/digits.yaml'), [], None, False, trials=False, run=False)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'torch', 'mlflow', 'ray'}))\n"
    )
    assert last_line(check) == "[]"


def test_a_snapshot_write_cut_short_leaves_the_last_whole_one(tmp_path, monkeypatch):
    """The controller is killed (with its driver) just after opening the checkpoint manager's
    snapshot for writing: the last snapshot stays whole for ``--resume`` (Ray Train's own write
    truncated it in place, leaving it empty)."""
    from types import SimpleNamespace

    import pytest
    from pyarrow.fs import LocalFileSystem
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager

    from orchestrator import ray_internals

    class Killed(Exception):
        pass

    class KilledAfterOpening(LocalFileSystem):
        def open_output_stream(self, path, *args, **kwargs):
            super().open_output_stream(path, *args, **kwargs).close()  # truncated, not written
            raise Killed(path)

    monkeypatch.setattr(
        CheckpointManager, "_write_state_to_storage", CheckpointManager._write_state_to_storage
    )
    ray_internals.write_checkpoint_snapshots_whole()
    snapshot = tmp_path / "checkpoint_manager_snapshot.json"

    def manager(filesystem, state: dict) -> SimpleNamespace:
        storage = SimpleNamespace(
            storage_filesystem=filesystem, checkpoint_manager_snapshot_path=str(snapshot)
        )
        return SimpleNamespace(_storage_context=storage, _save_state=lambda: json.dumps(state))

    CheckpointManager._write_state_to_storage(manager(LocalFileSystem(), {"checkpoints": 2}))
    assert json.loads(snapshot.read_text()) == {"checkpoints": 2}
    with pytest.raises(Killed):
        CheckpointManager._write_state_to_storage(manager(KilledAfterOpening(), {"checkpoints": 3}))
    assert json.loads(snapshot.read_text()) == {"checkpoints": 2}
    CheckpointManager._write_state_to_storage(manager(LocalFileSystem(), {"checkpoints": 3}))
    assert json.loads(snapshot.read_text()) == {"checkpoints": 3}
    assert [path.name for path in tmp_path.iterdir()] == [snapshot.name]
