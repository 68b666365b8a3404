"""Peak memory of `anxin train` on bench/train_throughput.py's recipe, one checkout against another
and under glibc allocator settings, in fresh processes one after the other.

    flock /work/notes/bench.lock .venv/bin/python -m bench.train_memory --steps 3 \
        --checkout old=../before --checkout new=. --malloc mmap256k=MALLOC_MMAP_THRESHOLD_=262144

Each run trains the same slice (bench.slices) for --steps optimizer steps and evaluates once;
peak RSS is the kernel's high-water mark (bench.common.run_measured), and train_runtime is the
Trainer's. Results go to bench/results/train_memory.{json,md} with the machine facts. Timings of
runs that did not share a quiet machine are not comparable: read the load column.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from anxin.atomic import write_json, write_text
from bench.common import anxin_environment, machine_facts, run_measured
from bench.slices import make_slice, register_slice
from bench.train_throughput import RECIPE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "saves" / "bench_train_memory"


def one_run(name: str, checkout: Path, env_extra: dict, model_dir: str, steps: int) -> dict:
    out = WORK / f"out-{name}"
    config = {"model_name_or_path": model_dir, **RECIPE, "dataset_dir": str(WORK / "data"),
              "max_steps": steps, "output_dir": str(out), "overwrite_output_dir": True}  # fmt: skip
    path = WORK / f"{name}.yaml"
    write_text(path, yaml.safe_dump(config))
    env = {**anxin_environment(), **env_extra, "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "anxin", "train", str(path)]
    measured = run_measured(command, WORK / f"{name}.log", env=env, cwd=checkout)
    train = out / "train_results.json"
    results = json.loads(train.read_text()) if train.is_file() else {}
    return {
        "run": name, "checkout": str(checkout), "env": env_extra, "returncode": measured.returncode,
        "peak_rss_mib": measured.peak_rss_mib, "wall_s": measured.wall_s,
        "train_runtime_s": results.get("train_runtime"), "train_loss": results.get("train_loss"),
        "load_before": measured.load_before,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_memory", description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout to run (default: this one, as 'this')")  # fmt: skip
    parser.add_argument("--malloc", action="append", default=[], metavar="NAME=VAR=VALUE[,..]",
                        help="also run this checkout with these glibc malloc variables")  # fmt: skip
    args = parser.parse_args(argv)
    from anxin.models import pull_model

    model_dir = str(pull_model("smollm2"))
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "data" / "dataset_info.json").is_file():
        data = make_slice(model_dir, WORK, args.steps * 8, 32, RECIPE["cutoff_len"])
        register_slice(data, WORK / "data")
    plans = [(n, Path(p).resolve(), {}) for n, _, p in (c.partition("=") for c in args.checkout)]
    plans = plans or [("this", ROOT, {})]
    for spec in args.malloc:
        name, _, settings = spec.partition("=")
        env = dict(s.split("=", 1) for s in settings.split(","))
        plans.append((name, plans[-1][1], env))
    report = {"benchmark": "train_memory", "machine": machine_facts(), "steps": args.steps,
              "runs": []}  # fmt: skip
    for name, checkout, env in plans:
        report["runs"].append(one_run(name, checkout, env, model_dir, args.steps))
        print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
        write_json(RESULTS / "train_memory.json", report)
    lines = [
        "| run | peak RSS MiB | train s | train loss | load at start |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['run']} | {r['peak_rss_mib']:.0f} | {r['train_runtime_s']} | "
              f"{r['train_loss']} | {r['load_before']} |" for r in report["runs"]]  # fmt: skip
    write_text(RESULTS / "train_memory.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
