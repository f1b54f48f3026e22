"""Compression and export: what each form of a model costs and scores, measured in one run.

For the digits MLP (configs/digits.yaml), a wide MLP on the same data (hidden [1024, 1024]), the
LSTM that reads digits row by row (configs/digits_rows.yaml) and the digits GAN's generator
(configs/digits_gan.yaml): size, p50 latency at batch 1 and 64, rows per second at batch 64
(one thread each, in this process) and the test metric on T, for PyTorch fp32, ONNX Runtime fp32
and int8, pruned by 50% and fine-tuned (a quarter of the teacher's epochs), and a
distilled student (with the same student trained without its teacher beside it; for digits also
on 10% of the training labels, the teacher having seen all of them). Models train on the real
loop (the configs' strategy, red-blue) with plain PyTorch engines on one worker, so the figures
compare forms of one model, not clusters. The GAN is exported only: pruning and distillation
take supervised models.

Run: ``python benchmarks/compression.py [--quick] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUDENTS = {"digits": {"hidden": [32]}, "wide": {"hidden": [128, 128]}, "lstm": {"hidden": 16}}


def trained(config: str, workdir: Path, quick: bool, changes: dict | None = None, **edits):
    """(folder of the final model, plan) of ``config`` trained on plain engines, one worker."""
    import torch

    from orchestrator.config import load_config
    from trainers.engine.plain import PlainEngine
    from trainers.loop.plan import plan_run
    from trainers.loop.trainer import Trainer, build_replicas
    from trainers.spec import FINAL_MODEL_DIR

    overrides = ["scaling.num_workers=1", *(f"{k}={json.dumps(v)}" for k, v in edits.items())]
    if quick:
        overrides.append("optim.epochs=3")
    cfg = load_config(REPO / "configs" / config, overrides)
    plan = plan_run(cfg)
    if changes:
        spec = changes.pop("spec", plan.spec)
        plan = dataclasses.replace(plan, spec=spec, **changes)
    checkpoints: list[Path] = []

    def report(metrics, checkpoint):
        if checkpoint is not None:
            checkpoints.append(Path(tempfile.mkdtemp(dir=workdir)))
            import shutil

            shutil.copytree(checkpoint, checkpoints[-1], dirs_exist_ok=True)

    def make(model, name, clock, optim):
        return PlainEngine(model, optim=optim, grad_accum_steps=1, clock=clock)

    torch.set_num_threads(2)
    started = time.perf_counter()
    Trainer(plan, build_replicas(plan, make), report).run()
    print(f"  trained {config} {edits or ''} in {time.perf_counter() - started:.0f} s", flush=True)
    return checkpoints[-1] / FINAL_MODEL_DIR, plan


def figures(folder: Path, plan, label: str, int8: bool) -> list[dict]:
    """The model's rows of the table: torch fp32, onnx fp32 (and int8)."""
    import torch

    from orchestrator.exporting.measure import measured
    from trainers.compress.pruning import parameter_count
    from trainers.export.onnx_graph import quantize_int8, to_onnx
    from trainers.export.runtime import OnnxModel
    from trainers.models import load_model, predict
    from trainers.spec import WEIGHTS_FILE

    torch.set_num_threads(1)
    model, spec = load_model(folder)
    graph = to_onnx(model, spec)
    forms = [("torch fp32", lambda rows: predict(model, spec, rows), (folder / WEIGHTS_FILE))]
    forms.append(("onnx fp32", OnnxModel(graph.data, spec).predict, graph.data))
    if int8:
        data = quantize_int8(graph.data)
        forms.append(("onnx int8", OnnxModel(data, spec).predict, data))
    rows = []
    for runtime, predict_rows, stored in forms:
        size = stored.stat().st_size if isinstance(stored, Path) else len(stored)
        figure = measured(runtime, predict_rows, size, spec, plan.dataset, plan.split)
        metric = figure.metric
        rows.append(
            {
                "model": label,
                "form": runtime,
                "parameters": parameter_count(model),
                "size_kib": size / 1024,
                "p50_ms_b1": figure.p50_ms[1],
                "p50_ms_b64": figure.p50_ms[64],
                "rows_per_s": figure.rows_per_s,
                "metric": plan.task.score(spec).metric,
                "value": metric,
            }
        )
        print(
            f"  {label:<28} {runtime:<10} {size / 1024:8.1f} KiB  p50 b1 "
            f"{figure.p50_ms[1]:.3f} ms  b64 {figure.p50_ms[64]:.3f} ms  "
            f"{figure.rows_per_s:11,.0f} rows/s  {rows[-1]['metric']} {metric:.4f}",
            flush=True,
        )
    return rows


def run(options) -> list[dict]:
    from trainers.compress.pruning import prune
    from trainers.compress.settings import Teacher
    from trainers.models import load_model
    from trainers.spec import CONFIG_FILE, WEIGHTS_FILE

    workdir = Path(tempfile.mkdtemp(prefix="redblue-compression-"))
    models = {
        "digits": ("digits.yaml", {}),
        "wide": ("digits.yaml", {"model.hidden": [1024, 1024]}),
        "lstm": ("digits_rows.yaml", {}),
    }
    table = []
    for name, (config, edits) in models.items():
        print(f"{name}: {config} {edits}", flush=True)
        folder, plan = trained(config, workdir, options.quick, **edits)
        table += figures(folder, plan, name, int8=True)
        model, spec = load_model(folder)
        pruned, state = prune(model, spec, 0.5)  # the MLPs' layers, the LSTM's state
        hidden = {"model.hidden": pruned.options["hidden"]}
        quarter = {"optim.epochs": max(1, plan.loop.optim.epochs // 4)}
        changes = {"spec": pruned, "initial_state": state}
        pruned_folder, _ = trained(config, workdir, options.quick, changes, **hidden, **quarter)
        table += figures(pruned_folder, plan, f"{name} pruned 50%", int8=False)
        teacher = Teacher(
            (folder / WEIGHTS_FILE).read_bytes(),
            json.loads((folder / CONFIG_FILE).read_text()),
            temperature=4.0,
            alpha=0.7,
        )
        student = {f"model.{k}": v for k, v in STUDENTS[name].items()}
        alone, _ = trained(config, workdir, options.quick, **student)
        table += figures(alone, plan, f"{name} student alone", int8=False)
        taught, _ = trained(config, workdir, options.quick, {"teacher": teacher}, **student)
        table += figures(taught, plan, f"{name} student distilled", int8=False)
        if name == "digits":  # where labels are few: 10% of P' (the teacher saw all of them)
            few = {**student, "data.train_fraction": 0.1}
            alone, _ = trained(config, workdir, options.quick, **few)
            table += figures(alone, plan, f"{name} student alone, 10% labels", int8=False)
            taught, _ = trained(config, workdir, options.quick, {"teacher": teacher}, **few)
            table += figures(taught, plan, f"{name} student distilled, 10% labels", int8=False)
    print("gan: digits_gan.yaml", flush=True)
    folder, plan = trained("digits_gan.yaml", workdir, options.quick)
    table += figures(folder, plan, "gan generator", int8=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs a model.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    options = parser.parse_args()
    table = run(options)
    if options.json:
        options.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
