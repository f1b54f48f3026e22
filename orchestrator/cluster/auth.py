"""Ray's token auth for the local cluster: the token file (mode 600) and the request header."""

from __future__ import annotations

import os
from pathlib import Path


def token_path() -> Path:
    """The file Ray reads its token from: ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``."""
    configured = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(configured).expanduser() if configured else Path.home() / ".ray" / "auth_token"


def auth_headers() -> dict[str, str]:
    token_file = token_path()
    token = os.environ.get("RAY_AUTH_TOKEN") or (
        token_file.read_text().strip() if token_file.is_file() else ""
    )
    return {"Authorization": f"Bearer {token}"} if token else {}


def ensure_token() -> Path | None:
    """Ray's token auth needs a token before the first node starts: make one if none exists
    (256 random bits, as ``ray get-auth-token --generate`` makes), created with mode 600; an
    existing token file is made mode 600 too. Returns the file, or None when the token comes
    from ``$RAY_AUTH_TOKEN``."""
    import secrets

    if os.environ.get("RAY_AUTH_TOKEN"):
        return None
    token_file = token_path()
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another `up` made it meanwhile
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
    token_file.chmod(0o600)
    return token_file
