import json
from pathlib import Path

import pytest
import yaml

from orchestrator.config import ConfigError, RedblueConfig, apply_override, load_config

CONFIGS_DIR = Path(__file__).parents[2] / "configs"
CONFIGS = sorted(CONFIGS_DIR.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name
    assert load_config(path, for_sweep=True).sweep == cfg.sweep  # and sweeps as shipped


def test_one_config_per_bundled_data_set():
    sources = {load_config(p).data.source for p in CONFIGS}
    assert {"digits", "breast_cancer", "wine", "diabetes"} <= sources


def test_every_field_is_described():
    def check(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                check(annotation)

    check(RedblueConfig)


def test_overrides_apply_in_order_and_parse_yaml(tmp_path):
    path = write(tmp_path, "name: x\n")
    cfg = load_config(
        path, ["optim.lr=0.5", "optim.lr=0.25", "model.hidden=[8, 4]", "scaling.use_gpu=false"]
    )
    assert cfg.optim.lr == 0.25
    assert cfg.model.hidden == [8, 4]


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ("strategy: {red_ration: 0.3}\n", [], "did you mean strategy.red_ratio"),
        ("name: x\n", ["strategy.red_ratio=1.5"], "strategy.red_ratio"),
        ("name: x\n", ["deepspeed.zero_stage=4"], "deepspeed.zero_stage"),
        ("name: x\n", ["optim.name=lion"], "optim.name"),
        ("name: x\n", ["optim.batch_size=63", "scaling.num_workers=2"], "multiple of"),
        ("name: x\n", ["deepspeed.precision=fp16"], "use_gpu"),
        ("name: x\n", ["optim.lr"], "dotted.key=value"),
        ("name: x\n", ["name.sub=1"], "is a value"),
        ("- a\n- b\n", [], "mapping"),
        ("name: [unclosed\n", [], "not valid YAML"),
        ("name: x\n", ["run.storage_path=ftp://host/x"], "unknown storage scheme ftp://"),
        ("name: x\n", ["run.start_timeout_s=0"], "run.start_timeout_s"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load_config(write(tmp_path, text), overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_flat_params_are_dotted():
    flat = RedblueConfig().flat()
    assert flat["strategy.red_ratio"] == 0.5
    assert flat["deepspeed.zero_stage"] == "auto"


def test_apply_override_creates_sections():
    tree: dict = {}
    apply_override(tree, "optim.lr=0.001")
    apply_override(tree, "strategy.kind=standard")
    assert tree == {"optim": {"lr": 0.001}, "strategy": {"kind": "standard"}}


def test_scientific_notation_is_accepted(tmp_path):
    assert (
        load_config(write(tmp_path, "optim: {lr: 1e-3}\n"), ["optim.weight_decay=1e-4"]).optim.lr
        == 1e-3
    )


CLUSTER_RUN = ["scaling.num_workers=3", "optim.batch_size=96"]  # the README's 3-node example
REJECTED_32 = (
    "sweep.space.optim.batch_size: value 32 is rejected: "
    "optim.batch_size (32) must be a multiple of scaling.num_workers"
)


def test_training_ignores_the_sweep_space_and_warns_in_one_line():
    warnings: list[str] = []
    cfg = load_config(CONFIGS_DIR / "digits.yaml", CLUSTER_RUN, warn=warnings.append)
    assert (cfg.scaling.num_workers, cfg.optim.batch_size) == (3, 96)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "`redblue sweep` would refuse the sweep section" in warnings[0]
    assert REJECTED_32 in warnings[0] and "(and 2 more)" in warnings[0]  # 32, 64 and 128


def test_sweeping_refuses_the_same_config_with_the_same_message():
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS_DIR / "digits.yaml", CLUSTER_RUN, for_sweep=True)
    message = str(caught.value)
    assert REJECTED_32 in message
    assert "value 64 is rejected" in message and "value 128 is rejected" in message


def test_training_ignores_a_sweep_section_that_does_not_validate(tmp_path):
    text = "sweep: {metric: test_loss, num_sampels: 3}\n"
    warnings: list[str] = []
    cfg = load_config(write(tmp_path, text), warn=warnings.append)
    assert cfg.sweep.metric == "val_loss"  # left at its defaults; training does not read it
    assert "sweep.num_sampels: unknown key (did you mean sweep.num_samples?)" in warnings[0]
    with pytest.raises(ConfigError, match="sweep.num_sampels: unknown key"):
        load_config(write(tmp_path, text), for_sweep=True)


def test_training_still_refuses_what_it_uses_next_to_a_bad_sweep_section(tmp_path):
    text = "optim: {lr: -1}\nsweep: {metric: test_loss}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "optim.lr" in str(caught.value) and "sweep" not in str(caught.value)


def test_the_schema_command_gives_a_json_schema_every_shipped_config_meets(tmp_path):
    """`redblue schema -o FILE`: the configs in configs/ pass, a wrong type or key does not."""
    import jsonschema
    from typer.testing import CliRunner

    from orchestrator.cli import app

    written = tmp_path / "redblue.schema.json"
    result = CliRunner().invoke(app, ["schema", "-o", str(written)])
    assert result.exit_code == 0, result.output
    schema = json.loads(written.read_text())
    for path in CONFIGS:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    for wrong in ({"optim": {"lr": "fast"}}, {"optim": {"lrr": 0.1}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
