"""Sweep logic without Ray: the space is checked against the schema, trials are ranked, and the
champion rule promotes only a strictly better model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.config import ConfigError, validate
from orchestrator.registry import Score, decide
from orchestrator.sweeps.results import TrialOutcome, rank
from orchestrator.sweeps.run import max_concurrent, max_rounds


def space_error(space: dict, **sweep) -> str:
    with pytest.raises(ConfigError) as caught:
        tree = {"scaling": {"num_workers": 2}, "sweep": {"space": space, **sweep}}
        validate(tree, for_sweep=True)
    return str(caught.value)


def test_shipped_space_is_valid():
    cfg = validate({"sweep": {"space": {"optim.lr": {"loguniform": [1e-4, 1e-2]}}}})
    assert cfg.sweep.space["optim.lr"].kind == "loguniform"
    assert "sweep.space.optim.lr" not in cfg.flat()  # the space is not a run param


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"optim.lrr": {"uniform": [0.1, 0.2]}}, "not a config key (did you mean optim.lr?)"),
        ({"optim.lr": {"loguniform": [0.01, 0.001]}}, "loguniform needs low < high"),
        ({"optim.lr": {"loguniform": [0.0, 0.1]}}, "loguniform needs low > 0"),
        ({"strategy.red_ratio": {"uniform": [0.3, 1.5]}}, "value 1.5 is rejected"),
        ({"deepspeed.zero_stage": {"choice": [2, 4]}}, "value 4 is rejected"),
        ({"optim.batch_size": {"choice": [32, 65]}}, "must be a multiple of"),
        ({"optim.batch_size": {"uniform": [32, 128]}}, "takes integers; use randint or choice"),
        ({"optim.lr": {"uniform": [0.1, 0.2], "choice": [1]}}, "give exactly one of"),
        ({"optim.name": {"choice": []}}, "choice needs at least one value"),
    ],
)
def test_bad_spaces_are_rejected_with_the_key_named(space, expected):
    assert expected in space_error(space)


def test_test_metric_and_optuna_grid_are_rejected():
    assert "never used to select" in space_error({}, metric="test_accuracy")
    assert "pbt needs at least one of optim.lr" in space_error(
        {"optim.batch_size": {"choice": [32, 64]}}, scheduler="pbt"
    )
    assert "use sweep.search random" in space_error(
        {"optim.lr": {"uniform": [0.1, 0.2]}}, scheduler="pbt", search="optuna"
    )
    assert "optuna cannot take grid" in space_error(
        {"optim.lr": {"grid": [0.1, 0.2]}}, search="optuna"
    )


def test_rounds_bound_covers_the_smallest_batch():
    cfg = validate(
        {
            "optim": {"batch_size": 64, "epochs": 4},
            "sweep": {"space": {"optim.batch_size": {"choice": [32, 64, 128]}}},
        }
    )
    # 1000 samples, 4 epochs, batch 32 -> 125 steps; 20 steps per round -> 7 rounds
    assert max_rounds(cfg, train_size=1000) == 7


def test_concurrency_follows_free_cpus_unless_set():
    cfg = validate({"scaling": {"num_workers": 2, "cpus_per_worker": 0.5}})
    assert max_concurrent(cfg, {"CPU": 3.0}) == 3  # a trial's own process takes no CPU
    assert max_concurrent(cfg, {"CPU": 2.5}) == 2
    assert max_concurrent(cfg, {"CPU": 0.5}) == 1
    assert max_concurrent(cfg.with_values({"sweep.max_concurrent": 5}), {"CPU": 1.0}) == 5


def outcome(trial_id: str, status: str, val: float) -> TrialOutcome:
    return TrialOutcome(trial_id, "", status, {}, {"val_loss": val}, None)


def test_ranking_puts_finished_trials_first_best_first():
    trials = [
        outcome("a", "FINISHED", 0.5),
        outcome("b", "KILLED", 0.1),
        outcome("c", "FINISHED", 0.3),
        outcome("d", "FAILED", float("nan")),
    ]
    assert [t.trial_id for t in rank(trials, "val_loss", "min")] == ["c", "a", "b", "d"]
    assert [t.trial_id for t in rank(trials, "val_loss", "max")][:2] == ["a", "c"]


def test_champion_rule():
    accuracy = lambda v: Score("test_accuracy", v, True)  # noqa: E731
    mse = lambda v: Score("test_mse", v, False)  # noqa: E731
    assert decide(accuracy(0.9), None).promote
    assert decide(accuracy(0.95), accuracy(0.9)).promote
    kept = decide(accuracy(0.9), accuracy(0.9))  # a tie does not beat the champion
    assert not kept.promote and "does not beat" in kept.reason
    assert not decide(accuracy(0.8), accuracy(0.9)).promote
    assert decide(mse(1.0), mse(2.0)).promote
    assert not decide(mse(3.0), mse(2.0)).promote


def test_pbt_perturbs_only_what_a_checkpoint_can_take_and_stays_in_range():
    from orchestrator.sweeps.space import population_based_training

    cfg = validate(
        {
            "checkpoint": {"every_rounds": 3},
            "sweep": {
                "scheduler": "pbt",
                "space": {
                    "optim.lr": {"loguniform": [1e-3, 1e-2]},
                    "model.dropout": {"choice": [0.0, 0.1, 0.2]},
                    "optim.batch_size": {"choice": [32, 64]},
                },
            },
        }
    )
    pbt = population_based_training(cfg)
    assert set(pbt._hyperparam_mutations) == {"optim.lr", "model.dropout"}
    assert pbt._hyperparam_mutations["model.dropout"] == [0.0, 0.1, 0.2]
    assert pbt._perturbation_interval == 3  # perturb where every trial has a checkpoint
    clipped = pbt._custom_explore_fn({"optim.lr": 0.05, "model.dropout": 0.1})
    assert clipped == {"optim.lr": 1e-2, "model.dropout": 0.1}


def test_cleaning_and_its_start_are_sweepable():
    space = {
        "strategy.clean": {"choice": ["off", "prune", "weight"]},
        "strategy.clean_start": {"uniform": [0.1, 0.5]},
    }
    cfg = validate({"sweep": {"space": space}}, for_sweep=True)
    assert set(cfg.sweep.space) == set(space)
    # YAML reads a bare `off` as false, in a file and in --set alike: it means off.
    assert validate({"strategy": {"clean": False}}).strategy.clean == "off"
    assert cfg.with_values({"strategy.clean": False}).strategy.clean == "off"
    assert "value 'sometimes' is rejected" in space_error(
        {"strategy.clean": {"choice": ["off", "sometimes"]}}
    )


class Payload:
    """A pickle that runs a command when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["elsewhere", "escaping id"])
def test_resume_refuses_a_tagged_folder_outside_storage_and_unpickles_nothing(
    tmp_path, monkeypatch, where
):
    """A tag that anyone who reaches the tracking server can write names a folder holding a
    pickle payload: --resume refuses with one message and never reads it."""
    import pickle

    from mlflow.tracking import MlflowClient

    from orchestrator.cli import app
    from orchestrator.config import load_config
    from orchestrator.sweeps.resume import config_hash

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = tmp_path / "evil.yaml"
    config.write_text(
        "name: evil\nsweep:\n  num_samples: 2\n  space:\n"
        "    optim.lr: {loguniform: [0.001, 0.01]}\n"
    )
    cfg = load_config(config, [], True)
    planted = tmp_path / "shared" / "planted"
    planted.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    (planted / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    sweep_id, path = "evil-sweep-20260101-000000", str(planted)
    if where == "escaping id":  # the folder under storage, reached by an id with '..'
        sweep_id = "../../shared/planted/x/evil-sweep-20260101-000000"
        path = str(Path(cfg.run.storage_path) / sweep_id)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # not a store set earlier
    experiment = client.create_experiment("evil")
    tags = {
        "redblue.kind": "sweep",
        "redblue.sweep_id": sweep_id,
        "redblue.sweep_path": path,
        "redblue.config_hash": config_hash(cfg),
    }
    client.create_run(experiment, tags=tags)
    result = CliRunner().invoke(app, ["sweep", str(config), "--resume"])
    assert result.exit_code == 2, result.output
    assert "refusing to resume" in " ".join(result.output.split())
    assert not marker.exists()


def test_set_reaches_a_sweep_space_key_with_its_dots():
    from orchestrator.config import load_config

    config = Path(__file__).parents[2] / "configs" / "digits.yaml"
    sets = [
        "sweep.space.optim.lr={loguniform: [0.001, 0.002]}",
        "sweep.space.optim.epochs={choice: [2, 3]}",
    ]
    cfg = load_config(config, sets, True)
    assert cfg.sweep.space["optim.lr"].describe() == "loguniform(0.001, 0.002)"
    assert cfg.sweep.space["optim.epochs"].describe() == "choice(2, 3)"


def test_the_sweep_report_ranks_every_trial_and_says_which_the_scheduler_stopped():
    from orchestrator.sweeps.results import sweep_report

    cfg = validate(
        {"name": "rep", "sweep": {"space": {"optim.lr": {"loguniform": [0.001, 0.01]}}}},
        for_sweep=True,
    )
    trials = [
        TrialOutcome("b", "run-b", "FINISHED", {"optim.lr": 0.005}, {"val_loss": 0.2, "round": 9.0},
                     None),
        TrialOutcome("a", "run-a", "KILLED", {"optim.lr": 0.001}, {"val_loss": 0.9, "round": 3.0},
                     None),
    ]  # fmt: skip
    report = sweep_report(cfg, rank(trials, "val_loss", "min"))
    assert "**Best:** trial b, val_loss 0.2; `optim.lr` = 0.005; MLflow run `run-b`." in report
    assert "| 1 | b | finished | 0.005 | 0.2 | 9 |" in report
    assert "| 2 | a | stopped early | 0.001 | 0.9 | 3 |" in report
    assert "1 finished, 1 killed" in report


def test_the_parallel_coordinates_draw_a_line_per_trial_through_each_key_and_the_metric():
    import matplotlib.pyplot as plt
    import pandas as pd

    from orchestrator.sweeps.figures import parallel_coordinates

    strategies = {"choice": ["red_blue", "standard"]}
    space = {"optim.lr": {"loguniform": [0.001, 0.1]}, "strategy.kind": strategies}
    cfg = validate({"name": "par", "sweep": {"space": space}}, for_sweep=True)
    frame = pd.DataFrame(
        {
            "status": ["FINISHED", "KILLED", "FINISHED"],
            "optim.lr": [0.001, 0.01, 0.1],
            "strategy.kind": ["red_blue", "standard", "red_blue"],
            "val_loss": [0.3, 0.9, 0.1],
        }
    )
    figure = parallel_coordinates(cfg, frame)
    axis = figure.axes[0]
    trials = [line for line in axis.lines if len(line.get_xdata()) == 3]
    assert [line.get_linestyle() for line in trials] == ["-", "--", "-"]  # stopped: dashed
    assert [list(line.get_ydata()) for line in trials][2] == pytest.approx([1.0, 0.0, 0.0])
    assert trials[1].get_ydata()[0] == pytest.approx(0.5)  # 0.01: halfway, in decades
    assert [t.get_text() for t in axis.get_xticklabels()] == [*space, "val_loss"]
    labels = {t.get_text() for t in axis.texts}
    assert {"0.001", "0.1", "red_blue", "standard", "0.9"} <= labels  # each axis's ends
    plt.close(figure)


def test_a_warm_start_names_a_model_uri_and_fixes_the_model_a_sweep_may_vary():
    with pytest.raises(ConfigError, match="model.init_from"):
        validate({"model": {"init_from": "digits-v3.safetensors"}})
    space = {"model.hidden": {"choice": [[8], [16]]}, "optim.lr": {"choice": [0.01, 0.1]}}
    tree = {"model": {"init_from": "models:/digits@champion"}, "sweep": {"space": space}}
    with pytest.raises(ConfigError, match="sweep.space.model.hidden: model.init_from fixes"):
        validate(tree, for_sweep=True)
    del space["model.hidden"]
    assert validate(tree, for_sweep=True).model.init_from == "models:/digits@champion"


def test_the_trial_curves_draw_each_trials_metric_per_round_and_where_it_stopped():
    import matplotlib.pyplot as plt
    import pandas as pd
    from mlflow.entities import Metric

    from orchestrator.sweeps.figures import trial_curves

    cfg = validate({"sweep": {"space": {"optim.lr": {"choice": [0.01, 0.1]}}}}, for_sweep=True)
    frame = pd.DataFrame({"trial_id": ["a", "b"], "status": ["FINISHED", "KILLED"]})
    histories = {
        "a": [Metric("val_loss", 1.0 / step, 0, step) for step in (3, 1, 2, 4)],
        "b": [Metric("val_loss", 2.0, 0, 1), Metric("val_loss", 1.5, 0, 2)],
    }
    figure = trial_curves(cfg, frame, histories)
    finished, stopped = figure.axes[0].lines
    assert list(finished.get_xdata()) == [1, 2, 3, 4] and finished.get_linestyle() == "-"
    assert list(stopped.get_ydata()) == [2.0, 1.5] and stopped.get_linestyle() == "--"
    assert stopped.get_label() == "b (stopped)" and figure.axes[0].get_yscale() == "log"
    plt.close(figure)
