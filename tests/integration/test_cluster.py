"""`redblue cluster up|status|down`: a 3-node Ray cluster and an MLflow server on 127.0.0.1;
training that spreads over its nodes and logs to its tracking server; jobs; losing nodes mid-run
(the run resumes on a spare node in the same MLflow run, or fails clearly when no node is left);
and `down` last. The tests share one cluster, in the order written: those that lose nodes come
after every test that needs all three, and `down` ends the module."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster_tools import (
    PLANTED_SECRETS,
    REDBLUE,
    config_file,
    group_of,
    local_cluster,
    redblue,
    the_only_run,
)
from tests.helpers import loopback_s3, write_partitioned_table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "redblue"


@pytest.fixture(scope="module")
def s3_env():
    """An S3-compatible object store on 127.0.0.1 holding one bucket, and the environment that
    reaches it, as a cloud node's would (pyarrow reads AWS_ENDPOINT_URL)."""
    with loopback_s3(BUCKET) as env:
        yield env


def s3_client(env: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def s3_checkpoints(env: dict, prefix: str) -> set[str]:
    """The Ray Train checkpoint folders under ``prefix``, as 'run/checkpoint_...'."""
    pages = s3_client(env).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    found = set()
    for key in (item["Key"] for page in pages for item in page.get("Contents", [])):
        parts = key.split("/")
        folders = [i for i, part in enumerate(parts[:-1]) if part.startswith("checkpoint_")]
        if folders:
            found.add("/".join(parts[folders[0] - 1 : folders[0] + 1]))
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_env):
    """A 3-node local cluster for this module, its nodes able to reach the S3 store: (working
    folder, env with its exports, the dashboard's URL)."""
    with local_cluster(tmp_path_factory.mktemp("cluster"), nodes=3, extra_env=s3_env) as started:
        yield started


def test_up_exports_loopback_addresses_and_status_lists_three_nodes(cluster):
    folder, env, _ = cluster
    assert env["RAY_ADDRESS"].startswith("127.0.0.2:")  # loopback: cluster.state.NODE_IP
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["RAY_AUTH_MODE"] == "token"
    status = redblue("cluster", "status", cwd=folder, env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("alive") == 3, status.stdout
    again = redblue("cluster", "up", cwd=folder, env=env)
    assert again.returncode == 2 and "already runs" in again.stderr


def test_the_token_file_is_private_and_each_process_recorded_with_its_start_time(cluster):
    import stat

    from orchestrator.cluster.auth import token_path

    folder, _, _ = cluster
    assert stat.S_IMODE(token_path().stat().st_mode) == 0o600
    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    assert all(p["started"] > 0 for p in state["processes"]), state["processes"]


def test_no_process_of_the_cluster_sees_the_shells_api_key_or_tokens(cluster):
    import psutil

    folder, _, _ = cluster
    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    roots = [psutil.Process(p["pid"]) for p in state["processes"]]
    processes = [*roots, *(child for root in roots for child in root.children(recursive=True))]
    assert len(processes) > 5
    for process in processes:
        environ = process.environ()
        assert not set(PLANTED_SECRETS) & set(environ), process.cmdline()[:3]
    assert all("AWS_ENDPOINT_URL" in p.environ() for p in roots)  # passed with --pass-env


def test_dashboard_job_api_and_mlflow_listen_on_loopback_and_jobs_need_the_token(cluster):
    import stat

    import httpx
    import psutil

    folder, env, dashboard = cluster
    ports = {int(dashboard.rsplit(":", 1)[1]), int(env["MLFLOW_TRACKING_URI"].rsplit(":", 1)[1])}
    listening = {
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports
    }
    assert {port for _, port in listening} == ports
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    refused = httpx.get(f"{dashboard}/api/jobs/", timeout=10)
    assert refused.status_code in (401, 403), refused.text[:300]
    # The tracking server requires the login `up` made (its password file private).
    search = f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search, timeout=10).status_code == 401
    login = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    assert httpx.get(search, auth=login, timeout=10).status_code == 200
    password_file = folder / ".redblue" / "cluster" / "mlflow-admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600


def test_a_missing_bucket_is_refused_before_ray_starts(cluster):
    folder, env, _ = cluster
    refused = redblue(
        "train",
        str(config_file(folder, "nobucket", "optim: {epochs: 1}\n")),
        "--set",
        "run.storage_path=s3://no-such-bucket/runs",
        cwd=folder,
        env=env,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "bucket no-such-bucket does not exist" in refused.stderr
    assert "Connecting to existing Ray cluster" not in refused.stderr


@pytest.fixture(scope="module")
def spread(cluster) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`redblue train` of the experiment ``spread`` over the cluster's 3 nodes (auto workers:
    one a node), its checkpoints in the S3 store (once for the module: the tests below use its
    run). The driver reports each import it makes (``PYTHONPROFILEIMPORTTIME``)."""
    folder, env, _ = cluster
    config = config_file(
        folder,
        "spread",
        "optim: {epochs: 2, batch_size: 96}\n"
        "scaling: {num_workers: auto, cpus_per_worker: auto}\n"
        f"run: {{storage_path: 's3://{BUCKET}/runs'}}\n",  # shared storage every node reaches
    )
    done = redblue("train", str(config), cwd=folder, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    lines = done.stderr.splitlines()  # in order, the imports' lines included
    said = "\n".join(line for line in lines if not line.startswith("import time:"))
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, said), lines


def test_training_spreads_over_the_nodes_and_logs_to_the_tracking_server(cluster, spread):
    _, env, _ = cluster
    spread, _ = spread
    assert spread.returncode == 0, spread.stderr[-3000:]
    assert s3_checkpoints(env, "runs/spread-")
    run = the_only_run(env, "spread")
    assert run.info.status == "FINISHED"
    assert run.data.tags["redblue.num_nodes"] == "3"
    assert "workers: 3, one worker a node (3 nodes), 1 CPU(s) each" in spread.stderr
    assert run.data.params["scaling.num_workers"] == "3"
    assert run.data.metrics["test_accuracy"] > 0.5


def test_the_driver_imports_torch_only_after_its_workers_start(spread):
    """On a running Ray the driver starts the workers without importing torch (0.9 s): they
    choose deepspeed.zero_stage: auto, and it loads torch for the model's report at the end."""
    _, lines = spread
    started = next(i for i, line in enumerate(lines) if line.startswith("the workers train at"))
    torch = [i for i, line in enumerate(lines) if re.search(r"\|\s+torch$", line)]
    assert torch and torch[0] > started, lines[started]


def test_deploy_to_the_cluster_returns_and_the_endpoint_answers(cluster, spread):
    """`redblue deploy` with RAY_ADDRESS deploys the model of the run ``spread`` trained on the
    cluster, and returns; the endpoint keeps answering after the command exited."""
    import httpx

    from orchestrator.environment import free_port

    folder, env, dashboard = cluster
    spread, _ = spread
    assert spread.returncode == 0, spread.stderr[-3000:]
    model = f"runs:/{the_only_run(env, 'spread').info.run_id}/model"
    port, key = free_port(), "a-test-key-for-the-cluster-deployment"
    sets = ["--set", f"serve.port={port}", "--set", "serve.num_replicas=1"]
    deployed = redblue("deploy", model, *sets, cwd=folder, env={**env, "REDBLUE_API_KEY": key})
    try:
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        url = f"http://127.0.0.1:{port}/v1/predict"
        body = {"inputs": [[0.0] * 64, [8.0] * 64]}
        answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
        assert httpx.post(url, json=body).status_code == 401
    finally:
        serve = str(Path(sys.executable).with_name("serve"))
        subprocess.run(
            [serve, "shutdown", "--address", dashboard, "--yes"],
            env=env,
            capture_output=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def s3_table(s3_env, tmp_path_factory) -> str:
    """A hive-partitioned Parquet folder in the S3 store: its URI."""
    folder = tmp_path_factory.mktemp("s3table")
    write_partitioned_table(folder, rows=3000)
    client = s3_client(s3_env)
    for path in sorted(folder.rglob("*.parquet")):
        client.upload_file(str(path), BUCKET, f"tables/{path.relative_to(folder)}")
    return f"s3://{BUCKET}/tables/"


def test_sweep_trials_stream_from_s3_spread_over_the_nodes_and_the_champion_predicts(
    cluster, s3_table
):
    """A hive-partitioned Parquet folder in the bucket streams into each trial's worker: Ray
    Data reads it on the cluster's nodes, and the driver reads its listing only and plans from
    one Ray Data pass on the cluster; the trial with the driver's seed plans from the
    statistics that pass kept, the other from a pass of its own. The champion then predicts
    every row of the bucket's table."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    folder, env, _ = cluster
    config = config_file(
        folder,
        "spreadsweep",
        f"data: {{source: '{s3_table}', label: label, streaming: on}}\n"
        "strategy: {eval_rows: 256}\n"
        "optim: {epochs: 2, batch_size: 96, lr: 0.003}\n"
        "scaling: {num_workers: 1, cpus_per_worker: 1}\n"
        f"run: {{storage_path: 's3://{BUCKET}/sweeps'}}\n"
        "sweep:\n"
        "  space: {seed: {grid: [0, 7]}}\n"
        "  num_samples: 1\n"
        "  max_concurrent: 2\n"
        "  scheduler: fifo\n",
    )
    swept = redblue("sweep", str(config), cwd=folder, env=env)
    assert swept.returncode == 0, swept.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("spreadsweep").experiment_id
    trials = client.search_runs([experiment], filter_string="tags.`redblue.kind` = 'trial'")
    assert len(trials) == 2
    (parent,) = client.search_runs([experiment], filter_string="tags.`redblue.kind` = 'sweep'")
    assert parent.data.params["data.streamed"] == "true"
    assert all(run.data.metrics["test_accuracy"] > 0.6 for run in trials)
    # Each trial's one worker needs a whole 1-CPU node: two trials at once take two nodes.
    nodes = {run.data.tags["redblue.node_ids"] for run in trials}
    assert len(nodes) == 2, nodes
    assert all(run.data.tags["redblue.num_nodes"] == "1" for run in trials)
    # In the bucket, only the best trial keeps its checkpoints; the best config is local.
    kept = {folder.split("/")[0] for folder in s3_checkpoints(env, "sweeps/")}
    assert len(kept) == 1, kept
    assert list(folder.glob("spreadsweep-sweep-*-best_config.yaml"))
    assert "streamed with Ray Data" in swept.stderr

    output = folder / "s3-predictions"
    predicted = redblue(
        "predict",
        "models:/spreadsweep@champion",
        s3_table,
        "--output",
        str(output),
        cwd=folder,
        env=env,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = pd.read_parquet(output)
    assert len(rows) == 3000 and set(rows["prediction"]) <= {"hi", "lo", "mid"}
    assert (rows["prediction"] == rows["label"]).mean() > 0.6


def job_folder(folder: Path, name: str) -> Path:
    """A folder to upload as a job's working directory, holding one small config."""
    jobs = folder / name
    jobs.mkdir()
    (jobs / "job.yaml").write_text(
        f"name: {name}\n"
        "optim: {epochs: 1, batch_size: 64}\n"
        "scaling: {num_workers: 2, cpus_per_worker: 1}\n"
        f"run: {{storage_path: {folder / 'shared'}}}\n"
    )
    return jobs


def test_redblue_submit_runs_a_job_follows_it_and_exits_with_its_outcome(cluster):
    folder, env, _ = cluster
    jobs = job_folder(folder, "submitted")
    done = redblue("submit", "--", "train", "job.yaml", cwd=jobs, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr and "training finished" in done.stdout
    run = the_only_run(env, "submitted")
    assert run.info.status == "FINISHED"
    # The run's page once, from the summary (MLflow's own line came at every end of a run).
    page = f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"run page: {env['MLFLOW_TRACKING_URI']}{page}" in done.stdout
    assert "View run" not in done.stdout


def test_a_job_that_fails_exits_1_with_its_message(cluster):
    folder, env, _ = cluster
    jobs = job_folder(folder, "failedjob")
    (jobs / "rows.csv").write_text("a,b,label\n1.0,2.0,0\ninf,1.0,1\n" + "0.5,0.5,1\n" * 20)
    done = redblue(
        "submit",
        "--",
        "train",
        "job.yaml",
        "--set",
        "data.source=rows.csv",
        "--set",
        "data.label=label",
        cwd=jobs,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "FAILED" in done.stderr
    assert "infinite values in rows.csv" in done.stdout, done.stdout[-3000:]  # the job's own log


def test_submit_no_follow_returns_at_once_and_names_the_job(cluster):
    """``--no-follow`` submits and returns 0 at once with the command that follows the job; the
    job runs on to its end."""
    folder, env, dashboard = cluster
    jobs = job_folder(folder, "nofollow")
    done = redblue(
        "submit",
        "--no-follow",
        "--",
        "train",
        "job.yaml",
        "--set",
        "optim.epochs=0.5",
        cwd=jobs,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (job_id,) = re.findall(r"ray job logs --follow (\S+)", done.stderr)
    ray_cli = str(Path(sys.executable).with_name("ray"))

    def job(*args: str) -> str:
        asked = [ray_cli, "job", *args, job_id, "--address", dashboard]
        return subprocess.run(asked, env=env, capture_output=True, text=True, timeout=60).stdout

    deadline = time.time() + 180
    while time.time() < deadline and not re.search(r"failed|succeeded|stopped", job("status")):
        time.sleep(1.0)
    assert "succeeded" in job("status")
    assert "training finished" in job("logs")
    assert the_only_run(env, "nofollow").info.status == "FINISHED"


def test_a_stopped_job_exits_130_and_its_run_is_marked_killed(cluster):
    from mlflow.tracking import MlflowClient

    folder, env, _ = cluster
    jobs = job_folder(folder, "stoppedjob")
    submitting = subprocess.Popen(
        [REDBLUE, "submit", "--", "train", "job.yaml", "--set", "optim.epochs=200"],
        cwd=jobs,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    deadline = time.time() + 300
    while time.time() < deadline and submitting.poll() is None:  # until it trains
        experiment = client.get_experiment_by_name("stoppedjob")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if runs and "round" in runs[0].data.metrics:
            break
        time.sleep(1.0)
    submitting.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = submitting.communicate(timeout=120)
    assert submitting.returncode == 130, err[-3000:]
    assert "STOPPED" in err
    assert the_only_run(env, "stoppedjob").info.status == "KILLED"


def test_plain_ray_job_submit_logs_to_the_clusters_tracking_server(cluster):
    """Ray's own CLI, no runtime env: the job's driver finds the cluster's MLflow server in the
    head node's environment, as on a real cluster. The config is the README's 3-node example,
    whose sweep space a 3-worker sweep would refuse: training only warns."""
    folder, env, dashboard = cluster
    jobs = job_folder(folder, "plainjob")
    (jobs / "job.yaml").write_text(
        "name: plainjob\n"
        "optim: {epochs: 1, batch_size: 96}\n"
        "scaling: {num_workers: 3, cpus_per_worker: 1}\n"
        f"run: {{storage_path: {folder / 'shared'}}}\n"
        "sweep: {space: {optim.batch_size: {choice: [32, 64, 128]}}}\n"
    )
    shell = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    command = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--working-dir", "."]
    command += ["--address", dashboard, "--", "redblue", "train", "job.yaml"]
    done = subprocess.run(command, cwd=jobs, env=shell, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "`redblue sweep` would refuse the sweep section" in output
    assert env["MLFLOW_TRACKING_URI"] in output and "sqlite:" not in output, output[-3000:]
    run = the_only_run(env, "plainjob")  # asked of the cluster's server over HTTP
    assert run.info.status == "FINISHED"
    assert run.data.tags["redblue.num_nodes"] == "3"


# Losing nodes: these run after every test above that needs all three nodes.


def worker_node_raylets(folder: Path) -> dict[int, str]:
    """{raylet pid: role} of the worker nodes (not the head, which holds the drivers)."""
    import psutil

    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    roles = {p["pid"]: p["role"] for p in state["processes"] if p["role"].startswith("worker")}
    found = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "raylet" and group_of(process) in roles:
            found[process.pid] = roles[group_of(process)]
    return found


def raylet_of_a_train_worker(folder: Path) -> tuple[int, str] | None:
    """A worker node's raylet that hosts one of the run's Ray Train workers."""
    import psutil

    raylets = worker_node_raylets(folder)
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "RayTrainWorker" in " ".join(process.info["cmdline"] or []):
                parent = process.ppid()
                if parent in raylets:
                    return parent, raylets[parent]
        except psutil.Error:
            continue
    return None


def kill_a_node_after_first_checkpoint(folder: Path, run_folder: str, timeout: float = 300):
    """SIGKILL the raylet of a worker node running a train worker, once a checkpoint exists.
    Returns the role of the node killed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        victim = raylet_of_a_train_worker(folder)
        if victim and list((folder / "shared").glob(f"{run_folder}-*/checkpoint_*")):
            time.sleep(1.0)  # let the checkpoint's registration complete
            os.kill(victim[0], signal.SIGKILL)
            return victim[1]
        time.sleep(0.2)
    raise AssertionError("no checkpoint with a train worker on a worker node appeared")


def node_loss_config(folder: Path, name: str, epochs: int, start_timeout_s: float) -> Path:
    return config_file(
        folder,
        name,
        f"optim: {{epochs: {epochs}, batch_size: 64}}\n"
        "checkpoint: {every_rounds: 2}\n"
        "scaling: {num_workers: 2, cpus_per_worker: 1}\n"
        f"run: {{max_failures: 1, start_timeout_s: {start_timeout_s}, "
        f"storage_path: {folder / 'shared'}}}\n",
    )


def train_while_killing_a_node(cluster, name: str, epochs: int, start_timeout_s: float):
    folder, env, _ = cluster
    config = node_loss_config(folder, name, epochs, start_timeout_s)
    training = subprocess.Popen(
        [REDBLUE, "train", str(config)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        killed = kill_a_node_after_first_checkpoint(folder, name)
        out, err = training.communicate(timeout=600)
    finally:
        training.kill()
    return killed, training.returncode, out, err, the_only_run(env, name)


@pytest.fixture(scope="module")
def node_lost(cluster):
    """Training ``nodeloss`` with 2 workers on the 3 nodes while a worker node is killed (once
    for the module; the cluster keeps 2 nodes after): (role of the node killed, exit code,
    stdout, stderr, the MLflow run)."""
    return train_while_killing_a_node(cluster, "nodeloss", epochs=30, start_timeout_s=120)


def test_losing_a_node_resumes_on_the_spare_node_in_the_same_run(node_lost):
    """3 nodes, 2 workers: a worker node's raylet dies mid-run; the run goes on on the spare."""
    killed, code, out, err, run = node_lost
    assert code == 0, f"{killed} killed; {err[-3000:]}"
    assert "workers restarted (restart 1); resuming at round" in err, err[-6000:]
    assert "resuming at round 1\n" not in err  # it continued from a checkpoint
    assert run.info.status == "FINISHED"  # one run (finished_run finds exactly one)
    assert run.data.tags["redblue.restarts"] == "1"
    assert run.data.metrics["restarts"] == 1
    assert run.data.metrics["test_accuracy"] > 0.8
    assert "training finished" in out


@pytest.mark.usefixtures("node_lost")
def test_losing_more_nodes_than_can_be_replaced_fails_the_run_clearly(cluster):
    """2 nodes left (``node_lost``), 2 workers: another node lost leaves no room; the run
    fails, recorded."""
    killed, code, _, err, run = train_while_killing_a_node(
        cluster, "toomany", epochs=40, start_timeout_s=8
    )
    assert code == 1, f"{killed} killed; {err[-3000:]}"
    assert "the cluster cannot hold the worker group after a failure" in err
    # Ray echoes the surviving worker's own error above; the command ends with one clear line.
    assert "cannot hold the worker group" in err.strip().splitlines()[-1]
    assert run.info.status == "FAILED"
    assert "cannot hold the worker group" in run.data.tags["redblue.error"]


def test_down_stops_exactly_what_up_started(cluster):
    """Last in this module (it stops the module's cluster, which has lost two nodes by now):
    every process `up` started is gone, and nothing else was touched."""
    import psutil

    folder, env, _ = cluster
    state = json.loads((folder / ".redblue" / "cluster.json").read_text())
    groups = {p["pid"] for p in state["processes"]}
    members = [p for p in psutil.process_iter() if group_of(p) in groups]
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        down = redblue("cluster", "down", cwd=folder, env=env)
        assert down.returncode == 0, down.stderr
        alive = [p.pid for p in members if p.is_running() and p.status() != "zombie"]
        assert not alive, alive
        assert bystander.poll() is None  # nothing else was touched
        assert not (folder / ".redblue" / "cluster.json").exists()
    finally:
        bystander.kill()
