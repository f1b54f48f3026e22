from pathlib import Path

import pytest

from orchestrator.config import ConfigError, RedblueConfig, apply_override, load_config

CONFIGS = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.name


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
        ("name: x\n", ["optim.batch_size=63"], "multiple of"),
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
    assert flat["deepspeed.zero_stage"] == 0


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
