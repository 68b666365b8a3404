from dataclasses import dataclass

import pytest

from anxin.config import ConfigError, arg, describe_config, flatten, load_config


@dataclass
class ToyModel:
    """Which model"""

    model_name_or_path: str = arg("smollm2", "model reference")
    template: str | None = arg(None, "chat template")


@dataclass
class ToyTrain:
    """How to train"""

    learning_rate: float = arg(5e-5, "peak learning rate")
    lora_target: list[str] = arg(help="modules", factory=lambda: ["q_proj", "v_proj"])
    bf16: bool = arg(False, "bf16 autocast")
    max_steps: int = arg(-1, "stop after this many steps")

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class ToyConfig:
    model: ToyModel
    train: ToyTrain


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1.0e-4\nlora_target: all\nbf16: true\n")
    cfg = load_config(ToyConfig, path, ["max_steps=5", "lora_target=q_proj,k_proj"])
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.train.lora_target == ["q_proj", "k_proj"]
    assert cfg.train.bf16 is True and cfg.train.max_steps == 5
    assert cfg.model.model_name_or_path == "smollm2"
    assert flatten(cfg)["max_steps"] == 5


def test_unknown_key_names_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learnig_rate: 1\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: unknown key 'learnig_rate'; did you mean 'learning_rate'"
    ):
        load_config(ToyConfig, path)


def test_validation_and_types_are_one_line_errors():
    with pytest.raises(ConfigError, match="learning_rate must be > 0, got -1"):
        load_config(ToyConfig, None, ["learning_rate=-1"])
    with pytest.raises(ConfigError, match="max_steps: expected an integer"):
        load_config(ToyConfig, None, ["max_steps=abc"])
    with pytest.raises(ConfigError, match="bf16: expected true or false"):
        load_config(ToyConfig, None, ["bf16=maybe"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(ToyConfig, None, ["bf16"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(ToyConfig, path)


def test_describe_lists_every_key_with_help():
    text = describe_config(ToyConfig)
    for key in ("model_name_or_path", "template", "learning_rate", "lora_target", "bf16"):
        assert key in text
    assert "peak learning rate" in text and "default 5e-05" in text


def test_an_unknown_override_is_blamed_on_the_command_line(tmp_path):
    from anxin.train.config import TrainConfig

    good = tmp_path / "good.yaml"
    good.write_text("learning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"^command line: unknown key 'lerning_rate'"):
        load_config(TrainConfig, good, ["lerning_rate=1"])
    good.write_text("lerning_rate: 1.0e-4\n")
    with pytest.raises(ConfigError, match=r"good.yaml: unknown key 'lerning_rate'"):
        load_config(TrainConfig, good, [])
