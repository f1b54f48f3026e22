"""Serving: the Redblue endpoint on Ray Serve against a bare FastAPI + uvicorn server, same run.

Both serve the same API (``serve_apps.api``: key check, validation, audit log) and the same model;
the bare server runs it in one uvicorn process without Ray. For two models (the demo MLP, and a
wide MLP whose one-row forward pass costs about a millisecond) and 1, 8 and 32 closed-loop clients,
it reports requests/s and p50/p99 latency, then the ratios: Serve's added p50 latency at 1 client
and its throughput against the bare server at 32 clients. It also runs the wide model at 32
clients with batching off, reports the mean rows per forward pass (from the audit log), and, with
``--ingress haproxy``, the same again through Ray Serve's HAProxy ingress. ``--runtime
onnxruntime int8`` adds Serve replicas that run the model's ONNX graph in ONNX Runtime (fp32,
exported when deployed; int8, exported and quantized as ``redblue export --quantize int8``
does), against the same bare PyTorch server.

Goals (issue 4): added p50 latency at 1 client <= 2 ms; at 32 clients on the wide model,
throughput >= 1.0x the bare server. Issue 25: on the wide model at 32 clients, ONNX Runtime fp32
replicas >= 3x the bare server's throughput and int8 replicas >= 4x; added p50 at 1 client
<= 0.5 ms. Run: ``python benchmarks/serve_bench.py [--quick] [--ingress proxy haproxy]
[--runtime torch onnxruntime int8] [--wide WIDTH] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from orchestrator.environment import free_port  # noqa: E402

KEY = "benchmark-key"
FEATURES, CLASSES = 64, 10
DEMO_HIDDEN = [128, 64]
WIDE_CANDIDATES = [512, 768, 1024, 1536, 2048, 2304, 2560, 2816, 3072]  # dense: caches make steps
CLIENTS = (1, 8, 32)


# ---- models ---------------------------------------------------------------------------------


def mlp_spec(hidden: list[int]):
    from trainers.spec import ModelSpec

    names = [f"x{i}" for i in range(FEATURES)]
    classes = list(range(CLASSES))
    options = {"kind": "mlp", "hidden": hidden}
    return ModelSpec("mlp", "classification", FEATURES, CLASSES, options, names, classes)


def save_mlp(directory: Path, hidden: list[int]) -> Path:
    import torch

    from trainers.models import build_model, save_model

    torch.manual_seed(0)
    spec = mlp_spec(hidden)
    return save_model(directory, build_model(spec), spec)


def one_row_ms(hidden: list[int]) -> float:
    """Median time of a one-row forward pass (1 torch thread, as in a replica)."""
    import torch

    from trainers.models import build_model, predict

    torch.set_num_threads(1)
    spec = mlp_spec(hidden)
    model, row = build_model(spec), np.ones((1, FEATURES), np.float32)
    for _ in range(20):
        predict(model, spec, row)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        predict(model, spec, row)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def wide_hidden() -> tuple[list[int], float]:
    """The two-layer width whose one-row forward pass is closest to 1 ms here."""
    timed = [([w, w], one_row_ms([w, w])) for w in WIDE_CANDIDATES]
    return min(timed, key=lambda item: abs(item[1] - 1.0))


def int8_export(model_dir: Path, target: Path) -> Path:
    """``model_dir`` with its int8 graph beside the weights, as ``redblue export --quantize
    int8 --output`` writes it."""
    import shutil

    from trainers.export.check import describe, parity
    from trainers.export.onnx_graph import quantize_int8, to_onnx
    from trainers.export.runtime import EXPORT_FILE, ONNX_FILE, OnnxModel
    from trainers.models import load_model

    model, spec = load_model(model_dir)
    graph = to_onnx(model, spec)
    data = quantize_int8(graph.data)
    rows = np.random.default_rng(0).normal(size=(256, FEATURES)).astype(np.float32)
    checked = parity(model, spec, OnnxModel(data, spec).predict, rows)
    shutil.copytree(model_dir, target)
    (target / ONNX_FILE).write_bytes(data)
    info = describe(graph, spec, quantized="int8", parity=checked)
    (target / EXPORT_FILE).write_text(json.dumps(info))
    return target


def bundle_of(directory: Path, name: str):
    from serve_apps.model_bundle import ModelBundle

    return ModelBundle.from_directory(
        directory, uri=f"bench:{name}", name=name, version="1", run_id=None
    )


# ---- servers (each in its own process) ------------------------------------------------------


def serve_bare(model_dir: Path, port: int, audit: Path) -> None:
    import torch
    import uvicorn

    from serve_apps.guard import key_digest
    from serve_apps.local_server import local_api
    from serve_apps.settings import ServeSection

    torch.set_num_threads(1)
    api = local_api(bundle_of(model_dir, "bare"), ServeSection(), [key_digest(KEY)], audit)
    print("READY", flush=True)
    uvicorn.run(
        api,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


def serve_ray(
    model_dir: Path,
    port: int,
    audit: Path,
    ingress: str,
    batch: int,
    wait: float,
    autoscale: bool = False,
    replicas: int = 2,
    runtime: str = "torch",
):
    from orchestrator.environment import connect_ray, prepare_driver_env
    from orchestrator.serving.ingress import prepare_serve_env, stop_haproxy

    prepare_driver_env(None)
    haproxy = prepare_serve_env(ingress)
    from ray import serve

    from orchestrator.serving.application import DeployArgs, application
    from serve_apps.guard import key_digest
    from serve_apps.settings import AutoscalingSection, ServeSection

    settings = ServeSection(
        port=port,
        max_batch_size=batch,
        batch_wait_timeout_s=wait,
        num_replicas=replicas,
        runtime="torch" if runtime == "torch" else "onnxruntime",  # int8: the folder's graph
    )
    if autoscale:
        settings.autoscaling = AutoscalingSection(
            min_replicas=1, max_replicas=2, target_ongoing_requests=2
        )
    args = DeployArgs(
        model="bench",
        name="bench",
        serve=settings,
        key_digests=[key_digest(KEY)],
        audit_log=str(audit),
    )
    connect_ray(None, 2)
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    bundle = bundle_of(model_dir, "bench").for_runtime(settings.runtime)
    serve.run(application(args, bundle), name="bench", route_prefix="/")
    print("READY", flush=True)
    try:
        while True:  # with autoscaling: the replicas running now, for the scale-up time
            if autoscale:
                deployment = serve.status().applications["bench"].deployments["Predictor"]
                running = deployment.replica_states.get("RUNNING", 0)
                print(f"REPLICAS {running} {time.time()}", flush=True)
            time.sleep(0.25)
    except KeyboardInterrupt:
        serve.shutdown()
    finally:
        stop_haproxy(haproxy)


class Server:
    """A server process: started, waited for (READY and /healthz), stopped with SIGINT."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--server", *args, "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
        )

    def __enter__(self) -> Server:
        import httpx

        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("READY"):
                break
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become healthy")

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- load -----------------------------------------------------------------------------------


async def closed_loop(port: int, clients: int, warmup_s: float, measure_s: float) -> dict:
    """``clients`` clients, each sending one-row requests back to back; stats of the window.

    aiohttp, one keep-alive connection per client: its per-request cost is small next to the
    servers' (httpx's connection pool slows down past a few dozen concurrent requests).
    """
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/predict"
    body = json.dumps({"inputs": [np.linspace(0, 1, FEATURES).round(4).tolist()]}).encode()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    window = (start + warmup_s, start + warmup_s + measure_s)

    async def client() -> None:
        nonlocal failures
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
            while (now := time.perf_counter()) < window[1]:
                async with http.post(url, data=body) as response:
                    await response.read()
                    status = response.status
                done = time.perf_counter()
                if window[0] <= now:
                    if status == 200:
                        latencies.append(done - now)
                    else:
                        failures += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "rps": len(latencies) / measure_s,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "failures": failures,
    }


def mean_batch_rows(audit: Path) -> float:
    rows = [json.loads(line).get("batch_rows", 0) for line in audit.read_text().splitlines()]
    rows = [r for r in rows if r]
    return float(np.mean(rows)) if rows else 0.0


def measure(
    server_args: list[str],
    clients: tuple[int, ...],
    timing: tuple[float, float],
    workdir: Path,
    label: str,
) -> list[dict]:
    port = free_port()
    results = []
    audit = workdir / f"audit-{label}.jsonl"
    with Server([*server_args, "--audit", str(audit)], port):
        for count in clients:
            audit.write_text("")
            stats = asyncio.run(closed_loop(port, count, *timing))
            stats.update(server=label, batch_rows=mean_batch_rows(audit))
            print(
                f"  {label:<22} {count:>2} clients  {stats['rps']:7.0f} req/s  "
                f"p50 {stats['p50_ms']:6.2f} ms  p99 {stats['p99_ms']:6.2f} ms  "
                f"batch {stats['batch_rows']:4.1f} rows  failures {stats['failures']}",
                flush=True,
            )
            results.append(stats)
    return results


def scale_up_seconds(model_dir: Path, ingress: str, workdir: Path) -> float:
    """Seconds from the start of load (8 clients) until an autoscaled second replica serves."""
    import threading

    port = free_port()
    args = [
        "--model-dir",
        str(model_dir),
        "--kind",
        "serve",
        "--ingress",
        ingress,
        "--autoscale",
        "--audit",
        str(workdir / "audit-autoscale.jsonl"),
    ]
    with Server(args, port) as server:
        second: list[float] = []

        def watch() -> None:
            assert server.process.stdout is not None
            for line in server.process.stdout:
                parts = line.split()
                if parts[:1] == ["REPLICAS"] and int(parts[1]) >= 2 and not second:
                    second.append(float(parts[2]))

        threading.Thread(target=watch, daemon=True).start()
        started = time.time()
        asyncio.run(closed_loop(port, 8, 0.0, 30.0))
    return (second[0] - started) if second else float("nan")


def pick(results: list[dict], server: str, clients: int) -> dict:
    return next(r for r in results if r["server"] == server and r["clients"] == clients)


def run_benchmark(options) -> dict:
    timing = (1.0, 3.0) if options.quick else (2.0, 6.0)
    workdir = Path(tempfile.mkdtemp(prefix="redblue-serve-bench-"))
    if options.wide:
        hidden = [options.wide, options.wide]
        wide_ms = one_row_ms(hidden)
    else:
        hidden, wide_ms = wide_hidden()
    models = {"demo": DEMO_HIDDEN, "wide": hidden}
    report: dict = {
        "wide_hidden": hidden,
        "wide_one_row_ms": wide_ms,
        "demo_one_row_ms": one_row_ms(DEMO_HIDDEN),
        "models": {},
    }
    print(
        f"demo MLP {DEMO_HIDDEN}: one row {report['demo_one_row_ms']:.3f} ms; "
        f"wide MLP {hidden}: one row {wide_ms:.3f} ms"
    )
    for name, widths in models.items():
        if name not in options.models:
            continue
        model_dir = save_mlp(workdir / name / "final_model", widths)
        base = ["--model-dir", str(model_dir)]
        print(f"{name} model", flush=True)
        results = measure([*base, "--kind", "bare"], CLIENTS, timing, workdir, "bare")
        int8_dir = None
        labels = []
        for ingress in options.ingress:
            for runtime in options.runtime:
                if runtime == "int8" and int8_dir is None:
                    int8_dir = int8_export(model_dir, workdir / name / "int8")
                folder = int8_dir if runtime == "int8" else model_dir
                serve_args = [
                    *["--model-dir", str(folder), "--kind", "serve", "--ingress", ingress],
                    *["--batch", str(options.batch), "--wait", str(options.wait)],
                    *["--replicas", str(options.replicas), "--runtime", runtime],
                ]
                label = f"serve-{ingress}" + ("" if runtime == "torch" else f"-{runtime}")
                labels.append(label)
                results += measure(serve_args, CLIENTS, timing, workdir, label)
                if name == "wide" and runtime == "torch":
                    serve_args[serve_args.index("--batch") + 1] = "1"
                    results += measure(serve_args, (32,), timing, workdir, f"{label}-nobatch")
        summary = {}
        for label in labels:
            summary[label] = {
                "added_p50_ms_1_client": pick(results, label, 1)["p50_ms"]
                - pick(results, "bare", 1)["p50_ms"],
                "rps_ratio_32_clients": pick(results, label, 32)["rps"]
                / pick(results, "bare", 32)["rps"],
            }
            if any(r["server"] == f"{label}-nobatch" for r in results):
                summary[label]["batching_gain_32_clients"] = (
                    pick(results, label, 32)["rps"] / pick(results, f"{label}-nobatch", 32)["rps"]
                )
            print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in summary[label].items()))
        report["models"][name] = {"results": results, "summary": summary}
    if options.autoscale:
        model_dir = save_mlp(workdir / "autoscale" / "final_model", DEMO_HIDDEN)
        seconds = scale_up_seconds(model_dir, options.ingress[0], workdir)
        report["scale_up_s"] = seconds
        print(
            f"autoscaling 1 -> 2 replicas under 8 clients: second replica serving after "
            f"{seconds:.1f} s (upscale_delay_s 3)"
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 3 s per measurement.")
    parser.add_argument("--ingress", nargs="+", default=["proxy"], choices=["proxy", "haproxy"])
    parser.add_argument("--models", nargs="*", default=["demo", "wide"], choices=["demo", "wide"])
    parser.add_argument("--batch", type=int, default=64, help="max_batch_size for Serve.")
    parser.add_argument("--wait", type=float, default=0.0, help="batch_wait_timeout_s.")
    parser.add_argument("--replicas", type=int, default=2, help="Serve replicas (0.5 CPU each).")
    parser.add_argument(
        "--runtime",
        nargs="+",
        default=["torch"],
        choices=["torch", "onnxruntime", "int8"],
        help="What the Serve replicas run: the weights in torch, the fp32 ONNX graph or the "
        "int8 one in ONNX Runtime.",
    )
    parser.add_argument(
        "--wide",
        type=int,
        help="The wide MLP's width (both layers), instead of the candidate whose one-row forward "
        "pass is closest to 1 ms here.",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="Also time an autoscaled scale-up (as a server: deploy autoscaled).",
    )
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=["bare", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audit", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.server:
        if options.kind == "bare":
            serve_bare(options.model_dir, options.port, options.audit)
        else:
            serve_ray(
                options.model_dir,
                options.port,
                options.audit,
                options.ingress[0],
                options.batch,
                options.wait,
                options.autoscale,
                options.replicas,
                options.runtime[0],
            )
        return
    report = run_benchmark(options)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
