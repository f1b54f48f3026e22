"""MLflow's basic-auth app for the tracking servers Redblue starts (``redblue ui --auth``, the
server of ``redblue cluster up``): its config file and the environment that turns it on.

The app keeps users in a SQLite file of its own beside its config (both mode 600 in a 0700
folder); the admin user is created at the first start with the password given, and every other
user gets no permission until an admin grants one (MLflow's ``/api/2.0/mlflow/users`` API or
``mlflow.server.auth.client``). Flask-WTF (``mlflow[auth]``) checks CSRF tokens with a secret
made at each start.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ADMIN = "admin"
PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"
MIN_PASSWORD_LENGTH = 12
APP_ARGUMENTS = ["--app-name", "basic-auth"]


def password_problem(password: str | None) -> str | None:
    """Why ``password`` cannot be the admin's password, or None."""
    if not password:
        return f"set ${PASSWORD_VARIABLE} to the admin password the MLflow server will require"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"${PASSWORD_VARIABLE} is shorter than {MIN_PASSWORD_LENGTH} characters"
    return None


def ui_problem(host: str, auth: bool) -> str | None:
    """Why ``redblue ui`` refuses ``host`` (and ``--auth``), or None."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not auth:
        return (
            f"--host {host}: the MLflow UI can change and delete every run and model, and would "
            "answer anyone who reaches it; add --auth (a login, password from "
            f"${PASSWORD_VARIABLE}), or keep 127.0.0.1 and reach it with ssh -L"
        )
    return password_problem(os.environ.get(PASSWORD_VARIABLE)) if auth else None


def new_password() -> str:
    return secrets.token_urlsafe(24)


def server_env(folder: Path, password: str) -> dict[str, str]:
    """The variables that make ``mlflow server|ui --app-name basic-auth`` keep its users in
    ``folder`` and create ``ADMIN`` with ``password`` on its first start."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    config = folder / "basic_auth.ini"
    text = (
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A login checked once per 5 minutes, not per request (each check is a PBKDF2 hash);
        # a changed password takes up to that long to apply.
        "auth_cache_ttl_seconds = 300\n"
    )
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        PASSWORD_VARIABLE: password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
    }


def write_secret(path: Path, value: str) -> Path:
    """``value`` in a new file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value)
    return path
