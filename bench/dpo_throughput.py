"""DPO throughput, side by side: `anxin train` (stage dpo) against LLaMA-Factory 0.9.5's
`llamafactory-cli train` (stage dpo), on the same model, preference pairs and recipe.

    flock /work/notes/bench.lock .venv/bin/python -m bench.dpo_throughput            # 2 rounds
    flock /work/notes/bench.lock .venv/bin/python -m bench.dpo_throughput --rounds 3 --steps 6

What is the same for both tools:
  model   the embedded SmolLM2-135M-Instruct HF folder (`anxin.models.pull_model("smollm2")`)
  data    the bundled pairs (data/anxin_pairs.jsonl), each with anxin's persona as its system
          message, in LLaMA-Factory's sharegpt ranking layout, which both read. The training
          slice holds exactly steps × grad-accum pairs whose prompt and longer answer fit
          cutoff_len (so neither tool truncates), the evaluation slice the next ones.
  recipe  RECIPE below: a new LoRA adapter on q_proj,v_proj, sigmoid DPO with beta 0.1; the
          reference is the base model with the adapter disabled in both tools.
What each tool decides for itself, as in bench/train_throughput.py: precision, gradient
checkpointing (LLaMA-Factory turns it on by default) and how it computes the log-probabilities.

Tokens are counted once with anxin's renderer, for both: a pair is read twice per pass (prompt +
chosen, prompt + rejected), so tokens = 2 × prompt + chosen + rejected, over each tool's own
train_runtime. Runs alternate A B A B ... in fresh processes; the report (every run, medians,
ratios, final losses and reward accuracies, machine facts) goes to
bench/results/dpo_throughput.{json,md} and is rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from anxin.atomic import write_json, write_jsonl, write_text
from bench.common import machine_facts
from bench.llamafactory import LF_VERSION, ensure_llamafactory, lf_settings
from bench.train_throughput import RunResult as SFTRunResult
from bench.train_throughput import (
    _brief,
    _read_json,
    _rounded,
    parse_sets,
    round_ratios,
    run_tool,
    step_log,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "saves" / "bench_dpo_throughput"  # saves/ is git-ignored
PAIRS = ROOT / "data" / "anxin_pairs.jsonl"

RECIPE = {
    "stage": "dpo",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_target": "q_proj,v_proj",
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "pref_beta": 0.1,
    "pref_loss": "sigmoid",
    "template": "smollm2",
    "dataset": "bench_pairs",
    "eval_dataset": "bench_pairs_eval",
    "cutoff_len": 512,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "per_device_eval_batch_size": 4,
    "learning_rate": 5.0e-5,
    "lr_scheduler_type": "cosine",
    "logging_steps": 1,
    "eval_strategy": "no",  # one evaluation, at the end
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
}
ANXIN_ONLY: dict = {}
LF_ONLY = {"do_eval": True, "use_cpu": True}
TOOLS = ("anxin", "llamafactory")


@dataclass
class RunResult(SFTRunResult):
    """A DPO run: the SFT benchmark's figures plus the final rewards."""

    eval_reward_accuracy: float | None = None
    eval_reward_margin: float | None = None
    train_reward_accuracy_final: float | None = None


# --- the data ---------------------------------------------------------------------------------


@dataclass
class PairSlice:
    train: list[dict]
    validation: list[dict]
    tokens: int  # 2 × prompt + chosen + rejected, over the training pairs
    answer_tokens: int  # chosen + rejected


def make_pair_slice(model_dir: str, n_train: int, n_eval: int, cutoff_len: int) -> PairSlice:
    """The first n_train + n_eval bundled pairs that fit cutoff_len whole, persona added."""
    from transformers import AutoTokenizer

    from anxin.template import with_system
    from anxin.train.preference_data import answer_tokens

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chosen, counts = [], []
    for line in PAIRS.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        messages = with_system(record["messages"])
        prompt, answer_c = answer_tokens(tokenizer, messages, record["chosen"]["content"])
        _, answer_r = answer_tokens(tokenizer, messages, record["rejected"]["content"])
        if len(prompt) + max(len(answer_c), len(answer_r)) > cutoff_len:
            continue
        pair = {"messages": messages, "chosen": record["chosen"], "rejected": record["rejected"]}
        chosen.append(pair)
        counts.append(
            (2 * len(prompt) + len(answer_c) + len(answer_r), len(answer_c) + len(answer_r))
        )
        if len(chosen) == n_train + n_eval:
            break
    if len(chosen) < n_train + n_eval:
        raise SystemExit(f"{PAIRS}: only {len(chosen)} pairs fit cutoff_len {cutoff_len}")
    return PairSlice(
        train=chosen[:n_train],
        validation=chosen[n_train:],
        tokens=sum(c[0] for c in counts[:n_train]),
        answer_tokens=sum(c[1] for c in counts[:n_train]),
    )


def register_pairs(data: PairSlice, dataset_dir: Path) -> None:
    """Both files and a dataset_info.json that LLaMA-Factory and anxin both read."""
    from anxin.data.pairs import ranking_entry

    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(dataset_dir / "bench_pairs.jsonl", data.train)
    write_jsonl(dataset_dir / "bench_pairs_eval.jsonl", data.validation)
    info = {
        "bench_pairs": ranking_entry("bench_pairs.jsonl"),
        "bench_pairs_eval": ranking_entry("bench_pairs_eval.jsonl"),
    }
    write_json(dataset_dir / "dataset_info.json", info)


# --- one run ----------------------------------------------------------------------------------


def collect(result: RunResult, output_dir: Path, data: PairSlice, steps: int) -> RunResult:
    """Fill a run's figures from the files the tool wrote."""
    train = _read_json(output_dir / "train_results.json")
    evaluation = _read_json(output_dir / "eval_results.json")
    runtime = train.get("train_runtime")
    if runtime:
        result.train_runtime_s = round(runtime, 2)
        result.s_per_step = round(runtime / steps, 2)
        result.tokens_per_s = round(data.tokens / runtime, 1)
        result.assistant_tokens_per_s = round(data.answer_tokens / runtime, 1)
    result.train_loss_mean = _rounded(train.get("train_loss"))
    result.eval_loss = _rounded(evaluation.get("eval_loss"))
    result.eval_s = _rounded(evaluation.get("eval_runtime"), 2)
    result.eval_reward_accuracy = _rounded(evaluation.get("eval_rewards/accuracies"))
    result.eval_reward_margin = _rounded(evaluation.get("eval_rewards/margins"))
    rows = step_log(output_dir)
    if rows:
        result.train_loss_final = _rounded(rows[-1][2])
    if len(rows) >= 2 and rows[-1][0] > rows[0][0]:
        steady = (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])
        result.s_per_step_steady = round(steady, 2)
    history = _read_json(output_dir / "trainer_state.json").get("log_history", [])
    accuracies = [e["rewards/accuracies"] for e in history if "rewards/accuracies" in e]
    if not accuracies:  # anxin keeps no trainer_state.json at the end: its own log has them
        from anxin.plot import read_log

        accuracies = [
            e["rewards/accuracies"] for e in read_log(output_dir) if "rewards/accuracies" in e
        ]
    result.train_reward_accuracy_final = _rounded(accuracies[-1]) if accuracies else None
    if result.tool == "anxin":
        run_card = _read_json(output_dir / "run.json")
        result.precision = run_card.get("machine", {}).get("precision")
        result.gradient_checkpointing = run_card.get("config", {}).get("gradient_checkpointing")
    return result


# --- summary ----------------------------------------------------------------------------------

FIGURES = (
    "tokens_per_s", "assistant_tokens_per_s", "s_per_step", "s_per_step_steady", "eval_s",
    "peak_rss_mib", "peak_tree_rss_mib", "train_loss_final", "eval_loss",
    "eval_reward_accuracy", "train_reward_accuracy_final", "wall_s",
)  # fmt: skip


def summarise(report: dict) -> None:
    runs = [RunResult(**r) for r in report["runs"]]
    report["medians"] = {tool: medians_of(runs, tool) for tool in TOOLS}
    anxin, lf = report["medians"]["anxin"], report["medians"]["llamafactory"]

    def ratio(name):
        return round(anxin[name] / lf[name], 3) if anxin.get(name) and lf.get(name) else None

    ratios = {name: ratio(name) for name in FIGURES}
    report["comparison"] = {
        "ratios": ratios,
        "tokens_per_s_ratio_by_round": round_ratios(runs),
        "final_train_loss": {
            "anxin": anxin.get("train_loss_final"),
            "llamafactory": lf.get("train_loss_final"),
        },
        "eval_loss": {"anxin": anxin.get("eval_loss"), "llamafactory": lf.get("eval_loss")},
        "targets": {
            "tokens_per_s_at_least_1.5x": (ratios["tokens_per_s"] or 0) >= 1.5,
            "peak_rss_not_higher": (ratios["peak_rss_mib"] or 9) <= 1.0,
        },
    }


def medians_of(runs: list[RunResult], tool: str) -> dict:
    import statistics

    good = [r for r in runs if r.tool == tool and r.returncode == 0]
    out = {}
    for name in FIGURES:
        values = [getattr(r, name) for r in good if getattr(r, name) is not None]
        out[name] = round(statistics.median(values), 4) if values else None
    return out


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


COLUMNS = (
    ("tok/s", "tokens_per_s", 1), ("s/step", "s_per_step", 2), ("s/step steady", "s_per_step_steady", 2),
    ("eval s", "eval_s", 1), ("peak RSS MiB", "peak_rss_mib", 0), ("final train loss", "train_loss_final", 4),
    ("eval loss", "eval_loss", 4), ("eval reward acc", "eval_reward_accuracy", 3),
)  # fmt: skip


def markdown(report: dict) -> str:
    lines = ["| run | precision | " + " | ".join(c[0] for c in COLUMNS) + " |"]
    lines.append("|" + "---|" * (len(COLUMNS) + 2))

    def row(label: str, values: dict, precision: str = "", ratio: bool = False) -> None:
        cells = [label, precision] + [
            _cell(values.get(key), 3 if ratio else digits) for _, key, digits in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")

    for r in report["runs"]:
        failed = "" if r["returncode"] == 0 else " (failed)"
        row(f"{r['tool']} #{r['round']}{failed}", r, r.get("precision") or "")
    for tool in TOOLS:
        row(f"**{tool} median**", report["medians"][tool])
    row("**anxin / LLaMA-Factory**", report["comparison"]["ratios"], ratio=True)
    return "\n".join(lines) + "\n"


def summary_text(report: dict) -> str:
    facts, data, comparison = report["machine"], report["data"], report["comparison"]
    marks = ", ".join(f"{k} {'✅' if ok else '❌'}" for k, ok in comparison["targets"].items())
    by_round = ", ".join(f"#{n} {v}" for n, v in comparison["tokens_per_s_ratio_by_round"].items())
    settings = "; ".join(
        f"{r['tool']} {r['precision']}, gradient checkpointing "
        f"{'on' if r['gradient_checkpointing'] else 'off'}"
        for r in {r["tool"]: r for r in report["runs"]}.values()
    )
    return (
        f"- Machine: {facts['cpu']}, {facts['usable_cores']} cores, native bf16 "
        f"{facts.get('cpu_native_bf16')}, torch {facts['torch']}. Load average at start "
        f"{facts['load_average']}.\n"
        f"- Data: {data['train_pairs']} training pairs ({data['tokens']} tokens read per pass, "
        f"{data['answer_tokens']} answer tokens) and {data['eval_pairs']} for evaluation from "
        f"{data['source']}; {report['steps']} optimizer steps per run.\n"
        f"- Each tool's own settings: {settings}.\n"
        f"- Targets: {marks}. Tokens/s ratio within each round: {by_round or '–'}.\n"
        f"- Final train loss anxin {comparison['final_train_loss']['anxin']} vs LLaMA-Factory "
        f"{comparison['final_train_loss']['llamafactory']}; eval loss "
        f"{comparison['eval_loss']['anxin']} vs {comparison['eval_loss']['llamafactory']}.\n"
    )


def write_report(report: dict) -> None:
    text = summary_text(report) + "\n" + markdown(report)
    write_json(RESULTS / "dpo_throughput.json", report)
    write_text(RESULTS / "dpo_throughput.md", text)
    print(text)


# --- the benchmark ----------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict:
    from anxin.models import pull_model

    ensure_llamafactory()
    model_dir = str(pull_model("smollm2"))
    work = Path(args.work_dir)
    accumulation = RECIPE["per_device_train_batch_size"] * RECIPE["gradient_accumulation_steps"]
    data = make_pair_slice(
        model_dir, args.steps * accumulation, args.eval_pairs, RECIPE["cutoff_len"]
    )
    register_pairs(data, work / "data")
    extras = {"anxin": parse_sets(args.anxin_set), "llamafactory": parse_sets(args.lf_set)}
    report = {
        "benchmark": "dpo_throughput",
        "finished_at": None,
        "command": args.command,
        "machine": machine_facts(),
        "model": {"path": model_dir},
        "recipe": RECIPE,
        "tool_only_keys": {"anxin": ANXIN_ONLY, "llamafactory": LF_ONLY},
        "variant_keys": extras,
        "llamafactory_version": LF_VERSION,
        "steps": args.steps,
        "data": {
            "source": str(PAIRS.relative_to(ROOT)),
            "train_pairs": len(data.train),
            "eval_pairs": len(data.validation),
            "tokens": data.tokens,
            "answer_tokens": data.answer_tokens,
        },
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for round_ in range(1, args.rounds + 1):
        for tool in TOOLS:
            output_dir = work / f"{tool}-{round_}"
            only = ANXIN_ONLY if tool == "anxin" else LF_ONLY
            config = write_config(
                tool, output_dir, model_dir, work / "data", args.steps,
                {**RECIPE, **only, **extras[tool]},
            )  # fmt: skip
            log = RESULTS / f"dpo_throughput-{tool}-{round_}.log"
            print(f"round {round_}: {tool} ...", file=sys.stderr, flush=True)
            measured = run_tool(tool, round_, config, output_dir, log)
            result = RunResult(**asdict(measured))
            if tool == "llamafactory":
                result.precision, result.gradient_checkpointing = lf_settings(config)
            result = collect(result, output_dir, data, args.steps)
            print(f"  {_brief(result)}", file=sys.stderr, flush=True)
            report["runs"].append(asdict(result))
            summarise(report)
            write_report(report)
    report["finished_at"] = time.strftime("%FT%T")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dpo_throughput",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run")
    parser.add_argument("--eval-pairs", type=int, default=16, help="pairs in the one evaluation")
    parser.add_argument("--work-dir", default=str(WORK), help="data and run outputs")
    parser.add_argument("--anxin-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--lf-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--render", metavar="JSON", help="only rewrite the markdown from a report")
    args = parser.parse_args(argv)
    if args.render:
        write_report(json.loads(Path(args.render).read_text()))
        return 0
    args.command = "python -m bench.dpo_throughput " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = run_benchmark(args)
    write_report(report)
    return 0 if all(r["returncode"] == 0 for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
