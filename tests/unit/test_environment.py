from pathlib import Path

from orchestrator.environment import RAY_JOB_ENV_VAR, prepare_driver_env, state_root


def test_state_root_is_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(RAY_JOB_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert state_root() == tmp_path


def test_state_root_survives_a_ray_jobs_temporary_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(RAY_JOB_ENV_VAR, "{}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_root() == Path(tmp_path) / ".redblue"
    assert state_root().is_dir()


def test_driver_env_keeps_telemetry_off_and_loopback(monkeypatch):
    for key in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.delenv(key, raising=False)
    prepare_driver_env(None)
    import os

    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
