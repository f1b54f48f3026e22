"""The task seam: every registered task (``trainers.tasks``) has its HTTP request form
(``serve_apps/requests/<kind>.py``), the config's ``data.kind`` offers exactly the registered
tasks, and no generic module branches on the data kind."""

import ast
import typing
from importlib import import_module
from pathlib import Path

from serve_apps.requests import form_for
from serve_apps.requests.base import RequestForm
from trainers.config import DataConfig
from trainers.families import FAMILIES
from trainers.spec import ModelSpec
from trainers.tasks import TASKS, task_for

ROOT = Path(__file__).parents[2]
KINDS = set(TASKS)
# Where a data kind may be named: the registry and the config's union (which know every kind),
# each kind's own modules, and the families, which declare the kinds they train on.
KNOWS_KINDS = (
    "trainers/tasks/",
    "trainers/config.py",
    "trainers/data_config.py",
    "trainers/data/",
    "trainers/families/",
    "serve_apps/requests/",
)
# The classes of one kind's input or request: checking for one is branching on the kind.
KIND_CLASSES = {"TabularInput", "SequenceInput", "SeriesInput", "InputShape", "SequenceShape"}
KIND_CLASSES |= {"HistoryShape", "Histories"}


def test_the_config_offers_exactly_the_registered_tasks():
    own = {family.task for family in FAMILIES.values() if family.task}  # a GAN's: generation
    assert own <= KINDS
    assert set(typing.get_args(DataConfig.model_fields["kind"].annotation)) == KINDS - own
    for family in FAMILIES.values():
        assert set(family.data_kinds) <= KINDS - own, family.kind


def test_every_task_has_its_request_form():
    for kind, task in TASKS.items():
        assert task.kind == kind
        form = import_module(f"serve_apps.requests.{kind}").FORM
        assert isinstance(form, RequestForm), kind


def test_a_saved_model_finds_its_task_and_form():
    table = ModelSpec("mlp", "classification", 4, 3)
    sequence = ModelSpec("lstm", "classification", 4, 3, preprocessing={"sequence": {}})
    series = ModelSpec("gru", "forecast", 2, 6, preprocessing={"series": {}})
    for spec, kind in ((table, "table"), (sequence, "sequence"), (series, "series")):
        assert task_for(spec).kind == kind
        assert form_for(spec) is import_module(f"serve_apps.requests.{kind}").FORM


def kind_branches(path: Path) -> list[str]:
    """Comparisons with a data kind's name (``== "series"``, ``"sequence" in ...``) or with an
    attribute of that name (``dataset.series is not None``), and ``isinstance`` checks for one
    kind's input or request class."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant) and operand.value in KINDS:
                    found.append(f"{where} compares with {operand.value!r}")
                if isinstance(operand, ast.Attribute) and operand.attr in KINDS:
                    found.append(f"{where} compares .{operand.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & KIND_CLASSES:
                found.append(f"{where} checks isinstance {sorted(names & KIND_CLASSES)}")
    return found


def test_no_generic_module_branches_on_the_data_kind():
    """The loop, the CLI, evaluation, the registry, pyfunc, serving and ``deploy --check`` ask the
    task (or its request form); only the modules listed in KNOWS_KINDS name the kinds."""
    found = []
    for folder in ("orchestrator", "serve_apps", "trainers"):
        for path in (ROOT / folder).rglob("*.py"):
            where = str(path.relative_to(ROOT))
            if not where.startswith(KNOWS_KINDS):
                found += kind_branches(path)
    assert not found, found
