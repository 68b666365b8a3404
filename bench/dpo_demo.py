"""The CPU DPO demo, measured: configs/smollm2-135m/dpo.yaml after configs/smollm2-135m/lora_sft.yaml.

    flock /work/notes/bench.lock .venv/bin/python -m anxin train configs/smollm2-135m/lora_sft.yaml
    flock /work/notes/bench.lock .venv/bin/python -m bench.dpo_demo

Before and after DPO (the SFT adapter, then the DPO adapter that continues it), on the same
held-out data:
  - the 32 held-out pairs of the DPO run (its val_size split of data/anxin_pairs.jsonl): the
    share the model ranks right, by total and by mean log-probability per answer token of the
    chosen against the rejected answer (DPO's own reward accuracy is 0 before training by
    definition: the policy is its reference; after, it is in eval_results.json);
  - the SFT run's held-out dialogues (its validation.jsonl): the teacher-forced loss on the
    counsellor's replies, i.e. whether preference training made the model forget what SFT
    taught it.
The DPO run itself is timed (wall time, peak memory) as a child process. Results go to
bench/results/dpo_demo.{json,md}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from anxin.atomic import write_json, write_text
from bench.common import anxin_environment, machine_facts, run_measured

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "configs" / "smollm2-135m" / "dpo.yaml"


def load_adapter_model(cfg, adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from anxin.models import load_tokenizer, resolve_model
    from anxin.template import apply_template

    path = resolve_model(cfg.model.model_name_or_path)
    tokenizer = load_tokenizer(path)
    apply_template(tokenizer, cfg.model.template)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return PeftModel.from_pretrained(base, adapter).eval(), tokenizer


def pair_scores(model, tokenizer, pairs: list[dict], cutoff_len: int) -> dict:
    """How often the model prefers the chosen answer, by total and by mean log-probability."""
    import torch

    from anxin.train.preference_data import tokenize_pairs

    rows, _ = tokenize_pairs(pairs, tokenizer, cutoff_len)
    by_sum = by_mean = 0
    margins = []
    for row in rows:
        totals, means = [], []
        for answer in (row["chosen_ids"], row["rejected_ids"]):
            ids = torch.tensor([row["prompt_ids"] + answer])
            with torch.inference_mode():
                logits = model(input_ids=ids).logits[0, len(row["prompt_ids"]) - 1 : -1]
            logps = torch.log_softmax(logits.float(), -1).gather(
                -1, ids[0, len(row["prompt_ids"]) :, None]
            )
            totals.append(logps.sum().item())
            means.append(logps.mean().item())
        by_sum += totals[0] > totals[1]
        by_mean += means[0] > means[1]
        margins.append(means[0] - means[1])
    return {
        "pairs": len(rows),
        "prefers_chosen_by_total_logp": round(by_sum / len(rows), 4),
        "prefers_chosen_by_mean_logp": round(by_mean / len(rows), 4),
        "mean_logp_margin": round(sum(margins) / len(margins), 4),
    }


def sft_loss(model, tokenizer, dialogues: list[dict], cutoff_len: int) -> dict:
    from anxin.loss import teacher_forced_loss

    result = teacher_forced_loss(
        model, tokenizer, [d["messages"] for d in dialogues], cutoff_len=cutoff_len, progress=False
    )
    return {"loss": round(result["loss"], 4), "perplexity": round(result["perplexity"], 3)}


def measure(cfg, adapter: Path, pairs: list[dict], dialogues: list[dict]) -> dict:
    import gc

    model, tokenizer = load_adapter_model(cfg, adapter)
    result = {
        "adapter": str(adapter.relative_to(ROOT)) if adapter.is_relative_to(ROOT) else str(adapter),
        "held_out_pairs": pair_scores(model, tokenizer, pairs, cfg.data.cutoff_len),
        "sft_validation": sft_loss(model, tokenizer, dialogues, cfg.data.cutoff_len),
    }
    del model
    gc.collect()
    return result


def main() -> int:
    from anxin.train import load_train_config
    from anxin.train.preference_data import load_preferences

    cfg = load_train_config(CONFIG)
    sft_dir = ROOT / cfg.model.adapter_name_or_path
    dpo_dir = ROOT / cfg.output.output_dir
    if not (sft_dir / "adapter_config.json").is_file():
        raise SystemExit(f"{sft_dir}: no SFT adapter; run configs/smollm2-135m/lora_sft.yaml first")
    pairs = load_preferences(cfg.data, "dpo", cfg.model.default_system, cfg.train.seed).validation
    dialogues = [
        json.loads(line) for line in (sft_dir / "validation.jsonl").read_text().splitlines()
    ]
    report = {
        "benchmark": "dpo_demo",
        "config": str(CONFIG.relative_to(ROOT)),
        "machine": machine_facts(),
    }
    report["before"] = measure(cfg, sft_dir, pairs, dialogues)
    print(json.dumps(report["before"], indent=1), file=sys.stderr)

    log = RESULTS / "dpo_demo-train.log"
    command = [sys.executable, "-m", "anxin", "train", str(CONFIG), "overwrite_output_dir=true"]
    run = run_measured(command, log, env=anxin_environment(), cwd=ROOT)
    report["dpo_run"] = {
        "returncode": run.returncode, "wall_s": run.wall_s, "peak_rss_mib": run.peak_rss_mib,
        "load_before": run.load_before, "load_after": run.load_after,
        "train": json.loads((dpo_dir / "train_results.json").read_text()),
        "eval": json.loads((dpo_dir / "eval_results.json").read_text()),
    }  # fmt: skip
    report["after"] = measure(cfg, dpo_dir, pairs, dialogues)
    report["finished_at"] = time.strftime("%FT%T")
    write_json(RESULTS / "dpo_demo.json", report)
    write_text(RESULTS / "dpo_demo.md", markdown(report))
    print(markdown(report))
    return run.returncode


def markdown(report: dict) -> str:
    before, after, run = report["before"], report["after"], report["dpo_run"]
    rows = [
        ("held-out pairs ranked right, total log-prob", "held_out_pairs", "prefers_chosen_by_total_logp"),
        ("held-out pairs ranked right, mean log-prob per token", "held_out_pairs", "prefers_chosen_by_mean_logp"),
        ("mean log-prob margin chosen − rejected (per token)", "held_out_pairs", "mean_logp_margin"),
        ("SFT validation loss (forgetting)", "sft_validation", "loss"),
        ("SFT validation perplexity", "sft_validation", "perplexity"),
    ]  # fmt: skip
    lines = ["| on held-out data | before DPO (SFT adapter) | after DPO |", "|---|---:|---:|"]
    lines += [f"| {label} | {before[a][b]} | {after[a][b]} |" for label, a, b in rows]
    evaluation = run["eval"]
    facts = report["machine"]
    return "\n".join(
        [
            f"- Config: {report['config']}; {before['held_out_pairs']['pairs']} held-out pairs; "
            f"machine: {facts['cpu']}, {facts['usable_cores']} cores, native bf16 "
            f"{facts['cpu_native_bf16']}, load average {run['load_before']} at the DPO run's start.",
            f"- DPO run: {run['wall_s']:.0f} s wall (model load, {run['train']['global_step']} "
            f"steps, the held-out evaluation in {run['eval']['eval_runtime']:.0f} s, save), peak RSS {run['peak_rss_mib']:.0f} MiB, "
            f"{run['train'].get('train_tokens_per_second')} tokens/s; DPO reward accuracy on "
            f"the held-out pairs {evaluation.get('eval_rewards/accuracies', 0):.3f}, margin "
            f"{evaluation.get('eval_rewards/margins', 0):.4f}, eval loss {evaluation['eval_loss']:.4f}.",
            "",
            *lines,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
