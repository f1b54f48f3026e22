"""``redblue audit verify LOG``: check the hash chains of a serving audit log and its rotated
files (the checking is :func:`serve_apps.audit_chain.verify`'s; this prints it)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from orchestrator import console
from orchestrator.exit_codes import EXIT_FAILED, EXIT_INVALID
from serve_apps.audit_chain import Verdict, log_files, verify

audit_app = typer.Typer(no_args_is_help=True, help="The serving audit log (serve.audit_log).")


@audit_app.command("verify")
def audit_verify(
    log: Path = typer.Argument(..., help="The audit log, e.g. logs/serve-audit.jsonl."),
) -> None:
    """Check LOG's hash chains, from its oldest rotated file (LOG.N ... LOG.1) to LOG.

    Exits 0 when every line checks out, 1 at the first line that does not (file, line, writer,
    why), 2 when LOG is not a file.
    """
    if not log.is_file():
        why = "is not a file" if log.exists() else "no such audit log file"
        console.print_error(escape(f"{log}: {why} (serve.audit_log names the log)"))
        raise typer.Exit(EXIT_INVALID)
    try:
        files = log_files(log)
        verdict = verify(files)
    except OSError as exc:
        console.print_error(escape(f"{exc.filename or log}: cannot read: {exc.strerror}"))
        raise typer.Exit(EXIT_INVALID) from None
    broken = verdict.broken
    if broken is not None:
        console.print_error(
            escape(
                f"{broken.file}:{broken.line}: writer {broken.writer or '-'}: {broken.reason} "
                f"({verdict.lines} lines checked before it)"
            )
        )
        raise typer.Exit(EXIT_FAILED)
    for line in report(verdict, len(files)):
        console.out.print(escape(line))


def report(verdict: Verdict, files: int) -> list[str]:
    """What an intact log holds: a line per writer first seen mid-chain, each writer's last seq
    and hash (worth keeping elsewhere: a rewritten file cannot match them), and the total."""
    lines = [
        f"writer {writer} starts mid-chain at seq {chain.first_seq} ({chain.anchor}): its "
        "earlier lines are not in these files (rotated away, or removed)"
        for writer, chain in verdict.chains.items()
        if chain.anchor
    ]
    lines += [
        f"writer {writer}: seq {chain.first_seq}-{chain.seq}, last hash {chain.hash}"
        for writer, chain in verdict.chains.items()
    ]
    lines.append(
        f"{verdict.lines} lines, {len(verdict.chains)} writers, chain intact ({files} file(s))"
    )
    return lines
