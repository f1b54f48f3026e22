"""Shared test settings: quiet, loopback-only defaults for every test process."""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# A streamed table's statistics are kept between runs (orchestrator/streaming/stats_cache.py):
# in the tests, in a folder of their own, never the user's cache.
if "REDBLUE_CACHE" not in os.environ:
    import tempfile

    os.environ["REDBLUE_CACHE"] = tempfile.mkdtemp(prefix="redblue-test-cache-")
