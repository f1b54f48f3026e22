"""``redblue export MODEL``: the model's fp32 weights as an ONNX graph (optionally int8), checked
on its test part T before anything is written or logged, measured against the original, logged as
a run with the exported model, optionally written to a folder and registered.

The checks: the fp32 graph's answers (class probabilities, values, forecasts, generated rows)
within ``PARITY_TOLERANCE`` (and ``PARITY_RELATIVE`` of large values) of PyTorch's on T (a
recurrent model's at two sequence lengths at least);
an int8 graph's test metric within ``INT8_ACCURACY_POINTS`` points (accuracy) or
``INT8_ERROR_RATIO`` (MSE) of the original's. Either failing is exit 1, with both numbers.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from orchestrator.exporting.measure import TABLE_HEADER, Footprint, measured, table_rows
from serve_apps.model_bundle import ModelBundle
from trainers.export.runtime import EXPORT_FILE, ONNX_FILE

if TYPE_CHECKING:
    from orchestrator.registering import Registered
    from trainers.export.check import Parity

QUANTIZATIONS = ("none", "int8")


@dataclass(frozen=True)
class ExportArgs:
    model: str
    quantize: str = "none"
    output: Path | None = None
    register: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class Checked:
    """An export that passed its checks, with its figures."""

    data: bytes  # the .onnx file
    info: dict  # export.json
    footprints: list[Footprint]
    metric: str


def output_problem(output: Path | None, overwrite: bool) -> str | None:
    """Why ``--output`` cannot be written, or None."""
    if output is None:
        return None
    if output.exists() and not output.is_dir():
        return f"--output {output} is a file; name a folder"
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        return f"--output {output} is not empty; add --overwrite to replace its files"
    return None


def command(args: ExportArgs) -> tuple[int, dict[str, Any]]:
    """The whole command: its exit code (2: bad input, before any export; 1: a check failed)
    and what ``--json`` prints."""
    from orchestrator.exporting.source import SourceDataError, run_data
    from orchestrator.serving.model_source import ModelSourceError, parse_model_uri, resolve_bundle
    from trainers.families import family_of

    problem = output_problem(args.output, args.overwrite)
    if args.quantize not in QUANTIZATIONS:
        problem = f"--quantize {args.quantize}: use one of {', '.join(QUANTIZATIONS)}"
    if problem:
        return console.refused(EXIT_INVALID, problem)
    try:
        bundle = resolve_bundle(parse_model_uri(args.model))
        if family_of(bundle.spec.kind).export is None:
            raise ModelSourceError(
                f"{bundle.label}: model.kind {bundle.spec.kind} has no ONNX graph"
            )
        console.err.print(f"reading the test data of {bundle.label} again (its run's config) ...")
        dataset, split = run_data(bundle)
    except (ModelSourceError, SourceDataError) as exc:
        return console.refused(EXIT_INVALID, str(exc))
    from trainers.export.onnx_graph import ExportError

    try:
        checked = check_export(bundle, dataset, split, args.quantize)
    except ExportError as exc:
        return console.refused(EXIT_FAILED, f"{bundle.label} was not exported: {exc}")
    return EXIT_OK, finish(bundle, checked, args, dataset, split)


def check_export(bundle: ModelBundle, dataset, split, quantize: str) -> Checked:
    """Export, check and measure; ExportError names a failed check with both numbers."""
    import torch

    from orchestrator.registry import test_inputs
    from trainers.export.check import describe, int8_problem
    from trainers.export.onnx_graph import ExportError, quantize_int8, to_onnx
    from trainers.export.runtime import OnnxModel
    from trainers.models import predict
    from trainers.tasks import task_for

    torch.set_num_threads(1)  # every runtime is timed on one thread
    model, spec = bundle.load()
    rule = task_for(spec).score(spec)
    features, _ = test_inputs(spec, dataset, split)
    console.err.print(f"exporting {bundle.label} to ONNX ...")
    graph = to_onnx(model, spec)
    fp32 = OnnxModel(graph.data, spec).predict
    checked = fp32_parity(model, spec, fp32, features)

    def torch_predict(rows: np.ndarray):
        return predict(model, spec, rows)

    def of(runtime: str, predict_rows, data: bytes) -> Footprint:
        return measured(runtime, predict_rows, len(data), spec, dataset, split)

    footprints = [of("torch fp32", torch_predict, bundle.weights)]
    footprints.append(of("onnx fp32", fp32, graph.data))
    data = graph.data
    if quantize == "int8":
        data = quantize_int8(graph.data)
        footprints.append(of("onnx int8", OnnxModel(data, spec).predict, data))
        problem = int8_problem(rule, footprints[0].metric, footprints[-1].metric)
        if problem:
            raise ExportError(problem)
    info = describe(graph, spec, quantized=quantize, parity=checked)
    info |= {"source": bundle.uri, rule.metric: footprints[-1].metric}
    return Checked(data, info, footprints, rule.metric)


def fp32_parity(model, spec, graph, features: np.ndarray) -> Parity:
    """The graph's answers against PyTorch's on ``features``; ExportError when they differ by
    more than allowed."""
    from trainers.export.check import parity
    from trainers.export.onnx_graph import ExportError

    checked = parity(model, spec, graph, features)
    if not checked.ok:
        raise ExportError(f"its fp32 ONNX graph's answers differ from PyTorch's: {checked}")
    console.err.print(f"the fp32 graph matches PyTorch: {checked}")
    return checked


def finish(
    bundle: ModelBundle, checked: Checked, args: ExportArgs, dataset, split
) -> dict[str, Any]:
    """Write the folder, log the run, register; print the trade-off and where things are, and
    return them for ``--json``."""
    exported = checked.footprints[-1]
    quantized = str(checked.info["quantized"])
    with tempfile.TemporaryDirectory(prefix="redblue-export-") as scratch:
        folder = Path(scratch) / "final_model"
        write_folder(folder, bundle, checked)
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, args.output, dirs_exist_ok=True)
        from orchestrator.exporting.record import log_export

        metrics = {
            checked.metric: exported.metric,
            f"source_{checked.metric}": checked.footprints[0].metric,
        }
        metrics["parity_max_abs_diff"] = float(checked.info["parity_max_abs_diff"])
        for figure, prefix in zip(
            checked.footprints, ("torch", "onnx_fp32", "onnx_int8"), strict=False
        ):
            metrics |= figure.as_metrics(prefix)
        params = {
            "format": "onnx",
            "quantize": quantized,
            "exporter": str(checked.info["exporter"]),
            "opset": str(checked.info["opset"]),
            "source": bundle.uri,
        }
        run_id, model_uri = log_export(bundle, folder, checked.info, params, metrics)
        registered = (
            register(bundle, model_uri, quantized, folder, dataset, split)
            if args.register
            else None
        )
    header = [h.format(metric=checked.metric) for h in TABLE_HEADER]
    console.print_table(
        header, table_rows(checked.footprints, checked.metric), title=f"{bundle.label} exported"
    )
    rows = [("run_id", run_id), ("model_uri", model_uri)]
    if args.output:
        rows.append(("folder", f"{args.output} ({ONNX_FILE}, {EXPORT_FILE}, weights, config)"))
    if registered:
        rows.append(("registered", registered.line(bundle.name)))
    console.print_summary(rows, title="export")
    return {
        "run_id": run_id,
        "model_uri": model_uri,
        "folder": str(args.output) if args.output else None,
        "metrics": metrics,
        "registered": registered.fields() if registered else None,
    }


def write_folder(folder: Path, bundle: ModelBundle, checked: Checked) -> None:
    """A saved model folder that also holds the graph: weights, config, model.onnx, export.json
    (``redblue predict`` and the pyfunc model run the graph; ONNX Runtime alone needs the last
    two)."""
    from trainers.spec import CONFIG_FILE, WEIGHTS_FILE

    folder.mkdir(parents=True)
    (folder / WEIGHTS_FILE).write_bytes(bundle.weights)
    (folder / CONFIG_FILE).write_text(json.dumps(bundle.model_config, indent=2))
    (folder / ONNX_FILE).write_bytes(checked.data)
    (folder / EXPORT_FILE).write_text(json.dumps(checked.info, indent=2))


def register(
    bundle: ModelBundle, model_uri: str, quantized: str, folder: Path, dataset, split
) -> Registered:
    """A new version of the source's registered model, tagged, through the champion gate."""
    from mlflow.tracking import MlflowClient

    from orchestrator.exporting.record import source_tags
    from orchestrator.registering import register_and_promote
    from orchestrator.tracking import tracking_uri

    client = MlflowClient(tracking_uri())
    tags = source_tags(bundle, quantized)
    return register_and_promote(client, model_uri, bundle.name, tags, folder, dataset, split)
