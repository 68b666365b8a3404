"""Every key of LLaMA-Factory 0.9.5's `llamafactory-cli train` is honoured or refused with its
reason, never "unknown key".

tests/fixtures/llamafactory_0.9.5_keys.json holds the keys, dumped from the dataclass fields of
the five argument classes LLaMA-Factory parses (ModelArguments, DataArguments,
FinetuningArguments, GeneratingArguments and its TrainingArguments), in bench/.venv-llamafactory:

    from llamafactory.hparams import ModelArguments, DataArguments, FinetuningArguments, \\
        GeneratingArguments, TrainingArguments
    sorted(f.name for f in dataclasses.fields(cls) if f.init)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from anxin.config import build_config, field_owners
from anxin.errors import ConfigError
from anxin.train.config import TrainConfig
from anxin.train.llamafactory import ANY, foreign_keys

FIXTURE = Path(__file__).parent / "fixtures" / "llamafactory_0.9.5_keys.json"
CLASSES = json.loads(FIXTURE.read_text())["classes"]
LF_KEYS = sorted({key for keys in CLASSES.values() for key in keys})
FIELDS = set(field_owners(TrainConfig))
REFUSAL = re.compile(r"^LLaMA-Factory's `(\w+)` is not supported by anxin: \S.+$")
# The keys the issue found failing in LLaMA-Factory's own example files.
ISSUE_KEYS = (
    "pref_beta",
    "quantization_method",
    "loraplus_lr_ratio",
    "pissa_init",
    "adapter_name_or_path",
    "use_cpu",
)
# And those it asks to honour.
HONOURED = ISSUE_KEYS + (
    "do_predict",
    "predict_with_generate",
    "use_dora",
    "use_rslora",
    "neftune_noise_alpha",
    "train_on_prompt",
    "mask_history",
    "pref_loss",
    "pref_ftx",
    "simpo_gamma",
    "dpo_label_smoothing",
    "kto_chosen_weight",
    "kto_rejected_weight",
)


def build(**values):
    return build_config(TrainConfig, {"dataset": "d", **values}, "test.yaml")


def test_the_fixture_is_the_whole_surface():
    assert len(LF_KEYS) > 300
    for key in ("pref_beta", "quantization_method", "predict_with_generate", "use_cpu"):
        assert key in LF_KEYS


@pytest.mark.parametrize("key", LF_KEYS)
def test_every_llamafactory_key_is_a_field_or_has_a_reason(key):
    assert (key in FIELDS) != (key in foreign_keys()), key


def test_nothing_listed_is_stale():
    assert set(foreign_keys()) <= set(LF_KEYS)


@pytest.mark.parametrize("key", sorted(set(LF_KEYS) - FIELDS))
def test_a_foreign_key_is_accepted_at_its_values_and_refused_at_others(key):
    known = foreign_keys()[key]
    values = ["__probe__", 12345] if known.accepted == ANY else known.accepted
    for value in values:
        build(**{key: value})  # no error: the value asks for nothing anxin does not do
    if known.accepted == ANY:
        return
    with pytest.raises(ConfigError) as error:
        build(**{key: "__not_a_value_anyone_uses__"})
    message = str(error.value)
    assert REFUSAL.match(message) and "\n" not in message, message
    assert f"`{key}`" in message and "unknown key" not in message


@pytest.mark.parametrize("key", HONOURED)
def test_the_keys_the_issue_names_are_honoured_as_fields(key):
    assert key in FIELDS


def test_a_real_refusal_reads_well_and_unknown_keys_still_suggest():
    with pytest.raises(
        ConfigError, match=r"^LLaMA-Factory's `ppo_epochs` is not supported by anxin: PPO"
    ):
        build(ppo_epochs=2)
    with pytest.raises(ConfigError, match=r"unknown key 'pref_betta'; did you mean 'pref_beta'"):
        build(pref_betta=0.1)


EXAMPLES = Path(__file__).parent / "fixtures" / "llamafactory_examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_llamafactory_examples_load_unchanged(name):
    """The recipes the issue found failing: every key is honoured, with its value."""
    from anxin.config import flatten, read_yaml
    from anxin.train import load_train_config

    resolved = flatten(load_train_config(EXAMPLES / name))
    for key, value in read_yaml(EXAMPLES / name).items():
        if key in FIELDS:
            expected = value.split(",") if key == "lora_target" else value
            expected = "bnb" if value == "bitsandbytes" else expected
            assert resolved[key] == expected, key


def test_the_predict_example_predicts_without_training():
    from anxin.train import load_train_config

    cfg = load_train_config(EXAMPLES / "lora_predict.yaml")
    assert cfg.predict.do_predict and not cfg.method.do_train
    assert cfg.model.adapter_name_or_path == "saves/llama3-8b/lora/sft"
