"""The README stays short and the docs stay true: the configuration reference is generated from
the schema, and every relative link in README.md and docs/ points at a file that exists."""

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from orchestrator.config_reference import COMMAND, render

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_configuration_page_is_generated_from_the_schema():
    page = (DOCS / "configuration.md").read_text()
    assert page == render(), f"docs/configuration.md is stale; regenerate it: {COMMAND}"


def test_every_relative_link_resolves():
    missing = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor in the same page
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, missing


def test_readme_links_into_docs_and_every_page_is_linked():
    readme = (ROOT / "README.md").read_text()
    linked = {target.split("#", 1)[0] for target in LINK.findall(readme)}
    pages = {f"docs/{page.name}" for page in DOCS.glob("*.md")}
    assert pages and pages <= linked, pages - linked


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    head = "\n".join(lines[:30])
    assert "make demo" in head and "make test" in head


def test_docs_hold_no_history():
    pattern = re.compile(
        r"\b(this|earlier|later|previous|next|last|first|second|third) sessions?\b", re.IGNORECASE
    )
    for page in PAGES:
        assert not pattern.search(page.read_text()), page


class _Mlp(BaseModel):
    kind: Literal["mlp"] = Field("mlp", description="Model family.")
    hidden: list[int] = Field(default_factory=lambda: [8], description="Widths.")


class _Linear(BaseModel):
    kind: Literal["linear"] = Field("linear", description="Model family.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty.")


class _Config(BaseModel):
    name: str = Field("x", description="A name.")
    model: _Mlp | _Linear = Field(
        default_factory=_Mlp, discriminator="kind", description="The model."
    )


def test_a_union_of_sections_renders_one_table_per_kind():
    page = render(_Config)
    assert "## `model` with `kind:` `mlp`" in page
    assert "## `model` with `kind:` `linear`" in page
    assert "| `model.l2` | number, >= 0.0 | `0.0` | L2 penalty. |" in page
    assert "| `name` | string | `x` | A name. |" in page


HELP_COMMANDS = [
    ["train"], ["sweep"], ["compare"], ["deploy"], ["predict"], ["compress"], ["export"],
    ["ui"], ["submit"], ["cluster", "up"], ["cluster", "status"], ["cluster", "down"],
    ["audit", "verify"], ["validate"], ["promote"], ["rollback"], ["schema"],
]  # fmt: skip


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_help_texts_read_without_broken_lines_at_80_columns(command):
    """A description's lines are filled to the width before they wrap (a docstring's own line
    breaks are not kept), and nothing is lost to markup (`*.key` stays `*.key`)."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, color=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    text = [line.rstrip() for line in lines if line.strip() and line.lstrip()[0] not in "│╭╰"]
    for line, following in zip(text[1:], text[2:], strict=False):
        if not following.startswith(" Usage") and not line.endswith((".", ":", ")")):
            assert len(line) >= 60, (line, following)
    assert "*.key" in result.output or command != ["submit"]


def test_version_names_redblue_and_the_libraries_it_is_tied_to():
    from importlib import metadata

    from typer.testing import CliRunner

    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith(f"redblue {metadata.version('redblue')} (torch ")
    assert f"ray {metadata.version('ray')}" in result.output


# `redblue [global options] COMMAND [SUBCOMMAND] ...` up to a comment, a pipe or the code's end.
MENTION = re.compile(
    r"(?m)(?:^\s*|`|\$\(|\| |&& |-- )redblue((?:\s+(?:-v|--log-level\s+\w+))*)\s+([a-z][a-z-]*)"
    r"([^`#|\n]*)"
)
CONFIG_KEY = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+)(?:[:=][^`]*)?`")
# Named like config keys but not config keys: what a run logs about its data, and file names.
LOGGED_NOT_CONFIG = ("data.dropped_labels", "data.dropped_rows", "data.rows.", "data.streamed")
FILE_SUFFIXES = (".onnx", ".json", ".csv", ".yaml", ".png", ".parquet", ".safetensors", ".txt")
CONFIG_FILE = re.compile(r"\bconfigs/[\w-]+\.yaml")


def mentioned_commands() -> list[tuple[str, str, list[str]]]:
    """(page, command path, its --options) of every ``redblue ...`` in the docs; a submit's
    command after ``--`` counts as its own mention."""
    found = []
    for page in PAGES:
        for match in MENTION.finditer(page.read_text()):
            name, rest = match.group(2), match.group(3)
            if name == "submit" and " -- " in f"{rest} ":
                rest, _, inner = f"{rest} ".partition(" -- ")
                found += [(page.name, words[0], options(" ".join(words[1:])))
                          for words in [inner.split()] if words]  # fmt: skip
            path = name
            if name in ("cluster", "audit") and rest.split():
                path = f"{name} {rest.split()[0].strip('),.;')}"
            found.append((page.name, path, options(rest)))
    return found


def options(text: str) -> list[str]:
    return [word.split("=")[0] for word in text.split() if word.startswith("--") and word != "--"]


def test_every_command_and_option_the_docs_mention_exists():
    """`redblue COMMAND --option` in README.md and docs/: each command is one of the CLI's, and
    each option one it takes."""
    import click  # noqa: F401  # for the annotation below
    import typer

    from orchestrator.cli import app

    root = typer.main.get_command(app)
    missing = []
    for page, path, opts in mentioned_commands():
        command: click.Command | None = root
        for word in path.split():
            command = getattr(command, "commands", {}).get(word)
        if command is None:
            missing.append(f"{page}: redblue {path}")
            continue
        known = {opt for param in command.params for opt in param.opts} | {"--help"}
        missing += [f"{page}: redblue {path} {opt}" for opt in opts if opt not in known]
    assert not missing, missing


def test_every_config_key_and_file_the_docs_mention_exists():
    """A dotted config key in backticks (`optim.lr`, `sweep.metric: val_loss`) is a key of the
    schema (of some model family, for model.*), and every configs/NAME.yaml is shipped."""
    from orchestrator.config import RedblueConfig
    from orchestrator.config_reference import _sections_in

    def has(models, parts: list[str]) -> bool:
        if not parts:
            return True
        for model in models:
            field = model.model_fields.get(parts[0])
            if field is None:
                continue
            inner = _sections_in(field.annotation)
            if not inner or has(inner, parts[1:]) or len(parts) == 1:
                return True
        return False

    sections = set(RedblueConfig.model_fields)
    unknown, absent = [], []
    for page in PAGES:
        text = page.read_text()
        for key in CONFIG_KEY.findall(text):
            parts = key.split(".")
            if key.startswith(LOGGED_NOT_CONFIG) or key.endswith(FILE_SUFFIXES):
                continue
            if parts[0] in sections and not has([RedblueConfig], parts):
                unknown.append(f"{page.name}: {key}")
        absent += [
            f"{page.name}: {p}" for p in CONFIG_FILE.findall(text) if not (ROOT / p).exists()
        ]
    assert not unknown, unknown
    assert not absent, absent
