"""LLaMA-Factory's LoRA variants and data options, honoured: DoRA, rsLoRA, PiSSA (converted to
plain LoRA at the end), LoRA+, NEFTune, use_cpu, train_on_prompt and mask_history."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import make_toy_dataset, tiny_overrides

from anxin.template import IGNORE_INDEX
from anxin.train import fit, load_train_config, save, setup, validate
from anxin.train.data import Labels


@pytest.fixture
def toy_data(tmp_path):
    return make_toy_dataset(tmp_path / "data")


def one_run(model_dir, data, out, **extra):
    run = setup(load_train_config(None, tiny_overrides(model_dir, data, out, max_steps=2, **extra)))
    save(run, fit(run), validate(run))
    return run


def test_dora_rslora_neftune_and_use_cpu_reach_peft_and_the_trainer(
    tiny_model_dir, toy_data, tmp_path
):
    out = tmp_path / "dora"
    run = one_run(
        tiny_model_dir, toy_data, out, use_dora=True, use_rslora=True,
        neftune_noise_alpha=5, use_cpu=True,
    )  # fmt: skip
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["use_rslora"] is True
    assert any("lora_magnitude_vector" in n for n, _ in run.trainer.model.named_parameters())
    assert run.trainer.args.neftune_noise_alpha == 5 and run.trainer.args.use_cpu


def test_pissa_saves_a_plain_lora_adapter_that_loads_on_the_original_base(
    tiny_model_dir, toy_data, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "pissa"
    run = one_run(tiny_model_dir, toy_data, out, pissa_init=True, pissa_iter=4, lora_rank=4)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True  # 2r: the change from init
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    trained = run.trainer.model.eval()
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        converted = PeftModel.from_pretrained(base, out).eval()(input_ids=ids).logits
    assert torch.allclose(converted, expected, atol=1e-4)


def test_loraplus_gives_lora_b_a_larger_learning_rate(tiny_model_dir, toy_data, tmp_path):
    cfg = load_train_config(
        None, tiny_overrides(tiny_model_dir, toy_data, tmp_path / "o", loraplus_lr_ratio=16)
    )
    run = setup(cfg)
    lr = cfg.train.learning_rate
    names = {id(p): n for n, p in run.trainer.model.named_parameters()}
    rates = {
        names[id(p)]: group["lr"]
        for group in run.trainer.optimizer.param_groups
        for p in group["params"]
    }
    assert rates and all(rate == (16 * lr if "lora_B" in n else lr) for n, rate in rates.items())
    fit(run)  # the Trainer schedules and steps the LoRA+ optimizer
    assert run.trainer.state.global_step == 4


IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
# A two-exchange conversation: prompt, answer 1, prompt, answer 2 (and glue after it).
LABELS = [-100, -100, 3, 4, -100, -100, 7, 8, 9, -100]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Labels(), LABELS),
        (Labels(mask_history=True), [-100] * 6 + [7, 8, 9, -100]),
        (Labels(train_on_prompt=True), IDS),
        (Labels(train_on_prompt=True, mask_history=True), [1, 2, -100, -100, 5, 6, 7, 8, 9, 10]),
    ],
)
def test_train_on_prompt_and_mask_history_choose_the_trained_tokens(policy, expected):
    assert policy.apply(IDS, LABELS) == expected


def test_mask_history_trains_only_the_last_answer(tiny_model_dir, tiny_tokenizer, tmp_path):
    from anxin.template import render_conversation
    from anxin.train.data import tokenize

    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "fine thanks"},
    ]
    rendered = render_conversation(tiny_tokenizer, messages)
    full, _ = tokenize([{"messages": messages}], tiny_tokenizer, 512)
    last, _ = tokenize(
        [{"messages": messages}], tiny_tokenizer, 512, labels=Labels(mask_history=True)
    )
    trained = [t for t in last[0]["labels"].tolist() if t != IGNORE_INDEX]
    answer = tiny_tokenizer("fine thanks", add_special_tokens=False)["input_ids"]
    assert trained[: len(answer)] == answer and len(trained) == len(answer) + 1  # + end of turn
    assert (full[0]["labels"] != IGNORE_INDEX).sum() == rendered.trained_tokens > len(trained)
