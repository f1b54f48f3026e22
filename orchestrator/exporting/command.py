"""``redblue export``'s command line (the work is :mod:`orchestrator.exporting.run`'s)."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator import console
from orchestrator.exit_codes import EXIT_INVALID


def export(
    model: str = typer.Argument(
        ..., help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model or models:/m-ID."
    ),
    export_format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: str = typer.Option(
        "none", "--quantize", help="none, or int8 (ONNX Runtime dynamic quantization)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write model.onnx, export.json and the weights here."
    ),
    register: bool = typer.Option(
        False, "--register", help="Register as a new version of MODEL's registered model."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files in --output."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object on stdout (run, model URI, figures); rest on stderr."
    ),
) -> None:
    """Export MODEL's fp32 weights to ONNX (optionally int8), checked against PyTorch on its
    test data before anything is written; logged as an MLflow run with the trade-off figures.

    Exit 1 when the fp32 graph's answers differ by more than 1e-4 or int8 loses more than 0.5
    points of accuracy (2% of MSE), with both numbers.
    """
    from orchestrator.environment import prepare_driver_env

    if as_json:
        console.use_json()
    prepare_driver_env(None)
    if export_format != "onnx":
        message = f"--format {export_format}: the one format is onnx"
        console.finish(*console.refused(EXIT_INVALID, message), as_json)
    from orchestrator.exporting.run import ExportArgs, command

    console.finish(*command(ExportArgs(model, quantize, output, register, overwrite)), as_json)
