"""`anxin train` stage dpo and kto on the tiny random Llama: golden losses through the real entry
point, the reference model, pref_ftx, ORPO/SimPO, and what a run leaves behind.

`make_toy_pairs` is shared with the other preference tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_train import make_toy_dataset, read_log, tiny_overrides
from tiny import CORPUS

from anxin.cli import main as cli_main
from anxin.data.pairs import ranking_entry
from anxin.data.registry import register_dataset
from anxin.errors import TemplateError
from anxin.train import load_train_config, train


def make_toy_pairs(folder: Path, count: int = 20, name: str = "pairs") -> Path:
    """A registered ranking dataset: each user line of CORPUS with its own reply as chosen and
    another line's reply as rejected (every third pair has an earlier exchange)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        messages = [{"role": "user", "content": f"{CORPUS[(2 * i) % 12]} ({i})"}]
        if i % 3 == 0:
            messages = [
                {"role": "user", "content": CORPUS[(i + 4) % 12]},
                {"role": "assistant", "content": CORPUS[(i + 5) % 12]},
                *messages,
            ]
        pair = {
            "messages": messages,
            "chosen": {"role": "assistant", "content": CORPUS[(2 * i + 1) % 12]},
            "rejected": {"role": "assistant", "content": CORPUS[(2 * i + 7) % 12]},
        }
        lines.append(json.dumps(pair, ensure_ascii=False))
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    register_dataset(folder, name, ranking_entry(f"{name}.jsonl"))
    return folder


def pref_overrides(model_dir, data_dir, output_dir, **extra) -> list[str]:
    values = {"stage": "dpo", "dataset": "pairs", "max_steps": 4, **extra}
    return tiny_overrides(model_dir, data_dir, output_dir, **values)


@pytest.fixture
def toy_pairs(tmp_path):
    return make_toy_pairs(tmp_path / "data")


def losses(output_dir: Path) -> list[float]:
    return [e["loss"] for e in read_log(output_dir) if "loss" in e]


# Losses of the first four steps for seed 42 (bf16 off); see tests/test_train.py GOLDEN_LOSSES
# for when to update them. A new adapter starts as its reference, so step 1 is log 2 exactly.
GOLDEN_DPO = [0.6931, 0.6896, 0.6997, 0.7267]
GOLDEN_KTO = [0.5, 0.4844, 0.4907, 0.532]


def test_dpo_trains_tiny_model_to_golden_losses(tiny_model_dir, toy_pairs, tmp_path):
    out = tmp_path / "dpo"
    rc = cli_main(["train", *pref_overrides(tiny_model_dir, toy_pairs, out, plot_loss=True)])
    assert rc == 0
    assert losses(out) == pytest.approx(GOLDEN_DPO, abs=2e-3)
    assert losses(out)[0] == pytest.approx(math.log(2), abs=1e-6)
    log = read_log(out)
    trained = [e for e in log if "loss" in e]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert all(key in e for e in trained), key
    assert [e["step"] for e in log if "eval_rewards/accuracies" in e] == [2, 4]

    for name in ("adapter_model.safetensors", "anxin_template.json", "training_rewards.png"):
        assert (out / name).is_file(), name
    assert not (out / "ref").exists() and not (out / "README.md").read_text().count("TRL")
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["data"]["stage"] == "dpo"
    assert run["data"]["train"]["examples"] + run["data"]["validation"]["examples"] == 20
    held_out = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert held_out and {"messages", "chosen", "rejected"} <= set(held_out[0])
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert "eval_rewards/accuracies" in evaluation and "eval_perplexity" not in evaluation


def test_kto_trains_tiny_model_to_golden_losses(tiny_model_dir, toy_pairs, tmp_path):
    out = tmp_path / "kto"
    # Batch 1, as LLaMA-Factory's KTO recipe: the KL term takes the previous example's answer.
    overrides = pref_overrides(
        tiny_model_dir, toy_pairs, out, stage="kto", per_device_train_batch_size=1
    )
    assert cli_main(["train", *overrides]) == 0
    assert losses(out) == pytest.approx(GOLDEN_KTO, abs=2e-3)
    trained = [e for e in read_log(out) if "loss" in e]
    assert all("kl" in e for e in trained)
    # A step whose examples were all good (or all bad) has only that side's reward.
    assert any("rewards/chosen" in e for e in trained) and any(
        "rewards/rejected" in e for e in trained
    )


def test_the_reference_is_the_base_with_the_adapter_disabled(tiny_model_dir, toy_pairs, tmp_path):
    """No second model in memory: TRL asks the policy itself with its adapter switched off."""
    from transformers import AutoModelForCausalLM

    from anxin.train import fit, setup

    run = setup(load_train_config(None, pref_overrides(tiny_model_dir, toy_pairs, tmp_path / "o")))
    fit(run)  # 4 steps: the adapter is no longer zero
    trainer = run.trainer
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    reference = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    policy = _sequence_logps(trainer.model, batch)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.allclose(reference, _sequence_logps(base, batch), atol=1e-4)
    assert not torch.allclose(reference, policy, atol=1e-3)


def _sequence_logps(model, batch) -> torch.Tensor:
    """Summed log-probability of the completion tokens of each row, computed plainly."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = batch["input_ids"][:, 1:]
    per_token = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (per_token * batch["completion_mask"][:, 1:]).sum(-1)


def test_continuing_an_sft_adapter_keeps_it_as_the_reference(tiny_model_dir, toy_pairs, tmp_path):
    """adapter_name_or_path: DPO trains the SFT adapter on; the reference is that adapter as it
    started (a frozen copy of a few KB beside it, never a second model)."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from anxin.train import fit, setup

    sft_data = make_toy_dataset(tmp_path / "sft_data")
    sft = tmp_path / "sft"
    train(load_train_config(None, tiny_overrides(tiny_model_dir, sft_data, sft, max_steps=2)))

    out = tmp_path / "dpo"
    overrides = pref_overrides(tiny_model_dir, toy_pairs, out, adapter_name_or_path=sft)
    other_template = load_train_config(None, [*overrides, "template=llama3"])
    with pytest.raises(TemplateError, match="trained with template 'default'"):
        setup(other_template)  # an adapter continues with its own template or not at all
    run = setup(load_train_config(None, overrides))
    fit(run)
    trainer = run.trainer
    assert trainer.ref_model is None
    assert sorted(trainer.model.peft_config) == ["default", "ref"]
    assert losses(out)[0] == pytest.approx(math.log(2), abs=1e-6)  # starts at its reference
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    reference = torch.cat(trainer.compute_ref_log_probs(trainer.model, batch))
    sft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), sft)
    assert torch.allclose(reference, _sequence_logps(sft_model, batch), atol=1e-4)

    from anxin.train import save, validate

    save(run, {}, validate(run))
    assert not (out / "ref").exists()  # only the trained adapter is saved
    trained, started = (
        load_file(out / "adapter_model.safetensors"),
        load_file(sft / "adapter_model.safetensors"),
    )
    assert trained.keys() == started.keys()
    assert any(not trained[k].equal(started[k]) for k in trained)


def test_pref_ftx_adds_the_sft_loss_of_the_chosen_answers(tiny_model_dir, tmp_path):
    """One pair, one step: the loss grows by pref_ftx × the mean NLL of the chosen tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from anxin.template import with_system
    from anxin.train.preference_data import answer_tokens

    data = make_toy_pairs(tmp_path / "data", count=1)
    first = {}
    for ftx in (0.0, 0.5):
        out = tmp_path / f"ftx{ftx}"
        overrides = pref_overrides(
            tiny_model_dir, data, out, max_steps=1, val_size=0, per_device_train_batch_size=1,
            gradient_accumulation_steps=1, pref_ftx=ftx,
        )  # fmt: skip
        assert cli_main(["train", *overrides]) == 0
        first[ftx] = losses(out)[0]

    pair = json.loads((data / "pairs.jsonl").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt, chosen = answer_tokens(
        tokenizer, with_system(pair["messages"]), pair["chosen"]["content"]
    )
    ids = torch.tensor([prompt + chosen])
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(ids).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits[len(prompt) - 1 :], ids[0, len(prompt) :])
    assert first[0.0] == pytest.approx(math.log(2), abs=1e-6)
    assert first[0.5] - first[0.0] == pytest.approx(0.5 * nll.item(), abs=2e-3)


def test_orpo_and_simpo_losses_match_their_formulas():
    from anxin.train.preference import orpo_loss, simpo_loss

    chosen, rejected = torch.tensor([-0.5, -1.0]), torch.tensor([-1.5, -0.8])
    odds = lambda p: p - torch.log1p(-torch.exp(p))  # noqa: E731  log(p / (1 - p)) on log-probs
    expected_orpo = -chosen - 0.1 * torch.nn.functional.logsigmoid(odds(chosen) - odds(rejected))
    assert torch.allclose(orpo_loss(chosen, rejected, 0.1), expected_orpo)
    margin = 2.0 * (chosen - rejected) - 0.5
    assert torch.allclose(simpo_loss(chosen, rejected, 2.0, 0.5), -torch.log(torch.sigmoid(margin)))


def test_conservative_dpo_is_trls_sigmoid_and_robust_losses_combined():
    """dpo_label_smoothing ε: (1-ε)·L(Δ) + ε·L(-Δ), L = -log σ(β·), from TRL's loss types."""
    from types import SimpleNamespace

    from anxin.train.preference import dpo_losses

    eps, beta, delta = 0.2, 0.1, torch.tensor([3.0, -2.0, 0.5])
    settings = SimpleNamespace(pref_loss="sigmoid", dpo_label_smoothing=eps, pref_ftx=0.0)
    losses_, weights = dpo_losses(settings)
    assert losses_ == ["sigmoid", "robust"]
    sigmoid = -torch.nn.functional.logsigmoid(beta * delta)
    flipped = -torch.nn.functional.logsigmoid(-beta * delta)
    robust = ((1 - eps) * sigmoid - eps * flipped) / (1 - 2 * eps)  # TRL's "robust"
    combined = weights[0] * sigmoid + weights[1] * robust
    assert torch.allclose(combined, (1 - eps) * sigmoid + eps * flipped)


@pytest.mark.parametrize("loss", ["orpo", "simpo", "ipo", "hinge"])
def test_every_pref_loss_trains(tiny_model_dir, toy_pairs, tmp_path, loss):
    out = tmp_path / loss
    overrides = pref_overrides(
        tiny_model_dir, toy_pairs, out, pref_loss=loss, max_steps=2, val_size=0, save_steps=2
    )
    assert cli_main(["train", *overrides]) == 0
    log = [e for e in read_log(out) if "loss" in e]
    assert len(log) == 2 and all(math.isfinite(e["loss"]) for e in log)
    assert all("rewards/accuracies" in e for e in log)


def test_sft_data_is_refused_for_dpo_and_pairs_for_sft(tiny_model_dir, toy_pairs, tmp_path, capsys):
    make_toy_dataset(toy_pairs)  # registers "toy" beside "pairs"
    dpo = pref_overrides(tiny_model_dir, toy_pairs, tmp_path / "a", dataset="toy")
    assert cli_main(["train", *dpo]) == 2
    assert "stage dpo needs preference pairs" in capsys.readouterr().err
    sft = tiny_overrides(tiny_model_dir, toy_pairs, tmp_path / "b", dataset="pairs")
    assert cli_main(["train", *sft]) == 2
    assert "stage sft cannot use: train on it with stage: dpo or kto" in capsys.readouterr().err


def test_dpo_resumes_after_sigkill_as_if_never_stopped(tiny_model_dir, toy_pairs, tmp_path):
    import os
    import subprocess
    import sys

    from test_train_resume import KILLED_RUN, adapter_tensors

    from anxin.train.checkpoints import COMPLETE_MARK

    extra = {"max_steps": 6, "val_size": 0}
    reference = tmp_path / "reference"
    train(load_train_config(None, pref_overrides(tiny_model_dir, toy_pairs, reference, **extra)))

    out = tmp_path / "run"
    overrides = pref_overrides(tiny_model_dir, toy_pairs, out, **extra)
    child = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *overrides],
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert (out / "checkpoint-2" / COMPLETE_MARK).is_file()
    result = train(load_train_config(None, [*overrides, "resume_from_checkpoint=true"]))
    assert result.global_step == 6 and result.resumed_from == str(out / "checkpoint-2")
    assert [e["step"] for e in read_log(out) if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert losses(out) == pytest.approx(losses(reference), abs=1e-5)
    for name, tensor in adapter_tensors(reference).items():
        assert adapter_tensors(out)[name].allclose(tensor, atol=1e-6), name


@pytest.mark.slow
def test_dpo_under_torchrun_two_processes_agree(tiny_model_dir, toy_pairs, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "anxin", "train", *pref_overrides(tiny_model_dir, toy_pairs, out, plot_loss=True),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["ddp"]["world_size"] == 2 and run["ddp"]["ranks_agree"] is True
    log = read_log(out)
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]  # written once, by rank 0
    assert all("rewards/accuracies" in e for e in log if "loss" in e)
    assert (out / "training_rewards.png").is_file() and not (out / "ref").exists()


def test_reading_the_prompt_once_gives_trls_two_row_log_probs(tiny_model_dir, toy_pairs, tmp_path):
    from anxin.train import setup
    from anxin.train.shared_prompt import PACKED_KEYS, block_causal_mask

    run = setup(load_train_config(None, pref_overrides(tiny_model_dir, toy_pairs, tmp_path / "o")))
    trainer, model = run.trainer, run.trainer.model
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():  # an adapter that changes the answers
        if "lora_B" in name:
            param.data = torch.randn(param.shape, generator=generator) * 0.05
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 3, 6)])  # 3: a history
    assert batch["packed_ids"].size(1) < 2 * batch["input_ids"].size(1)
    two_rows = {k: v for k, v in batch.items() if k not in PACKED_KEYS}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        packed = model(**batch, labels=labels, fused_lm_head=True)
        plain = model(**two_rows, labels=labels, fused_lm_head=True)
    assert torch.allclose(packed.log_probs, plain.log_probs, atol=1e-4)
    assert torch.equal(packed.label_mask, plain.label_mask)
    with torch.no_grad():
        assert trainer.compute_loss(model, batch).item() == pytest.approx(
            trainer.compute_loss(model, two_rows).item(), abs=1e-5
        )
    # prompt, chosen, rejected: the rejected answer sees the prompt but never the chosen one
    mask = block_causal_mask(torch.tensor([[0, 0, 1, 1, 2, 2, -1]]))[0, 0]
    assert mask[4].tolist() == [True, True, False, False, True, False, False]
    assert mask[3].tolist() == [True, True, True, True, False, False, False]
    assert mask[6].tolist() == [False] * 6 + [True]  # padding sees only itself
