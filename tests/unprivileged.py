"""Calls made as a user that permission bits stop: tests may run as root, whom they do not stop.

:func:`call_unprivileged` runs a function in a new Python process; when the tests run as root,
that process imports what it needs, then becomes the user ``nobody`` before the call (the Python
executable may sit where ``nobody`` cannot reach, such as under /root, so it cannot be started
as ``nobody``). pytest's ``tmp_path`` lies in a folder only its owner enters: use
:func:`unprivileged_folder` for the files such a call works on.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

USER = "nobody"

CALL = """
import base64, os, pickle, pwd, sys
function, args, kwargs = pickle.loads(base64.b64decode(sys.argv[1]))  # imports, as before
if os.geteuid() == 0:
    user = pwd.getpwnam(sys.argv[3])
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
os.chdir(sys.argv[2])
try:
    outcome = ("returned", function(*args, **kwargs))
except Exception as exc:
    outcome = ("raised", exc)
print(base64.b64encode(pickle.dumps((os.geteuid(), outcome))).decode())
"""


@contextlib.contextmanager
def unprivileged_folder() -> Iterator[Path]:
    """A new folder under the system's temporary folder, which the user of
    :func:`call_unprivileged` can enter; removed after."""
    folder = Path(tempfile.mkdtemp(prefix="redblue-unprivileged-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def call_unprivileged(function: Callable[..., Any], *args: Any, cwd: Path, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` in a new process working in ``cwd``, as a user without root's
    override of permission bits: returns what it returns, raises what it raises (both pickled).

    When the tests run as root, ``cwd`` and everything in it are given to the user ``nobody``
    first (their modes kept), as if that user had made them."""
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam(USER)
        for path in [cwd, *cwd.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    call = base64.b64encode(pickle.dumps((function, args, kwargs))).decode()
    done = subprocess.run(
        [sys.executable, "-c", CALL, call, str(cwd), USER], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    euid, (kind, value) = pickle.loads(base64.b64decode(done.stdout.strip().splitlines()[-1]))
    assert euid != 0, "the call ran as root"
    if kind == "raised":
        raise value
    return value
