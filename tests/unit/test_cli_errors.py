"""Bad input: one clear message naming the problem, exit code 2, and Ray never imported."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CASES = {
    "unknown key": (["--set", "strategy.red_ration=0.3"], "did you mean strategy.red_ratio"),
    "red ratio out of range": (["--set", "strategy.red_ratio=1.5"], "strategy.red_ratio"),
    "zero stage 4": (["--set", "deepspeed.zero_stage=4"], "deepspeed.zero_stage"),
    "missing file": (
        ["--set", "data.source=/nonexistent/data.csv", "--set", "data.label=y"],
        "data file not found",
    ),
    "missing label": (
        ["--set", "data.source={csv}", "--set", "data.label=nope"],
        "label column 'nope' not found",
    ),
    "text in a number column": (
        ["--set", "data.source={text_csv}", "--set", "data.label=y"]
        + ["--set", "data.features={{b: {{type: number}}}}"],
        "column 'b' of",
    ),
    "infinity in data": (
        ["--set", "data.source={inf_csv}", "--set", "data.label=y"],
        "infinite values in",
    ),
    "unknown feature column": (
        ["--set", "data.source={csv}", "--set", "data.label=y"]
        + ["--set", "data.features={{zz: {{type: category}}}}"],
        "data.features names column(s) 'zz' not found",
    ),
    "category with a missing rule": (
        ["--set", "data.features={{a: {{type: category, missing: mean}}}}"],
        "a category column keeps missing values as a category of its own",
    ),
    "too small": (
        ["--set", "data.source={tiny_csv}", "--set", "data.label=y"],
        "too small for the split",
    ),
    "series without a window": (
        ["--set", "data.kind=series", "--set", "data.source=co2", "--set", "model.kind=lstm"],
        "data.kind series needs data.window",
    ),
    "series with a gap": (
        ["--set", "data.kind=series", "--set", "data.source={inf_csv}", "--set", "data.time=b"]
        + ["--set", "data.target=y", "--set", "data.window=3", "--set", "model.kind=gru"],
        "NaN or infinite values in",  # in column a, a covariate
    ),
    "cleaning a regression": (
        ["--set", "data.source=diabetes", "--set", "strategy.clean=prune"],
        "strategy.clean needs classification (it finds wrong class labels); the task here is "
        "regression",
    ),
    "cleaning a series": (
        ["--set", "data.kind=series", "--set", "data.source=co2", "--set", "data.window=24"]
        + ["--set", "model.kind=lstm", "--set", "strategy.clean=weight"],
        "strategy.clean needs classification (it finds wrong class labels); the task here is "
        "forecast",
    ),
    "cleaning standard training": (
        ["--set", "strategy.kind=standard", "--set", "strategy.clean=prune"],
        "strategy.clean prune needs strategy.kind red_blue",
    ),
    "pair noise on a regression": (
        ["--set", "data.source=diabetes", "--set", "data.label_noise=0.2"]
        + ["--set", "data.label_noise_kind=pairs"],
        "data.label_noise_kind pairs needs classification",
    ),
}
SWEEP_CASES = {
    "sweep metric no round reports": (
        [
            "--set",
            "sweep.space={optim.lr: {uniform: [0.001, 0.01]}}",
            "--set",
            "sweep.metric=val_acc",
        ],
        "sweep.metric 'val_acc': the trials of this run report val_loss, val_accuracy every round",
    ),
    "sweep metric minimised that grows": (
        ["--set", "sweep.space={optim.lr: {uniform: [0.001, 0.01]}}"]
        + ["--set", "sweep.metric=val_accuracy"],
        "sweep.metric val_accuracy grows as trials get better: set sweep.mode: max",
    ),
    "sweep unknown space key": (
        ["--set", "sweep.space={optim.lrr: {uniform: [0.1, 0.2]}}"],
        "sweep.space.optim.lrr: not a config key (did you mean optim.lr?)",
    ),
    "sweep value the schema rejects": (
        ["--set", "sweep.space={strategy.red_ratio: {uniform: [0.3, 1.5]}}"],
        "value 1.5 is rejected",
    ),
    "sweep value the run's workers reject": (
        ["--set", "scaling.num_workers=3", "--set", "optim.batch_size=96"]
        + ["--set", "sweep.space={optim.batch_size: {choice: [32, 96]}}"],
        "sweep.space.optim.batch_size: value 32 is rejected: optim.batch_size (32) must be a "
        "multiple of scaling.num_workers",
    ),
    "sweep empty space": ([], "sweep.space is empty"),
    "sweep a value a streamed table cannot take": (
        ["--set", "data.source={parts}", "--set", "data.label=y", "--set", "data.streaming=on"]
        + ["--set", "sweep.space={data.label_noise: {uniform: [0.0, 0.2]}}"],
        "sweep.space data.label_noise 0.2: data.label_noise (the noisy rows are drawn from P' in "
        "memory) needs every row in memory, and",
    ),
    "sweep nothing to resume": (
        ["--resume", "--set", "sweep.space={optim.lr: {uniform: [0.001, 0.01]}}"],
        "no unfinished sweep in experiment 'clitest' to resume",
    ),
}

COMPARE_CASES = {
    "compare label noise out of range": (
        ["--set", "data.label_noise=1.5"],
        "data.label_noise: Input should be less than 1",
    ),
    "compare train fraction out of range": (
        ["--set", "data.train_fraction=0"],
        "data.train_fraction: Input should be greater than 0",
    ),
    "compare no seeds": (["--seeds", "0"], "Invalid value for '--seeds'"),
    "compare unknown strategy": (
        ["--strategies", "red_blue,red_blue_prnue"],
        "--strategies: unknown strategy 'red_blue_prnue'; valid: standard, red_blue, "
        "red_blue_prune, red_blue_weight, red_blue_report, red_blue_clean (= red_blue_prune)",
    ),
    "compare a strategy a streamed table cannot take": (
        ["--set", "data.source={parts}", "--set", "data.label=y", "--set", "data.streaming=on"]
        + ["--strategies", "red_blue_prune"],
        "--strategies red_blue_prune: strategy.clean prune (per-row cross-predictions) needs every "
        "row in memory, and",
    ),
    "compare nothing to resume": (
        ["--resume"],
        "no unfinished compare in experiment 'clitest' to resume",
    ),
}

DEPLOY_CASES = {
    "deploy not a uri": (["digits"], "'digits' is not a model URI; use models:/NAME@ALIAS"),
    "deploy unknown model": (["models:/nope@champion"], "models:/nope@champion: "),
    "deploy unknown run": (["runs:/" + "0" * 32 + "/model"], "runs:/" + "0" * 32),
    "deploy bad port": (["models:/x/1", "--set", "serve.port=0"], "serve.port"),
    "deploy unknown serve key": (
        ["models:/x/1", "--set", "serve.prot=9000"],
        "did you mean serve.port",
    ),
    "deploy share without canary": (
        ["models:/x/1", "--canary-percent", "20"],
        "--canary-percent needs --canary MODEL",
    ),
    "deploy unknown canary": (["models:/x/1", "--canary", "x@2"], "'x@2' is not a model URI"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"a": rng.normal(size=80), "b": rng.normal(size=80), "y": np.arange(80) % 2}
    )
    files = {
        "csv": frame,
        "text_csv": frame.assign(b=["t"] * 80),
        "inf_csv": frame.assign(a=[np.inf] * 3 + list(frame.a[3:])),
        "tiny_csv": frame.head(6),
    }
    paths = {}
    for name, table in files.items():
        paths[name] = str(tmp / f"{name}.csv")
        table.to_csv(paths[name], index=False)
    (tmp / "parts").mkdir()
    frame.to_parquet(tmp / "parts" / "part-0.parquet")

    def with_parts(args: list[str]) -> list[str]:
        return [arg.replace("{parts}", str(tmp / "parts")) for arg in args]

    config = tmp / "run.yaml"
    config.write_text("name: clitest\nscaling: {num_workers: 2}\n")
    cases = {
        name: ["train", str(config)] + [a.format(**paths) for a in args]
        for name, (args, _) in CASES.items()
    }
    for command, named in {"sweep": SWEEP_CASES, "compare": COMPARE_CASES}.items():
        for name, (args, _) in named.items():
            cases[name] = [command, str(config), *with_parts(args)]
    cases.update({name: ["deploy", *args] for name, (args, _) in DEPLOY_CASES.items()})
    cases["missing config"] = ["train", str(tmp / "absent.yaml")]
    digits = str(Path(__file__).parents[2] / "configs" / "digits.yaml")
    cases["validate"] = ["validate", digits, "--sweep", "--json"]
    cases["validate bad key"] = ["validate", str(config), "--set", "strategy.red_ration=0.3"]
    cases["log level"] = ["--log-level", "LOUD", "validate", digits]
    script = textwrap.dedent(
        f"""
        import json, sys
        from typer.testing import CliRunner
        from orchestrator.cli import app
        results = {{}}
        for name, args in {cases!r}.items():
            r = CliRunner().invoke(app, args)
            results[name] = [r.exit_code, r.stdout if name == "validate" else r.output]
        results["ray imported"] = "ray" in sys.modules
        print(json.dumps(results))
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [*CASES, *SWEEP_CASES, *COMPARE_CASES, *DEPLOY_CASES])
def test_bad_input_exits_2_with_a_clear_message(outcomes, name):
    code, output = outcomes[name]
    assert code == 2, output
    expected = {**CASES, **SWEEP_CASES, **COMPARE_CASES, **DEPLOY_CASES}[name][1]
    assert expected in " ".join(output.split()), output
    assert "Traceback" not in output


def test_a_log_level_that_is_not_one_exits_2_naming_the_levels(outcomes):
    code, output = outcomes["log level"]
    assert code == 2 and "LOUD" in output and "debug" in output and "Traceback" not in output


def test_missing_config_file(outcomes):
    code, output = outcomes["missing config"]
    assert code == 2 and "config file not found" in output


def test_ray_is_never_started_for_bad_input(outcomes):
    assert outcomes["ray imported"] is False


def test_validate_says_what_a_config_would_run_without_ray(outcomes):
    """`redblue validate` (here as `sweep` would read the config, with --json): the split, the
    model's size, the rounds, the DeepSpeed config and the space; Ray never imported (above)."""
    code, stdout = outcomes["validate"]
    assert code == 0, stdout
    found = json.loads(stdout)
    assert found["task"] == "classification" and found["parameters"] == 17_356  # 64-128-64-10
    rows = found["rows"]
    assert rows["red"] + rows["blue"] == rows["train"] and rows["test"] == 360
    assert found["rounds"] > 0 and found["deepspeed"]["zero_optimization"]["stage"] == 0
    assert found["zero_stage"].startswith("0 (auto: 0.3 MB of training state")  # 17,356 x 16
    assert "space optim.lr" in found["sweep"]
    code, output = outcomes["validate bad key"]
    assert code == 2 and "did you mean strategy.red_ratio" in output


@pytest.mark.parametrize(
    "args, password, expected",
    [
        (["--host", "0.0.0.0"], "", "add --auth"),
        (["--host", "192.168.1.20"], "long-enough-password", "add --auth"),
        (["--auth"], "", "set $MLFLOW_AUTH_ADMIN_PASSWORD"),
        (["--host", "0.0.0.0", "--auth"], "short", "shorter than 12 characters"),
    ],
)
def test_ui_refuses_a_public_host_without_a_login(monkeypatch, args, password, expected):
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    result = CliRunner().invoke(app, ["ui", *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
