"""Prediction throughput, side by side: `anxin eval` against LLaMA-Factory 0.9.5's do_predict.

    .venv/bin/python -m bench.eval_throughput                   # 24 dialogues, 2 rounds
    .venv/bin/python -m bench.eval_throughput --adapter DIR     # a fine-tuned adapter on top

Both tools generate each dialogue's last reply from its history, greedily, with the same model
(the embedded SmolLM2 HF folder, plus an adapter when given), the same dialogues (bench.slices:
SMILECHAT fitted within cutoff_len), max_new_tokens and batch size. anxin runs
`anxin eval --last-turn-only --no-loss --predict-out ...`; LLaMA-Factory runs `llamafactory-cli
train` with do_predict and predict_with_generate. Runs alternate A B A B in fresh processes.
Per run: seconds spent generating (each tool's own figure: anxin's generation seconds,
LLaMA-Factory's predict_runtime), replies per second, new tokens per second (counted with the
same tokenizer on each tool's predictions), the whole process's wall time and peak RSS.
Writes bench/results/eval_throughput.{json,md} with the machine facts (CPU flags included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import yaml

from anxin.atomic import write_json, write_text
from bench.common import anxin_environment, machine_facts, run_measured
from bench.llamafactory import LF_CLI, LF_VERSION, ensure_llamafactory, lf_environment
from bench.slices import make_slice, register_slice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "saves" / "bench_eval_throughput"
TOOLS = ("anxin", "llamafactory")


def anxin_command(args, model_dir: str, data: Path, out: Path) -> list[str]:
    command = [sys.executable, "-m", "anxin", "eval", "--model", model_dir]
    command += ["--data", str(data), "--out", str(out), "--last-turn-only", "--no-loss"]
    command += ["--max-turns", "all", "--batch-size", str(args.batch_size)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--temperature", "0"]
    command += ["--repetition-penalty", "1.0", "--cutoff-len", str(args.cutoff_len)]
    command += ["--samples", "0", "--no-progress", "--predict-out", str(out / "predictions.jsonl")]
    return command + (["--adapter", args.adapter] if args.adapter else [])


def lf_config(args, model_dir: str, dataset_dir: Path, out: Path) -> Path:
    config = {
        "model_name_or_path": model_dir,
        "stage": "sft",
        "do_train": False,
        "do_predict": True,
        "predict_with_generate": True,
        "finetuning_type": "lora",
        "template": "smollm2",
        "dataset_dir": str(dataset_dir),
        "eval_dataset": "bench_eval",
        "cutoff_len": args.cutoff_len,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False,
        "repetition_penalty": 1.0,
        "per_device_eval_batch_size": args.batch_size,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "use_cpu": True,
        "report_to": "none",
    }
    if args.adapter:
        config["adapter_name_or_path"] = args.adapter
    path = out.parent / f"{out.name}.yaml"
    write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def new_tokens(tokenizer, predictions: Path) -> int:
    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line.strip()]
    return sum(len(tokenizer(r["predict"], add_special_tokens=False)["input_ids"]) for r in rows)


def one_run(tool: str, round_: int, args, model_dir: str, work: Path, tokenizer) -> dict:
    out = work / f"{tool}-{round_}"
    log = RESULTS / f"eval_throughput-{tool}-{round_}.log"
    if tool == "anxin":
        command, env = (
            anxin_command(args, model_dir, work / "data" / "bench_eval.jsonl", out),
            (anxin_environment()),
        )
    else:
        config = lf_config(args, model_dir, work / "data", out)
        command, env = [str(LF_CLI), "train", str(config)], lf_environment()
    measured = run_measured(command, log, env=env, cwd=ROOT)
    result = {
        "tool": tool,
        "round": round_,
        "returncode": measured.returncode,
        "wall_s": measured.wall_s,
        "peak_rss_mib": measured.peak_rss_mib,
        "load_before": measured.load_before,
        "log": str(log.relative_to(ROOT)),
    }
    if measured.returncode != 0:
        return result
    if tool == "anxin":
        generation = json.loads((out / "metrics.json").read_text())["models"]["model"]
        seconds = generation["generation"]["seconds"]
        predictions = out / "predictions.jsonl"
    else:
        seconds = json.loads((out / "predict_results.json").read_text())["predict_runtime"]
        predictions = out / "generated_predictions.jsonl"
    replies = sum(1 for line in predictions.read_text().splitlines() if line.strip())
    tokens = new_tokens(tokenizer, predictions)
    result.update(
        generation_s=round(seconds, 2),
        replies=replies,
        new_tokens=tokens,
        replies_per_s=round(replies / seconds, 3),
        tokens_per_s=round(tokens / seconds, 2),
    )
    return result


def summarise(runs: list[dict]) -> dict:
    medians = {}
    for tool in TOOLS:
        good = [r for r in runs if r["tool"] == tool and r["returncode"] == 0]
        medians[tool] = {
            name: round(statistics.median(r[name] for r in good), 3) if good else None
            for name in ("generation_s", "replies_per_s", "tokens_per_s", "wall_s", "peak_rss_mib")
        }
    a, b = medians["anxin"], medians["llamafactory"]
    ratios = {k: round(a[k] / b[k], 3) if a[k] and b[k] else None for k in a}
    return {"medians": medians, "anxin_over_llamafactory": ratios}


def markdown(report: dict) -> str:
    facts, summary = report["machine"], report["summary"]
    lines = [
        f"# Prediction throughput: anxin eval vs LLaMA-Factory {LF_VERSION} do_predict",
        "",
        f"{facts['cpu']} ({' '.join(facts['cpu_flags'])}), {facts['usable_cores']} cores, torch "
        f"{facts['torch']}; {report['dialogues']} dialogues (last reply of each), greedy, "
        f"max_new_tokens {report['settings']['max_new_tokens']}, batch "
        f"{report['settings']['batch_size']}, adapter {report['settings']['adapter'] or 'none'}.",
        "",
        "| run | generation s | replies/s | new tokens/s | wall s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        if r["returncode"]:
            lines.append(f"| {r['tool']} #{r['round']} | failed (see {r['log']}) | | | | |")
            continue
        lines.append(
            f"| {r['tool']} #{r['round']} | {r['generation_s']} | {r['replies_per_s']} | "
            f"{r['tokens_per_s']} | {r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    for tool, m in summary["medians"].items():
        lines.append(
            f"| **{tool} median** | {m['generation_s']} | {m['replies_per_s']} | "
            f"{m['tokens_per_s']} | {m['wall_s']} | {m['peak_rss_mib']} |"
        )
    r = summary["anxin_over_llamafactory"]
    lines.append(
        f"| **anxin / LLaMA-Factory** | {r['generation_s']} | {r['replies_per_s']} | "
        f"{r['tokens_per_s']} | {r['wall_s']} | {r['peak_rss_mib']} |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--cutoff-len", type=int, default=1024)
    parser.add_argument("--adapter", help="a LoRA adapter both tools apply")
    parser.add_argument("--work-dir", type=Path, default=WORK)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from anxin.models import pull_model

    ensure_llamafactory()
    model_dir = str(pull_model("smollm2"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = make_slice(model_dir, args.work_dir, 0, args.dialogues, args.cutoff_len)
    register_slice(data, args.work_dir / "data")
    report = {
        "benchmark": "eval_throughput",
        "machine": machine_facts(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "dialogues": len(data.validation),
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for round_ in range(1, args.rounds + 1):
        for tool in TOOLS:
            print(f"round {round_}: {tool} ...", file=sys.stderr, flush=True)
            report["runs"].append(one_run(tool, round_, args, model_dir, args.work_dir, tokenizer))
            print(f"  {report['runs'][-1]}", file=sys.stderr, flush=True)
            report["summary"] = summarise(report["runs"])
            write_json(RESULTS / "eval_throughput.json", report)
    report["finished_at"] = time.strftime("%FT%T")
    write_json(RESULTS / "eval_throughput.json", report)
    table = markdown(report)
    write_text(RESULTS / "eval_throughput.md", table)
    print(table)
    return 0 if all(r["returncode"] == 0 for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
