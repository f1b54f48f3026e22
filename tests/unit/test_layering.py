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
    for path in TRAINERS.rglob("*.py"):
        assert not imported_roots(path) & {"ray", "mlflow", "orchestrator"}, path


def test_importing_trainers_loads_neither_ray_nor_mlflow():
    code = (
        "import sys, trainers.loop, trainers.data, trainers.engine, trainers.models; "
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
        "from orchestrator.config import load_config; from orchestrator.plan import plan_run; "
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
                        assert not {"_private", "_internal"} & set(parts), (path, name)
