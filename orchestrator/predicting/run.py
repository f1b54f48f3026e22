"""``redblue predict``'s work: read the input with Ray Data, run the model in a pool of actors
(``map_batches``), write the input's columns plus the predictions, and print one summary line.

The plan (:mod:`orchestrator.predicting.plan`) has checked everything it can before this starts;
a problem only the whole data shows (a NaN in row 90,000) fails the run with the family's message.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from rich.markup import escape

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from orchestrator.predicting.batch import BatchPredictor
from orchestrator.predicting.plan import (
    PredictArgs,
    PredictPlan,
    csv_options,
    file_system,
    plan_prediction,
)
from orchestrator.predicting.rules import PredictError
from trainers.errors import InputError

BLOCK_BYTES = 16 * 1024**2


def command(args: PredictArgs, address: str | None) -> tuple[int, dict[str, Any]]:
    """``redblue predict``: the driver's environment (before Ray or MLflow is imported), the
    plan or exit 2 with one message, then the prediction. Returns the exit code and what
    ``--json`` prints (the output, its rows, the seconds; or the error)."""
    from orchestrator.environment import prepare_driver_env

    prepare_driver_env(address)
    from orchestrator.serving.model_source import ModelSourceError

    try:
        plan = plan_prediction(args)
    except (PredictError, ModelSourceError) as exc:
        console.print_error(str(exc))
        return EXIT_INVALID, {"error": str(exc)}
    return predict(plan, address)


def predict(plan: PredictPlan, address: str | None) -> tuple[int, dict[str, Any]]:
    """Run the planned prediction on the local Ray (127.0.0.1) or the cluster at ``address``;
    returns the exit code and the result (:func:`command`)."""
    from orchestrator.environment import connect_ray

    args = plan.args
    try:
        # The actors, and one CPU for the tasks that read and write the files beside them.
        where = connect_ray(address, args.concurrency * args.cpus_per_actor + 1)
        console.err.print(
            f"predicting with {model_label(plan)} on {where}: {len(plan.files)} "
            f"{plan.input_format} file(s), {args.concurrency} actor(s) of {args.cpus_per_actor:g} "
            f"CPU, batches of {args.batch_size}",
            soft_wrap=True,
        )
        started = time.perf_counter()
        write(predictions(plan), plan)
        seconds = time.perf_counter() - started
        rows = count_rows(plan.output, plan.output_format)
    except KeyboardInterrupt:
        console.print_error(f"interrupted; {plan.output} may be incomplete")
        return EXIT_INTERRUPTED, {"error": "interrupted", "output": plan.output}
    except Exception as exc:
        problem = input_error(exc)
        if problem is None:
            console.err.print(traceback.format_exc(), markup=False, highlight=False)
            problem = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
        problem = escape(problem)  # Ray's text may hold brackets that rich would read as markup
        console.print_error(f"prediction failed: {problem}; {plan.output} may be incomplete")
        return EXIT_FAILED, {"error": problem, "output": plan.output}
    console.out.print(summary_line(rows, seconds, plan.output), soft_wrap=True)
    result = {"model": model_label(plan), "input_files": len(plan.files), "output": plan.output}
    return EXIT_OK, result | {"output_format": plan.output_format, "rows": rows, "seconds": seconds}


def predictions(plan: PredictPlan) -> Any:
    """The lazy Ray Dataset: the input read and mapped through the model's actors."""
    import ray.data
    from ray.data.datasource import Partitioning
    from ray.data.datasource.partitioning import PartitionStyle

    # Ray's default (128 MiB) reads a 100 MB input as one block: the progress bars then jump from
    # 0 to done, one actor gets all the work, and nothing is written until everything is
    # predicted. Blocks of 16 MiB stream: read, predict and write overlap. The rows' order is
    # not kept (Ray 2.60's Parquet writer reorders rows within a file even with preserve_order),
    # so the output keeps every input column, ids included, to join on.
    ray.data.DataContext.get_current().target_max_block_size = BLOCK_BYTES
    args = plan.args
    # A folder's hive partitions typed as training read them (Ray Data's default: text).
    partitioning = Partitioning(
        PartitionStyle.HIVE, base_dir=plan.source, field_types=plan.partitions
    )
    if plan.input_format == "parquet":
        dataset = ray.data.read_parquet(plan.files, partitioning=partitioning)
    else:
        dataset = ray.data.read_csv(
            plan.files, convert_options=csv_options(), partitioning=partitioning
        )
    return dataset.map_batches(
        BatchPredictor,
        fn_constructor_kwargs={
            "bundle": plan.bundle,
            "proba": args.proba,
            "threads": round(args.cpus_per_actor),
        },
        batch_format="pandas",
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=args.concurrency),
        num_cpus=args.cpus_per_actor,
    )


def write(dataset: Any, plan: PredictPlan) -> None:
    """Write the dataset as a folder of part files in the output's format, replacing an existing
    output only when the plan allowed it (``--overwrite``)."""
    import pyarrow.fs as pafs
    from ray.data import SaveMode

    mode = SaveMode.OVERWRITE if plan.args.overwrite else SaveMode.ERROR
    filesystem, inner = file_system(plan.output)
    if plan.args.overwrite and filesystem.get_file_info(inner).type == pafs.FileType.File:
        filesystem.delete_file(inner)  # Ray's overwrite replaces a folder, not a file
    if plan.output_format == "parquet":
        dataset.write_parquet(plan.output, mode=mode)
    else:
        dataset.write_csv(plan.output, mode=mode)


def count_rows(output: str, fmt: str) -> int:
    """Rows in the written output (Parquet: from the files' metadata; CSV: a fast scan)."""
    import pyarrow.dataset as pads

    filesystem, inner = file_system(output)
    return int(pads.dataset(inner, format=fmt, filesystem=filesystem).count_rows())


def input_error(exc: BaseException) -> str | None:
    """The message of the family's ``InputError`` behind a failed Ray task, if that is why.

    Ray Data hands back the worker's failure as text (a ``RayTaskError`` wrapping its
    ``UserCodeException``; the ``InputError`` it was raised from does not travel), so the error
    is found by its qualified name in that text, or as an exception raised in this process."""
    marker = f"{InputError.__module__}.{InputError.__qualname__}: "
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, InputError):
            return f"a batch does not fit the model: {current}"
        for line in str(current).splitlines():
            if line.startswith(marker):
                return f"a batch does not fit the model: {line[len(marker) :]}"
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


def model_label(plan: PredictPlan) -> str:
    """``digits v3`` for a model from MLflow, its folder for a local one."""
    return plan.bundle.label if plan.bundle.run_id else plan.bundle.uri


def summary_line(rows: int, seconds: float, output: str) -> str:
    """``predicted 201,264 rows in 9.8 s (20,537 rows/s) -> /data/preds.parquet``."""
    rate = rows / seconds if seconds > 0 else 0.0
    return f"predicted {rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s) -> {output}"
