"""``model.kind: gan`` through the real loop on plain PyTorch engines (one process): every loss,
with and without conditioning and spectral normalization, learns the penguins table (categories
and gaps) and improves ``test_fd``; both networks are fused exactly and resume exactly; the
config, the refusals, the judge, the Fréchet distance, and the requests a model takes and the
rows it answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from orchestrator.config import ConfigError, validate
from tests.helpers import Recorder, plain_trainer, saved_gan, without_timing
from trainers.engine.fusion import engines, fuse_into_both, fuse_tensors
from trainers.errors import DataError, InputError
from trainers.families.gan_objective import frechet_distance, moments
from trainers.loop.plan import plan_run
from trainers.models import load_model, predict
from trainers.spec import FINAL_MODEL_DIR
from trainers.tasks import as_output, input_schema, task_for

PENGUINS = {"data": {"source": "penguins", "label": "species"}}
SMALL: dict = {}  # the default widths


def gan_trainer(report, model: dict, epochs: float = 50, **sections):
    return plain_trainer(
        report,
        **PENGUINS,
        model={"kind": "gan", **SMALL, **model},
        optim={"epochs": epochs, "batch_size": 32},
        **sections,
    )


# Every loss with and without conditioning and with and without spectral normalisation, and the
# four pairs of those two switches among them: 6 of the 12 combinations.
LEARNING = [
    ("bce", True, True),
    ("bce", False, False),
    ("hinge", True, False),
    ("hinge", False, True),
    ("wgan_gp", True, False),
    ("wgan_gp", False, True),
]


@pytest.mark.parametrize("loss, conditional, spectral_norm", LEARNING)
def test_each_loss_learns_the_table(tmp_path, loss, conditional, spectral_norm):
    model = {"loss": loss, "conditional": conditional, "spectral_norm": spectral_norm}
    trainer = gan_trainer(Recorder(tmp_path), model, strategy={"kind": "standard"})
    before = trainer.evaluator.test_metrics({"untrained": trainer.replicas["standard"]})
    after = trainer.run().metrics
    assert after["test_fd"] < 0.75 * before["untrained"]["test_fd"], (before, after)
    assert after["test_fd_real"] == before["untrained"]["test_fd_real"] > 0
    assert ("test_label_accuracy" in after) == conditional


def test_red_blue_trains_two_pairs_logs_both_losses_and_saves_a_generator(tmp_path):
    report = Recorder(tmp_path)
    trainer = gan_trainer(report, {}, epochs=100)
    final = trainer.run().metrics
    samples = trainer.evaluator.samples  # the last evaluation's rows, 8 of each class
    assert samples is not None and samples[:, -1].tolist() == [
        c for c in (0, 1, 2) for _ in range(8)
    ]
    rounds = [m for m in report.metrics if "round" in m]
    assert {"red/train_loss", "red/d_loss", "blue/train_loss", "blue/d_loss"} <= set(rounds[0])
    assert {"val/classes_covered", "val/label_accuracy"} <= set(rounds[-1])  # collapse shows
    assert final["test_label_accuracy"] > 0.6 and final["test_classes_covered"] >= 2  # of 3
    model, spec = load_model(report.checkpoints[-1] / FINAL_MODEL_DIR)
    assert spec.task == "generation" and task_for(spec).kind == "generation"
    rows = as_output(spec, predict(model, spec, input_schema(spec).rows({"n": 4, "seed": 3}))[0])
    assert list(rows.columns) == [*spec.feature_names, "species"]
    assert set(rows["island"]) <= {"Biscoe", "Dream", "Torgersen"}
    assert rows["sex"].isin(["male", "female", None]).all()
    assert (rows["body_mass_g"] % 1 == 0).all()  # whole grams, as in the table


def test_fusion_writes_theta_f_into_both_networks_of_both_replicas(tmp_path):
    trainer = gan_trainer(Recorder(tmp_path), {}, epochs=2)
    trainer.run()
    red, blue = trainer.replicas["red"], trainer.replicas["blue"]
    with torch.no_grad():  # make the replicas differ
        for param in blue["generator"].module.parameters():
            param.add_(0.1)
        for param in blue["discriminator"].module.parameters():
            param.mul_(0.5)
    before = {
        t: [p.clone() for p in e.masters().tensors] for t, e in engines(trainer.replicas).items()
    }
    fuse_into_both(red, blue, 0.3)
    for network in ("generator", "discriminator"):
        fused = fuse_tensors(0.3, before[f"red-{network}"], before[f"blue-{network}"])
        for replica in (red, blue):
            for value, expected in zip(replica[network].masters().tensors, fused, strict=True):
                assert torch.equal(value, expected)


def test_a_gan_resumes_exactly_from_a_checkpoint(tmp_path):
    sections = {"checkpoint": {"every_rounds": 2}}
    report = Recorder(tmp_path / "full")
    full = gan_trainer(report, {"loss": "wgan_gp"}, epochs=8, **sections).run()
    resumed = gan_trainer(Recorder(tmp_path / "again"), {"loss": "wgan_gp"}, epochs=8, **sections)
    torch.manual_seed(999)  # the checkpoint restores the RNG
    resumed.restore(report.checkpoints[0])
    assert without_timing(resumed.run().metrics) == without_timing(full.metrics)


def test_the_config_names_a_bad_key_and_gives_gans_their_own_defaults():
    cfg = validate({"model": {"kind": "gan"}})
    assert (cfg.optim.lr, cfg.optim.beta1) == (1e-4, 0.5)
    assert validate({"model": {"kind": "gan"}, "optim": {"lr": 0.01}}).optim.lr == 0.01
    with pytest.raises(ConfigError, match="model.loss"):
        validate({"model": {"kind": "gan", "loss": "lsgan"}})
    with pytest.raises(ConfigError, match="model.d_steps"):
        validate({"model": {"kind": "gan", "d_steps": 0}})
    with pytest.raises(ConfigError, match="model.latent"):
        validate({"model": {"kind": "gan", "latent": 0}})


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"strategy": {"clean": "prune"}}, "strategy.clean"),
        ({"optim": {"class_weights": "balanced"}}, "optim.class_weights"),
        ({"data": {"source": "diabetes"}}, "data.label 'target' is regression"),
        ({"data": {"source": "penguins", "max_one_hot": 2}}, "data.max_one_hot to at least 3"),
        (
            {"model": {"kind": "gan", "loss": "wgan_gp"}, "deepspeed": {"zero_stage": 3}},
            "ZeRO-3",
        ),
    ],
)
def test_what_a_gan_cannot_train_on_is_refused_before_ray(sections, message):
    cfg = validate({"model": {"kind": "gan"}} | sections)
    with pytest.raises(DataError, match=message):
        plan_run(cfg)


def test_the_frechet_distance_is_the_fid_formula():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(400, 3)), rng.normal(1.0, 2.0, size=(300, 3))
    sums = {**moments("a", first), **moments("b", second)}
    from scipy import linalg

    c1, c2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    expected = np.sum((first.mean(0) - second.mean(0)) ** 2) + np.trace(
        c1 + c2 - 2 * np.real(linalg.sqrtm(c1 @ c2))
    )
    assert frechet_distance(sums, "a", "b") == pytest.approx(expected, rel=1e-9)
    assert frechet_distance({**moments("a", first), **moments("b", first)}, "a", "b") < 1e-6


def test_requests_are_checked_and_the_same_seed_gives_the_same_rows(tmp_path):
    model, spec = load_model(saved_gan(tmp_path))
    schema = input_schema(spec)

    def generate(request):
        return as_output(spec, predict(model, spec, schema.rows(request))[0])

    asked = generate({"n": 3, "label": "Gentoo", "seed": 7})
    assert asked["species"].tolist() == ["Gentoo"] * 3
    pd.testing.assert_frame_equal(asked, generate({"n": 3, "label": "Gentoo", "seed": 7}))
    assert not asked.equals(generate({"n": 3, "label": "Gentoo", "seed": 8}))
    frame = pd.DataFrame({"n": [1, 2], "label": ["Adelie", "Chinstrap"], "seed": [0, 1]})
    assert generate(frame)["species"].tolist() == ["Adelie", "Chinstrap", "Chinstrap"]
    for bad, message in [
        ({"n": 2, "label": "Emperor"}, "unknown label 'Emperor'"),
        ({"n": 0}, "n must be an integer from 1"),
        ({"n": 1.5}, "n must be an integer"),
        ({"n": "3"}, "n must be an integer"),
        ({"n": 1, "colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"n": 10**7}, "n must be an integer from 1 to"),
        ([], "no request"),
    ]:
        with pytest.raises(InputError, match=message):
            schema.rows(bad)


def test_the_quality_report_follows_sdmetrics_definitions():
    from scipy.stats import ks_2samp

    from trainers.data.table_quality import (
        correlation_similarity,
        ks_complement,
        quality,
        tv_complement,
    )

    rng = np.random.default_rng(1)
    first, second = rng.normal(size=300), rng.normal(0.3, 1.2, size=200)
    expected = 1 - ks_2samp(first, second).statistic
    assert ks_complement(pd.Series(first), pd.Series(second)) == pytest.approx(expected)
    real, generated = pd.Series(["x", "x", "y", None]), pd.Series(["x", "y", "y", "y"])
    # gaps left out: 1 - (|2/3 - 1/4| + |1/3 - 3/4|) / 2
    assert tv_complement(real, generated) == pytest.approx(7 / 12)
    assert tv_complement(pd.Series([2007, 2008]), pd.Series(["2007", 2008.0], dtype=object)) == 1.0
    pairs = pd.DataFrame({"a": first[:200], "b": first[:200] * 2 + rng.normal(size=200)})
    shuffled = pairs.assign(b=rng.permutation(pairs["b"].to_numpy()))
    r_real, r_shuffled = pairs.corr().iloc[0, 1], shuffled.corr().iloc[0, 1]
    similarity = correlation_similarity(pairs, shuffled)
    assert similarity == pytest.approx(1 - abs(r_real - r_shuffled) / 2)
    table = pairs.assign(c=rng.choice(["p", "q"], size=200))
    assert quality(table, table, ["a", "b"]) == {
        "quality": 1.0,
        "column_shapes": 1.0,
        "column_pair_trends": 1.0,
    }


def test_the_quality_report_matches_sdmetrics_own_numbers():
    """SDMetrics 0.32's QualityReport on two tables with gaps and a category only the generated
    rows have (every pair averaged): tests/data/sdmetrics/reference.py wrote the tables and its
    numbers, in an environment of its own (sdmetrics pins pandas below 3)."""
    from trainers.data.table_quality import column_shapes, quality

    folder = Path(__file__).parents[1] / "data" / "sdmetrics"
    real, generated = (pd.read_csv(folder / name) for name in ("real.csv", "generated.csv"))
    expected = json.loads((folder / "expected.json").read_text())
    assert column_shapes(real, generated, ["x", "y"]) == pytest.approx(expected["shapes"])
    measured = quality(real, generated, ["x", "y"])
    for key in ("quality", "column_shapes", "column_pair_trends"):
        assert measured[key] == pytest.approx(expected[key], abs=1e-12), key


def test_the_round_line_shows_both_losses_and_collapse():
    from orchestrator.console import round_line

    metrics = {"round": 3, "red/train_loss": 0.7, "red/d_loss": 1.2, "blue/train_loss": 0.6,
               "blue/d_loss": 1.3, "val_loss": 8.1, "val/label_accuracy": 0.9,
               "val/classes_covered": 10}  # fmt: skip
    assert round_line(metrics, 9) == (
        "round 3/9  red 0.7000  (D 1.2000)  blue 0.6000  (D 1.3000)  val 8.1000  label acc 0.900"
        "  classes 10"
    )
