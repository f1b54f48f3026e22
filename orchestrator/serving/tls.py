"""HTTPS for ``redblue deploy``: checking ``serve.tls_cert``/``serve.tls_key`` before Ray starts.

The checks run in the deploying process, on the files it will hand to the ingress: Serve's Python
proxy (uvicorn) reads them itself; for HAProxy, :func:`write_haproxy_pem` joins them into the
one file its ``crt`` option takes.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

ENCRYPTED_MARKERS = ("ENCRYPTED PRIVATE KEY", "Proc-Type: 4,ENCRYPTED")


def absolute(path: str) -> str:
    """``path`` with ``~`` expanded, relative to the working directory, made absolute (Ray's
    processes run elsewhere)."""
    return str(Path(os.path.expanduser(path)).resolve())


def tls_problem(cert: str, key: str) -> str | None:
    """Why ``cert`` and ``key`` cannot serve HTTPS, or None when they can: each must be a
    readable file, the key not encrypted (nothing could type its password), and the two must
    load together as a certificate chain and its private key."""
    for setting, path in (("serve.tls_cert", cert), ("serve.tls_key", key)):
        if not os.path.exists(path):
            return f"{setting}: {path} does not exist"
        if not os.path.isfile(path):
            return f"{setting}: {path} is not a file"
        if not os.access(path, os.R_OK):
            return f"{setting}: {path} is not readable by this user"
    try:
        key_text = Path(key).read_text(errors="replace")
    except OSError as exc:
        return f"serve.tls_key: cannot read {key}: {exc.strerror}"
    if any(marker in key_text for marker in ENCRYPTED_MARKERS):
        return (
            f"serve.tls_key: {key} is encrypted; give an unencrypted key "
            "(openssl pkey -in KEY -out PLAIN.key), kept mode 600"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return (
            f"serve.tls_cert {cert} and serve.tls_key {key} do not load as a PEM certificate "
            f"and its private key ({getattr(exc, 'reason', None) or exc})"
        )
    return None


def _no_password() -> str:
    raise ValueError("the key needs a password")


def is_self_signed(cert: str) -> bool:
    """Whether the first certificate in ``cert`` is self-signed (issuer == subject): clients must
    then be told to trust that file (``curl --cacert``, ``httpx verify=``)."""
    try:
        from cryptography import x509
    except ImportError:  # mlflow depends on it; without it, say how to trust it anyway
        return True
    first = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    return first.issuer == first.subject


def client_verify(cert: str) -> str | bool:
    """What an HTTPS client of this endpoint verifies against: the certificate file itself when
    it is self-signed, else the system's trusted CAs."""
    return cert if is_self_signed(cert) else True


def write_haproxy_pem(cert: str, key: str, destination: Path) -> Path:
    """Write the certificate chain and then its key into ``destination`` (mode 600), the single
    PEM file that HAProxy's ``bind ... ssl crt`` takes."""
    text = Path(cert).read_text().rstrip("\n") + "\n" + Path(key).read_text().rstrip("\n") + "\n"
    descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return destination
