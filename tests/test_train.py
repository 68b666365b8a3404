"""`anxin train` end to end on the tiny random Llama: golden losses, outputs, refusals.

The helpers at the top (`make_toy_dataset`, `tiny_overrides`) are shared with the other
test_train_*.py files.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from tiny import CORPUS

from anxin.cli import main as cli_main
from anxin.config import ConfigError
from anxin.data.registry import canonical_entry, register_dataset


def make_toy_dataset(folder: Path, count: int = 24, name: str = "toy") -> Path:
    """A registered dataset of `count` one-exchange conversations (some with two exchanges)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        user, answer = CORPUS[(2 * i) % len(CORPUS)], CORPUS[(2 * i + 1) % len(CORPUS)]
        messages = [
            {"role": "user", "content": f"{user} ({i})"},
            {"role": "assistant", "content": answer},
        ]
        if i % 3 == 0:
            messages += [
                {"role": "user", "content": CORPUS[(i + 4) % len(CORPUS)]},
                {"role": "assistant", "content": CORPUS[(i + 5) % len(CORPUS)]},
            ]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    register_dataset(folder, name, canonical_entry(f"{name}.jsonl"))
    return folder


def tiny_overrides(model_dir: Path, data_dir: Path, output_dir: Path, **extra) -> list[str]:
    """key=value pairs for a few fast, deterministic steps on the tiny model."""
    values = {
        "model_name_or_path": model_dir,
        "dataset": "toy",
        "dataset_dir": data_dir,
        "output_dir": output_dir,
        "max_steps": 4,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": 5e-3,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "save_steps": 2,
        "val_size": 0.2,
        "cutoff_len": 512,
        "bf16": False,  # float32: the same numbers on every CPU
        "seed": 42,
        "torch_threads": 1,  # a tiny model gains nothing from threads; a shared CPU loses a lot
        **extra,
    }
    return [f"{key}={value}" for key, value in values.items()]


def read_log(output_dir: Path) -> list[dict]:
    text = (output_dir / "trainer_log.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


# Losses of the first four steps for seed 42 (bf16 off). If rendering, labels, the split, data
# order or LoRA setup change, these move: check the change is intended, then update them.
GOLDEN_LOSSES = [6.4219, 6.3721, 6.3615, 6.2962]


@pytest.fixture
def toy_data(tmp_path):
    return make_toy_dataset(tmp_path / "data")


def test_cli_trains_tiny_model_to_golden_losses(tiny_model_dir, toy_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli_main(["train", *tiny_overrides(tiny_model_dir, toy_data, out, plot_loss=True)])
    assert rc == 0
    log = read_log(out)
    losses = [e["loss"] for e in log if "loss" in e]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]
    assert losses == pytest.approx(GOLDEN_LOSSES, abs=2e-3)
    assert losses[-1] < losses[0] - 0.05  # it learns
    assert [e["step"] for e in log if "eval_loss" in e] == [2, 4]
    for entry in log:
        assert set(entry) >= {"step", "epoch", "elapsed_s", "total_steps"}
    assert all("lr" in e and "tokens_per_s" in e for e in log if "loss" in e)
    assert str(out) in capsys.readouterr().out
    check_outputs(out)


def check_outputs(out: Path) -> None:
    """What a finished run leaves in output_dir (shares the golden run: one run is enough)."""
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer_config.json",
        "anxin_template.json",
        "train_results.json",
        "eval_results.json",
        "run.json",
    ):
        assert (out / name).is_file(), name
    for png in ("training_loss.png", "training_eval_loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for checkpoint in out.glob("checkpoint-*"):  # each one usable as an adapter on its own
        for name in ("anxin_checkpoint.json", "anxin_template.json", "adapter_model.safetensors"):
            assert (checkpoint / name).is_file(), f"{checkpoint.name}/{name}"
    assert not list(out.glob(".*.tmp"))

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"
    assert run["config"]["learning_rate"] == 5e-3
    assert run["seed"] == 42
    assert len(run["data"]["fingerprints"]["train"]) == 64
    assert run["data"]["train"]["conversations"] + run["data"]["validation"]["conversations"] == 24
    held_out = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert len(held_out) == run["data"]["validation"]["conversations"] > 0
    assert held_out[0]["messages"][0]["role"] == "system"  # rendered exactly as in training
    assert run["machine"]["precision"] == "fp32"
    assert {"torch", "transformers", "peft"} <= set(run["versions"])

    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 4 and results["train_tokens_per_second"] > 0
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert evaluation["eval_perplexity"] > 1

    card = json.loads((out / "anxin_template.json").read_text())
    assert card["end_of_turn_token"] == "<|im_end|>"
    assert card["system_prompt"].startswith("你是安心")


def test_refuses_non_empty_output_dir(tiny_model_dir, toy_data, tmp_path):
    from anxin.train import load_train_config, train

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="overwrite_output_dir"):
        train(load_train_config(None, tiny_overrides(tiny_model_dir, toy_data, out)))
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_output_dir_replaces_old_checkpoints(tiny_model_dir, toy_data, tmp_path):
    from anxin.train import load_train_config, train

    out = tmp_path / "run"
    (out / "checkpoint-99").mkdir(parents=True)
    (out / "trainer_log.jsonl").write_text('{"step": 99, "loss": 1.0}\n')
    # The same run also covers adapters on named modules, length-grouped batches and TensorBoard.
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    overrides = tiny_overrides(
        tiny_model_dir, toy_data, out, max_steps=2, overwrite_output_dir=True,
        lora_target="q_proj,v_proj", group_by_length=True,
        report_to="tensorboard" if tensorboard else "none",
    )  # fmt: skip
    result = train(load_train_config(None, overrides))
    assert result.global_step == 2
    assert not (out / "checkpoint-99").exists()
    assert max(e["step"] for e in read_log(out)) == 2
    check_adapter_loads(tiny_model_dir, out, {"q_proj", "v_proj"})
    if tensorboard:
        assert list(out.glob("runs/*/events.out.tfevents.*"))


def check_adapter_loads(base: Path, adapter: Path, modules: set[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert adapted == modules


def test_unknown_dataset_fails_before_model_loads(tmp_path, toy_data, capsys):
    missing_model = tmp_path / "no-model-here"
    rc = cli_main(
        [
            "train",
            *tiny_overrides(missing_model, toy_data, tmp_path / "run", dataset="nope"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown dataset 'nope'" in err and "toy" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_qlora_on_cpu_is_a_clear_error(tiny_model_dir, toy_data, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    overrides = tiny_overrides(tiny_model_dir, toy_data, tmp_path / "run", quantization_bit=4)
    assert cli_main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert "quantization_bit" in err and "CUDA GPU" in err


def test_best_checkpoint_is_restored_at_the_end(tiny_model_dir, toy_data, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from anxin.train import load_train_config, train

    class DivergeAfterStep2(TrainerCallback):
        """Wreck the adapter after the best checkpoint, as a diverging run would."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                generator = torch.Generator().manual_seed(0)
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.data = torch.randn(param.shape, generator=generator) * 5

    out = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_model_dir, toy_data, out, load_best_model_at_end=True, save_total_limit=1
    )
    result = train(load_train_config(None, overrides), callbacks=[DivergeAfterStep2()])
    evaluations = {e["step"]: e["eval_loss"] for e in read_log(out) if "eval_loss" in e}
    assert evaluations[2] < evaluations[4]
    assert result.eval_loss == pytest.approx(evaluations[2], abs=1e-6)
    assert json.loads((out / "eval_results.json").read_text())["eval_weights_step"] == 2
    saved = load_file(out / "adapter_model.safetensors")
    best = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert all(saved[name].equal(tensor) for name, tensor in best.items())
    # save_total_limit=1 keeps the newest checkpoint and the best one.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_do_eval_generation_scores_generated_replies(tiny_model_dir, toy_data, tmp_path):
    from anxin.train import load_train_config, train

    out = tmp_path / "gen"
    overrides = tiny_overrides(
        tiny_model_dir, toy_data, out, max_steps=1, do_eval_generation=True, eval_generation_turns=3
    )
    result = train(load_train_config(None, overrides))
    evaluation = json.loads((out / "eval_results.json").read_text())
    assert result.eval_loss is not None
    for key in ("eval_gen_bleu-4", "eval_gen_rouge-l", "eval_gen_distinct-1"):
        assert 0 <= evaluation[key] <= 100, key


def test_cpu_bf16_keeps_frozen_matmul_weights_in_bf16_with_the_same_numbers(
    tiny_model_dir, toy_data, tmp_path
):
    from anxin.train import load_train_config
    from anxin.train.build import load_model
    from anxin.train.environment import Precision, processes

    cfg = load_train_config(None, tiny_overrides(tiny_model_dir, toy_data, tmp_path / "o"))
    lean = load_model(cfg, str(tiny_model_dir), Precision("bf16", "test"), processes())
    plain = load_model(cfg, str(tiny_model_dir), Precision("fp32", "test"), processes())
    dtypes = {name: p.dtype for name, p in lean.named_parameters()}
    matmuls = [n for n in dtypes if ("mlp." in n or "self_attn." in n) and "lora_" not in n]
    assert matmuls and {dtypes[n] for n in matmuls} == {torch.bfloat16}
    trained = [n for n, p in lean.named_parameters() if p.requires_grad]
    assert trained and all(dtypes[n] == torch.float32 for n in trained)  # LoRA stays float32
    assert {d for n, d in dtypes.items() if "norm" in n or "embed" in n} == {torch.float32}
    assert lean.get_output_embeddings().weight.dtype == torch.float32

    # Under autocast the float32 model casts the same weights to bf16 at every forward.
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8, 9, 10]])}
    batch["labels"] = batch["input_ids"].clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = [model(**batch).loss for model in (lean, plain)]
    assert losses[0].item() == pytest.approx(losses[1].item(), rel=1e-6)
    losses[0].backward()
    losses[1].backward()
    for (name, a), b in zip(lean.named_parameters(), plain.parameters()):
        if a.requires_grad:
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), name
