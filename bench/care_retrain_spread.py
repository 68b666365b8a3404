"""How far the care layer's frozen held-out figures move when only the training draw changes.

    flock /work/notes/bench.lock python -m bench.care_retrain_spread --draws 5 --out bench/results/care

The learned stage is retrained on 90 % of the development groups (a seeded draw of whole
dialogues / items, the rest left out), `--draws` times, and each model scores the frozen
held-out parts through the detector's own bars (`training.level_by_the_detector`, as
cross-validation does). The spread says how much of a change on a frozen part a rule or data
change can claim: the learned stage reads the rules' reasons, so every rule edit retrains it.
A noise estimate only: nothing is chosen on it. Writes `retrain_spread.json` under --out.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from anxin.atomic import write_text
from anxin.safety import training
from anxin.safety.classifier import CONFIG, features
from anxin.safety.sets import read_examples
from bench.common import machine_facts

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = {
    "smilechat_heldout": (ROOT / "data/safety_real/smilechat_heldout.jsonl", None),
    "psysuicide_heldout": (ROOT / "data/psysuicide/valid.json", "heldout"),
}
LEFT_OUT = 0.1  # share of development groups each draw leaves out


def frozen_samples() -> dict[str, list[tuple[training.Sample, tuple]]]:
    """Each frozen part's messages as the learned stage reads them, with their features."""
    parts = {}
    for name, (path, part) in HELDOUT.items():
        samples = [
            training.Sample(training.evidence_of(e), training.target_class(e), name, str(e.line))
            for e in read_examples(path, part)
        ]
        parts[name] = [(s, features(s.evidence, CONFIG)) for s in samples]
    return parts


def scored(model, part: list[tuple[training.Sample, tuple]]) -> dict:
    """Crisis recall and false-positive rate of the detector with `model` as its learned stage."""
    counts = {"tp": 0, "fn": 0, "fp": 0, "tn": 0}
    for sample, row in part:
        crisis = training.level_by_the_detector(
            sample, model.crisis_probability(sample.evidence, row)
        )
        said, truth = crisis == "crisis", sample.target != 0
        counts[("t" if said == truth else "f") + ("p" if said else "n")] += 1
    crises, others = counts["tp"] + counts["fn"], counts["fp"] + counts["tn"]
    return {
        "recall": round(counts["tp"] / crises, 4),
        "false_positive_rate": round(counts["fp"] / others, 4),
        **counts,
    }


def spread(runs: list[dict], part: str, key: str) -> dict:
    values = [run[part][key] for run in runs]
    return {"min": min(values), "mean": round(statistics.mean(values), 4), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=5, help="retrains on 90 %% of the groups")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/care")
    args = parser.parse_args(argv)

    samples = training.training_samples()
    learned_from = [training.training_row(sample.evidence, CONFIG) for sample in samples]
    parts = frozen_samples()
    groups = sorted({sample.group for sample in samples})
    runs = []
    for draw in range(args.draws):
        left_out = set(random.Random(draw).sample(groups, int(len(groups) * LEFT_OUT)))
        kept = [i for i, sample in enumerate(samples) if sample.group not in left_out]
        model = training.fit([samples[i] for i in kept], CONFIG, [learned_from[i] for i in kept])
        runs.append({name: scored(model, part) for name, part in parts.items()})
        print(draw, {name: (r["recall"], r["false_positive_rate"]) for name, r in runs[-1].items()})
    result = {
        "what": "frozen held-out figures of the detector, learned stage retrained on 90 % of "
        "the development groups per draw (seeded by the draw number)",
        "draws": args.draws,
        "left_out_share": LEFT_OUT,
        "runs": runs,
        "spread": {
            name: {key: spread(runs, name, key) for key in ("recall", "false_positive_rate")}
            for name in parts
        },
        "machine": machine_facts(),
    }
    write_text(args.out / "retrain_spread.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["spread"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
