"""`anxin train` config: LLaMA-Factory keys, one clear line per bad value, a --help that
lists every key, and the machine checks that run before any model loads."""

from __future__ import annotations

import pytest

from anxin.cli import main as cli_main
from anxin.config import ConfigError, field_owners
from anxin.train import TrainConfig, load_train_config
from anxin.train import environment as env


def build(*pairs: str) -> TrainConfig:
    return load_train_config(None, ["dataset=toy", *pairs])


def test_defaults_follow_llama_factory():
    cfg = build()
    assert cfg.method.lora_alpha == 2 * cfg.method.lora_rank
    assert cfg.method.lora_target == ["all"]
    assert cfg.eval.eval_steps == cfg.output.save_steps
    assert cfg.eval.per_device_eval_batch_size > cfg.train.per_device_train_batch_size
    assert cfg.train.bf16 == "auto"
    assert cfg.model.default_system  # the persona, unless switched off


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["learning_rate=-1"], "learning_rate must be > 0, got -1.0"),
        (["val_size=1"], "val_size must be a fraction in [0, 1), got 1.0"),
        (["val_size=-0.1"], "val_size must be a fraction in [0, 1)"),
        (["lora_rank=0"], "lora_rank must be > 0"),
        (["lora_dropout=1"], "lora_dropout must be in [0, 1)"),
        (["lora_target=all,q_proj"], "lora_target: use all on its own"),
        (["stage=ppo"], "stage must be one of sft, dpo, kto"),
        (["pref_loss=kto_pair"], "pref_loss must be one of sigmoid, hinge, ipo, orpo, simpo"),
        (["stage=dpo", "pref_beta=0"], "pref_beta must be > 0"),
        (["stage=dpo", "dpo_label_smoothing=0.5"], "dpo_label_smoothing must be in [0, 0.5)"),
        (["pref_loss=ipo", "dpo_label_smoothing=0.1"], "applies to pref_loss: sigmoid only"),
        (["stage=kto", "pref_ftx=0.1"], "pref_ftx applies to stage dpo"),
        (
            ["stage=dpo", "train_on_prompt=true"],
            "train_on_prompt and mask_history apply to stage sft",
        ),
        (
            ["stage=dpo", "do_predict=true", "predict_with_generate=true"],
            "do_predict applies to stage sft",
        ),
        (["do_predict=true"], "do_predict needs predict_with_generate: true"),
        (["quantization_method=hqq"], "anxin quantises with bitsandbytes only"),
        (["adapter_name_or_path=a,b"], "anxin starts from one adapter"),
        (
            ["adapter_name_or_path=a", "finetuning_type=full"],
            "adapter_name_or_path needs finetuning_type: lora",
        ),
        (["use_dora=true", "pissa_init=true"], "use_dora and pissa_init are different adapters"),
        (["pissa_init=true", "finetuning_type=full"], "pissa_init needs finetuning_type: lora"),
        (["loraplus_lr_ratio=0"], "loraplus_lr_ratio must be > 0"),
        (["early_stopping_steps=3"], "early_stopping_steps needs load_best_model_at_end"),
        (
            ["group_by_length=true", "disable_shuffling=true"],
            "set group_by_length or disable_shuffling",
        ),
        (["do_train=false"], "do_train and do_predict are both false"),
        (["finetuning_type=freeze"], "finetuning_type must be one of lora, full"),
        (["lr_scheduler_type=cosin"], "lr_scheduler_type must be one of"),
        (["warmup_steps=5", "warmup_ratio=0.1"], "set warmup_steps or warmup_ratio, not both"),
        (["bf16=maybe"], "bf16 must be true, false or auto"),
        (["bf16=true", "fp16=true"], "set bf16 or fp16, not both"),
        (["max_steps=0"], "max_steps must be > 0 or -1"),
        (["quantization_bit=3"], "quantization_bit must be 4 or 8"),
        (["cutoff_len=4"], "cutoff_len must be ≥ 16"),
        (["eval_strategy=sometimes"], "eval_strategy must be one of no, steps, epoch"),
        (["report_to=slack"], "report_to must be one of"),
        (["deepspeed=no/such/ds.json"], "deepspeed: config file not found"),
        (
            ["load_best_model_at_end=true", "val_size=0"],
            "load_best_model_at_end needs validation data",
        ),
        (
            ["load_best_model_at_end=true", "val_size=0.1", "save_steps=100", "eval_steps=30"],
            "save_steps (100) to be a multiple of eval_steps (30)",
        ),
        (["resume_from_checkpoint=true", "overwrite_output_dir=true"], "contradict"),
    ],
)
def test_bad_values_fail_with_one_clear_line(pairs, message):
    with pytest.raises(ConfigError) as caught:
        build(*pairs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_dataset_is_an_error():
    with pytest.raises(ConfigError, match="dataset is missing"):
        load_train_config(None, ["learning_rate=1e-4"])


def test_unknown_key_names_the_closest_one():
    with pytest.raises(
        ConfigError, match="unknown key 'learning_rat'; did you mean 'learning_rate'"
    ):
        build("learning_rat=1e-4")


def test_llama_factory_spellings_are_accepted():
    cfg = build(
        "lora_target=q_proj,v_proj",
        "resume_from_checkpoint=null",
        "preprocessing_num_workers=16",
        "warmup_ratio=0.1",
        "report_to=none",
        "default_system=null",
    )
    assert cfg.method.lora_target == ["q_proj", "v_proj"]
    assert cfg.output.resume_from_checkpoint is None
    assert cfg.model.default_system is None
    assert build("resume_from_checkpoint=saves/x/checkpoint-10").output.resume_from_checkpoint == (
        "saves/x/checkpoint-10"
    )
    assert build("bf16=false").train.bf16 is False


def test_a_bare_no_stays_the_word_no():
    # YAML 1.1 reads `eval_strategy: no` as false; the strategy fields want the word.
    cfg = build("eval_strategy=no", "save_strategy=no")
    assert (cfg.eval.eval_strategy, cfg.output.save_strategy) == ("no", "no")


def test_help_lists_every_key_with_its_meaning(capsys):
    with pytest.raises(SystemExit) as exited:
        cli_main(["train", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for key, (_, field, _) in field_owners(TrainConfig).items():
        assert f"  {key} (" in text, key
        assert field.metadata["help"].split()[0] in text
    assert "examples:" in text and "torchrun" in text


def test_cli_bad_value_is_one_line_and_exit_code_2(capsys):
    assert cli_main(["train", "dataset=toy", "learning_rate=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "anxin train: error: command line: learning_rate must be > 0, got -1.0"


def test_every_field_has_help():
    for key, (_, field, _) in field_owners(TrainConfig).items():
        assert len(field.metadata.get("help", "")) > 10, key


# --- the machine ----------------------------------------------------------------------------


def test_machine_checks_refuse_what_this_cpu_cannot_do(monkeypatch):
    monkeypatch.setattr(env, "has_cuda", lambda: False)
    with pytest.raises(ConfigError, match="QLoRA needs a CUDA GPU"):
        env.check_machine(build("quantization_bit=4"))
    with pytest.raises(ConfigError, match="fp16: float16 training needs a CUDA GPU"):
        env.check_machine(build("fp16=true"))
    with pytest.raises(ConfigError, match="DeepSpeed ZeRO needs CUDA GPUs"):
        env.check_machine(build("deepspeed=configs/deepspeed/zero2.json"))
    env.check_machine(build())  # plain LoRA on a CPU is fine
    monkeypatch.setattr(env, "has_cuda", lambda: True)
    monkeypatch.setattr(
        env, "_installed", lambda module: module not in ("deepspeed", "bitsandbytes")
    )
    with pytest.raises(ConfigError, match="pip install deepspeed"):
        env.check_machine(build("deepspeed=configs/deepspeed/zero2.json"))
    with pytest.raises(ConfigError, match="pip install bitsandbytes"):
        env.check_machine(build("quantization_bit=4"))
    # use_cpu keeps a run off the GPU it has: as if there were none, and saying why.
    assert env.uses_cuda(build()) and not env.uses_cuda(build("use_cpu=true"))
    with pytest.raises(
        ConfigError, match=r"QLoRA needs a CUDA GPU \(bitsandbytes\); use_cpu is true"
    ):
        env.check_machine(build("quantization_bit=4", "use_cpu=true"))
    assert env.pick_precision("auto", False, cuda=False).mode in ("bf16", "fp32")


@pytest.mark.parametrize(
    ("bf16", "native", "mode"),
    [("auto", True, "bf16"), ("auto", False, "fp32"), (False, True, "fp32"), (True, False, "bf16")],
)
def test_precision_auto_follows_native_bf16(monkeypatch, bf16, native, mode):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(env, "cpu_has_bf16", lambda: native)
    precision = env.pick_precision(bf16, fp16=False)
    assert precision.mode == mode
    assert precision.why  # said in the run log and run.json


def test_threads_default_to_physical_cores_per_process(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(env.machine, "physical_cores", lambda: 8)
        two = env.Processes(rank=0, local_rank=0, world_size=2, local_world_size=2)
        assert env.set_torch_threads(None, two) == 4
        assert env.set_torch_threads(3, two) == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert env.set_torch_threads(None, two) == 1
    finally:
        torch.set_num_threads(before)
