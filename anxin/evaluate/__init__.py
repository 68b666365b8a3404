"""`anxin eval`: how good is a model on held-out dialogues, and did fine-tuning help?

    anxin eval --model smollm2 --adapter saves/sft --data data/val.jsonl \\
               --compare smollm2 --out saves/sft/eval

For each model (the one under test, then the `--compare` baseline, one at a time in memory):

1. teacher-forced loss and perplexity on assistant tokens only, overall and by reply position;
2. the same sampled assistant turns regenerated from their real context through the Engine
   (template, persona, care layer), scored against the counsellor's reply: BLEU-4, ROUGE-1/2/L,
   Distinct-1/2, length, and the shares of empty, looping and wrong-language replies;
3. what the care layer did to those replies.

With --judge URL, an LLM judge also scores every reply and compares the two models
(`anxin.evaluate.judge`); `anxin eval simulate` (`anxin.evaluate.simulate`) runs simulated
clients against the whole system.

Outputs in --out: report.md (table with deltas, sample turns, settings), metrics.json and
metrics.png; --predict-out FILE adds LLaMA-Factory's generated_predictions.jsonl. `run_eval(cfg)` does it all from Python; `evaluate_model(engine, records, ...)`
measures one engine that is already loaded (the end of a training run).
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import asdict, dataclass
from functools import partial
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
    sample_indices,
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
    last_turn_only: bool = arg(
        False, "regenerate only each dialogue's last reply, as LLaMA-Factory's do_predict does"
    )
    loss: bool = arg(True, "teacher-forced loss and perplexity on every dialogue")
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
    predict_out: str | None = arg(
        None,
        "also write the evaluated turns as LLaMA-Factory's generated_predictions.jsonl "
        "(prompt, predict, label); the --compare model's go to FILE's stem + .baseline",
        metavar="FILE",
    )
    judge: str | None = arg(
        None,
        "an OpenAI-compatible server (vLLM, SGLang, Ollama, a hosted API) whose model scores "
        "every reply on the counselling rubric, and compares the two models both ways",
        metavar="URL",
    )
    judge_model: str | None = arg(
        None, "the judge's model name (default: the server's first model)", metavar="NAME"
    )
    judge_key_env: str | None = arg(
        None,
        "NAME of the environment variable that holds the judge's API key (never the key)",
        metavar="NAME",
    )
    judge_repeats: int = arg(
        10, "turns the judge scores twice, to show its self-consistency", metavar="N"
    )
    judge_max_tokens: int = arg(512, "longest judge answer", metavar="N")
    judge_concurrency: int = arg(4, "judge calls in flight at once", metavar="N")
    judge_timeout: float = arg(120.0, "seconds per judge call before it is retried", metavar="S")
    judge_retries: int = arg(
        5, "retries of a call on 429, 5xx and timeouts (backoff, Retry-After)", metavar="N"
    )

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
        self._check_judge()

    def _check_judge(self) -> None:
        for name in ("judge_max_tokens", "judge_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("judge_repeats", "judge_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.judge_timeout <= 0:
            raise ValueError(f"judge_timeout must be > 0, got {self.judge_timeout}")
        if not self.judge and (self.judge_model or self.judge_key_env):
            raise ValueError("judge_model and judge_key_env need judge (the server's URL)")
        if self.judge and self.max_turns == 0:
            raise ValueError("judge needs replies to score: max_turns must not be 0")

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


def _measure(cfg: EvalConfig, model, adapter, records, turns, label: str):
    """The model's ModelRun, and its rendered prompts when --predict-out wants them."""
    from anxin.engine import Engine
    from anxin.evaluate.predictions import rendered_prompt

    engine = Engine.from_pretrained(
        model,
        adapter,
        device=cfg.device,
        dtype=cfg.dtype,
        template=cfg.template,
        system_prompt=cfg.system_prompt,
    )
    try:
        run = measure_model(
            engine,
            records,
            turns,
            batch_size=cfg.batch_size,
            cutoff_len=cfg.cutoff_len,
            settings=cfg.generation_settings(),
            loss=cfg.loss,
            progress=cfg.progress,
            label=label,
        )
        args = (cfg.max_new_tokens, cfg.cutoff_len)
        wanted = turns if cfg.predict_out else []
        return run, [rendered_prompt(engine, turn.context, *args) for turn in wanted]
    finally:
        del engine
        gc.collect()  # one model in memory at a time


def run_eval(cfg: EvalConfig) -> dict:
    """Measure the model (and the baseline), write the outputs, return metrics.json's content."""
    records = load_dialogues(cfg.data, cfg.max_samples, cfg.seed)
    turns = pick_turns(records, cfg.max_turns, cfg.seed, last_only=cfg.last_turn_only)
    candidates = {"model": (cfg.model, cfg.adapter)}
    if cfg.compare:
        candidates["baseline"] = parse_model_ref(cfg.compare)
    # Connected first: a wrong URL or key fails in seconds, not after the replies.
    judge = connect_judge(cfg, len(turns), len(candidates))
    models, replies, prompts = {}, {}, {}
    for label, (model, adapter) in candidates.items():
        run, prompts[label] = _measure(cfg, model, adapter, records, turns, label)
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
    if cfg.predict_out:
        _write_predictions(cfg.predict_out, prompts, replies, turns)
    sections, panels = [], []
    if judge is not None:
        metrics["judge"], sections, panels = _judge(cfg, judge, turns, replies)
    write_outputs(Path(cfg.out), metrics, turns, replies, cfg.samples, sections, panels)
    return metrics


def connect_judge(cfg: EvalConfig, turns: int, models: int):
    """The judge's client (None without --judge), after saying what judging will cost."""
    if not cfg.judge:
        return None
    from anxin.evaluate.judge import call_count
    from anxin.llm import LLMClient

    judge = LLMClient.connect(
        cfg.judge,
        cfg.judge_model,
        cfg.judge_key_env,
        role="judge",
        concurrency=cfg.judge_concurrency,
        timeout=cfg.judge_timeout,
        retries=cfg.judge_retries,
        progress=cfg.progress,
    )
    repeats = min(cfg.judge_repeats, turns)
    pairwise = " + 2 x turns (both orders)" if models == 2 else ""
    print(
        f"judge: {judge.model} at {judge.base_url}: {call_count(turns, models, repeats)} calls "
        f"= {turns} turns x {models} models{pairwise} + {repeats} repeats, plus one retry "
        "per invalid answer; answers already cached cost nothing",
        file=sys.stderr,
    )
    return judge


def _judge(cfg: EvalConfig, judge, turns, replies):
    """metrics.json's judge entry, and the report sections and plot panel that show it."""
    from anxin.evaluate.judge import judge_turns
    from anxin.evaluate.judge_report import draw_judge_panel, judge_sections

    repeats = sample_indices(len(turns), cfg.judge_repeats)
    run = judge_turns(
        judge, turns, replies, repeats=repeats, max_tokens=cfg.judge_max_tokens, seed=cfg.seed
    )
    print(judge.usage_line(), file=sys.stderr)
    sections = judge_sections(run.metrics, turns, replies, run.reasons, cfg.samples)
    return run.metrics, sections, [partial(draw_judge_panel, judge=run.metrics)]


def _write_predictions(path: str, prompts: dict, replies: dict, turns) -> None:
    from anxin.evaluate.predictions import prediction_file, write_predictions

    for label, texts in replies.items():
        target = prediction_file(path, label)
        write_predictions(target, prompts[label], texts, turns)
        print(f"wrote {target} ({len(texts)} predictions)", file=sys.stderr)


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

  # an LLM judge scores each reply (CPsyCoun rubric) and compares both models both ways
  anxin eval --adapter saves/sft --compare smollm2 --data val.jsonl --out cmp --max-turns 50 \
             --judge http://gpu:8000/v1 --judge-model Qwen2.5-72B-Instruct
  anxin eval --adapter saves/sft --data val.jsonl --out judged --judge https://api.openai.com/v1 \\
             --judge-model gpt-4o --judge-key-env OPENAI_API_KEY

  # simulated clients in crisis against the system, rated by a judge: see
  anxin eval simulate --help

Replies are generated through the same Engine as `anxin chat` (template, persona, care layer),
greedy by default so runs compare. --seed picks the turns and seeds sampling.
Cost grows with --max-turns × (--cutoff-len + --max-new-tokens): lower them for a quick look.
report.md shows a few sample turns (use --samples 0 to leave conversation text out);
nothing is logged. Judge calls = turns x models + 2 x turns with --compare + --judge-repeats;
answers are cached in $ANXIN_HOME/cache/llm, so a rerun or a resumed Ctrl-C costs nothing."""


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
