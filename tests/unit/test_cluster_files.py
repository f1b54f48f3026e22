"""The launch files in cluster/ parse, and agree with the code: image, entrypoints, ports, env."""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import app as cli_app
from orchestrator.serving.application import IMPORT_PATH, DeployArgs
from serve_apps.guard import key_digest
from serve_apps.settings import ServeSection

ROOT = Path(__file__).parents[2]
CLUSTER = ROOT / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
VERSION = metadata.version("redblue")
IMAGE = f"redblue:{VERSION}"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def walk(node, key: str):
    """Every value stored under ``key`` anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from walk(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def kuberay(name: str) -> dict:
    (document,) = documents(CLUSTER / "kuberay" / name)
    return document


def test_every_launch_file_parses():
    assert {p.name for p in YAML_FILES} >= {
        "ray-cluster.yaml",
        "raycluster.yaml",
        "rayjob-sweep.yaml",
        "rayservice.yaml",
    }
    for path in YAML_FILES:
        assert documents(path), path


def test_image_is_built_from_rays_base_image_of_the_pinned_ray():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)", dockerfile, re.M)
    assert base and base.group(1).startswith(metadata.version("ray") + "-") and "gpu" in base[1]
    assert f"-t {IMAGE} " in dockerfile
    assert "python -m trainers.prebuild" in dockerfile
    for package in ("orchestrator", "trainers", "serve_apps", "configs"):
        assert f"COPY --chown=ray:users {package} " in dockerfile


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_file_runs_this_versions_image_with_token_auth(path):
    tree = documents(path)
    images = set(walk(tree, "image"))
    assert images == {IMAGE}, images
    text = path.read_text()
    assert "RAY_AUTH_MODE" in text and "token" in text
    for version in walk(tree, "rayVersion"):
        assert version == metadata.version("ray")


def test_kuberay_pods_keep_services_internal_and_share_checkpoints():
    for name in ("raycluster.yaml", "rayservice.yaml"):
        tree = kuberay(name)
        assert set(walk(tree, "serviceType")) == {"ClusterIP"}
        env_names = {e["name"] for env in walk(tree, "env") for e in env}
        assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"} <= env_names
        ports = {p["containerPort"] for ports in walk(tree, "ports") for p in ports}
        assert {6379, 8265, ServeSection().port} <= ports
        assert "/mnt/shared" in set(walk(tree, "mountPath"))


def test_rayjob_entrypoint_is_a_redblue_command_on_a_shipped_config():
    spec = kuberay("rayjob-sweep.yaml")["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[0] == "redblue"
    assert words[1] in {
        command.name or command.callback.__name__ for command in cli_app.registered_commands
    }
    config = Path(words[2].removeprefix("/home/ray/redblue/"))
    assert (ROOT / config).is_file()
    assert "run.storage_path=/mnt/shared/ray_results" in words
    assert (
        spec["clusterSelector"]["ray.io/cluster"] == kuberay("raycluster.yaml")["metadata"]["name"]
    )


def test_rayservice_serve_config_is_what_redblue_deploy_emits():
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(kuberay("rayservice.yaml")["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    (application,) = config["applications"]
    assert application["import_path"] == IMPORT_PATH
    args = application["args"]
    with pytest.raises(ValueError, match="key_digests"):
        DeployArgs.model_validate(args)  # the placeholder never passes as a key digest
    DeployArgs.model_validate({**args, "key_digests": [key_digest("a key")]})
    assert config["http_options"]["port"] == args["serve"]["port"] == ServeSection().port


def test_ray_up_file_keeps_dashboard_and_mlflow_on_loopback():
    tree = documents(CLUSTER / "ray-cluster.yaml")[0]
    head = " ".join(tree["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "mlflow server --host 127.0.0.1 --port 5000" in head
    assert "postgresql" not in head and "~/.redblue/mlflow-backend-uri" in head
    assert "--artifacts-destination s3://" in head
    options = " ".join(tree["docker"]["run_options"])
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in options
    assert "/mnt/shared" in options and "RAY_SERVE_ENABLE_HA_PROXY=1" in options
    assert tree["available_node_types"]["gpu_worker"]["max_workers"] >= 1


def test_local_cluster_nodes_carry_its_tracking_uri_like_the_launch_files(monkeypatch, tmp_path):
    """`redblue cluster up` starts the MLflow server first and gives every Ray node (whose
    environment a job's driver inherits) the server's MLFLOW_TRACKING_URI."""
    from orchestrator.cluster import local as local_cluster
    from orchestrator.cluster.state import Process

    started: list[tuple[str, dict]] = []

    def spawn(role, command, folder, env):
        started.append((role, env))
        return Process(role, 0, command, "")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # a stale export
    monkeypatch.setattr(local_cluster, "_spawn", spawn)
    monkeypatch.setattr(local_cluster, "_wait_for_nodes", lambda state, count: None)
    monkeypatch.setattr(local_cluster, "_wait_for_mlflow", lambda state: None)
    state = local_cluster.up(3, 1.0, lambda line: None)
    assert [role for role, _ in started] == ["mlflow", "head", "worker-1", "worker-2"]
    assert "MLFLOW_TRACKING_URI" not in started[0][1]
    for _, env in started[1:]:
        assert env["MLFLOW_TRACKING_URI"] == state.tracking_uri


def test_the_grafana_dashboard_queries_the_metrics_replicas_export():
    """Ray exports a metric NAME as ray_NAME (histograms as ray_NAME_bucket/_sum/_count)."""
    import re

    from serve_apps.monitor import ServeMetrics

    metrics = ServeMetrics()
    names = {f"ray_{m._name}" for m in vars(metrics).values() if hasattr(m, "_name")}
    dashboard = (CLUSTER / "grafana" / "redblue-serving.json").read_text()
    queried = set(re.findall(r"ray_redblue_[a-z_]+", dashboard))
    exported = names | {f"{n}_{part}" for n in names for part in ("bucket", "sum", "count")}
    assert queried and queried <= exported, queried - exported


def test_every_kuberay_pod_that_tracks_runs_logs_in_to_the_tracking_server():
    """A pod given MLFLOW_TRACKING_URI also gets the server's login from the `mlflow` secret
    (required keys: without them the pod does not start)."""

    def env_lists(node):
        if isinstance(node, dict):
            if isinstance(node.get("env"), list):
                yield node["env"]
            for value in node.values():
                yield from env_lists(value)
        elif isinstance(node, list):
            for value in node:
                yield from env_lists(value)

    checked = 0
    for manifest in sorted((CLUSTER / "kuberay").glob("*.yaml")):
        for env in env_lists(yaml.safe_load(manifest.read_text())):
            names = {item["name"]: item for item in env}
            if "MLFLOW_TRACKING_URI" not in names:
                continue
            for variable, key in (("USERNAME", "username"), ("PASSWORD", "password")):
                source = names[f"MLFLOW_TRACKING_{variable}"]["valueFrom"]["secretKeyRef"]
                assert source == {"name": "mlflow", "key": key}, (manifest.name, source)
            checked += 1
    assert checked >= 2  # the RayCluster's pods and the RayService's
