#!/bin/sh
# The "HAProxy binary" Redblue gives Ray Serve (RAY_SERVE_HAPROXY_BINARY_PATH), on a local deploy
# and in the cluster image alike. Ray runs it as HAProxy (-db -f CONFIG ...); it runs
# haproxy_launcher.py (HAProxy dies with the Ray actor that starts it, $PPID), which runs
# haproxy_rewrite.py (the config made safe, then the real HAProxy exec'd, same pid).
# REDBLUE_HAPROXY_PYTHON: the Python to use (default: python3 on PATH).
python=$(command -v "${REDBLUE_HAPROXY_PYTHON:-python3}") || {
    echo "redblue haproxy wrapper: no Python (${REDBLUE_HAPROXY_PYTHON:-python3})" >&2
    exit 127
}
here=$(dirname "$0")
exec "$python" -I "$here/haproxy_launcher.py" "$PPID" "$python" -I "$here/haproxy_rewrite.py" "$@"
