"""Arrows point down: trainers/ never imports ray or mlflow; serve_apps/ never imports mlflow or
the control plane (the model reaches a replica as weights + config)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TRAINERS = ROOT / "trainers"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_trainers_source_imports_neither_ray_nor_mlflow():
    """The compute layer, model families included, knows nothing above it."""
    for path in TRAINERS.rglob("*.py"):
        assert not imported_roots(path) & {"ray", "mlflow", "orchestrator", "serve_apps"}, path


def test_a_family_module_loads_no_torch_at_import():
    """The driver validates a config (whose model section is a family's) before torch loads; a
    family imports torch inside the functions it declares."""
    code = (
        "import sys, trainers.families, trainers.loop.plan; "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_trainers_loads_neither_ray_nor_mlflow():
    code = (
        "import sys, trainers.loop.trainer, trainers.data.tables, "
        "trainers.engine.deepspeed_engine, trainers.models; "
        "print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serve_apps_import_neither_mlflow_nor_the_control_plane():
    for path in (ROOT / "serve_apps").rglob("*.py"):
        assert not imported_roots(path) & {"mlflow", "orchestrator", "deepspeed"}, path


def test_validating_a_run_does_not_import_torch():
    """The CLI checks the config and the data before Ray starts; torch then loads while Ray
    starts (a second sooner to the first step), so the check must not need it."""
    code = (
        "import sys; from pathlib import Path; "
        "from orchestrator.config import load_config; from trainers.loop.plan import plan_run; "
        f"plan_run(load_config(Path({str(ROOT / 'configs/digits.yaml')!r}), [])); "
        "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_private_ray_names_come_from_one_module():
    """Ray's private modules change without notice: only orchestrator/ray_internals.py, tied to
    the pinned Ray, imports them."""
    for folder in ("orchestrator", "serve_apps", "trainers"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "ray_internals.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "ray":
                        assert not {"_private", "_internal", "_common"} & set(parts), (path, name)


MAX_MODULE_LINES = 350


def test_no_orchestrator_module_is_over_350_lines():
    """orchestrator/ is grouped by command (training, sweeps, serving, cluster) with the shared
    pieces at the top; a module that outgrows this is split by what it does."""
    long = {
        str(path.relative_to(ROOT)): count
        for path in (ROOT / "orchestrator").rglob("*.py")
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


COMMANDS = (
    "training",
    "sweeps",
    "compare",
    "serving",
    "cluster",
    "predicting",
    "exporting",
    "compressing",
    "promoting",
)
# The arrows allowed into a command package from outside it (cli.py maps onto all of them): a
# sweep's trials are training runs, a comparison is a grid of trials run by the sweep machinery,
# the config composes the sweep section from its owner, and batch prediction and export fetch
# their model the way deploy does (serving/model_source.py: model URI -> weights + config).
CROSSING = {
    ("sweeps", "training"),
    ("compare", "sweeps"),
    ("config.py", "sweeps"),
    ("checked_config.py", "sweeps"),  # a sweep's metric checked with the config
    ("predicting", "serving"),
    ("exporting", "serving"),
    ("compressing", "serving"),
    ("compressing", "training"),
    ("compressing", "exporting"),
    ("promoting", "serving"),  # a model URI -> its bundle, as deploy resolves it
    ("promoting", "exporting"),  # the test split a model was scored on (exporting/source.py)
    ("warm_start.py", "serving"),  # model.init_from -> its bundle, as deploy resolves it
}


def orchestrator_targets(path: Path) -> set[str]:
    """The first name under ``orchestrator.`` of every module ``path`` imports."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "orchestrator":
                names = [f"orchestrator.{alias.name}" for alias in node.names]
        targets |= {n.split(".")[1] for n in names if n.startswith("orchestrator.")}
    return targets


def test_command_packages_import_the_shared_top_not_one_another():
    """orchestrator/ is grouped by command: the shared modules sit at the top, and a command's
    package is imported only by itself, the CLI, and the few crossings listed above."""
    for path in (ROOT / "orchestrator").rglob("*.py"):
        parts = path.relative_to(ROOT / "orchestrator").parts
        where = parts[0]
        if where == "cli.py":
            continue
        for target in orchestrator_targets(path) & set(COMMANDS):
            assert target == where or (where, target) in CROSSING, (path, target)


# The rooms of trainers/, bottom up: a module imports its own room and the rooms below it only.
# data/ and engine/ share a floor and import neither each other nor anything above.
TRAINER_FLOORS = {
    "bottom": 0,  # config.py, spec.py, dataset.py, errors.py: the shared types
    "data": 1,
    "engine": 1,
    "families": 2,
    "tasks": 3,
    "models": 4,
    "compress": 5,  # pruning and distillation, which the loop runs
    "loop": 6,
    "export": 6,  # a trained model as an ONNX graph
}


def trainer_room(module: str) -> str:
    """``trainers.data.series`` -> ``data``, ``trainers.models`` -> ``models``; the other
    modules at the top of trainers/ are the ``bottom``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in TRAINER_FLOORS else "bottom"


def test_the_rooms_of_trainers_import_downwards_only():
    upward = []
    for path in TRAINERS.rglob("*.py"):
        if path.name == "prebuild.py":  # the install step; imports nothing of trainers
            continue
        relative = path.relative_to(ROOT).with_suffix("")
        here = trainer_room(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "trainers":
                    names = [f"trainers.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if not name.startswith("trainers."):
                    continue
                there = trainer_room(name)
                same_floor = TRAINER_FLOORS[there] == TRAINER_FLOORS[here]
                if TRAINER_FLOORS[there] > TRAINER_FLOORS[here] or (same_floor and there != here):
                    upward.append(f"{relative} ({here}) imports {name} ({there})")
    assert not upward, upward
