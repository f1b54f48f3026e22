"""The ``redblue`` command. Thin: parse the arguments, hand them to a typed function of the
command's package (training, sweeps, serving, cluster), turn invalid input into exit 2 before Ray
starts, and exit with the function's code."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path

import typer

from orchestrator import console
from orchestrator.cluster.cli import cluster_app, submit
from orchestrator.exit_codes import EXIT_INVALID
from orchestrator.exporting.command import export
from orchestrator.promoting.command import promote, rollback
from orchestrator.serving.audit_verify import audit_app
from orchestrator.serving.command import deploy
from orchestrator.ui import ui
from trainers.log_level import LOG_LEVEL_ENV

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's lines are joined, then wrapped to the terminal
    help="Distributed red-blue training on Ray Train + DeepSpeed, tracked in MLflow.",
)


def _print_version(asked: bool) -> None:
    if asked:
        from orchestrator.environment import package_versions

        versions = package_versions()
        others = ", ".join(f"{name} {versions[name]}" for name in list(versions)[1:])
        console.out.print(f"redblue {versions['redblue']} ({others})")
        raise typer.Exit()


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@app.callback()
def options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the versions."
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.WARNING,
        "--log-level",
        envvar=LOG_LEVEL_ENV,
        case_sensitive=False,
        help="What Ray, Ray Train, Tune, Serve and DeepSpeed log, in every process.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="--log-level INFO."),
) -> None:
    console.end_json()  # what an earlier command in this process (a test runner's) left
    level = LogLevel.INFO if verbose and log_level == LogLevel.WARNING else log_level
    os.environ[LOG_LEVEL_ENV] = level.value  # inherited by the processes the command starts


@app.command()
def train(
    config: Path | None = typer.Argument(
        None, help="YAML run config, e.g. configs/digits.yaml (not with --resume)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set optim.lr=0.01 (repeatable)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
    register: bool = typer.Option(
        False,
        "--register",
        help="Register the model as a new version of NAME (the config's name); it becomes "
        "champion only if it beats the current one on this run's test split, as in a sweep.",
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        metavar="RUN_ID",
        help="Continue the MLflow run RUN_ID, whose driver died, from its last checkpoint, with "
        "the config it started with.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on stdout (the summary); the rest on stderr."
    ),
) -> None:
    """Train CONFIG with DeepSpeed workers on Ray Train; record the run in MLflow."""
    if resume:
        config = _resumed_config(resume, config, overrides, address, as_json)
    elif config is None:
        message = "CONFIG is missing: redblue train CONFIG (or --resume RUN_ID)"
        console.finish(*console.refused(EXIT_INVALID, message), as_json)
    cfg, plan = _validated(config, overrides, address, for_sweep=False, as_json=as_json)
    from orchestrator.training.run import train as run_train

    outcome = run_train(cfg, plan, address, register=register, resume_run_id=resume)
    console.finish(*outcome, as_json)


def _resumed_config(
    run_id: str, config: Path | None, overrides: list[str], address: str | None, as_json: bool
) -> Path:
    """The config ``run_id`` started with, or exit 2 (before Ray starts) with one message."""
    from orchestrator.environment import prepare_driver_env

    if as_json:
        console.use_json()
    prepare_driver_env(address)
    from orchestrator.training.resume import ResumeError, resumable_config

    try:
        if config is not None or overrides:
            raise ResumeError(
                "--resume continues a run with its own config: leave out CONFIG and --set"
            )
        return resumable_config(run_id)
    except ResumeError as exc:
        console.finish(*console.refused(EXIT_INVALID, str(exc)), as_json)


@app.command()
def sweep(
    config: Path = typer.Argument(..., help="YAML run config with a sweep section."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set sweep.num_samples=4 (repeatable)."
    ),
    num_samples: int | None = typer.Option(
        None, "--num-samples", "-n", min=1, help="Trials to sample (sets sweep.num_samples)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue this config's unfinished sweep (after a crash or kill)."
    ),
    allow_schema_change: bool = typer.Option(
        False,
        "--allow-schema-change",
        help="Let the best model become champion even if its inputs (feature names, width, task, "
        "classes) differ from the current champion's.",
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on stdout (the summary); the rest on stderr."
    ),
) -> None:
    """Tune CONFIG's sweep.space with Ray Tune; each trial is a Ray Train DeepSpeed run.

    Every trial is a nested MLflow run under one sweep run; the best model is registered and
    takes the alias 'champion' only if it beats the current one and takes the same inputs.
    """
    extra = [f"sweep.num_samples={num_samples}"] if num_samples else []
    cfg, plan = _validated(config, [*overrides, *extra], address, True, as_json=as_json)
    if not cfg.sweep.space:
        console.print_error(f"{config}: sweep.space is empty; add the keys to sweep")
        raise typer.Exit(EXIT_INVALID)
    from orchestrator.sweeps.run import sweep as run_sweep

    console.finish(*run_sweep(cfg, plan, address, resume, allow_schema_change), as_json)


@app.command()
def compare(
    config: Path = typer.Argument(..., help="YAML run config, e.g. configs/digits.yaml."),
    seeds: int = typer.Option(5, "--seeds", "-n", min=1, help="Seeds 0..N-1."),
    strategies: str = typer.Option(
        "red_blue,standard",
        help="Comma list, each paired with standard by seed: standard, red_blue, red_blue_prune "
        "(= red_blue_clean), red_blue_weight, red_blue_report; standard is added if missing.",
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set data.label_noise=0.2 (repeatable)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue this config's unfinished comparison (same options)."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on stdout (the summary); the rest on stderr."
    ),
) -> None:
    """Compare red-blue (or other strategies) with standard training on CONFIG, paired by seed.

    Each seed trains every strategy (same split, initialisation, step budget) as a nested MLflow
    run; the parent gets means, paired differences from standard, p-values (raw and Holm).
    """
    cfg, plan = _validated(config, overrides, address, False, as_json, trials=True)
    from orchestrator.compare.run import compare as run_compare

    console.finish(*run_compare(cfg, plan, address, seeds, resume, strategies), as_json)


app.command()(deploy)


@app.command()
def predict(
    model: str = typer.Argument(..., metavar="MODEL", help="A model URI or a saved model folder."),
    source: str = typer.Argument(..., metavar="INPUT", help="A .csv/.parquet file or folder."),
    output: str = typer.Option(..., "--output", "-o", help="Folder to write (.csv/.parquet)."),
    proba: bool = typer.Option(False, "--proba", help="Add proba_<class> columns (classifiers)."),
    concurrency: int = typer.Option(1, min=1, help="Model actors predicting in parallel."),
    batch_size: int = typer.Option(4096, min=1, help="Rows per batch handed to an actor."),
    cpus_per_actor: float = typer.Option(1.0, min=0.01, help="Ray CPUs (torch threads) per actor."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    address: str | None = typer.Option(None, help="Ray cluster; else $RAY_ADDRESS, else local."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="One JSON object on stdout (output, rows, seconds); the rest on stderr.",
    ),
) -> None:
    """Predict MODEL on each row of INPUT with Ray Data: INPUT's rows plus `prediction`."""
    from orchestrator.predicting.run import PredictArgs, command

    if as_json:
        console.use_json()
    options = (proba, overwrite, concurrency, batch_size, cpus_per_actor)
    console.finish(*command(PredictArgs(model, source, output, *options), address), as_json)


@app.command()
def compress(
    config: Path = typer.Argument(..., help="YAML config: the data, the student, compression."),
    teacher: str = typer.Option(
        ..., "--teacher", "-t", help="The model to compress: models:/NAME@ALIAS, ... as deploy."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set compression.method=prune."
    ),
    address: str | None = typer.Option(
        None, help="Ray cluster address; default: $RAY_ADDRESS, else a local Ray on 127.0.0.1."
    ),
) -> None:
    """Compress TEACHER by its config's compression section (prune the hidden units of an mlp,
    rnn, lstm or gru, or distill it into the config's model) and train the result as `train`
    does; the run logs the trade-off against the teacher (parameters, size, latency,
    throughput, test metric)."""
    cfg, plan = _validated(config, overrides, address, for_sweep=False)
    from orchestrator.compressing.run import compress as run_compress
    from orchestrator.streaming.choice import PendingStream

    if isinstance(plan, PendingStream):
        console.print_error(f"{config}: compress trains in memory; set data.streaming: off")
        raise typer.Exit(EXIT_INVALID)
    raise typer.Exit(run_compress(cfg, plan, teacher, address))


app.command()(export)


@app.command()
def validate(
    config: Path = typer.Argument(..., help="YAML run config, e.g. configs/digits.yaml."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set optim.lr=0.01 (repeatable)."
    ),
    for_sweep: bool = typer.Option(False, "--sweep", help="Check it as `sweep` would."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
) -> None:
    """Check CONFIG without running it: the data read and split, the task, the model's
    parameter count, the rounds, the DeepSpeed config and a sweep's space. Ray is not started;
    a problem exits 2 with one message, as `train` would."""
    from orchestrator.validating import rows, summary

    cfg, plan = _validated(config, overrides, None, for_sweep, as_json, run=False)
    found = summary(cfg, plan, for_sweep)
    if not as_json:
        console.print_summary(rows(found), title=f"{config}: valid")
    console.finish(0, found, as_json)


@app.command()
def schema(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write it to this file (e.g. redblue.schema.json)."
    ),
) -> None:
    """Print the JSON Schema of a run config, for editors (YAML language servers) and CI."""
    from orchestrator.config_reference import json_schema

    if output is None:
        sys.stdout.write(json_schema() + "\n")
        return
    output.write_text(json_schema() + "\n")
    console.err.print(f"wrote {output}")


def _validated(config: Path, overrides: list[str], address, for_sweep, as_json=False, *,
               trials=False, run=True):  # fmt: skip
    """:func:`orchestrator.checked_config.checked`, or exit 2 with one message (before Ray is
    imported). With ``as_json`` stdout is kept for the command's JSON result, also on exit 2."""
    from orchestrator.environment import prepare_driver_env

    if as_json:
        console.use_json()
    prepare_driver_env(address)
    from orchestrator.checked_config import checked
    from orchestrator.config import ConfigError
    from orchestrator.storage import StorageError
    from orchestrator.streaming.choice import DataError

    try:
        return checked(config, overrides, address, for_sweep, trials=trials, run=run)
    except (ConfigError, DataError, StorageError) as exc:
        console.finish(*console.refused(EXIT_INVALID, str(exc)), as_json)


app.command()(promote)
app.command()(rollback)
app.command()(ui)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit)
app.add_typer(cluster_app, name="cluster")
app.add_typer(audit_app, name="audit")


def main() -> None:
    console.own_process()
    app()


if __name__ == "__main__":
    main()
