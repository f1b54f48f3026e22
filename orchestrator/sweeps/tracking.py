"""A Tune callback, run in the sweep's driver: one nested MLflow run per trial, and progress.

Every trial gets its own child run, found again by its tags when a sweep resumes, so no two trials
ever write into one run and a resumed trial continues its own. Only this driver writes MLflow.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from mlflow.tracking import MlflowClient
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from orchestrator import console
from orchestrator.config import RedblueConfig
from orchestrator.sweeps.config import Presets, config_values
from orchestrator.sweeps.trial import in_tune_trial_folder
from orchestrator.tracking import TrackedRun, node_tags, tracking_uri
from orchestrator.training.worker import DATA_PARAMS_KEY, NODE_IDS_KEY, ZERO_STAGE_KEY

FINAL_MARKER = "test_loss"  # only the last report of a trial that ran to the end holds it
PROGRESS_EVERY_ROUNDS = 5  # without a terminal, the table is printed this often
SKIPPED_KEYS = set(AUTO_RESULT_KEYS) | {"trial_id", "experiment_tag", "done", "checkpoint_path"}


@dataclass
class TrialRecord:
    """What the driver knows about one trial."""

    trial_id: str
    params: dict[str, Any]
    run: TrackedRun
    status: str = "RUNNING"  # RUNNING, FINISHED, STOPPED (early), FAILED
    rounds: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float = math.nan
    error: str = ""
    exploits: int = 0  # restarts from a better trial's checkpoint (population-based training)

    @property
    def closed(self) -> bool:
        """Ended before: its MLflow run is final and is not written again."""
        return self.status in ("FINISHED", "STOPPED")


def find_trial_run(client: MlflowClient, experiment_name: str, sweep_id: str, trial_id: str):
    """The child run of ``trial_id`` in sweep ``sweep_id``, or None."""
    experiment = client.get_experiment_by_name(experiment_name)
    found = client.search_runs(
        [experiment.experiment_id] if experiment else [],
        filter_string=(
            f"tags.`redblue.sweep_id` = '{sweep_id}' and tags.`redblue.trial_id` = '{trial_id}'"
        ),
    )
    return found[0] if found else None


def trial_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Our metrics in a Tune result (Tune's own bookkeeping keys left out)."""
    return {
        key: float(value)
        for key, value in result.items()
        if key not in SKIPPED_KEYS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


class SweepTracker(Callback):
    """Writes the child runs of one sweep and shows its progress. Picklable: Tune saves it."""

    presets: dict[str, dict[str, Any]] = {}  # also for a tracker saved before it had presets

    def __init__(
        self,
        cfg: RedblueConfig,
        parent_run_id: str,
        sweep_id: str,
        presets: Presets | None = None,
    ) -> None:
        self.cfg = cfg
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.presets = {key: dict(values) for key, values in (presets or {}).items()}
        self.records: dict[str, TrialRecord] = {}
        self._live: Any = None  # a rich Live table on a terminal
        self._clock: console.RoundClock | None = None  # from the first trial's event
        self._left: float | None = None  # the latest estimate of the time left

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "records": {}, "_live": None, "_clock": None}

    # -- MLflow --------------------------------------------------------------------------------

    def _record(self, trial) -> TrialRecord:
        record = self.records.get(trial.trial_id)
        if record is None:
            record = self._open(trial.trial_id, dict(trial.config))
            self.records[trial.trial_id] = record
        return record

    def _open(self, trial_id: str, params: dict[str, Any]) -> TrialRecord:
        """The trial's child run: the existing one when the sweep resumes, else a new one."""
        client = MlflowClient(tracking_uri())
        found = find_trial_run(client, self.cfg.name, self.sweep_id, trial_id)
        if found:
            run = TrackedRun(found.info.run_id, self.cfg.name)
            ended = {"FINISHED": "FINISHED", "KILLED": "STOPPED"}.get(found.info.status)
            if ended:  # Tune had not saved that this trial ended when its driver died
                metrics = found.data.metrics
                return TrialRecord(
                    trial_id=trial_id,
                    params=params,
                    run=run,
                    status=ended,
                    rounds=int(metrics.get("round", 0)),
                    best_metric=metrics.get(self.cfg.sweep.metric, math.nan),
                )
            client.update_run(run.run_id, status="RUNNING")
        else:
            trial_cfg = self.cfg.with_values(config_values(params, self.presets))
            tags = {
                "redblue.kind": "trial",
                "redblue.sweep_id": self.sweep_id,
                "redblue.trial_id": trial_id,
                "redblue.strategy": trial_cfg.strategy.kind,
                "redblue.seed": str(trial_cfg.seed),
                "redblue.world_size": str(self.cfg.scaling.num_workers),
                # a pseudo key's value by its name (a comparison's strategy.kind + clean)
                **{f"redblue.{key}": str(params[key]) for key in self.presets if key in params},
            }
            run = TrackedRun.start(
                trial_cfg,
                tags,
                parent_run_id=self.parent_run_id,
                run_name=f"trial-{trial_id}",
            )
        return TrialRecord(trial_id=trial_id, params=params, run=run)

    # -- Tune hooks ----------------------------------------------------------------------------

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        record = self._record(trial)
        if record.closed:
            message = f"trial {trial.trial_id} had ended; Tune only collects its final result"
        elif donor := _donor(trial, trials):
            message = self._took_over(record, trial, donor)
        else:
            message = f"trial {trial.trial_id} started: {format_params(record.params)}"
        self._show(trials, message)

    def _took_over(self, record: TrialRecord, trial, donor: str) -> str:
        """Population-based training restarted ``trial`` from ``donor``'s checkpoint with
        perturbed values: the child run says so, and keeps a curve of each value it trained with.
        """
        record.params = dict(trial.config)
        record.exploits += 1
        record.run.set_tags(
            {
                "redblue.pbt.exploits": str(record.exploits),
                "redblue.pbt.last_exploit": f"from trial {donor}: {format_params(record.params)}",
            }
        )
        return (
            f"trial {trial.trial_id} continues from trial {donor}'s checkpoint with "
            f"{format_params(record.params)}"
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        record = self._record(trial)
        if record.closed:
            return
        if result.get(NODE_IDS_KEY):  # the first report after its workers started
            record.run.set_tags(node_tags(str(result[NODE_IDS_KEY]).split(",")))
            record.run.set_tag("redblue.zero_stage", str(result.get(ZERO_STAGE_KEY)))
        if result.get(DATA_PARAMS_KEY):  # its data's report, as a training run records it
            self._log_data_params(record, json.loads(result[DATA_PARAMS_KEY]))
        metrics = trial_metrics(result)
        metric = self.cfg.sweep.metric
        if metric in metrics and math.isfinite(metrics[metric]):
            better = min if self.cfg.sweep.mode == "min" else max
            value = metrics[metric]
            record.best_metric = (
                value if math.isnan(record.best_metric) else better(record.best_metric, value)
            )
        if FINAL_MARKER in metrics:
            record.metrics = metrics
            record.run.log_metrics(metrics, step=record.rounds)
            return
        record.rounds = int(metrics.get("round", record.rounds + 1))
        record.metrics = metrics
        if self.cfg.sweep.scheduler == "pbt":  # the values this round trained with
            metrics = {**metrics, **_numbers("pbt/", record.params)}
        record.run.log_metrics(metrics, step=record.rounds)
        if console.err.is_terminal or record.rounds % PROGRESS_EVERY_ROUNDS == 0:
            self._show(trials, None)

    @staticmethod
    def _log_data_params(record: TrialRecord, params: dict[str, str]) -> None:
        """Those not logged yet: a restarted trial reports them again, and a population member
        whose split's shares were perturbed has new sizes (MLflow keeps a param's first value)."""
        logged = record.run.client.get_run(record.run.run_id).data.params
        record.run.log_params({k: v for k, v in params.items() if k not in logged})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        record = self._record(trial)
        if record.closed:
            return
        run = record.run
        if FINAL_MARKER in record.metrics:
            record.status = "FINISHED"
            run.finish()
        else:  # the scheduler stopped it before its last round
            record.status = "STOPPED"
            run.set_tag("redblue.stopped_early", f"after round {record.rounds}")
            run.finish("KILLED")
        self._show(trials, f"trial {trial.trial_id} {record.status.lower()} ({self._best(record)})")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        record = self._record(trial)
        if record.closed:
            return
        record.status = "FAILED"
        record.error = _error_text(trial)
        record.run.fail(record.error or "the trial failed")
        self._show(trials, f"trial {trial.trial_id} failed: {record.error.splitlines()[-1:]}")

    # -- progress ------------------------------------------------------------------------------

    def _best(self, record: TrialRecord) -> str:
        return f"best {self.cfg.sweep.metric} {record.best_metric:.4f}"

    def _progress(self, trials) -> str:
        """``3/8 trials done, 1:20 elapsed, 2:40 left``: the time left at the pace of the trials
        after the first (which carries the start-up), as a round line estimates it."""
        space = self.cfg.sweep.space.values()
        grid = math.prod(len(spec.grid or ()) for spec in space if spec.kind == "grid")
        total = max(len(trials), self.cfg.sweep.num_samples * grid)
        if self._clock is None:
            self._clock = console.RoundClock(total, time.time())
        self._clock.num_rounds = total
        done = sum(1 for record in self.records.values() if record.status != "RUNNING")
        if done > self._clock.last or self._clock.first is None:  # the pace moves as trials end
            self._left = self._clock.tick(done)[1]
        elapsed = time.time() - self._clock.started
        return f"{done}/{total} trials done, " + console.clock_text(elapsed, self._left)

    def _show(self, trials, message: str | None) -> None:
        if message:
            console.err.print(f"{message}; {self._progress(trials)}", soft_wrap=True)
        rows = []
        for trial in trials:
            record = self.records.get(trial.trial_id)
            if record is None:
                rows.append((trial.trial_id, trial.status, format_params(trial.config), "", ""))
                continue
            status = record.status if record.status != "RUNNING" else trial.status
            rows.append(
                (
                    trial.trial_id,
                    status,
                    format_params(record.params),
                    str(record.rounds),
                    f"{record.best_metric:.4f}",
                )
            )
        table = console.trials_table(rows, self.cfg.sweep.metric)
        if console.err.is_terminal:
            if self._live is None:
                from rich.live import Live

                self._live = Live(table, console=console.err, refresh_per_second=2)
                self._live.start()
            self._live.update(table)
        elif message is None:
            console.err.print(table)

    def on_experiment_end(self, trials, **info) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _donor(trial, trials) -> str | None:
    """The other trial whose checkpoint ``trial`` starts from (population-based training)."""
    path = str(getattr(trial.checkpoint, "path", None) or "")
    others = (t.trial_id for t in trials if t is not trial)
    return next((other for other in others if in_tune_trial_folder(path, other)), None)


def _numbers(prefix: str, params: dict[str, Any]) -> dict[str, float]:
    return {
        f"{prefix}{key}": float(value)
        for key, value in params.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def format_params(params: dict[str, Any]) -> str:
    return "  ".join(
        f"{key.rsplit('.', 1)[-1]}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        with open(path) as handle:
            return handle.read()[-5000:]
    except OSError:
        return f"trial {trial.trial_id} errored"
