"""Training speed of this checkout against another one, side by side on the same machine.

    .venv/bin/python -m bench.train_before_after --compare ../before

A refactor must not make training slower. Each round trains the CPU demo recipe
(configs/smollm2-135m/lora_sft.yaml) for a few optimizer steps with this checkout's code and
then with the other's (`PYTHONPATH=DIR python -m anxin train ...`, same venv, same data, same
overrides, no evaluation or checkpoint), so load from other processes hits both alike; the
ratio within each round is what counts. The Trainer's own `train_results.json` gives the
runtime and tokens/s. Writes bench/results/train_before_after.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONFIG = ROOT / "configs" / "smollm2-135m" / "lora_sft.yaml"
# Short and the same for both: no evaluation, no checkpoint, no plots, a fixed slice of data.
OVERRIDES = [
    "eval_strategy=no",
    "save_strategy=no",
    "load_best_model_at_end=false",
    "plot_loss=false",
    "max_samples=48",
    "val_size=0",
    "num_train_epochs=1",
]


def train_once(code_dir: Path, steps: int, work: Path) -> dict:
    """One short training run with `code_dir`'s anxin; the Trainer's reported figures."""
    out = work / f"{code_dir.name}-{len(list(work.iterdir()))}"
    env = {**os.environ, "PYTHONPATH": str(code_dir), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "anxin", "train", str(CONFIG), *OVERRIDES]
    command += [f"max_steps={steps}", f"output_dir={out}"]
    subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    results = json.loads((out / "train_results.json").read_text(encoding="utf-8"))
    return {
        key: results.get(key)
        for key in ("train_runtime", "train_tokens_per_second", "train_loss", "precision")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, required=True, help="the other checkout's root")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    args = parser.parse_args(argv)
    from anxin.atomic import write_json, write_text
    from anxin.machine import machine_facts

    checkouts = {"this": ROOT, "compare": args.compare.resolve()}
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="anxin-before-after-") as work:
        for round_ in range(args.rounds):
            for name, path in checkouts.items():
                runs[name].append(train_once(path, args.steps, Path(work)))
                print(f"round {round_ + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    ratios = [
        this["train_tokens_per_second"] / other["train_tokens_per_second"]
        for this, other in zip(runs["this"], runs["compare"])
    ]
    facts = machine_facts()
    report = {"machine": facts, "steps": args.steps, "overrides": OVERRIDES, "runs": runs}
    report["tokens_per_s_ratio_this_over_compare"] = ratios
    write_json(RESULTS / "train_before_after.json", report)
    lines = [
        f"# Training speed, this checkout against {checkouts['compare'].name} "
        f"(CPU demo recipe, {args.steps} steps × {args.rounds} rounds, alternated)",
        "",
        f"{facts['cpu']} ({' '.join(facts['cpu_flags'])}), torch {facts['torch']}.",
        "",
        "| code | tokens/s (median) | runtime s (median) | train loss | precision |",
        "|---|---:|---:|---:|---|",
    ]
    for name, rows in runs.items():
        lines.append(
            f"| {name} ({checkouts[name].name}) "
            f"| {statistics.median(r['train_tokens_per_second'] for r in rows):.1f} "
            f"| {statistics.median(r['train_runtime'] for r in rows):.1f} "
            f"| {rows[0]['train_loss']:.4f} | {rows[0]['precision']} |"
        )
    lines += [
        "",
        "Ratio this / compare within each round: " + ", ".join(f"{r:.3f}" for r in ratios),
    ]
    write_text(RESULTS / "train_before_after.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
