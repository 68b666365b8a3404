"""Training throughput, side by side: `anxin train` against LLaMA-Factory 0.9.5's `llamafactory-cli
train`, on the same model, data and LoRA recipe.

    .venv/bin/python -m bench.train_throughput                 # 2 rounds × 10 steps (~15 min)
    .venv/bin/python -m bench.train_throughput --rounds 3

What is the same for both tools:
  model   the embedded SmolLM2-135M-Instruct HF folder (`anxin.models.pull_model("smollm2")`)
  data    a fixed slice of dialogues: the SmileChat corpus (../shared/data/smilechat) converted
          by `anxin data convert`, else the bundled data/anxin_sample.jsonl. Each dialogue gets
          anxin's persona as its system message and keeps the longest run of whole exchanges
          that renders within cutoff_len, so neither tool truncates anything. The training
          slice holds exactly steps × grad-accum dialogues: each run trains on every token of
          it once, whatever order the tool draws them in.
  recipe  RECIPE below, written into both YAML files (plus the few keys one tool lacks).
What each tool decides for itself: precision (anxin: bf16 autocast on CPUs with native bf16;
LLaMA-Factory: float32 on CPU), gradient checkpointing (LLaMA-Factory turns it on by default),
evaluation batching. `--anxin-set` and `--lf-set` change single keys for a variant run.

Runs alternate A B A B ... in fresh processes. Per run: tokens per second (all tokens and
assistant tokens, counted once with anxin's renderer for both, over each tool's own
train_runtime), seconds per optimizer step, evaluation seconds, peak RSS, final train and eval
loss, and the model FLOP/s achieved as a fraction of this machine's matmul ceiling. Results go to
bench/results/train_throughput.{json,md} (with the machine's CPU flags: compare only runs of one
report, side by side).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from anxin.atomic import write_json, write_text
from bench.common import (
    anxin_environment,
    lora_training_flops,
    machine_facts,
    matmul_ceiling,
    run_measured,
)
from bench.llamafactory import LF_CLI, LF_VERSION, ensure_llamafactory, lf_environment, lf_settings
from bench.slices import Slice, make_slice, register_slice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "saves" / "bench_train_throughput"  # saves/ is git-ignored

# The recipe both tools run. Keys are LLaMA-Factory's, which anxin accepts as they are.
RECIPE = {
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_target": "q_proj,v_proj",
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "template": "smollm2",
    "dataset": "bench_train",
    "eval_dataset": "bench_eval",
    "cutoff_len": 512,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "per_device_eval_batch_size": 8,
    "learning_rate": 1.0e-4,
    "lr_scheduler_type": "cosine",
    "logging_steps": 1,
    "eval_strategy": "no",  # no evaluation during training: exactly one, at the end
    "save_strategy": "no",
    "report_to": "none",
    "seed": 42,
}
# Keys only one tool knows. LLaMA-Factory evaluates at the end only when told to (do_eval), and
# needs use_cpu to leave a missing GPU alone; anxin evaluates whenever it has validation data.
ANXIN_ONLY: dict = {}
LF_ONLY = {"do_eval": True, "use_cpu": True}

TOOLS = ("anxin", "llamafactory")


# --- one run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    tool: str
    round: int
    returncode: int
    precision: str | None = None
    gradient_checkpointing: bool | None = None
    wall_s: float | None = None  # the whole process: imports, load, tokenise, train, eval, save
    train_runtime_s: float | None = None  # the tool's own Trainer train_runtime
    s_per_step: float | None = None
    s_per_step_steady: float | None = None  # first step (warm-up) left out
    eval_s: float | None = None
    tokens_per_s: float | None = None
    assistant_tokens_per_s: float | None = None
    tool_tokens_per_s: float | None = None  # the tool's own counter, when it has one
    peak_rss_mib: float | None = None
    peak_tree_rss_mib: float | None = None
    peak_rss_training_mib: float | None = None  # before the final evaluation (training_peak)
    train_loss_mean: float | None = None
    train_loss_final: float | None = None
    eval_loss: float | None = None
    model_gflops: float | None = None  # achieved model FLOP/s, in GFLOP/s
    utilisation: float | None = None  # of the matmul ceiling for the run's precision
    load_before: float | None = None
    load_after: float | None = None
    log: str = ""
    trace: str = ""  # seconds,tree_rss_mib samples of the whole run


def write_config(tool: str, output_dir: Path, model_dir: str, dataset_dir: Path, steps: int,
                 extra: dict) -> Path:  # fmt: skip
    config = {
        "model_name_or_path": model_dir,
        **RECIPE,
        "dataset_dir": str(dataset_dir),
        "max_steps": steps,
        "output_dir": str(output_dir),
        **(ANXIN_ONLY if tool == "anxin" else LF_ONLY),
        **extra,
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    write_text(path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def run_tool(tool: str, round_: int, config: Path, output_dir: Path, log: Path) -> RunResult:
    if output_dir.exists():
        shutil.rmtree(output_dir)
    if tool == "anxin":
        cmd, env = [sys.executable, "-m", "anxin", "train", str(config)], anxin_environment()
    else:
        cmd, env = (
            [str(LF_CLI), "train", str(config)],
            lf_environment(),
        )
    trace = output_dir.parent / f"{output_dir.name}.rss.csv"  # memory over time
    measured = run_measured(cmd, log, env=env, cwd=ROOT, trace_path=trace)
    result = RunResult(tool, round_, measured.returncode, log=str(log.relative_to(ROOT)))
    result.trace = str(trace)
    result.wall_s = measured.wall_s
    result.peak_rss_mib, result.peak_tree_rss_mib = (
        measured.peak_rss_mib,
        measured.peak_tree_rss_mib,
    )
    result.load_before, result.load_after = measured.load_before, measured.load_after
    return result


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _seconds(value) -> float | None:
    """anxin logs elapsed_s as a number; LLaMA-Factory logs elapsed_time as 'H:MM:SS'."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\d+:\d{2}:\d{2}", value):
        hours, minutes, seconds = (int(x) for x in value.split(":"))
        return float(hours * 3600 + minutes * 60 + seconds)
    return None


def step_log(output_dir: Path) -> list[tuple[int, float, float]]:
    """(step, elapsed seconds, loss) for every training log line, from either tool's log."""
    rows = []
    for entry in _read_jsonl(output_dir / "trainer_log.jsonl"):
        step = entry.get("step", entry.get("current_steps"))
        elapsed = _seconds(entry.get("elapsed_s", entry.get("elapsed_time")))
        if "loss" in entry and step is not None and elapsed is not None:
            rows.append((int(step), elapsed, float(entry["loss"])))
    return rows


def collect(result: RunResult, output_dir: Path, data: Slice, steps: int, flops: float,
            ceiling: dict) -> RunResult:  # fmt: skip
    """Fill a run's figures from the files the tool wrote."""
    train = _read_json(output_dir / "train_results.json")
    evaluation = _read_json(output_dir / "eval_results.json")
    runtime = train.get("train_runtime")
    if runtime:
        result.train_runtime_s = round(runtime, 2)
        result.s_per_step = round(runtime / steps, 2)
        result.tokens_per_s = round(data.tokens / runtime, 1)
        result.assistant_tokens_per_s = round(data.assistant_tokens / runtime, 1)
        result.model_gflops = round(flops / runtime / 1e9, 2)
    result.tool_tokens_per_s = train.get("train_tokens_per_second")
    result.train_loss_mean = _rounded(train.get("train_loss"))
    result.eval_loss = _rounded(evaluation.get("eval_loss"))
    result.eval_s = _rounded(evaluation.get("eval_runtime"), 2)
    result.peak_rss_training_mib = training_peak(Path(result.trace), result.wall_s, result.eval_s)
    rows = step_log(output_dir)
    if rows:
        result.train_loss_final = _rounded(rows[-1][2])
    if len(rows) >= 2 and rows[-1][0] > rows[0][0]:
        steady = (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])
        result.s_per_step_steady = round(steady, 2)
    if result.tool == "anxin":
        machine = _read_json(output_dir / "run.json").get("machine", {})
        result.precision = machine.get("precision")
        config = _read_json(output_dir / "run.json").get("config", {})
        result.gradient_checkpointing = config.get("gradient_checkpointing")
    if result.model_gflops and result.precision in ("fp32", "bf16"):
        result.utilisation = round(result.model_gflops / ceiling[f"{result.precision}_gflops"], 3)
    return result


def training_peak(trace: Path, wall_s: float | None, eval_s: float | None) -> float | None:
    """Peak RSS before the final evaluation: the memory trace up to the run's wall time less
    the evaluation's own runtime. The cut falls a little early (saving and exiting also come
    after the evaluation), never inside it. LLaMA-Factory's evaluation holds the full logits
    of its eval batch, so its whole-run peak falls there, while anxin's falls in training."""
    if not trace.is_file() or wall_s is None or eval_s is None:
        return None
    end = wall_s - eval_s
    samples = (line.split(",") for line in trace.read_text().splitlines()[1:])
    before = [float(rss) for seconds, rss in samples if float(seconds) <= end]
    return max(before) if before else None


def _rounded(value, digits: int = 4):
    return round(float(value), digits) if value is not None else None


# --- summary ----------------------------------------------------------------------------------

FIGURES = (
    "tokens_per_s",
    "assistant_tokens_per_s",
    "s_per_step",
    "s_per_step_steady",
    "eval_s",
    "peak_rss_mib",
    "peak_tree_rss_mib",
    "peak_rss_training_mib",
    "train_loss_final",
    "eval_loss",
    "model_gflops",
    "utilisation",
    "wall_s",
)


def medians(runs: list[RunResult], tool: str) -> dict:
    good = [r for r in runs if r.tool == tool and r.returncode == 0]
    out = {}
    for name in FIGURES:
        values = [getattr(r, name) for r in good if getattr(r, name) is not None]
        out[name] = round(statistics.median(values), 4) if values else None
    return out


def compare(anxin: dict, lf: dict) -> dict:
    """Ratios anxin / LLaMA-Factory and the issue's three targets."""

    def ratio(name):
        a, b = anxin.get(name), lf.get(name)
        return round(a / b, 3) if a and b else None

    ratios = {name: ratio(name) for name in FIGURES}
    eval_gap = None
    if anxin.get("eval_loss") and lf.get("eval_loss"):
        eval_gap = round(abs(anxin["eval_loss"] - lf["eval_loss"]) / lf["eval_loss"], 4)
    return {
        "ratios": ratios,
        "eval_loss_relative_gap": eval_gap,
        "targets": {
            "tokens_per_s_at_least_2x": (ratios["tokens_per_s"] or 0) >= 2.0,
            "peak_rss_not_higher": (ratios["peak_rss_mib"] or 9) <= 1.0,
            "peak_rss_training_not_higher": (ratios["peak_rss_training_mib"] or 9) <= 1.0,
            "eval_loss_within_2_percent": eval_gap is not None and eval_gap <= 0.02,
        },
    }


def _cell(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    """The table for the README: one row per run, the medians, and the ratio."""
    header = (
        "| run | precision | tok/s (all) | tok/s (assistant) | s/step | s/step steady | eval s "
        "| peak RSS MiB | peak RSS training MiB | train loss | eval loss | GFLOP/s | of ceiling |"
    )
    lines = [header, "|" + "---|" * 13]

    def row(label, r: dict, precision: str = "", ratio: bool = False):
        names = ("tokens_per_s", "assistant_tokens_per_s", "s_per_step", "s_per_step_steady")
        names += ("eval_s", "peak_rss_mib", "peak_rss_training_mib", "train_loss_final")
        names += ("eval_loss", "model_gflops")
        digits = (1, 1, 2, 2, 1, 0, 0, 4, 4, 1)
        cells = [label, precision]
        cells += [_cell(r.get(n), 3 if ratio else d) for n, d in zip(names, digits)]
        share = r.get("utilisation")
        cells.append("" if ratio else _cell(share and 100 * share, 1) + " %")
        lines.append("| " + " | ".join(cells) + " |")

    for r in report["runs"]:
        failed = "" if r["returncode"] == 0 else " (failed)"
        row(f"{r['tool']} #{r['round']}{failed}", r, r.get("precision") or "")
    for tool in TOOLS:
        row(f"**{tool} median**", report["medians"][tool])
    ratios = report["comparison"]["ratios"]
    row("**anxin / LLaMA-Factory**", ratios, ratio=True)
    return "\n".join(lines) + "\n"


def summary_text(report: dict) -> str:
    facts, ceiling, data = report["machine"], report["matmul_ceiling"], report["data"]
    targets = report["comparison"]["targets"]
    gap = report["comparison"]["eval_loss_relative_gap"]
    by_round = ", ".join(
        f"#{n} {ratio}"
        for n, ratio in report["comparison"].get("tokens_per_s_ratio_by_round", {}).items()
    )
    marks = ", ".join(f"{name} {'✅' if ok else '❌'}" for name, ok in targets.items())
    settings = "; ".join(
        f"{r['tool']} {r['precision']}, gradient checkpointing "
        f"{'on' if r['gradient_checkpointing'] else 'off'}"
        for r in {r["tool"]: r for r in report["runs"]}.values()
    )
    return (
        f"- Machine: {facts['cpu']}, {facts['usable_cores']} cores, torch {facts['torch']}; "
        f"matmul ceiling {ceiling['fp32_gflops']} GFLOP/s fp32, {ceiling['bf16_gflops']} "
        f"bf16 ({ceiling['threads']} threads). Load average at start {facts['load_average']}.\n"
        f"- Data: {data['train_dialogues']} training dialogues ({data['tokens']} tokens, "
        f"{data['assistant_tokens']} assistant) and {data['eval_dialogues']} for evaluation "
        f"from {data['source']}; {report['steps']} optimizer steps per run.\n"
        f"- Each tool's own settings: {settings}.\n"
        f"- Targets: {marks}; eval loss gap {_cell(gap and 100 * gap, 2)} %.\n"
        f"- Tokens/s ratio anxin / LLaMA-Factory within each round: {by_round or '–'}.\n"
    )


# --- the benchmark ----------------------------------------------------------------------------


def parse_sets(pairs: list[str]) -> dict:
    return {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in pairs)}


def run_benchmark(args: argparse.Namespace) -> dict:
    """Prepare once, then alternate the tools; the report is rewritten after every run, so a
    benchmark stopped early still leaves the runs it finished."""
    from anxin.models import pull_model

    ensure_llamafactory()
    ceiling = matmul_ceiling()
    machine = machine_facts()
    model_dir = str(pull_model("smollm2"))
    model_config = json.loads((Path(model_dir) / "config.json").read_text())
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    accumulation = RECIPE["per_device_train_batch_size"] * RECIPE["gradient_accumulation_steps"]
    data = make_slice(
        model_dir, work, args.steps * accumulation, args.eval_samples, RECIPE["cutoff_len"]
    )
    register_slice(data, work / "data")
    flops = lora_training_flops(model_config, data.lengths)
    extras = {"anxin": parse_sets(args.anxin_set), "llamafactory": parse_sets(args.lf_set)}
    report = {
        "benchmark": "train_throughput",
        "finished_at": None,
        "command": args.command,
        "machine": machine,
        "matmul_ceiling": ceiling,
        "model": {"path": model_dir, "flops_per_run": flops},
        "recipe": RECIPE,
        "tool_only_keys": {"anxin": ANXIN_ONLY, "llamafactory": LF_ONLY},
        "variant_keys": extras,
        "llamafactory_version": LF_VERSION,
        "steps": args.steps,
        "data": {
            "source": data.source,
            "train_dialogues": len(data.train),
            "eval_dialogues": len(data.validation),
            "tokens": data.tokens,
            "assistant_tokens": data.assistant_tokens,
            "mean_length": round(data.tokens / len(data.train), 1),
        },
        "runs": [],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    for round_ in range(1, args.rounds + 1):
        for tool in TOOLS:
            output_dir = work / f"{tool}-{round_}"
            config = write_config(
                tool, output_dir, model_dir, work / "data", args.steps, extras[tool]
            )
            log = RESULTS / f"train_throughput-{tool}-{round_}.log"
            print(f"round {round_}: {tool} ...", file=sys.stderr, flush=True)
            result = run_tool(tool, round_, config, output_dir, log)
            if tool == "llamafactory":
                result.precision, result.gradient_checkpointing = lf_settings(config)
            result = collect(result, output_dir, data, args.steps, flops, ceiling)
            print(f"  {_brief(result)}", file=sys.stderr, flush=True)
            report["runs"].append(asdict(result))
            summarise(report)
            write_report(report, args.name)
    report["finished_at"] = time.strftime("%FT%T")
    return report


def summarise(report: dict) -> None:
    """Medians per tool and the comparison, from the runs so far."""
    runs = [RunResult(**r) for r in report["runs"]]
    report["medians"] = {tool: medians(runs, tool) for tool in TOOLS}
    report["comparison"] = compare(report["medians"]["anxin"], report["medians"]["llamafactory"])
    report["comparison"]["tokens_per_s_ratio_by_round"] = round_ratios(runs)


def round_ratios(runs: list[RunResult]) -> dict[int, float]:
    """anxin / LLaMA-Factory tokens per second within each round: neighbours in time share the
    machine's load, so on a busy machine these are steadier than the ratio of medians."""
    speed = {(r.tool, r.round): r.tokens_per_s for r in runs if r.returncode == 0}
    return {
        n: round(speed[("anxin", n)] / speed[("llamafactory", n)], 3)
        for n in sorted({r.round for r in runs})
        if speed.get(("anxin", n)) and speed.get(("llamafactory", n))
    }


def _brief(r: RunResult) -> str:
    if r.returncode != 0:
        return f"FAILED (exit {r.returncode}); see {r.log}"
    return (
        f"{_cell(r.tokens_per_s)} tok/s, {_cell(r.s_per_step, 2)} s/step, eval "
        f"{_cell(r.eval_s)} s, peak {_cell(r.peak_rss_mib, 0)} MiB (training "
        f"{_cell(r.peak_rss_training_mib, 0)}), eval_loss "
        f"{_cell(r.eval_loss, 4)} ({r.precision}), load {r.load_before}→{r.load_after}"
    )


def write_report(report: dict, name: str = "train_throughput") -> None:
    table = markdown(report)
    text = summary_text(report) + "\n" + table
    write_json(RESULTS / f"{name}.json", report)
    write_text(RESULTS / f"{name}.md", text)
    print(text)


EPILOG = """\
examples:
  .venv/bin/python -m bench.train_throughput
  .venv/bin/python -m bench.train_throughput --rounds 3 --steps 10
  .venv/bin/python -m bench.train_throughput --rounds 1 --lf-set disable_gradient_checkpointing=true
  .venv/bin/python -m bench.train_throughput --anxin-set bf16=false   # both in float32

The first run installs LLaMA-Factory 0.9.5 into bench/.venv-llamafactory (a few minutes, ~2 GB).
Each run's log is bench/results/train_throughput-TOOL-ROUND.log; its outputs stay in
saves/bench_train_throughput/. Keep the machine otherwise idle: every figure is wall time.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_throughput",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument(
        "--eval-samples", type=int, default=32, help="dialogues in the one evaluation"
    )
    parser.add_argument("--work-dir", default=str(WORK), help="data and run outputs")
    parser.add_argument(
        "--name", default="train_throughput",
        help="results file stem in bench/results (one per CPU kind, say train_throughput_avx2)",
    )  # fmt: skip
    parser.add_argument(
        "--anxin-set", action="append", default=[], metavar="KEY=VALUE",
        help="change one key of anxin's config (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--lf-set", action="append", default=[], metavar="KEY=VALUE",
        help="change one key of LLaMA-Factory's config (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--render", metavar="JSON",
        help="run nothing: rewrite the markdown from a saved report",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.render:
        write_report(json.loads(Path(args.render).read_text()), args.name)
        return 0
    args.command = "python -m bench.train_throughput " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = run_benchmark(args)
    write_report(report, args.name)
    return 0 if all(r["returncode"] == 0 for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
