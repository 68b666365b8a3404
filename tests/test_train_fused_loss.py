"""The fused, chunked linear + cross-entropy loss (anxin.train.fused_loss) against HF's own loss
on the tiny Llama: the same loss and LoRA gradients, in training and evaluation, and HF's path
kept where the output layer is trained."""

from __future__ import annotations

import pytest
import torch
from test_train import make_toy_dataset, tiny_overrides

from anxin.cli import main as cli_main
from anxin.template import IGNORE_INDEX
from anxin.train import fused_loss
from anxin.train.data import PaddedBatches
from anxin.train.fused_loss import (
    FusedLossTrainer,
    chunk_rows,
    linear_cross_entropy_sum,
    plain_loss_reason,
)

CHUNK = 5  # positions per chunk in these tests: boundaries fall inside every sequence


@pytest.fixture
def small_chunks(monkeypatch, tiny_model_dir):
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * vocab * CHUNK)


def lora_model(model_dir, targets="all-linear"):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    # init_lora_weights=False: B is not zero, so every LoRA matrix has a gradient to compare.
    config = LoraConfig(r=4, target_modules=targets, init_lora_weights=False)
    return get_peft_model(model, config)


def trainer_for(model, tmp_path, plain: str | None):
    from transformers import TrainingArguments

    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to=[],
        prediction_loss_only=True,
        remove_unused_columns=False,
        label_names=["labels"],
    )
    return FusedLossTrainer(model=model, args=args, plain_loss_reason=plain)


def rows(lengths_and_prompts, seed=1):
    """Conversations as the collator gets them: labels -100 on the prompt, varied lengths."""
    generator = torch.Generator().manual_seed(seed)
    features = []
    for length, prompt in lengths_and_prompts:
        ids = torch.randint(10, 500, (length,), generator=generator).tolist()
        labels = [IGNORE_INDEX] * prompt + ids[prompt:]
        labels[prompt + 3] = IGNORE_INDEX  # a masked token inside an answer
        features.append({"input_ids": ids, "labels": labels})
    return features


def accumulated(trainer, batches):
    """Loss of an accumulated batch and the LoRA gradients, as the Trainer makes them."""
    model = trainer.model
    model.zero_grad()
    count = trainer._get_num_items_in_batch(batches, torch.device("cpu"))
    total = 0.0
    for batch in batches:
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
        loss.backward()
        total += loss.item()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return total, grads


def assert_same(plain, fused):
    (plain_loss, plain_grads), (fused_loss_value, fused_grads) = plain, fused
    assert fused_loss_value == pytest.approx(plain_loss, rel=1e-6)
    assert plain_grads.keys() == fused_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        scale = grad.abs().max().item()
        assert scale > 0, name
        assert (fused_grads[name] - grad).abs().max().item() <= 1e-5 * scale, name


@pytest.mark.parametrize("trained_logits_only", [True, False])
def test_fused_loss_and_lora_gradients_match_hf_under_accumulation(
    tiny_model_dir, tiny_tokenizer, tmp_path, small_chunks, trained_logits_only
):
    # Two micro-batches, right-padded, with prompts, a masked answer token and padding; the
    # collator either marks the trained positions (as in anxin's runs) or leaves labels only.
    collate = PaddedBatches(tiny_tokenizer, trained_logits_only)
    batches = [
        collate(rows([(23, 7), (14, 4)], seed=1)),
        collate(rows([(31, 12), (9, 2), (17, 5)], seed=2)),
    ]
    assert all(int((b["labels"][0] != IGNORE_INDEX).sum()) > CHUNK for b in batches)
    model = lora_model(tiny_model_dir)
    plain = accumulated(trainer_for(model, tmp_path, plain="compare"), batches)
    fused = accumulated(trainer_for(model, tmp_path, plain=None), batches)
    assert_same(plain, fused)


def test_evaluation_loss_matches_hf(tiny_model_dir, tiny_tokenizer, tmp_path, small_chunks):
    batch = PaddedBatches(tiny_tokenizer, True)(rows([(40, 9), (26, 6), (11, 3)], seed=3))
    model = lora_model(tiny_model_dir).eval()
    losses = [
        trainer_for(model, tmp_path, plain).prediction_step(model, dict(batch), True)[0].item()
        for plain in ("compare", None)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_function_matches_cross_entropy_across_chunks(monkeypatch):
    monkeypatch.setattr(fused_loss, "CHUNK_BYTES", 4 * 97 * CHUNK)
    torch.manual_seed(0)
    weight = torch.randn(97, 16)
    hidden = torch.randn(23, 16, requires_grad=True)
    targets = torch.randint(0, 97, (23,))
    targets[[0, 5, 6, 7, 8, 9, 22]] = IGNORE_INDEX  # one chunk (5..9) wholly ignored
    assert chunk_rows(23, 97) == CHUNK
    logits = hidden @ weight.T
    expected = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected, hidden)
    total = linear_cross_entropy_sum(hidden, weight, targets)
    (grad,) = torch.autograd.grad(total * 3.0, hidden)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(grad, 3.0 * expected_grad, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert linear_cross_entropy_sum(hidden, weight, targets).item() == pytest.approx(
            expected.item(), rel=1e-6
        )


def test_chunks_are_of_equal_size():
    vocab = fused_loss.CHUNK_BYTES // (4 * 100)  # 100 positions per chunk at most
    assert chunk_rows(100, vocab) == 100
    assert chunk_rows(101, vocab) == 51  # two chunks of 51 and 50, not 100 and 1
    assert chunk_rows(3, vocab) == 3


def test_trained_output_weight_is_refused():
    weight = torch.randn(7, 4, requires_grad=True)
    with pytest.raises(ValueError, match="trained output weight"):
        linear_cross_entropy_sum(torch.randn(3, 4), weight, torch.tensor([1, 2, 3]))


def test_plain_loss_where_the_output_layer_is_adapted_or_trained(tiny_model_dir):
    from transformers import AutoModelForCausalLM, TrainingArguments

    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    assert plain_loss_reason(lora_model(tiny_model_dir), args) is None
    with_head = lora_model(tiny_model_dir, targets=["q_proj", "lm_head"])
    assert "adapted" in plain_loss_reason(with_head, args)
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert "trained" in plain_loss_reason(full, args)
    smoothing = TrainingArguments(
        output_dir="unused", use_cpu=True, report_to=[], label_smoothing_factor=0.1
    )
    assert "label_smoothing" in plain_loss_reason(lora_model(tiny_model_dir), smoothing)


def test_full_fine_tuning_trains_on_the_plain_loss_and_says_so(tiny_model_dir, tmp_path, capsys):
    data = make_toy_dataset(tmp_path / "data")
    overrides = tiny_overrides(
        tiny_model_dir, data, tmp_path / "out", finetuning_type="full", max_steps=1
    )
    assert cli_main(["train", *overrides]) == 0
    assert "loss from full logits (the output layer is trained" in capsys.readouterr().err
