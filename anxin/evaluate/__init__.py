"""`anxin eval`: how good is a model on held-out dialogues, and did fine-tuning help?

    anxin eval --model smollm2 --adapter saves/sft --data data/val.jsonl \\
               --compare smollm2 --out saves/sft/eval

For each model (the one under test, then the `--compare` baseline, one at a time in memory):

1. teacher-forced loss and perplexity on assistant tokens only, overall and by reply position;
2. the same sampled assistant turns regenerated from their real context through the Engine
   (template, persona, care layer), scored against the counsellor's reply: BLEU-4, ROUGE-1/2/L,
   Distinct-1/2, length, and the shares of empty, looping and wrong-language replies;
3. what the care layer did to those replies.

Outputs in --out: report.md (table with deltas, sample turns, settings), metrics.json and
metrics.png. `run_eval(cfg)` does it all from Python; `evaluate_model(engine, records, ...)`
measures one engine that is already loaded (the end of a training run).
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import asdict, dataclass
from pathlib import Path

from anxin.config import add_flags, arg, from_flags
from anxin.evaluate.measure import (
    ModelRun,
    Turn,
    all_turns,
    evaluate_model,
    load_dialogues,
    measure_model,
    pick_turns,
)
from anxin.evaluate.report import (
    flat_metrics,
    metric_table,
    plain_table,
    timing_lines,
    write_outputs,
)

__all__ = [
    "EvalConfig",
    "ModelRun",
    "Turn",
    "add_arguments",
    "evaluate_model",
    "load_dialogues",
    "main",
    "pick_turns",
    "run_eval",
]


def _turn_count(text: str) -> int | None:
    if text == "all":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'all'")
    return value


@dataclass
class EvalConfig:
    """Everything `anxin eval` needs; its flags are built from these fields (`add_flags`)."""

    data: str = arg(help="held-out dialogues, any format `anxin data` reads", metavar="FILE")
    out: str = arg(help="folder for report.md, metrics.json and metrics.png", metavar="DIR")
    model: str | None = arg(
        None, "a name (smollm2), HF folder, .gguf or hub id (default: smollm2)", metavar="MODEL"
    )
    adapter: str | None = arg(None, "LoRA adapter folder to apply to --model", metavar="DIR")
    compare: str | None = arg(
        None, "baseline evaluated on the same turns", metavar="MODEL[:ADAPTER]"
    )
    max_turns: int | None = arg(
        100,
        "replies to regenerate, sampled by --seed ('all', or 0 for loss only)",
        type=_turn_count,
        metavar="N|all",
    )
    max_samples: int | None = arg(None, "use at most N dialogues (default: all)", metavar="N")
    batch_size: int = arg(8, "batch for loss and replies", metavar="N")
    cutoff_len: int = arg(
        1024, "tokens per scored dialogue, and per prompt + reply, as in training", metavar="N"
    )
    max_new_tokens: int = arg(128, "longest reply", metavar="N")
    temperature: float = arg(0.0, "0 = greedy, so two runs (and two models) compare", metavar="T")
    repetition_penalty: float | None = arg(
        None, "default: the Engine's, what chat uses (1.1)", metavar="P"
    )
    seed: int = arg(42, "picks the turns and seeds sampling", metavar="N")
    samples: int = arg(5, "sample turns shown side by side in report.md", metavar="N")
    device: str = arg("auto", "auto, cpu or cuda")
    dtype: str = arg("auto", "auto, float32, bfloat16 or float16")
    template: str | None = arg(None, "chat template override (default: the tokenizer's)")
    system_prompt: str | None = arg(
        None, "persona (default: the model's saved one)", metavar="TEXT"
    )
    progress: bool = arg(True, "progress bars")

    def __post_init__(self):
        for name in ("batch_size", "cutoff_len", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_turns", "max_samples", "samples"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    def generation_settings(self) -> dict:
        settings = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        if self.repetition_penalty is not None:
            settings["repetition_penalty"] = self.repetition_penalty
        return settings


def parse_model_ref(text: str) -> tuple[str, str | None]:
    """'MODEL[:ADAPTER]' → (model, adapter); a path that exists is never split."""
    if ":" not in text or Path(text).expanduser().exists():
        return text, None
    model, adapter = text.split(":", 1)
    return model, adapter or None


def describe(model: str | None, adapter: str | None) -> str:
    return (model or "smollm2") + (f" + {adapter}" if adapter else "")


def _measure(cfg: EvalConfig, model, adapter, records, turns, label: str) -> ModelRun:
    from anxin.engine import Engine

    engine = Engine.from_pretrained(
        model,
        adapter,
        device=cfg.device,
        dtype=cfg.dtype,
        template=cfg.template,
        system_prompt=cfg.system_prompt,
    )
    try:
        return measure_model(
            engine,
            records,
            turns,
            batch_size=cfg.batch_size,
            cutoff_len=cfg.cutoff_len,
            settings=cfg.generation_settings(),
            progress=cfg.progress,
            label=label,
        )
    finally:
        del engine
        gc.collect()  # one model in memory at a time


def run_eval(cfg: EvalConfig) -> dict:
    """Measure the model (and the baseline), write the outputs, return metrics.json's content."""
    records = load_dialogues(cfg.data, cfg.max_samples, cfg.seed)
    turns = pick_turns(records, cfg.max_turns, cfg.seed)
    candidates = {"model": (cfg.model, cfg.adapter)}
    if cfg.compare:
        candidates["baseline"] = parse_model_ref(cfg.compare)
    models, replies = {}, {}
    for label, (model, adapter) in candidates.items():
        run = _measure(cfg, model, adapter, records, turns, label)
        flat = flat_metrics(run.metrics)
        models[label] = {"reference": describe(model, adapter), **run.metrics, "flat": flat}
        replies[label] = run.replies
    metrics = {
        "settings": asdict(cfg),
        "data": {
            "file": cfg.data,
            "dialogues": len(records),
            "assistant_turns": len(all_turns(records)),
            "turns_evaluated": len(turns),
        },
        "models": models,
    }
    if "baseline" in models:
        model_flat, base_flat = models["model"]["flat"], models["baseline"]["flat"]
        metrics["delta"] = {k: v - base_flat[k] for k, v in model_flat.items() if k in base_flat}
    write_outputs(Path(cfg.out), metrics, turns, replies, cfg.samples)
    return metrics


# --- the command ------------------------------------------------------------------------------

EPILOG = """\
examples:
  # the fine-tuned adapter against its base, 100 sampled replies, greedy
  anxin eval --model smollm2 --adapter saves/smollm2-135m/lora/sft \\
             --data data/smile_val.jsonl --compare smollm2 --out saves/eval

  # loss and perplexity only (no generation), every dialogue
  anxin eval --model saves/merged --data data/smile_val.jsonl --max-turns 0 --out saves/eval

  # two adapters of one base: --compare MODEL:ADAPTER
  anxin eval --adapter saves/run2 --compare smollm2:saves/run1 --data val.jsonl --out cmp

Replies are generated through the same Engine as `anxin chat` (template, persona, care layer),
greedy by default so runs compare. --seed picks the turns and seeds sampling.
Cost grows with --max-turns × (--cutoff-len + --max-new-tokens): lower them for a quick look.
report.md shows a few sample turns (use --samples 0 to leave conversation text out);
nothing is logged."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Evaluate a model on held-out dialogues: loss and perplexity on assistant tokens, "
        "BLEU-4/ROUGE/Distinct of regenerated replies, problem replies and the care layer's "
        "actions; with --compare, side by side with a baseline. Writes report.md, "
        "metrics.json and metrics.png."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_flags(parser, EvalConfig)


def main(args: argparse.Namespace) -> int:
    cfg = from_flags(EvalConfig, args)
    metrics = run_eval(cfg)
    flats = {name: model["flat"] for name, model in metrics["models"].items()}
    print(plain_table(metric_table(flats)))
    print("\n".join(["", *timing_lines(metrics)]))
    print(f"\nwrote {Path(cfg.out) / 'report.md'}, metrics.json, metrics.png")
    return 0
