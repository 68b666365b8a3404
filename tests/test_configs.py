"""Every shipped config loads, and the seed's recipe is kept exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anxin.config import flatten, read_yaml
from anxin.train import load_train_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize(
    "path", sorted(CONFIGS.glob("**/*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_every_shipped_yaml_loads(path):
    cfg = load_train_config(path)
    # Every key in the file means what it says (no key silently dropped or renamed).
    resolved = flatten(cfg)
    for key, value in read_yaml(path).items():
        expected = value.split(",") if key == "lora_target" else value
        assert resolved[key] == expected, key


def test_llama3_config_is_the_seed_recipe():
    cfg = flatten(load_train_config(CONFIGS / "llama3-8b-instruct" / "lora_sft.yaml"))
    assert cfg == cfg | {
        "model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "template": "llama3",
        "stage": "sft",
        "finetuning_type": "lora",
        "lora_target": ["q_proj", "v_proj"],
        "lora_rank": 8,
        "lora_alpha": 16,
        "cutoff_len": 1024,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 20,
        "learning_rate": 5e-5,
        "num_train_epochs": 3.0,
        "max_samples": 3000,
        "val_size": 0.1,
        "logging_steps": 10,
        "save_steps": 100,
        "eval_steps": 100,
        "eval_strategy": "steps",
        "load_best_model_at_end": True,
        "plot_loss": True,
        "bf16": True,
    }


def test_smollm2_config_is_sized_for_a_cpu_and_says_why():
    path = CONFIGS / "smollm2-135m" / "lora_sft.yaml"
    cfg = load_train_config(path)
    assert cfg.model.model_name_or_path == "smollm2"
    assert cfg.method.lora_target == ["all"] and cfg.train.learning_rate == 2e-4
    assert cfg.data.cutoff_len <= 512 and cfg.data.max_samples <= 300
    assert cfg.train.bf16 == "auto"
    assert "FINDINGS" in path.read_text()  # the comment explaining the difference


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_parse_and_plug_in(stage, monkeypatch):
    path = CONFIGS / "deepspeed" / f"zero{stage}.json"
    ds = json.loads(path.read_text())
    assert ds["zero_optimization"]["stage"] == stage
    # "auto" lets HF fill batch sizes and precision from the training config.
    assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["bf16"]["enabled"] == "auto"
    cfg = load_train_config(CONFIGS / "smollm2-135m" / "lora_sft.yaml", [f"deepspeed={path}"])
    assert cfg.train.deepspeed == str(path)


@pytest.mark.parametrize("model", ["smollm2-135m", "llama3-8b-instruct"])
def test_dpo_recipes_continue_the_sft_adapter_on_the_bundled_pairs(model):
    from anxin.data.registry import load_dataset_info

    sft = load_train_config(CONFIGS / model / "lora_sft.yaml")
    dpo = load_train_config(CONFIGS / model / "dpo.yaml")
    assert dpo.method.stage == "dpo" and dpo.preference.pref_loss == "sigmoid"
    assert dpo.model.adapter_name_or_path == sft.output.output_dir  # the SFT run's adapter
    assert dpo.model.model_name_or_path == sft.model.model_name_or_path
    assert dpo.model.template == sft.model.template and dpo.data.cutoff_len == sft.data.cutoff_len
    assert dpo.data.dataset == "anxin_pairs"
    assert load_dataset_info(CONFIGS.parent / "data")["anxin_pairs"]["ranking"] is True
    assert dpo.data.val_size > 0  # held-out pairs: reward accuracy is reported
